// SPDX-License-Identifier: Apache-2.0
// infokv_eval: quality of every policy on a real model and real text, teacher-forced and
// deterministic. Four scenarios:
//   prefill    a context of C tokens compressed once to a keep ratio, then NLL, KL(p_full || p)
//              and top-1 agreement on the next tokens (the paper's long-prefill setting)
//   decode     T tokens streamed in chunks of P, compressed after every chunk to a ratio of the
//              tokens seen (chunked teacher forcing = decoding with compression every P steps)
//   influence  a prefix compressed once by attention (InfoKV alpha = 1) or by entropy (alpha = 0),
//              then KL per 128-token chunk of what follows, as a function of distance
//   retrieval  a passage repeated after a gap (NLL on the repeat) and passkey retrieval over
//              depths (greedy: every answer token must be the arg max)
// The model runs each context once: every policy observes the same forward pass (a fan-out of
// sequence states), and at each compression point the cache and states are copied per policy
// and budget. Results go to CSV files in --out; scripts/eval_report.py makes the tables and plots.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cli.hpp"
#include "gguf.hpp"
#include "llama_model.hpp"
#include "metrics.hpp"
#include "policies.hpp"
#include "session.hpp"
#include "tokenizer.hpp"

namespace {

using cli::clock_type;
using cli::read_file;
using cli::seconds_since;
using cli::split;
using cli::to_double;
using cli::to_size;
using cli::usage_error;
using tokens = std::vector<std::int32_t>;
using infokv::stream_granularity;

/// Runs f(0) .. f(n - 1) on `jobs` threads (the compressed runs of a comparison are independent:
/// each has its own session, cache copy and sequence state; the model and the reference are only
/// read). Each worker's matrix products run single-threaded, so the workers share the cores
/// instead of oversubscribing them. The first exception is rethrown after every worker stopped.
template <class F>
void parallel_for(std::size_t n, std::size_t jobs, F&& f) {
  if (jobs <= 1 || n <= 1) {
    for (std::size_t i = 0; i < n; ++i) f(i);
    return;
  }
  std::atomic<std::size_t> next{0};
  std::exception_ptr error;
  std::mutex mu;
  const auto work = [&] {
#ifdef _OPENMP
    omp_set_num_threads(1);
#endif
    for (std::size_t i = next++; i < n; i = next++) {
      try {
        f(i);
      } catch (...) {
        const std::lock_guard<std::mutex> lock(mu);
        if (!error) error = std::current_exception();
        next = n;
      }
    }
  };
  std::vector<std::thread> workers;
  try {
    for (std::size_t j = 0; j < std::min(jobs, n); ++j) workers.emplace_back(work);
  } catch (...) {  // no thread: stop the started ones before reporting
    next = n;
    for (auto& w : workers) w.join();
    throw;
  }
  for (auto& w : workers) w.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace

[[noreturn]] void cli::usage_error(const std::string& msg) {
  std::fprintf(stderr, "error: %s\n", msg.c_str());
  std::fprintf(stderr,
               "usage: infokv_eval --model PATH --text FILE --out DIR [options]\n"
               "  --scenarios prefill,decode,influence,retrieval  --policies P1,P2,...  (NAME[:KEY=VALUE,...][@GRANULARITY];\n"
               "    keys: alpha, tau (infokv), kernel, window (infokv, snapkv, pyramidkv), mean=1 (h2o), sinks, recent,\n"
               "    invert=1, keep=R (influence only))  --dump-keep DIR (prefill keep sets and token ids, JSON)\n"
               "  --offset N  --windows N  --contexts 1024,2048,4096,max  --continuation N  --prefill-budgets 0.4,0.2,0.1\n"
               "  --decode-tokens N  --periods 128,1024  --decode-budgets 0.25,0.125\n"
               "  --influence-prefix N  --influence-tokens N  --influence-budgets 0.2  --influence-policies LIST\n"
               "  --passage N  --gaps 1024,3840  --passkey-context N  --passkey-depths 0,0.25,0.5,0.75,1  --passkey-trials N\n"
               "  --sinks N  --recent N  --chunk N (tokens per forward of the shared pass)  --seed S  --jobs N (default: the cores)\n");
  std::exit(1);
}

namespace {

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
/// forward-influence run.
variant parse_variant(const std::string& spec) {
  variant v;
  v.label = spec;
  std::string s = spec;
  if (const auto at = s.find('@'); at != std::string::npos) {
    v.opt.granularity = engine::parse_granularity(s.substr(at + 1));
    s = s.substr(0, at);
  }
  if (const auto colon = s.find(':'); colon != std::string::npos) {
    for (const auto& kv : split(s.substr(colon + 1), ',')) {
      const auto eq = kv.find('=');
      if (eq == std::string::npos) usage_error("bad policy parameter '" + kv + "' in '" + spec + "'");
      const std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
      const bool infokv_family = s.rfind("infokv", 0) == 0;
      if ((key == "alpha" || key == "tau") && !infokv_family)
        usage_error("alpha / tau apply to infokv and infokv-adaptive only");
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
    s = s.substr(0, colon);
  }
  v.opt.policy = s;
  const auto names = engine::policy_names();
  if (s == "none" || std::find(names.begin(), names.end(), s) == names.end())
    usage_error("unknown policy '" + s + "' in '" + spec + "'");
  if (v.opt.kernel % 2 == 0 && v.opt.kernel != 0) usage_error("kernel must be odd in '" + spec + "'");
  return v;
}

struct options {
  std::string model, text, out, dump_keep;
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

std::vector<variant> parse_variants(const std::string& list) {
  std::vector<variant> out;
  for (const auto& spec : split(list, ',')) {
    // Parameters use commas too: "infokv:alpha=1,tau=2" continues the previous spec.
    if (!out.empty() && spec.find('=') != std::string::npos && spec.find(':') == std::string::npos &&
        out.back().label.find(':') != std::string::npos)
      out.back() = parse_variant(out.back().label + "," + spec);
    else
      out.push_back(parse_variant(spec));
  }
  return out;
}
std::vector<double> parse_ratios(const std::string& s, const char* what) {
  std::vector<double> out;
  for (const auto& x : split(s, ',')) {
    const double r = to_double(x, what);
    if (!(r > 0.0 && r <= 1.0)) usage_error(std::string(what) + " must lie in (0, 1]");
    out.push_back(r);
  }
  if (out.empty()) usage_error(std::string(what) + " is empty");
  return out;
}
std::vector<std::size_t> parse_sizes(const std::string& s, const char* what) {
  std::vector<std::size_t> out;
  for (const auto& x : split(s, ',')) out.push_back(to_size(x, what));
  if (out.empty()) usage_error(std::string(what) + " is empty");
  return out;
}

options parse(int argc, char** argv) {
  options o;
  o.policies = parse_variants(
      "random,streamingllm,h2o,tova,snapkv,pyramidkv,knorm,expected-attention,rkv,infokv,infokv-adaptive,"
      "snapkv@per_sequence,infokv@per_sequence");
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
    else if (a == "--scenarios") o.scenarios = split(next(), ',');
    else if (a == "--policies") o.policies = parse_variants(next());
    else if (a == "--influence-policies") o.influence_policies = parse_variants(next());
    else if (a == "--offset") o.offset = to_size(next(), "--offset");
    else if (a == "--windows") o.windows = to_size(next(), "--windows");
    else if (a == "--contexts") o.contexts = split(next(), ',');
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
      for (const auto& x : split(next(), ',')) {
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

/// Every variant observes the forward pass of one full-cache session: the hooks of the
/// session's granularity read its cache; the others read a copy in their own layout, kept in
/// step token by token. Never evicts.
class fanout_hook final : public engine::compression_hook {
 public:
  fanout_hook(std::vector<std::unique_ptr<engine::compression_hook>> hooks, stream_granularity own,
              const engine::llama_config& c, std::size_t page_size, std::size_t max_tokens)
      : hooks_(std::move(hooks)), own_(own) {
    for (const auto& h : hooks_) {
      needs_ = needs_ | h->required();
      const auto g = h->config().granularity;
      if (g != own_ && shadows_.find(g) == shadows_.end())
        shadows_.emplace(g, engine::cache_type(c, g, page_size, max_tokens));
    }
  }
  [[nodiscard]] infokv::signal_set required() const override { return needs_; }
  [[nodiscard]] infokv::status run(const engine::view_type& v, const infokv::step_signals& sig, engine::step_kind) override {
    for (auto& [g, cache] : shadows_) cache.append_from(v, sig.num_tokens);
    for (auto& h : hooks_) {
      const auto g = h->config().granularity;
      const engine::view_type view = g == own_ ? v : shadows_.at(g).view();
      INFOKV_TRY(h->run(view, sig, engine::step_kind::prefill_chunk));
    }
    return {};
  }
  [[nodiscard]] const infokv::eviction_event& last_event() const override { return none_; }
  [[nodiscard]] std::size_t state_bytes() const override { return 0; }
  [[nodiscard]] const infokv::compress_config& config() const override {
    if (hooks_.empty()) throw std::logic_error("an empty fan-out has no configuration");
    return hooks_.front()->config();
  }
  [[nodiscard]] std::unique_ptr<engine::compression_hook> clone_with_budgets(const infokv::budget&,
                                                                             const infokv::budget&) const override {
    throw std::logic_error("a fan-out is not cloned; clone its hooks");
  }
  [[nodiscard]] const engine::compression_hook& hook(std::size_t i) const { return *hooks_[i]; }
  /// The cache of granularity g, as the session holds it or as the shadow copy.
  [[nodiscard]] const engine::cache_type& cache_for(stream_granularity g, const engine::cache_type& own) const {
    return g == own_ ? own : shadows_.at(g);
  }

 private:
  std::vector<std::unique_ptr<engine::compression_hook>> hooks_;
  stream_granularity own_;
  infokv::signal_set needs_{};
  std::map<stream_granularity, engine::cache_type> shadows_;
  infokv::eviction_event none_{};
};

/// What one compressed run measured.
struct run_result {
  engine::quality_sum q;
  double kept = 0.0, library_s = 0.0;
  std::vector<std::vector<std::int32_t>> keep;  // sorted positions per stream (with --dump-keep)
};

/// Keep sets and token ids for outside references (scripts/reference/kvpress_parity.py reads
/// them): one JSON object per compressed prefill run in keep_sets.jsonl, and the ids of each
/// window in tokens.json (window 0) or tokens_window<W>.json.
class keep_dump {
 public:
  keep_dump(const std::filesystem::path& dir, std::string model, std::string text)
      : dir_(dir), model_(std::move(model)), text_(std::move(text)) {
    std::filesystem::create_directories(dir_);
    out_.open(dir_ / "keep_sets.jsonl");
    if (!out_) throw std::runtime_error("cannot write '" + (dir_ / "keep_sets.jsonl").string() + "'");
  }
  void tokens(std::size_t window, std::size_t offset, const std::vector<std::int32_t>& ids) {
    const auto path = dir_ / (window == 0 ? std::string("tokens.json") : "tokens_window" + std::to_string(window) + ".json");
    std::ofstream f(path);
    f << "{\"model\": " << quote(model_) << ", \"text\": " << quote(text_) << ", \"window\": " << window
      << ", \"offset\": " << offset << ", \"ids\": [";
    for (std::size_t i = 0; i < ids.size(); ++i) f << (i ? "," : "") << ids[i];
    f << "]}\n";
    if (!f) throw std::runtime_error("cannot write '" + path.string() + "'");
  }
  void keep_set(std::size_t window, std::size_t context, double budget, const std::string& policy,
                stream_granularity g, std::size_t layers, std::size_t kv_heads,
                const std::vector<std::vector<std::int32_t>>& streams) {
    char b[40];
    std::snprintf(b, sizeof b, "%.12g", budget);
    out_ << "{\"scenario\": \"prefill\", \"window\": " << window << ", \"context\": " << context << ", \"budget\": " << b
         << ", \"policy\": " << quote(policy) << ", \"granularity\": " << quote(std::string(infokv::to_string(g)))
         << ", \"num_layers\": " << layers << ", \"num_kv_heads\": " << kv_heads << ", \"streams\": [";
    for (std::size_t s = 0; s < streams.size(); ++s) {
      out_ << (s ? ", [" : "[");
      for (std::size_t i = 0; i < streams[s].size(); ++i) out_ << (i ? "," : "") << streams[s][i];
      out_ << "]";
    }
    out_ << "]}\n";
    out_.flush();
  }

 private:
  static std::string quote(const std::string& x) {
    std::string q = "\"";
    for (char c : x) {
      if (c == '"' || c == '\\') q += '\\';
      q += c;
    }
    return q + "\"";
  }
  std::filesystem::path dir_;
  std::string model_, text_;
  std::ofstream out_;
};

/// CSV output with a fixed header.
class csv_file {
 public:
  csv_file(const std::filesystem::path& p, const std::string& header) : out_(p) {
    if (!out_) throw std::runtime_error("cannot write '" + p.string() + "'");
    out_ << header << '\n';
  }
  template <class... Ts>
  void row(const Ts&... xs) {
    std::size_t i = 0;
    ((out_ << (i++ == 0 ? "" : ",") << format(xs)), ...);
    out_ << '\n';
    out_.flush();
  }

 private:
  // Labels may hold commas ("infokv:alpha=1,invert=1"): quoted as RFC 4180 says.
  static std::string format(const std::string& s) {
    if (s.find_first_of(",\"") == std::string::npos) return s;
    std::string q = "\"";
    for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
  }
  static std::string format(const char* s) { return format(std::string(s)); }
  static std::string format(double x) {
    char b[40];
    std::snprintf(b, sizeof b, "%.12g", x);
    return b;
  }
  static std::string format(std::size_t x) { return std::to_string(x); }
  std::ofstream out_;
};

std::string granularity_name(stream_granularity g) { return std::string(infokv::to_string(g)); }

class evaluator {
 public:
  evaluator(const options& o, const engine::llama_model& m, const engine::bpe_tokenizer& tok, tokens text,
            keep_dump* dump)
      : o_(o), m_(m), tok_(tok), ids_(std::move(text)), cfg_(m.config), dump_(dump),
        quality_(std::filesystem::path(o.out) / "quality.csv",
                 "scenario,window,context,period,budget,policy,granularity,kept,predictions,nll_full,nll,delta_nll,kl,"
                 "top1,library_seconds"),
        influence_(std::filesystem::path(o.out) / "influence.csv",
                   "policy,budget,prefix,chunk,distance,predictions,nll_full,nll,delta_nll,kl,top1"),
        passkey_(std::filesystem::path(o.out) / "passkey.csv",
                 "policy,granularity,budget,context,depth,trials,correct,answer_nll"),
        first_read_(std::filesystem::path(o.out) / "repeat_first_read.csv", "gap,context,predictions,nll_first_read") {}

  void run() {
    const std::size_t ctx = cfg_.context;
    // Region A: prefill contexts, the influence prefix and the decode stream start at the same
    // token, so one forward pass serves all three. Later windows: prefill only.
    std::vector<std::size_t> contexts;
    for (const auto& c : o_.contexts) {
      const std::size_t C = c == "max" ? ctx - o_.continuation : to_size(c, "--contexts");
      if (C < o_.sinks + o_.recent + 64 || C + o_.continuation > ctx)
        usage_error("context " + std::to_string(C) + " does not fit (needs protected tokens < C and C + continuation <= " +
                    std::to_string(ctx) + ")");
      contexts.push_back(C);
    }
    std::sort(contexts.begin(), contexts.end());
    contexts.erase(std::unique(contexts.begin(), contexts.end()), contexts.end());
    if (o_.wants("prefill") && contexts.empty()) usage_error("--contexts is empty");
    if (o_.wants("influence") && (o_.influence_prefix < o_.sinks + o_.recent + 64 || o_.influence_prefix + 2 > ctx))
      usage_error("--influence-prefix must exceed the protected tokens and leave room in the context");
    const std::size_t inf_tokens = o_.influence_tokens == 0 ? ctx - o_.influence_prefix : o_.influence_tokens;
    if (o_.wants("influence") && (inf_tokens < 2 || o_.influence_prefix + inf_tokens > ctx))
      usage_error("influence prefix + tokens exceed the context");
    if (o_.wants("decode") && o_.decode_tokens > ctx) usage_error("--decode-tokens exceeds the model's context");
    if (o_.wants("decode") &&
        (o_.periods.empty() || *std::max_element(o_.periods.begin(), o_.periods.end()) + 1 >= o_.decode_tokens ||
         *std::min_element(o_.periods.begin(), o_.periods.end()) == 0))
      usage_error("--periods must be positive and the longest below --decode-tokens - 1 (rows after it are scored)");
    std::size_t region = 0;
    if (o_.wants("prefill")) region = std::max(region, contexts.back() + o_.continuation);
    if (o_.wants("influence")) region = std::max(region, o_.influence_prefix + inf_tokens);
    if (o_.wants("decode")) region = std::max(region, o_.decode_tokens);
    // Everything that could fail late is checked before the first forward pass.
    std::size_t needed = o_.offset + (o_.wants("prefill") ? o_.windows : 1) * region;
    if (o_.wants("retrieval")) {
      const std::size_t gmax = *std::max_element(o_.gaps.begin(), o_.gaps.end());
      if (o_.passage + gmax + o_.passage > ctx) usage_error("passage + gap + passage exceeds the model's context");
      if (o_.passkey_context + 16 > ctx) usage_error("--passkey-context leaves no room for the answer in the context");
      needed += o_.passage + gmax + o_.passkey_context;
    }
    if (needed > ids_.size())
      throw std::runtime_error("the text has " + std::to_string(ids_.size()) + " tokens; the evaluation needs " +
                               std::to_string(needed) + " (lower --windows, --offset or the sizes)");
    std::size_t used = o_.offset;
    for (std::size_t w = 0; w < (o_.wants("prefill") ? o_.windows : 1) && region > 0; ++w) {
      const tokens a = take(used, region);
      if (dump_ != nullptr) dump_->tokens(w, used, a);
      used += region;
      prefix_scenarios(w, a, contexts, inf_tokens);
    }
    if (o_.wants("retrieval")) {
      const std::size_t gmax = *std::max_element(o_.gaps.begin(), o_.gaps.end());
      const tokens b = take(used, o_.passage + gmax);
      used += o_.passage + gmax;
      repeat_scenario(b);
      passkey_scenario(take(used, o_.passkey_context));
    }
  }

 private:
  [[nodiscard]] tokens take(std::size_t from, std::size_t n) const {
    if (from + n > ids_.size())
      throw std::runtime_error("the text has " + std::to_string(ids_.size()) + " tokens; the evaluation needs " +
                               std::to_string(from + n) + " (lower --windows, --offset or the sizes)");
    return {ids_.begin() + static_cast<std::ptrdiff_t>(from), ids_.begin() + static_cast<std::ptrdiff_t>(from + n)};
  }

  [[nodiscard]] std::unique_ptr<engine::compression_hook> hook_for(const variant& v, std::size_t capacity) const {
    return engine::make_hook(v.opt, cfg_, capacity);
  }

  /// Chunk boundaries of a pass over [0, end): every o_.chunk tokens and at each stop.
  [[nodiscard]] std::vector<std::size_t> boundaries(std::size_t end, const std::vector<std::size_t>& stops) const {
    std::vector<std::size_t> b;
    for (std::size_t t = o_.chunk; t < end; t += o_.chunk) b.push_back(t);
    for (std::size_t s : stops)
      if (s > 0 && s < end) b.push_back(s);
    b.push_back(end);
    std::sort(b.begin(), b.end());
    b.erase(std::unique(b.begin(), b.end()), b.end());
    return b;
  }

  /// One full-cache forward pass over `x` that every variant of `vars` observes. At each stop
  /// `at_stop(session, fanout, stop)` runs; `on_chunk(first, logits)` sees every chunk's logits.
  void shared_pass(const tokens& x, std::size_t extra, const std::vector<variant>& vars, const std::vector<std::size_t>& stops,
                   const std::function<void(const engine::session&, const fanout_hook&, std::size_t)>& at_stop,
                   const std::function<void(std::size_t, const engine::row_matrix&)>& on_chunk) {
    std::vector<std::unique_ptr<engine::compression_hook>> hooks;
    for (const auto& v : vars) hooks.push_back(hook_for(v, cfg_.context));
    // Pages for the pass and what a copy appends after it (`extra` tokens): every copy made at
    // a stop carries the whole pool, so it is sized to what is needed.
    const std::size_t pool = std::min(x.size() + extra, cfg_.context);
    auto fan = std::make_unique<fanout_hook>(std::move(hooks), stream_granularity::per_layer, cfg_, page_size_, pool);
    const fanout_hook* fan_ptr = fan.get();
    engine::session s(m_, stream_granularity::per_layer, page_size_, pool, std::move(fan));
    std::size_t t0 = 0;
    for (const std::size_t t1 : boundaries(x.size(), stops)) {
      const auto& lg = s.forward(std::span<const std::int32_t>(x.data() + t0, t1 - t0), engine::step_kind::prefill_chunk, true);
      if (on_chunk) on_chunk(t0, lg);
      t0 = t1;
      if (std::find(stops.begin(), stops.end(), t1) != stops.end()) at_stop(s, *fan_ptr, t1);
    }
  }

  /// A session continuing the pass at position C with variant i evicted to `budget` (prefill
  /// budget: one compress_prefill), no compression after that.
  [[nodiscard]] std::unique_ptr<engine::session> compressed_copy(const engine::session& full, const fanout_hook& fan,
                                                                 std::size_t i, const variant& v, double budget,
                                                                 std::size_t C, double& kept, double& lib_s) const {
    const engine::compression_hook& h = fan.hook(i);
    auto s = std::make_unique<engine::session>(m_, fan.cache_for(v.opt.granularity, full.cache()), C,
                                               h.clone_with_budgets(h.config().decode_budget, infokv::budget::of_ratio(budget)));
    s->compress_now();
    kept = static_cast<double>(s->cache().tokens_held()) / static_cast<double>(s->cache().num_streams() * C);
    lib_s = s->stats().library_seconds;
    s->set_hook(nullptr);
    return s;
  }

  /// Reference rows for `cont` fed after the full cache at C: row r predicts cont[r + 1].
  [[nodiscard]] engine::reference_rows continuation_reference(const engine::session& full, const tokens& cont,
                                                              std::size_t C, engine::row_matrix* logits_out = nullptr) const {
    engine::session f(m_, full.cache(), C, nullptr);
    const auto& lg = f.forward(cont, engine::step_kind::decode, true);
    engine::reference_rows ref(cont.size() - 1, cfg_.vocab);
    for (std::size_t r = 0; r + 1 < cont.size(); ++r) ref.set(r, lg.row(static_cast<Eigen::Index>(r)), cont[r + 1]);
    if (logits_out) *logits_out = lg;
    return ref;
  }

  /// Every variant and budget compressed at C, then `cont` fed; one quality row each. The full
  /// cache's rows are recomputed at the end and must be bit-identical (the copies never touch
  /// the shared pass).
  void compare_at(const std::string& scenario, std::size_t window, const engine::session& full, const fanout_hook& fan,
                  const tokens& cont, std::size_t C, const std::vector<double>& budgets) {
    engine::row_matrix before;
    const engine::reference_rows ref = continuation_reference(full, cont, C, &before);
    engine::quality_sum fq;
    for (std::size_t r = 0; r + 1 < cont.size(); ++r) fq.add(ref, r, before.row(static_cast<Eigen::Index>(r)), cont[r + 1]);
    write_quality(scenario, window, C, 0, 1.0, "full", "-", 1.0, fq, 0.0);
    const std::size_t nb = budgets.size();
    std::vector<run_result> res(o_.policies.size() * nb);
    parallel_for(res.size(), o_.jobs, [&](std::size_t k) {
      const std::size_t i = k / nb;
      run_result& r = res[k];
      auto s = compressed_copy(full, fan, i, o_.policies[i], budgets[k % nb], C, r.kept, r.library_s);
      if (dump_ != nullptr && scenario == "prefill")
        for (std::size_t st = 0; st < s->cache().num_streams(); ++st) {
          r.keep.push_back(s->cache().stream_positions(st));
          std::sort(r.keep.back().begin(), r.keep.back().end());
        }
      const auto& lg = s->forward(cont, engine::step_kind::decode, true);
      for (std::size_t j = 0; j + 1 < cont.size(); ++j) r.q.add(ref, j, lg.row(static_cast<Eigen::Index>(j)), cont[j + 1]);
    });
    for (std::size_t k = 0; k < res.size(); ++k) {
      const variant& v = o_.policies[k / nb];
      write_quality(scenario, window, C, 0, budgets[k % nb], v.label, granularity_name(v.opt.granularity), res[k].kept,
                    res[k].q, res[k].library_s);
      if (!res[k].keep.empty())
        dump_->keep_set(window, C, budgets[k % nb], v.label, v.opt.granularity, cfg_.layers, cfg_.kv_heads, res[k].keep);
    }
    engine::session again(m_, full.cache(), C, nullptr);
    const auto& after = again.forward(cont, engine::step_kind::decode, true);
    if (after.rows() != before.rows() ||
        std::memcmp(after.data(), before.data(), static_cast<std::size_t>(after.size()) * sizeof(float)) != 0)
      throw std::logic_error("the full cache's logits changed after the compressed runs");
  }

  void write_quality(const std::string& scenario, std::size_t window, std::size_t context, std::size_t period, double budget,
                     const std::string& policy, const std::string& gran, double kept, const engine::quality_sum& q,
                     double lib_s) {
    quality_.row(scenario, window, context, period, budget, policy, gran, kept, q.predictions, q.mean(q.nll_full),
                 q.mean(q.nll), q.mean(q.nll - q.nll_full), q.mean(q.kl), q.mean(static_cast<double>(q.top1_same)), lib_s);
    std::printf("  %-9s C=%-5zu P=%-4zu keep %-5.3g %-28s dNLL %+.4f  KL %.4f  top1 %.3f\n", scenario.c_str(), context,
                period, budget, policy.c_str(), q.mean(q.nll - q.nll_full), q.mean(q.kl),
                q.mean(static_cast<double>(q.top1_same)));
    std::fflush(stdout);
  }

  /// Prefill, influence and decode scenarios on one region of the text.
  void prefix_scenarios(std::size_t window, const tokens& a, const std::vector<std::size_t>& contexts, std::size_t inf_tokens) {
    const auto t = clock_type::now();
    const bool prefill = o_.wants("prefill");
    const bool influence = window == 0 && o_.wants("influence");
    const bool decode = window == 0 && o_.wants("decode");
    std::vector<variant> observed = prefill ? o_.policies : std::vector<variant>{};
    const std::size_t n_main = observed.size();
    if (influence) observed.insert(observed.end(), o_.influence_policies.begin(), o_.influence_policies.end());
    std::vector<std::size_t> stops;
    if (prefill) stops = contexts;
    if (influence) stops.push_back(o_.influence_prefix);
    std::sort(stops.begin(), stops.end());
    stops.erase(std::unique(stops.begin(), stops.end()), stops.end());
    const std::size_t pass_end = std::max(influence ? o_.influence_prefix + inf_tokens : 0, decode ? o_.decode_tokens : 0);
    // Full-cache reference rows of the pass (row r predicts a[r + 1]) for decode and influence.
    engine::reference_rows ref;
    if (pass_end > 0) ref.resize(pass_end - 1, cfg_.vocab);
    std::vector<std::pair<std::string, std::unique_ptr<engine::session>>> influence_runs;
    std::vector<double> influence_budget_of;
    const std::size_t end = std::max(pass_end, stops.empty() ? 0 : stops.back());
    const tokens x(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(end));
    std::printf("window %zu: one pass over %zu tokens observed by %zu policy states\n", window, end, observed.size());
    pass_stops_ = stops;
    shared_pass(
        x, o_.continuation, observed, stops,
        [&](const engine::session& full, const fanout_hook& fan, std::size_t C) {
          if (prefill && std::find(contexts.begin(), contexts.end(), C) != contexts.end()) {
            const tokens cont(a.begin() + static_cast<std::ptrdiff_t>(C),
                              a.begin() + static_cast<std::ptrdiff_t>(C + o_.continuation));
            compare_at("prefill", window, full, fan, cont, C, o_.prefill_budgets);
          }
          if (influence && C == o_.influence_prefix)
            for (std::size_t i = 0; i < o_.influence_policies.size(); ++i)
              for (const double b : o_.influence_policies[i].keep > 0.0 ? std::vector<double>{o_.influence_policies[i].keep}
                                                                         : o_.influence_budgets) {
                double kept = 0.0, lib_s = 0.0;
                influence_runs.emplace_back(o_.influence_policies[i].label,
                                            compressed_copy(full, fan, n_main + i, o_.influence_policies[i], b, C, kept, lib_s));
                influence_budget_of.push_back(b);
              }
        },
        [&](std::size_t first, const engine::row_matrix& lg) {
          for (std::size_t j = 0; j < static_cast<std::size_t>(lg.rows()); ++j)
            if (first + j + 1 < pass_end) ref.set(first + j, lg.row(static_cast<Eigen::Index>(j)), a[first + j + 1]);
        });
    std::printf("window %zu: pass and prefill comparisons took %.1f s\n", window, seconds_since(t));
    if (influence) influence_scenario(a, ref, influence_runs, influence_budget_of, inf_tokens);
    if (decode) decode_scenario(a, ref);
  }

  void influence_scenario(const tokens& a, const engine::reference_rows& ref,
                          std::vector<std::pair<std::string, std::unique_ptr<engine::session>>>& runs,
                          const std::vector<double>& budgets, std::size_t inf_tokens) {
    const auto t = clock_type::now();
    const std::size_t N = o_.influence_prefix, end = N + inf_tokens, bin = 128;
    // The pass's own chunk boundaries after N, so an unevicted cache would give the same rows.
    const auto bounds = boundaries(end, pass_stops_);
    std::vector<std::vector<engine::quality_sum>> per_run(runs.size());
    parallel_for(runs.size(), o_.jobs, [&](std::size_t k) {
      auto& s = *runs[k].second;
      auto& per_bin = per_run[k];
      per_bin.resize((inf_tokens - 1 + bin - 1) / bin);  // predictions cover offsets 0 .. inf_tokens - 2
      std::size_t t0 = N;
      for (const std::size_t t1 : bounds) {
        if (t1 <= N) continue;
        const auto& lg = s.forward(std::span<const std::int32_t>(a.data() + t0, t1 - t0), engine::step_kind::decode, true);
        for (std::size_t g = t0; g < t1 && g + 1 < end; ++g)
          per_bin[(g - N) / bin].add(ref, g, lg.row(static_cast<Eigen::Index>(g - t0)), a[g + 1]);
        t0 = t1;
      }
      runs[k].second.reset();
    });
    for (std::size_t k = 0; k < runs.size(); ++k) {
      const auto& per_bin = per_run[k];
      for (std::size_t c = 0; c < per_bin.size(); ++c) {
        const auto& q = per_bin[c];
        influence_.row(runs[k].first, budgets[k], N, c, c * bin, q.predictions, q.mean(q.nll_full), q.mean(q.nll),
                       q.mean(q.nll - q.nll_full), q.mean(q.kl), q.mean(static_cast<double>(q.top1_same)));
      }
      std::printf("  influence %-20s keep %.3g: KL first chunk %.4f, last chunk %.4f\n", runs[k].first.c_str(), budgets[k],
                  per_bin.front().mean(per_bin.front().kl), per_bin.back().mean(per_bin.back().kl));
    }
    std::fflush(stdout);
    std::printf("influence took %.1f s\n", seconds_since(t));
  }

  void decode_scenario(const tokens& a, const engine::reference_rows& ref) {
    const auto t = clock_type::now();
    const std::size_t T = o_.decode_tokens;
    // Rows before the longest period's first compression are the full cache's: score after it.
    const std::size_t from = *std::max_element(o_.periods.begin(), o_.periods.end());
    engine::quality_sum fq;
    for (std::size_t g = from; g + 1 < T; ++g) {
      ++fq.predictions;
      fq.nll_full += ref.nll(g);
      fq.nll += ref.nll(g);
      fq.top1_same += 1;
    }
    write_quality("decode", 0, T, 0, 1.0, "full", "-", 1.0, fq, 0.0);
    struct job {
      std::size_t period;
      double budget;
      const variant* base;
    };
    std::vector<job> jobs;
    for (const std::size_t P : o_.periods)
      for (const double b : o_.decode_budgets)
        for (const variant& base : o_.policies) jobs.push_back({P, b, &base});
    std::vector<run_result> res(jobs.size());
    parallel_for(jobs.size(), o_.jobs, [&](std::size_t k) {
      const std::size_t P = jobs[k].period;
      variant v = *jobs[k].base;
      v.opt.decode_ratio = jobs[k].budget;
      v.opt.prefill_ratio = jobs[k].budget;
      v.opt.slack = 0;  // evict after every chunk of P tokens
      engine::session s(m_, v.opt.granularity, page_size_, T, engine::make_hook(v.opt, cfg_, T));
      double kept_sum = 0.0;
      std::size_t kept_n = 0;
      for (std::size_t t0 = 0; t0 < T; t0 += P) {
        const std::size_t n = std::min(P, T - t0);
        const auto& lg = s.forward(std::span<const std::int32_t>(a.data() + t0, n), engine::step_kind::decode, true);
        for (std::size_t g = std::max(t0, from); g < t0 + n && g + 1 < T; ++g)
          res[k].q.add(ref, g, lg.row(static_cast<Eigen::Index>(g - t0)), a[g + 1]);
        kept_sum += static_cast<double>(s.cache().tokens_held()) / static_cast<double>(s.cache().num_streams() * (t0 + n));
        ++kept_n;
      }
      res[k].kept = kept_sum / static_cast<double>(kept_n);
      res[k].library_s = s.stats().library_seconds;
    });
    for (std::size_t k = 0; k < jobs.size(); ++k)
      write_quality("decode", 0, T, jobs[k].period, jobs[k].budget, jobs[k].base->label,
                    granularity_name(jobs[k].base->opt.granularity), res[k].kept, res[k].q, res[k].library_s);
    std::printf("decode took %.1f s\n", seconds_since(t));
  }

  /// A passage, a gap of other text, the passage again: NLL on the repeat after compressing
  /// passage + gap. The first read's NLL (nothing to copy from) bounds what memory is worth.
  void repeat_scenario(const tokens& b) {
    const auto t = clock_type::now();
    const tokens passage(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(o_.passage));
    double first_read = 0.0;
    std::vector<std::size_t> stops;
    for (std::size_t g : o_.gaps) stops.push_back(o_.passage + g);
    std::sort(stops.begin(), stops.end());
    if (stops.back() + o_.passage > cfg_.context) usage_error("passage + gap + passage exceeds the model's context");
    std::printf("repeat: passage of %zu tokens after gaps of", o_.passage);
    for (std::size_t g : o_.gaps) std::printf(" %zu", g);
    std::printf("\n");
    shared_pass(
        b, o_.passage, o_.policies, stops,
        [&](const engine::session& full, const fanout_hook& fan, std::size_t C) {
          first_read_.row(C - o_.passage, C, o_.passage - 1, first_read / static_cast<double>(o_.passage - 1));
          compare_at("repeat", 0, full, fan, passage, C, o_.prefill_budgets);
        },
        [&](std::size_t first, const engine::row_matrix& lg) {
          for (std::size_t j = 0; j < static_cast<std::size_t>(lg.rows()); ++j)
            if (first + j + 1 < o_.passage)
              first_read += engine::token_nll(lg.row(static_cast<Eigen::Index>(j)), b[first + j + 1]);
        });
    std::printf("repeat took %.1f s\n", seconds_since(t));
  }

  /// Passkey retrieval: a 5-digit key stated once at a depth of real text, asked for at the end.
  /// The prompt is compressed once (the question is in the recent window, as in SnapKV's
  /// protocol); the answer is teacher-forced and counts as retrieved when every answer token is
  /// the arg max, which is what greedy decoding would produce.
  void passkey_scenario(const tokens& filler_all) {
    const auto t = clock_type::now();
    const tokens intro = tok_.encode(
        "There is a pass key hidden inside a lot of irrelevant text. Find it and memorize it. "
        "I will quiz you about the pass key.\n\n");
    const tokens question = tok_.encode("\n\nWhat is the pass key? The pass key is");
    std::mt19937_64 rng(o_.seed);
    std::uniform_int_distribution<int> key_dist(10000, 99999);
    struct tally {
      std::size_t trials = 0, correct = 0;
      double nll = 0.0;
    };
    std::map<std::tuple<std::string, double, double>, tally> results;  // (policy, budget, depth)
    std::size_t trial = 0;
    for (const double depth : o_.passkey_depths)
      for (std::size_t k = 0; k < o_.passkey_trials; ++k, ++trial) {
        const std::string key = std::to_string(key_dist(rng));
        const tokens needle = tok_.encode("\n\nThe pass key is " + key + ". Remember it. " + key + " is the pass key.\n\n");
        const tokens answer = tok_.encode(" " + key);
        const std::size_t fixed = intro.size() + needle.size() + question.size();
        if (fixed + 64 > o_.passkey_context) usage_error("--passkey-context is too short for the prompt");
        const std::size_t fill = o_.passkey_context - fixed;
        const auto at = static_cast<std::size_t>(std::lround(depth * static_cast<double>(fill)));
        tokens prompt = intro;
        prompt.insert(prompt.end(), filler_all.begin(), filler_all.begin() + static_cast<std::ptrdiff_t>(at));
        prompt.insert(prompt.end(), needle.begin(), needle.end());
        prompt.insert(prompt.end(), filler_all.begin() + static_cast<std::ptrdiff_t>(at),
                      filler_all.begin() + static_cast<std::ptrdiff_t>(fill));
        prompt.insert(prompt.end(), question.begin(), question.end());
        // The first answer token comes from the prompt's last row (computed before eviction).
        bool first_ok = false;
        double first_nll = 0.0;
        const auto score = [&](const engine::row_matrix& lg, tally& tl) {
          bool ok = first_ok;
          double nll = first_nll;
          for (std::size_t r = 0; r + 1 < answer.size(); ++r) {
            Eigen::Index am = 0;
            lg.row(static_cast<Eigen::Index>(r)).maxCoeff(&am);
            ok = ok && static_cast<std::int32_t>(am) == answer[r + 1];
            nll += engine::token_nll(lg.row(static_cast<Eigen::Index>(r)), answer[r + 1]);
          }
          ++tl.trials;
          tl.correct += ok;
          tl.nll += nll / static_cast<double>(answer.size());
        };
        const std::size_t C = prompt.size();
        shared_pass(
            prompt, answer.size(), o_.policies, {C},
            [&](const engine::session& full, const fanout_hook& fan, std::size_t) {
              engine::session f(m_, full.cache(), C, nullptr);
              score(f.forward(answer, engine::step_kind::decode, true), results[{"full", 1.0, depth}]);
              const std::size_t nb = o_.prefill_budgets.size();
              std::vector<tally> got(o_.policies.size() * nb);
              parallel_for(got.size(), o_.jobs, [&](std::size_t job) {
                double kept = 0.0, lib_s = 0.0;
                auto s = compressed_copy(full, fan, job / nb, o_.policies[job / nb], o_.prefill_budgets[job % nb], C,
                                         kept, lib_s);
                score(s->forward(answer, engine::step_kind::decode, true), got[job]);
              });
              for (std::size_t job = 0; job < got.size(); ++job) {
                tally& tl = results[{o_.policies[job / nb].label, o_.prefill_budgets[job % nb], depth}];
                tl.trials += got[job].trials;
                tl.correct += got[job].correct;
                tl.nll += got[job].nll;
              }
            },
            [&](std::size_t first, const engine::row_matrix& lg) {
              if (first + static_cast<std::size_t>(lg.rows()) != C) return;
              const auto last = lg.row(lg.rows() - 1);
              Eigen::Index am = 0;
              last.maxCoeff(&am);
              first_ok = static_cast<std::int32_t>(am) == answer[0];
              first_nll = engine::token_nll(last, answer[0]);
            });
        const tally& full = results[{"full", 1.0, depth}];
        std::printf("  passkey trial %zu: depth %.2f, %zu tokens, full cache %s\n", trial, depth, C,
                    full.correct == full.trials ? "retrieves it so far" : "has missed at least once");
        std::fflush(stdout);
      }
    for (const auto& [key, tl] : results) {
      const auto& [policy, budget, depth] = key;
      std::string gran = "-";
      for (const auto& v : o_.policies)
        if (v.label == policy) gran = granularity_name(v.opt.granularity);
      passkey_.row(policy, gran, budget, o_.passkey_context, depth, tl.trials, tl.correct,
                   tl.nll / static_cast<double>(tl.trials));
    }
    std::printf("passkey took %.1f s\n", seconds_since(t));
  }

  const options& o_;
  const engine::llama_model& m_;
  const engine::bpe_tokenizer& tok_;
  tokens ids_;
  engine::llama_config cfg_;
  keep_dump* dump_;
  std::size_t page_size_ = 64;
  std::vector<std::size_t> pass_stops_;
  csv_file quality_, influence_, passkey_, first_read_;
};

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  try {
    const auto t = clock_type::now();
    std::filesystem::create_directories(o.out);
    const engine::gguf_file file = engine::gguf_file::open(o.model);
    const engine::bpe_tokenizer tok(file);
    const engine::llama_model model = engine::llama_model::load(file);
    tokens ids;
    try {
      ids = tok.encode(read_file(o.text));
    } catch (const engine::tokenizer_error& e) {
      throw std::runtime_error("'" + o.text + "' is not valid UTF-8: " + e.what());
    }
    // File names only: the log is meant to be committed with the results.
    std::printf("model: %s (%zu layers, context %zu); text: %s (%zu tokens)\n",
                std::filesystem::path(o.model).filename().string().c_str(), model.config.layers, model.config.context,
                std::filesystem::path(o.text).filename().string().c_str(), ids.size());
    std::unique_ptr<keep_dump> dump;
    if (!o.dump_keep.empty())
      dump = std::make_unique<keep_dump>(o.dump_keep, std::filesystem::path(o.model).filename().string(),
                                         std::filesystem::path(o.text).filename().string());
    evaluator(o, model, tok, std::move(ids), dump.get()).run();
    std::printf("evaluation wall time: %.1f s\n", seconds_since(t));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
