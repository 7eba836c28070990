// SPDX-License-Identifier: Apache-2.0
// KNorm: keys with a low L2 norm draw attention, so score = -||k_i||_2 (kvpress KnormPress).
#pragma once

#include <cmath>
#include <cstddef>

#include "infokv/concepts.hpp"
#include "infokv/config.hpp"
#include "infokv/scorer/scratch.hpp"
#include "infokv/simd/kernels.hpp"

INFOKV_BEGIN_NAMESPACE

struct key_norm_scorer {
  [[nodiscard]] constexpr observation_needs needs() const noexcept { return {}; }
  /// No scratch: one norm per key.
  [[nodiscard]] constexpr std::size_t scratch_floats(const scratch_shape&) const noexcept { return 0; }
  template <kv_view View, class Isa>
  [[nodiscard]] status score(const layer_context<View, Isa>& ctx, score_matrix out) const noexcept {
    // Token-outer: every head of a slot is read while its page is hot (one pass over the keys).
    for (std::size_t i = 0; i < ctx.num_tokens(); ++i)
      for (std::size_t h = 0; h < out.heads; ++h)
        out(h, i) = -std::sqrt(simd::squared_norm(Isa{}, ctx.kv.key(i, h), ctx.head_dim()));
    return {};
  }
};
static_assert(token_scorer<key_norm_scorer, conformance_view>, "key_norm_scorer must satisfy token_scorer");

INFOKV_END_NAMESPACE
