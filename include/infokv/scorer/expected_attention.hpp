// SPDX-License-Identifier: Apache-2.0
// Expected Attention (kvpress): model future pre-RoPE queries as a Gaussian N(mu, Sigma) per
// query head, rotate it by the mean RoPE matrix of the next n positions, and score each key by
// the expected (log-normal) attention softmax(k.mu'/sqrt(D) + k^T Sigma' k / (2D)), averaged over
// the GQA group, times (score + eps) * ||v||. Sink tokens are left out of the softmax and scored
// above every other token.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "infokv/concepts.hpp"
#include "infokv/config.hpp"
#include "infokv/scorer/scratch.hpp"
#include "infokv/simd/kernels.hpp"

INFOKV_BEGIN_NAMESPACE

struct expected_attention_scorer {
  std::size_t future_positions = 512;
  std::size_t sinks = 4;
  bool use_covariance = true;
  bool use_value_norm = true;
  float epsilon = 0.0f;

  [[nodiscard]] constexpr observation_needs needs() const noexcept {
    observation_needs n;
    n.query_stats = true;
    n.query_covariance = use_covariance;
    n.query_stats_skip = sinks;
    n.rope = true;
    return n;
  }

  [[nodiscard]] constexpr status check() const noexcept {
    if (future_positions == 0 || !(epsilon >= 0.0f)) return errc::invalid_config;
    return {};
  }

  /// [T] logits, [T] sums, [D/2] mean cos and sin, [D] rotated and unrotated means, and three
  /// [D x D] matrices (rotated covariance, R * Sigma, Sigma).
  [[nodiscard]] constexpr std::size_t scratch_floats(const scratch_shape& s) const noexcept {
    const std::size_t D = s.head_dim;
    return 2 * s.tokens + 2 * (D / 2) + 2 * D + 3 * D * D;
  }
  template <kv_view View, class Isa>
  [[nodiscard]] status score(const layer_context<View, Isa>& ctx, score_matrix out) const noexcept {
    INFOKV_TRY(check());
    if (ctx.query_sum == nullptr) return errc::missing_signal;
    if (use_covariance && ctx.query_outer == nullptr) return errc::missing_signal;
    if (!ctx.rope.stated()) return errc::rope_not_stated;
    // No query seen yet past the sinks: mu = 0 and Sigma = 0, so keys score by ||v|| alone.
    const std::size_t T = ctx.num_tokens();
    const std::size_t D = ctx.head_dim();
    const std::size_t half = D / 2;
    float* logits = ctx.scratch.data();
    float* acc = logits + T;
    float* cbar = acc + T;         // [D/2] mean cos per frequency
    float* sbar = cbar + half;     // [D/2] mean sin
    float* mu = sbar + half;       // [D] rotated mean
    float* tmp = mu + D;           // [D] unrotated mean
    float* sigma = tmp + D;        // [D x D] rotated covariance
    float* rs = sigma + D * D;     // [D x D] R * Sigma
    float* cov = rs + D * D;       // [D x D] Sigma
    // Mean rotation over positions next_position .. next_position + n - 1.
    for (std::size_t i = 0; i < half; ++i) {
      const double freq = std::pow(ctx.rope.theta, -2.0 * static_cast<double>(i) / static_cast<double>(D));
      double c = 0.0, s = 0.0;
      for (std::size_t p = 0; p < future_positions; ++p) {
        const double a = static_cast<double>(ctx.next_position + p) * freq;
        c += std::cos(a);
        s += std::sin(a);
      }
      cbar[i] = static_cast<float>(c / static_cast<double>(future_positions));
      sbar[i] = static_cast<float>(s / static_cast<double>(future_positions));
    }
    // y = R x on the pair (a, b) of frequency i: (x_a c - x_b s, x_b c + x_a s).
    const auto rotate = [&](const float* x, std::size_t stride, float* y, std::size_t ystride) {
      for (std::size_t i = 0; i < half; ++i) {
        std::size_t a = 0, b = 0;
        ctx.rope.pair(i, D, a, b);
        const float xa = x[a * stride], xb = x[b * stride];
        y[a * ystride] = xa * cbar[i] - xb * sbar[i];
        y[b * ystride] = xb * cbar[i] + xa * sbar[i];
      }
    };
    const float inv_sqrt_d = 1.0f / std::sqrt(static_cast<float>(D));
    const double n = static_cast<double>(std::max<std::size_t>(ctx.query_count, 1));
    for (std::size_t h = 0; h < out.heads; ++h) {
      std::fill(acc, acc + T, 0.0f);
      for (std::size_t g = 0; g < ctx.group_size; ++g) {
        const std::size_t qh = (ctx.kv_head_offset + h) * ctx.group_size + g;
        const double* sum = ctx.query_sum + qh * D;
        for (std::size_t d = 0; d < D; ++d) tmp[d] = static_cast<float>(sum[d] / n);
        rotate(tmp, 1, mu, 1);
        if (use_covariance) {
          const double* outer = ctx.query_outer + qh * D * D;
          for (std::size_t r = 0; r < D; ++r)
            for (std::size_t c = 0; c < D; ++c)
              cov[r * D + c] = static_cast<float>(outer[r * D + c] / n - (sum[r] / n) * (sum[c] / n));
          // rs = R cov (rotate each column), sigma = rs R^T (rotate each row of rs).
          for (std::size_t c = 0; c < D; ++c) rotate(cov + c, D, rs + c, D);
          for (std::size_t r = 0; r < D; ++r) rotate(rs + r * D, 1, sigma + r * D, 1);
        }
        for (std::size_t i = 0; i < T; ++i) {
          if (static_cast<std::size_t>(ctx.positions[i]) < sinks) {
            logits[i] = -std::numeric_limits<float>::infinity();
            continue;
          }
          const auto* k = ctx.kv.key(i, h);
          float s = simd::dot(Isa{}, k, mu, D) * inv_sqrt_d;
          if (use_covariance) {
            // k^T Sigma' k = sum_r k_r (Sigma' k)_r, one dot product per row of Sigma'.
            float quad = 0.0f;
            for (std::size_t r = 0; r < D; ++r) quad += to_float(k[r]) * simd::dot(Isa{}, k, sigma + r * D, D);
            s += quad / (2.0f * static_cast<float>(D));
          }
          logits[i] = s;
        }
        simd::softmax(simd::scalar_t{}, logits, T);
        for (std::size_t i = 0; i < T; ++i) acc[i] += logits[i];
      }
      float mx = -std::numeric_limits<float>::infinity();
      for (std::size_t i = 0; i < T; ++i) {
        float v = acc[i] / static_cast<float>(ctx.group_size);
        if (use_value_norm)
          v = (v + epsilon) * std::sqrt(simd::squared_norm(Isa{}, ctx.kv.value(i, h), D));
        out(h, i) = v;
        if (static_cast<std::size_t>(ctx.positions[i]) >= sinks) mx = std::max(mx, v);
      }
      const float sink_score = std::isfinite(mx) ? mx + 1.0f : 1.0f;
      for (std::size_t i = 0; i < T; ++i)
        if (static_cast<std::size_t>(ctx.positions[i]) < sinks) out(h, i) = sink_score;
    }
    return {};
  }
};
static_assert(token_scorer<expected_attention_scorer, conformance_view>, "expected_attention_scorer must satisfy token_scorer");

INFOKV_END_NAMESPACE
