#!/usr/bin/env bash
# Stop the local cluster gracefully, like the original MPIM's bin/stop.sh (mpim cluster stop).
#   bin/stop.sh [--config FILE] [--with-zookeeper]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
[ -x "$python" ] || python=python3
exec "$python" -m mpim cluster stop "$@"
