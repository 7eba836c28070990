// SPDX-License-Identifier: Apache-2.0
// The shared building block of the attention scorers: the softmax attention that the query
// window pays to every key of a stream, averaged over window queries, with causal masking by
// original position, and the 1-D pooling over candidate tokens in position order.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <limits>

#include "infokv/config.hpp"
#include "infokv/scorer/layer_context.hpp"
#include "infokv/simd/kernels.hpp"
#include "infokv/status.hpp"

INFOKV_BEGIN_NAMESPACE

enum class pooling { none, average, max };
/// How the query heads of a GQA group are reduced to their KV head.
enum class group_reduction {
  mean_of_probabilities,  // softmax per query head, then mean (SnapKV / kvpress)
  max_of_logits,          // max of raw logits over the group, then one softmax (R-KV)
};

namespace detail {

/// The reference (one dot product per key and query): row[i] = mean over the newest `num_queries` window queries (and over the group's query heads,
/// by `reduction`) of softmax_i(q . k_i / sqrt(D)), keys with position > the query's masked.
/// `candidates_only`: the softmax runs over candidate keys only (others get 0). `logits` holds T.
template <class View, class Isa>
[[nodiscard]] status window_attention_mean_reference(const layer_context<View, Isa>& ctx, std::size_t head,
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
            m = std::max(m, simd::dot(Isa{}, ctx.kv.key(i, head),
                                      ctx.window_query(t, q_first + gg), D) * scale);
          logits[i] = m;
        } else {
          logits[i] = simd::dot(Isa{}, ctx.kv.key(i, head), ctx.window_query(t, q_first + g), D) *
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

/// Window attention as GEMM: for KV head `head`, the M = G x (used window queries) query rows,
/// pre-scaled by 1/sqrt(D), against all T keys packed once into 32-key panels; logits in blocks
/// of attention_row_block rows; causal masking only where a key is newer than a query; then a
/// vectorised softmax per row accumulated into row[] with weight 1 / M. Same result as the
/// reference with mean_of_probabilities over all keys, up to float rounding.
template <class View, class Isa>
[[nodiscard]] status window_attention_mean_gemm(const layer_context<View, Isa>& ctx, std::size_t head,
                                                std::size_t num_queries, float* row) noexcept {
  const std::size_t T = ctx.num_tokens();
  const std::size_t D = ctx.head_dim();
  const std::size_t G = ctx.group_size;
  std::fill(row, row + T, 0.0f);
  if (ctx.window_count == 0 || num_queries == 0) return errc::missing_signal;
  if (T == 0) return {};
  const std::int32_t newest_pos = ctx.window_positions[ctx.newest_query];
  const std::size_t padded = (T + simd::panel_width - 1) / simd::panel_width * simd::panel_width;
  float* q = ctx.scratch.data();
  std::size_t used = 0;
  std::int32_t min_qpos = newest_pos;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const std::size_t q_first = (ctx.kv_head_offset + head) * G;
  for (std::size_t t = 0; t < ctx.window_count; ++t) {
    const std::int32_t qpos = ctx.window_positions[t];
    if (static_cast<std::int64_t>(qpos) <= static_cast<std::int64_t>(newest_pos) - static_cast<std::int64_t>(num_queries))
      continue;
    min_qpos = std::min(min_qpos, qpos);
    for (std::size_t g = 0; g < G; ++g) {
      const float* src = ctx.window_query(t, q_first + g);
      float* dst = q + (used * G + g) * D;
      for (std::size_t d = 0; d < D; ++d) dst[d] = src[d] * scale;
    }
    // Row order: (query, head); keep each query's position for the mask.
    ++used;
  }
  const std::size_t M = used * G;
  // Each used query's position, bit-stored in the float scratch after the query rows.
  float* qpos_bits = q + M * D;
  for (std::size_t t = 0, u = 0; t < ctx.window_count; ++t) {
    const std::int32_t qpos = ctx.window_positions[t];
    if (static_cast<std::int64_t>(qpos) > static_cast<std::int64_t>(newest_pos) - static_cast<std::int64_t>(num_queries))
      qpos_bits[u++] = std::bit_cast<float>(qpos);
  }
  float* panels = qpos_bits + used;
  float* s = panels + padded * D;
  float* tmp = s;  // a key row, before the logits block is used
  for (std::size_t i = 0; i < padded; ++i) {
    const std::size_t p = i / simd::panel_width, j = i % simd::panel_width;
    if (i < T)
      simd::to_float_row(Isa{}, ctx.kv.key(i, head), tmp, D);
    else
      std::fill(tmp, tmp + D, 0.0f);
    for (std::size_t d = 0; d < D; ++d) panels[(p * D + d) * simd::panel_width + j] = tmp[d];
  }
  const auto row_position = [&](std::size_t r) { return std::bit_cast<std::int32_t>(qpos_bits[r / G]); };
  const float weight = 1.0f / static_cast<float>(M);
  for (std::size_t r0 = 0; r0 < M; r0 += attention_row_block) {
    const std::size_t mb = std::min(attention_row_block, M - r0);
    simd::gemm_packed(Isa{}, q + r0 * D, mb, D, panels, T, D, s, padded);
    for (std::size_t i = 0; i < T; ++i) {
      if (ctx.positions[i] <= min_qpos) continue;
      for (std::size_t r = 0; r < mb; ++r)
        if (ctx.positions[i] > row_position(r0 + r)) s[r * padded + i] = -std::numeric_limits<float>::infinity();
    }
    simd::softmax_accumulate_rows(Isa{}, s, mb, T, padded, row, weight);
  }
  return {};
}

/// row[i] = mean over the newest `num_queries` window queries (and the group's query heads, by
/// `reduction`) of softmax_i(q . k_i / sqrt(D)), keys newer than the query masked; with
/// `candidates_only` the softmax runs over candidate keys only. SnapKV / TOVA's case takes the
/// GEMM path; R-KV's max-of-logits case the reference. `logits` holds T floats.
template <class View, class Isa>
[[nodiscard]] status window_attention_mean(const layer_context<View, Isa>& ctx, std::size_t head,
                                           std::size_t num_queries, group_reduction reduction,
                                           bool candidates_only, float* row, float* logits) noexcept {
  if (reduction == group_reduction::mean_of_probabilities && !candidates_only)
    return window_attention_mean_gemm(ctx, head, num_queries, row);
  return window_attention_mean_reference(ctx, head, num_queries, reduction, candidates_only, row, logits);
}

/// Pools row[] over the candidate tokens taken in position order (ctx.order), zero / -inf
/// padding at both ends; non-candidates keep their value. `tmp` holds 2 * num_candidates.
template <class View, class Isa>
inline void pool_candidates(const layer_context<View, Isa>& ctx, pooling mode, std::size_t kernel, float* row,
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
