// SPDX-License-Identifier: Apache-2.0
// llama-infokv-reason: does the right answer survive compression? Chain-of-thought generation on a
// problem set through llama.cpp, with every policy's compress() after each decode step, the
// final \boxed{} answer checked against the reference.
//
//   llama-infokv-reason --model M.gguf --problems SET.jsonl --out RESULTS.jsonl
//       [--variants full,infokv:alpha=0.95,snapkv,...] [--budgets 128,256,25%,12.5%] [--interval 128]
//       [--n-predict 512] [--parallel 16] [--limit N] [--sinks 4] [--recent 64] [--threads N]
//       [--instruction TEXT] [--flash-attn]
//
// The problem set is JSON Lines (examples/llama_cpp/problem_set.hpp): id, prompt, answer,
// checker. Each prompt gets the instruction appended and goes through the model's chat template;
// decoding is greedy; --parallel problems decode as sequences of one batch.
//
// Variants: "full" is plain llama.cpp (no adapter, the full cache); "none" is the adapter
// attached without eviction (it must equal "full"); every other is a policy spec
// (policies.hpp: "infokv:alpha=0.9:tau=1:top_k=256", "snapkv", ...), run once per budget.
// Budgets: a token count ("128": the sequence holds at most 128 + interval cells) or a share
// of the tokens seen ("25%"). Compression runs every --interval decode steps (RPC's and
// InfoKV's P), or sooner if a sequence exceeds its budget by more than the interval.
// --flash-attn runs every variant (the full cache too) with llama.cpp's flash attention, which
// stores V rows untransposed: Expected Attention reads V rows and runs only with it. Records of
// the two attention paths never mix (the results say which, and resume counts only its own).
//
// One JSON object per (variant, budget, problem) is appended to --out; settings already in the
// file are skipped, so an interrupted grid resumes. Each record says whether the answer was
// right, whether one was given, the tokens generated and whether the limit stopped them, the
// evictions, the most cells held, whether every step stayed within the budget, and a hash of
// the generated tokens (two runs that agree token for token have the same hash).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "answer_check.hpp"
#include "cli_common.hpp"
#include "generate.hpp"
#include "json_value.hpp"
#include "policies.hpp"
#include "problem_set.hpp"

namespace {

using llama_infokv::problem;

/// A budget as given on the command line: tokens, or a share of the tokens seen.
struct budget_arg {
  std::string label;  // "128" or "25%"
  std::size_t tokens = 0;
  double ratio = 0.0;
};

struct cli {
  std::string model, problems, out;
  // Every policy that runs on llama.cpp's default attention path; expected-attention needs
  // --flash-attn and is named explicitly.
  std::vector<std::string> variants{"full", "infokv:alpha=0.95", "infokv:alpha=0.9", "snapkv", "rkv", "tova",
                                    "streamingllm", "knorm", "random"};
  std::vector<budget_arg> budgets;
  std::size_t interval = 128, parallel = 16, limit = 0, sinks = 4, recent = 64;
  int n_predict = 512;
  int threads = 0;
  bool flash_attn = false;
  std::string instruction = "Please reason step by step, and put your final answer within \\boxed{}.";
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "error: %s\n"
               "usage: llama-infokv-reason --model M.gguf --problems SET.jsonl --out RESULTS.jsonl\n"
               "         [--variants full,infokv:alpha=0.95,snapkv,...] [--budgets 128,256,25%%,12.5%%] [--interval 128]\n"
               "         [--n-predict 512] [--parallel 16] [--limit N] [--sinks 4] [--recent 64] [--threads N]\n"
               "         [--instruction TEXT] [--flash-attn]\n",
               why.c_str());
  std::exit(2);
}

std::size_t to_size(const std::string& flag, const std::string& v) {
  if (const auto x = llama_infokv::parse_count(v)) return *x;
  usage(flag + " needs a non-negative integer, got '" + v + "'");
}

/// A comma list in which every item is named once: an empty item or a repeat is a slip on the
/// command line (a variant given twice would run twice and write its records twice).
std::vector<std::string> distinct_list(const std::string& flag, const std::string& v) {
  std::vector<std::string> items = llama_infokv::split_list(v);
  std::set<std::string> seen;
  for (const auto& item : items) {
    if (item.empty()) usage(flag + " has an empty item in '" + v + "'");
    if (!seen.insert(item).second) usage(flag + " names '" + item + "' twice");
  }
  return items;
}

budget_arg parse_budget(const std::string& s) {
  budget_arg b;
  b.label = s;
  if (!s.empty() && s.back() == '%') {
    std::size_t used = 0;
    double pct = -1.0;
    try {
      pct = std::stod(s.substr(0, s.size() - 1), &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != s.size() - 1 || !(pct > 0.0 && pct <= 100.0)) usage("a budget share must lie in (0%, 100%], got '" + s + "'");
    b.ratio = pct / 100.0;
  } else {
    b.tokens = to_size("--budgets", s);
    if (b.tokens == 0) usage("a token budget must be positive");
  }
  return b;
}

cli parse(int argc, char** argv) {
  cli c;
  c.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::string budgets = "128,256,25%,12.5%";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--model") c.model = value();
    else if (a == "--problems") c.problems = value();
    else if (a == "--out") c.out = value();
    else if (a == "--variants") c.variants = distinct_list(a, value());
    else if (a == "--budgets") budgets = value();
    else if (a == "--interval") c.interval = to_size(a, value());
    else if (a == "--n-predict") c.n_predict = static_cast<int>(to_size(a, value()));
    else if (a == "--parallel") c.parallel = to_size(a, value());
    else if (a == "--limit") c.limit = to_size(a, value());
    else if (a == "--sinks") c.sinks = to_size(a, value());
    else if (a == "--recent") c.recent = to_size(a, value());
    else if (a == "--threads") c.threads = static_cast<int>(to_size(a, value()));
    else if (a == "--instruction") c.instruction = value();
    else if (a == "--flash-attn") c.flash_attn = true;
    else usage("unknown option '" + a + "'");
  }
  if (c.model.empty() || c.problems.empty() || c.out.empty()) usage("--model, --problems and --out are required");
  if (c.variants.empty()) usage("--variants names no variant");
  for (const auto& b : distinct_list("--budgets", budgets)) c.budgets.push_back(parse_budget(b));
  if (c.interval == 0) usage("--interval must be positive");
  if (c.parallel == 0 || c.n_predict <= 0 || c.threads <= 0) usage("--parallel, --n-predict and --threads must be positive");
  for (const auto& v : c.variants) {
    if (v == "full") continue;
    try {
      (void)llama_infokv::parse_policy_spec(v);
    } catch (const std::invalid_argument& e) {
      usage(e.what());
    }
  }
  const bool any_policy = std::any_of(c.variants.begin(), c.variants.end(), [](const std::string& v) {
    return v != "full" && v != "none";
  });
  if (any_policy && c.budgets.empty()) usage("--budgets names no budget");
  return c;
}

std::uint64_t fnv1a(const std::vector<llama_token>& toks) {
  std::uint64_t h = 1469598103934665603ull;
  for (llama_token t : toks) {
    auto u = static_cast<std::uint32_t>(t);
    for (int k = 0; k < 4; ++k, u >>= 8) {
      h ^= u & 0xFFu;
      h *= 1099511628211ull;
    }
  }
  return h;
}

/// One setting of the grid: a variant at a budget ("full" / "none" at none).
struct setting {
  std::string variant;
  std::optional<budget_arg> budget;
  [[nodiscard]] std::string budget_label() const { return budget ? budget->label : "full"; }
};

std::string record_key(const std::string& variant, const std::string& budget, const std::string& id) {
  return variant + '\x1f' + budget + '\x1f' + id;
}

/// The (variant, budget, id) triples already in the results file, for this model, interval, token
/// limit and attention path (a record from another configuration does not count; a record without
/// "flash_attn" predates the flag and ran without it).
std::set<std::string> done_records(const std::string& path, const std::string& model_name, std::size_t interval,
                                   int n_predict, bool flash_attn) {
  std::set<std::string> done;
  std::ifstream in(path);
  std::string line;
  std::size_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    llama_infokv::json_value v;
    try {
      v = llama_infokv::parse_json(line);
    } catch (const llama_infokv::json_error& e) {
      throw std::runtime_error(path + ":" + std::to_string(n) + ": not a results record (" + e.what() + ")");
    }
    if (!v.is_object()) throw std::runtime_error(path + ":" + std::to_string(n) + ": not a results record");
    const auto& o = v.object();
    const auto str = [&](const char* k) -> std::string {
      const auto it = o.find(std::string_view(k));
      return it != o.end() && it->second.is_string() ? it->second.string() : std::string{};
    };
    const auto num = [&](const char* k) -> double {
      const auto it = o.find(std::string_view(k));
      return it != o.end() && std::holds_alternative<double>(it->second.v) ? std::get<double>(it->second.v) : -1.0;
    };
    const auto flash = o.find(std::string_view("flash_attn"));
    const bool was_flash = flash != o.end() && std::holds_alternative<bool>(flash->second.v) && std::get<bool>(flash->second.v);
    if (str("model") != model_name || num("interval") != static_cast<double>(interval) ||
        num("n_predict") != static_cast<double>(n_predict) || was_flash != flash_attn)
      continue;
    done.insert(record_key(str("variant"), str("budget"), str("id")));
  }
  return done;
}

struct outcome {
  std::size_t right = 0, total = 0, tokens = 0, evictions = 0, over_budget = 0;
};

}  // namespace

int main(int argc, char** argv) {
  const cli c = parse(argc, argv);
  std::vector<problem> problems;
  try {
    problems = llama_infokv::read_problem_set(c.problems);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  if (c.limit != 0 && problems.size() > c.limit) problems.resize(c.limit);

  const llama_infokv::model_ptr model = llama_infokv::load_model(c.model);
  if (!model) {
    std::fprintf(stderr, "error: cannot load '%s' as a GGUF model\n", c.model.c_str());
    return 1;
  }
  const std::string model_name = std::filesystem::path(c.model).filename().string();
  const std::string set_name = std::filesystem::path(c.problems).filename().string();
  try {
    // Every prompt through the chat template before anything runs: a model without one stops here.
    std::vector<std::vector<llama_token>> prompts;
    std::size_t longest = 0;
    for (const auto& p : problems) {
      const std::string user = c.instruction.empty() ? p.prompt : p.prompt + "\n\n" + c.instruction;
      prompts.push_back(llama_infokv::tokenize(model.get(), llama_infokv::chat_prompt(model.get(), user), true));
      longest = std::max(longest, prompts.back().size());
    }
    const infokv::model_shape shape = infokv_llama::model_shape_of(model.get());
    const infokv::rope_params rope = infokv_llama::rope_of(model.get());
    const std::size_t per_seq = longest + static_cast<std::size_t>(c.n_predict) + 8;

    // Budget by budget, the variants in the order given: a grid cut short still has every
    // variant at its first budgets.
    std::vector<setting> grid;
    for (const auto& v : c.variants)
      if (v == "full" || v == "none") grid.push_back({v, std::nullopt});
    for (const auto& b : c.budgets)
      for (const auto& v : c.variants)
        if (v != "full" && v != "none") grid.push_back({v, b});
    // Every policy built once before the run, so a bad combination (a token budget below the
    // protected sinks + recent tokens) fails before the first generation.
    const auto settings_of = [&](const setting& s) {
      llama_infokv::compression_settings cs;
      cs.budget = s.budget ? s.budget->tokens : 0;
      cs.decode_ratio = s.budget ? s.budget->ratio : 0.0;
      cs.prefill_ratio = 1.0;  // the prompt is whole when decoding starts; it is evicted like any token after
      cs.sinks = c.sinks;
      cs.recent = c.recent;
      cs.slack = c.interval;
      cs.interval = c.interval;
      cs.capacity = per_seq;
      return cs;
    };
    const auto policy_of = [&](const setting& s, const infokv::compress_config& cfg) {
      return s.variant == "full" ? nullptr : llama_infokv::make_policy(s.variant, cfg, shape);
    };
    for (const auto& s : grid) {
      if (s.budget && s.budget->tokens >= per_seq)
        throw std::runtime_error("a budget of " + s.budget->label + " tokens is not below the most a sequence can hold (" +
                                 std::to_string(per_seq) + ": the longest prompt + --n-predict + 8), so nothing would "
                                 "be evicted: give a smaller budget or a larger --n-predict");
      const auto pol = policy_of(s, llama_infokv::config_of(settings_of(s), rope));
      if (pol != nullptr) {
        if (pol->reads_values() && !c.flash_attn)
          throw std::runtime_error("variant " + s.variant + " reads V rows, which llama.cpp stores transposed without "
                                   "flash attention: give --flash-attn (every variant of the run then uses it)");
        const infokv::status st = pol->can_implement();
        if (!st) throw std::runtime_error("variant " + s.variant + " at budget " + s.budget_label() + ": " +
                                          std::string(st.message()));
      }
    }

    const auto done = done_records(c.out, model_name, c.interval, c.n_predict, c.flash_attn);
    std::ofstream out(c.out, std::ios::app);
    if (!out) throw std::runtime_error("cannot write " + c.out);
    std::printf("%zu problems from %s (longest prompt %zu tokens), model %s; %zu settings, interval %zu, at most %d "
                "tokens, %zu sequences a batch%s\n",
                problems.size(), set_name.c_str(), longest, model_name.c_str(), grid.size(), c.interval, c.n_predict,
                c.parallel, c.flash_attn ? ", flash attention" : "");
    std::fflush(stdout);
    const llama_vocab* vocab = llama_model_get_vocab(model.get());

    for (const auto& s : grid) {
      std::vector<std::size_t> todo;
      for (std::size_t i = 0; i < problems.size(); ++i)
        if (!done.count(record_key(s.variant, s.budget_label(), problems[i].id))) todo.push_back(i);
      if (todo.empty()) continue;
      const auto cs = settings_of(s);
      const infokv::compress_config cfg = llama_infokv::config_of(cs, rope);
      const auto pol = policy_of(s, cfg);
      const std::size_t protect = pol ? cs.sinks + std::max(cs.recent, pol->needs().window) : 0;
      outcome sum;
      const auto t0 = std::chrono::steady_clock::now();
      for (std::size_t at = 0; at < todo.size(); at += c.parallel) {
        const std::size_t n = std::min(c.parallel, todo.size() - at);
        llama_infokv::run_options o;
        for (std::size_t k = 0; k < n; ++k) o.prompts.push_back(prompts[todo[at + k]]);
        o.n_predict = c.n_predict;
        o.threads = c.threads;
        o.n_ctx = static_cast<std::uint32_t>(n * per_seq);
        o.n_batch = 512;
        o.flash_attn = c.flash_attn;
        std::optional<infokv_llama::adapter> ad;
        if (s.variant != "full") ad.emplace(model.get(), pol);
        const auto r = llama_infokv::run(model.get(), o, ad ? &*ad : nullptr);
        for (std::size_t k = 0; k < n; ++k) {
          const problem& p = problems[todo[at + k]];
          const auto& tr = r.seqs[k];
          const std::string text = llama_infokv::detokenize(model.get(), tr.generated);
          const auto boxed = llama_infokv::last_boxed(text);
          const bool correct = boxed && llama_infokv::answer_matches(p.checker, *boxed, p.answer);
          const bool ended = !tr.generated.empty() && llama_vocab_is_eog(vocab, tr.generated.back());
          // Evictions: steps where the cells held fell. Budget: after every step the sequence holds
          // at most max(budget at the tokens seen, protected) + interval cells.
          std::size_t evictions = 0, over = 0;
          const std::size_t prompt_len = o.prompts[k].size();
          for (std::size_t t = 0; t < tr.cells.size(); ++t) {
            const std::size_t before = t == 0 ? prompt_len : tr.cells[t - 1];
            if (tr.cells[t] < before + 1) ++evictions;
            if (pol) {
              const std::size_t seen = prompt_len + t + 1;
              const std::size_t keep = std::max(cfg.decode_budget.keep_for(seen), protect);
              if (tr.cells[t] > keep + cs.slack) ++over;
            }
          }
          sum.right += correct ? 1 : 0;
          sum.total += 1;
          sum.tokens += tr.generated.size();
          sum.evictions += evictions;
          sum.over_budget += over != 0 ? 1 : 0;
          char hash[32];
          std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(fnv1a(tr.generated)));
          out << "{\"model\": " << llama_infokv::json_quote(model_name) << ", \"set\": " << llama_infokv::json_quote(set_name)
              << ", \"id\": " << llama_infokv::json_quote(p.id) << ", \"variant\": " << llama_infokv::json_quote(s.variant)
              << ", \"budget\": " << llama_infokv::json_quote(s.budget_label()) << ", \"interval\": " << c.interval
              << ", \"n_predict\": " << c.n_predict << ", \"flash_attn\": " << (c.flash_attn ? "true" : "false")
              << ", \"correct\": " << (correct ? "true" : "false")
              << ", \"answered\": " << (boxed ? "true" : "false")
              << ", \"given\": " << (boxed ? llama_infokv::json_quote(*boxed) : std::string("null"))
              << ", \"reference\": " << llama_infokv::json_quote(p.answer) << ", \"prompt_tokens\": " << prompt_len
              << ", \"tokens\": " << tr.generated.size() << ", \"hit_limit\": " << (ended ? "false" : "true")
              << ", \"evictions\": " << evictions << ", \"max_cells\": " << (pol ? tr.max_cells : prompt_len + tr.generated.size())
              << ", \"within_budget\": " << (over == 0 ? "true" : "false") << ", \"tokens_hash\": \"" << hash
              << "\", \"text\": " << llama_infokv::json_quote(text) << "}\n";
        }
        out.flush();
        if (!out) throw std::runtime_error("writing " + c.out + " failed");
      }
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("%-34s %-6s %3zu / %3zu right (%5.1f%%), %6.1f tokens a problem, %5.2f evictions, %zu over budget, "
                  "%.0f s\n",
                  s.variant.c_str(), s.budget_label().c_str(), sum.right, sum.total,
                  100.0 * static_cast<double>(sum.right) / static_cast<double>(sum.total),
                  static_cast<double>(sum.tokens) / static_cast<double>(sum.total),
                  static_cast<double>(sum.evictions) / static_cast<double>(sum.total), sum.over_budget, secs);
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  llama_backend_free();
  return 0;
}
