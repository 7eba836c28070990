// SPDX-License-Identifier: Apache-2.0
// infokv_eval's command line: the options, their defaults (the committed run's grid), and the
// policy variants NAME[:KEY=VALUE,...][@GRANULARITY], checked against the policy registry.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "../cli.hpp"
#include "../policy_registry.hpp"

namespace eval {

inline constexpr const char* usage_text =
    "usage: infokv_eval --model PATH --text FILE --out DIR [options]\n"
    "       infokv_eval --list-policies  (every policy: name, family, settings, as CSV)\n"
    "  --scenarios prefill,decode,influence,retrieval  --policies P1,P2,...  (NAME[:KEY=VALUE,...][@GRANULARITY];\n"
    "    keys: alpha, tau (infokv), kernel, window (infokv, snapkv, pyramidkv), mean=1 (h2o), sinks, recent,\n"
    "    invert=1, keep=R (influence only))  --dump-keep DIR (prefill keep sets and token ids, JSON)\n"
    "  --offset N  --windows N  --contexts 1024,2048,4096,max  --continuation N  --prefill-budgets 0.4,0.2,0.1\n"
    "  --decode-tokens N  --periods 128,1024  --decode-budgets 0.25,0.125\n"
    "  --influence-prefix N  --influence-tokens N  --influence-budgets 0.2  --influence-policies LIST\n"
    "  --passage N  --gaps 1024,3840  --passkey-context N  --passkey-depths 0,0.25,0.5,0.75,1  --passkey-trials N\n"
    "  --sinks N  --recent N  --chunk N (tokens per forward of the shared pass)  --seed S  --jobs N (default: the cores)\n";

/// One policy setting: the engine's options plus the label it has in the results.
struct variant {
  std::string label;
  engine::compression_options opt;
  double keep = 0.0;  // > 0: this variant's own keep ratio (forward influence), else the scenario's
  std::optional<std::size_t> sinks, recent;  // this variant's protection, else --sinks / --recent
};

/// NAME[:KEY=VALUE,...][@GRANULARITY]; per_layer unless given. alpha and tau are InfoKV's;
/// kernel and window set the attention score's pooling kernel and query window; mean=1 makes
/// H2O's score a mean over the queries that saw each key; sinks and recent override the global
/// protection (kvpress's presses protect nothing but their own window); invert=1 evicts the
/// tokens the policy ranks highest (analysis only); keep=R fixes the keep ratio of a
/// forward-influence run. Which keys apply to which policy: the registry.
[[nodiscard]] inline variant parse_variant(const std::string& spec) {
  using cli::to_double;
  using cli::to_size;
  using cli::usage_error;
  variant v;
  v.label = spec;
  std::string s = spec;
  if (const auto at = s.find('@'); at != std::string::npos) {
    v.opt.granularity = engine::parse_granularity(s.substr(at + 1));
    s = s.substr(0, at);
  }
  const auto colon = s.find(':');
  const std::string name = s.substr(0, colon);
  const engine::policy_entry* entry = engine::find_policy(name);
  if (colon != std::string::npos) {
    for (const auto& kv : cli::split(s.substr(colon + 1), ',')) {
      const auto eq = kv.find('=');
      if (eq == std::string::npos) usage_error("bad policy parameter '" + kv + "' in '" + spec + "'");
      const std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
      if ((key == "alpha" || key == "tau") && (entry == nullptr || !entry->alpha_tau))
        usage_error("alpha / tau apply to " +
                    engine::policies_where([](const engine::policy_entry& e) { return e.alpha_tau; }) + " only");
      if (key == "alpha") v.opt.alpha = static_cast<float>(to_double(value, "alpha"));
      else if (key == "tau") v.opt.tau = static_cast<float>(to_double(value, "tau"));
      else if (key == "invert") v.opt.invert = to_size(value, "invert") != 0;
      else if (key == "kernel") v.opt.kernel = to_size(value, "kernel");
      else if (key == "window") v.opt.window = to_size(value, "window");
      else if (key == "mean") v.opt.mean_attention = to_size(value, "mean") != 0;
      else if (key == "sinks") v.sinks = to_size(value, "sinks");
      else if (key == "recent") v.recent = to_size(value, "recent");
      else if (key == "keep") {
        v.keep = to_double(value, "keep");
        if (!(v.keep > 0.0 && v.keep <= 1.0)) usage_error("keep must lie in (0, 1]");
      } else {
        usage_error("unknown policy parameter '" + key + "' in '" + spec +
                    "' (alpha, tau, kernel, window, mean, sinks, recent, invert, keep)");
      }
    }
  }
  v.opt.policy = name;
  // "none" is the full cache, which every comparison reports anyway.
  if (entry == nullptr || entry->build == nullptr) usage_error("unknown policy '" + name + "' in '" + spec + "'");
  if (v.opt.kernel % 2 == 0 && v.opt.kernel != 0) usage_error("kernel must be odd in '" + spec + "'");
  if (const std::string why = engine::option_error(*entry, v.opt); !why.empty()) usage_error(why + " ('" + spec + "')");
  return v;
}

/// A comma-separated list of variants. Parameters use commas too: "infokv:alpha=1,tau=2"
/// continues the previous spec.
[[nodiscard]] inline std::vector<variant> parse_variants(const std::string& list) {
  std::vector<variant> out;
  for (const auto& spec : cli::split(list, ',')) {
    if (!out.empty() && spec.find('=') != std::string::npos && spec.find(':') == std::string::npos &&
        out.back().label.find(':') != std::string::npos)
      out.back() = parse_variant(out.back().label + "," + spec);
    else
      out.push_back(parse_variant(spec));
  }
  return out;
}

/// The registry's default comparison as a variant list.
[[nodiscard]] inline std::string default_policy_list() {
  std::string out;
  for (const auto& d : engine::default_comparison) {
    if (!out.empty()) out += ',';
    out += d.policy;
    if (!d.granularity.empty()) out += "@" + std::string(d.granularity);
  }
  return out;
}

struct options {
  std::string model, text, out, dump_keep;
  bool list_policies = false;
  std::vector<std::string> scenarios = {"prefill", "decode", "influence", "retrieval"};
  std::vector<variant> policies;
  std::vector<variant> influence_policies;
  std::size_t offset = 0, windows = 1, continuation = 256;
  std::vector<std::string> contexts = {"1024", "2048", "4096", "max"};
  std::vector<double> prefill_budgets = {0.4, 0.2, 0.1};
  std::size_t decode_tokens = 4096;
  std::vector<std::size_t> periods = {128, 1024};
  std::vector<double> decode_budgets = {0.25, 0.125};
  std::size_t influence_prefix = 2048, influence_tokens = 0;  // 0: up to the model's context
  std::vector<double> influence_budgets = {0.2};
  std::size_t passage = 256;
  std::vector<std::size_t> gaps = {1024, 3840};
  std::size_t passkey_context = 2048, passkey_trials = 2;
  std::vector<double> passkey_depths = {0.0, 0.25, 0.5, 0.75, 1.0};
  std::size_t sinks = 4, recent = 64, chunk = 512;
  std::uint64_t seed = 1234;
  std::size_t jobs = std::max(1u, std::thread::hardware_concurrency());
  [[nodiscard]] bool wants(const std::string& s) const {
    return std::find(scenarios.begin(), scenarios.end(), s) != scenarios.end();
  }
};

[[nodiscard]] inline std::vector<double> parse_ratios(const std::string& s, const char* what) {
  std::vector<double> out;
  for (const auto& x : cli::split(s, ',')) {
    const double r = cli::to_double(x, what);
    if (!(r > 0.0 && r <= 1.0)) cli::usage_error(std::string(what) + " must lie in (0, 1]");
    out.push_back(r);
  }
  if (out.empty()) cli::usage_error(std::string(what) + " is empty");
  return out;
}

[[nodiscard]] inline std::vector<std::size_t> parse_sizes(const std::string& s, const char* what) {
  std::vector<std::size_t> out;
  for (const auto& x : cli::split(s, ',')) out.push_back(cli::to_size(x, what));
  if (out.empty()) cli::usage_error(std::string(what) + " is empty");
  return out;
}

/// The options of the command line; every error is a usage error (exit 1 with the usage).
[[nodiscard]] inline options parse(int argc, char** argv) {
  using cli::to_double;
  using cli::to_size;
  using cli::usage_error;
  options o;
  o.policies = parse_variants(default_policy_list());
  // Keep what each score ranks highest (evict what it would drop), and, in the paper's own
  // sense of influence, remove the 10% each score ranks highest.
  o.influence_policies = parse_variants(
      "infokv:alpha=1,infokv:alpha=0,infokv,random,infokv:alpha=1,invert=1,keep=0.9,infokv:alpha=0,invert=1,keep=0.9,"
      "random:keep=0.9");
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage_error("missing value after " + a);
      return argv[++i];
    };
    if (a == "--model") o.model = next();
    else if (a == "--text") o.text = next();
    else if (a == "--out") o.out = next();
    else if (a == "--list-policies") o.list_policies = true;
    else if (a == "--scenarios") o.scenarios = cli::split(next(), ',');
    else if (a == "--policies") o.policies = parse_variants(next());
    else if (a == "--influence-policies") o.influence_policies = parse_variants(next());
    else if (a == "--offset") o.offset = to_size(next(), "--offset");
    else if (a == "--windows") o.windows = to_size(next(), "--windows");
    else if (a == "--contexts") o.contexts = cli::split(next(), ',');
    else if (a == "--continuation") o.continuation = to_size(next(), "--continuation");
    else if (a == "--prefill-budgets") o.prefill_budgets = parse_ratios(next(), "--prefill-budgets");
    else if (a == "--decode-tokens") o.decode_tokens = to_size(next(), "--decode-tokens");
    else if (a == "--periods") o.periods = parse_sizes(next(), "--periods");
    else if (a == "--decode-budgets") o.decode_budgets = parse_ratios(next(), "--decode-budgets");
    else if (a == "--influence-prefix") o.influence_prefix = to_size(next(), "--influence-prefix");
    else if (a == "--influence-tokens") o.influence_tokens = to_size(next(), "--influence-tokens");
    else if (a == "--influence-budgets") o.influence_budgets = parse_ratios(next(), "--influence-budgets");
    else if (a == "--passage") o.passage = to_size(next(), "--passage");
    else if (a == "--gaps") o.gaps = parse_sizes(next(), "--gaps");
    else if (a == "--passkey-context") o.passkey_context = to_size(next(), "--passkey-context");
    else if (a == "--passkey-trials") o.passkey_trials = to_size(next(), "--passkey-trials");
    else if (a == "--passkey-depths") {
      o.passkey_depths.clear();
      for (const auto& x : cli::split(next(), ',')) {
        const double d = to_double(x, "--passkey-depths");
        if (d < 0.0 || d > 1.0) usage_error("--passkey-depths must lie in [0, 1]");
        o.passkey_depths.push_back(d);
      }
    } else if (a == "--sinks") o.sinks = to_size(next(), "--sinks");
    else if (a == "--recent") o.recent = to_size(next(), "--recent");
    else if (a == "--chunk") o.chunk = to_size(next(), "--chunk");
    else if (a == "--seed") o.seed = to_size(next(), "--seed");
    else if (a == "--jobs") o.jobs = std::max<std::size_t>(1, to_size(next(), "--jobs"));
    else if (a == "--dump-keep") o.dump_keep = next();
    else usage_error("unknown option '" + a + "'");
  }
  if (o.list_policies) return o;
  if (o.model.empty() || o.text.empty() || o.out.empty()) usage_error("--model, --text and --out are required");
  for (const auto& s : o.scenarios)
    if (s != "prefill" && s != "decode" && s != "influence" && s != "retrieval") usage_error("unknown scenario '" + s + "'");
  if (o.windows == 0 || o.continuation < 2 || o.chunk == 0 || o.passage < 2) usage_error("sizes must be positive");
  for (const auto& v : o.policies)
    if (v.keep > 0.0) usage_error("keep=R applies to --influence-policies only ('" + v.label + "')");
  for (auto* list : {&o.policies, &o.influence_policies})
    for (auto& v : *list) {
      v.opt.sink_tokens = v.sinks.value_or(o.sinks);
      v.opt.recent_tokens = v.recent.value_or(o.recent);
    }
  return o;
}

}  // namespace eval
