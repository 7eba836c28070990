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
#include "infokv/scorer/window_attention_layout.hpp"
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

/// Window attention as GEMM, key-major: S^T = K Q^T with the M = G x (used window queries)
/// query rows pre-scaled by 1/sqrt(D) and packed once by the ISA's product (simd::
/// pack_window_queries: float panels, or bf16 parts for AMX tiles), and the keys read once, a
/// block at a time, converted in L1 and multiplied against every packed row (simd::window_logits). Logits
/// are kept per chunk of keys with each column's chunk maximum; exp is taken per chunk while it
/// is in cache; the global softmax normalisation is folded into one factor per (chunk, column),
/// and the window / group mean of key i is one dot product of its row with its chunk's factors.
/// Keys newer than a query are masked for that query. Same result as the reference with
/// mean_of_probabilities over all keys, up to float rounding.
///
/// Every key block lies inside its chunk and every chunk inside [0, T): the GEMM writes exactly
/// the logit rows of the keys it was given, whatever T, the chunk and the block sizes are.
template <class View, class Isa>
[[nodiscard]] status window_attention_mean_gemm(const layer_context<View, Isa>& ctx, std::size_t head,
                                                std::size_t num_queries, float* row) noexcept {
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  const std::size_t T = ctx.num_tokens();
  const std::size_t D = ctx.head_dim();
  const std::size_t G = ctx.group_size;
  std::fill(row, row + T, 0.0f);
  if (ctx.window_count == 0 || num_queries == 0) return errc::missing_signal;
  if (T == 0) return {};
  const std::int32_t newest_pos = ctx.window_positions[ctx.newest_query];
  const auto used_query = [&](std::size_t t) {
    return static_cast<std::int64_t>(ctx.window_positions[t]) >
           static_cast<std::int64_t>(newest_pos) - static_cast<std::int64_t>(num_queries);
  };
  std::size_t used = 0;
  for (std::size_t t = 0; t < ctx.window_count; ++t) used += used_query(t);
  const std::size_t M = used * G;
  const auto lay = window_attention_scratch::of(T, D, M);
  INFOKV_ASSERT(lay.end <= ctx.scratch.size(), "scratch is smaller than the window-attention layout");
  const std::size_t Mp = lay.mp, chunks = lay.chunks;
  if (!simd::prepare(Isa{})) return errc::isa_not_permitted;
  float* const base = ctx.scratch.data();
  float* qp = base + lay.queries;
  float* qpos = base + lay.query_pos;
  float* qslot = base + lay.query_slot;
  float* kbuf = base + lay.key_block;
  float* e = base + lay.logits;
  float* cmax = base + lay.chunk_max;
  float* csum = base + lay.chunk_sum;
  float* gmax = base + lay.row_max;
  float* gsum = base + lay.row_sum;
  // Query rows: row u = (used query u / G, head u % G), packed once by the ISA's product.
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const std::size_t q_first = (ctx.kv_head_offset + head) * G;
  std::int32_t min_qpos = newest_pos;
  for (std::size_t t = 0, u = 0; t < ctx.window_count; ++t) {
    if (!used_query(t)) continue;
    min_qpos = std::min(min_qpos, ctx.window_positions[t]);
    for (std::size_t g = 0; g < G; ++g, ++u) {
      qpos[u] = std::bit_cast<float>(ctx.window_positions[t]);
      qslot[u] = std::bit_cast<float>(static_cast<std::int32_t>(t));
    }
  }
  const auto query_row = [&](std::size_t u) {
    return ctx.window_query(static_cast<std::size_t>(std::bit_cast<std::int32_t>(qslot[u])), q_first + u % G);
  };
  simd::pack_window_queries(Isa{}, Isa{}, query_row, M, D, scale, qp, Mp);
  for (std::size_t c = 0; c < chunks; ++c) {
    const std::size_t i0 = c * attention_key_chunk, i1 = std::min(T, i0 + attention_key_chunk);
    // Logit rows i0 .. i1 - 1 only: a chunk's keys never spill into the next chunk's rows.
    simd::window_logits(Isa{}, Isa{}, [&](std::size_t j) { return ctx.kv.key(i0 + j, head); }, i1 - i0, D, qp, Mp,
                        kbuf, e + i0 * Mp);
    // Causal mask: only keys newer than the oldest used query can be masked.
    for (std::size_t i = i0; i < i1; ++i) {
      if (ctx.positions[i] <= min_qpos) continue;
      for (std::size_t r = 0; r < M; ++r)
        if (ctx.positions[i] > std::bit_cast<std::int32_t>(qpos[r])) e[i * Mp + r] = ninf;
    }
    float* m = cmax + c * Mp;
    std::fill(m, m + Mp, ninf);
    simd::column_max(Isa{}, e + i0 * Mp, i1 - i0, Mp, Mp, m);
    std::fill(csum + c * Mp, csum + (c + 1) * Mp, 0.0f);
    simd::exp_sub_rows(Isa{}, e + i0 * Mp, i1 - i0, Mp, Mp, m, csum + c * Mp);
  }
  // Global max and sum per column.
  for (std::size_t r = 0; r < Mp; ++r) {
    float gm = ninf;
    for (std::size_t c = 0; c < chunks; ++c) gm = std::max(gm, cmax[c * Mp + r]);
    double l = 0.0;
    if (gm != ninf)
      for (std::size_t c = 0; c < chunks; ++c)
        if (cmax[c * Mp + r] != ninf) l += static_cast<double>(csum[c * Mp + r]) * std::exp(static_cast<double>(cmax[c * Mp + r] - gm));
    gmax[r] = gm;
    gsum[r] = static_cast<float>(l);
  }
  // Each chunk's factor exp(m_c - m) / l / M, stored over its maximum.
  const float inv_m = 1.0f / static_cast<float>(M);
  for (std::size_t c = 0; c < chunks; ++c)
    for (std::size_t r = 0; r < Mp; ++r) {
      const float mc = cmax[c * Mp + r];
      cmax[c * Mp + r] = (r >= M || mc == ninf || gsum[r] <= 0.0f)
                             ? 0.0f
                             : static_cast<float>(std::exp(static_cast<double>(mc - gmax[r])) / gsum[r]) * inv_m;
    }
  for (std::size_t i = 0; i < T; ++i)
    row[i] = simd::dot(Isa{}, e + i * Mp, cmax + (i / attention_key_chunk) * Mp, Mp);
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
