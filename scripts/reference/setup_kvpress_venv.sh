#!/usr/bin/env bash
# The Python environment of the kvpress parity reference: NVIDIA kvpress 0.5.5 with torch,
# transformers and gguf at the exact versions of scripts/reference/kvpress_requirements.txt
# (PyPI's torch is the CUDA build, about 3 GB with its nvidia wheels; it runs on the CPU here).
# Created once, reused while the requirements file is unchanged. Prints the venv's python.
# Directory: $INFOKV_REFERENCE_DIR, default ~/.cache/infokv/reference.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec bash "$here/../python_venv.sh" "$here/kvpress_requirements.txt" \
  "${INFOKV_REFERENCE_DIR:-$HOME/.cache/infokv/reference}/kvpress-venv"
