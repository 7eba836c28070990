#!/usr/bin/env bash
# The Python environment of the problem-set generator: reasoning-gym 0.1.25 (Apache-2.0) and its
# dependencies at the exact versions of scripts/reasoning/requirements.txt (pure Python wheels,
# about 150 MB). Created once, reused while the requirements file is unchanged. Prints the
# venv's python. Directory: $INFOKV_REASONING_DIR, default ~/.cache/infokv/reasoning.
set -euo pipefail
req=$(cd "$(dirname "$0")" && pwd)/requirements.txt
dir=${INFOKV_REASONING_DIR:-$HOME/.cache/infokv/reasoning}/venv
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
