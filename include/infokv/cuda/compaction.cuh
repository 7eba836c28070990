// SPDX-License-Identifier: Apache-2.0
// Compaction of device pools: the moves of an eviction plan (holes below the new length filled
// from the tail, both ascending, as the host compressor plans them) made from sorted keep lists
// on the device, and applied to the K and V rows of every layer a stream covers, within and
// across pages, with the slot positions. The host oracle is apply_slot_moves; page-table
// truncation stays with the engine, which owns its device page tables (truncate_streams does it
// for a host copy).
#pragma once

#include "infokv/cuda/common.cuh"  // first: its #error names the problem under a host compiler

#include <cub/block/block_scan.cuh>

#include <cstddef>
#include <cstdint>

#include "infokv/plan/eviction_plan.hpp"
#include "infokv/view/paged_kv_cache_view.hpp"

INFOKV_BEGIN_NAMESPACE
namespace cuda {

/// Moves grouped in rows: move m of row r is moves[r * row_stride + m], valid for m < counts[r]
/// (counts == nullptr: all max_moves are valid). A flat list from the host is rows = 1,
/// row_stride = max_moves = its size, counts = nullptr.
struct move_list {
  const slot_move* moves = nullptr;
  const std::int32_t* counts = nullptr;
  std::size_t rows = 1;
  std::size_t row_stride = 0;
  std::size_t max_moves = 0;
};

namespace detail {

inline constexpr int plan_threads = 1024;
inline constexpr int move_warps = 4;

__global__ void __launch_bounds__(plan_threads)
    plan_moves_kernel(const std::uint32_t* keep, const std::int32_t* kept, const std::int32_t* streams, std::size_t ld,
                      slot_move* moves, std::int32_t* counts) {
  using scan = cub::BlockScan<int, plan_threads>;
  __shared__ typename scan::TempStorage storage;
  __shared__ int total;
  const std::size_t row = blockIdx.x;
  const std::uint32_t* kp = keep + row * ld;
  const std::size_t n = static_cast<std::size_t>(kept[row] < 0 ? 0 : kept[row]);
  // f = keep entries below n (they stay); the n - f entries from f on are the tail survivors.
  std::size_t lo = 0, hi = n;
  while (lo < hi) {
    const std::size_t mid = (lo + hi) / 2;
    if (kp[mid] < n) lo = mid + 1; else hi = mid;
  }
  const std::size_t f = lo;
  std::size_t running = 0;
  for (std::size_t base = 0; base < n; base += plan_threads) {
    const std::size_t j = base + threadIdx.x;
    int hole = 0;
    if (j < n) {
      std::size_t a = 0, b = f;  // is slot j among kp[0, f)?
      while (a < b) {
        const std::size_t mid = (a + b) / 2;
        if (kp[mid] < j) a = mid + 1; else b = mid;
      }
      hole = !(a < f && kp[a] == j);
    }
    int idx = 0;
    scan(storage).ExclusiveSum(hole, idx);
    if (hole) {
      const std::size_t h = running + static_cast<std::size_t>(idx);
      moves[row * ld + h] = slot_move{static_cast<std::uint32_t>(streams[row]), kp[f + h], static_cast<std::uint32_t>(j)};
    }
    if (threadIdx.x == plan_threads - 1) total = idx + hole;
    __syncthreads();
    running += static_cast<std::size_t>(total);
    __syncthreads();
  }
  if (threadIdx.x == 0) counts[row] = static_cast<std::int32_t>(n - f);
}

/// Copies `bytes` with one warp: 16-byte words when both ends allow, else 2-byte words.
__device__ __forceinline__ void warp_copy(void* dst, const void* src, std::size_t bytes, unsigned lane) {
  const auto d = reinterpret_cast<std::uintptr_t>(dst), s = reinterpret_cast<std::uintptr_t>(src);
  if (((d | s | bytes) & 15u) == 0) {
    auto* o = static_cast<uint4*>(dst);
    const auto* i = static_cast<const uint4*>(src);
    for (std::size_t w = lane; w < bytes / 16; w += 32) o[w] = i[w];
  } else {
    auto* o = static_cast<unsigned short*>(dst);
    const auto* i = static_cast<const unsigned short*>(src);
    for (std::size_t w = lane; w < bytes / 2; w += 32) o[w] = i[w];
  }
}

template <class View>
__global__ void __launch_bounds__(move_warps * 32) apply_moves_kernel(View view, move_list list) {
  using T = typename View::element_type;
  using Layout = typename View::layout_type;
  const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::size_t row = blockIdx.y;
  const std::size_t m = static_cast<std::size_t>(blockIdx.x) * move_warps + warp;
  const std::size_t count = list.counts == nullptr ? list.max_moves
                                                   : static_cast<std::size_t>(list.counts[row] < 0 ? 0 : list.counts[row]);
  if (m >= count || m >= list.max_moves) return;
  const slot_move mv = list.moves[row * list.row_stride + m];
  const std::size_t gs = mv.stream;
  const std::size_t l = view.layers_per_stream() == 1 ? view.stream_layer(gs) : blockIdx.z;
  if (view.layers_per_stream() == 1 && blockIdx.z != 0) return;
  const std::size_t ps = view.page_size(), D = view.head_dim(), H = view.heads_per_page();
  const std::size_t sp = view.stream_page(gs, mv.src / ps), dp = view.stream_page(gs, mv.dst / ps);
  const std::size_t so = mv.src % ps, doff = mv.dst % ps, stride = view.page_stride();
  T* pools[2] = {view.key_pool(l), view.value_pool(l)};
  for (T* pool : pools) {
    if constexpr (Layout::slot_contiguous) {
      warp_copy(pool + dp * stride + Layout::offset(doff, 0, ps, H, D), pool + sp * stride + Layout::offset(so, 0, ps, H, D),
                H * D * sizeof(T), lane);
    } else {
      for (std::size_t h = 0; h < H; ++h)
        warp_copy(pool + dp * stride + Layout::offset(doff, h, ps, H, D), pool + sp * stride + Layout::offset(so, h, ps, H, D),
                  D * sizeof(T), lane);
    }
  }
  if (blockIdx.z == 0 && lane == 0) {
    if (auto* pos = view.domain_positions(view.stream_domain(gs)); pos != nullptr) pos[dp * ps + doff] = pos[sp * ps + so];
  }
}

}  // namespace detail

/// From sorted keep lists (select_top_k's output: keep [rows][ld], kept [rows]) the moves that
/// compact each row's survivors into slots [0, kept): moves [rows][ld], counts [rows]; the same
/// moves, in the same order, as the host compressor's plan. `streams[r]` is row r's stream index
/// (written into each slot_move). No workspace.
[[nodiscard]] inline status plan_moves(const std::uint32_t* keep, const std::int32_t* kept, const std::int32_t* streams,
                                       std::size_t rows, std::size_t ld, slot_move* moves, std::int32_t* counts,
                                       cudaStream_t stream) noexcept {
  if (rows == 0) return {};
  if (keep == nullptr || kept == nullptr || streams == nullptr || moves == nullptr || counts == nullptr)
    return errc::null_pointer;
  if (ld == 0 || rows > 0x7fffffffu) return errc::invalid_config;
  detail::plan_moves_kernel<<<static_cast<unsigned>(rows), detail::plan_threads, 0, stream>>>(keep, kept, streams, ld,
                                                                                             moves, counts);
  return launch_status();
}

/// Applies the moves to the device pools the view points at: for each move every layer the
/// stream covers, K and V, every head of its page, and the slot's position. Moves of one call must
/// have pairwise distinct source and destination slots (true of every plan), so they run in
/// parallel. No workspace.
template <class View>
[[nodiscard]] status apply_slot_moves(const View& view, const move_list& list, cudaStream_t stream) noexcept {
  if (list.max_moves == 0 || list.rows == 0) return {};
  if (list.moves == nullptr) return errc::null_pointer;
  if (list.row_stride < list.max_moves && list.rows > 1) return errc::invalid_config;
  if (view.page_size() == 0) return errc::invalid_page_size;
  const std::size_t blocks = (list.max_moves + detail::move_warps - 1) / detail::move_warps;
  if (blocks > 0x7fffffffu || list.rows > 65535 || view.num_layers() > 65535) return errc::invalid_config;
  const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(list.rows),
                  static_cast<unsigned>(view.layers_per_stream()));
  detail::apply_moves_kernel<<<grid, detail::move_warps * 32, 0, stream>>>(view, list);
  return launch_status();
}

}  // namespace cuda
INFOKV_END_NAMESPACE
