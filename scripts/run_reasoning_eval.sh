#!/usr/bin/env bash
# The reasoning evaluation (README: Reasoning accuracy under compression): do the right answers
# survive compression? Installs what it needs, fetches the model, builds the pinned llama.cpp and
# llama-infokv-reason for this CPU, makes the problem set with reasoning-gym (unless one is given),
# runs the grid of policies and budgets, then writes the tables and plots (scripts/reasoning/report.py).
#
# usage: scripts/run_reasoning_eval.sh [OUT_DIR] [llama-infokv-reason options...]
#   INFOKV_REASONING_MODEL  1.5b (default) or 0.5b
#   INFOKV_REASONING_SET    a problem file (JSON Lines: id, prompt, answer, checker); default:
#                           200 gsm_symbolic problems (reasoning-gym, seed 42) made in OUT_DIR
#   INFOKV_REASONING_GRID   main (default), ablations or all
# Options after OUT_DIR go to every llama-infokv-reason call (e.g. --limit 64, --parallel 8).
#
# Grids (about 10 minutes per setting of 32 problems with the 1.5B model on a 2-core x86-64: 16
# sequences decode at about 17 tokens/s together, a chain is about 320 tokens):
#   main       (default, ~60 min) the full cache, InfoKV (alpha 0.95, the paper's decoding setting),
#              SnapKV, R-KV, StreamingLLM and TOVA, at 128 tokens; compression every 64 decode
#              steps; at most 400 generated tokens; the first 32 problems. Cut to fit an hour: the
#              other policies, the second budget and the ablations are in "all".
#   ablations  (~70 min) InfoKV's alpha 0.8 / 1, tau 0.5 / 1.5 and entropy over the top 128 / 512 /
#              all tokens, at 128 tokens
#   all        (~4.5 h) main, then KNorm, Random and InfoKV alpha 0.9 at 128, all of these and the
#              main grid's policies at 256 tokens, the ablations, and Expected Attention at 128 with the full cache and InfoKV
#              beside it, all three with --flash-attn (Expected Attention reads V rows, which
#              llama.cpp keeps untransposed only with flash attention; the results say which path
#              ran and the report pairs only within one)
# Results are appended to OUT_DIR/results.jsonl and a rerun skips what is there, so a grid can be
# stopped and resumed, or grown (--limit 64 adds problems 33-64 to every setting).
set -euo pipefail
out=$(realpath -m "${1:-reasoning-results}")
shift $(( $# >= 1 ? 1 : 0 ))
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh python3-matplotlib python3-venv
model=$(bash scripts/fetch_reasoning_model.sh "${INFOKV_REASONING_MODEL:-1.5b}")
llama=$(bash scripts/llama_cpp/build_llama_cpp.sh)
prog=$(bash scripts/build_demo.sh llama-infokv-reason "$llama")
mkdir -p "$out"
set_file=${INFOKV_REASONING_SET:-}
if [ -z "$set_file" ]; then
  py=$(bash scripts/reasoning/setup_venv.sh)
  set_file=$out/gsm_symbolic-42-200.jsonl
  [ -f "$set_file" ] || "$py" scripts/reasoning/make_problem_set.py --task gsm_symbolic --seed 42 --size 200 --out "$set_file"
fi
common=(--model "$model" --problems "$set_file" --out "$out/results.jsonl" --interval 64 --n-predict 400 --limit 32
        --parallel 16)
grid=${INFOKV_REASONING_GRID:-main}
case "$grid" in main|ablations|all) ;; *) echo "error: INFOKV_REASONING_GRID must be main, ablations or all" >&2; exit 2 ;; esac
main=full,infokv:alpha=0.95,snapkv,rkv,streamingllm,tova
rest=knorm,random,infokv:alpha=0.9
ablations=infokv:alpha=0.8,infokv:alpha=1,infokv:alpha=0.95:tau=0.5,infokv:alpha=0.95:tau=1.5
ablations=$ablations,infokv:alpha=0.95:top_k=128,infokv:alpha=0.95:top_k=512,infokv:alpha=0.95:top_k=all
reason() { "$prog" "${common[@]}" "$@" | tee -a "$out/log.txt"; }
start=$(date +%s)
[ "$grid" = ablations ] || reason --budgets 128 --variants "$main" "$@"
[ "$grid" = all ] && reason --budgets 128 --variants "$rest" "$@"
[ "$grid" = all ] && reason --budgets 256 --variants "${main#full,},$rest" "$@"
[ "$grid" = main ] || reason --budgets 128 --variants "$ablations" "$@"
[ "$grid" = all ] && reason --flash-attn --budgets 128 --variants full,infokv:alpha=0.95,expected-attention "$@"
echo "wall time of the grid: $(( $(date +%s) - start )) s on $(nproc) cores" | tee -a "$out/log.txt"
# Debian's python3-matplotlib lives with Debian's interpreter (another python3 may come first).
py3=/usr/bin/python3
[ -x "$py3" ] || py3=python3
"$py3" scripts/reasoning/report.py "$out/results.jsonl" --out "$out"
