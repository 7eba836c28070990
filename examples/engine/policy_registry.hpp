// SPDX-License-Identifier: Apache-2.0
// Every policy the example engine knows, in one table: the name a user types, the family the
// quality report groups it in, which per-policy settings apply to it, what it asks of the
// engine, and how its compressor is built. infokv_engine, infokv_eval, the engine tests and
// (through infokv_eval's policies.csv / --list-policies) scripts/eval_report.py all read this
// table, so a new policy is one row here plus its place in the evaluation's default comparison
// below, which a static_assert enforces.
#pragma once

#include <algorithm>
#include <array>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <infokv/infokv.hpp>

#include "llama_model.hpp"
#include "policies.hpp"
#include "session.hpp"

namespace engine {

/// How the quality report groups a policy. The paper's claim is about InfoKV against
/// compression by attention weight alone, so that is the family the headlines compare with.
enum class policy_family {
  full,            // no compression
  attention_only,  // ranks tokens by (expected) attention weight alone
  entropy_based,   // InfoKV: attention fused with predictive entropy and layer evolution
  other,           // position, key norm, redundancy, chance
};

[[nodiscard]] constexpr std::string_view to_string(policy_family f) noexcept {
  switch (f) {
    case policy_family::full: return "full";
    case policy_family::attention_only: return "attention-only";
    case policy_family::entropy_based: return "entropy-based";
    case policy_family::other: return "other";
  }
  return "?";
}

using hook_builder = std::unique_ptr<compressor_hook> (*)(const compression_options&, const infokv::compress_config&,
                                                          const infokv::model_shape&);

struct policy_entry {
  std::string_view name;
  policy_family family = policy_family::other;
  bool window_options = false;  // kernel= / window=: pooling kernel and query window of its attention score
  bool mean_option = false;     // mean=1: H2O's mean over the queries that saw each key (kvpress's observed attention)
  bool alpha_tau = false;       // alpha= / tau=: InfoKV's fusion weight and evolution bias
  bool uniform_budget = false;  // every stream keeps the same share, so invert=1 (analysis) is defined
  bool attention_rows = false;  // observes every new token's full attention rows (engine memory: attention_rows.hpp)
  hook_builder build = nullptr;  // null: no compression
};

// Builders: the library's factory with the user's settings applied. Checks of which settings
// apply happen before (option_error), so a builder only applies them.
namespace builders {
inline std::unique_ptr<compressor_hook> infokv_fused(const compression_options& o, const infokv::compress_config& c,
                                                     const infokv::model_shape& s) {
  auto p = infokv::make_infokv(o.alpha, o.tau);
  set_window(p.attention, o);
  return wrap_policy(p, o, c, s);
}
inline std::unique_ptr<compressor_hook> infokv_adaptive(const compression_options& o, const infokv::compress_config& c,
                                                        const infokv::model_shape& s) {
  auto p = infokv::make_infokv_adaptive(o.alpha, o.tau);
  set_window(p.attention, o);
  return wrap_policy(p, o, c, s);
}
inline std::unique_ptr<compressor_hook> snapkv(const compression_options& o, const infokv::compress_config& c,
                                               const infokv::model_shape& s) {
  auto p = infokv::make_snapkv();
  set_window(p.scorer, o);
  return wrap_policy(p, o, c, s);
}
inline std::unique_ptr<compressor_hook> pyramidkv(const compression_options& o, const infokv::compress_config& c,
                                                  const infokv::model_shape& s) {
  auto p = infokv::make_pyramidkv();
  set_window(p.scorer, o);
  return wrap_policy(p, o, c, s);
}
inline std::unique_ptr<compressor_hook> h2o(const compression_options& o, const infokv::compress_config& c,
                                            const infokv::model_shape& s) {
  auto p = infokv::make_h2o();
  p.scorer.mean_over_queries = o.mean_attention;
  return wrap_policy(p, o, c, s);
}
inline std::unique_ptr<compressor_hook> streaming_llm(const compression_options& o, const infokv::compress_config& c,
                                                      const infokv::model_shape& s) {
  return wrap_policy(infokv::make_streaming_llm(), o, c, s);
}
inline std::unique_ptr<compressor_hook> tova(const compression_options& o, const infokv::compress_config& c,
                                             const infokv::model_shape& s) {
  return wrap_policy(infokv::make_tova(), o, c, s);
}
inline std::unique_ptr<compressor_hook> knorm(const compression_options& o, const infokv::compress_config& c,
                                              const infokv::model_shape& s) {
  return wrap_policy(infokv::make_knorm(), o, c, s);
}
inline std::unique_ptr<compressor_hook> expected_attention(const compression_options& o,
                                                           const infokv::compress_config& c,
                                                           const infokv::model_shape& s) {
  return wrap_policy(infokv::make_expected_attention(), o, c, s);
}
inline std::unique_ptr<compressor_hook> rkv(const compression_options& o, const infokv::compress_config& c,
                                            const infokv::model_shape& s) {
  return wrap_policy(infokv::make_rkv(), o, c, s);
}
inline std::unique_ptr<compressor_hook> random(const compression_options& o, const infokv::compress_config& c,
                                               const infokv::model_shape& s) {
  return wrap_policy(infokv::make_random(), o, c, s);
}
}  // namespace builders

// The order is the engine's listing (error messages, --list-policies, policies.csv) and the order
// the quality report names the attention-only baselines in.
inline constexpr std::array<policy_entry, 12> policy_registry = {{
    {.name = "none", .family = policy_family::full},
    {.name = "infokv", .family = policy_family::entropy_based, .window_options = true, .alpha_tau = true,
     .uniform_budget = true, .build = &builders::infokv_fused},
    {.name = "infokv-adaptive", .family = policy_family::entropy_based, .window_options = true, .alpha_tau = true,
     .build = &builders::infokv_adaptive},
    {.name = "snapkv", .family = policy_family::attention_only, .window_options = true, .uniform_budget = true,
     .build = &builders::snapkv},
    {.name = "pyramidkv", .family = policy_family::attention_only, .window_options = true,
     .build = &builders::pyramidkv},
    {.name = "streamingllm", .family = policy_family::other, .uniform_budget = true,
     .build = &builders::streaming_llm},
    {.name = "h2o", .family = policy_family::attention_only, .mean_option = true, .uniform_budget = true,
     .attention_rows = true, .build = &builders::h2o},
    {.name = "tova", .family = policy_family::attention_only, .uniform_budget = true, .build = &builders::tova},
    {.name = "knorm", .family = policy_family::other, .uniform_budget = true, .build = &builders::knorm},
    {.name = "expected-attention", .family = policy_family::attention_only, .uniform_budget = true,
     .build = &builders::expected_attention},
    {.name = "rkv", .family = policy_family::other, .uniform_budget = true, .build = &builders::rkv},
    {.name = "random", .family = policy_family::other, .uniform_budget = true, .build = &builders::random},
}};

/// infokv_eval's default comparison, in the order of its result rows: every policy of the
/// registry but "none" at per-layer granularity (the label is the name), then the variants at
/// another granularity (label NAME@GRANULARITY).
struct default_variant {
  std::string_view policy;
  std::string_view granularity;  // empty: per_layer, and the label has no suffix
};
inline constexpr std::array<default_variant, 13> default_comparison = {{
    {"random", ""},
    {"streamingllm", ""},
    {"h2o", ""},
    {"tova", ""},
    {"snapkv", ""},
    {"pyramidkv", ""},
    {"knorm", ""},
    {"expected-attention", ""},
    {"rkv", ""},
    {"infokv", ""},
    {"infokv-adaptive", ""},
    {"snapkv", "per_sequence"},
    {"infokv", "per_sequence"},
}};

namespace detail {
consteval bool compared_at_per_layer(std::string_view name) {
  for (const auto& d : default_comparison)
    if (d.policy == name && d.granularity.empty()) return true;
  return false;
}
consteval bool registered(std::string_view name) {
  for (const auto& e : policy_registry)
    if (e.name == name) return true;
  return false;
}
consteval bool every_policy_is_compared() {
  for (const auto& e : policy_registry)  // "none" is the full cache, the reference of every row
    if (compared_at_per_layer(e.name) == (e.family == policy_family::full)) return false;
  for (const auto& d : default_comparison)
    if (!registered(d.policy)) return false;
  return true;
}
}  // namespace detail
static_assert(detail::every_policy_is_compared(),
              "default_comparison must name every registry policy but \"none\" at per_layer, and nothing unregistered");

/// The settings a policy takes besides budgets and protection, as infokv_eval spells them.
[[nodiscard]] inline std::string policy_settings(const policy_entry& e) {
  std::string out;
  const auto add = [&](const char* k) { out += (out.empty() ? "" : " ") + std::string(k); };
  if (e.window_options) {
    add("kernel");
    add("window");
  }
  if (e.alpha_tau) {
    add("alpha");
    add("tau");
  }
  if (e.mean_option) add("mean");
  if (e.uniform_budget && e.build != nullptr) add("invert");
  return out;
}

/// The registry row of `name`, or null.
[[nodiscard]] inline const policy_entry* find_policy(std::string_view name) noexcept {
  for (const auto& e : policy_registry)
    if (e.name == name) return &e;
  return nullptr;
}

[[nodiscard]] inline std::vector<std::string> policy_names() {
  std::vector<std::string> out;
  for (const auto& e : policy_registry) out.emplace_back(e.name);
  return out;
}

/// "a, b and c": the policies for which `has` holds, in registry order.
template <class Pred>
[[nodiscard]] std::string policies_where(Pred has) {
  std::vector<std::string_view> names;
  for (const auto& e : policy_registry)
    if (has(e)) names.push_back(e.name);
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += i + 1 == names.size() ? " and " : ", ";
    out += names[i];
  }
  return out;
}

/// "unknown policy 'x' (none, infokv, ...)".
[[nodiscard]] inline std::string unknown_policy_message(const std::string& name) {
  std::string all;
  for (const auto& e : policy_registry) all += (all.empty() ? "" : ", ") + std::string(e.name);
  return "unknown policy '" + name + "' (" + all + ")";
}

/// Why the settings of `o` do not apply to policy `e` (empty: they do).
[[nodiscard]] inline std::string option_error(const policy_entry& e, const compression_options& o) {
  if ((o.kernel != 0 || o.window != 0) && !e.window_options)
    return "kernel / window apply to " + policies_where([](const policy_entry& x) { return x.window_options; });
  if (o.mean_attention && !e.mean_option)
    return "mean applies to " + policies_where([](const policy_entry& x) { return x.mean_option; });
  if (o.invert && !e.uniform_budget) return "invert applies to policies with uniform budgets";
  return {};
}

/// The hook for `o.policy` (null for "none"); `capacity`: the most tokens a stream may hold.
/// Throws std::invalid_argument for an unknown policy or settings that do not apply to it.
[[nodiscard]] inline std::unique_ptr<compressor_hook> make_hook(const compression_options& o, const llama_config& c,
                                                                std::size_t capacity) {
  const policy_entry* e = find_policy(o.policy);
  if (e == nullptr) throw std::invalid_argument(unknown_policy_message(o.policy));
  if (e->build == nullptr) return nullptr;
  if (const std::string why = option_error(*e, o); !why.empty()) throw std::invalid_argument(why);
  return e->build(o, make_config(o, c, capacity), shape_of(c));
}

}  // namespace engine
