// SPDX-License-Identifier: Apache-2.0
// Top-k selection over each stream's scores on the GPU, with the host's total order: higher
// score first, NaN below every number, ties broken by the newer position (the host oracle is
// select_top_k_reference). Score and position are packed into one 64-bit key, so the order is
// strict and the kept set unique; one block per row radix-selects the k-th key (usually settled
// within the four score digits) and writes the kept slots in ascending order, the form of the
// keep lists in an eviction_plan.
#pragma once

#include "infokv/cuda/common.cuh"  // first: its #error names the problem under a host compiler

#include <cub/block/block_scan.cuh>

#include <cstddef>
#include <cstdint>

#include "infokv/cuda/radix_select.cuh"

INFOKV_BEGIN_NAMESPACE
namespace cuda {

/// One launch over `rows` rows of scores.
struct select_args {
  const float* scores = nullptr;          // [rows][ld]
  const std::int32_t* positions = nullptr;  // [rows][ld], unique and >= 0 per row; null: the slot
  const std::int32_t* lengths = nullptr;    // [rows] live tokens per row (<= ld)
  const std::int32_t* keep_counts = nullptr;  // [rows] tokens to keep (>= length keeps all)
  std::size_t rows = 0;
  std::size_t ld = 0;
  std::uint32_t* keep = nullptr;  // [rows][ld] out: kept slots, ascending, first kept[r] valid
  std::int32_t* kept = nullptr;   // [rows] out: min(keep_count, length)
};

namespace detail {

inline constexpr int select_threads = 1024;

__global__ void __launch_bounds__(select_threads) select_top_k_kernel(select_args a) {
  using scan = cub::BlockScan<int, select_threads>;
  __shared__ typename scan::TempStorage scan_storage;
  __shared__ radix_shared rsh;
  __shared__ int chunk_total[2];
  const std::size_t row = blockIdx.x;
  const std::int32_t len = a.lengths[row];
  const std::size_t n = len <= 0 ? 0 : (static_cast<std::size_t>(len) > a.ld ? a.ld : static_cast<std::size_t>(len));
  const std::int32_t kc = a.keep_counts[row];
  const std::size_t k = kc <= 0 ? 0 : (static_cast<std::size_t>(kc) > n ? n : static_cast<std::size_t>(kc));
  const float* s = a.scores + row * a.ld;
  const std::int32_t* pos = a.positions == nullptr ? nullptr : a.positions + row * a.ld;
  const auto key = [&](std::size_t i) -> std::uint64_t {
    const std::uint32_t p = pos == nullptr ? static_cast<std::uint32_t>(i) : static_cast<std::uint32_t>(pos[i]);
    return (static_cast<std::uint64_t>(order_key(s[i])) << 32) | p;
  };
  std::uint64_t kth = 0;
  std::size_t need = 0;
  const bool all = k == n;
  if (!all && k > 0) {
    const auto visit = [&](auto&& f) {
      for (std::size_t i = threadIdx.x; i < n; i += select_threads) f(key(i));
    };
    block_radix_select<std::uint64_t>(visit, k, rsh, kth, need);
  }
  std::uint32_t* out = a.keep + row * a.ld;
  std::size_t written = 0, ties = 0;
  if (k > 0) {
    for (std::size_t base = 0; base < n; base += select_threads) {
      const std::size_t i = base + threadIdx.x;
      int above = 0, tie = 0;
      if (i < n) {
        if (all) {
          above = 1;
        } else {
          const std::uint64_t u = key(i);
          above = u > kth;
          tie = u == kth;
        }
      }
      // Ties (only with duplicate positions) are taken in slot order until `need` are kept.
      int tie_rank = 0, take = 0, offset = 0;
      scan(scan_storage).ExclusiveSum(tie, tie_rank);
      take = above || (tie && ties + static_cast<std::size_t>(tie_rank) < need);
      __syncthreads();
      scan(scan_storage).ExclusiveSum(take, offset);
      if (take) out[written + static_cast<std::size_t>(offset)] = static_cast<std::uint32_t>(i);
      if (threadIdx.x == select_threads - 1) {
        chunk_total[0] = offset + take;
        chunk_total[1] = tie_rank + tie;
      }
      __syncthreads();
      written += static_cast<std::size_t>(chunk_total[0]);
      ties += static_cast<std::size_t>(chunk_total[1]);
      __syncthreads();
    }
  }
  if (threadIdx.x == 0) a.kept[row] = static_cast<std::int32_t>(k);
}

}  // namespace detail

/// Selects, per row, the keep_counts[r] best of the first lengths[r] scores and writes their slots
/// in ascending order. No workspace.
[[nodiscard]] inline status select_top_k(const select_args& a, cudaStream_t stream) noexcept {
  if (a.rows == 0) return {};
  if (a.scores == nullptr || a.lengths == nullptr || a.keep_counts == nullptr || a.keep == nullptr ||
      a.kept == nullptr)
    return errc::null_pointer;
  if (a.ld == 0 || a.ld > 0x7fffffffu || a.rows > 0x7fffffffu) return errc::invalid_config;
  detail::select_top_k_kernel<<<static_cast<unsigned>(a.rows), detail::select_threads, 0, stream>>>(a);
  return launch_status();
}

}  // namespace cuda
INFOKV_END_NAMESPACE
