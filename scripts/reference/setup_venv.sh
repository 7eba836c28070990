#!/usr/bin/env bash
# A Python environment with the independent references of the engine tests: the gguf package
# (dequantisation) and Hugging Face transformers / tokenizers (tokenisation from the GGUF).
# Prints the venv's python. Directory: $INFOKV_REFERENCE_DIR, default ~/.cache/infokv/reference.
set -euo pipefail
dir=${INFOKV_REFERENCE_DIR:-$HOME/.cache/infokv/reference}
if [ ! -x "$dir/venv/bin/python" ]; then
  python3 -m venv "$dir/venv" >&2 || { apt-get install -y -q python3-venv >&2 && python3 -m venv "$dir/venv" >&2; }
  "$dir/venv/bin/pip" install --quiet --disable-pip-version-check gguf==0.19.0 numpy "transformers==4.57.6" \
    tokenizers sentencepiece jinja2 >&2
fi
echo "$dir/venv/bin/python"
