// SPDX-License-Identifier: Apache-2.0
// Observe stage, first half: are the step's signals what the policy needs, of the right sizes,
// and finite? Reads only; a failed check leaves everything as it was.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

#include "infokv/config.hpp"
#include "infokv/model_shape.hpp"
#include "infokv/sequence_state.hpp"
#include "infokv/signals.hpp"
#include "infokv/simd/kernels.hpp"
#include "infokv/status.hpp"

INFOKV_BEGIN_NAMESPACE
namespace observe_stage {

template <class Isa>
[[nodiscard]] bool all_finite(std::span<const float> x) noexcept {
  return simd::all_finite(Isa{}, x.data(), x.size());
}

/// Checks sig against what the state's policy records (needs), for n = sig.num_tokens tokens.
template <class Isa>
[[nodiscard]] status check_signals(const model_shape& shape, const detail::sequence_data& d,
                                   const step_signals& sig) noexcept {
  const auto nd = d.needs;
  const std::size_t n = sig.num_tokens;
  if (n == 0) return {};
  const std::size_t L = shape.num_layers, Hq = shape.num_q_heads, D = shape.head_dim;
  if (nd.window != 0) {
    if (sig.queries.empty()) return {errc::missing_signal, static_cast<std::int32_t>(signal::queries)};
    if (sig.queries.size() != L * n * Hq * D) return errc::shape_mismatch;
    if (!all_finite<Isa>(sig.queries)) return errc::non_finite_input;
  }
  if (nd.query_stats) {
    if (sig.prerope_queries.empty())
      return {errc::missing_signal, static_cast<std::int32_t>(signal::prerope_queries)};
    if (sig.prerope_queries.size() != L * n * Hq * D) return errc::shape_mismatch;
    if (!all_finite<Isa>(sig.prerope_queries)) return errc::non_finite_input;
  }
  if (nd.evolution) {
    if (sig.hidden_states.empty()) return {errc::missing_signal, static_cast<std::int32_t>(signal::hidden_states)};
    if (sig.hidden_states.size() != L * n * shape.hidden_size) return errc::shape_mismatch;
    if (!all_finite<Isa>(sig.hidden_states)) return errc::non_finite_input;
  }
  if (nd.entropy_top_k != 0) {
    if (!sig.logits.empty()) {
      if (sig.logits.size() != n * shape.vocab_size) return errc::logits_size_mismatch;
      // -inf is a masked vocabulary entry (probability 0); NaN and +inf are errors.
      if (!simd::no_nan_or_pos_inf(Isa{}, sig.logits.data(), sig.logits.size())) return errc::non_finite_input;
    } else if (!sig.next_token_entropy.empty()) {
      if (sig.next_token_entropy.size() != n) return errc::shape_mismatch;
      for (float v : sig.next_token_entropy)
        if (!std::isfinite(v) || v < 0.0f) return errc::non_finite_input;
    } else {
      return {errc::missing_signal, static_cast<std::int32_t>(signal::token_entropy)};
    }
  }
  if (nd.attention) {
    if (sig.attention.empty()) return {errc::missing_signal, static_cast<std::int32_t>(signal::attention)};
    std::size_t max_len = 0;
    for (std::size_t s = 0; s < d.streams; ++s) max_len = std::max(max_len, d.length[s] + n);
    if (sig.attention_stride < max_len || sig.attention.size() != L * n * Hq * sig.attention_stride)
      return errc::shape_mismatch;
    if (!all_finite<Isa>(sig.attention)) return errc::non_finite_input;
  }
  return {};
}

}  // namespace observe_stage
INFOKV_END_NAMESPACE
