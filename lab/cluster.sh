#!/usr/bin/env bash
# lab/cluster.sh up|down|status — the lab cluster, with the project's virtualenv Python.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
py="$top/.venv/bin/python"
[ -x "$py" ] || { make -C "$top" --no-print-directory venv >&2; }
exec "$py" "$top/lab/cluster.py" "$@"
