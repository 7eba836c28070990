// SPDX-License-Identifier: Apache-2.0
// The options a user gives a policy on the command line and how they become the library's
// configuration: a keep ratio of the tokens seen for decode and for the prompt (kvpress's
// convention), the protected sinks and recent window, the slack that batches evictions, and the
// per-policy settings. Which policies exist and which settings apply to each: policy_registry.hpp.
#pragma once

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <infokv/infokv.hpp>

#include "llama_model.hpp"
#include "session.hpp"

namespace engine {

struct compression_options {
  std::string policy = "none";
  infokv::stream_granularity granularity = infokv::stream_granularity::per_layer;
  double decode_ratio = 0.25;   // keep this share of the tokens seen, during decode
  double prefill_ratio = 0.25;  // ... and when the prompt ends
  std::size_t sink_tokens = 4;
  std::size_t recent_tokens = 64;
  std::size_t slack = 64;       // evict once a stream is this far over its budget
  float alpha = 0.9f;           // InfoKV: weight of attention (the paper's default)
  float tau = 1.0f;             // InfoKV: bias of the layer-evolution factor
  std::size_t kernel = 0;       // pooling kernel of the attention score (snapkv, pyramidkv, infokv); 0: default 9
  std::size_t window = 0;       // query window of the attention score (same policies); 0: default 64
  bool mean_attention = false;  // h2o: mean over the queries that saw each key (kvpress's observed attention)
  bool invert = false;          // analysis only: evict the tokens the policy ranks highest
};

/// A policy with its ranking turned upside down: it keeps the tokens the wrapped policy would
/// evict. Not an eviction policy anyone should run; the forward-influence analysis uses it to
/// remove the tokens a score ranks highest and see how far their absence is felt (the paper's
/// definition of influence: the KL shift caused by removing a set). The sinks and the recent
/// window stay protected by the compressor.
template <class Policy>
struct inverted_policy {
  Policy inner{};
  [[nodiscard]] constexpr std::string_view name() const noexcept { return "inverted"; }
  [[nodiscard]] constexpr infokv::observation_needs needs() const noexcept { return inner.needs(); }
  [[nodiscard]] constexpr infokv::status check() const noexcept { return infokv::check_parameters(inner); }
  template <class View, class Isa>
  [[nodiscard]] infokv::status score(const infokv::layer_context<View, Isa>& ctx, infokv::score_matrix out) const noexcept {
    INFOKV_TRY(inner.score(ctx, out));
    for (std::size_t h = 0; h < out.heads; ++h)
      for (std::size_t i = 0; i < out.tokens; ++i) out(h, i) = -out(h, i);
    return {};
  }
};

/// The library configuration for `o` on model `c`; `capacity`: the most tokens a stream may hold.
[[nodiscard]] inline infokv::compress_config make_config(const compression_options& o, const llama_config& c,
                                                         std::size_t capacity) {
  infokv::compress_config cfg;
  // The engine's RoPE, as session::rope applies it: the file's theta, adjacent pairs (the GGUF
  // Llama weights are permuted for that pairing).
  cfg.rope = {c.rope_theta, infokv::rope_pairing::adjacent};
  cfg.granularity = o.granularity;
  cfg.decode_budget = infokv::budget::of_ratio(o.decode_ratio);
  cfg.prefill_budget = infokv::budget::of_ratio(o.prefill_ratio);
  cfg.sink_tokens = o.sink_tokens;
  cfg.recent_tokens = o.recent_tokens;
  cfg.slack = o.slack;
  // The library sizes its per-stream state by capacity; it must also hold the protected window.
  cfg.capacity = std::max(capacity, o.sink_tokens + o.recent_tokens + o.slack + 64);
  return cfg;
}

[[nodiscard]] inline infokv::model_shape shape_of(const llama_config& c) {
  return infokv::model_shape{.num_layers = c.layers, .num_q_heads = c.heads, .num_kv_heads = c.kv_heads,
                             .head_dim = c.head_dim, .hidden_size = c.hidden, .vocab_size = c.vocab};
}

[[nodiscard]] inline infokv::stream_granularity parse_granularity(const std::string& s) {
  if (s == "per_sequence") return infokv::stream_granularity::per_sequence;
  if (s == "per_layer") return infokv::stream_granularity::per_layer;
  if (s == "per_layer_head") return infokv::stream_granularity::per_layer_head;
  throw std::invalid_argument("unknown granularity '" + s + "' (per_sequence, per_layer, per_layer_head)");
}

/// The hook of library policy `p` with the options of `o` (invert=1: the inverted ranking; the
/// policy registry allows it only for uniform budgets).
template <class Policy>
[[nodiscard]] std::unique_ptr<compressor_hook> wrap_policy(const Policy& p, const compression_options& o,
                                                           const infokv::compress_config& cfg,
                                                           const infokv::model_shape& shape) {
  if (o.invert) return std::make_unique<policy_hook<inverted_policy<Policy>>>(inverted_policy<Policy>{p}, cfg, shape);
  return std::make_unique<policy_hook<Policy>>(p, cfg, shape);
}

/// Sets the pooling kernel and query window of an attention score where `o` gives them.
inline void set_window(infokv::attention_scorer& a, const compression_options& o) noexcept {
  if (o.kernel != 0) a.kernel = o.kernel;
  if (o.window != 0) a.window = o.window;
}

}  // namespace engine
