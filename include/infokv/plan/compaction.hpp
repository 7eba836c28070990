// SPDX-License-Identifier: Apache-2.0
// Applying an eviction plan to host memory: copy each moved slot's K/V rows (every layer the
// stream covers, every head of its page) and position, then shrink the streams in the page
// table. The compressor does this in apply_mode::in_place; engines that apply plans themselves
// (plan_only) may call the same functions on their host pools. apply_reindex is the table-only
// form of apply_mode::reindex (cell-addressed caches: nothing but page-table entries move).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <span>

#include "infokv/config.hpp"
#include "infokv/plan/eviction_plan.hpp"
#include "infokv/simd/kernels.hpp"

INFOKV_BEGIN_NAMESPACE

/// Copies `run` consecutive logical slots m.src.. of stream m.stream to m.dst.. (K and V rows
/// and positions); the run stays inside one source and one destination page. Moves must be
/// applied before the table is shrunk (they address pages through it). Rows are streamed past
/// the cache where aligned; call simd::store_fence(Isa{}) after the last move (apply_slot_moves
/// does).
template <class Isa = simd::native_isa, class View>
void apply_slot_run(const View& view, const slot_move& m, std::size_t run = 1) noexcept {
  using T = typename View::element_type;
  using Layout = typename View::layout_type;
  const std::size_t gs = m.stream;
  const std::size_t ps = view.page_size(), D = view.head_dim(), H = view.heads_per_page();
  const std::size_t sp = view.stream_page(gs, m.src / ps), dp = view.stream_page(gs, m.dst / ps);
  const std::size_t so = m.src % ps, doff = m.dst % ps;
  const std::size_t stride = view.page_stride();
  const std::size_t l_first = view.layers_per_stream() == 1 ? view.stream_layer(gs) : 0;
  const std::size_t l_last = view.layers_per_stream() == 1 ? l_first + 1 : view.num_layers();
  for (std::size_t l = l_first; l < l_last; ++l) {
    for (T* pool : {view.key_pool(l), view.value_pool(l)}) {
      if constexpr (Layout::slot_contiguous) {
        simd::stream_copy(Isa{}, pool + dp * stride + Layout::offset(doff, 0, ps, H, D),
                          pool + sp * stride + Layout::offset(so, 0, ps, H, D), run * H * D * sizeof(T));
      } else {
        for (std::size_t h = 0; h < H; ++h)
          simd::stream_copy(Isa{}, pool + dp * stride + Layout::offset(doff, h, ps, H, D),
                            pool + sp * stride + Layout::offset(so, h, ps, H, D), run * D * sizeof(T));
      }
    }
  }
  if (auto* pos = view.domain_positions(view.stream_domain(gs)); pos != nullptr)
    for (std::size_t r = 0; r < run; ++r) pos[dp * ps + doff + r] = pos[sp * ps + so + r];
}

/// One slot: apply_slot_run with a run of 1.
template <class Isa = simd::native_isa, class View>
void apply_slot_move(const View& view, const slot_move& m) noexcept {
  apply_slot_run<Isa>(view, m, 1);
}

namespace detail {
/// Asks the cache for the source K/V rows of a move a few moves ahead (random pages defeat the
/// hardware prefetcher). Destinations are not fetched: they are overwritten by streaming stores.
template <class View>
void prefetch_slot(const View& view, const slot_move& m) noexcept {
  using T = typename View::element_type;
  using Layout = typename View::layout_type;
  const std::size_t ps = view.page_size(), D = view.head_dim(), H = view.heads_per_page();
  const std::size_t sp = view.stream_page(m.stream, m.src / ps);
  const std::size_t l = view.layers_per_stream() == 1 ? view.stream_layer(m.stream) : 0;
  const std::size_t rows = Layout::slot_contiguous ? 1 : H;
  const std::size_t bytes = (Layout::slot_contiguous ? H : 1) * D * sizeof(T);
  for (const T* pool : {view.key_pool(l), view.value_pool(l)})
    for (std::size_t h = 0; h < rows; ++h) {
      const char* src = reinterpret_cast<const char*>(pool + sp * view.page_stride() + Layout::offset(m.src % ps, h, ps, H, D));
      for (std::size_t b = 0; b < bytes; b += 64) __builtin_prefetch(src + b, 0);
    }
}
}  // namespace detail

/// Applies moves in order, merging consecutive moves whose sources and destinations are both
/// consecutive slots of the same pages into one copy (evicted and kept tokens come in runs).
template <class Isa = simd::native_isa, class View>
void apply_slot_moves(const View& view, std::span<const slot_move> moves) noexcept {
  // Far enough ahead to cover a DRAM round trip for small rows, near enough to stay in L1.
  constexpr std::size_t kAhead = 12;
  const std::size_t ps = view.page_size();
  std::size_t prefetched = 0;
  for (std::size_t i = 0; i < moves.size();) {
    const slot_move& m = moves[i];
    std::size_t run = 1;
    while (i + run < moves.size() && moves[i + run].stream == m.stream && moves[i + run].src == m.src + run &&
           moves[i + run].dst == m.dst + run && m.src % ps + run < ps && m.dst % ps + run < ps)
      ++run;
    for (; prefetched < std::min(moves.size(), i + run + kAhead); ++prefetched)
      if (prefetched >= i + run) detail::prefetch_slot(view, moves[prefetched]);
    apply_slot_run<Isa>(view, m, run);
    i += run;
  }
  simd::store_fence(Isa{});
}

/// Sets each planned stream's length to its new_length: last_page_len, and for the CSR form the
/// stream's segment shrinks and every later segment shifts left, so the table stays a valid CSR
/// and the pages past each new end are no longer referenced. `streams` is sorted by stream (as
/// every plan is).
template <class View>
void truncate_streams(const View& view, std::span<const stream_plan> streams) noexcept {
  if (streams.empty()) return;
  auto& p = view.params();
  using I = typename View::index_type;
  const std::size_t ps = view.page_size();
  std::size_t first = view.num_streams();
  for (std::size_t i = 1; i < streams.size(); ++i)
    INFOKV_ASSERT(streams[i - 1].stream < streams[i].stream, "plan streams must be sorted");
  for (const stream_plan& sp : streams) {
    const std::size_t pages = (sp.new_length + ps - 1) / ps;
    p.last_page_len[sp.stream] =
        static_cast<I>(view.dense() ? sp.new_length : (pages == 0 ? 0 : sp.new_length - (pages - 1) * ps));
    first = std::min<std::size_t>(first, sp.stream);
  }
  if (view.dense()) return;
  // Walk the streams from the first planned one, compacting segments in place. The page counts
  // of planned streams now follow from last_page_len; others keep their old count.
  const std::size_t N = view.num_streams();
  I write = p.indptr[first];
  I old_begin = p.indptr[first];
  std::size_t next_plan = 0;
  for (std::size_t s = first; s < N; ++s) {
    const I old_end = p.indptr[s + 1];
    std::size_t count = static_cast<std::size_t>(old_end - old_begin);
    if (next_plan < streams.size() && streams[next_plan].stream == s)
      count = (streams[next_plan++].new_length + ps - 1) / ps;
    if (write != old_begin) std::memmove(p.indices + write, p.indices + old_begin, count * sizeof(I));
    p.indptr[s] = write;
    write = static_cast<I>(write + static_cast<I>(count));
    old_begin = old_end;
  }
  p.indptr[N] = write;
}

/// Both steps: the moves, then the table.
template <class Isa = simd::native_isa, class View>
void apply_plan(const View& view, const eviction_plan& plan) noexcept {
  apply_slot_moves<Isa>(view, plan.moves);
  truncate_streams(view, plan.streams);
}

/// apply_mode::reindex on a cell-addressed view (page_size 1, CSR): each move copies the page-table
/// entry of slot src to slot dst, so the survivor's cell is addressed from its new slot and no
/// K/V row moves; then the streams shrink as in apply_plan. The freed cells are plan.freed.
template <class View>
void apply_reindex(const View& view, const eviction_plan& plan) noexcept {
  INFOKV_ASSERT(view.page_size() == 1 && !view.dense(), "reindex needs a cell-addressed view");
  auto& p = view.params();
  for (const slot_move& m : plan.moves) {
    const auto base = static_cast<std::size_t>(p.indptr[m.stream]);
    p.indices[base + m.dst] = p.indices[base + m.src];
  }
  truncate_streams(view, plan.streams);
}

INFOKV_END_NAMESPACE
