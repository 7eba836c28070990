#!/usr/bin/env bash
# Builds one example program in build-demo for this CPU (Release, kernels chosen at compile time
# for the best x86-64 level the CPU has; no tests, benchmarks, install rules or CUDA) and prints
# the program's path. With a llama.cpp prefix (scripts/llama_cpp/build_llama_cpp.sh's output) the
# llama.cpp examples are configured too; without one, the prefix already in build-demo is kept.
# usage: build_demo.sh TARGET [LLAMA_CPP_PREFIX]
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: scripts/build_demo.sh TARGET [LLAMA_CPP_PREFIX]" >&2; exit 2; }
target=$1 llama=${2:-}
cd "$(dirname "$0")/.."
arch=$(bash scripts/cpu_arch.sh)
cmake -S . -B build-demo -DCMAKE_BUILD_TYPE=Release -DINFOKV_BUILD_TESTS=OFF -DINFOKV_BUILD_BENCHMARKS=OFF \
      -DINFOKV_INSTALL=OFF -DINFOKV_ENABLE_CUDA=OFF "-DCMAKE_CXX_FLAGS=${arch:+-march=$arch}" \
      ${llama:+"-DINFOKV_LLAMA_CPP_PREFIX=$llama"} >/dev/null
cmake --build build-demo -j"$(nproc)" --target "$target" >&2
echo "$PWD/build-demo/examples/$target"
