#!/usr/bin/env bash
# The CUDA checks on a machine with a GPU: the kernel tests, the same tests under
# compute-sanitizer (memcheck; racecheck and synccheck on the block-cooperative kernels), and the
# CUDA benchmarks. Usage: run_cuda_checks.sh [DIR_WITH_BINARIES] [OUTPUT_DIR]; DIR defaults to
# build (tests/ and bench/ below it), or holds both binaries directly.
set -uo pipefail
dir=${1:-build}
out=${2:-cuda-results}
mkdir -p "$out"
tests=$dir/tests/infokv_cuda_tests; [ -x "$tests" ] || tests=$dir/infokv_cuda_tests
bench=$dir/bench/infokv_bench_cuda; [ -x "$bench" ] || bench=$dir/infokv_bench_cuda
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv | tee "$out/device.txt"
rc=0
"$tests" --gtest_output="json:$out/tests.json" >"$out/tests.log" 2>&1 || rc=1
tail -n 30 "$out/tests.log"
"$bench" --benchmark_min_time=0.1 --benchmark_out="$out/bench.json" --benchmark_out_format=json \
  2>&1 | tee "$out/bench.txt" || rc=1
sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [ -x "$sanitizer" ]; then
  timeout 150 "$sanitizer" --tool memcheck --leak-check full --error-exitcode 3 "$tests" --gtest_brief=1 \
    >"$out/memcheck.log" 2>&1 || rc=1
  echo "memcheck: $(grep -E 'ERROR SUMMARY|PASSED|FAILED' "$out/memcheck.log" | tr '\n' ' ')"
  for tool in racecheck synccheck; do
    timeout 90 "$sanitizer" --tool $tool --error-exitcode 3 "$tests" --gtest_brief=1 \
      "--gtest_filter=CudaViewKernels/0.*:CudaSelect.*:CudaElementKernels/2.*" >"$out/$tool.log" 2>&1 || rc=1
    echo "$tool: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED' "$out/$tool.log" | tr '\n' ' ')"
  done
else
  echo "compute-sanitizer not found: sanitizer runs skipped"
fi
exit $rc
