#!/usr/bin/env bash
# The reasoning evaluation's CI subset: what must hold whatever the model answers.
#   1. "none" (the adapter attached, nothing evicted) generates exactly what plain llama.cpp does;
#   2. InfoKV with alpha = 1 generates exactly what SnapKV does, at every budget;
#   3. every sequence of every policy stays within its budget after every step, and the budgets
#      are tight enough that every sequence that generated past the first interval was evicted.
# usage: reasoning_subset.sh LLAMA_INFOKV_REASON MODEL PROBLEMS
set -euo pipefail
reason=$1 model=$2 problems=$3
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$reason" --model "$model" --problems "$problems" --out "$out/results.jsonl" --limit 4 --parallel 4 \
  --variants full,none,snapkv,infokv:alpha=1,infokv:alpha=0.95 --budgets 80,25% --interval 32 --sinks 4 --recent 16 \
  --n-predict 96 --threads 1  # ggml threads spin: one beside the other tests
python3 - "$out/results.jsonl" <<'PY'
import collections, json, sys
rows = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8", errors="replace")]
by = collections.defaultdict(dict)
for r in rows:
    by[(r["variant"], r["budget"])][r["id"]] = r
ids = sorted(by[("full", "full")])
fail = []
if len(ids) != 4:
    fail.append(f"expected 4 problems with the full cache, got {len(ids)}")
for i in ids:
    if by[("none", "full")][i]["tokens_hash"] != by[("full", "full")][i]["tokens_hash"]:
        fail.append(f"{i}: the adapter without eviction generated other tokens than plain llama.cpp")
evicted = 0
for budget in ("80", "25%"):
    for i in ids:
        a, s = by[("infokv:alpha=1", budget)][i], by[("snapkv", budget)][i]
        if a["tokens_hash"] != s["tokens_hash"]:
            fail.append(f"{i} at {budget}: InfoKV alpha=1 and SnapKV generated different tokens")
    for v in ("snapkv", "infokv:alpha=1", "infokv:alpha=0.95"):
        for i in ids:
            r = by[(v, budget)][i]
            if not r["within_budget"]:
                fail.append(f"{i}: {v} at {budget} held more cells than its budget allows")
            # 32 decode steps trigger the first compression; a prompt of ~100 tokens exceeds both budgets
            if r["tokens"] > 40:
                if r["evictions"] == 0:
                    fail.append(f"{i}: {v} at {budget} generated {r['tokens']} tokens and was never evicted")
                evicted += 1
if evicted == 0:
    fail.append("no sequence ran long enough to be evicted: the subset tests nothing")
for f in fail:
    print("FAIL:", f)
print(f"{len(rows)} records, {len(ids)} problems, {evicted} evicted sequences checked; "
      f"full cache right on {sum(by[('full', 'full')][i]['correct'] for i in ids)} of {len(ids)}")
sys.exit(1 if fail else 0)
PY
