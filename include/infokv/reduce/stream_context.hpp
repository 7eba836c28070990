// SPDX-License-Identifier: Apache-2.0
// Reduce stage, its input: what a scorer sees of one stream in one layer (layer_context) built
// from the view and the sequence's recorded state, and the stream's slots in position order
// (the tokens older than the query window are the candidates).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

#include "infokv/config.hpp"
#include "infokv/rope.hpp"
#include "infokv/scorer/layer_context.hpp"
#include "infokv/sequence_state.hpp"

INFOKV_BEGIN_NAMESPACE
namespace reduce_stage {

/// Sorts stream s's slots by position into order[]; returns the number of candidates (tokens
/// older than the query window).
[[nodiscard]] inline std::size_t sort_by_position(const detail::sequence_data& d, std::size_t s,
                                                  std::uint32_t* order) noexcept {
  const std::size_t T = d.length[s];
  const std::int32_t* pos = d.positions.data() + s * d.capacity;
  for (std::size_t i = 0; i < T; ++i) order[i] = static_cast<std::uint32_t>(i);
  std::sort(order, order + T, [&](std::uint32_t a, std::uint32_t b) { return pos[a] < pos[b]; });
  const std::size_t w = d.needs.window == 0 ? 0 : d.window_count;
  const std::size_t window_start = d.seen - std::min(w, d.seen);
  std::size_t nc = 0;
  while (nc < T && static_cast<std::size_t>(pos[order[nc]]) < window_start) ++nc;
  return nc;
}

/// The layer context of stream s (global index gs in the view) in model layer l, its local layer
/// `local_layer`, with the first `num_candidates` of `order` as candidates.
template <class Isa, class View>
[[nodiscard]] layer_context<typename View::stream_view_type, Isa> make_context(
    const View& view, detail::sequence_data& d, const rope_params& rope, std::size_t s, std::size_t gs,
    std::size_t l, std::size_t local_layer, std::size_t num_candidates, const std::uint32_t* order) noexcept {
  layer_context<typename View::stream_view_type, Isa> ctx;
  const model_shape& shape = d.shape;
  const std::size_t C = d.capacity, Ls = d.layers_per_stream, Hs = d.heads_per_stream;
  ctx.kv = view.stream(gs, l);
  ctx.layer = l;
  ctx.num_layers = shape.num_layers;
  ctx.kv_head_offset = view.stream_head(gs);
  ctx.group_size = shape.group_size();
  ctx.num_q_heads = shape.num_q_heads;
  ctx.positions = d.positions.data() + s * C;
  if (!d.entropy.empty()) ctx.entropy = d.entropy.data() + s * C;
  if (!d.evolution.empty()) ctx.evolution = d.evolution.data() + (s * Ls + local_layer) * C;
  if (!d.accumulated.empty()) {
    ctx.accumulated = d.accumulated.data() + (s * Ls + local_layer) * Hs * C;
    ctx.accumulated_stride = C;
  }
  ctx.order = order;
  ctx.num_candidates = num_candidates;
  const std::size_t w = d.needs.window;
  if (w != 0) {
    ctx.window_queries = d.window_q.data() + l * w * shape.num_q_heads * shape.head_dim;
    ctx.window_positions = d.window_pos.data();
    ctx.window_count = d.window_count;
    ctx.newest_query = (d.window_next + w - 1) % w;
  }
  if (!d.query_sum.empty()) {
    ctx.query_sum = d.query_sum.data() + l * shape.num_q_heads * shape.head_dim;
    if (!d.query_outer.empty())
      ctx.query_outer = d.query_outer.data() + l * shape.num_q_heads * shape.head_dim * shape.head_dim;
    ctx.query_count = d.query_count;
  }
  ctx.rope = rope;
  ctx.next_position = d.seen;
  ctx.eviction_index = d.evictions;
  ctx.scratch = std::span<float>(d.scratch);
  return ctx;
}

}  // namespace reduce_stage
INFOKV_END_NAMESPACE
