#!/usr/bin/env bash
# The Python environment of the problem-set generator: reasoning-gym 0.1.25 (Apache-2.0) and its
# dependencies at the exact versions of scripts/reasoning/requirements.txt (pure Python wheels,
# about 150 MB). Created once, reused while the requirements file is unchanged. Prints the
# venv's python. Directory: $INFOKV_REASONING_DIR, default ~/.cache/infokv/reasoning.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec bash "$here/../python_venv.sh" "$here/requirements.txt" "${INFOKV_REASONING_DIR:-$HOME/.cache/infokv/reasoning}/venv"
