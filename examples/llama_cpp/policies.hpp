// SPDX-License-Identifier: Apache-2.0
// The policies llama-infokv offers inside llama.cpp: every library policy that works with one
// keep set per sequence from the signals llama.cpp's eval callback gives. H2O is absent: it
// needs every new token's attention rows, which llama.cpp does not materialise (and never with
// flash attention). PyramidKV and AdaKV need per-layer / per-head keep sets, which llama.cpp's
// cells (one token in every layer) cannot hold; so cannot InfoKV's adaptive layer budgets.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
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
  std::size_t interval = 0;          // if > 0: also evict every `interval` decode steps (RPC's P)
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
  c.interval = s.interval;
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

namespace detail {
[[noreturn]] inline void unknown_policy(std::string_view name) {
  std::string known;
  for (auto n : policy_names) known += std::string(known.empty() ? "" : ", ") + std::string(n);
  std::string why;
  if (name == "h2o") why = "; H2O needs every new token's attention row, which llama.cpp does not materialise";
  if (name == "pyramidkv" || name == "adakv")
    why = "; it keeps a different set per layer or head, and a llama.cpp cell is one token in every layer";
  throw std::invalid_argument("unknown policy '" + std::string(name) + "' (known: " + known + ")" + why);
}

inline double spec_number(std::string_view spec, std::string_view key, std::string_view v) {
  const std::string s(v);
  std::size_t used = 0;
  double x = 0.0;
  try {
    x = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || s.empty())
    throw std::invalid_argument("policy '" + std::string(spec) + "': " + std::string(key) + " needs a number, got '" + s + "'");
  return x;
}
}  // namespace detail

/// InfoKV's parameters in a policy spec: "infokv" (the library's defaults) or
/// "infokv:alpha=0.95:tau=1:top_k=256" (top_k=all: the whole vocabulary).
struct infokv_spec {
  float alpha = infokv::make_infokv().alpha;
  float tau = infokv::make_infokv().tau;
  std::size_t top_k = infokv::make_infokv().entropy.top_k;  // 0 here: the whole vocabulary
};

/// Splits "name:key=value:..." and checks it; throws std::invalid_argument naming the spec on an
/// unknown policy, an unknown key or a bad value. Only InfoKV takes parameters.
inline infokv_spec parse_policy_spec(std::string_view spec, std::string_view* name_out = nullptr) {
  const std::size_t colon = spec.find(':');
  const std::string_view name = spec.substr(0, colon);
  if (std::find(policy_names.begin(), policy_names.end(), name) == policy_names.end()) detail::unknown_policy(name);
  if (name_out != nullptr) *name_out = name;
  infokv_spec p;
  if (colon == std::string_view::npos) return p;
  if (name != "infokv") throw std::invalid_argument("policy '" + std::string(spec) + "': only infokv takes parameters");
  std::string_view rest = spec.substr(colon + 1);
  while (!rest.empty()) {
    const std::size_t next = rest.find(':');
    const std::string_view item = rest.substr(0, next);
    rest = next == std::string_view::npos ? std::string_view{} : rest.substr(next + 1);
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos)
      throw std::invalid_argument("policy '" + std::string(spec) + "': '" + std::string(item) + "' is not key=value");
    const std::string_view key = item.substr(0, eq), v = item.substr(eq + 1);
    if (key == "alpha") {
      p.alpha = static_cast<float>(detail::spec_number(spec, key, v));
      if (!(p.alpha >= 0.0f && p.alpha <= 1.0f)) throw std::invalid_argument("policy '" + std::string(spec) + "': alpha must lie in [0, 1]");
    } else if (key == "tau") {
      p.tau = static_cast<float>(detail::spec_number(spec, key, v));
      if (!(p.tau >= 0.0f && p.tau < 1e30f)) throw std::invalid_argument("policy '" + std::string(spec) + "': tau must be >= 0");
    } else if (key == "top_k") {
      if (v == "all") {
        p.top_k = 0;
      } else {
        const double k = detail::spec_number(spec, key, v);
        if (!(k >= 1.0 && k == std::floor(k) && k < 1e9))
          throw std::invalid_argument("policy '" + std::string(spec) + "': top_k must be a positive integer or all");
        p.top_k = static_cast<std::size_t>(k);
      }
    } else {
      throw std::invalid_argument("policy '" + std::string(spec) + "': unknown parameter '" + std::string(key) +
                                  "' (infokv takes alpha, tau, top_k)");
    }
  }
  return p;
}

/// The compressor of a policy spec (see parse_policy_spec); null for "none". Throws on an
/// unknown name or parameter.
inline std::shared_ptr<const infokv_llama::sequence_compressor> make_policy(std::string_view spec,
                                                                             const infokv::compress_config& c,
                                                                             const infokv::model_shape& shape) {
  std::string_view name;
  const infokv_spec ip = parse_policy_spec(spec, &name);
  if (name == "none") return nullptr;
  if (name == "infokv") {
    auto p = infokv::make_infokv(ip.alpha, ip.tau);
    p.entropy.top_k = ip.top_k != 0 ? ip.top_k : shape.vocab_size;
    return make(p, c, shape);
  }
  if (name == "snapkv") return make(infokv::make_snapkv(), c, shape);
  if (name == "tova") return make(infokv::make_tova(), c, shape);
  if (name == "streamingllm") return make(infokv::make_streaming_llm(), c, shape);
  if (name == "knorm") return make(infokv::make_knorm(), c, shape);
  if (name == "expected-attention") return make(infokv::make_expected_attention(), c, shape, /*reads_values=*/true);
  if (name == "rkv") return make(infokv::make_rkv(), c, shape);
  if (name == "random") return make(infokv::make_random(1), c, shape);
  detail::unknown_policy(name);
}

}  // namespace llama_infokv
