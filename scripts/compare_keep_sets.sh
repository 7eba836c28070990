#!/usr/bin/env bash
# Proves that a change left every decision alone: builds infokv_eval (Release, x86-64-v3) at two
# revisions, runs both with the same settings on the committed excerpt, and compares what they
# decided and measured. Settings: the kinds of the committed quality runs at small sizes
# (bench/results/quality, scripts/run_eval.sh; its kvpress-protocol grid beside it):
#   prefill    contexts 1,024 and 2,048, budgets 0.4 / 0.2 / 0.1, every registry policy, the
#              granularity variants of the default grid and the kvpress-protocol variants,
#              keep sets dumped (--dump-keep)
#   decode     2,048 tokens compressed every 128 to 0.25 and 0.125, every registry policy and the
#              default grid's granularity variants (retrieval: the same list)
#   influence  a 512-token prefix, 512 tokens after it, the default influence variants
#   retrieval  a 64-token passage after a 448-token gap, one passkey trial in 512 tokens
# Compared exactly: keep_sets.jsonl and tokens.json, and every row of quality.csv (every column
# but library_seconds, the time spent in the library), influence.csv, passkey.csv and
# repeat_first_read.csv. Prints a verdict per file; exits 1 on any difference.
#
# usage: scripts/compare_keep_sets.sh BASE_REV [NEW_REV]
#   NEW_REV defaults to the working tree (uncommitted changes included). Each revision is built
#   in a temporary git worktree under /tmp, removed afterwards (KEEP=1 keeps the results).
#   The policy list comes from `infokv_eval --list-policies` of the newer build (of the base
#   build when only it has the flag); POLICIES=LIST overrides it. INFOKV_TEST_MODEL names the
#   model (default: scripts/fetch_model.sh); JOBS sets --jobs and the build's parallelism;
#   RUNS="prefill decode" runs some of the four only.
set -euo pipefail
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: scripts/compare_keep_sets.sh BASE_REV [NEW_REV]" >&2; exit 2; }
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
base_rev=$(git -C "$root" rev-parse --verify "$1^{commit}")
new_rev=""
[ $# -eq 2 ] && new_rev=$(git -C "$root" rev-parse --verify "$2^{commit}")
jobs=${JOBS:-$(nproc)}
model=${INFOKV_TEST_MODEL:-}
[ -n "$model" ] || model=$(bash "$root/scripts/fetch_model.sh")
text="$root/tests/data/pride_and_prejudice_20k.txt"  # the same input for both revisions

work=$(mktemp -d /tmp/compare_keep_sets.XXXXXX)
worktrees=()
cleanup() {
  for wt in "${worktrees[@]}"; do git -C "$root" worktree remove --force "$wt" >/dev/null 2>&1 || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "results kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# build NAME REV|"": infokv_eval of REV (a worktree) or of the working tree, into $built.
# (Not run in a subshell: the worktree list must survive for the cleanup.)
build() {
  local name=$1 rev=$2 src
  if [ -n "$rev" ]; then
    src="$work/$name-src"
    git -C "$root" worktree add --detach "$src" "$rev" >/dev/null 2>&1
    worktrees+=("$src")
  else
    src=$root
  fi
  cmake -S "$src" -B "$work/$name-build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS=-march=x86-64-v3 \
        -DINFOKV_BUILD_TESTS=OFF -DINFOKV_BUILD_BENCHMARKS=OFF -DINFOKV_INSTALL=OFF -DINFOKV_ENABLE_CUDA=OFF \
        >"$work/$name-configure.log" 2>&1 || { cat "$work/$name-configure.log" >&2; return 1; }
  cmake --build "$work/$name-build" --target infokv_eval -j"$jobs" >"$work/$name-build.log" 2>&1 ||
    { tail -40 "$work/$name-build.log" >&2; return 1; }
  built="$work/$name-build/examples/infokv_eval"
}

echo "base: $base_rev"
echo "new:  ${new_rev:-working tree of $root}"
echo "building both (logs in $work) ..."
build base "$base_rev"
base_bin=$built
build new "$new_rev"
new_bin=$built

if [ -z "${POLICIES:-}" ]; then
  registry=$("$new_bin" --list-policies 2>/dev/null || "$base_bin" --list-policies 2>/dev/null) ||
    { echo "neither revision has infokv_eval --list-policies: set POLICIES=LIST" >&2; exit 2; }
  # Every policy but the full cache, the default grid's other granularity, and the kvpress
  # protocol's variants (scripts/reference/kvpress_parity.py cases) with InfoKV beside them.
  names=$(awk -F, 'NR > 1 && $2 != "full" { printf "%s%s", sep, $1; sep = "," }' <<<"$registry")
  MAIN_POLICIES="$names,snapkv@per_sequence,infokv@per_sequence"
  POLICIES=$MAIN_POLICIES
  kvpress=$(python3 "$root/scripts/reference/kvpress_parity.py" cases 2>/dev/null || true)
  [ -z "$kvpress" ] || POLICIES="$POLICIES,$kvpress,infokv:sinks=0,recent=0@per_layer_head"
else
  MAIN_POLICIES=$POLICIES
fi
echo "policies: $POLICIES"

common=(--model "$model" --text "$text" --jobs "$jobs")
declare -A runs=(
  [prefill]="--scenarios prefill --contexts 1024,2048 --prefill-budgets 0.4,0.2,0.1 --continuation 64 --policies $POLICIES"
  [decode]="--scenarios decode --decode-tokens 2048 --periods 128 --decode-budgets 0.25,0.125 --policies $MAIN_POLICIES"
  [influence]="--scenarios influence --influence-prefix 512 --influence-tokens 512"
  [retrieval]="--scenarios retrieval --passage 64 --gaps 448 --passkey-context 512 --passkey-trials 1 --passkey-depths 0.5 --prefill-budgets 0.2 --policies $MAIN_POLICIES"
)
read -r -a order <<<"${RUNS:-prefill decode influence retrieval}"
for side in base new; do
  bin=$base_bin
  [ "$side" = new ] && bin=$new_bin
  for run in "${order[@]}"; do
    out="$work/$side/$run"
    mkdir -p "$out"
    read -r -a args <<<"${runs[$run]}"
    extra=()
    [ "$run" = prefill ] && extra=(--dump-keep "$out/keep")
    start=$(date +%s)
    "$bin" "${common[@]}" "${args[@]}" "${extra[@]}" --out "$out" >"$out/log.txt" 2>&1 ||
      { echo "$side $run failed:" >&2; tail -5 "$out/log.txt" >&2; exit 1; }
    echo "ran $side $run in $(( $(date +%s) - start )) s"
  done
done

python3 - "$work" "${order[@]}" <<'PY'
import csv, filecmp, os, sys
work, runs = sys.argv[1], sys.argv[2:]
ignored = {"library_seconds"}  # time, not a decision
files = {"quality.csv", "influence.csv", "passkey.csv", "repeat_first_read.csv",
         "keep/keep_sets.jsonl", "keep/tokens.json"}
different = 0
for run in runs:
    for name in sorted(files):
        a, b = (os.path.join(work, side, run, name) for side in ("base", "new"))
        if not os.path.exists(a) and not os.path.exists(b):
            continue
        where = f"{run}/{name}"
        if not (os.path.exists(a) and os.path.exists(b)):
            print(f"DIFFERENT  {where}: only in {'base' if os.path.exists(a) else 'new'}")
            different += 1
            continue
        if not name.endswith(".csv"):
            same = filecmp.cmp(a, b, shallow=False)
            n = sum(1 for _ in open(a))
            print(f"{'same      ' if same else 'DIFFERENT '} {where}: {n} lines" + ("" if same else ", not byte-identical"))
            different += not same
            continue
        ra, rb = (list(csv.DictReader(open(p))) for p in (a, b))
        cols = [c for c in (ra[0].keys() if ra else []) if c not in ignored]
        bad = [i for i, (x, y) in enumerate(zip(ra, rb)) if any(x.get(c) != y.get(c) for c in cols)]
        hdr_same = open(a).readline() == open(b).readline()
        if len(ra) != len(rb) or bad or not hdr_same:
            different += 1
            first = f"; first at row {bad[0] + 1}: {dict(ra[bad[0]])} vs {dict(rb[bad[0]])}" if bad else ""
            print(f"DIFFERENT  {where}: {len(ra)} vs {len(rb)} rows, {len(bad)} differ{first}")
        elif not ra:
            print(f"same       {where}: header only (the run has no such rows)")
        else:
            skipped = sorted(ignored & set(ra[0].keys()))
            print(f"same       {where}: {len(ra)} rows, {len(cols)} columns" +
                  (f" (not compared: {', '.join(skipped)})" if skipped else ""))
print("verdict: " + ("every decision and number is the same" if different == 0 else f"{different} file(s) differ"))
sys.exit(1 if different else 0)
PY
