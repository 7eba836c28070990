#!/usr/bin/env bash
# The quality evaluation's CI subset on the committed excerpt: three policies, one budget, every
# scenario at a small size (256-token contexts, kept to 40% so that the policies still choose
# tokens beyond the 68 they protect). It asserts only what must hold whatever the model or the
# text:
#   1. the full cache's NLL equals the engine's perplexity run over the same tokens (same batches);
#   2. InfoKV with alpha = 1 reproduces SnapKV's numbers exactly, in every scenario;
#   3. compressing never changes the full-cache rows (a run with other policies gives the same
#      full rows; infokv_eval itself also recomputes the full logits after each prefill and
#      repeat comparison and stops if one bit changed).
# usage: eval_subset.sh ENGINE EVAL MODEL TEXT WORKDIR
set -euo pipefail
engine=$1 eval=$2 model=$3 text=$4 work=$5
rm -rf "$work" && mkdir -p "$work"

# 1. Context 256 then 256 more tokens = one perplexity chunk of 512 in two batches of 256;
#    both score the predictions at positions 256..510.
"$engine" perplexity --model "$model" --text "$text" --ctx 512 --chunks 1 --batch 256 >"$work/ppl.txt"
common=(--model "$model" --text "$text" --contexts 256 --continuation 256 --prefill-budgets 0.4)
"$eval" "${common[@]}" --out "$work/a" --policies snapkv,infokv,infokv:alpha=1 \
  --decode-tokens 512 --periods 128 --decode-budgets 0.25 --influence-prefix 256 --influence-tokens 256 \
  --influence-budgets 0.4 --influence-policies snapkv,infokv:alpha=1,infokv:alpha=0 --passage 64 --gaps 192 \
  --passkey-context 256 --passkey-trials 1 --passkey-depths 0.5 >"$work/a.log"
"$eval" "${common[@]}" --out "$work/b" --scenarios prefill --policies streamingllm >"$work/b.log"

python3 - "$work" <<'PY'
import csv, re, sys
work = sys.argv[1]
def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))
failures = []
def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)

ppl = float(re.search(r"mean nll: ([0-9.]+)", open(f"{work}/ppl.txt").read()).group(1))
qa, qb = rows(f"{work}/a/quality.csv"), rows(f"{work}/b/quality.csv")
full_a = [r for r in qa if r["scenario"] == "prefill" and r["policy"] == "full"][0]
check(full_a["predictions"] == "255", "the prefill comparison scores 255 predictions")
check(abs(float(full_a["nll_full"]) - ppl) < 1e-8,
      f"full-cache NLL {full_a['nll_full']} equals the perplexity run's {ppl:.9f}")

same = ["kept", "predictions", "nll", "delta_nll", "kl", "top1"]
for name, key in [("quality", ("scenario", "context", "period", "budget")),
                  ("influence", ("budget", "chunk")),
                  ("passkey", ("budget", "depth"))]:
    r = rows(f"{work}/a/{name}.csv")
    alpha1 = {tuple(x[k] for k in key): x for x in r if x["policy"] == "infokv:alpha=1"}
    snap = {tuple(x[k] for k in key): x for x in r if x["policy"] == "snapkv"}
    check(len(snap) > 0 and alpha1.keys() == snap.keys(), f"{name}: infokv:alpha=1 and snapkv have the same rows")
    cols = [c for c in same + ["correct", "answer_nll"] if c in r[0]]
    diff = [k for k in snap if any(alpha1[k][c] != snap[k][c] for c in cols)]
    check(not diff, f"{name}: infokv:alpha=1 reproduces snapkv exactly in {len(snap)} rows ({', '.join(cols)})")
# The two alphas must not be the same policy in disguise: InfoKV (0.9) differs somewhere.
diff09 = [x for x in qa if x["policy"] == "infokv" for y in qa
          if y["policy"] == "snapkv" and all(x[k] == y[k] for k in ("scenario", "context", "period", "budget"))
          and x["nll"] != y["nll"]]
check(len(diff09) > 0, "infokv (alpha 0.9) differs from snapkv (the comparison can fail)")

full_b = [r for r in qb if r["policy"] == "full"][0]
cols = ["nll_full", "nll", "kl", "top1", "predictions"]
check(all(full_a[c] == full_b[c] for c in cols), "the full-cache row is the same whichever policies ran beside it")
for r in qa + qb:
    if r["policy"] != "full":
        # KL >= 0 up to float rounding of the stored probabilities
        check(float(r["kl"]) >= -1e-9 and 0.0 <= float(r["top1"]) <= 1.0, f"{r['scenario']} {r['policy']}: KL >= 0, top-1 in [0, 1]")
sys.exit(1 if failures else 0)
PY
