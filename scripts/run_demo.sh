#!/usr/bin/env bash
# The README's main-job command: installs dependencies, builds, and runs the synthetic
# end-to-end decode demo (compress() every step on a SmolLM2-135M-shaped paged cache).
# Arguments are passed to the demo: [steps] [budget] [policy].
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)" --target infokv_synthetic_decode
./build/examples/infokv_synthetic_decode "$@"
