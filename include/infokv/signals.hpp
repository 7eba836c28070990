// SPDX-License-Identifier: Apache-2.0
// What the engine hands the library each step (step_signals), which of those a policy needs
// (signal_set), and what the library must remember between steps to score later
// (observation_needs).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "infokv/config.hpp"

INFOKV_BEGIN_NAMESPACE

enum class signal : std::uint32_t {
  none = 0,
  queries = 1u << 0,          // post-RoPE query heads of each new token, per layer
  prerope_queries = 1u << 1,  // pre-RoPE query heads (Expected Attention's statistics)
  hidden_states = 1u << 2,    // residual stream after every layer (layer evolution)
  token_entropy = 1u << 3,    // logits rows, or precomputed entropies of the next token
  attention = 1u << 4,        // softmax attention rows of the new tokens (H2O)
};

struct signal_set {
  std::uint32_t bits = 0;
  constexpr signal_set() noexcept = default;
  constexpr signal_set(signal s) noexcept : bits(static_cast<std::uint32_t>(s)) {}  // NOLINT
  [[nodiscard]] constexpr bool contains(signal_set o) const noexcept { return (bits & o.bits) == o.bits; }
  [[nodiscard]] constexpr bool empty() const noexcept { return bits == 0; }
  friend constexpr signal_set operator|(signal_set a, signal_set b) noexcept {
    signal_set r;
    r.bits = a.bits | b.bits;
    return r;
  }
  friend constexpr signal_set operator-(signal_set a, signal_set b) noexcept {
    signal_set r;
    r.bits = a.bits & ~b.bits;
    return r;
  }
  friend constexpr bool operator==(signal_set, signal_set) noexcept = default;
};
constexpr signal_set operator|(signal a, signal b) noexcept { return signal_set(a) | signal_set(b); }

/// The signals of the tokens appended since the last call: one token per decode step, a chunk
/// of n tokens in prefill. All arrays are row-major float32; spans a policy does not need may be
/// empty. L = layers, n = num_tokens, Hq = query heads, D = head_dim.
struct step_signals {
  std::size_t num_tokens = 1;
  /// [L][n][Hq][D] post-RoPE queries, as used in attention.
  std::span<const float> queries;
  /// [L][n][Hq][D] pre-RoPE queries (Expected Attention).
  std::span<const float> prerope_queries;
  /// [L][n][hidden_size] residual stream after each decoder layer; layer L-1 is h^L.
  std::span<const float> hidden_states;
  /// [n][vocab]: row j is the distribution that predicts the token after new token j.
  std::span<const float> logits;
  /// [n] alternative to logits: the top-k entropy of each row, computed by the engine.
  std::span<const float> next_token_entropy;
  /// [L][n][Hq][attention_stride]: softmax attention of new token j over the stream's slots
  /// (logical slot order, after this call's tokens were appended; causal entries only).
  std::span<const float> attention;
  std::size_t attention_stride = 0;
};

/// What the library must record at observe time for a policy to score at eviction time.
struct observation_needs {
  std::size_t window = 0;         // last w post-RoPE queries per layer
  std::size_t entropy_top_k = 0;  // 0: no entropy; else top-k of the logits row
  bool evolution = false;         // D_i^l from hidden states
  bool attention = false;         // accumulated attention per (token, layer, KV head)
  bool query_stats = false;       // running mean of pre-RoPE queries per (layer, query head)
  bool query_covariance = false;  // ... and their covariance
  std::size_t query_stats_skip = 0;  // tokens with position < this are left out of the stats
  bool rope = false;              // the policy rotates queries itself: compress_config::rope must be stated

  friend constexpr bool operator==(const observation_needs&, const observation_needs&) = default;

  [[nodiscard]] constexpr signal_set signals() const noexcept {
    signal_set s;
    if (window != 0) s = s | signal::queries;
    if (entropy_top_k != 0) s = s | signal::token_entropy;
    if (evolution) s = s | signal::hidden_states;
    if (attention) s = s | signal::attention;
    if (query_stats) s = s | signal::prerope_queries;
    return s;
  }
  /// The union of two policies' needs (windows and top-k take the larger).
  [[nodiscard]] constexpr observation_needs merged(const observation_needs& o) const noexcept {
    observation_needs r = *this;
    r.window = window > o.window ? window : o.window;
    r.entropy_top_k = entropy_top_k > o.entropy_top_k ? entropy_top_k : o.entropy_top_k;
    r.evolution = evolution || o.evolution;
    r.attention = attention || o.attention;
    r.query_stats = query_stats || o.query_stats;
    r.query_covariance = query_covariance || o.query_covariance;
    r.query_stats_skip = query_stats_skip > o.query_stats_skip ? query_stats_skip : o.query_stats_skip;
    r.rope = rope || o.rope;
    return r;
  }
};

INFOKV_END_NAMESPACE
