// SPDX-License-Identifier: Apache-2.0
// The SnapKV-style attention score A_i^l that InfoKV uses: the mean softmax attention of the
// last w queries, 1-D average pooling over tokens, mean over the query heads of a GQA group.
// Also SnapKV's and PyramidKV's score.
#pragma once

#include <cstddef>

#include "infokv/concepts.hpp"
#include "infokv/config.hpp"
#include "infokv/scorer/scratch.hpp"
#include "infokv/scorer/window_attention.hpp"

INFOKV_BEGIN_NAMESPACE

struct attention_scorer {
  std::size_t window = 64;        // observation window w
  std::size_t kernel = 9;         // pooling kernel (odd)
  pooling pool = pooling::average;

  [[nodiscard]] constexpr observation_needs needs() const noexcept {
    observation_needs n;
    n.window = window;
    return n;
  }
  /// Parameters in their domain: a window, an odd kernel.
  [[nodiscard]] constexpr status check() const noexcept {
    return (kernel % 2 == 0 || window == 0) ? status{errc::invalid_config} : status{};
  }
  /// The window-attention layout for the window's queries of the group, then [T] logits and
  /// the pooling's [2T] (the two are used one after the other).
  [[nodiscard]] constexpr std::size_t scratch_floats(const scratch_shape& s) const noexcept {
    const std::size_t gemm = window_attention_scratch_floats(s.tokens, s.head_dim, s.group_size * window);
    return gemm > 3 * s.tokens ? gemm : 3 * s.tokens;
  }
  template <kv_view View, class Isa>
  [[nodiscard]] status score(const layer_context<View, Isa>& ctx, score_matrix out) const noexcept {
    INFOKV_TRY(check());
    const std::size_t T = ctx.num_tokens();
    float* logits = ctx.scratch.data();
    float* tmp = logits + T;
    for (std::size_t h = 0; h < out.heads; ++h) {
      INFOKV_TRY(detail::window_attention_mean(ctx, h, window, group_reduction::mean_of_probabilities,
                                               false, out.row(h), logits));
      detail::pool_candidates(ctx, pool, kernel, out.row(h), tmp);
    }
    return {};
  }
};
static_assert(token_scorer<attention_scorer, conformance_view>, "attention_scorer must satisfy token_scorer");

INFOKV_END_NAMESPACE
