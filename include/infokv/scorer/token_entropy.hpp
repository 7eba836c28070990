// SPDX-License-Identifier: Apache-2.0
// Predictive entropy H_i: the top-k entropy of the LM-head distribution that predicted token i
// (recorded when its logits arrived; token 0 has none and gets 0). The same for every head and
// layer.
#pragma once

#include <algorithm>
#include <cstddef>

#include "infokv/concepts.hpp"
#include "infokv/config.hpp"
#include "infokv/scorer/scratch.hpp"

INFOKV_BEGIN_NAMESPACE

struct token_entropy_scorer {
  std::size_t top_k = 256;  // entropy over the k most probable entries, renormalised

  [[nodiscard]] constexpr observation_needs needs() const noexcept {
    observation_needs n;
    n.entropy_top_k = top_k;
    return n;
  }
  [[nodiscard]] constexpr status check() const noexcept {
    return top_k == 0 ? status{errc::invalid_config} : status{};
  }
  /// No scratch: the entropies were recorded at observe time.
  [[nodiscard]] constexpr std::size_t scratch_floats(const scratch_shape&) const noexcept { return 0; }
  template <kv_view View, class Isa>
  [[nodiscard]] status score(const layer_context<View, Isa>& ctx, score_matrix out) const noexcept {
    if (ctx.entropy == nullptr) return errc::missing_signal;
    for (std::size_t h = 0; h < out.heads; ++h)
      std::copy(ctx.entropy, ctx.entropy + ctx.num_tokens(), out.row(h));
    return {};
  }
};
static_assert(token_scorer<token_entropy_scorer, conformance_view>, "token_entropy_scorer must satisfy token_scorer");

INFOKV_END_NAMESPACE
