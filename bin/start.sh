#!/usr/bin/env bash
# Start the local cluster, like the original MPIM's bin/start.sh.
#   bin/start.sh [--config FILE] [--with-zookeeper]   start every process (mpim cluster start)
#   bin/start.sh status [--config FILE]                 show them (mpim cluster status)
# Default cluster file: deploy/cluster.toml. Uses .venv/bin/python if present (see scripts/setup).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
[ -x "$python" ] || python=python3
action=start
case ${1:-} in
  start|status) action=$1; shift ;;
esac
exec "$python" -m mpim cluster "$action" "$@"
