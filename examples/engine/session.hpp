// SPDX-License-Identifier: Apache-2.0
// One sequence on a Llama model: the forward pass over the engine's paged cache (RMSNorm, RoPE on
// adjacent pairs with the file's theta, grouped-query attention read through the library's view,
// SwiGLU, the tied LM head), batched for prefill chunks and one token for decode. After each
// forward the engine hands the library the signals a production engine has at that point
// (post-RoPE queries, pre-RoPE queries, per-layer hidden states, logits, attention rows: only
// those the policy asks for) and calls observe / compress_prefill / compress, then takes back the
// pages the library freed. Attention rows beyond a byte cap are handed over in pieces
// (attention_rows.hpp).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "eigen.hpp"
#include <infokv/infokv.hpp>

#include "attention_rows.hpp"
#include "kv_cache.hpp"
#include "llama_model.hpp"

namespace engine {

using cache_type = paged_cache<infokv::layout_hnd>;
using view_type = cache_type::view_type;

/// What the library is asked to do after a forward.
enum class step_kind {
  prefill_chunk,  // observe(): record signals, never evict (chunked prefill)
  prefill_last,   // compress_prefill(): evict to the prefill budget
  decode,         // compress(): evict when over the decode budget
};

/// What a hook is handed after a forward. The attention rows of a long step are not held at
/// once: then `signals.attention` is empty and `rows` produces them on demand, and a hook whose
/// policy observes rows takes the step in pieces (attention_rows.hpp).
struct step_input {
  infokv::step_signals signals;
  const attention_row_source* rows = nullptr;
};

/// What the session drives after every forward: one library compressor, or several observing
/// the same pass (the evaluation's fan-out).
class compression_hook {
 public:
  virtual ~compression_hook() = default;
  [[nodiscard]] virtual infokv::signal_set required() const = 0;
  [[nodiscard]] virtual infokv::status run(const view_type& v, const step_input& in, step_kind k) = 0;
  [[nodiscard]] virtual const infokv::eviction_event& last_event() const = 0;
  [[nodiscard]] virtual std::size_t state_bytes() const = 0;
};

/// The library's compressor for one policy, behind a virtual interface so the policy can be
/// chosen at run time (the compressor itself is a compile-time composition).
class compressor_hook : public compression_hook {
 public:
  [[nodiscard]] virtual const infokv::compress_config& config() const = 0;
  [[nodiscard]] virtual const infokv::sequence_state& state() const = 0;
  /// The same policy, configuration and sequence state observed so far, with other budgets: one
  /// observed prefill, evicted to several budgets. Only the budgets change: the state was sized
  /// for the rest of the configuration (capacity, granularity, schedule).
  [[nodiscard]] virtual std::unique_ptr<compressor_hook> clone_with_budgets(const infokv::budget& decode,
                                                                            const infokv::budget& prefill) const = 0;
};

template <class Policy>
class policy_hook final : public compressor_hook {
 public:
  policy_hook(const Policy& p, const infokv::compress_config& cfg, const infokv::model_shape& shape)
      : comp_(p, cfg, shape) {
    if (const auto st = comp_.can_implement(); !st.ok())
      throw std::runtime_error("compression configuration rejected: " + std::string(st.message()));
    state_ = comp_.make_state();
  }
  [[nodiscard]] infokv::signal_set required() const override { return comp_.required_signals(); }
  [[nodiscard]] infokv::status run(const view_type& v, const step_input& in, step_kind k) override {
    if (in.rows == nullptr || !required().contains(infokv::signal::attention)) return call(v, in.signals, k);
    return run_in_pieces(v, in.signals, *in.rows, k);
  }
  [[nodiscard]] const infokv::eviction_event& last_event() const override { return state_.last_event(); }
  [[nodiscard]] std::size_t state_bytes() const override { return state_.memory_bytes(); }
  [[nodiscard]] const infokv::compress_config& config() const override { return comp_.config(); }
  [[nodiscard]] const infokv::sequence_state& state() const override { return state_; }
  [[nodiscard]] std::unique_ptr<compressor_hook> clone_with_budgets(const infokv::budget& decode,
                                                                    const infokv::budget& prefill) const override {
    infokv::compress_config cfg = comp_.config();
    cfg.decode_budget = decode;
    cfg.prefill_budget = prefill;
    auto copy = std::make_unique<policy_hook>(comp_.policy(), cfg, comp_.shape());
    copy->state_ = state_;
    return copy;
  }

 private:
  [[nodiscard]] infokv::status call(const view_type& v, const infokv::step_signals& sig, step_kind k) {
    switch (k) {
      case step_kind::prefill_chunk: return comp_.observe(v, 0, state_, sig);
      case step_kind::prefill_last: return comp_.compress_prefill(v, 0, state_, sig);
      case step_kind::decode: return comp_.compress(v, 0, state_, sig);
    }
    return infokv::errc::invalid_config;
  }

  // The step in pieces of new tokens: observe() for each but the last, which gets the step's own
  // call (only it may evict, against the same lengths and token count as the whole step). The
  // buffers are the step's: at most one piece's rows are alive. A piece that fails stops the
  // step with the earlier pieces observed (the session reports the error and is not continued).
  // The one count that differs from a whole step is the decode-step counter of an `interval`
  // trigger (observe() does not advance it), which the engine never sets.
  [[nodiscard]] infokv::status run_in_pieces(const view_type& v, const infokv::step_signals& sig,
                                             const attention_row_source& rows, step_kind k) {
    const std::size_t n = sig.num_tokens, L = comp_.shape().num_layers, Hq = comp_.shape().num_q_heads;
    const auto bounds =
        attention_piece_bounds(n, rows.bytes_per_token(), rows.byte_cap, rows.group_size, comp_.needs().window);
    std::vector<float> queries, prerope, hidden, attention;
    truncated_table table;
    for (std::size_t i = 0; i + 1 < bounds.size(); ++i) {
      const std::size_t first = bounds[i], last = bounds[i + 1], m = last - first, drop = n - last;
      infokv::step_signals piece;
      piece.num_tokens = m;
      piece.queries = layer_slice(sig.queries, L, n, first, m, queries);
      piece.prerope_queries = layer_slice(sig.prerope_queries, L, n, first, m, prerope);
      piece.hidden_states = layer_slice(sig.hidden_states, L, n, first, m, hidden);
      if (!sig.logits.empty()) piece.logits = sig.logits.subspan(first * (sig.logits.size() / n), m * (sig.logits.size() / n));
      if (!sig.next_token_entropy.empty()) piece.next_token_entropy = sig.next_token_entropy.subspan(first, m);
      const std::size_t stride = rows.stride - drop;
      attention.assign(L * m * Hq * stride, 0.0f);
      rows.fill(first, last, stride, attention.data());
      piece.attention = attention;
      piece.attention_stride = stride;
      const bool final_piece = last == n;
      INFOKV_TRY(call(final_piece ? v : view_without_newest(v, drop, table), piece,
                      final_piece ? k : step_kind::prefill_chunk));
    }
    return {};
  }

  infokv::compressor<Policy> comp_;
  infokv::sequence_state state_;
};

struct session_stats {
  double library_seconds = 0.0;  // inside observe / compress_prefill / compress
  double forward_seconds = 0.0;  // everything else of forward()
  std::size_t evictions = 0;
  std::size_t pages_freed = 0;
};

class session {
 public:
  /// `max_tokens`: the most tokens any stream holds at once (prompt + generation when nothing is
  /// evicted). `hook` may be null: the full cache.
  session(const llama_model& m, infokv::stream_granularity g, std::size_t page_size, std::size_t max_tokens,
          std::unique_ptr<compression_hook> hook)
      : m_(m), c_(m.config), cache_(m.config, g, page_size, max_tokens), hook_(std::move(hook)) {
    init();
  }

  /// A session over a copy of `cache` (the model's, holding tokens at positions [0, position))
  /// with its own hook: continues a shared prefix under several policies.
  session(const llama_model& m, cache_type cache, std::size_t position, std::unique_ptr<compression_hook> hook)
      : m_(m), c_(m.config), cache_(std::move(cache)), hook_(std::move(hook)), next_pos_(position) {
    init();
  }

  /// Replaces the hook (null: no compression from now on).
  void set_hook(std::unique_ptr<compression_hook> hook) {
    hook_ = std::move(hook);
    needs_ = hook_ ? hook_->required() : infokv::signal_set{};
  }

  /// The most bytes of attention rows a step holds at once (attention_rows.hpp); beyond it the
  /// hook takes the step in pieces. Decisions do not depend on it.
  void set_attention_row_bytes(std::size_t bytes) noexcept { attention_row_bytes_ = bytes; }

  /// compress_prefill() without new tokens: evicts what is cached now to the prefill budget.
  void compress_now() {
    if (!hook_) return;
    const auto t0 = std::chrono::steady_clock::now();
    step_input none;
    none.signals.num_tokens = 0;
    finish(hook_->run(cache_.view(), none, step_kind::prefill_last));
    stats_.library_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  /// Runs `tokens` at the next positions, appends their K/V, and (with a hook) lets the library
  /// observe or evict. Returns the logits of every token (`all_logits`) or of the last one,
  /// row-major [rows][vocab].
  const row_matrix& forward(std::span<const std::int32_t> tokens, step_kind kind, bool all_logits) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::size_t n = tokens.size(), d = c_.hidden, L = c_.layers, Hq = c_.heads, Hkv = c_.kv_heads,
                      D = c_.head_dim, G = Hq / Hkv;
    if (n == 0) throw std::invalid_argument("forward() needs at least one token");
    for (std::int32_t t : tokens)
      if (t < 0 || static_cast<std::size_t>(t) >= c_.vocab) throw std::invalid_argument("token id out of range");
    if (next_pos_ + n > c_.context)
      throw std::length_error("the sequence would exceed the model's context of " + std::to_string(c_.context) + " tokens");
    const bool want_queries = needs_.contains(infokv::signal::queries);
    const bool want_prerope = needs_.contains(infokv::signal::prerope_queries);
    const bool want_hidden = needs_.contains(infokv::signal::hidden_states);
    const bool want_logits = needs_.contains(infokv::signal::token_entropy);
    const bool want_attention = needs_.contains(infokv::signal::attention);
    const auto first_pos = static_cast<std::int32_t>(next_pos_);
    cache_.reserve(n, first_pos);
    const view_type v = cache_.view();
    std::size_t stride = 0;  // attention rows cover the longest stream
    for (std::size_t s = 0; s < cache_.num_streams(); ++s) stride = std::max(stride, cache_.length(s));
    // Rows that fit the cap are kept during the pass, as always; beyond it they are computed
    // again after the pass, piece by piece, from the post-RoPE queries (kept for that).
    const bool rows_whole = want_attention && n * L * Hq * stride * sizeof(float) <= attention_row_bytes_;
    const bool rows_later = want_attention && !rows_whole;
    if (want_queries || rows_later) sig_queries_.assign(L * n * Hq * D, 0.0f);
    if (want_prerope) sig_prerope_.assign(L * n * Hq * D, 0.0f);
    if (want_hidden) sig_hidden_.assign(L * n * d, 0.0f);
    if (rows_whole) sig_attention_.assign(L * n * Hq * stride, 0.0f);
    else std::vector<float>().swap(sig_attention_);  // a long step holds none

    x_.resize(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(d));
    for (std::size_t j = 0; j < n; ++j) x_.row(static_cast<Eigen::Index>(j)) = m_.token_embd.row(tokens[j]);
    for (std::size_t l = 0; l < L; ++l) {
      const llama_layer& w = m_.layers[l];
      rms_norm(x_, w.attn_norm, xn_);
      q_.noalias() = xn_ * w.wq.transpose();
      k_.noalias() = xn_ * w.wk.transpose();
      vv_.noalias() = xn_ * w.wv.transpose();
      if (want_prerope) std::copy(q_.data(), q_.data() + n * Hq * D, sig_prerope_.data() + l * n * Hq * D);
      rope(q_, Hq, first_pos);
      rope(k_, Hkv, first_pos);
      if (want_queries || rows_later) std::copy(q_.data(), q_.data() + n * Hq * D, sig_queries_.data() + l * n * Hq * D);
      for (std::size_t j = 0; j < n; ++j)
        for (std::size_t h = 0; h < Hkv; ++h) {
          std::copy_n(k_.data() + (j * Hkv + h) * D, D, cache_.key_row(l, h, j));
          std::copy_n(vv_.data() + (j * Hkv + h) * D, D, cache_.value_row(l, h, j));
        }
      attn_.setZero(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(Hq * D));
      for (std::size_t h = 0; h < Hkv; ++h)
        attend(v, l, h, n, G, first_pos, rows_whole ? sig_attention_.data() + l * n * Hq * stride : nullptr, stride);
      x_.noalias() += attn_ * w.wo.transpose();
      rms_norm(x_, w.ffn_norm, xn_);
      gate_.noalias() = xn_ * w.w_gate.transpose();
      up_.noalias() = xn_ * w.w_up.transpose();
      gate_ = gate_.array() / (1.0f + (-gate_.array()).exp()) * up_.array();
      x_.noalias() += gate_ * w.w_down.transpose();
      if (want_hidden) std::copy(x_.data(), x_.data() + n * d, sig_hidden_.data() + l * n * d);
    }
    const bool every_row = all_logits || want_logits;
    if (every_row) {
      rms_norm(x_, m_.output_norm, xn_);
    } else {
      row_matrix last = x_.bottomRows(1);
      rms_norm(last, m_.output_norm, xn_);
    }
    logits_.noalias() = xn_ * m_.lm_head().transpose();
    next_pos_ += n;
    const auto t1 = std::chrono::steady_clock::now();
    stats_.forward_seconds += std::chrono::duration<double>(t1 - t0).count();

    if (hook_) {
      step_input in;
      infokv::step_signals& sig = in.signals;
      sig.num_tokens = n;
      if (want_queries) sig.queries = sig_queries_;
      if (want_prerope) sig.prerope_queries = sig_prerope_;
      if (want_hidden) sig.hidden_states = sig_hidden_;
      if (want_logits) sig.logits = std::span<const float>(logits_.data(), static_cast<std::size_t>(logits_.size()));
      if (rows_whole) {
        sig.attention = sig_attention_;
        sig.attention_stride = stride;
      }
      attention_row_source rows;
      if (rows_later) {
        rows.layers = L;
        rows.q_heads = Hq;
        rows.group_size = G;
        rows.stride = stride;
        rows.byte_cap = attention_row_bytes_;
        rows.fill = [this, &v, first_pos, n](std::size_t first, std::size_t last, std::size_t row_stride, float* out) {
          attention_rows(v, first_pos, n, first, last, row_stride, out);
        };
        in.rows = &rows;
      }
      finish(hook_->run(v, in, kind));
      stats_.library_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    }
    if (!all_logits && every_row) {
      last_row_ = logits_.bottomRows(1);
      return last_row_;
    }
    return logits_;
  }

  [[nodiscard]] std::size_t position() const noexcept { return next_pos_; }
  [[nodiscard]] compression_hook* hook() noexcept { return hook_.get(); }
  [[nodiscard]] const cache_type& cache() const noexcept { return cache_; }
  [[nodiscard]] const session_stats& stats() const noexcept { return stats_; }
  [[nodiscard]] const compression_hook* hook() const noexcept { return hook_.get(); }

 private:
  // RoPE frequencies and the signals the hook asks for (both constructors).
  void init() {
    inv_freq_.resize(c_.head_dim / 2);
    for (std::size_t i = 0; i < c_.head_dim / 2; ++i)
      inv_freq_[i] = std::pow(c_.rope_theta, -2.0 * static_cast<double>(i) / static_cast<double>(c_.head_dim));
    if (hook_) needs_ = hook_->required();
  }
  void finish(const infokv::status& st) {
    if (!st.ok())
      throw std::runtime_error("infokv: " + std::string(st.message()) + " (detail " + std::to_string(st.detail()) + ")");
    const infokv::eviction_event& e = hook_->last_event();
    if (e.evicted) {
      ++stats_.evictions;
      stats_.pages_freed += e.pages_freed;
      cache_.sync();
    }
  }
  void rms_norm(const row_matrix& x, const vector& w, row_matrix& out) const {
    out.resize(x.rows(), x.cols());
    for (Eigen::Index r = 0; r < x.rows(); ++r) {
      const float ms = x.row(r).squaredNorm() / static_cast<float>(x.cols());
      const float inv = 1.0f / std::sqrt(ms + static_cast<float>(c_.rms_eps));
      out.row(r) = x.row(r).cwiseProduct(w.transpose()) * inv;
    }
  }
  // Rotates adjacent pairs (x[2i], x[2i+1]) of every head by pos * theta^(-2i/D) (the pairing
  // llama.cpp's GGUF conversion of Llama weights expects).
  void rope(row_matrix& x, std::size_t heads, std::int32_t first_pos) const {
    const std::size_t D = c_.head_dim;
    for (Eigen::Index r = 0; r < x.rows(); ++r) {
      const double pos = static_cast<double>(first_pos + static_cast<std::int32_t>(r));
      for (std::size_t i = 0; i < D / 2; ++i) {
        const double a = pos * inv_freq_[i];
        const auto cs = static_cast<float>(std::cos(a)), sn = static_cast<float>(std::sin(a));
        for (std::size_t h = 0; h < heads; ++h) {
          float* p = x.data() + r * x.cols() + static_cast<Eigen::Index>(h * D + 2 * i);
          const float x0 = p[0], x1 = p[1];
          p[0] = x0 * cs - x1 * sn;
          p[1] = x0 * sn + x1 * cs;
        }
      }
    }
  }
  // Softmax attention of the step's new queries [j0, j0 + m) (query j sits at first_pos + j) of the
  // G query heads of KV head h in layer l over the stream's slots, page by page through the view,
  // keys newer than a query (by position) masked. q: the layer's post-RoPE queries [n][Hq][D].
  // Out: p [m * G][T], row (j - j0, g); qh is scratch. The forward pass and the rows computed
  // again for a piece run exactly this, so a piece's rows are the whole step's, bit for bit
  // (attention_piece_bounds says where pieces may start for that).
  void probabilities(const view_type& v, std::size_t l, std::size_t h, const float* q, std::size_t j0, std::size_t m,
                     std::size_t G, std::int32_t first_pos, row_matrix& qh, row_matrix& p) const {
    const std::size_t D = c_.head_dim, Hq = c_.heads;
    const std::size_t s = v.stream_index(0, l, h);
    const auto sv = v.stream(s, l);
    const std::size_t T = sv.num_tokens(), ps = v.page_size();
    const std::size_t hh = v.heads_per_page() == 1 ? 0 : h;
    const auto* pos = v.domain_positions(v.stream_domain(s));
    using map_type = Eigen::Map<const row_matrix, 0, Eigen::OuterStride<>>;
    const Eigen::Index row_stride = static_cast<Eigen::Index>(D);  // HND: a head's rows are contiguous
    // Q for this KV head: [m * G][D], row (j, g).
    qh.resize(static_cast<Eigen::Index>(m * G), static_cast<Eigen::Index>(D));
    for (std::size_t j = 0; j < m; ++j)
      for (std::size_t g = 0; g < G; ++g)
        qh.row(static_cast<Eigen::Index>(j * G + g)) =
            Eigen::Map<const Eigen::RowVectorXf>(q + ((j0 + j) * Hq + h * G + g) * D, static_cast<Eigen::Index>(D));
    p.resize(static_cast<Eigen::Index>(m * G), static_cast<Eigen::Index>(T));
    const float scale = 1.0f / std::sqrt(static_cast<float>(D));
    for (std::size_t p0 = 0; p0 < T; p0 += ps) {
      const std::size_t rows = std::min(ps, T - p0);
      const map_type K(sv.key(p0, hh), static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(D), Eigen::OuterStride<>(row_stride));
      p.middleCols(static_cast<Eigen::Index>(p0), static_cast<Eigen::Index>(rows)).noalias() = (qh * K.transpose()) * scale;
    }
    // Causal mask by position, then softmax per row.
    const std::int32_t first = first_pos + static_cast<std::int32_t>(j0);
    for (std::size_t i = 0; i < T; ++i) {
      const std::int32_t kp = pos[v.stream_page(s, i / ps) * ps + i % ps];
      if (kp <= first) continue;  // visible to every query of the range
      for (std::size_t j = 0; j < m; ++j)
        if (kp > first + static_cast<std::int32_t>(j))
          for (std::size_t g = 0; g < G; ++g) p(static_cast<Eigen::Index>(j * G + g), static_cast<Eigen::Index>(i)) = -std::numeric_limits<float>::infinity();
    }
    for (Eigen::Index r = 0; r < p.rows(); ++r) {
      const float mx = p.row(r).maxCoeff();
      p.row(r) = (p.row(r).array() - mx).exp();
      p.row(r) /= p.row(r).sum();
    }
  }
  // Attention of the n new queries of the G query heads of KV head h over the stream's slots;
  // with attention_rows, also their probabilities (rows of `stride` floats).
  void attend(const view_type& v, std::size_t l, std::size_t h, std::size_t n, std::size_t G, std::int32_t first_pos,
              float* attention_rows, std::size_t stride) {
    const std::size_t D = c_.head_dim, Hq = c_.heads;
    const std::size_t s = v.stream_index(0, l, h);
    const auto sv = v.stream(s, l);
    const std::size_t T = sv.num_tokens(), ps = v.page_size();
    const std::size_t hh = v.heads_per_page() == 1 ? 0 : h;
    using map_type = Eigen::Map<const row_matrix, 0, Eigen::OuterStride<>>;
    const Eigen::Index row_stride = static_cast<Eigen::Index>(D);
    probabilities(v, l, h, q_.data(), 0, n, G, first_pos, qh_, scores_);
    if (attention_rows != nullptr)
      for (std::size_t j = 0; j < n; ++j)
        for (std::size_t g = 0; g < G; ++g)
          std::copy_n(scores_.row(static_cast<Eigen::Index>(j * G + g)).data(), T,
                      attention_rows + (j * Hq + h * G + g) * stride);
    out_.setZero(static_cast<Eigen::Index>(n * G), static_cast<Eigen::Index>(D));
    for (std::size_t p0 = 0; p0 < T; p0 += ps) {
      const std::size_t rows = std::min(ps, T - p0);
      const map_type V(sv.value(p0, hh), static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(D), Eigen::OuterStride<>(row_stride));
      out_.noalias() += scores_.middleCols(static_cast<Eigen::Index>(p0), static_cast<Eigen::Index>(rows)) * V;
    }
    for (std::size_t j = 0; j < n; ++j)
      for (std::size_t g = 0; g < G; ++g)
        attn_.block(static_cast<Eigen::Index>(j), static_cast<Eigen::Index>((h * G + g) * D), 1, static_cast<Eigen::Index>(D)) =
            out_.row(static_cast<Eigen::Index>(j * G + g));
  }
  // The rows of new tokens [first, last) of the step of n tokens just run (the hook asks for
  // them piece by piece; the cache still holds exactly what the pass left), for every layer and
  // query head, as [L][last - first][Hq][stride]: each row spans the stream's slots up to the
  // piece's end (the newest n - last slots, masked for these queries, are left out).
  void attention_rows(const view_type& v, std::int32_t first_pos, std::size_t n, std::size_t first, std::size_t last,
                      std::size_t stride, float* out) {
    const std::size_t L = c_.layers, Hq = c_.heads, Hkv = c_.kv_heads, D = c_.head_dim, G = Hq / Hkv;
    const std::size_t m = last - first;
    for (std::size_t l = 0; l < L; ++l)
      for (std::size_t h = 0; h < Hkv; ++h) {
        probabilities(v, l, h, sig_queries_.data() + l * n * Hq * D, first, m, G, first_pos, piece_qh_, piece_p_);
        const std::size_t span = v.stream_length(v.stream_index(0, l, h)) - (n - last);
        for (std::size_t j = 0; j < m; ++j)
          for (std::size_t g = 0; g < G; ++g)
            std::copy_n(piece_p_.row(static_cast<Eigen::Index>(j * G + g)).data(), span,
                        out + ((l * m + j) * Hq + h * G + g) * stride);
      }
  }

  const llama_model& m_;
  llama_config c_;
  cache_type cache_;
  std::unique_ptr<compression_hook> hook_;
  infokv::signal_set needs_{};
  std::vector<double> inv_freq_;
  std::size_t next_pos_ = 0;
  session_stats stats_;
  std::size_t attention_row_bytes_ = default_attention_row_bytes;
  row_matrix x_, xn_, q_, k_, vv_, attn_, gate_, up_, logits_, last_row_, qh_, scores_, out_, piece_qh_, piece_p_;
  std::vector<float> sig_queries_, sig_prerope_, sig_hidden_, sig_attention_;
};

}  // namespace engine
