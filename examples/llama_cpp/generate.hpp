// SPDX-License-Identifier: Apache-2.0
// One generation through llama.cpp's public API, with or without the infokv adapter: the
// prompts of several sequences prefilled in chunks, then all sequences decoded together, one
// token each per llama_decode. llama-infokv and the adapter tests share it, so "plain llama.cpp"
// and "llama.cpp with the adapter" differ only in the adapter.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <ggml-cpu.h>
#include <llama.h>

#include "infokv_llama.hpp"

namespace llama_infokv {

struct run_options {
  std::vector<std::vector<llama_token>> prompts;  // one sequence each
  int n_predict = 64;
  std::uint32_t seed = 0;  // 0: greedy; else llama.cpp's dist sampler with this seed (temperature 0.8)
  std::uint32_t n_ctx = 4096;
  std::uint32_t n_batch = 512;
  int threads = 2;
  bool flash_attn = false;
  bool stop_at_eog = true;
  // Teacher forcing (perplexity): when non-empty, one list per sequence; decode feeds these tokens
  // instead of sampled ones and records how well the logits before each predicted it.
  std::vector<std::vector<llama_token>> forced;
};

struct sequence_trace {
  std::vector<llama_token> generated;
  std::size_t max_cells = 0;         // most cells held at any point after a call
  std::vector<std::size_t> cells;    // cells held after each decode step
  std::vector<std::int32_t> kept_after_prefill;  // positions held once the prompt was compressed, ascending
  std::vector<double> nll;           // teacher forcing: -log p(forced[i]) from the logits before it
};

struct run_result {
  std::vector<sequence_trace> seqs;
  double prefill_seconds = 0.0, decode_seconds = 0.0;
  std::size_t prompt_tokens = 0, decoded_tokens = 0, decode_calls = 0;
  std::size_t max_high_water = 0;  // highest cell + 1 any sequence held (the attended range before padding)
  infokv_llama::adapter_stats stats{};          // at the end
  infokv_llama::adapter_stats prefill_stats{};  // when the prefill ended (decode's share: the difference)
  std::size_t high_water_after_prefill = 0;
};

struct context_deleter {
  void operator()(llama_context* c) const noexcept { llama_free(c); }
};
using context_ptr = std::unique_ptr<llama_context, context_deleter>;
struct sampler_deleter {
  void operator()(llama_sampler* s) const noexcept { llama_sampler_free(s); }
};
using sampler_ptr = std::unique_ptr<llama_sampler, sampler_deleter>;
struct threadpool_deleter {
  void operator()(ggml_threadpool* t) const noexcept { ggml_threadpool_free(t); }
};
using threadpool_ptr = std::unique_ptr<ggml_threadpool, threadpool_deleter>;

inline llama_context_params context_params(const run_options& o) {
  llama_context_params p = llama_context_default_params();
  p.n_ctx = o.n_ctx;
  p.n_batch = o.n_batch;
  p.n_ubatch = o.n_batch;
  p.n_seq_max = static_cast<std::uint32_t>(o.prompts.size());
  p.kv_unified = true;
  p.n_threads = o.threads;
  p.n_threads_batch = o.threads;
  p.type_k = GGML_TYPE_F16;
  p.type_v = GGML_TYPE_F16;
  p.flash_attn_type = o.flash_attn ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
  p.no_perf = true;
  return p;
}

/// Runs the prompts and generation; `ad` null runs plain llama.cpp. The adapter must be fresh
/// (one adapter per context).
inline double token_nll(const float* logits, std::size_t vocab, llama_token target) {
  double mx = logits[0];
  for (std::size_t i = 1; i < vocab; ++i) mx = std::max(mx, static_cast<double>(logits[i]));
  double z = 0.0;
  for (std::size_t i = 0; i < vocab; ++i) z += std::exp(static_cast<double>(logits[i]) - mx);
  return mx + std::log(z) - static_cast<double>(logits[static_cast<std::size_t>(target)]);
}

inline run_result run(llama_model* model, const run_options& o, infokv_llama::adapter* ad) {
  if (o.prompts.empty()) throw std::invalid_argument("no prompt");
  const bool forcing = !o.forced.empty();
  if (forcing && o.forced.size() != o.prompts.size()) throw std::invalid_argument("one forced list per prompt");
  for (const auto& f : o.forced)
    if (f.empty()) throw std::invalid_argument("an empty forced list");
  llama_context_params params = context_params(o);
  if (ad != nullptr) ad->install(params);
  // One thread pool for the run, as llama-cli does. Without it ggml (built without OpenMP) makes
  // and joins a new pool for every graph computation, and the eval callback cuts each step's
  // graph into one computation per node it reads (queries, hidden states): 60 pools per decode
  // step for InfoKV on SmolLM2, which cost more than the smaller cache saved.
  ggml_threadpool_params tpp = ggml_threadpool_params_default(o.threads);
  threadpool_ptr pool(ggml_threadpool_new(&tpp));
  if (!pool) throw std::runtime_error("ggml_threadpool_new failed");
  context_ptr ctx(llama_init_from_model(model, params));
  if (!ctx) throw std::runtime_error("llama_init_from_model failed (n_ctx too large for memory?)");
  llama_attach_threadpool(ctx.get(), pool.get(), pool.get());
  if (ad != nullptr) ad->attach(ctx.get());
  const llama_vocab* vocab = llama_model_get_vocab(model);
  const std::size_t S = o.prompts.size();
  const bool every_output = ad != nullptr && ad->needs_every_output();
  std::vector<sampler_ptr> samplers;
  for (std::size_t s = 0; s < S; ++s) {
    sampler_ptr smpl(llama_sampler_chain_init(llama_sampler_chain_default_params()));
    if (o.seed == 0) {
      llama_sampler_chain_add(smpl.get(), llama_sampler_init_greedy());
    } else {
      llama_sampler_chain_add(smpl.get(), llama_sampler_init_temp(0.8f));
      llama_sampler_chain_add(smpl.get(), llama_sampler_init_dist(o.seed + static_cast<std::uint32_t>(s)));
    }
    samplers.push_back(std::move(smpl));
  }
  run_result r;
  r.seqs.resize(S);
  const std::size_t n_vocab = static_cast<std::size_t>(llama_vocab_n_tokens(vocab));
  // The next token of sequence s: sampled, or under teacher forcing the next forced token (its
  // NLL under the logits of batch row i recorded first).
  const auto pick = [&](std::size_t s, std::int32_t i) -> llama_token {
    if (!forcing) return llama_sampler_sample(samplers[s].get(), ctx.get(), i);
    const std::size_t k = r.seqs[s].nll.size();
    const float* lg = llama_get_logits_ith(ctx.get(), i);
    if (lg == nullptr) throw std::runtime_error("llama.cpp returned no logits for a forced token");
    r.seqs[s].nll.push_back(token_nll(lg, n_vocab, o.forced[s][k]));
    return o.forced[s][k];
  };
  llama_batch batch = llama_batch_init(static_cast<std::int32_t>(o.n_batch), 0, 1);
  struct batch_guard {
    llama_batch& b;
    ~batch_guard() { llama_batch_free(b); }
  } guard{batch};
  const auto add = [&](llama_token tok, llama_pos pos, llama_seq_id seq, bool out) {
    const std::int32_t i = batch.n_tokens++;
    batch.token[i] = tok;
    batch.pos[i] = pos;
    batch.n_seq_id[i] = 1;
    batch.seq_id[i][0] = seq;
    batch.logits[i] = out ? 1 : 0;
  };
  const auto decode = [&](infokv_llama::adapter::phase ph) {
    const int rc = ad != nullptr ? ad->decode(batch, ph) : llama_decode(ctx.get(), batch);
    if (rc != 0) throw std::runtime_error("llama_decode failed with " + std::to_string(rc) + " (context full?)");
  };
  const auto note_cells = [&](std::size_t s) {
    if (ad == nullptr) return;
    r.seqs[s].max_cells = std::max(r.seqs[s].max_cells, ad->cells_held(static_cast<llama_seq_id>(s)));
    r.max_high_water = std::max(r.max_high_water, ad->high_water());
  };

  // Prefill, one sequence at a time, in chunks of n_batch; the last token of each prompt is an
  // output (its logits pick the first generated token).
  std::vector<llama_token> next(S);
  std::vector<llama_pos> pos(S, 0);
  const auto t_prefill = std::chrono::steady_clock::now();
  for (std::size_t s = 0; s < S; ++s) {
    const auto& pr = o.prompts[s];
    if (pr.empty()) throw std::invalid_argument("an empty prompt");
    for (std::size_t at = 0; at < pr.size(); at += o.n_batch) {
      const std::size_t n = std::min<std::size_t>(o.n_batch, pr.size() - at);
      batch.n_tokens = 0;
      for (std::size_t k = 0; k < n; ++k)
        add(pr[at + k], static_cast<llama_pos>(at + k), static_cast<llama_seq_id>(s), every_output || at + k + 1 == pr.size());
      const bool last = at + n == pr.size();
      decode(last ? infokv_llama::adapter::phase::prompt_last : infokv_llama::adapter::phase::prompt);
      note_cells(s);
      if (last) next[s] = pick(s, batch.n_tokens - 1);
    }
    pos[s] = static_cast<llama_pos>(pr.size());
    r.prompt_tokens += pr.size();
    if (ad != nullptr) {
      for (std::int32_t c : ad->cells(static_cast<llama_seq_id>(s))) r.seqs[s].kept_after_prefill.push_back(ad->cell_position(c));
      std::sort(r.seqs[s].kept_after_prefill.begin(), r.seqs[s].kept_after_prefill.end());
    }
  }
  r.prefill_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_prefill).count();
  if (ad != nullptr) {
    r.prefill_stats = ad->stats();
    r.high_water_after_prefill = ad->high_water();
  }

  // Decode: every live sequence appends its token in one batch.
  std::vector<bool> live(S, true);
  const auto t_decode = std::chrono::steady_clock::now();
  for (int step = 0; forcing || step < o.n_predict; ++step) {
    batch.n_tokens = 0;
    std::vector<std::size_t> in_batch;
    for (std::size_t s = 0; s < S; ++s) {
      if (!live[s]) continue;
      r.seqs[s].generated.push_back(next[s]);
      if (!forcing && o.stop_at_eog && llama_vocab_is_eog(vocab, next[s])) {
        live[s] = false;
        continue;
      }
      if (forcing ? r.seqs[s].generated.size() >= o.forced[s].size()
                  : static_cast<int>(r.seqs[s].generated.size()) >= o.n_predict) {
        live[s] = false;
        continue;
      }
      add(next[s], pos[s]++, static_cast<llama_seq_id>(s), true);
      in_batch.push_back(s);
    }
    if (in_batch.empty()) break;
    decode(infokv_llama::adapter::phase::decode);
    ++r.decode_calls;
    r.decoded_tokens += in_batch.size();
    for (std::size_t k = 0; k < in_batch.size(); ++k) {
      const std::size_t s = in_batch[k];
      next[s] = pick(s, static_cast<std::int32_t>(k));
      note_cells(s);
      if (ad != nullptr) r.seqs[s].cells.push_back(ad->cells_held(static_cast<llama_seq_id>(s)));
    }
  }
  r.decode_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_decode).count();
  if (ad != nullptr) r.stats = ad->stats();
  return r;
}

/// The model's chat template applied to one user message (llama.cpp's built-in templates).
inline std::string chat_prompt(const llama_model* model, const std::string& user) {
  const char* tmpl = llama_model_chat_template(model, nullptr);
  if (tmpl == nullptr) throw std::runtime_error("the model file has no chat template");
  const llama_chat_message msg{"user", user.c_str()};
  std::vector<char> buf(user.size() * 2 + 512);
  int n = llama_chat_apply_template(tmpl, &msg, 1, true, buf.data(), static_cast<std::int32_t>(buf.size()));
  if (n > static_cast<int>(buf.size())) {
    buf.resize(static_cast<std::size_t>(n));
    n = llama_chat_apply_template(tmpl, &msg, 1, true, buf.data(), static_cast<std::int32_t>(buf.size()));
  }
  if (n < 0) throw std::runtime_error("llama.cpp does not know the model's chat template");
  return std::string(buf.data(), static_cast<std::size_t>(n));
}

inline std::vector<llama_token> tokenize(const llama_model* model, const std::string& text, bool special) {
  const llama_vocab* vocab = llama_model_get_vocab(model);
  std::vector<llama_token> out(text.size() + 16);
  int n = llama_tokenize(vocab, text.data(), static_cast<std::int32_t>(text.size()), out.data(),
                         static_cast<std::int32_t>(out.size()), true, special);
  if (n < 0) {
    out.resize(static_cast<std::size_t>(-n));
    n = llama_tokenize(vocab, text.data(), static_cast<std::int32_t>(text.size()), out.data(),
                       static_cast<std::int32_t>(out.size()), true, special);
  }
  if (n < 0) throw std::runtime_error("tokenization failed");
  out.resize(static_cast<std::size_t>(n));
  return out;
}

inline std::string detokenize(const llama_model* model, const std::vector<llama_token>& toks) {
  const llama_vocab* vocab = llama_model_get_vocab(model);
  std::string s;
  char buf[256];
  for (llama_token t : toks) {
    const int n = llama_token_to_piece(vocab, t, buf, sizeof buf, 0, false);
    if (n > 0) s.append(buf, static_cast<std::size_t>(n));
  }
  return s;
}

}  // namespace llama_infokv
