#!/usr/bin/env bash
# A Python virtual environment with the exact packages of a requirements file, created once and
# reused while that file is unchanged (its SHA-256 is stamped in the venv; a changed file rebuilds
# the venv from scratch). Prints the venv's python; pip's output goes to stderr.
# usage: python_venv.sh REQUIREMENTS_FILE VENV_DIR
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: scripts/python_venv.sh REQUIREMENTS_FILE VENV_DIR" >&2; exit 2; }
req=$1 dir=$2
stamp=$dir/requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x "$dir/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  python3 -m venv "$dir" >&2 || { apt-get install -y -q python3-venv >&2 && python3 -m venv "$dir" >&2; }
  "$dir/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir -r "$req" >&2
  echo "$want" > "$stamp"
fi
echo "$dir/bin/python"
