// SPDX-License-Identifier: Apache-2.0
// llama-infokv: llama.cpp with infokv's eviction attached through examples/llama_cpp/infokv_llama.hpp.
//
//   llama-infokv generate --model M.gguf (--prompt TEXT | --prompt-file F)... [--policy infokv]
//                [--budget 256] [--slack 16] [--sinks 4] [--recent 64] [--prefill-ratio 1]
//                [--n-predict 256] [--ctx 4096] [--batch 512] [--threads N] [--seed 0]
//                [--flash-attn] [--raw] [--compare] [--verify]
//   llama-infokv bench --model M.gguf --text FILE [--contexts 2048,8192] [--policies none,infokv,snapkv]
//                [--ratio 0.25] [--n-predict 64] [--slack 16] [--threads N] [--flash-attn]
//   llama-infokv perplexity --model M.gguf --text FILE [--ctx 1024] [--chunks N] [--policy infokv]
//                [--ratio 0.25] [--prefill-ratio R] [--slack 16] [--sinks 4] [--recent 64] [--dump FILE]
//
// bench: per context C the first C tokens of FILE are the prompt; the policy keeps ratio x C of it
// at the end of the prefill and holds ratio x C (+ slack) while it decodes n tokens. "none" is
// plain llama.cpp (no adapter): the baseline each row is set beside.
//
// perplexity: llama.cpp's chunk protocol (chunks of --ctx tokens, the predictions of the second
// half of each chunk scored) with compression in it: the first half is the prompt (compressed to
// --prefill-ratio of it, default --ratio), the second half is fed one decode step at a time with
// compress() after each (keep --ratio of the tokens seen, + slack). Each chunk also runs with the
// full cache; the score is the mean NLL of both and its difference. --dump writes one JSON object
// per chunk (positions kept by the prompt's compression, every scored NLL) for the comparison
// with infokv_engine (scripts/compare_engine_perplexity.py).
//
// Several --prompt flags decode several sequences in one batch. --raw feeds the text without the
// model's chat template. --compare also runs plain llama.cpp (no adapter, full cache) and prints
// where the two generations part. --verify checks, after every call, that each cell still holds
// its token's key and that llama.cpp's highest position is the sequence's last.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli_common.hpp"
#include "generate.hpp"
#include "policies.hpp"

namespace {

struct cli {
  std::string command, model, policy = "infokv";
  std::vector<std::string> prompts;
  std::string text;
  std::vector<std::size_t> contexts{2048, 8192};
  std::vector<std::string> policies{"none", "infokv", "snapkv"};
  double ratio = 0.25;
  std::size_t chunks = 0;  // perplexity: 0 = every whole chunk of the text
  std::string dump;
  bool ratio_given = false, prefill_ratio_given = false, ctx_given = false;
  bool raw = false, compare = false, verify = false;
  llama_infokv::run_options run;
  llama_infokv::compression_settings comp;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "error: %s\n"
               "usage: llama-infokv generate --model M.gguf (--prompt TEXT | --prompt-file F)... [--policy NAME]\n"
               "         [--budget N] [--slack N] [--sinks N] [--recent N] [--prefill-ratio R] [--n-predict N]\n"
               "         [--ctx N] [--batch N] [--threads N] [--seed N] [--flash-attn] [--raw] [--compare] [--verify]\n"
               "       llama-infokv bench --model M.gguf --text FILE [--contexts 2048,8192] [--policies none,infokv,snapkv]\n"
               "         [--ratio 0.25] [--n-predict N] [--slack N] [--threads N] [--flash-attn]\n"
               "       llama-infokv perplexity --model M.gguf --text FILE --ratio R [--ctx 1024] [--chunks N] [--policy NAME]\n"
               "         [--prefill-ratio R] [--slack N] [--sinks N] [--recent N] [--threads N] [--dump FILE]\n"
               "policies:",
               why.c_str());
  for (auto n : llama_infokv::policy_names) std::fprintf(stderr, " %.*s", static_cast<int>(n.size()), n.data());
  std::fprintf(stderr, "\n");
  std::exit(2);
}

std::size_t to_size(const std::string& flag, const std::string& v) {
  if (const auto x = llama_infokv::parse_count(v)) return *x;
  usage(flag + " needs a non-negative integer, got '" + v + "'");
}

cli parse(int argc, char** argv) {
  cli c;
  if (argc < 2) usage("no command");
  c.command = argv[1];
  if (c.command != "generate" && c.command != "bench" && c.command != "perplexity") usage("unknown command '" + c.command + "'");
  c.run.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--model") c.model = value();
    else if (a == "--prompt") c.prompts.push_back(value());
    else if (a == "--prompt-file") {
      const std::string f = value();
      std::ifstream in(f, std::ios::binary);
      if (!in) usage("cannot read " + f);
      std::stringstream ss;
      ss << in.rdbuf();
      c.prompts.push_back(ss.str());
    } else if (a == "--policy") c.policy = value();
    else if (a == "--budget") c.comp.budget = to_size(a, value());
    else if (a == "--slack") c.comp.slack = to_size(a, value());
    else if (a == "--sinks") c.comp.sinks = to_size(a, value());
    else if (a == "--recent") c.comp.recent = to_size(a, value());
    else if (a == "--prefill-ratio") {
      c.comp.prefill_ratio = std::atof(value().c_str());
      c.prefill_ratio_given = true;
    }
    else if (a == "--n-predict") c.run.n_predict = static_cast<int>(to_size(a, value()));
    else if (a == "--ctx") {
      c.run.n_ctx = static_cast<std::uint32_t>(to_size(a, value()));
      c.ctx_given = true;
    }
    else if (a == "--batch") c.run.n_batch = static_cast<std::uint32_t>(to_size(a, value()));
    else if (a == "--threads") c.run.threads = static_cast<int>(to_size(a, value()));
    else if (a == "--seed") c.run.seed = static_cast<std::uint32_t>(to_size(a, value()));
    else if (a == "--flash-attn") c.run.flash_attn = true;
    else if (a == "--text") c.text = value();
    else if (a == "--ratio") {
      c.ratio = std::atof(value().c_str());
      c.ratio_given = true;
    } else if (a == "--chunks") c.chunks = to_size(a, value());
    else if (a == "--dump") c.dump = value();
    else if (a == "--contexts" || a == "--policies") {
      if (a == "--contexts") c.contexts.clear(); else c.policies.clear();
      for (const auto& item : llama_infokv::split_list(value())) {
        if (item.empty()) usage(a + " has an empty item");
        if (a == "--contexts") c.contexts.push_back(to_size(a, item)); else c.policies.push_back(item);
      }
    }
    else if (a == "--raw") c.raw = true;
    else if (a == "--compare") c.compare = true;
    else if (a == "--verify") c.verify = true;
    else usage("unknown option '" + a + "'");
  }
  if (c.model.empty()) usage("--model is required");
  // Every policy named is checked before the model loads, so a typo in the third of --policies
  // is not found after the first two have run. Exit status 1, one error line, as the engine does
  // for an unknown policy (CTest infokv_llama_infokv_error_unknown_policy).
  std::vector<std::string> named = c.policies;
  named.push_back(c.policy);
  for (const auto& p : named) {
    try {
      (void)llama_infokv::parse_policy_spec(p);
    } catch (const std::invalid_argument& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
      std::exit(1);
    }
  }
  if (c.command == "generate" && c.prompts.empty()) usage("give at least one --prompt or --prompt-file");
  if (c.command != "generate" && c.text.empty()) usage(c.command + " needs --text FILE");
  if (c.command != "generate" && !(c.ratio > 0.0 && c.ratio <= 1.0)) usage("--ratio must lie in (0, 1]");
  if (c.prefill_ratio_given && !(c.comp.prefill_ratio > 0.0 && c.comp.prefill_ratio <= 1.0))
    usage("--prefill-ratio must lie in (0, 1]");
  if (c.command == "perplexity") {
    if (!c.ratio_given) usage("perplexity needs --ratio (the share of the tokens seen that is kept)");
    c.comp.decode_ratio = c.ratio;
    if (!c.prefill_ratio_given) c.comp.prefill_ratio = c.ratio;
    if (!c.ctx_given) c.run.n_ctx = 1024;
    if (c.run.n_ctx < 8 || c.run.n_ctx % 2 != 0) usage("perplexity needs an even --ctx of at least 8");
  }
  if (c.run.n_batch == 0 || c.run.n_ctx == 0) usage("--ctx and --batch must be positive");
  return c;
}

void print_run(const char* label, const llama_model* model, const llama_infokv::run_result& r,
               std::size_t bytes_per_cell) {
  const double prefill_tps = r.prefill_seconds > 0 ? static_cast<double>(r.prompt_tokens) / r.prefill_seconds : 0.0;
  const double decode_tps = r.decode_seconds > 0 ? static_cast<double>(r.decoded_tokens) / r.decode_seconds : 0.0;
  std::printf("== %s\n", label);
  for (std::size_t s = 0; s < r.seqs.size(); ++s) {
    std::printf("-- sequence %zu (%zu tokens)\n%s\n", s, r.seqs[s].generated.size(),
                llama_infokv::detokenize(model, r.seqs[s].generated).c_str());
  }
  std::printf("prefill %zu tokens in %.2f s (%.1f tok/s); decode %zu tokens in %.2f s (%.1f tok/s)\n", r.prompt_tokens,
              r.prefill_seconds, prefill_tps, r.decoded_tokens, r.decode_seconds, decode_tps);
  if (bytes_per_cell != 0) {
    for (std::size_t s = 0; s < r.seqs.size(); ++s) {
      const auto& t = r.seqs[s];
      std::printf("sequence %zu: most cells held %zu (%.2f MiB of f16 K/V), at the end %zu\n", s, t.max_cells,
                  static_cast<double>(t.max_cells * bytes_per_cell) / 1048576.0, t.cells.empty() ? t.max_cells : t.cells.back());
    }
    const auto& st = r.stats;
    const double total = r.prefill_seconds + r.decode_seconds;
    std::printf("evictions %zu, cells released %zu in %zu llama_memory_seq_rm calls; highest cell used %zu\n", st.evictions,
                st.evicted_tokens, st.seq_rm_calls, r.max_high_water);
    std::printf("time in the library %.3f s (%.2f%% of the run), in the eval callback %.3f s (%.2f%%), in seq_rm %.3f s\n",
                st.library_seconds, total > 0 ? 100.0 * st.library_seconds / total : 0.0, st.callback_seconds,
                total > 0 ? 100.0 * st.callback_seconds / total : 0.0, st.seq_rm_seconds);
  }
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// bench: one row per (context, policy).
void bench(const cli& c, llama_model* model) {
  const auto all = llama_infokv::tokenize(model, read_text(c.text), false);
  const infokv::model_shape shape = infokv_llama::model_shape_of(model);
  const infokv::rope_params rope = infokv_llama::rope_of(model);
  std::printf("| context | policy | prefill tok/s | decode tok/s | decode vs full | attended cells after prefill | "
              "cells held at the end | KV MiB held | library %% of decode | callback %% of decode | re-packs (s) |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (std::size_t C : c.contexts) {
    if (all.size() < C) throw std::runtime_error("the text has " + std::to_string(all.size()) + " tokens, fewer than " + std::to_string(C));
    llama_infokv::run_options o = c.run;
    o.prompts = {std::vector<llama_token>(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(C))};
    o.n_ctx = static_cast<std::uint32_t>(C + static_cast<std::size_t>(c.run.n_predict) + 256);
    o.stop_at_eog = false;
    double full_decode = 0.0;
    for (const auto& name : c.policies) {
      llama_infokv::compression_settings cs = c.comp;
      cs.budget = static_cast<std::size_t>(c.ratio * static_cast<double>(C));
      cs.prefill_ratio = c.ratio;
      cs.capacity = o.n_ctx;
      const auto pol = llama_infokv::make_policy(name, llama_infokv::config_of(cs, rope), shape);
      std::optional<infokv_llama::adapter> ad;
      if (pol != nullptr) ad.emplace(model, pol);
      const auto r = llama_infokv::run(model, o, ad ? &*ad : nullptr);
      const double dec = static_cast<double>(r.decoded_tokens) / r.decode_seconds;
      if (name == "none") full_decode = dec;
      const double lib = r.stats.library_seconds - r.prefill_stats.library_seconds;
      const double cb = r.stats.callback_seconds - r.prefill_stats.callback_seconds;
      const std::size_t held = ad ? ad->cells_held(0) : C + r.decoded_tokens;
      const std::size_t bpc = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * 2;
      std::printf("| %zu | %s | %.1f | %.2f | %s | %s | %zu | %.1f | %s | %s | %zu (%.2f) |\n", C, name.c_str(),
                  static_cast<double>(r.prompt_tokens) / r.prefill_seconds, dec,
                  full_decode > 0 ? (std::to_string(dec / full_decode).substr(0, 4) + "x").c_str() : "-",
                  ad ? std::to_string(r.high_water_after_prefill).c_str() : std::to_string(C).c_str(), held,
                  static_cast<double>(held * bpc) / 1048576.0,
                  ad ? (std::to_string(100.0 * lib / r.decode_seconds).substr(0, 4)).c_str() : "-",
                  ad ? (std::to_string(100.0 * cb / r.decode_seconds).substr(0, 4)).c_str() : "-", r.stats.repacks,
                  r.stats.repack_seconds);
      std::fflush(stdout);
    }
  }
}

/// perplexity: per chunk, the full cache and the policy on the same tokens.
void perplexity(const cli& c, llama_model* model) {
  const auto all = llama_infokv::tokenize(model, read_text(c.text), false);
  const std::size_t n = c.run.n_ctx, half = n / 2;
  std::size_t chunks = all.size() / n;
  if (c.chunks != 0) chunks = std::min(chunks, c.chunks);
  if (chunks == 0)
    throw std::runtime_error("the text has " + std::to_string(all.size()) + " tokens, fewer than one chunk of " + std::to_string(n));
  const infokv::model_shape shape = infokv_llama::model_shape_of(model);
  llama_infokv::compression_settings cs = c.comp;
  cs.capacity = n;
  const auto pol = llama_infokv::make_policy(c.policy, llama_infokv::config_of(cs, infokv_llama::rope_of(model)), shape);
  if (pol == nullptr) throw std::runtime_error("perplexity compares a policy with the full cache: give a --policy other than none");
  std::printf("%zu tokens, %zu chunks of %zu; prompt %zu tokens kept to %.3g, then %zu decode steps keeping %.3g of the "
              "tokens seen (+ slack %zu, sinks %zu, recent %zu); policy %s\n",
              all.size(), chunks, n, half, cs.prefill_ratio, half - 1, cs.decode_ratio, cs.slack, cs.sinks, cs.recent,
              c.policy.c_str());
  std::FILE* dump = nullptr;
  if (!c.dump.empty() && (dump = std::fopen(c.dump.c_str(), "w")) == nullptr) throw std::runtime_error("cannot write " + c.dump);
  struct file_closer {
    std::FILE* f;
    ~file_closer() { if (f != nullptr) std::fclose(f); }
  } closer{dump};
  double sum_full = 0.0, sum_comp = 0.0;
  std::size_t count = 0, evictions = 0, most_cells = 0;
  for (std::size_t k = 0; k < chunks; ++k) {
    const auto first = all.begin() + static_cast<std::ptrdiff_t>(k * n);
    llama_infokv::run_options o = c.run;
    o.prompts = {std::vector<llama_token>(first, first + static_cast<std::ptrdiff_t>(half))};
    o.forced = {std::vector<llama_token>(first + static_cast<std::ptrdiff_t>(half), first + static_cast<std::ptrdiff_t>(n))};
    const auto full = llama_infokv::run(model, o, nullptr);
    infokv_llama::adapter ad(model, pol);
    const auto comp = llama_infokv::run(model, o, &ad);
    evictions += comp.stats.evictions;
    most_cells = std::max(most_cells, comp.seqs[0].max_cells);
    // nll[0] predicts the chunk's token `half` from the prompt's last logits; llama.cpp's protocol
    // scores the predictions made at positions half .. n-2.
    double f = 0.0, p = 0.0;
    for (std::size_t i = 1; i < half; ++i) {
      f += full.seqs[0].nll[i];
      p += comp.seqs[0].nll[i];
    }
    sum_full += f;
    sum_comp += p;
    count += half - 1;
    std::printf("[%zu] full %.4f, %s %.4f (mean NLL, delta %+.4f); cells held at most %zu\n", k + 1,
                f / static_cast<double>(half - 1), c.policy.c_str(), p / static_cast<double>(half - 1),
                (p - f) / static_cast<double>(half - 1), comp.seqs[0].max_cells);
    std::fflush(stdout);
    if (dump != nullptr) {
      std::fprintf(dump, "{\"chunk\": %zu, \"first_token\": %zu, \"kept_after_prefill\": [", k, k * n);
      const auto& kept = comp.seqs[0].kept_after_prefill;
      for (std::size_t i = 0; i < kept.size(); ++i) std::fprintf(dump, "%s%d", i ? ", " : "", kept[i]);
      for (const auto* which : {&full, &comp}) {
        std::fprintf(dump, "], \"%s\": [", which == &full ? "nll_full" : "nll");
        for (std::size_t i = 1; i < half; ++i) std::fprintf(dump, "%s%.9g", i > 1 ? ", " : "", which->seqs[0].nll[i]);
      }
      std::fprintf(dump, "]}\n");
      std::fflush(dump);
    }
  }
  const double mf = sum_full / static_cast<double>(count), mp = sum_comp / static_cast<double>(count);
  std::printf("full cache: perplexity %.4f (mean NLL %.6f); %s: perplexity %.4f (mean NLL %.6f); delta NLL %+.6f over %zu "
              "predictions; %zu evictions, at most %zu cells held\n",
              std::exp(mf), mf, c.policy.c_str(), std::exp(mp), mp, mp - mf, count, evictions, most_cells);
}

}  // namespace

int main(int argc, char** argv) {
  const cli c = parse(argc, argv);
  const llama_infokv::model_ptr model = llama_infokv::load_model(c.model);
  if (!model) {
    std::fprintf(stderr, "error: cannot load '%s' as a GGUF model\n", c.model.c_str());
    return 1;
  }
  try {
    if (c.command == "bench" || c.command == "perplexity") {
      if (c.command == "bench") bench(c, model.get()); else perplexity(c, model.get());
      llama_backend_free();
      return 0;
    }
    llama_infokv::run_options run = c.run;
    for (const auto& p : c.prompts)
      run.prompts.push_back(llama_infokv::tokenize(model.get(), c.raw ? p : llama_infokv::chat_prompt(model.get(), p), !c.raw));
    llama_infokv::compression_settings comp = c.comp;
    comp.capacity = run.n_ctx;
    const infokv::model_shape shape = infokv_llama::model_shape_of(model.get());
    infokv::rope_params rope{};
    try {
      rope = infokv_llama::rope_of(model.get());
    } catch (const infokv_llama::adapter_error&) {
      // left unstated: a policy that rotates then refuses with errc::rope_not_stated
    }
    const auto policy = llama_infokv::make_policy(c.policy, llama_infokv::config_of(comp, rope), shape);
    infokv_llama::adapter ad(model.get(), policy, {.verify = c.verify});
    std::printf("model %s: %zu layers, %zu query / %zu KV heads, head_dim %zu; policy %s, budget %zu + slack %zu\n",
                c.model.c_str(), shape.num_layers, shape.num_q_heads, shape.num_kv_heads, shape.head_dim, c.policy.c_str(),
                comp.budget, comp.slack);
    const auto r = llama_infokv::run(model.get(), run, &ad);
    print_run(("llama.cpp + infokv (" + c.policy + ")").c_str(), model.get(), r, ad.bytes_per_cell());
    if (c.compare) {
      const auto full = llama_infokv::run(model.get(), run, nullptr);
      print_run("plain llama.cpp, full cache", model.get(), full, 0);
      for (std::size_t s = 0; s < r.seqs.size(); ++s) {
        const auto& a = r.seqs[s].generated;
        const auto& b = full.seqs[s].generated;
        std::size_t same = 0;
        while (same < a.size() && same < b.size() && a[same] == b[same]) ++same;
        std::printf("sequence %zu: the first %zu generated tokens agree with the full cache (of %zu / %zu)\n", s, same,
                    a.size(), b.size());
      }
      if (full.decode_seconds > 0 && r.decode_seconds > 0)
        std::printf("decode speed vs full cache: %.2fx\n",
                    (static_cast<double>(r.decoded_tokens) / r.decode_seconds) /
                        (static_cast<double>(full.decoded_tokens) / full.decode_seconds));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  llama_backend_free();
  return 0;
}
