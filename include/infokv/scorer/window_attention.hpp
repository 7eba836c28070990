// SPDX-License-Identifier: Apache-2.0
// The shared building block of the attention scorers: the softmax attention that the query
// window pays to every key of a stream, averaged over window queries, with causal masking by
// original position, and the 1-D pooling over candidate tokens in position order.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "infokv/config.hpp"
#include "infokv/scorer/layer_context.hpp"
#include "infokv/simd/scalar.hpp"
#include "infokv/status.hpp"

INFOKV_BEGIN_NAMESPACE

enum class pooling { none, average, max };
/// How the query heads of a GQA group are reduced to their KV head.
enum class group_reduction {
  mean_of_probabilities,  // softmax per query head, then mean (SnapKV / kvpress)
  max_of_logits,          // max of raw logits over the group, then one softmax (R-KV)
};

namespace detail {

/// row[i] = mean over the newest `num_queries` window queries (and over the group's query heads,
/// by `reduction`) of softmax_i(q . k_i / sqrt(D)), keys with position > the query's masked.
/// `candidates_only`: the softmax runs over candidate keys only (others get 0). `logits` holds T.
template <class View>
[[nodiscard]] status window_attention_mean(const layer_context<View>& ctx, std::size_t head,
                                           std::size_t num_queries, group_reduction reduction,
                                           bool candidates_only, float* row, float* logits) noexcept {
  const std::size_t T = ctx.num_tokens();
  const std::size_t D = ctx.head_dim();
  std::fill(row, row + T, 0.0f);
  if (ctx.window_count == 0 || num_queries == 0) return errc::missing_signal;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const std::int32_t newest_pos = ctx.window_positions[ctx.newest_query];
  const auto is_candidate = [&](std::size_t i) {
    return !candidates_only || static_cast<std::size_t>(ctx.positions[i]) <
                                   static_cast<std::size_t>(newest_pos) + 1 - ctx.window_count;
  };
  std::size_t used = 0;
  const std::size_t q_first = (ctx.kv_head_offset + head) * ctx.group_size;
  for (std::size_t t = 0; t < ctx.window_count; ++t) {
    const std::int32_t qpos = ctx.window_positions[t];
    if (static_cast<std::int64_t>(qpos) <= static_cast<std::int64_t>(newest_pos) -
                                               static_cast<std::int64_t>(num_queries))
      continue;
    ++used;
    const std::size_t passes = reduction == group_reduction::max_of_logits ? 1 : ctx.group_size;
    for (std::size_t g = 0; g < passes; ++g) {
      for (std::size_t i = 0; i < T; ++i) {
        if (ctx.positions[i] > qpos || !is_candidate(i)) {
          logits[i] = -std::numeric_limits<float>::infinity();
          continue;
        }
        if (reduction == group_reduction::max_of_logits) {
          float m = -std::numeric_limits<float>::infinity();
          for (std::size_t gg = 0; gg < ctx.group_size; ++gg)
            m = std::max(m, simd::dot(simd::scalar_t{}, ctx.kv.key(i, head),
                                      ctx.window_query(t, q_first + gg), D) * scale);
          logits[i] = m;
        } else {
          logits[i] = simd::dot(simd::scalar_t{}, ctx.kv.key(i, head), ctx.window_query(t, q_first + g), D) *
                      scale;
        }
      }
      simd::softmax(simd::scalar_t{}, logits, T);
      for (std::size_t i = 0; i < T; ++i) row[i] += logits[i];
    }
  }
  const float denom = static_cast<float>(used) *
                      (reduction == group_reduction::max_of_logits ? 1.0f : static_cast<float>(ctx.group_size));
  if (denom > 0.0f)
    for (std::size_t i = 0; i < T; ++i) row[i] /= denom;
  return {};
}

/// Pools row[] over the candidate tokens taken in position order (ctx.order), zero / -inf
/// padding at both ends; non-candidates keep their value. `tmp` holds 2 * num_candidates.
template <class View>
inline void pool_candidates(const layer_context<View>& ctx, pooling mode, std::size_t kernel, float* row,
                            float* tmp) noexcept {
  if (mode == pooling::none || kernel <= 1) return;
  const std::size_t n = ctx.num_candidates;
  float* in = tmp;
  float* out = tmp + n;
  for (std::size_t j = 0; j < n; ++j) in[j] = row[ctx.order[j]];
  if (mode == pooling::average)
    simd::avg_pool(simd::scalar_t{}, in, out, n, kernel);
  else
    simd::max_pool(simd::scalar_t{}, in, out, n, kernel);
  for (std::size_t j = 0; j < n; ++j) row[ctx.order[j]] = out[j];
}

}  // namespace detail
INFOKV_END_NAMESPACE
