// SPDX-License-Identifier: Apache-2.0
// Layer-wise representation evolution D_i^l = 1 - cos(h_i^l, h_i^L): how far token i's hidden
// state after layer l still is from its final state (recorded when the token was observed).
#pragma once

#include <cstddef>

#include "infokv/concepts.hpp"
#include "infokv/config.hpp"
#include "infokv/scorer/scratch.hpp"

INFOKV_BEGIN_NAMESPACE

struct layer_evolution_scorer {
  [[nodiscard]] constexpr observation_needs needs() const noexcept {
    observation_needs n;
    n.evolution = true;
    return n;
  }
  /// No scratch: the distances were recorded at observe time.
  [[nodiscard]] constexpr std::size_t scratch_floats(const scratch_shape&) const noexcept { return 0; }
  template <kv_view View, class Isa>
  [[nodiscard]] status score(const layer_context<View, Isa>& ctx, score_matrix out) const noexcept {
    if (ctx.evolution == nullptr) return errc::missing_signal;
    for (std::size_t h = 0; h < out.heads; ++h)
      for (std::size_t i = 0; i < ctx.num_tokens(); ++i)
        out(h, i) = ctx.evolution[i];
    return {};
  }
};
static_assert(token_scorer<layer_evolution_scorer, conformance_view>, "layer_evolution_scorer must satisfy token_scorer");

INFOKV_END_NAMESPACE
