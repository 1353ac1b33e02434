#!/usr/bin/env bash
# synqra-proxy: the two set-up commands.
#   ./run.sh serve [synqra serve options]   install if needed, then start the whole stack
#   ./run.sh test  [pytest options]         install if needed (with test extras), then run the test suite
# Works on a fresh Debian/Ubuntu machine with Python 3.11 and no GPU; installs into ./.venv.
set -euo pipefail
cd "$(dirname "$0")"
cmd="${1:-}"; shift || true
case "$cmd" in
  serve) bash scripts/install.sh ;;
  test)  bash scripts/install.sh test ;;
  *) echo "usage: ./run.sh serve|test [args...]" >&2; exit 2 ;;
esac
export PATH="$PWD/.venv/bin:$PATH"
if [ "$cmd" = serve ]; then
  exec synqra serve "$@"
fi
exec python -m pytest "$@"
