#!/usr/bin/env bash
# Prints the highest x86-64 level this CPU runs (x86-64-v4, x86-64-v3), or nothing. The library's
# kernels are chosen at compile time from the build's -march, so builds meant to be fast (the
# demo, the benchmarks) pass -march=$(bash scripts/cpu_arch.sh).
if grep -qw avx512f /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo \
   && grep -qw avx512dq /proc/cpuinfo; then
  echo x86-64-v4
elif grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && grep -qw f16c /proc/cpuinfo; then
  echo x86-64-v3
fi
