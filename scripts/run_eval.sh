#!/usr/bin/env bash
# The quality evaluation on the real model (README: Quality on a real model). Installs what it
# needs, fetches SmolLM2-135M-Instruct, builds infokv_eval for this CPU, runs every scenario for
# every policy on the given text, then writes the tables and plots (scripts/eval_report.py).
# usage: scripts/run_eval.sh TEXT [OUT_DIR] [infokv_eval options...]
#   e.g. scripts/run_eval.sh pride_and_prejudice.txt eval-results
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: scripts/run_eval.sh TEXT [OUT_DIR] [infokv_eval options...]" >&2; exit 2; }
text=$(realpath "$1")
out=$(realpath -m "${2:-eval-results}")
shift $(( $# >= 2 ? 2 : 1 ))
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh python3-matplotlib
model=$(bash scripts/fetch_model.sh)
prog=$(bash scripts/build_demo.sh infokv_eval)
mkdir -p "$out"
start=$(date +%s)
"$prog" --model "$model" --text "$text" --out "$out" "$@" | tee "$out/log.txt"
echo "wall time of the evaluation: $(( $(date +%s) - start )) s on $(nproc) cores" | tee -a "$out/log.txt"
# Debian's python3-matplotlib lives with Debian's interpreter (another python3 may come first).
py=/usr/bin/python3
[ -x "$py" ] || py=python3
"$py" scripts/eval_report.py "$out"
