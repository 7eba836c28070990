// SPDX-License-Identifier: Apache-2.0
// H2O heavy hitters: the attention each key has received from every query so far, summed over
// steps (per KV head: the mean over its query heads), accumulated by the library from the
// engine's attention rows and carried through every compaction.
#pragma once

#include <algorithm>
#include <cstddef>

#include "infokv/concepts.hpp"
#include "infokv/config.hpp"

INFOKV_BEGIN_NAMESPACE

struct accumulated_attention_scorer {
  [[nodiscard]] constexpr observation_needs needs() const noexcept {
    observation_needs n;
    n.attention = true;
    return n;
  }
  template <kv_view View, class Isa>
  [[nodiscard]] status score(const layer_context<View, Isa>& ctx, score_matrix out) const noexcept {
    if (ctx.accumulated == nullptr) return errc::missing_signal;
    for (std::size_t h = 0; h < out.heads; ++h)
      std::copy_n(ctx.accumulated + h * ctx.accumulated_stride, ctx.num_tokens(), out.row(h));
    return {};
  }
};

INFOKV_END_NAMESPACE
