// SPDX-License-Identifier: Apache-2.0
// compress(): the per-step entry point. Each decode step (or prefill chunk) the engine appends
// the new tokens' K/V to its paged cache and calls compress() with their signals. The library
// checks every input, records what the policy needs (observe, O(new tokens)), and when the
// sequence is over budget (+ slack) or every `interval` steps it scores every cached token,
// selects the keep set per stream (sinks and recent window protected, exact budgets), compacts
// the engine's pages in place (or returns the plan, or for a cell-addressed cache rewrites only
// its page table) and reports the freed pages.
//
// The compressor orchestrates; each stage lives in the folder named after it:
//   observe/  check the step's signals, record them into the sequence state
//   reduce/   a scorer's view of one stream in one layer; heads and layers reduced to one row
//   select/   per-stream targets (budget schedules) and keep sets (protection, AdaKV)
//   plan/     the eviction plan from keep flags; its application to cache and state
//
// Guarantee: a call that returns an error leaves the pools, the page table and the sequence
// state exactly as they were. Thread safety: a compressor is immutable after construction and
// may be shared by threads; each sequence_state is used by one thread at a time; sequences whose
// streams share one CSR page table must not be compressed concurrently when evicting in place
// (compaction, and apply_mode::reindex, rewrite the table's indptr / indices after the compressed
// sequence). In apply_mode::plan_only the view is only read, so the sequences of one batch may be
// compressed concurrently, each with its own state, and their plans applied afterwards one at a
// time (tests/policy/concurrency_test.cpp, run under ThreadSanitizer in CI).
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
#include "infokv/observe/check_signals.hpp"
#include "infokv/observe/record.hpp"
#include "infokv/plan/build_plan.hpp"
#include "infokv/plan/eviction_plan.hpp"
#include "infokv/reduce/score_stream.hpp"
#include "infokv/reduce/stream_context.hpp"
#include "infokv/rope.hpp"
#include "infokv/scorer/scratch.hpp"
#include "infokv/select/budget.hpp"
#include "infokv/select/keep_set.hpp"
#include "infokv/select/stream_targets.hpp"
#include "infokv/select/top_k.hpp"
#include "infokv/simd/kernels.hpp"
#include "infokv/sequence_state.hpp"
#include "infokv/signals.hpp"
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
    if (config_.apply != apply_mode::in_place && config_.apply != apply_mode::plan_only &&
        config_.apply != apply_mode::reindex)
      return errc::invalid_config;
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
    const std::size_t H = shape_.num_kv_heads, C = config_.capacity;
    state_layout lay;
    lay.shape = shape_;
    lay.granularity = config_.granularity;
    lay.needs = needs();
    lay.capacity = C;
    lay.scratch_floats = scratch_floats_of(policy_, scratch_shape{C, shape_.head_dim, H, shape_.group_size()});
    lay.select_words = select_scratch_words(H * C);
    lay.adakv = effective_schedule() == budget_schedule::adakv;
    return sequence_state(lay);
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
    observe_stage::record<Isa>(st.data(), sig, false);
    st.data().last_event = {};
    return {};
  }

 private:
  template <class View>
  [[nodiscard]] std::size_t first_stream(const View& view, std::size_t seq) const noexcept {
    return seq * view.streams_per_sequence();
  }

  [[nodiscard]] select_stage::protection protection() const noexcept {
    return {config_.sink_tokens, protected_recent()};
  }

  /// Everything a call checks before it changes anything.
  template <class View>
  [[nodiscard]] status check_call(const View& view, std::size_t seq, const sequence_state& st,
                                  const step_signals& sig) const noexcept {
    const detail::sequence_data& d = st.data();
    INFOKV_TRY(can_implement());
    // The ISA's OS state (AMX tiles) before anything is recorded: a refusal changes nothing.
    if (!simd::prepare(Isa{})) return errc::isa_not_permitted;
    INFOKV_TRY(validate_view_shape(view, shape_));
    if (config_.apply == apply_mode::reindex && (view.page_size() != 1 || view.dense()))
      return errc::unsupported_view;
    if (view.granularity() != config_.granularity || d.granularity != config_.granularity ||
        d.streams != view.streams_per_sequence() || d.capacity != config_.capacity || !(d.shape == shape_) ||
        !(d.needs == needs()))
      return errc::shape_mismatch;  // also: a state made by a compressor of another shape or policy
    if constexpr (!layer_weighted_policy<Policy, typename View::stream_view_type, Isa>) {
      if (effective_schedule() == budget_schedule::infokv_adaptive) return errc::invalid_config;
    }
    if (seq >= view.num_sequences()) return {errc::shape_mismatch, detail::narrow_detail(seq)};
    const std::size_t s0 = first_stream(view, seq);
    INFOKV_TRY(validate_streams(view, s0, s0 + d.streams));
    const std::size_t n = sig.num_tokens;
    for (std::size_t s = 0; s < d.streams; ++s) {
      if (d.length[s] + n > d.capacity) return {errc::length_exceeds_capacity, detail::narrow_detail(s0 + s)};
      if (view.stream_length(s0 + s) != d.length[s] + n) return {errc::length_mismatch, detail::narrow_detail(s0 + s)};
    }
    return observe_stage::check_signals<Isa>(shape_, d, sig);
  }

  /// Does the call evict? Decided from lengths after the append, before anything changes.
  [[nodiscard]] bool should_evict(const detail::sequence_data& d, std::size_t n, bool prefill) const noexcept {
    const budget& b = prefill ? config_.prefill_budget : config_.decode_budget;
    // A ratio budget below the protected tokens cannot evict anything: do not run a pass for it.
    const std::size_t keep = std::max(b.keep_for(d.seen + n), config_.sink_tokens + protected_recent());
    std::size_t total = 0;
    for (std::size_t s = 0; s < d.streams; ++s) total += d.length[s] + n;
    const std::size_t S = d.streams;
    if (prefill) return total > S * keep;
    if (total > S * (keep + config_.slack)) return true;
    return config_.interval != 0 && d.steps_since_eviction + n >= config_.interval && total > S * keep;
  }

  template <class View>
  [[nodiscard]] status step(const View& view, std::size_t seq, sequence_state& st, const step_signals& sig,
                            bool prefill) const noexcept {
    static_assert(eviction_policy<Policy, typename View::stream_view_type, Isa>,
                  "the policy does not score this view type (see the token_scorer concept)");
    INFOKV_TRY(check_call(view, seq, st, sig));
    detail::sequence_data& d = st.data();
    const bool evict = should_evict(d, sig.num_tokens, prefill);
    if (evict) {
      // The only check that needs the whole batch: pages in range and never shared. It runs
      // before anything is written, so a bad table leaves cache and state untouched.
      const std::size_t words = page_bitmap_words(view);
      auto& bits = d.page_bitmap;
      if (bits.size() < words) bits.resize(words);  // grows once per pool size
      INFOKV_TRY(validate_page_table(view, std::span<std::uint64_t>(bits.data(), words)));
    }
    observe_stage::record<Isa>(d, sig, !prefill);
    d.last_event = {};
    if (!evict) return {};
    d.steps_since_eviction = 0;
    return evict_now(view, seq, st, prefill ? config_.prefill_budget : config_.decode_budget);
  }

  /// Sorts stream s by position and scores it into row[] (reduce stage).
  template <class View>
  [[nodiscard]] status score_stream(const View& view, detail::sequence_data& d, std::size_t s0, std::size_t s,
                                    std::uint32_t* order, float* row) const noexcept {
    const std::size_t nc = reduce_stage::sort_by_position(d, s, order);
    return reduce_stage::score_stream<Isa>(policy_, view, d, config_.rope, s, s0 + s, order, nc, row);
  }

  /// Stream weights of the weighted schedules, into d.layer_weights.
  template <class View>
  [[nodiscard]] status stream_weights(const View& view, detail::sequence_data& d, std::size_t s0,
                                      std::size_t budget_tokens) const noexcept {
    const std::size_t S = d.streams;
    if (effective_schedule() == budget_schedule::pyramid) {
      std::size_t T = 0;
      for (std::size_t s = 0; s < S; ++s) T = std::max(T, d.length[s]);
      // Per-layer budgets; the apportioning keeps them proportional and the total exact.
      pyramid_budgets(shape_.num_layers, T, budget_tokens, protected_recent(), config_.schedule.pyramid_beta,
                      std::span<double>(d.apportion_scratch.data(), shape_.num_layers));
      for (std::size_t s = 0; s < S; ++s) d.layer_weights[s] = d.apportion_scratch[view.stream_layer(s0 + s)];
      return {};
    }
    if constexpr (layer_weighted_policy<Policy, typename View::stream_view_type, Isa>) {
      for (std::size_t s = 0; s < S; ++s) {
        std::uint32_t* order = d.order.data();
        const std::size_t nc = reduce_stage::sort_by_position(d, s, order);
        const auto ctx =
            reduce_stage::make_context<Isa>(view, d, config_.rope, s, s0 + s, view.stream_layer(s0 + s), 0, nc, order);
        d.layer_weights[s] = policy_.layer_weight(ctx);
      }
      return {};
    } else {
      return errc::invalid_config;  // the policy has no layer weights (InfoKV-adaptive only)
    }
  }

  /// One eviction: targets per stream, scores, keep sets, the plan, and its commit.
  template <class View>
  [[nodiscard]] status evict_now(const View& view, std::size_t seq, sequence_state& st, const budget& b) const noexcept {
    detail::sequence_data& d = st.data();
    const std::size_t S = d.streams;
    const std::size_t s0 = first_stream(view, seq);
    const std::size_t keep_b = b.keep_for(d.seen);
    const auto sched = effective_schedule();
    const auto prot = protection();
    const std::size_t total_before = select_stage::uniform_targets(d, prot, keep_b);
    plan_stage::clear(d);
    if (sched == budget_schedule::adakv) {
      // Per layer: the H head-streams of the layer share H * budget tokens.
      const std::size_t H = shape_.num_kv_heads;
      for (std::size_t l = 0; l < shape_.num_layers; ++l) {
        const auto score = [&](std::size_t s, std::uint32_t* order, float* row) {
          return score_stream(view, d, s0, s, order, row);
        };
        INFOKV_TRY(select_stage::keep_adakv<Isa>(d, prot, config_.schedule.adakv_floor, l * H, H, keep_b, score));
        for (std::size_t h = 0; h < H; ++h)
          plan_stage::add_stream(view, d, l * H + h, s0 + l * H + h, d.keep.data() + h * d.capacity, config_.apply);
      }
    } else {
      if (sched == budget_schedule::pyramid || sched == budget_schedule::infokv_adaptive) {
        INFOKV_TRY(stream_weights(view, d, s0, keep_b));
        INFOKV_TRY(select_stage::weighted_targets(d, keep_b));
      }
      for (std::size_t s = 0; s < S; ++s) {
        float* row = d.stream_scores.data();
        INFOKV_TRY(score_stream(view, d, s0, s, d.order.data(), row));
        select_stage::keep_best<Isa>(d, prot, s, row, select_stage::target_of(d, s), d.keep.data());
        plan_stage::add_stream(view, d, s, s0 + s, d.keep.data(), config_.apply);
      }
    }
    plan_stage::commit<Isa>(view, s0, st, config_.apply);
    std::size_t total_after = 0;
    for (std::size_t s = 0; s < S; ++s) total_after += d.length[s];
    d.last_event = {true, total_before, total_after, d.plan_freed_count};
    ++d.evictions;
    return {};
  }

  Policy policy_;
  compress_config config_;
  model_shape shape_;
};

INFOKV_END_NAMESPACE
