// SPDX-License-Identifier: Apache-2.0
// InfoKV (Kai, Xiao, Birch, Lin, 2026): S_i^l = alpha * A_i^l + (1 - alpha) * softmax_i(E^l)_i
// with E_i^l = (D_i^l + tau) * H_i, composed at compile time from three scorer policies:
// attention (A), token entropy (H) and layer evolution (D). The softmax runs over the candidate
// tokens (those older than the query window). alpha = 1 gives exactly the attention scorer's
// keep set.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string_view>

#include "infokv/concepts.hpp"
#include "infokv/config.hpp"
#include "infokv/scorer/scratch.hpp"
#include "infokv/scorer/attention.hpp"
#include "infokv/scorer/layer_evolution.hpp"
#include "infokv/scorer/token_entropy.hpp"
#include "infokv/select/budget.hpp"
#include "infokv/simd/scalar.hpp"

INFOKV_BEGIN_NAMESPACE

template <class Attention = attention_scorer, class Entropy = token_entropy_scorer,
          class Evolution = layer_evolution_scorer>
struct infokv_policy {
  Attention attention{};
  Entropy entropy{};
  Evolution evolution{};
  float alpha = 0.9f;  // weight of attention; 0.95 is the paper's decoding setting
  float tau = 1.0f;    // bias that keeps E from vanishing at the last layer
  budget_schedule preferred_schedule = budget_schedule::uniform;

  [[nodiscard]] constexpr std::string_view name() const noexcept {
    return preferred_schedule == budget_schedule::infokv_adaptive ? "InfoKV-adaptive" : "InfoKV";
  }
  [[nodiscard]] constexpr observation_needs needs() const noexcept {
    return attention.needs().merged(entropy.needs()).merged(evolution.needs());
  }

  /// Two [heads x T] matrices for E's parts, then the largest of the parts' own scratch (the
  /// parts score one after another).
  [[nodiscard]] constexpr std::size_t scratch_floats(const scratch_shape& s) const noexcept {
    const std::size_t a = scratch_floats_of(attention, s), e = scratch_floats_of(entropy, s);
    const std::size_t v = scratch_floats_of(evolution, s);
    const std::size_t parts = a > e ? (a > v ? a : v) : (e > v ? e : v);
    return 2 * s.heads * s.tokens + parts;
  }

  /// alpha in [0, 1], tau finite and >= 0, and every part's own parameters.
  [[nodiscard]] constexpr status check() const noexcept {
    if (!(alpha >= 0.0f && alpha <= 1.0f) || !(tau >= 0.0f && tau < 1e30f)) return errc::invalid_config;
    INFOKV_TRY(check_parameters(attention));
    INFOKV_TRY(check_parameters(entropy));
    return check_parameters(evolution);
  }

  template <kv_view View, class Isa>
    requires(token_scorer<Attention, View, Isa> && token_scorer<Entropy, View, Isa> &&
             token_scorer<Evolution, View, Isa>)
  [[nodiscard]] status score(const layer_context<View, Isa>& ctx, score_matrix out) const noexcept {
    INFOKV_TRY(check());
    const std::size_t T = ctx.num_tokens();
    const std::size_t H = out.heads;
    // Two [H x T] matrices for E's parts at the front of scratch; the rest goes to the parts.
    score_matrix ent{ctx.scratch.data(), H, T};
    score_matrix evo{ctx.scratch.data() + H * T, H, T};
    layer_context<View, Isa> sub = ctx;
    sub.scratch = ctx.scratch.subspan(2 * H * T);
    INFOKV_TRY(attention.score(sub, out));
    INFOKV_TRY(entropy.score(sub, ent));
    INFOKV_TRY(evolution.score(sub, evo));
    const float beta = 1.0f - alpha;
    for (std::size_t h = 0; h < H; ++h) {
      float* e = ent.row(h);
      // E over candidates, softmax over candidates; non-candidates get no entropy term.
      float mx = -std::numeric_limits<float>::infinity();
      for (std::size_t j = 0; j < ctx.num_candidates; ++j) {
        const std::size_t i = ctx.order[j];
        e[i] = (evo(h, i) + tau) * e[i];
        mx = std::max(mx, e[i]);
      }
      double z = 0.0;
      for (std::size_t j = 0; j < ctx.num_candidates; ++j) z += std::exp(static_cast<double>(e[ctx.order[j]] - mx));
      for (std::size_t j = 0; j < ctx.num_candidates; ++j) {
        const std::size_t i = ctx.order[j];
        const float p = static_cast<float>(std::exp(static_cast<double>(e[i] - mx)) / z);
        out(h, i) = alpha * out(h, i) + beta * p;
      }
      for (std::size_t j = ctx.num_candidates; j < T; ++j) out(h, ctx.order[j]) = alpha * out(h, ctx.order[j]);
    }
    return {};
  }

  /// InfoKV-adaptive's layer weight: sum over candidate tokens of E_i^l (head mean).
  template <kv_view View, class Isa>
    requires(token_scorer<Entropy, View, Isa> && token_scorer<Evolution, View, Isa>)
  [[nodiscard]] double layer_weight(const layer_context<View, Isa>& ctx) const noexcept {
    const std::size_t T = ctx.num_tokens();
    const std::size_t H = ctx.kv.num_heads();
    score_matrix ent{ctx.scratch.data(), H, T};
    score_matrix evo{ctx.scratch.data() + H * T, H, T};
    layer_context<View, Isa> sub = ctx;
    sub.scratch = ctx.scratch.subspan(2 * H * T);
    if (!entropy.score(sub, ent).ok() || !evolution.score(sub, evo).ok()) return 0.0;
    double w = 0.0;
    for (std::size_t h = 0; h < H; ++h)
      for (std::size_t j = 0; j < ctx.num_candidates; ++j) {
        const std::size_t i = ctx.order[j];
        w += static_cast<double>((evo(h, i) + tau) * ent(h, i));
      }
    return w / static_cast<double>(H);
  }
};

INFOKV_END_NAMESPACE
