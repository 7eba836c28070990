#!/usr/bin/env bash
# llama.cpp for the llama.cpp host (examples/llama_cpp): the sources vendored in PyPI's
# llama-cpp-python 0.3.36 sdist (ggml-org/llama.cpp@0c1e57098), checked by sha256, built once as
# static libraries for this CPU and installed with llama.cpp's own CMake package config into
# $INFOKV_REFERENCE_DIR (default ~/.cache/infokv/reference). About 8 minutes on 2 cores.
# Prints the install prefix (pass it to CMake as -DINFOKV_LLAMA_CPP_PREFIX=...).
set -euo pipefail
dir=${INFOKV_REFERENCE_DIR:-$HOME/.cache/infokv/reference}
version=0.3.36
sha256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
commit=0c1e57098
prefix=$dir/llama.cpp-$commit-native
if [ -f "$prefix/.infokv-complete" ]; then echo "$prefix"; exit 0; fi
mkdir -p "$dir"
tarball=$dir/llama_cpp_python-$version.tar.gz
if [ ! -f "$tarball" ] || ! echo "$sha256  $tarball" | sha256sum -c --quiet - 2>/dev/null; then
  rm -f "$tarball"
  # The sdist's address from PyPI's simple index (pip download would run the sdist's build
  # backend, a minute and a half for nothing).
  python3 - "$version" "$tarball" >&2 <<'PY'
import json, sys, urllib.request
version, out = sys.argv[1], sys.argv[2]
req = urllib.request.Request("https://pypi.org/simple/llama-cpp-python/",
                             headers={"Accept": "application/vnd.pypi.simple.v1+json"})
with urllib.request.urlopen(req, timeout=60) as r:
    files = json.load(r)["files"]
name = f"llama_cpp_python-{version}.tar.gz"
urllib.request.urlretrieve([f["url"] for f in files if f["filename"] == name][0], out)
PY
fi
echo "$sha256  $tarball" | sha256sum -c --quiet - >&2 || { echo "llama-cpp-python $version: sha256 mismatch" >&2; exit 1; }
src=$dir/llama_cpp_python-$version
[ -d "$src/vendor/llama.cpp/src" ] || tar -xzf "$tarball" -C "$dir"
rm -f "$src/vendor/llama.cpp/.git"
build=$dir/llama.cpp-$commit-build
# Only libllama and ggml; GGML_NATIVE for this CPU (the host's timings are llama.cpp's real speed).
# OpenMP off: ggml's own thread pool, so consumers need no OpenMP runtime.
cmake -S "$src/vendor/llama.cpp" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
      -DGGML_NATIVE=ON -DGGML_OPENMP=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_COMMON=OFF \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
      -DLLAMA_BUILD_APP=OFF -DCMAKE_INSTALL_PREFIX="$prefix" >&2
cmake --build "$build" -j"$(nproc)" >&2
cmake --install "$build" >&2
touch "$prefix/.infokv-complete"
echo "$prefix"
