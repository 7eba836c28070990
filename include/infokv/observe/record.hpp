// SPDX-License-Identifier: Apache-2.0
// Observe stage, second half: append the new tokens' per-token state (position, the previous
// step's entropy, evolution distances, zeroed attention sums), add their attention rows to the
// accumulated sums, push their queries into the window ring and their pre-RoPE queries into the
// running statistics. O(new tokens); only called after every check passed.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "infokv/config.hpp"
#include "infokv/model_shape.hpp"
#include "infokv/sequence_state.hpp"
#include "infokv/signals.hpp"
#include "infokv/simd/kernels.hpp"
#include "infokv/view/granularity.hpp"

INFOKV_BEGIN_NAMESPACE
namespace observe_stage {

/// The model layer of stream s's local layer `local` (per_sequence streams cover every layer).
[[nodiscard]] inline std::size_t stream_layer(const detail::sequence_data& d, std::size_t s, std::size_t local) noexcept {
  return d.granularity == stream_granularity::per_sequence ? local
         : d.granularity == stream_granularity::per_layer  ? s
                                                           : s / d.shape.num_kv_heads;
}
/// The KV head of stream s's local head `local`.
[[nodiscard]] inline std::size_t stream_head(const detail::sequence_data& d, std::size_t s, std::size_t local) noexcept {
  return d.granularity == stream_granularity::per_layer_head ? s % d.shape.num_kv_heads : local;
}

/// Appends sig's tokens to every stream. `decode_step`: the tokens count toward the interval.
template <class Isa>
void record(detail::sequence_data& d, const step_signals& sig, bool decode_step) noexcept {
  const model_shape& shape = d.shape;
  const auto nd = d.needs;
  const std::size_t n = sig.num_tokens;
  const std::size_t L = shape.num_layers, Hq = shape.num_q_heads;
  const std::size_t D = shape.head_dim, C = d.capacity, S = d.streams;
  const std::size_t Ls = d.layers_per_stream, Hs = d.heads_per_stream;
  const std::size_t G = shape.group_size();
  for (std::size_t j = 0; j < n; ++j) {
    const std::size_t pos = d.seen + j;
    float ent = 0.0f;
    if (nd.entropy_top_k != 0) {
      // A token's entropy is that of the prediction it was drawn from: the previous step's.
      ent = d.pending_entropy;
      if (!sig.logits.empty())
        d.pending_entropy = simd::top_k_entropy(Isa{}, sig.logits.data() + j * shape.vocab_size, shape.vocab_size,
                                                nd.entropy_top_k, d.vocab_scratch.data());
      else
        d.pending_entropy = sig.next_token_entropy[j];
    }
    for (std::size_t s = 0; s < S; ++s) {
      const std::size_t slot = d.length[s] + j;
      d.positions[s * C + slot] = static_cast<std::int32_t>(pos);
      if (nd.entropy_top_k != 0) d.entropy[s * C + slot] = ent;
      if (nd.evolution) {
        for (std::size_t a = 0; a < Ls; ++a) {
          const std::size_t l = stream_layer(d, s, a);
          const float* hl = sig.hidden_states.data() + (l * n + j) * shape.hidden_size;
          const float* hL = sig.hidden_states.data() + ((L - 1) * n + j) * shape.hidden_size;
          d.evolution[(s * Ls + a) * C + slot] =
              l == L - 1 ? 0.0f : simd::cosine_distance(Isa{}, hl, hL, shape.hidden_size);
        }
      }
      if (nd.attention)
        for (std::size_t r = 0; r < Ls * Hs; ++r) d.accumulated[(s * Ls * Hs + r) * C + slot] = 0.0f;
    }
  }
  if (nd.attention) {
    // Row (l, j, q) covers the stream's slots [0, old_len + j]; mean over the GQA group.
    for (std::size_t s = 0; s < S; ++s)
      for (std::size_t a = 0; a < Ls; ++a)
        for (std::size_t hh = 0; hh < Hs; ++hh) {
          const std::size_t l = stream_layer(d, s, a), kvh = stream_head(d, s, hh);
          for (std::size_t j = 0; j < n; ++j) {
            const std::size_t visible = d.length[s] + j + 1;
            float* acc = d.accumulated.data() + ((s * Ls + a) * Hs + hh) * C;
            for (std::size_t g = 0; g < G; ++g) {
              const float* row = sig.attention.data() + ((l * n + j) * Hq + kvh * G + g) * sig.attention_stride;
              simd::axpy(Isa{}, 1.0f / static_cast<float>(G), row, acc, visible);
            }
          }
        }
  }
  if (nd.window != 0) {
    const std::size_t w = nd.window;
    for (std::size_t j = (n > w ? n - w : 0); j < n; ++j) {
      const std::size_t r = d.window_next;
      for (std::size_t l = 0; l < L; ++l)
        std::memcpy(d.window_q.data() + ((l * w + r) * Hq) * D, sig.queries.data() + ((l * n + j) * Hq) * D,
                    Hq * D * sizeof(float));
      d.window_pos[r] = static_cast<std::int32_t>(d.seen + j);
      d.window_next = (r + 1) % w;
      d.window_count = std::min(d.window_count + 1, w);
    }
  }
  if (nd.query_stats) {
    for (std::size_t j = 0; j < n; ++j) {
      if (d.seen + j < nd.query_stats_skip) continue;
      for (std::size_t l = 0; l < L; ++l)
        for (std::size_t q = 0; q < Hq; ++q) {
          const float* x = sig.prerope_queries.data() + ((l * n + j) * Hq + q) * D;
          double* sum = d.query_sum.data() + (l * Hq + q) * D;
          for (std::size_t k = 0; k < D; ++k) sum[k] += x[k];
          if (nd.query_covariance) {
            double* outer = d.query_outer.data() + (l * Hq + q) * D * D;
            for (std::size_t r = 0; r < D; ++r)
              for (std::size_t c = 0; c < D; ++c) outer[r * D + c] += static_cast<double>(x[r]) * x[c];
          }
        }
      ++d.query_count;
    }
  }
  for (std::size_t s = 0; s < S; ++s) d.length[s] += n;
  d.seen += n;
  if (decode_step) d.steps_since_eviction += n;  // the interval counts decode steps only
}

}  // namespace observe_stage
INFOKV_END_NAMESPACE
