// SPDX-License-Identifier: Apache-2.0
// StreamingLLM: keep the attention sinks and the most recent tokens. With sinks protected by the
// compressor, the score is simply the token's position (newer == keep).
#pragma once

#include <cstddef>

#include "infokv/concepts.hpp"
#include "infokv/config.hpp"

INFOKV_BEGIN_NAMESPACE

struct recency_scorer {
  [[nodiscard]] constexpr observation_needs needs() const noexcept { return {}; }
  template <kv_view View, class Isa>
  [[nodiscard]] status score(const layer_context<View, Isa>& ctx, score_matrix out) const noexcept {
    for (std::size_t h = 0; h < out.heads; ++h)
      for (std::size_t i = 0; i < ctx.num_tokens(); ++i) out(h, i) = static_cast<float>(ctx.positions[i]);
    return {};
  }
};

INFOKV_END_NAMESPACE
