// SPDX-License-Identifier: Apache-2.0
// llama-infokv: llama.cpp with infokv's eviction attached through examples/llama_cpp/infokv_llama.hpp.
//
//   llama-infokv generate --model M.gguf (--prompt TEXT | --prompt-file F)... [--policy infokv]
//                [--budget 256] [--slack 16] [--sinks 4] [--recent 64] [--prefill-ratio 1]
//                [--n-predict 256] [--ctx 4096] [--batch 512] [--threads N] [--seed 0]
//                [--flash-attn] [--raw] [--compare] [--verify]
//   llama-infokv bench --model M.gguf --text FILE [--contexts 2048,8192] [--policies none,infokv,snapkv]
//                [--ratio 0.25] [--n-predict 64] [--slack 16] [--threads N] [--flash-attn]
//
// bench: per context C the first C tokens of FILE are the prompt; the policy keeps ratio x C of it
// at the end of the prefill and holds ratio x C (+ slack) while it decodes n tokens. "none" is
// plain llama.cpp (no adapter): the baseline each row is set beside.
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
               "policies:",
               why.c_str());
  for (auto n : llama_infokv::policy_names) std::fprintf(stderr, " %.*s", static_cast<int>(n.size()), n.data());
  std::fprintf(stderr, "\n");
  std::exit(2);
}

std::size_t to_size(const std::string& flag, const std::string& v) {
  try {
    std::size_t used = 0;
    const long long x = std::stoll(v, &used);
    if (used != v.size() || x < 0) throw std::invalid_argument(v);
    return static_cast<std::size_t>(x);
  } catch (const std::exception&) {
    usage(flag + " needs a non-negative integer, got '" + v + "'");
  }
}

cli parse(int argc, char** argv) {
  cli c;
  if (argc < 2) usage("no command");
  c.command = argv[1];
  if (c.command != "generate" && c.command != "bench") usage("unknown command '" + c.command + "'");
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
    else if (a == "--prefill-ratio") c.comp.prefill_ratio = std::atof(value().c_str());
    else if (a == "--n-predict") c.run.n_predict = static_cast<int>(to_size(a, value()));
    else if (a == "--ctx") c.run.n_ctx = static_cast<std::uint32_t>(to_size(a, value()));
    else if (a == "--batch") c.run.n_batch = static_cast<std::uint32_t>(to_size(a, value()));
    else if (a == "--threads") c.run.threads = static_cast<int>(to_size(a, value()));
    else if (a == "--seed") c.run.seed = static_cast<std::uint32_t>(to_size(a, value()));
    else if (a == "--flash-attn") c.run.flash_attn = true;
    else if (a == "--text") c.text = value();
    else if (a == "--ratio") c.ratio = std::atof(value().c_str());
    else if (a == "--contexts" || a == "--policies") {
      std::stringstream ss(value());
      std::string item;
      if (a == "--contexts") c.contexts.clear(); else c.policies.clear();
      while (std::getline(ss, item, ','))
        if (a == "--contexts") c.contexts.push_back(to_size(a, item)); else c.policies.push_back(item);
    }
    else if (a == "--raw") c.raw = true;
    else if (a == "--compare") c.compare = true;
    else if (a == "--verify") c.verify = true;
    else usage("unknown option '" + a + "'");
  }
  if (c.model.empty()) usage("--model is required");
  if (c.command == "generate" && c.prompts.empty()) usage("give at least one --prompt or --prompt-file");
  if (c.command == "bench" && c.text.empty()) usage("bench needs --text FILE");
  if (c.command == "bench" && !(c.ratio > 0.0 && c.ratio <= 1.0)) usage("--ratio must lie in (0, 1]");
  if (c.run.n_batch == 0 || c.run.n_ctx == 0) usage("--ctx and --batch must be positive");
  return c;
}

struct model_deleter {
  void operator()(llama_model* m) const noexcept { llama_model_free(m); }
};

void quiet_log(ggml_log_level level, const char* text, void*) {
  if (level == GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
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

/// bench: one row per (context, policy).
void bench(const cli& c, llama_model* model) {
  std::ifstream in(c.text, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + c.text);
  std::stringstream ss;
  ss << in.rdbuf();
  const auto all = llama_infokv::tokenize(model, ss.str(), false);
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

}  // namespace

int main(int argc, char** argv) {
  const cli c = parse(argc, argv);
  llama_log_set(quiet_log, nullptr);
  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  // llama.cpp's repacked (AMX / extra buffer type) weight path crashes on batched prompts on AMX
  // CPUs with GGML_NATIVE; the plain CPU path computes the same model (and on the AVX2 machine
  // here it was also the faster one: 2K-token prefill of SmolLM2 at 106 tok/s against 61).
  mp.use_extra_bufts = false;
  std::unique_ptr<llama_model, model_deleter> model(llama_model_load_from_file(c.model.c_str(), mp));
  if (!model) {
    std::fprintf(stderr, "error: cannot load '%s' as a GGUF model\n", c.model.c_str());
    return 1;
  }
  try {
    if (c.command == "bench") {
      bench(c, model.get());
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
