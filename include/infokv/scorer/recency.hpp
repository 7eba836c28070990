// SPDX-License-Identifier: Apache-2.0
// StreamingLLM: keep the attention sinks and the most recent tokens. With sinks protected by the
// compressor, the score is simply the token's position (newer == keep).
#pragma once

#include <cstddef>

#include "infokv/concepts.hpp"
#include "infokv/config.hpp"
#include "infokv/scorer/scratch.hpp"

INFOKV_BEGIN_NAMESPACE

struct recency_scorer {
  [[nodiscard]] constexpr observation_needs needs() const noexcept { return {}; }
  /// No scratch: the score is the position.
  [[nodiscard]] constexpr std::size_t scratch_floats(const scratch_shape&) const noexcept { return 0; }
  template <kv_view View, class Isa>
  [[nodiscard]] status score(const layer_context<View, Isa>& ctx, score_matrix out) const noexcept {
    for (std::size_t h = 0; h < out.heads; ++h)
      for (std::size_t i = 0; i < ctx.num_tokens(); ++i) out(h, i) = static_cast<float>(ctx.positions[i]);
    return {};
  }
};
static_assert(token_scorer<recency_scorer, conformance_view>, "recency_scorer must satisfy token_scorer");

INFOKV_END_NAMESPACE
