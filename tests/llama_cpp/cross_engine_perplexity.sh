#!/usr/bin/env bash
# The same model and text through llama-infokv perplexity and infokv_engine perplexity (InfoKV,
# one keep set per sequence, the same budgets), then scripts/compare_engine_perplexity.py: the
# keep sets of the first eviction overlap >= 90% and the delta NLLs agree within their noise.
# usage: cross_engine_perplexity.sh LLAMA_INFOKV INFOKV_ENGINE MODEL TEXT [CTX] [CHUNKS]
set -euo pipefail
llama=$1 engine=$2 model=$3 text=$4 ctx=${5:-1024} chunks=${6:-1}
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# 25% kept, 4 sinks, 32 recent: 128 of a 512-token prompt kept, 92 of them chosen by score.
common=(--model "$model" --text "$text" --ctx "$ctx" --chunks "$chunks" --ratio 0.25 --slack 16 --sinks 4 --recent 32)
"$llama" perplexity "${common[@]}" --policy infokv --threads 1 --dump "$out/llama.jsonl"
OMP_NUM_THREADS=1 "$engine" perplexity "${common[@]}" --policy infokv --granularity per_sequence --dump "$out/engine.jsonl"
python3 "$here/../../scripts/compare_engine_perplexity.py" "$out/llama.jsonl" "$out/engine.jsonl" --sinks 4 --recent 32
