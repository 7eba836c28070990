#!/usr/bin/env bash
# The independent perplexity reference: llama.cpp's llama-perplexity, built from the sources
# vendored in PyPI's llama-cpp-python sdist (0.3.36), run on a text file with the same protocol
# as `infokv_engine perplexity` (chunks of 512 tokens, the second half of each scored), then the
# engine on the same file. About 8 minutes to build on 2 cores, once.
# usage: llama_cpp_perplexity.sh MODEL.gguf TEXT [ENGINE_BINARY]
set -euo pipefail
model=$1
text=$2
engine=${3:-build/examples/infokv_engine}
dir=${INFOKV_REFERENCE_DIR:-$HOME/.cache/infokv/reference}
version=0.3.36
src=$dir/llama_cpp_python-$version
if [ ! -x "$dir/llama-build/bin/llama-perplexity" ]; then
  mkdir -p "$dir"
  python3 -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$dir" >&2
  tar -xzf "$dir/llama_cpp_python-$version.tar.gz" -C "$dir"
  rm -f "$src/vendor/llama.cpp/.git"
  cmake -S "$src/vendor/llama.cpp" -B "$dir/llama-build" -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF >&2
  cmake --build "$dir/llama-build" --target llama-perplexity llama-tokenize -j"$(nproc)" >&2
fi
echo "== llama.cpp (llama-cpp-python $version sdist) =="
"$dir/llama-build/bin/llama-perplexity" -m "$model" -f "$text" -c 512 -b 512 -t "$(nproc)" 2>&1 |
  grep -E '^\[|Final estimate'
echo "== infokv_engine =="
"$engine" perplexity --model "$model" --text "$text" --ctx 512
