// SPDX-License-Identifier: Apache-2.0
// Plan stage: turn a stream's keep flags into its part of the eviction plan (the kept slots,
// the slot moves that fill holes below the new length from the tail, the pages freed), and,
// once every stream is planned, commit the plan: apply it to the cache (apply_mode::in_place) or
// to the page table alone (apply_mode::reindex), move the per-token state the same way and set
// the new lengths. Nothing changes before the
// commit, so a scorer failing on a later stream leaves state and cache as they were.
#pragma once

#include <cstddef>
#include <cstdint>

#include "infokv/config.hpp"
#include "infokv/plan/compaction.hpp"
#include "infokv/plan/eviction_plan.hpp"
#include "infokv/sequence_state.hpp"

INFOKV_BEGIN_NAMESPACE
namespace plan_stage {

/// Starts an empty plan.
inline void clear(detail::sequence_data& d) noexcept {
  d.plan_stream_count = d.plan_keep_count = d.plan_move_count = d.plan_freed_count = 0;
}

/// Appends stream s's (global gs) keep list, moves and freed pages to the plan. Freed pages are
/// the pages past the new end, or under apply_mode::reindex the evicted tokens' cells.
template <class View>
void add_stream(const View& view, detail::sequence_data& d, std::size_t s, std::size_t gs,
                const std::uint32_t* keep, apply_mode mode) noexcept {
  const std::size_t T = d.length[s];
  std::size_t n = 0;
  for (std::size_t i = 0; i < T; ++i) n += keep[i];
  stream_plan sp;
  sp.stream = static_cast<std::uint32_t>(gs);
  sp.old_length = static_cast<std::uint32_t>(T);
  sp.new_length = static_cast<std::uint32_t>(n);
  sp.keep_offset = static_cast<std::uint32_t>(d.plan_keep_count);
  for (std::size_t i = 0; i < T; ++i)
    if (keep[i]) d.plan_keep[d.plan_keep_count++] = static_cast<std::uint32_t>(i);
  // Pair holes below n with survivors at or above n, both ascending: at most min(n, T - n)
  // moves, so half the capacity per stream.
  std::size_t hole = 0, tail = n;
  while (true) {
    while (hole < n && keep[hole]) ++hole;
    while (tail < T && !keep[tail]) ++tail;
    if (hole >= n || tail >= T) break;
    d.plan_moves[d.plan_move_count++] = {static_cast<std::uint32_t>(gs), static_cast<std::uint32_t>(tail),
                                         static_cast<std::uint32_t>(hole)};
    ++hole;
    ++tail;
  }
  const std::size_t ps = view.page_size();
  if (mode == apply_mode::reindex) {
    for (std::size_t i = 0; i < T; ++i)
      if (!keep[i])
        d.plan_freed[d.plan_freed_count++] = {static_cast<std::uint32_t>(gs),
                                              static_cast<std::int32_t>(view.stream_page(gs, i))};
  } else if (!view.dense()) {
    const std::size_t old_pages = (T + ps - 1) / ps, new_pages = (n + ps - 1) / ps;
    for (std::size_t p = new_pages; p < old_pages; ++p)
      d.plan_freed[d.plan_freed_count++] = {static_cast<std::uint32_t>(gs),
                                            static_cast<std::int32_t>(view.stream_page(gs, p))};
  }
  d.plan_streams[d.plan_stream_count++] = sp;
  d.new_length[s] = n;
}

/// Applies the recorded plan to the cache (in_place) or to its page table (reindex), moves the
/// per-token state and commits the new lengths. s0: the sequence's first stream in the view.
template <class Isa, class View>
void commit(const View& view, std::size_t s0, sequence_state& st, apply_mode mode) noexcept {
  detail::sequence_data& d = st.data();
  d.last_event.evicted = true;  // last_plan() reads the recorded plan
  if (mode == apply_mode::in_place) apply_plan<Isa>(view, st.last_plan());
  if (mode == apply_mode::reindex) apply_reindex(view, st.last_plan());
  for (std::size_t m = 0; m < d.plan_move_count; ++m) {
    const slot_move& mv = d.plan_moves[m];
    st.move_slot(mv.stream - s0, mv.src, mv.dst);
  }
  for (std::size_t s = 0; s < d.streams; ++s) d.length[s] = d.new_length[s];
}

}  // namespace plan_stage
INFOKV_END_NAMESPACE
