// SPDX-License-Identifier: Apache-2.0
// Cell-addressed caches: engines that keep every token of every sequence in one "cell" of a
// shared pool (llama.cpp's KV cells, slot-per-token GPU engines). A cell is one row of
// num_kv_heads x head_dim keys (and values) in each layer's pool; a sequence is the list of its
// cells in logical order, with holes and any order allowed. That is a paged view with
// page_size 1 whose pages are cells, per_sequence granularity (a cell holds its token in every
// layer), and whose "page table" is the engine's cell lists in CSR form. No copy: the library
// reads the rows where the engine wrote them.
//
// Such an engine cannot move rows, so it compresses with apply_mode::reindex: survivors stay in
// their cells, the library rewrites the cell lists (moving entries, shrinking each sequence) and
// reports every evicted token's cell in eviction_plan::freed for the engine to release.
#pragma once

#include <cstddef>
#include <cstdint>

#include "infokv/config.hpp"
#include "infokv/view/paged_kv_cache_view.hpp"

INFOKV_BEGIN_NAMESPACE

template <class T, class Index = std::int32_t>
struct cell_cache_params {
  std::size_t num_layers = 0;
  std::size_t num_kv_heads = 0;
  std::size_t head_dim = 0;
  std::size_t num_cells = 0;     // cells in each layer's pool
  std::size_t row_stride = 0;    // elements from one cell's row to the next; 0 = num_kv_heads * head_dim
  std::size_t num_sequences = 0;
  T* const* key_layers = nullptr;    // [num_layers]: cell c's keys at key_layers[l] + c * row_stride
  T* const* value_layers = nullptr;  // [num_layers], the same layout (untransposed values)
  Index* seq_begin = nullptr;        // [num_sequences + 1]: sequence b's cells are cells[seq_begin[b], seq_begin[b + 1])
  Index* cells = nullptr;            // the cell of each token of each sequence, in logical order
  Index* seq_nonempty = nullptr;     // [num_sequences] storage the view uses as last_page_len (filled here)
  Index* cell_positions = nullptr;   // optional [num_cells]: the position of the token in each cell
};

/// The paged view of a cell-addressed cache. Fills seq_nonempty (1 where a sequence holds a
/// cell, else 0), which the library keeps current as it shrinks sequences.
template <class T, class Index = std::int32_t>
[[nodiscard]] constexpr paged_kv_cache_view<T, layout_nhd, dynamic_extent, Index> make_cell_view(
    const cell_cache_params<T, Index>& c) noexcept {
  paged_kv_cache_params<T, Index> p;
  p.num_layers = c.num_layers;
  p.num_kv_heads = c.num_kv_heads;
  p.head_dim = c.head_dim;
  p.page_size = 1;
  p.granularity = stream_granularity::per_sequence;
  p.num_sequences = c.num_sequences;
  p.key_pools = c.key_layers;
  p.value_pools = c.value_layers;
  p.pool_pages = c.num_cells;
  p.page_stride = c.row_stride;
  p.indptr = c.seq_begin;
  p.indices = c.cells;
  p.last_page_len = c.seq_nonempty;
  p.positions = c.cell_positions;
  if (c.seq_begin != nullptr && c.seq_nonempty != nullptr)
    for (std::size_t b = 0; b < c.num_sequences; ++b)
      c.seq_nonempty[b] = static_cast<Index>(c.seq_begin[b + 1] > c.seq_begin[b] ? 1 : 0);
  return paged_kv_cache_view<T, layout_nhd, dynamic_extent, Index>(p);
}

INFOKV_END_NAMESPACE
