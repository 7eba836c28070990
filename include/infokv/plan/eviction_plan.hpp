// SPDX-License-Identifier: Apache-2.0
// The engine-facing result of an eviction: per stream the sorted keep list, the slot moves that
// compact the survivors to the front (holes filled from the tail), and the pages that no longer
// hold a live token. Engines that move device memory themselves apply exactly this. In
// apply_mode::reindex the moves are moves of page-table entries (the survivors' cells stay
// where they are) and the freed pages are the evicted tokens' cells.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "infokv/config.hpp"

INFOKV_BEGIN_NAMESPACE

/// Copy every layer / head row of logical slot `src` of `stream` to slot `dst` (dst < src).
/// Slots are logical indices within the stream before compaction.
struct slot_move {
  std::uint32_t stream = 0;
  std::uint32_t src = 0;
  std::uint32_t dst = 0;
  friend bool operator==(const slot_move&, const slot_move&) = default;
};

/// A physical page that the stream no longer uses (in the pool domain of the stream).
struct freed_page {
  std::uint32_t stream = 0;
  std::int32_t page = 0;
  friend bool operator==(const freed_page&, const freed_page&) = default;
};

struct stream_plan {
  std::uint32_t stream = 0;
  std::uint32_t old_length = 0;
  std::uint32_t new_length = 0;
  std::uint32_t keep_offset = 0;  // keep slots are keep[keep_offset, keep_offset + new_length)
  friend bool operator==(const stream_plan&, const stream_plan&) = default;
};

/// Non-owning; valid until the next call that evicts on the same sequence state.
struct eviction_plan {
  std::span<const stream_plan> streams;
  std::span<const std::uint32_t> keep;  // sorted ascending within each stream
  std::span<const slot_move> moves;
  std::span<const freed_page> freed;

  [[nodiscard]] bool empty() const noexcept { return streams.empty(); }
  [[nodiscard]] std::span<const std::uint32_t> keep_of(const stream_plan& s) const noexcept {
    return keep.subspan(s.keep_offset, s.new_length);
  }
};

/// Who applies the plan to the cache's memory and page table.
enum class apply_mode {
  in_place,   // the library moves K, V and positions in the host pools and rewrites the table
  plan_only,  // the library only updates its own state; the engine applies the plan
  // For engines that cannot move cache memory (llama.cpp's cells, many GPU engines) and
  // address the cache per token: a cell-addressed view (page_size 1, CSR; each page is one
  // cell). Survivors stay in their cells; the library moves page-table entries instead of K/V
  // rows, shrinks the streams, and reports every evicted token's cell in plan.freed. K, V and
  // the positions array are never written.
  reindex,
};

INFOKV_END_NAMESPACE
