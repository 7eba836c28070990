#!/usr/bin/env bash
# Builds the benchmark suite for this CPU's best x86-64 level, runs every benchmark binary
# (3 repetitions, medians), counts one compression event's instructions with callgrind, and
# prints a Markdown table of ratios against the machine's own limits measured in the same run.
# Results (JSON, callgrind output, the table) go to build-bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
command -v valgrind >/dev/null 2>&1 || { apt-get install -y -q valgrind >/dev/null 2>&1 || true; }

arch=$(bash scripts/cpu_arch.sh)
flags=""
[ -n "$arch" ] && flags="-march=$arch"
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DINFOKV_BUILD_TESTS=OFF -DINFOKV_BUILD_EXAMPLES=OFF \
      -DINFOKV_INSTALL=OFF "-DCMAKE_CXX_FLAGS=$flags" >/dev/null
cmake --build build-bench -j"$(nproc)" >/dev/null
out=build-bench/results
mkdir -p "$out"
for area in attention keys entropy evolution select compaction event; do
  echo "running infokv_bench_$area ..." >&2
  ./build-bench/bench/infokv_bench_$area --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
      --benchmark_min_time=0.2 --benchmark_format=json --benchmark_out="$out/$area.json" >/dev/null
done

# Instruction counts need a build valgrind can run: AVX2 at most (valgrind has no AVX-512).
callgrind=""
if command -v valgrind >/dev/null 2>&1; then
  cg_flags=""
  grep -qw avx2 /proc/cpuinfo && cg_flags="-march=x86-64-v3"
  cmake -S . -B build-callgrind -DCMAKE_BUILD_TYPE=Release -DINFOKV_BUILD_TESTS=OFF -DINFOKV_BUILD_EXAMPLES=OFF \
        -DINFOKV_INSTALL=OFF "-DCMAKE_CXX_FLAGS=$cg_flags" >/dev/null
  cmake --build build-callgrind -j"$(nproc)" --target infokv_event_once >/dev/null
  echo "running callgrind on one compression event ..." >&2
  valgrind --tool=callgrind --toggle-collect='*infokv_compression_event*' --callgrind-out-file="$out/callgrind.out" \
      ./build-callgrind/bench/infokv_event_once 1024 >/dev/null 2>"$out/callgrind.log"
  callgrind="$out/callgrind.out"
fi
python3 bench/report.py "$out" "$arch" "$callgrind" | tee "$out/report.md"
