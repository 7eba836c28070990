// SPDX-License-Identifier: Apache-2.0
// What the library remembers about one sequence between steps: per stream and per cached token
// its position, entropy, evolution distances and accumulated attention (kept in the same slot
// order as the cache, moved by every compaction); the query window ring; running pre-RoPE query
// statistics; and every buffer an eviction needs, allocated once at construction so that
// compress() never allocates. Created by compressor::make_state(). One state per sequence; a
// state is used by one thread at a time.
//
// The members live in detail::sequence_data, listed once (members()): the state's comparison
// and byte count are folds over that list, so a new member cannot be forgotten by either. The
// compressor's stages (observe/, reduce/, select/, plan/) work on the data through data();
// engines read a state through the accessors of sequence_state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <tuple>
#include <type_traits>
#include <vector>

#include "infokv/config.hpp"
#include "infokv/model_shape.hpp"
#include "infokv/plan/eviction_plan.hpp"
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

/// What a state is sized for: the model, how tokens form streams, what the policy records, the
/// most tokens a stream holds, the policy's and the selection's scratch, and whether AdaKV's
/// packed ranks are needed.
struct state_layout {
  model_shape shape{};
  stream_granularity granularity = stream_granularity::per_sequence;
  observation_needs needs{};
  std::size_t capacity = 0;
  std::size_t scratch_floats = 0;
  std::size_t select_words = 0;  // top-k selection scratch (select_scratch_words of kv_heads x capacity)
  bool adakv = false;
};

namespace detail {

/// Every member of a sequence's state. Public so that the compressor's stages can work on it.
struct sequence_data {
  model_shape shape{};
  stream_granularity granularity = stream_granularity::per_sequence;
  observation_needs needs{};
  std::size_t capacity = 0;
  std::size_t streams = 0;
  std::size_t layers_per_stream = 1;
  std::size_t heads_per_stream = 1;

  std::size_t seen = 0;                   // tokens observed (the next token's position)
  std::size_t steps_since_eviction = 0;   // decode steps since the last eviction
  std::size_t evictions = 0;
  float pending_entropy = 0.0f;           // entropy of the newest token's prediction, not yet cached
  eviction_event last_event{};

  // Per-token state, slot order, moved by every compaction.
  std::vector<std::size_t> length;        // [streams]
  std::vector<std::int32_t> positions;    // [streams][capacity]
  std::vector<float> entropy;             // [streams][capacity]
  std::vector<float> evolution;           // [streams][layers_per_stream][capacity]
  std::vector<float> accumulated;         // [streams][layers_per_stream][heads_per_stream][capacity]

  std::vector<float> window_q;            // [layers][window][q_heads][head_dim]
  std::vector<std::int32_t> window_pos;   // [window]
  std::size_t window_count = 0;
  std::size_t window_next = 0;

  std::vector<double> query_sum;          // [layers][q_heads][head_dim]
  std::vector<double> query_outer;        // [layers][q_heads][head_dim][head_dim]
  std::size_t query_count = 0;

  // Eviction buffers.
  std::vector<float> layer_scores;        // [kv_heads][capacity]: one stream-layer's scores
  std::vector<float> stream_scores;       // [kv_heads][capacity]: reduced scores per stream
  std::vector<float> reduce_tmp;          // [capacity]: one layer's head-mean scores
  std::vector<float> scratch;             // the policy's scratch_floats()
  std::vector<std::uint32_t> order;       // [kv_heads][capacity]: slots sorted by position
  std::vector<std::uint32_t> rank;        // [kv_heads * capacity]: selection candidates
  std::vector<std::uint32_t> select_scratch;  // top-k selection scratch
  std::vector<std::int32_t> rank_positions;   // [kv_heads * capacity]: AdaKV's packed tie order
  std::vector<std::uint32_t> keep;        // [kv_heads][capacity]: keep flags
  std::vector<std::size_t> new_length;    // [streams]
  std::vector<double> layer_weights;      // [streams]
  std::vector<double> apportion_scratch;  // [streams]
  std::vector<std::size_t> bounds;        // [3 * streams]: lo, hi, out of apportion
  std::vector<float> vocab_scratch;       // [vocab] for top-k entropy

  // The plan of the last eviction: the first *_count entries of each buffer.
  std::vector<stream_plan> plan_streams;  // [streams]
  std::vector<std::uint32_t> plan_keep;   // [streams][capacity]
  std::vector<slot_move> plan_moves;      // [streams][capacity / 2]: a stream moves at most half its slots
  std::vector<freed_page> plan_freed;     // [streams][capacity]
  std::size_t plan_stream_count = 0, plan_keep_count = 0, plan_move_count = 0, plan_freed_count = 0;

  // Page-uniqueness check scratch, sized on first use; not part of the state's value (outside
  // members(), counted by memory_bytes()).
  std::vector<std::uint64_t> page_bitmap;

  /// The state's value, as one list: comparison and byte count fold over it.
  template <class Self>
  static auto members(Self& d) noexcept {
    return std::tie(d.shape, d.granularity, d.needs, d.capacity, d.streams, d.layers_per_stream,
                    d.heads_per_stream, d.seen, d.steps_since_eviction, d.evictions, d.pending_entropy,
                    d.last_event, d.length, d.positions, d.entropy, d.evolution, d.accumulated, d.window_q,
                    d.window_pos, d.window_count, d.window_next, d.query_sum, d.query_outer, d.query_count,
                    d.layer_scores, d.stream_scores, d.reduce_tmp, d.scratch, d.order, d.rank, d.select_scratch,
                    d.rank_positions, d.keep, d.new_length, d.layer_weights, d.apportion_scratch, d.bounds,
                    d.vocab_scratch, d.plan_streams, d.plan_keep, d.plan_moves, d.plan_freed,
                    d.plan_stream_count, d.plan_keep_count, d.plan_move_count, d.plan_freed_count);
  }
};

/// Bitwise equality: floats compare by their bytes, so a NaN left in a scratch buffer by an
/// earlier eviction still equals itself.
template <class T>
[[nodiscard]] bool same_member(const std::vector<T>& x, const std::vector<T>& y) noexcept {
  static_assert(std::is_trivially_copyable_v<T>);
  return x.size() == y.size() && (x.empty() || std::memcmp(x.data(), y.data(), x.size() * sizeof(T)) == 0);
}
[[nodiscard]] inline bool same_member(float x, float y) noexcept { return std::memcmp(&x, &y, sizeof x) == 0; }
template <class T>
[[nodiscard]] bool same_member(const T& x, const T& y) noexcept {
  return x == y;
}

template <class T>
[[nodiscard]] std::size_t member_bytes(const std::vector<T>& x) noexcept {
  return x.capacity() * sizeof(T);
}
template <class T>
[[nodiscard]] std::size_t member_bytes(const T&) noexcept {
  return 0;  // scalars live in the state object itself
}

}  // namespace detail

class sequence_state {
 public:
  sequence_state() = default;
  /// Every buffer sized for `layout` here, so that compress() never allocates.
  explicit sequence_state(const state_layout& layout) { size_for(layout); }

  /// Tokens this sequence has seen (the position the next token gets).
  [[nodiscard]] std::size_t tokens_seen() const noexcept { return d_.seen; }
  [[nodiscard]] std::size_t num_streams() const noexcept { return d_.streams; }
  [[nodiscard]] std::size_t capacity() const noexcept { return d_.capacity; }
  [[nodiscard]] std::size_t length(std::size_t stream) const noexcept { return d_.length[stream]; }
  [[nodiscard]] std::size_t evictions() const noexcept { return d_.evictions; }
  [[nodiscard]] const eviction_event& last_event() const noexcept { return d_.last_event; }
  [[nodiscard]] const std::int32_t* positions(std::size_t stream) const noexcept {
    return d_.positions.data() + stream * d_.capacity;
  }
  [[nodiscard]] const float* entropies(std::size_t stream) const noexcept {
    return d_.entropy.empty() ? nullptr : d_.entropy.data() + stream * d_.capacity;
  }
  /// The plan of the last eviction (empty when the last call evicted nothing).
  [[nodiscard]] eviction_plan last_plan() const noexcept {
    if (!d_.last_event.evicted) return {};
    return {std::span<const stream_plan>(d_.plan_streams.data(), d_.plan_stream_count),
            std::span<const std::uint32_t>(d_.plan_keep.data(), d_.plan_keep_count),
            std::span<const slot_move>(d_.plan_moves.data(), d_.plan_move_count),
            std::span<const freed_page>(d_.plan_freed.data(), d_.plan_freed_count)};
  }

  /// Equal states behave identically from here on (used by tests of the no-change guarantee).
  /// Bitwise over every member of the list; the page-check bitmap is scratch and not compared.
  friend bool operator==(const sequence_state& a, const sequence_state& b) noexcept {
    return std::apply(
        [&](const auto&... x) {
          return std::apply([&](const auto&... y) { return (detail::same_member(x, y) && ...); },
                            detail::sequence_data::members(b.d_));
        },
        detail::sequence_data::members(a.d_));
  }

  /// Bytes this state holds on the heap (grows with capacity, never with steps).
  [[nodiscard]] std::size_t memory_bytes() const noexcept {
    const std::size_t listed =
        std::apply([](const auto&... x) { return (detail::member_bytes(x) + ...); }, detail::sequence_data::members(d_));
    return listed + detail::member_bytes(d_.page_bitmap);
  }

  /// Moves stream s's per-token state from slot src to slot dst (a compaction's slot move).
  void move_slot(std::size_t s, std::size_t src, std::size_t dst) noexcept {
    const std::size_t C = d_.capacity, Ls = d_.layers_per_stream, Hs = d_.heads_per_stream;
    d_.positions[s * C + dst] = d_.positions[s * C + src];
    if (!d_.entropy.empty()) d_.entropy[s * C + dst] = d_.entropy[s * C + src];
    if (!d_.evolution.empty())
      for (std::size_t a = 0; a < Ls; ++a) d_.evolution[(s * Ls + a) * C + dst] = d_.evolution[(s * Ls + a) * C + src];
    if (!d_.accumulated.empty())
      for (std::size_t r = 0; r < Ls * Hs; ++r)
        d_.accumulated[(s * Ls * Hs + r) * C + dst] = d_.accumulated[(s * Ls * Hs + r) * C + src];
  }

  /// The members, for the compressor's stages. Engines use the accessors above.
  [[nodiscard]] detail::sequence_data& data() noexcept { return d_; }
  [[nodiscard]] const detail::sequence_data& data() const noexcept { return d_; }

 private:
  void size_for(const state_layout& lay) {
    const model_shape& m = lay.shape;
    const observation_needs& n = lay.needs;
    d_.shape = m;
    d_.granularity = lay.granularity;
    d_.needs = n;
    d_.capacity = lay.capacity;
    const std::size_t L = m.num_layers, H = m.num_kv_heads, C = lay.capacity;
    switch (lay.granularity) {
      case stream_granularity::per_sequence:
        d_.streams = 1, d_.layers_per_stream = L, d_.heads_per_stream = H;
        break;
      case stream_granularity::per_layer:
        d_.streams = L, d_.layers_per_stream = 1, d_.heads_per_stream = H;
        break;
      case stream_granularity::per_layer_head:
        d_.streams = L * H, d_.layers_per_stream = 1, d_.heads_per_stream = 1;
        break;
    }
    const std::size_t S = d_.streams;
    d_.length.assign(S, 0);
    d_.new_length.assign(S, 0);
    d_.positions.assign(S * C, 0);
    if (n.entropy_top_k != 0) {
      d_.entropy.assign(S * C, 0.0f);
      d_.vocab_scratch.assign(m.vocab_size, 0.0f);
    }
    if (n.evolution) d_.evolution.assign(S * C * d_.layers_per_stream, 0.0f);
    if (n.attention) d_.accumulated.assign(S * C * d_.layers_per_stream * d_.heads_per_stream, 0.0f);
    if (n.window != 0) {
      d_.window_q.assign(L * n.window * m.num_q_heads * m.head_dim, 0.0f);
      d_.window_pos.assign(n.window, 0);
    }
    if (n.query_stats) {
      d_.query_sum.assign(L * m.num_q_heads * m.head_dim, 0.0);
      if (n.query_covariance) d_.query_outer.assign(L * m.num_q_heads * m.head_dim * m.head_dim, 0.0);
    }
    d_.layer_scores.assign(H * C, 0.0f);
    d_.stream_scores.assign(H * C, 0.0f);
    d_.reduce_tmp.assign(C, 0.0f);
    d_.scratch.assign(lay.scratch_floats, 0.0f);
    d_.order.assign(H * C, 0);
    d_.rank.assign(H * C, 0);
    d_.select_scratch.assign(lay.select_words, 0);
    if (lay.adakv) d_.rank_positions.assign(H * C, 0);
    d_.keep.assign(H * C, 0);
    d_.layer_weights.assign(S, 0.0);
    d_.apportion_scratch.assign(S, 0.0);
    d_.bounds.assign(3 * S, 0);
    d_.plan_streams.resize(S);
    d_.plan_keep.resize(S * C);
    d_.plan_moves.resize(S * (C / 2));
    d_.plan_freed.resize(S * C);
  }

  detail::sequence_data d_;
};

INFOKV_END_NAMESPACE
