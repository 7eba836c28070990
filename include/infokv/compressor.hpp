// SPDX-License-Identifier: Apache-2.0
// compress(): the per-step entry point. Each decode step (or prefill chunk) the engine appends
// the new tokens' K/V to its paged cache and calls compress() with their signals. The library
// checks every input, records what the policy needs (observe, O(new tokens)), and when the
// sequence is over budget (+ slack) or every `interval` steps it scores every cached token,
// selects the keep set per stream (sinks and recent window protected, exact budgets), compacts
// the engine's pages in place (or returns the plan) and reports the freed pages.
//
// Guarantee: a call that returns an error leaves the pools, the page table and the sequence
// state exactly as they were. Thread safety: a compressor is immutable after construction and
// may be shared by threads; each sequence_state is used by one thread at a time; sequences whose
// streams share one CSR page table must not be compressed concurrently when evicting in place
// (compaction rewrites the table's indptr / indices after the compressed sequence). In
// apply_mode::plan_only the view is only read, so the sequences of one batch may be compressed
// concurrently, each with its own state, and their plans applied afterwards one at a time
// (tests/policy/concurrency_test.cpp, run under ThreadSanitizer in CI).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <type_traits>

#include "infokv/concepts.hpp"
#include "infokv/config.hpp"
#include "infokv/model_shape.hpp"
#include "infokv/policy/compaction.hpp"
#include "infokv/policy/eviction_plan.hpp"
#include "infokv/scorer/layer_context.hpp"
#include "infokv/select/budget.hpp"
#include "infokv/select/top_k.hpp"
#include "infokv/sequence_state.hpp"
#include "infokv/signals.hpp"
#include "infokv/simd/kernels.hpp"
#include "infokv/status.hpp"
#include "infokv/view/paged_kv_cache_view.hpp"
#include "infokv/view/validate.hpp"

INFOKV_BEGIN_NAMESPACE

struct compress_config {
  stream_granularity granularity = stream_granularity::per_sequence;
  budget decode_budget = budget::of_ratio(0.25);   // kept during decoding
  budget prefill_budget = budget::of_ratio(0.4);   // kept by compress_prefill
  std::size_t sink_tokens = 4;      // positions < sink_tokens always survive
  std::size_t recent_tokens = 64;   // the most recent tokens always survive (at least the window)
  std::size_t slack = 0;            // evict when a stream exceeds budget + slack ...
  std::size_t interval = 0;         // ... or every `interval` observed steps (0: off)
  schedule_params schedule{};
  apply_mode apply = apply_mode::in_place;
  std::size_t capacity = 0;         // most tokens a stream can hold between evictions
  rope_params rope{};               // the engine's RoPE; required by policies that rotate (needs().rope)
};

/// `Isa` picks the kernels at compile time (simd::native_isa follows the build's -m flags).
template <class Policy, class Isa = simd::native_isa>
class compressor {
 public:
  using isa_type = Isa;

  compressor(Policy policy, const compress_config& config, const model_shape& shape) noexcept
      : policy_(policy), config_(config), shape_(shape) {}

  [[nodiscard]] const Policy& policy() const noexcept { return policy_; }
  [[nodiscard]] const compress_config& config() const noexcept { return config_; }
  [[nodiscard]] const model_shape& shape() const noexcept { return shape_; }
  [[nodiscard]] observation_needs needs() const noexcept { return policy_.needs(); }
  /// The signals the engine must pass to every compress() call.
  [[nodiscard]] signal_set required_signals() const noexcept { return needs().signals(); }

  /// Tokens protected from eviction at the recent end (the recent window, at least the query
  /// window of the policy).
  [[nodiscard]] std::size_t protected_recent() const noexcept {
    return std::max(config_.recent_tokens, needs().window);
  }

  [[nodiscard]] budget_schedule effective_schedule() const noexcept {
    if (config_.schedule.kind != budget_schedule::policy_default) return config_.schedule.kind;
    if constexpr (requires { policy_.preferred_schedule; }) return policy_.preferred_schedule;
    return budget_schedule::uniform;
  }

  /// Checks the configuration against the model shape and the policy (no view needed).
  [[nodiscard]] status can_implement() const noexcept {
    INFOKV_TRY(shape_.check());
    INFOKV_TRY(check_parameters(policy_));
    const std::size_t prot = config_.sink_tokens + protected_recent();
    INFOKV_TRY(config_.decode_budget.check(prot));
    INFOKV_TRY(config_.prefill_budget.check(prot));
    if (config_.capacity == 0 || config_.capacity > 0x7fffffffu) return errc::invalid_config;
    // A stream must be able to grow past a token budget before it is evicted back to it.
    if (!config_.decode_budget.is_ratio() && config_.capacity <= config_.decode_budget.tokens)
      return errc::invalid_config;
    const auto n = needs();
    if (n.entropy_top_k != 0 && shape_.vocab_size == 0) return errc::shape_mismatch;
    if (n.evolution && shape_.hidden_size == 0) return errc::shape_mismatch;
    if (n.window > config_.capacity) return errc::invalid_config;
    if (n.query_stats && shape_.head_dim % 2 != 0) return errc::shape_mismatch;
    if (n.rope && !config_.rope.stated()) return errc::rope_not_stated;
    const auto sched = effective_schedule();
    if (sched == budget_schedule::adakv) {
      if (config_.granularity != stream_granularity::per_layer_head) return errc::unsupported_granularity;
      if (!(config_.schedule.adakv_floor >= 0.0 && config_.schedule.adakv_floor <= 1.0))
        return errc::invalid_config;
    }
    if ((sched == budget_schedule::pyramid || sched == budget_schedule::infokv_adaptive) &&
        config_.granularity == stream_granularity::per_sequence)
      return errc::unsupported_granularity;
    if (sched == budget_schedule::pyramid && !(config_.schedule.pyramid_beta >= 1.0)) return errc::invalid_config;
    return {};
  }

  /// A state for one sequence, with every buffer sized for config().capacity tokens per stream.
  [[nodiscard]] sequence_state make_state() const {
    sequence_state st;
    const auto n = needs();
    st.shape_ = shape_;
    st.granularity_ = config_.granularity;
    st.needs_ = n;
    st.capacity_ = config_.capacity;
    const std::size_t L = shape_.num_layers, H = shape_.num_kv_heads, C = config_.capacity;
    switch (config_.granularity) {
      case stream_granularity::per_sequence:
        st.streams_ = 1, st.layers_per_stream_ = L, st.heads_per_stream_ = H;
        break;
      case stream_granularity::per_layer:
        st.streams_ = L, st.layers_per_stream_ = 1, st.heads_per_stream_ = H;
        break;
      case stream_granularity::per_layer_head:
        st.streams_ = L * H, st.layers_per_stream_ = 1, st.heads_per_stream_ = 1;
        break;
    }
    const std::size_t S = st.streams_;
    st.length_.assign(S, 0);
    st.new_length_.assign(S, 0);
    st.positions_.assign(S * C, 0);
    if (n.entropy_top_k != 0) {
      st.entropy_.assign(S * C, 0.0f);
      st.vocab_scratch_.assign(shape_.vocab_size, 0.0f);
    }
    if (n.evolution) st.evolution_.assign(S * C * st.layers_per_stream_, 0.0f);
    if (n.attention) st.accumulated_.assign(S * C * st.layers_per_stream_ * st.heads_per_stream_, 0.0f);
    if (n.window != 0) {
      st.window_q_.assign(L * n.window * shape_.num_q_heads * shape_.head_dim, 0.0f);
      st.window_pos_.assign(n.window, 0);
    }
    if (n.query_stats) {
      st.query_sum_.assign(L * shape_.num_q_heads * shape_.head_dim, 0.0);
      if (n.query_covariance)
        st.query_outer_.assign(L * shape_.num_q_heads * shape_.head_dim * shape_.head_dim, 0.0);
    }
    st.layer_scores_.assign(H * C, 0.0f);
    st.stream_scores_.assign(H * C, 0.0f);
    st.reduce_tmp_.assign(C, 0.0f);
    st.scratch_.assign(policy_scratch_floats(C, shape_.head_dim, H, shape_.group_size() * std::max<std::size_t>(n.window, 1)), 0.0f);
    st.order_.assign(H * C, 0);
    st.rank_.assign(H * C, 0);
    st.select_scratch_.assign(select_scratch_words(H * C), 0);
    if (effective_schedule() == budget_schedule::adakv) st.rank_positions_.assign(H * C, 0);
    st.keep_.assign(H * C, 0);
    st.layer_weights_.assign(S, 0.0);
    st.apportion_scratch_.assign(S, 0.0);
    st.bounds_.assign(3 * S, 0);
    st.plan_streams_.resize(S);
    st.plan_keep_.resize(S * C);
    st.plan_moves_.resize(S * C);
    st.plan_freed_.resize(S * C);
    return st;
  }

  /// One decode step (or a chunk of tokens): check, observe, and evict when the decode budget's
  /// trigger fires. `seq` selects the sequence of the batch view.
  template <class T, class Layout, std::size_t HeadDim, class Index>
  [[nodiscard]] status compress(const paged_kv_cache_view<T, Layout, HeadDim, Index>& view, std::size_t seq,
                                sequence_state& st, const step_signals& sig) const noexcept {
    return step(view, seq, st, sig, false);
  }

  /// The paper's one-shot prompt compression: observe the prompt's signals (the whole prompt, or
  /// its last chunk after earlier chunks were passed to observe()), then evict to the prefill
  /// budget. Pass an empty step_signals{.num_tokens = 0} to evict without observing.
  template <class T, class Layout, std::size_t HeadDim, class Index>
  [[nodiscard]] status compress_prefill(const paged_kv_cache_view<T, Layout, HeadDim, Index>& view,
                                        std::size_t seq, sequence_state& st,
                                        const step_signals& sig) const noexcept {
    return step(view, seq, st, sig, true);
  }

  /// Records a chunk's signals without ever evicting (chunked prefill before compress_prefill).
  template <class T, class Layout, std::size_t HeadDim, class Index>
  [[nodiscard]] status observe(const paged_kv_cache_view<T, Layout, HeadDim, Index>& view, std::size_t seq,
                               sequence_state& st, const step_signals& sig) const noexcept {
    using view_t = paged_kv_cache_view<T, Layout, HeadDim, Index>;
    static_assert(eviction_policy<Policy, typename view_t::stream_view_type, Isa>,
                  "the policy does not score this view type (see the token_scorer concept)");
    INFOKV_TRY(check_call(view, seq, st, sig));
    record(view, seq, st, sig, false);
    st.last_event_ = {};
    return {};
  }

 private:
  template <class View>
  [[nodiscard]] std::size_t first_stream(const View& view, std::size_t seq) const noexcept {
    return seq * view.streams_per_sequence();
  }

  template <class View>
  [[nodiscard]] status check_call(const View& view, std::size_t seq, const sequence_state& st,
                                  const step_signals& sig) const noexcept {
    INFOKV_TRY(can_implement());
    INFOKV_TRY(validate_view_shape(view, shape_));
    if (view.granularity() != config_.granularity || st.granularity_ != config_.granularity ||
        st.streams_ != view.streams_per_sequence() || st.capacity_ != config_.capacity ||
        !(st.shape_ == shape_) || !(st.needs_ == needs()))
      return errc::shape_mismatch;  // also: a state made by a compressor of another shape or policy
    if constexpr (!layer_weighted_policy<Policy, typename View::stream_view_type, Isa>) {
      if (effective_schedule() == budget_schedule::infokv_adaptive) return errc::invalid_config;
    }
    if (seq >= view.num_sequences()) return {errc::shape_mismatch, detail::narrow_detail(seq)};
    const std::size_t s0 = first_stream(view, seq);
    INFOKV_TRY(validate_streams(view, s0, s0 + st.streams_));
    const std::size_t n = sig.num_tokens;
    for (std::size_t s = 0; s < st.streams_; ++s) {
      if (st.length_[s] + n > st.capacity_) return {errc::length_exceeds_capacity, detail::narrow_detail(s0 + s)};
      if (view.stream_length(s0 + s) != st.length_[s] + n) return {errc::length_mismatch, detail::narrow_detail(s0 + s)};
    }
    return check_signals(view, st, sig);
  }

  [[nodiscard]] static bool all_finite(std::span<const float> x) noexcept {
    return simd::all_finite(Isa{}, x.data(), x.size());
  }

  template <class View>
  [[nodiscard]] status check_signals(const View& view, const sequence_state& st,
                                     const step_signals& sig) const noexcept {
    const auto nd = st.needs_;
    const std::size_t n = sig.num_tokens;
    if (n == 0) return {};
    const std::size_t L = shape_.num_layers, Hq = shape_.num_q_heads, D = shape_.head_dim;
    if (nd.window != 0) {
      if (sig.queries.empty()) return {errc::missing_signal, static_cast<std::int32_t>(signal::queries)};
      if (sig.queries.size() != L * n * Hq * D) return errc::shape_mismatch;
      if (!all_finite(sig.queries)) return errc::non_finite_input;
    }
    if (nd.query_stats) {
      if (sig.prerope_queries.empty())
        return {errc::missing_signal, static_cast<std::int32_t>(signal::prerope_queries)};
      if (sig.prerope_queries.size() != L * n * Hq * D) return errc::shape_mismatch;
      if (!all_finite(sig.prerope_queries)) return errc::non_finite_input;
    }
    if (nd.evolution) {
      if (sig.hidden_states.empty())
        return {errc::missing_signal, static_cast<std::int32_t>(signal::hidden_states)};
      if (sig.hidden_states.size() != L * n * shape_.hidden_size) return errc::shape_mismatch;
      if (!all_finite(sig.hidden_states)) return errc::non_finite_input;
    }
    if (nd.entropy_top_k != 0) {
      if (!sig.logits.empty()) {
        if (sig.logits.size() != n * shape_.vocab_size) return errc::logits_size_mismatch;
        // -inf is a masked vocabulary entry (probability 0); NaN and +inf are errors.
        if (!simd::no_nan_or_pos_inf(Isa{}, sig.logits.data(), sig.logits.size())) return errc::non_finite_input;
      } else if (!sig.next_token_entropy.empty()) {
        if (sig.next_token_entropy.size() != n) return errc::shape_mismatch;
        for (float v : sig.next_token_entropy)
          if (!std::isfinite(v) || v < 0.0f) return errc::non_finite_input;
      } else {
        return {errc::missing_signal, static_cast<std::int32_t>(signal::token_entropy)};
      }
    }
    if (nd.attention) {
      if (sig.attention.empty()) return {errc::missing_signal, static_cast<std::int32_t>(signal::attention)};
      std::size_t max_len = 0;
      for (std::size_t s = 0; s < st.streams_; ++s) max_len = std::max(max_len, st.length_[s] + n);
      if (sig.attention_stride < max_len || sig.attention.size() != L * n * Hq * sig.attention_stride)
        return errc::shape_mismatch;
      if (!all_finite(sig.attention)) return errc::non_finite_input;
    }
    (void)view;
    return {};
  }

  /// Appends the new tokens' state. Only called after every check passed.
  template <class View>
  void record(const View& view, std::size_t seq, sequence_state& st, const step_signals& sig,
              bool decode_step) const noexcept {
    (void)view;
    (void)seq;
    const auto nd = st.needs_;
    const std::size_t n = sig.num_tokens;
    const std::size_t L = shape_.num_layers, Hq = shape_.num_q_heads, Hkv = shape_.num_kv_heads;
    const std::size_t D = shape_.head_dim, C = st.capacity_, S = st.streams_;
    const std::size_t Ls = st.layers_per_stream_, Hs = st.heads_per_stream_;
    const std::size_t G = shape_.group_size();
    const auto stream_layer = [&](std::size_t s, std::size_t local) {
      return st.granularity_ == stream_granularity::per_sequence ? local
             : st.granularity_ == stream_granularity::per_layer  ? s
                                                                  : s / Hkv;
    };
    const auto stream_head = [&](std::size_t s, std::size_t local) {
      return st.granularity_ == stream_granularity::per_layer_head ? s % Hkv : local;
    };
    for (std::size_t j = 0; j < n; ++j) {
      const std::size_t pos = st.seen_ + j;
      float ent = 0.0f;
      if (nd.entropy_top_k != 0) {
        ent = st.pending_entropy_;
        if (!sig.logits.empty())
          st.pending_entropy_ = simd::top_k_entropy(Isa{}, sig.logits.data() + j * shape_.vocab_size,
                                                    shape_.vocab_size, nd.entropy_top_k, st.vocab_scratch_.data());
        else
          st.pending_entropy_ = sig.next_token_entropy[j];
      }
      for (std::size_t s = 0; s < S; ++s) {
        const std::size_t slot = st.length_[s] + j;
        st.positions_[s * C + slot] = static_cast<std::int32_t>(pos);
        if (nd.entropy_top_k != 0) st.entropy_[s * C + slot] = ent;
        if (nd.evolution) {
          for (std::size_t a = 0; a < Ls; ++a) {
            const std::size_t l = stream_layer(s, a);
            const float* hl = sig.hidden_states.data() + (l * n + j) * shape_.hidden_size;
            const float* hL = sig.hidden_states.data() + ((L - 1) * n + j) * shape_.hidden_size;
            st.evolution_[(s * Ls + a) * C + slot] =
                l == L - 1 ? 0.0f : simd::cosine_distance(Isa{}, hl, hL, shape_.hidden_size);
          }
        }
        if (nd.attention)
          for (std::size_t r = 0; r < Ls * Hs; ++r) st.accumulated_[(s * Ls * Hs + r) * C + slot] = 0.0f;
      }
    }
    if (nd.attention) {
      // Row (l, j, q) covers the stream's slots [0, old_len + j]; mean over the GQA group.
      for (std::size_t s = 0; s < S; ++s)
        for (std::size_t a = 0; a < Ls; ++a)
          for (std::size_t hh = 0; hh < Hs; ++hh) {
            const std::size_t l = stream_layer(s, a), kvh = stream_head(s, hh);
            for (std::size_t j = 0; j < n; ++j) {
              const std::size_t visible = st.length_[s] + j + 1;
              float* acc = st.accumulated_.data() + ((s * Ls + a) * Hs + hh) * C;
              for (std::size_t g = 0; g < G; ++g) {
                const float* row =
                    sig.attention.data() + ((l * n + j) * Hq + kvh * G + g) * sig.attention_stride;
                simd::axpy(Isa{}, 1.0f / static_cast<float>(G), row, acc, visible);
              }
            }
          }
    }
    if (nd.window != 0) {
      const std::size_t w = nd.window;
      for (std::size_t j = (n > w ? n - w : 0); j < n; ++j) {
        const std::size_t r = st.window_next_;
        for (std::size_t l = 0; l < L; ++l)
          std::memcpy(st.window_q_.data() + ((l * w + r) * Hq) * D, sig.queries.data() + ((l * n + j) * Hq) * D,
                      Hq * D * sizeof(float));
        st.window_pos_[r] = static_cast<std::int32_t>(st.seen_ + j);
        st.window_next_ = (r + 1) % w;
        st.window_count_ = std::min(st.window_count_ + 1, w);
      }
    }
    if (nd.query_stats) {
      for (std::size_t j = 0; j < n; ++j) {
        if (st.seen_ + j < nd.query_stats_skip) continue;
        for (std::size_t l = 0; l < L; ++l)
          for (std::size_t q = 0; q < Hq; ++q) {
            const float* x = sig.prerope_queries.data() + ((l * n + j) * Hq + q) * D;
            double* sum = st.query_sum_.data() + (l * Hq + q) * D;
            for (std::size_t d = 0; d < D; ++d) sum[d] += x[d];
            if (nd.query_covariance) {
              double* outer = st.query_outer_.data() + (l * Hq + q) * D * D;
              for (std::size_t r = 0; r < D; ++r)
                for (std::size_t c = 0; c < D; ++c) outer[r * D + c] += static_cast<double>(x[r]) * x[c];
            }
          }
        ++st.query_count_;
      }
    }
    for (std::size_t s = 0; s < S; ++s) st.length_[s] += n;
    st.seen_ += n;
    if (decode_step) st.steps_since_eviction_ += n;  // the interval counts decode steps only
  }

  /// Tokens stream s keeps under the uniform budget b (never below its protected tokens).
  [[nodiscard]] std::size_t protected_count(const sequence_state& st, std::size_t s) const noexcept {
    std::size_t c = 0;
    for (std::size_t i = 0; i < st.length_[s]; ++i) c += is_protected(st, st.positions_[s * st.capacity_ + i]);
    return c;
  }
  [[nodiscard]] bool is_protected(const sequence_state& st, std::int32_t pos) const noexcept {
    const auto p = static_cast<std::size_t>(pos);
    const std::size_t recent = protected_recent();
    return p < config_.sink_tokens || p + recent >= st.seen_;
  }

  /// Does the call evict? Decided from lengths after the append, before anything changes.
  [[nodiscard]] bool should_evict(const sequence_state& st, std::size_t n, bool prefill) const noexcept {
    const budget& b = prefill ? config_.prefill_budget : config_.decode_budget;
    // A ratio budget below the protected tokens cannot evict anything: do not run a pass for it.
    const std::size_t keep = std::max(b.keep_for(st.seen_ + n), config_.sink_tokens + protected_recent());
    std::size_t total = 0;
    for (std::size_t s = 0; s < st.streams_; ++s) total += st.length_[s] + n;
    const std::size_t S = st.streams_;
    if (prefill) return total > S * keep;
    if (total > S * (keep + config_.slack)) return true;
    return config_.interval != 0 && st.steps_since_eviction_ + (prefill ? 0 : n) >= config_.interval &&
           total > S * keep;
  }

  template <class View>
  [[nodiscard]] status step(const View& view, std::size_t seq, sequence_state& st, const step_signals& sig,
                            bool prefill) const noexcept {
    static_assert(eviction_policy<Policy, typename View::stream_view_type, Isa>,
                  "the policy does not score this view type (see the token_scorer concept)");
    INFOKV_TRY(check_call(view, seq, st, sig));
    const bool evict = should_evict(st, sig.num_tokens, prefill);
    if (evict) {
      // The only check that needs the whole batch: pages in range and never shared. It runs
      // before anything is written, so a bad table leaves cache and state untouched.
      const std::size_t words = page_bitmap_words(view);
      auto& bits = st.bitmap_.words;
      if (bits.size() < words) bits.resize(words);  // grows once per pool size
      INFOKV_TRY(validate_page_table(view, std::span<std::uint64_t>(bits.data(), words)));
    }
    record(view, seq, st, sig, !prefill);
    st.last_event_ = {};
    if (!evict) return {};
    st.steps_since_eviction_ = 0;
    return evict_now(view, seq, st, prefill ? config_.prefill_budget : config_.decode_budget);
  }

  /// The layer context of stream s (global index gs) in layer l.
  template <class View>
  [[nodiscard]] layer_context<typename View::stream_view_type, Isa> context(const View& view, sequence_state& st,
                                                                       std::size_t s, std::size_t gs,
                                                                       std::size_t l, std::size_t local_layer,
                                                                       std::size_t num_candidates,
                                                                       const std::uint32_t* order) const noexcept {
    layer_context<typename View::stream_view_type, Isa> ctx;
    const std::size_t C = st.capacity_, Ls = st.layers_per_stream_, Hs = st.heads_per_stream_;
    ctx.kv = view.stream(gs, l);
    ctx.layer = l;
    ctx.num_layers = shape_.num_layers;
    ctx.kv_head_offset = view.stream_head(gs);
    ctx.group_size = shape_.group_size();
    ctx.num_q_heads = shape_.num_q_heads;
    ctx.positions = st.positions_.data() + s * C;
    if (!st.entropy_.empty()) ctx.entropy = st.entropy_.data() + s * C;
    if (!st.evolution_.empty()) ctx.evolution = st.evolution_.data() + (s * Ls + local_layer) * C;
    if (!st.accumulated_.empty()) {
      ctx.accumulated = st.accumulated_.data() + (s * Ls + local_layer) * Hs * C;
      ctx.accumulated_stride = C;
    }
    ctx.order = order;
    ctx.num_candidates = num_candidates;
    const std::size_t w = st.needs_.window;
    if (w != 0) {
      ctx.window_queries = st.window_q_.data() + l * w * shape_.num_q_heads * shape_.head_dim;
      ctx.window_positions = st.window_pos_.data();
      ctx.window_count = st.window_count_;
      ctx.newest_query = (st.window_next_ + w - 1) % w;
    }
    if (!st.query_sum_.empty()) {
      ctx.query_sum = st.query_sum_.data() + l * shape_.num_q_heads * shape_.head_dim;
      if (!st.query_outer_.empty())
        ctx.query_outer = st.query_outer_.data() + l * shape_.num_q_heads * shape_.head_dim * shape_.head_dim;
      ctx.query_count = st.query_count_;
    }
    ctx.rope = config_.rope;
    ctx.next_position = st.seen_;
    ctx.eviction_index = st.evictions_;
    ctx.scratch = std::span<float>(st.scratch_);
    return ctx;
  }

  /// Sorts stream s's slots by position into order[], returns the number of candidates (tokens
  /// older than the query window).
  [[nodiscard]] std::size_t sort_by_position(const sequence_state& st, std::size_t s,
                                             std::uint32_t* order) const noexcept {
    const std::size_t T = st.length_[s];
    const std::int32_t* pos = st.positions_.data() + s * st.capacity_;
    for (std::size_t i = 0; i < T; ++i) order[i] = static_cast<std::uint32_t>(i);
    std::sort(order, order + T, [&](std::uint32_t a, std::uint32_t b) { return pos[a] < pos[b]; });
    const std::size_t w = st.needs_.window == 0 ? 0 : st.window_count_;
    const std::size_t window_start = st.seen_ - std::min(w, st.seen_);
    std::size_t nc = 0;
    while (nc < T && static_cast<std::size_t>(pos[order[nc]]) < window_start) ++nc;
    return nc;
  }

  /// Scores stream s into row[] (one reduced score per slot): mean over the stream's heads, and
  /// for per_sequence streams the mean over layers of L1-normalised layer scores. For adakv
  /// (per-head streams) the row is the head's own score.
  template <class View>
  [[nodiscard]] status score_stream(const View& view, sequence_state& st, std::size_t s, std::size_t gs,
                                    const std::uint32_t* order, std::size_t nc, float* row) const noexcept {
    const std::size_t T = st.length_[s];
    const std::size_t Ls = st.layers_per_stream_;
    const std::size_t heads = view.heads_per_page();
    std::fill(row, row + T, 0.0f);
    for (std::size_t a = 0; a < Ls; ++a) {
      const std::size_t l = Ls == 1 ? view.stream_layer(gs) : a;
      auto ctx = context(view, st, s, gs, l, a, nc, order);
      score_matrix out{st.layer_scores_.data(), heads, T};
      INFOKV_TRY(policy_.score(ctx, out));
      double l1 = 0.0;
      for (std::size_t i = 0; i < T; ++i) {
        float m = 0.0f;
        for (std::size_t h = 0; h < heads; ++h) m += out(h, i);
        m /= static_cast<float>(heads);
        st.reduce_tmp_[i] = m;  // this layer's head-mean
        if (std::isfinite(m)) l1 += std::fabs(static_cast<double>(m));
      }
      const float scale = (Ls > 1 && l1 > 0.0) ? static_cast<float>(1.0 / l1) : 1.0f;
      for (std::size_t i = 0; i < T; ++i) row[i] += st.reduce_tmp_[i] * scale;
    }
    if (Ls > 1)
      for (std::size_t i = 0; i < T; ++i) row[i] /= static_cast<float>(Ls);
    return {};
  }

  template <class View>
  [[nodiscard]] status evict_now(const View& view, std::size_t seq, sequence_state& st, const budget& b) const noexcept {
    const std::size_t S = st.streams_;
    const std::size_t s0 = first_stream(view, seq);
    const std::size_t keep_b = b.keep_for(st.seen_);
    const auto sched = effective_schedule();
    std::size_t* lo = st.bounds_.data();
    std::size_t* hi = lo + S;
    std::size_t* target = hi + S;
    std::size_t total_before = 0;
    for (std::size_t s = 0; s < S; ++s) {
      lo[s] = protected_count(st, s);
      hi[s] = st.length_[s];
      target[s] = std::min(hi[s], std::max(keep_b, lo[s]));
      total_before += st.length_[s];
    }
    st.plan_stream_count_ = st.plan_keep_count_ = st.plan_move_count_ = st.plan_freed_count_ = 0;
    const std::size_t Hkv = shape_.num_kv_heads;
    if (sched == budget_schedule::adakv) {
      // Per layer: the H head-streams of the layer share H * budget tokens.
      for (std::size_t l = 0; l < shape_.num_layers; ++l)
        INFOKV_TRY(select_adakv(view, st, s0, l * Hkv, Hkv, keep_b));
    } else {
      if (sched == budget_schedule::pyramid || sched == budget_schedule::infokv_adaptive) {
        double* weights = st.layer_weights_.data();
        // The sequence keeps S * budget tokens in total, within what its streams can hold.
        std::size_t sum_lo = 0, sum_hi = 0;
        for (std::size_t s = 0; s < S; ++s) sum_lo += lo[s], sum_hi += hi[s];
        const std::size_t total = std::clamp(S * keep_b, sum_lo, sum_hi);
        if (sched == budget_schedule::pyramid) {
          std::size_t T = 0;
          for (std::size_t s = 0; s < S; ++s) T = std::max(T, st.length_[s]);
          // Per-layer budgets; the apportioning keeps them proportional and the total exact.
          pyramid_budgets(shape_.num_layers, T, keep_b, protected_recent(), config_.schedule.pyramid_beta,
                          std::span<double>(st.apportion_scratch_.data(), shape_.num_layers));
          for (std::size_t s = 0; s < S; ++s) weights[s] = st.apportion_scratch_[view.stream_layer(s0 + s)];
        } else {
          if constexpr (layer_weighted_policy<Policy, typename View::stream_view_type, Isa>) {
            for (std::size_t s = 0; s < S; ++s) {
              std::uint32_t* order = st.order_.data();
              const std::size_t nc = sort_by_position(st, s, order);
              auto ctx = context(view, st, s, s0 + s, view.stream_layer(s0 + s), 0, nc, order);
              weights[s] = policy_.layer_weight(ctx);
            }
          } else {
            return errc::invalid_config;  // the policy has no layer weights (InfoKV-adaptive only)
          }
        }
        INFOKV_TRY(apportion(std::span<const double>(weights, S), total, std::span<const std::size_t>(lo, S),
                             std::span<const std::size_t>(hi, S), std::span<std::size_t>(target, S),
                             std::span<double>(st.apportion_scratch_.data(), S)));
      }
      for (std::size_t s = 0; s < S; ++s) {
        std::uint32_t* order = st.order_.data();
        const std::size_t nc = sort_by_position(st, s, order);
        float* row = st.stream_scores_.data();
        INFOKV_TRY(score_stream(view, st, s, s0 + s, order, nc, row));
        select_stream(st, s, row, target[s], st.keep_.data());
        record_plan(view, st, s, s0 + s, st.keep_.data());
      }
    }
    apply(view, seq, st);
    std::size_t total_after = 0;
    for (std::size_t s = 0; s < S; ++s) total_after += st.length_[s];
    st.last_event_ = {true, total_before, total_after, st.plan_freed_count_};
    ++st.evictions_;
    return {};
  }

  /// Marks keep[i] = 1 for the `target` best slots of stream s (protected first).
  void select_stream(sequence_state& st, std::size_t s, float* row, std::size_t target,
                     std::uint32_t* keep) const noexcept {
    const std::size_t T = st.length_[s];
    const std::int32_t* pos = st.positions_.data() + s * st.capacity_;
    for (std::size_t i = 0; i < T; ++i) {
      if (is_protected(st, pos[i]))
        row[i] = std::numeric_limits<float>::infinity();
      else if (row[i] > std::numeric_limits<float>::max())
        row[i] = std::numeric_limits<float>::max();  // only protected tokens rank at +inf
    }
    std::uint32_t* idx = st.rank_.data();
    select_top_k(Isa{}, std::span<const float>(row, T), std::span<const std::int32_t>(pos, T), target,
                 std::span<std::uint32_t>(idx, T), std::span<std::uint32_t>(st.select_scratch_));
    std::fill(keep, keep + T, 0u);
    for (std::size_t i = 0; i < target; ++i) keep[idx[i]] = 1u;
  }

  /// AdaKV: the head-streams [first, first + H) of one layer keep H * b tokens together, each
  /// head first keeping its own top floor * b.
  template <class View>
  [[nodiscard]] status select_adakv(const View& view, sequence_state& st, std::size_t s0, std::size_t first,
                                    std::size_t H, std::size_t b) const noexcept {
    const std::size_t C = st.capacity_;
    const auto n_safe = static_cast<std::size_t>(static_cast<double>(b) * config_.schedule.adakv_floor);
    std::size_t total_len = 0;
    for (std::size_t h = 0; h < H; ++h) total_len += st.length_[first + h];
    std::size_t total = std::min(total_len, H * b);
    // Score each head; protected and each head's top n_safe get +inf.
    for (std::size_t h = 0; h < H; ++h) {
      const std::size_t s = first + h;
      const std::size_t T = st.length_[s];
      std::uint32_t* order = st.order_.data() + h * C;
      const std::size_t nc = sort_by_position(st, s, order);
      float* row = st.stream_scores_.data() + h * C;
      INFOKV_TRY(score_stream(view, st, s, s0 + s, order, nc, row));
      for (std::size_t i = 0; i < T; ++i) row[i] = std::min(row[i], std::numeric_limits<float>::max());
      const std::int32_t* pos = st.positions_.data() + s * C;
      std::uint32_t* idx = st.rank_.data();
      const std::size_t safe = std::min(n_safe, T);
      select_top_k(Isa{}, std::span<const float>(row, T), std::span<const std::int32_t>(pos, T), safe,
                   std::span<std::uint32_t>(idx, T), std::span<std::uint32_t>(st.select_scratch_));
      for (std::size_t i = 0; i < safe; ++i) row[idx[i]] = std::numeric_limits<float>::infinity();
      for (std::size_t i = 0; i < T; ++i)
        if (is_protected(st, pos[i])) row[i] = std::numeric_limits<float>::infinity();
    }
    // Protected and safeguarded tokens always fit, even when they exceed H * b together.
    std::size_t must = 0;
    for (std::size_t h = 0; h < H; ++h)
      for (std::size_t i = 0; i < st.length_[first + h]; ++i)
        must += st.stream_scores_[h * C + i] == std::numeric_limits<float>::infinity();
    total = std::max(total, must);
    // Global top `total` over (head, slot), ties: newer position, then lower head. The rows are
    // flattened and the tie order packed into one rank (position * H + H - 1 - head) so the
    // fast per-stream selection applies; beyond int32 ranks the comparator path decides.
    std::size_t n = 0;
    std::uint32_t* cand = st.rank_.data();
    for (std::size_t h = 0; h < H; ++h)
      for (std::size_t i = 0; i < st.length_[first + h]; ++i) cand[n++] = static_cast<std::uint32_t>(h * C + i);
    std::uint32_t* chosen = st.order_.data();  // free again once every head is scored
    if (total < n && st.seen_ * H < 0x7fffffffu) {
      float* flat = st.layer_scores_.data();
      std::int32_t* rank = st.rank_positions_.data();
      for (std::size_t j = 0; j < n; ++j) {
        const std::size_t h = cand[j] / C, i = cand[j] % C;
        flat[j] = st.stream_scores_[cand[j]];
        rank[j] = static_cast<std::int32_t>(static_cast<std::size_t>(st.positions_[(first + h) * C + i]) * H + (H - 1 - h));
      }
      select_top_k(Isa{}, std::span<const float>(flat, n), std::span<const std::int32_t>(rank, n), total,
                   std::span<std::uint32_t>(chosen, n), std::span<std::uint32_t>(st.select_scratch_));
      for (std::size_t j = 0; j < total; ++j) chosen[j] = cand[chosen[j]];
    } else {
      const auto better = [&](std::uint32_t a, std::uint32_t c) {
        const float sa = sanitize(st.stream_scores_[a]), sc = sanitize(st.stream_scores_[c]);
        if (sa != sc) return sa > sc;
        const std::int32_t pa = st.positions_[(first + a / C) * C + a % C];
        const std::int32_t pc = st.positions_[(first + c / C) * C + c % C];
        if (pa != pc) return pa > pc;
        return a < c;
      };
      if (total < n) std::nth_element(cand, cand + total, cand + n, better);
      std::copy(cand, cand + std::min(total, n), chosen);
    }
    std::fill(st.keep_.begin(), st.keep_.begin() + static_cast<std::ptrdiff_t>(H * C), 0u);
    for (std::size_t i = 0; i < std::min(total, n); ++i) st.keep_[chosen[i]] = 1u;
    for (std::size_t h = 0; h < H; ++h) record_plan(view, st, first + h, s0 + first + h, st.keep_.data() + h * C);
    return {};
  }

  static float sanitize(float x) noexcept { return std::isnan(x) ? -std::numeric_limits<float>::infinity() : x; }

  /// Appends stream s's keep list, moves (holes in [0, n) filled from the tail) and freed pages
  /// to the plan. Nothing else changes until apply(), so a scorer failing on a later stream
  /// leaves the per-token state as the cache has it.
  template <class View>
  void record_plan(const View& view, sequence_state& st, std::size_t s, std::size_t gs,
                   const std::uint32_t* keep) const noexcept {
    const std::size_t T = st.length_[s];
    std::size_t n = 0;
    for (std::size_t i = 0; i < T; ++i) n += keep[i];
    stream_plan sp;
    sp.stream = static_cast<std::uint32_t>(gs);
    sp.old_length = static_cast<std::uint32_t>(T);
    sp.new_length = static_cast<std::uint32_t>(n);
    sp.keep_offset = static_cast<std::uint32_t>(st.plan_keep_count_);
    for (std::size_t i = 0; i < T; ++i)
      if (keep[i]) st.plan_keep_[st.plan_keep_count_++] = static_cast<std::uint32_t>(i);
    // Pair holes below n with survivors at or above n, both ascending.
    std::size_t hole = 0, tail = n;
    while (true) {
      while (hole < n && keep[hole]) ++hole;
      while (tail < T && !keep[tail]) ++tail;
      if (hole >= n || tail >= T) break;
      st.plan_moves_[st.plan_move_count_++] = {static_cast<std::uint32_t>(gs), static_cast<std::uint32_t>(tail),
                                               static_cast<std::uint32_t>(hole)};
      ++hole;
      ++tail;
    }
    const std::size_t ps = view.page_size();
    if (!view.dense()) {
      const std::size_t old_pages = (T + ps - 1) / ps, new_pages = (n + ps - 1) / ps;
      for (std::size_t p = new_pages; p < old_pages; ++p)
        st.plan_freed_[st.plan_freed_count_++] = {static_cast<std::uint32_t>(gs),
                                                  static_cast<std::int32_t>(view.stream_page(gs, p))};
    }
    st.plan_streams_[st.plan_stream_count_++] = sp;
    st.new_length_[s] = n;
  }

  static void move_state(sequence_state& st, std::size_t s, std::size_t src, std::size_t dst) noexcept {
    const std::size_t C = st.capacity_;
    st.positions_[s * C + dst] = st.positions_[s * C + src];
    if (!st.entropy_.empty()) st.entropy_[s * C + dst] = st.entropy_[s * C + src];
    const std::size_t Ls = st.layers_per_stream_, Hs = st.heads_per_stream_;
    if (!st.evolution_.empty())
      for (std::size_t a = 0; a < Ls; ++a) st.evolution_[(s * Ls + a) * C + dst] = st.evolution_[(s * Ls + a) * C + src];
    if (!st.accumulated_.empty())
      for (std::size_t r = 0; r < Ls * Hs; ++r)
        st.accumulated_[(s * Ls * Hs + r) * C + dst] = st.accumulated_[(s * Ls * Hs + r) * C + src];
  }

  /// Applies the recorded plan to the cache (in_place) and commits the new lengths to the state.
  template <class View>
  void apply(const View& view, std::size_t seq, sequence_state& st) const noexcept {
    const std::size_t s0 = first_stream(view, seq);
    st.last_event_.evicted = true;  // last_plan() reads the recorded plan
    if (config_.apply == apply_mode::in_place) apply_plan<Isa>(view, st.last_plan());
    for (std::size_t m = 0; m < st.plan_move_count_; ++m) {
      const slot_move& mv = st.plan_moves_[m];
      move_state(st, mv.stream - s0, mv.src, mv.dst);
    }
    for (std::size_t s = 0; s < st.streams_; ++s) st.length_[s] = st.new_length_[s];
  }

  Policy policy_;
  compress_config config_;
  model_shape shape_;
};

INFOKV_END_NAMESPACE
