#!/usr/bin/env bash
# llama-infokv-reason on bad input: a malformed problem file, an unknown checker, an unknown policy
# or parameter, a variant named twice, an empty budget item, a policy that reads V rows without
# --flash-attn, a token budget that could never evict, a model without a chat template. Each must
# end with exit status 1 (2 for a command-line error), one "error: ..." line naming the cause, and
# no results file.
# usage: reasoning_bad_input.sh LLAMA_INFOKV_REASON MODEL DATA_DIR
set -uo pipefail
reason=$1 model=$2 data=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
expect() {  # status regex args...
  local want=$1 regex=$2
  shift 2
  rm -f "$tmp/out.jsonl"
  local err rc
  err=$("$reason" --out "$tmp/out.jsonl" "$@" 2>&1 >/dev/null)
  rc=$?
  if [ "$rc" -ne "$want" ]; then echo "FAIL ($*): exit status $rc, expected $want"; echo "$err"; fail=1; return; fi
  if ! grep -Eq "^error: .*$regex" <<<"$err"; then echo "FAIL ($*): no error line matching '$regex'"; echo "$err"; fail=1; fi
  if [ "$(grep -c '^error: ' <<<"$err")" -ne 1 ]; then echo "FAIL ($*): not exactly one error line"; echo "$err"; fail=1; fi
  if [ -e "$tmp/out.jsonl" ]; then echo "FAIL ($*): a results file was written"; fail=1; fi
  echo "ok: $(grep '^error: ' <<<"$err")"
}
expect 1 "reasoning_malformed.jsonl:2: not JSON" --model "$model" --problems "$data/reasoning_malformed.jsonl"
expect 1 "reasoning_unknown_checker.jsonl:1: unknown checker 'sympy'" --model "$model" --problems "$data/reasoning_unknown_checker.jsonl"
expect 1 "cannot read the problem set" --model "$model" --problems "$tmp/absent.jsonl"
expect 2 "unknown parameter 'beta'" --model "$model" --problems "$data/reasoning_problems.jsonl" --variants infokv:beta=1
expect 2 "unknown policy 'h2o'" --model "$model" --problems "$data/reasoning_problems.jsonl" --variants h2o
expect 2 "--variants names 'snapkv' twice" --model "$model" --problems "$data/reasoning_problems.jsonl" --variants snapkv,rkv,snapkv
expect 2 "--budgets has an empty item" --model "$model" --problems "$data/reasoning_problems.jsonl" --budgets 128,,25%
expect 1 "variant expected-attention reads V rows.*give --flash-attn" --model "$model" \
  --problems "$data/reasoning_problems.jsonl" --variants full,expected-attention --budgets 80
expect 1 "a budget of 4096 tokens is not below" --model "$model" --problems "$data/reasoning_problems.jsonl" --budgets 4096 \
  --variants snapkv --n-predict 64
# The same model with its chat template's key renamed (same length, so the GGUF stays valid).
python3 - "$model" "$tmp/no_template.gguf" <<'PY'
import sys
src, dst = sys.argv[1], sys.argv[2]
data = bytearray(open(src, "rb").read())
key = b"tokenizer.chat_template"
at = data.find(key)
if at < 0:
    sys.exit("the model has no chat template to remove")
data[at:at + len(key)] = b"tokenizer.chat_templatX"
open(dst, "wb").write(data)
PY
expect 1 "no chat template" --model "$tmp/no_template.gguf" --problems "$data/reasoning_problems.jsonl"
exit $fail
