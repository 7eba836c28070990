#!/usr/bin/env bash
# The kvpress parity reference (CTest: infokv_kvpress_parity, label reference): NVIDIA kvpress
# 0.5.5 and infokv_eval compress the same token ids of TEXT with the same model, contexts and keep
# ratios, per layer and KV head with kvpress's own protections, for every baseline kvpress has;
# kvpress_parity.py compares the keep sets and the continuation NLL and fails on any difference
# beyond its stated tolerances. Writes OUT_DIR/parity.md (the table) and both sides' files.
# usage: kvpress_parity.sh MODEL.gguf TEXT [INFOKV_EVAL] [OUT_DIR]
# $INFOKV_KVPRESS_PYTHON: the venv's python (default: scripts/reference/setup_kvpress_venv.sh);
# $INFOKV_PARITY_CONTEXTS / $INFOKV_PARITY_BUDGETS override 1025,2100,4096 / 0.4,0.25,0.125.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
model=$1
text=$2
eval_bin=${3:-build/examples/infokv_eval}
out=${4:-kvpress_parity}
contexts=${INFOKV_PARITY_CONTEXTS:-1025,2100,4096}
budgets=${INFOKV_PARITY_BUDGETS:-0.4,0.25,0.125}
py=${INFOKV_KVPRESS_PYTHON:-$(bash "$here/setup_kvpress_venv.sh")}
rm -rf "$out"
mkdir -p "$out"
policies=$("$py" "$here/kvpress_parity.py" cases)
start=$(date +%s)
"$eval_bin" --model "$model" --text "$text" --out "$out/ours" --scenarios prefill --contexts "$contexts" \
  --prefill-budgets "$budgets" --policies "$policies" --dump-keep "$out/ours" > "$out/ours.log"
echo "infokv_eval: $(( $(date +%s) - start )) s"
start=$(date +%s)
"$py" "$here/kvpress_parity.py" run --model "$model" --tokens "$out/ours/tokens.json" --contexts "$contexts" \
  --budgets "$budgets" --continuation 256 --out "$out/kvpress" > "$out/kvpress.log"
echo "kvpress: $(( $(date +%s) - start )) s"
grep -E "^(self-check|budget counts)" "$out/kvpress.log" || true
"$py" "$here/kvpress_parity.py" compare --ours "$out/ours" --kvpress "$out/kvpress" --report "$out/parity.md"
