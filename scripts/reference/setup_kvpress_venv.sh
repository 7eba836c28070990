#!/usr/bin/env bash
# The Python environment of the kvpress parity reference: NVIDIA kvpress 0.5.5 with torch,
# transformers and gguf at the exact versions of scripts/reference/kvpress_requirements.txt
# (PyPI's torch is the CUDA build, about 3 GB with its nvidia wheels; it runs on the CPU here).
# Created once, reused while the requirements file is unchanged. Prints the venv's python.
# Directory: $INFOKV_REFERENCE_DIR, default ~/.cache/infokv/reference.
set -euo pipefail
req=$(cd "$(dirname "$0")" && pwd)/kvpress_requirements.txt
dir=${INFOKV_REFERENCE_DIR:-$HOME/.cache/infokv/reference}/kvpress-venv
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
