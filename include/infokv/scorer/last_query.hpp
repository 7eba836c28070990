// SPDX-License-Identifier: Apache-2.0
// TOVA: the softmax attention of the current (newest) query, averaged over the query heads of the
// group (and over all heads of the layer when the keep set is per layer or per sequence).
#pragma once

#include <cstddef>

#include "infokv/concepts.hpp"
#include "infokv/config.hpp"
#include "infokv/scorer/scratch.hpp"
#include "infokv/scorer/window_attention.hpp"

INFOKV_BEGIN_NAMESPACE

struct last_query_scorer {
  [[nodiscard]] constexpr observation_needs needs() const noexcept {
    observation_needs n;
    n.window = 1;
    return n;
  }
  /// The window-attention layout for one query per query head of the group.
  [[nodiscard]] constexpr std::size_t scratch_floats(const scratch_shape& s) const noexcept {
    return window_attention_scratch_floats(s.tokens, s.head_dim, s.group_size);
  }
  template <kv_view View, class Isa>
  [[nodiscard]] status score(const layer_context<View, Isa>& ctx, score_matrix out) const noexcept {
    for (std::size_t h = 0; h < out.heads; ++h)
      INFOKV_TRY(detail::window_attention_mean(ctx, h, 1, group_reduction::mean_of_probabilities, false,
                                               out.row(h), ctx.scratch.data()));
    return {};
  }
};
static_assert(token_scorer<last_query_scorer, conformance_view>, "last_query_scorer must satisfy token_scorer");

INFOKV_END_NAMESPACE
