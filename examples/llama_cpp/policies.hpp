// SPDX-License-Identifier: Apache-2.0
// The policies llama-infokv offers inside llama.cpp: every library policy that works with one
// keep set per sequence from the signals llama.cpp's eval callback gives. H2O is absent: it
// needs every new token's attention rows, which llama.cpp does not materialise (and never with
// flash attention). PyramidKV and AdaKV need per-layer / per-head keep sets, which llama.cpp's
// cells (one token in every layer) cannot hold; so cannot InfoKV's adaptive layer budgets.
#pragma once

#include <array>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include "infokv_llama.hpp"

namespace llama_infokv {

struct compression_settings {
  std::size_t budget = 256;          // decode budget, tokens
  double decode_ratio = 0.0;         // if > 0: the decode budget is this share of the tokens seen instead
  double prefill_ratio = 1.0;        // kept by the prompt's compression (1: the prompt is not compressed beyond the budget)
  std::size_t sinks = 4;
  std::size_t recent = 64;
  std::size_t slack = 16;
  std::size_t capacity = 0;          // most tokens a sequence holds between evictions (n_ctx)
};

inline infokv::compress_config config_of(const compression_settings& s, const infokv::rope_params& rope) {
  infokv::compress_config c;
  c.granularity = infokv::stream_granularity::per_sequence;
  c.decode_budget = s.decode_ratio > 0.0 ? infokv::budget::of_ratio(s.decode_ratio) : infokv::budget::of_tokens(s.budget);
  c.prefill_budget = infokv::budget::of_ratio(s.prefill_ratio);
  c.sink_tokens = s.sinks;
  c.recent_tokens = s.recent;
  c.slack = s.slack;
  c.capacity = s.capacity;
  c.apply = infokv::apply_mode::reindex;
  c.rope = rope;
  return c;
}

template <class Policy>
std::shared_ptr<const infokv_llama::sequence_compressor> make(Policy p, const infokv::compress_config& c,
                                                               const infokv::model_shape& shape, bool reads_values = false) {
  return std::make_shared<infokv_llama::policy_compressor<Policy>>(p, c, shape, reads_values);
}

inline constexpr std::array<std::string_view, 9> policy_names{
    "none", "infokv", "snapkv", "tova", "streamingllm", "knorm", "expected-attention", "rkv", "random"};

/// The compressor of a policy by name; null for "none". Throws on an unknown name.
inline std::shared_ptr<const infokv_llama::sequence_compressor> make_policy(std::string_view name,
                                                                             const infokv::compress_config& c,
                                                                             const infokv::model_shape& shape) {
  if (name == "none") return nullptr;
  if (name == "infokv") return make(infokv::make_infokv(), c, shape);
  if (name == "snapkv") return make(infokv::make_snapkv(), c, shape);
  if (name == "tova") return make(infokv::make_tova(), c, shape);
  if (name == "streamingllm") return make(infokv::make_streaming_llm(), c, shape);
  if (name == "knorm") return make(infokv::make_knorm(), c, shape);
  if (name == "expected-attention") return make(infokv::make_expected_attention(), c, shape, /*reads_values=*/true);
  if (name == "rkv") return make(infokv::make_rkv(), c, shape);
  if (name == "random") return make(infokv::make_random(1), c, shape);
  std::string known;
  for (auto n : policy_names) known += std::string(known.empty() ? "" : ", ") + std::string(n);
  throw std::invalid_argument("unknown policy '" + std::string(name) + "' (known: " + known + ")");
}

}  // namespace llama_infokv
