// SPDX-License-Identifier: Apache-2.0
// H2O heavy hitters: the attention each key has received from every query so far, summed over
// steps (per KV head: the mean over its query heads), accumulated by the library from the
// engine's attention rows and carried through every compaction. With `mean_over_queries` the sum
// is divided by the number of queries that could attend the key (those at its position and
// after): kvpress's ObservedAttentionPress, which does not favour old tokens for being old.
#pragma once

#include <algorithm>
#include <cstddef>

#include "infokv/concepts.hpp"
#include "infokv/config.hpp"
#include "infokv/scorer/scratch.hpp"

INFOKV_BEGIN_NAMESPACE

struct accumulated_attention_scorer {
  bool mean_over_queries = false;

  [[nodiscard]] constexpr observation_needs needs() const noexcept {
    observation_needs n;
    n.attention = true;
    return n;
  }
  /// No scratch: the sums were accumulated at observe time.
  [[nodiscard]] constexpr std::size_t scratch_floats(const scratch_shape&) const noexcept { return 0; }
  template <kv_view View, class Isa>
  [[nodiscard]] status score(const layer_context<View, Isa>& ctx, score_matrix out) const noexcept {
    if (ctx.accumulated == nullptr) return errc::missing_signal;
    for (std::size_t h = 0; h < out.heads; ++h) {
      const float* acc = ctx.accumulated + h * ctx.accumulated_stride;
      if (!mean_over_queries) {
        std::copy_n(acc, ctx.num_tokens(), out.row(h));
        continue;
      }
      for (std::size_t i = 0; i < ctx.num_tokens(); ++i) {
        const auto pos = static_cast<std::size_t>(ctx.positions[i]);
        const std::size_t queries = ctx.next_position > pos ? ctx.next_position - pos : 1;
        out(h, i) = acc[i] / static_cast<float>(queries);
      }
    }
    return {};
  }
};
static_assert(token_scorer<accumulated_attention_scorer, conformance_view>, "accumulated_attention_scorer must satisfy token_scorer");

INFOKV_END_NAMESPACE
