#!/usr/bin/env bash
# The README's main-job command: installs dependencies, builds, and runs the synthetic
# end-to-end decode demo (compress() every step on a SmolLM2-135M-shaped paged cache).
# Arguments are passed to the demo: [steps] [budget] [policy].
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
# Kernels are chosen at compile time: build for this CPU's best x86-64 level.
arch=$(bash scripts/cpu_arch.sh)
cmake -S . -B build-demo -DCMAKE_BUILD_TYPE=Release -DINFOKV_BUILD_TESTS=OFF -DINFOKV_BUILD_BENCHMARKS=OFF \
      -DINFOKV_INSTALL=OFF "-DCMAKE_CXX_FLAGS=${arch:+-march=$arch}"
cmake --build build-demo -j"$(nproc)" --target infokv_synthetic_decode
./build-demo/examples/infokv_synthetic_decode "$@"
