// SPDX-License-Identifier: Apache-2.0
// What the library remembers about one sequence between steps: per stream and per cached token
// its position, entropy, evolution distances and accumulated attention (kept in the same slot
// order as the cache, moved by every compaction); the query window ring; running pre-RoPE query
// statistics; and every buffer an eviction needs, allocated once at construction so that
// compress() never allocates. Created by compressor::make_state(). One state per sequence; a
// state is used by one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
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
  friend bool operator==(const sequence_state&, const sequence_state&) = default;

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
