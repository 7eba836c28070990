// SPDX-License-Identifier: Apache-2.0
// infokv_engine: a small Llama-family inference engine on the library's paged cache, with
// compress() after every decode step. Subcommands:
//   generate    chat-prompt generation with a policy, optionally against the full cache (--compare)
//   perplexity  teacher-forced perplexity in llama.cpp's protocol (chunks of --ctx tokens, the
//               second half of each chunk scored), full cache; with --policy, also under
//               compression: the first half of each chunk is the prompt (compressed to
//               --prefill-ratio), the second half is fed one decode step at a time with compress()
//               after each (the protocol of llama-infokv perplexity, for the cross-engine check)
//   bench       prefill / decode tokens per second at several contexts, with and without
//               compression, and the share of each decode step spent in the library
//   tokenize    the token ids of a text file (JSON), for comparison with other tokenizers
// Every error (missing or corrupt model, unsupported architecture or tensor type, a prompt that
// is not UTF-8 or longer than the context) prints one line starting with "error:" and exits 1.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "cli.hpp"
#include "gguf.hpp"
#include "llama_model.hpp"
#include "metrics.hpp"
#include "policy_registry.hpp"
#include "session.hpp"
#include "tokenizer.hpp"

namespace {

using cli::clock_type;
using cli::read_file;
using cli::seconds_since;
using cli::to_double;
using cli::to_size;
using cli::usage_error;

struct options {
  std::string command;
  std::string model;
  std::string prompt = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle. "
                       "Describe the keeper, the island, the storm, and what happens after the message is read.";
  std::string prompt_file;  // read the prompt from a file instead (any bytes: checked for UTF-8)
  std::string text_file;
  std::string dump;  // perplexity: one JSON object per chunk (kept positions, scored NLLs)
  bool policy_given = false, prefill_ratio_given = false;
  bool chat = true;
  bool compare = false;
  std::size_t max_new = 256;
  std::size_t page_size = 64;
  std::size_t ctx = 512;
  std::size_t chunks = 0;  // 0: all
  std::size_t batch = 0;   // perplexity: tokens per forward within a chunk (0: the whole chunk)
  std::size_t prefill_chunk = 512;
  std::size_t decode_steps = 64;
  std::vector<std::size_t> contexts = {512, 2048, 8192};
  double temperature = 0.0;
  double top_p = 0.9;
  std::uint64_t seed = 42;
  engine::compression_options comp;
};

}  // namespace

[[noreturn]] void cli::usage_error(const std::string& msg) {
  std::fprintf(stderr, "error: %s\n", msg.c_str());
  std::fprintf(stderr,
               "usage: infokv_engine generate|perplexity|bench|tokenize --model PATH [options]\n"
               "  --prompt TEXT  --prompt-file FILE  --raw (no chat template)  --max-new N  --temperature T  --top-p P  --seed S\n"
               "  --policy NAME  --granularity per_layer|per_sequence|per_layer_head  --ratio R  --prefill-ratio R\n"
               "  --slack N  --sinks N  --recent N  --page-size N  --compare\n"
               "  --text FILE  --ctx N  --chunks N  --batch N  --dump FILE  --contexts 512,2048,8192  --decode-steps N\n");
  std::exit(1);
}

namespace {

options parse(int argc, char** argv) {
  options o;
  if (argc < 2) usage_error("no subcommand");
  o.command = argv[1];
  o.comp.policy = "infokv";
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    const auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage_error("missing value after " + a);
      return argv[++i];
    };
    if (a == "--model") o.model = next();
    else if (a == "--prompt") o.prompt = next();
    else if (a == "--prompt-file") o.prompt_file = next();
    else if (a == "--raw") o.chat = false;
    else if (a == "--compare") o.compare = true;
    else if (a == "--max-new") o.max_new = to_size(next(), "--max-new");
    else if (a == "--page-size") o.page_size = to_size(next(), "--page-size");
    else if (a == "--text") o.text_file = next();
    else if (a == "--ctx") o.ctx = to_size(next(), "--ctx");
    else if (a == "--chunks") o.chunks = to_size(next(), "--chunks");
    else if (a == "--batch") o.batch = to_size(next(), "--batch");
    else if (a == "--decode-steps") o.decode_steps = to_size(next(), "--decode-steps");
    else if (a == "--temperature") o.temperature = to_double(next(), "--temperature");
    else if (a == "--top-p") o.top_p = to_double(next(), "--top-p");
    else if (a == "--seed") o.seed = to_size(next(), "--seed");
    else if (a == "--policy") {
      o.comp.policy = next();
      o.policy_given = true;
    } else if (a == "--dump") o.dump = next();
    else if (a == "--sinks") o.comp.sink_tokens = to_size(next(), "--sinks");
    else if (a == "--granularity") o.comp.granularity = engine::parse_granularity(next());
    else if (a == "--ratio") o.comp.decode_ratio = to_double(next(), "--ratio");
    else if (a == "--prefill-ratio") {
      o.comp.prefill_ratio = to_double(next(), "--prefill-ratio");
      o.prefill_ratio_given = true;
    }
    else if (a == "--slack") o.comp.slack = to_size(next(), "--slack");
    else if (a == "--recent") o.comp.recent_tokens = to_size(next(), "--recent");
    else if (a == "--contexts") {
      o.contexts.clear();
      for (const auto& item : cli::split(next(), ',')) o.contexts.push_back(to_size(item, "--contexts"));
    } else usage_error("unknown option '" + a + "'");
  }
  if (o.model.empty()) usage_error("--model PATH is required");
  // perplexity measures the full cache unless a policy is named; then the prompt half keeps
  // --ratio of itself unless --prefill-ratio says otherwise (llama-infokv perplexity's rule).
  if (o.command == "perplexity" && !o.policy_given) o.comp.policy = "none";
  if (o.command == "perplexity" && !o.prefill_ratio_given) o.comp.prefill_ratio = o.comp.decode_ratio;
  if (engine::find_policy(o.comp.policy) == nullptr) usage_error(engine::unknown_policy_message(o.comp.policy));
  if (o.page_size == 0) usage_error("--page-size must be at least 1");
  return o;
}

/// Picks the next token: greedy at temperature 0, else nucleus sampling with the seeded RNG.
std::int32_t sample(const engine::row_matrix& logits, double temperature, double top_p, std::mt19937_64& rng) {
  const Eigen::Index V = logits.cols();
  const float* row = logits.data() + (logits.rows() - 1) * V;
  if (temperature <= 0.0) return static_cast<std::int32_t>(std::max_element(row, row + V) - row);
  const float mx = *std::max_element(row, row + V);
  std::vector<std::pair<double, std::int32_t>> p(static_cast<std::size_t>(V));
  double z = 0.0;
  for (Eigen::Index i = 0; i < V; ++i) {
    const double e = std::exp((row[i] - mx) / temperature);
    p[static_cast<std::size_t>(i)] = {e, static_cast<std::int32_t>(i)};
    z += e;
  }
  std::sort(p.begin(), p.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  double cum = 0.0;
  std::size_t keep = 0;
  while (keep < p.size() && cum < top_p * z) cum += p[keep++].first;
  std::uniform_real_distribution<double> U(0.0, cum);
  double r = U(rng);
  for (std::size_t i = 0; i < keep; ++i) {
    r -= p[i].first;
    if (r <= 0.0) return p[i].second;
  }
  return p[keep - 1].second;
}

/// Prefill in chunks (observe for all but the last, compress_prefill for the last).
const engine::row_matrix& prefill(engine::session& s, const std::vector<std::int32_t>& ids, std::size_t chunk) {
  const engine::row_matrix* last = nullptr;
  for (std::size_t i = 0; i < ids.size(); i += chunk) {
    const std::size_t n = std::min(chunk, ids.size() - i);
    const auto kind = i + n == ids.size() ? engine::step_kind::prefill_last : engine::step_kind::prefill_chunk;
    last = &s.forward(std::span<const std::int32_t>(ids.data() + i, n), kind, false);
  }
  return *last;
}

/// Chunk size for prefill: a policy that observes attention rows ([layers][chunk][heads][tokens]
/// floats) gets chunks that keep that buffer near 256 MiB. (The session would hand longer chunks
/// to it in pieces within the same cap; the chunking stays as it was so that generations stay
/// the same.)
std::size_t prefill_chunk_for(const engine::compression_options& c, const engine::llama_config& cfg, std::size_t tokens,
                              std::size_t dflt) {
  const engine::policy_entry* e = engine::find_policy(c.policy);
  if (e == nullptr || !e->attention_rows) return dflt;
  const std::size_t per_token = cfg.layers * cfg.heads * std::max<std::size_t>(tokens, 1) * sizeof(float);
  return std::clamp<std::size_t>((std::size_t{256} << 20) / per_token, 1, dflt);
}

struct run_result {
  std::vector<std::int32_t> tokens;
  double prefill_s = 0.0, decode_s = 0.0, library_s = 0.0;
  std::size_t peak_kv_bytes = 0, final_kv_bytes = 0, evictions = 0, pages_freed = 0, state_bytes = 0;
  std::vector<std::pair<std::size_t, std::size_t>> cache_trace;  // (position, tokens held in the longest stream)
};

run_result generate(const engine::llama_model& model, const engine::bpe_tokenizer& tok, const options& o,
                    const engine::compression_options& comp, const std::vector<std::int32_t>& prompt, bool print) {
  const auto& cfg = model.config;
  const std::size_t max_tokens = prompt.size() + o.max_new;
  engine::session s(model, comp.granularity, o.page_size, max_tokens, engine::make_hook(comp, cfg, max_tokens));
  run_result r;
  std::mt19937_64 rng(o.seed);
  auto t = clock_type::now();
  const engine::row_matrix* logits = &prefill(s, prompt, prefill_chunk_for(comp, cfg, max_tokens, o.prefill_chunk));
  r.prefill_s = seconds_since(t);
  const double lib_after_prefill = s.stats().library_seconds;
  r.cache_trace.emplace_back(s.position(), s.cache().max_length());
  r.peak_kv_bytes = s.cache().bytes_in_use();
  t = clock_type::now();
  for (std::size_t step = 0; step < o.max_new; ++step) {
    const std::int32_t next = sample(*logits, o.temperature, o.top_p, rng);
    if (tok.is_control(next) || next == tok.eos()) break;
    r.tokens.push_back(next);
    if (print) {
      std::fputs(tok.decode(next).c_str(), stdout);
      std::fflush(stdout);
    }
    if (s.position() >= max_tokens || s.position() >= cfg.context) break;
    logits = &s.forward(std::span<const std::int32_t>(&next, 1), engine::step_kind::decode, false);
    r.peak_kv_bytes = std::max(r.peak_kv_bytes, s.cache().bytes_in_use());
    if ((step + 1) % 32 == 0) r.cache_trace.emplace_back(s.position(), s.cache().max_length());
  }
  r.decode_s = seconds_since(t);
  r.library_s = s.stats().library_seconds - lib_after_prefill;
  r.final_kv_bytes = s.cache().bytes_in_use();
  r.evictions = s.stats().evictions;
  r.pages_freed = s.stats().pages_freed;
  r.state_bytes = s.hook() ? s.hook()->state_bytes() : 0;
  r.cache_trace.emplace_back(s.position(), s.cache().max_length());
  return r;
}

int cmd_generate(const options& o, const engine::llama_model& model, const engine::bpe_tokenizer& tok) {
  const std::string user = o.prompt_file.empty() ? o.prompt : read_file(o.prompt_file);
  const std::string text = o.chat ? tok.apply_chat_template({{"user", user}}, true) : user;
  std::vector<std::int32_t> prompt;
  try {
    prompt = tok.encode(text);
  } catch (const engine::tokenizer_error& e) {
    throw std::runtime_error(std::string("the prompt is not valid UTF-8: ") + e.what());
  }
  if (prompt.size() + o.max_new > model.config.context)
    throw std::runtime_error("the prompt (" + std::to_string(prompt.size()) + " tokens) plus --max-new " +
                             std::to_string(o.max_new) + " exceeds the model's context of " +
                             std::to_string(model.config.context) + " tokens");
  std::printf("model: %zu layers, %zu query / %zu KV heads, head_dim %zu, vocab %zu, context %zu\n",
              model.config.layers, model.config.heads, model.config.kv_heads, model.config.head_dim,
              model.config.vocab, model.config.context);
  std::printf("policy: %s, %s, keep %.0f%% of the tokens seen (prompt %.0f%%), sinks %zu, recent %zu, slack %zu\n",
              o.comp.policy.c_str(), std::string(infokv::to_string(o.comp.granularity)).c_str(), 100 * o.comp.decode_ratio,
              100 * o.comp.prefill_ratio, o.comp.sink_tokens, o.comp.recent_tokens, o.comp.slack);
  std::printf("prompt: %zu tokens; sampling: %s\n\n", prompt.size(),
              o.temperature <= 0 ? "greedy" : ("temperature " + std::to_string(o.temperature) + ", top-p " +
                                                std::to_string(o.top_p) + ", seed " + std::to_string(o.seed)).c_str());
  const run_result c = generate(model, tok, o, o.comp, prompt, true);
  std::printf("\n\n--- with compression (%s) ---\n", o.comp.policy.c_str());
  std::printf("cache over time (position: tokens held per stream):");
  for (const auto& [pos, held] : c.cache_trace) std::printf(" %zu:%zu", pos, held);
  std::printf("\n");
  const std::size_t seen = prompt.size() + c.tokens.size();
  engine::paged_cache<> probe(model.config, o.comp.granularity, o.page_size, 1);
  const double full_kib = static_cast<double>(probe.full_cache_bytes(seen)) / 1024.0;
  std::printf("generated %zu tokens; evictions %zu, pages freed %zu; library state %.1f KiB\n", c.tokens.size(),
              c.evictions, c.pages_freed, static_cast<double>(c.state_bytes) / 1024.0);
  std::printf("KV memory at the end: %.0f KiB of pages in use vs %.0f KiB for the full cache: %.1fx less, %.0f%% saved\n",
              static_cast<double>(c.final_kv_bytes) / 1024.0, full_kib,
              full_kib / std::max(1.0, static_cast<double>(c.final_kv_bytes) / 1024.0),
              100.0 * (1.0 - static_cast<double>(c.final_kv_bytes) / 1024.0 / full_kib));
  std::printf("prefill %.1f tok/s; decode %.2f tok/s, of which %.1f%% inside the library\n",
              static_cast<double>(prompt.size()) / c.prefill_s, static_cast<double>(c.tokens.size()) / c.decode_s,
              100.0 * c.library_s / c.decode_s);
  if (o.compare) {
    engine::compression_options none = o.comp;
    none.policy = "none";
    const run_result f = generate(model, tok, o, none, prompt, false);
    std::printf("\n--- full cache (same prompt, same sampling) ---\n");
    std::printf("generated %zu tokens; KV memory at the end %.0f KiB; decode %.2f tok/s; prefill %.1f tok/s\n",
                f.tokens.size(), static_cast<double>(f.final_kv_bytes) / 1024.0,
                static_cast<double>(f.tokens.size()) / f.decode_s, static_cast<double>(prompt.size()) / f.prefill_s);
    std::size_t same = 0;
    while (same < std::min(c.tokens.size(), f.tokens.size()) && c.tokens[same] == f.tokens[same]) ++same;
    std::printf("the compressed run generated the same first %zu tokens as the full cache%s\n", same,
                same == c.tokens.size() && same == f.tokens.size() ? " (all of them)" : "");
  }
  return 0;
}

std::vector<std::int32_t> text_tokens(const options& o, const engine::bpe_tokenizer& tok) {
  if (o.text_file.empty()) usage_error("--text FILE is required");
  try {
    return tok.encode(read_file(o.text_file));
  } catch (const engine::tokenizer_error& e) {
    throw std::runtime_error("'" + o.text_file + "' is not valid UTF-8: " + e.what());
  }
}

/// One chunk under compression: the first half prefilled and compressed, the second half fed
/// one decode step at a time. Returns the NLL of each prediction made at positions half .. n-2;
/// `kept`: the positions held once the prompt was compressed.
std::vector<double> compressed_chunk_nll(const options& o, const engine::llama_model& model,
                                         std::span<const std::int32_t> chunk, std::vector<std::int32_t>& kept) {
  const std::size_t n = chunk.size(), half = n / 2;
  const auto& cfg = model.config;
  engine::session s(model, o.comp.granularity, o.page_size, n, engine::make_hook(o.comp, cfg, n));
  const std::vector<std::int32_t> prompt(chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(half));
  prefill(s, prompt, prefill_chunk_for(o.comp, cfg, n, o.prefill_chunk));
  kept = s.cache().stream_positions(0);
  std::sort(kept.begin(), kept.end());
  std::vector<double> nll;
  for (std::size_t j = half; j + 1 < n; ++j) {
    const engine::row_matrix& lg = s.forward(chunk.subspan(j, 1), engine::step_kind::decode, false);
    nll.push_back(engine::token_nll(lg.row(lg.rows() - 1), chunk[j + 1]));
  }
  return nll;
}

int cmd_perplexity(const options& o, const engine::llama_model& model, const engine::bpe_tokenizer& tok) {
  const auto ids = text_tokens(o, tok);
  if (o.ctx < 4 || o.ctx > model.config.context) usage_error("--ctx must lie in [4, the model's context]");
  const bool compress = o.comp.policy != "none";
  if (compress && o.ctx % 2 != 0) usage_error("perplexity with a policy needs an even --ctx");
  std::size_t chunks = ids.size() / o.ctx;
  if (o.chunks != 0) chunks = std::min(chunks, o.chunks);
  if (chunks == 0) throw std::runtime_error("the text has fewer tokens than one chunk of --ctx");
  const std::size_t batch = o.batch == 0 ? o.ctx : std::min(o.batch, o.ctx);
  std::printf("%zu tokens, %zu chunks of %zu in batches of %zu, scoring positions %zu..%zu of each chunk\n", ids.size(),
              chunks, o.ctx, batch, o.ctx / 2, o.ctx - 2);
  if (compress)
    std::printf("policy %s (%s): prompt %zu tokens kept to %.3g, then %zu decode steps keeping %.3g of the tokens seen "
                "(+ slack %zu, sinks %zu, recent %zu)\n",
                o.comp.policy.c_str(), std::string(infokv::to_string(o.comp.granularity)).c_str(), o.ctx / 2,
                o.comp.prefill_ratio, o.ctx / 2 - 1, o.comp.decode_ratio, o.comp.slack, o.comp.sink_tokens,
                o.comp.recent_tokens);
  std::FILE* dump = nullptr;
  if (!o.dump.empty() && (dump = std::fopen(o.dump.c_str(), "w")) == nullptr) throw std::runtime_error("cannot write " + o.dump);
  struct file_closer {
    std::FILE* f;
    ~file_closer() { if (f != nullptr) std::fclose(f); }
  } closer{dump};
  const auto t = clock_type::now();
  double nll = 0.0, nll_comp = 0.0;
  std::size_t count = 0;
  for (std::size_t c = 0; c < chunks; ++c) {
    engine::session s(model, infokv::stream_granularity::per_layer, o.page_size, o.ctx, nullptr);
    const std::span<const std::int32_t> chunk(ids.data() + c * o.ctx, o.ctx);
    std::vector<double> full;
    for (std::size_t b0 = 0; b0 < o.ctx; b0 += batch) {
      const std::size_t n = std::min(batch, o.ctx - b0);
      const engine::row_matrix& lg = s.forward(chunk.subspan(b0, n), engine::step_kind::decode, true);
      for (std::size_t j = std::max(o.ctx / 2, b0); j < b0 + n && j + 1 < o.ctx; ++j)
        full.push_back(engine::token_nll(lg.row(static_cast<Eigen::Index>(j - b0)), chunk[j + 1]));
    }
    for (double x : full) nll += x;
    count += full.size();
    if (!compress) {
      std::printf("[%zu]%.4f ", c + 1, std::exp(nll / static_cast<double>(count)));
      std::fflush(stdout);
      continue;
    }
    std::vector<std::int32_t> kept;
    std::vector<double> comp = compressed_chunk_nll(o, model, chunk, kept);
    double f = 0.0, p = 0.0;
    for (std::size_t i = 0; i < full.size(); ++i) {
      f += full[i];
      p += comp[i];
    }
    nll_comp += p;
    const double m = static_cast<double>(full.size());
    std::printf("[%zu] full %.4f, %s %.4f (mean NLL, delta %+.4f)\n", c + 1, f / m, o.comp.policy.c_str(), p / m, (p - f) / m);
    std::fflush(stdout);
    if (dump != nullptr) {
      std::fprintf(dump, "{\"chunk\": %zu, \"first_token\": %zu, \"kept_after_prefill\": [", c, c * o.ctx);
      for (std::size_t i = 0; i < kept.size(); ++i) std::fprintf(dump, "%s%d", i ? ", " : "", kept[i]);
      for (const auto* which : {&full, &comp}) {
        std::fprintf(dump, "], \"%s\": [", which == &full ? "nll_full" : "nll");
        for (std::size_t i = 0; i < which->size(); ++i) std::fprintf(dump, "%s%.9g", i ? ", " : "", (*which)[i]);
      }
      std::fprintf(dump, "]}\n");
      std::fflush(dump);
    }
  }
  const double mf = nll / static_cast<double>(count);
  std::printf("\nperplexity: %.4f over %zu predictions (%.1f s)\n", std::exp(mf), count, seconds_since(t));
  std::printf("mean nll: %.9f\n", mf);
  if (compress) {
    const double mp = nll_comp / static_cast<double>(count);
    std::printf("%s: perplexity %.4f (mean NLL %.6f); delta NLL %+.6f over %zu predictions\n", o.comp.policy.c_str(),
                std::exp(mp), mp, mp - mf, count);
  }
  return 0;
}

int cmd_bench(const options& o, const engine::llama_model& model, const engine::bpe_tokenizer& tok) {
  // The text's tokens, repeated when a context needs more (speed does not depend on the words).
  auto ids = text_tokens(o, tok);
  const std::size_t longest = *std::max_element(o.contexts.begin(), o.contexts.end());
  if (ids.empty()) throw std::runtime_error("the text is empty");
  for (std::size_t i = 0; ids.size() < longest; ++i) ids.push_back(ids[i]);
  std::printf("| context | cache | prefill tok/s | decode tok/s | KV memory | library share of decode |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (const std::size_t ctx : o.contexts) {
    if (ctx > model.config.context || ctx <= o.decode_steps) usage_error("each --contexts value must lie in (decode steps, context]");
    const std::size_t prompt_len = ctx - o.decode_steps;
    const std::vector<std::int32_t> prompt(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(prompt_len));
    for (const bool compressed : {false, true}) {
      engine::compression_options comp = o.comp;
      if (!compressed) comp.policy = "none";
      // A fixed number of greedy steps (a control token does not stop them: this measures speed).
      engine::session s(model, comp.granularity, o.page_size, ctx, engine::make_hook(comp, model.config, ctx));
      auto t = clock_type::now();
      const engine::row_matrix* logits = &prefill(s, prompt, prefill_chunk_for(comp, model.config, ctx, o.prefill_chunk));
      const double prefill_s = seconds_since(t);
      const double lib0 = s.stats().library_seconds;
      std::mt19937_64 rng(o.seed);
      t = clock_type::now();
      for (std::size_t i = 0; i < o.decode_steps; ++i) {
        const std::int32_t next = sample(*logits, 0.0, 1.0, rng);
        logits = &s.forward(std::span<const std::int32_t>(&next, 1), engine::step_kind::decode, false);
      }
      const double decode_s = seconds_since(t);
      const double lib = s.stats().library_seconds - lib0;
      std::printf("| %zu | %s | %.1f | %.2f | %.1f MiB | %s |\n", ctx,
                  compressed ? (comp.policy + " " + std::to_string(static_cast<int>(100 * comp.decode_ratio)) + "%").c_str() : "full",
                  static_cast<double>(prompt_len) / prefill_s, static_cast<double>(o.decode_steps) / decode_s,
                  static_cast<double>(s.cache().bytes_in_use()) / (1 << 20),
                  compressed ? (std::to_string(100.0 * lib / decode_s).substr(0, 4) + "%").c_str() : "-");
      std::fflush(stdout);
    }
  }
  return 0;
}

int cmd_tokenize(const options& o, const engine::bpe_tokenizer& tok) {
  const auto ids = text_tokens(o, tok);
  std::printf("[");
  for (std::size_t i = 0; i < ids.size(); ++i) std::printf(i == 0 ? "%d" : ", %d", ids[i]);
  std::printf("]\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  try {
    if (o.command != "generate" && o.command != "perplexity" && o.command != "bench" && o.command != "tokenize")
      usage_error("unknown subcommand '" + o.command + "'");
    const auto t = clock_type::now();
    const engine::gguf_file file = engine::gguf_file::open(o.model);
    const engine::bpe_tokenizer tok(file);
    if (o.command == "tokenize") return cmd_tokenize(o, tok);
    const engine::llama_model model = engine::llama_model::load(file);
    std::fprintf(stderr, "loaded %s in %.2f s\n", o.model.c_str(), seconds_since(t));
    if (o.command == "generate") return cmd_generate(o, model, tok);
    if (o.command == "perplexity") return cmd_perplexity(o, model, tok);
    return cmd_bench(o, model, tok);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
