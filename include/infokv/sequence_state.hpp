// SPDX-License-Identifier: Apache-2.0
// What the library remembers about one sequence between steps: per stream and per cached token
// its position, entropy, evolution distances and accumulated attention (kept in the same slot
// order as the cache, moved by every compaction); the query window ring; running pre-RoPE query
// statistics; and every buffer an eviction needs, allocated once at construction so that
// compress() never allocates. Created by compressor::make_state(). One state per sequence; a
// state is used by one thread at a time.
#pragma once

#include <cstddef>
#include <cstring>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "infokv/config.hpp"
#include "infokv/model_shape.hpp"
#include "infokv/policy/eviction_plan.hpp"
#include "infokv/signals.hpp"
#include "infokv/view/granularity.hpp"

INFOKV_BEGIN_NAMESPACE

/// What the last compress() call did.
struct eviction_event {
  bool evicted = false;
  std::size_t tokens_before = 0;  // summed over the sequence's streams
  std::size_t tokens_after = 0;
  std::size_t pages_freed = 0;
  friend bool operator==(const eviction_event&, const eviction_event&) = default;
};

class sequence_state {
 public:
  sequence_state() = default;

  /// Tokens this sequence has seen (the position the next token gets).
  [[nodiscard]] std::size_t tokens_seen() const noexcept { return seen_; }
  [[nodiscard]] std::size_t num_streams() const noexcept { return streams_; }
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] std::size_t length(std::size_t stream) const noexcept { return length_[stream]; }
  [[nodiscard]] std::size_t evictions() const noexcept { return evictions_; }
  [[nodiscard]] const eviction_event& last_event() const noexcept { return last_event_; }
  [[nodiscard]] const std::int32_t* positions(std::size_t stream) const noexcept {
    return positions_.data() + stream * capacity_;
  }
  [[nodiscard]] const float* entropies(std::size_t stream) const noexcept {
    return entropy_.empty() ? nullptr : entropy_.data() + stream * capacity_;
  }
  /// The plan of the last eviction (empty when the last call evicted nothing).
  [[nodiscard]] eviction_plan last_plan() const noexcept {
    if (!last_event_.evicted) return {};
    return {std::span<const stream_plan>(plan_streams_.data(), plan_stream_count_),
            std::span<const std::uint32_t>(plan_keep_.data(), plan_keep_count_),
            std::span<const slot_move>(plan_moves_.data(), plan_move_count_),
            std::span<const freed_page>(plan_freed_.data(), plan_freed_count_)};
  }
  /// Equal states behave identically from here on (used by tests of the no-change guarantee).
  /// Bitwise: float members compare by their bytes, so a NaN left in a scratch buffer by an
  /// earlier eviction still equals itself. The page-check bitmap is scratch and not compared.
  friend bool operator==(const sequence_state& a, const sequence_state& b) noexcept {
    return same(a.shape_, b.shape_) &&
           same(a.granularity_, b.granularity_) &&
           same(a.needs_, b.needs_) &&
           same(a.capacity_, b.capacity_) &&
           same(a.streams_, b.streams_) &&
           same(a.layers_per_stream_, b.layers_per_stream_) &&
           same(a.heads_per_stream_, b.heads_per_stream_) &&
           same(a.seen_, b.seen_) &&
           same(a.steps_since_eviction_, b.steps_since_eviction_) &&
           same(a.evictions_, b.evictions_) &&
           same(a.pending_entropy_, b.pending_entropy_) &&
           same(a.last_event_, b.last_event_) &&
           same(a.length_, b.length_) &&
           same(a.positions_, b.positions_) &&
           same(a.entropy_, b.entropy_) &&
           same(a.evolution_, b.evolution_) &&
           same(a.accumulated_, b.accumulated_) &&
           same(a.window_q_, b.window_q_) &&
           same(a.window_pos_, b.window_pos_) &&
           same(a.window_count_, b.window_count_) &&
           same(a.window_next_, b.window_next_) &&
           same(a.query_sum_, b.query_sum_) &&
           same(a.query_outer_, b.query_outer_) &&
           same(a.query_count_, b.query_count_) &&
           same(a.layer_scores_, b.layer_scores_) &&
           same(a.stream_scores_, b.stream_scores_) &&
           same(a.reduce_tmp_, b.reduce_tmp_) &&
           same(a.scratch_, b.scratch_) &&
           same(a.order_, b.order_) &&
           same(a.rank_, b.rank_) &&
           same(a.select_scratch_, b.select_scratch_) &&
           same(a.rank_positions_, b.rank_positions_) &&
           same(a.keep_, b.keep_) &&
           same(a.new_length_, b.new_length_) &&
           same(a.layer_weights_, b.layer_weights_) &&
           same(a.apportion_scratch_, b.apportion_scratch_) &&
           same(a.bounds_, b.bounds_) &&
           same(a.vocab_scratch_, b.vocab_scratch_) &&
           same(a.plan_streams_, b.plan_streams_) &&
           same(a.plan_keep_, b.plan_keep_) &&
           same(a.plan_moves_, b.plan_moves_) &&
           same(a.plan_freed_, b.plan_freed_) &&
           same(a.plan_stream_count_, b.plan_stream_count_) &&
           same(a.plan_keep_count_, b.plan_keep_count_) &&
           same(a.plan_move_count_, b.plan_move_count_) &&
           same(a.plan_freed_count_, b.plan_freed_count_);
  }

  /// Bytes this state holds (grows with capacity, never with steps).
  [[nodiscard]] std::size_t memory_bytes() const noexcept {
    return positions_.capacity() * 4 + entropy_.capacity() * 4 + evolution_.capacity() * 4 +
           accumulated_.capacity() * 4 + window_q_.capacity() * 4 + window_pos_.capacity() * 4 +
           query_sum_.capacity() * 8 + query_outer_.capacity() * 8 + layer_scores_.capacity() * 4 +
           stream_scores_.capacity() * 4 + reduce_tmp_.capacity() * 4 + scratch_.capacity() * 4 + order_.capacity() * 4 +
           rank_.capacity() * 4 + select_scratch_.capacity() * 4 + rank_positions_.capacity() * 4 + keep_.capacity() * 4 + plan_keep_.capacity() * 4 +
           plan_moves_.capacity() * sizeof(slot_move) + plan_freed_.capacity() * sizeof(freed_page) +
           plan_streams_.capacity() * sizeof(stream_plan) + vocab_scratch_.capacity() * 4 +
           bitmap_.words.capacity() * 8 + length_.capacity() * 8 + new_length_.capacity() * 8 +
           layer_weights_.capacity() * 8 + apportion_scratch_.capacity() * 8 + bounds_.capacity() * 8;
  }

 private:
  template <class Policy, class Isa>
  friend class compressor;

  template <class T>
  [[nodiscard]] static bool same(const std::vector<T>& x, const std::vector<T>& y) noexcept {
    static_assert(std::is_trivially_copyable_v<T>);
    return x.size() == y.size() && (x.empty() || std::memcmp(x.data(), y.data(), x.size() * sizeof(T)) == 0);
  }
  [[nodiscard]] static bool same(float x, float y) noexcept { return std::memcmp(&x, &y, sizeof x) == 0; }
  template <class T>
  [[nodiscard]] static bool same(const T& x, const T& y) noexcept {
    return x == y;
  }


  model_shape shape_{};
  stream_granularity granularity_ = stream_granularity::per_sequence;
  observation_needs needs_{};
  std::size_t capacity_ = 0;
  std::size_t streams_ = 0;
  std::size_t layers_per_stream_ = 1;
  std::size_t heads_per_stream_ = 1;

  std::size_t seen_ = 0;
  std::size_t steps_since_eviction_ = 0;
  std::size_t evictions_ = 0;
  float pending_entropy_ = 0.0f;
  eviction_event last_event_{};

  std::vector<std::size_t> length_;        // [streams]
  std::vector<std::int32_t> positions_;    // [streams][capacity]
  std::vector<float> entropy_;             // [streams][capacity]
  std::vector<float> evolution_;           // [streams][layers_per_stream][capacity]
  std::vector<float> accumulated_;         // [streams][layers_per_stream][heads_per_stream][capacity]

  std::vector<float> window_q_;            // [layers][window][q_heads][head_dim]
  std::vector<std::int32_t> window_pos_;   // [window]
  std::size_t window_count_ = 0;
  std::size_t window_next_ = 0;

  std::vector<double> query_sum_;          // [layers][q_heads][head_dim]
  std::vector<double> query_outer_;        // [layers][q_heads][head_dim][head_dim]
  std::size_t query_count_ = 0;

  // Eviction buffers.
  std::vector<float> layer_scores_;        // [kv_heads][capacity]: one stream-layer's scores
  std::vector<float> stream_scores_;       // [kv_heads][capacity]: reduced scores per stream
  std::vector<float> reduce_tmp_;          // [capacity]: one layer's head-mean scores
  std::vector<float> scratch_;             // policy scratch
  std::vector<std::uint32_t> order_;       // [kv_heads][capacity]: slots sorted by position
  std::vector<std::uint32_t> rank_;        // [kv_heads * capacity]: selection candidates
  std::vector<std::uint32_t> select_scratch_;  // top-k selection scratch
  std::vector<std::int32_t> rank_positions_;   // [kv_heads * capacity]: AdaKV's packed tie order
  std::vector<std::uint32_t> keep_;        // [kv_heads][capacity]: keep flags
  std::vector<std::size_t> new_length_;    // [streams]
  std::vector<double> layer_weights_;      // [streams]
  std::vector<double> apportion_scratch_;  // [streams]
  std::vector<std::size_t> bounds_;        // [3 * streams]: lo, hi, out of apportion
  std::vector<float> vocab_scratch_;       // [vocab] for top-k entropy
  // Page-uniqueness check scratch, sized on first use; not part of the state's value.
  struct scratch_words {
    std::vector<std::uint64_t> words;
    friend bool operator==(const scratch_words&, const scratch_words&) noexcept { return true; }
  } bitmap_;

  std::vector<stream_plan> plan_streams_;
  std::vector<std::uint32_t> plan_keep_;
  std::vector<slot_move> plan_moves_;
  std::vector<freed_page> plan_freed_;
  std::size_t plan_stream_count_ = 0, plan_keep_count_ = 0, plan_move_count_ = 0, plan_freed_count_ = 0;
};

INFOKV_END_NAMESPACE
