#!/usr/bin/env bash
# End-to-end Docker smoke test: build the images (cached layers make a rebuild quick), run
# docker/compose.yaml for real on host networking (every address 127.0.0.1), check it, tear it down.
#   scripts/docker-smoke.sh [tests/docker/smoke.py options, e.g. --keep-on-failure]
# Needs a running Docker engine and docker-compose (Debian: apt-get install docker.io docker-compose
# debootstrap; then start dockerd). Exits non-zero on any failure; the last line is SMOKE-FIGURES {...}.
# SYNQRA_SMOKE_BUILD=0 skips the build step (the images must exist).
set -euo pipefail
cd "$(dirname "$0")/.."
docker info >/dev/null 2>&1 || { echo "docker-smoke: no Docker engine reachable (is dockerd running?)" >&2; exit 2; }
command -v "${SYNQRA_COMPOSE:-docker-compose}" >/dev/null || { echo "docker-smoke: docker-compose is missing" >&2; exit 2; }
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if [ "${SYNQRA_SMOKE_BUILD:-1}" != 0 ]; then
  bash scripts/docker-build.sh
fi
exec "$PY" -m tests.docker.smoke "$@"
