#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for SECONDS (default 60)
# from a copy of its seed corpus in tests/fuzz/corpus. Prints libFuzzer's final statistics; a
# crash, leak, out-of-memory or timeout leaves its input in build-fuzz/artifacts and fails the
# script.
# usage: run_fuzzers.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
bash scripts/install_deps.sh  # Eigen for the GGUF reader the gguf target fuzzes
command -v clang++ >/dev/null 2>&1 || apt-get install -y -q clang libclang-rt-14-dev >/dev/null
cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug -DINFOKV_BUILD_FUZZERS=ON \
      -DINFOKV_BUILD_BENCHMARKS=OFF -DINFOKV_BUILD_EXAMPLES=OFF -DINFOKV_ENABLE_CUDA=OFF -DINFOKV_INSTALL=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target infokv_fuzz_compress infokv_fuzz_gguf
mkdir -p build-fuzz/artifacts
for target in compress gguf; do
  corpus=build-fuzz/corpus-$target
  mkdir -p "$corpus"
  cp -n tests/fuzz/corpus/$target/* "$corpus"/ 2>/dev/null || true
  extra=()
  [ "$target" = gguf ] && extra=(-malloc_limit_mb=512)
  echo "== infokv_fuzz_$target, $seconds s =="
  ./build-fuzz/tests/infokv_fuzz_$target "$corpus" -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix=build-fuzz/artifacts/ "${extra[@]}" 2>&1 | grep -E '^(#[0-9]+ +DONE|stat::|SUMMARY|==[0-9]+==ERROR)' || true
  if [ -n "$(ls -A build-fuzz/artifacts)" ]; then  # crash-, leak-, oom- or timeout- inputs
    echo "infokv_fuzz_$target found a failing input: build-fuzz/artifacts/"
    exit 1
  fi
done
