// SPDX-License-Identifier: Apache-2.0
// R-KV for reasoning models: lambda * attention - (1 - lambda) * redundancy. Attention is the
// mean over the last w queries of a softmax over the candidate keys of the max-over-group
// logits, max-pooled; redundancy is, per key j, the mean cosine similarity that other keys have
// to it (each key's most recent near-duplicate, cos > 0.5, not counted), softmaxed over tokens.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "infokv/concepts.hpp"
#include "infokv/config.hpp"
#include "infokv/scorer/scratch.hpp"
#include "infokv/scorer/window_attention.hpp"
#include "infokv/simd/kernels.hpp"

INFOKV_BEGIN_NAMESPACE

struct redundancy_scorer {
  float lambda = 0.07f;       // R-KV's mix_lambda (code default)
  std::size_t window = 8;     // observation queries
  std::size_t kernel = 7;     // max pooling
  float similarity_threshold = 0.5f;

  [[nodiscard]] constexpr observation_needs needs() const noexcept {
    observation_needs n;
    n.window = window;
    return n;
  }

  [[nodiscard]] constexpr status check() const noexcept {
    if (kernel % 2 == 0 || window == 0 || !(lambda >= 0.0f && lambda <= 1.0f)) return errc::invalid_config;
    return {};
  }
  [[nodiscard]] static constexpr std::size_t padded_tokens(std::size_t t) noexcept { return (t + 31) / 32 * 32; }
  /// [T] logits, [T] redundancy, [2T] pooling then similarity row and norms (each block
  /// padded to 32), then one key converted to float.
  [[nodiscard]] constexpr std::size_t scratch_floats(const scratch_shape& s) const noexcept {
    return 4 * padded_tokens(s.tokens) + s.head_dim;
  }
  template <kv_view View, class Isa>
  [[nodiscard]] status score(const layer_context<View, Isa>& ctx, score_matrix out) const noexcept {
    INFOKV_TRY(check());
    const std::size_t T = ctx.num_tokens();
    const std::size_t D = ctx.head_dim();
    float* logits = ctx.scratch.data();
    float* red = logits + T;    // column means of the similarity matrix, position order
    float* tmp = red + T;       // 2T pooling scratch, then one similarity row
    for (std::size_t h = 0; h < out.heads; ++h) {
      float* row = out.row(h);
      INFOKV_TRY(detail::window_attention_mean(ctx, h, window, group_reduction::max_of_logits, true, row,
                                               logits));
      detail::pool_candidates(ctx, pooling::max, kernel, row, tmp);
      // Redundancy over all tokens, taken in position order (j = rank in ctx.order). The norms
      // are computed once (the pooling scratch's second half is free again) and each key a is
      // converted to float once, so the O(T^2) part is one SIMD dot per pair.
      float* norms = tmp + T;
      float* key_a = ctx.scratch.data() + 4 * padded_tokens(T);  // past the 4T block: see scratch_floats
      for (std::size_t b = 0; b < T; ++b)
        norms[b] = std::sqrt(simd::squared_norm(Isa{}, ctx.kv.key(ctx.order[b], h), D)) + 1e-8f;
      std::fill(red, red + T, 0.0f);
      for (std::size_t a = 0; a < T; ++a) {
        const auto* ka = ctx.kv.key(ctx.order[a], h);
        for (std::size_t d = 0; d < D; ++d) key_a[d] = to_float(ka[d]);
        std::size_t last_similar = 0;
        for (std::size_t b = 0; b < T; ++b) {
          if (a == b) {
            tmp[b] = 0.0f;
            continue;
          }
          tmp[b] = simd::dot(Isa{}, ctx.kv.key(ctx.order[b], h), key_a, D) / (norms[a] * norms[b]);
          if (tmp[b] > similarity_threshold) last_similar = b;
        }
        tmp[last_similar] = 0.0f;
        for (std::size_t b = 0; b < T; ++b) red[b] += tmp[b];
      }
      for (std::size_t b = 0; b < T; ++b) red[b] /= static_cast<float>(T);
      simd::softmax(simd::scalar_t{}, red, T);
      for (std::size_t b = 0; b < T; ++b) {
        const std::size_t slot = ctx.order[b];
        row[slot] = lambda * row[slot] - (1.0f - lambda) * red[b];
      }
    }
    return {};
  }
};
static_assert(token_scorer<redundancy_scorer, conformance_view>, "redundancy_scorer must satisfy token_scorer");

INFOKV_END_NAMESPACE
