// SPDX-License-Identifier: Apache-2.0
// Everything a scorer may read when it scores the tokens of one stream in one layer: the keys
// and values, the per-token state the library recorded (positions, entropies, evolution
// distances, accumulated attention), the query window, pre-RoPE query statistics, and scratch.
// Scores are written to a score_matrix, one row per KV head of the stream, in slot order;
// higher score == keep (the convention of NVIDIA kvpress).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "infokv/config.hpp"
#include "infokv/rope.hpp"
#include "infokv/simd/isa.hpp"

INFOKV_BEGIN_NAMESPACE

/// Row-major [heads x tokens] scores; higher == keep.
struct score_matrix {
  float* data = nullptr;
  std::size_t heads = 0;
  std::size_t tokens = 0;
  INFOKV_HOST_DEVICE float& operator()(std::size_t h, std::size_t t) const noexcept {
    return data[h * tokens + t];
  }
  [[nodiscard]] INFOKV_HOST_DEVICE float* row(std::size_t h) const noexcept { return data + h * tokens; }
};

template <class StreamView, class Isa = simd::native_isa>
struct layer_context {
  using isa_type = Isa;  // the instruction set the scorer's kernels are compiled for
  StreamView kv;                   // this stream's keys / values in this layer
  std::size_t layer = 0;
  std::size_t num_layers = 0;
  std::size_t kv_head_offset = 0;  // global KV head index of kv's head 0
  std::size_t group_size = 1;      // query heads per KV head
  std::size_t num_q_heads = 0;

  // Per token, slot order, kv.num_tokens() entries.
  const std::int32_t* positions = nullptr;
  const float* entropy = nullptr;  // H_i (null unless the policy asked for entropy)
  const float* evolution = nullptr;    // D_i^l of this layer at evolution[i]
  const float* accumulated = nullptr;  // accumulated attention of (KV head h of the stream, i) at
  std::size_t accumulated_stride = 0;  // accumulated[h * accumulated_stride + i]

  // Slots sorted by position; the first num_candidates are older than the query window.
  const std::uint32_t* order = nullptr;
  std::size_t num_candidates = 0;

  // The layer's query window: window_count queries [window_count][num_q_heads][head_dim] in ring
  // order, their positions, and the index of the newest one.
  const float* window_queries = nullptr;
  const std::int32_t* window_positions = nullptr;
  std::size_t window_count = 0;
  std::size_t newest_query = 0;

  // Running sums of pre-RoPE queries of this layer: sum [num_q_heads][D], sum of outer products
  // [num_q_heads][D][D] (null unless covariance is kept), over query_count tokens.
  const double* query_sum = nullptr;
  const double* query_outer = nullptr;
  std::size_t query_count = 0;
  rope_params rope{};  // as stated in compress_config::rope

  std::size_t next_position = 0;   // tokens seen by the sequence so far
  std::uint64_t eviction_index = 0;  // how many evictions this sequence has run (seeds Random)
  std::span<float> scratch;  // policy_scratch_floats(T, head_dim, kv.num_heads()) floats

  [[nodiscard]] std::size_t num_tokens() const noexcept { return kv.num_tokens(); }
  [[nodiscard]] std::size_t head_dim() const noexcept { return kv.head_dim(); }
  [[nodiscard]] const float* window_query(std::size_t i, std::size_t q_head) const noexcept {
    return window_queries + (i * num_q_heads + q_head) * kv.head_dim();
  }
};

/// Keys the window-attention kernel converts and multiplies at once (at most), and keys per
/// softmax chunk. The two are independent: a block never crosses its chunk's end.
inline constexpr std::size_t attention_key_block = 12;
inline constexpr std::size_t attention_key_chunk = 1024;

/// Where the window-attention kernel keeps each of its arrays in scratch (offsets in floats), for
/// `tokens` keys, head_dim D and `query_rows` rows M (rounded up to 32 columns, Mp). The same
/// function sizes scratch and carves it, so the two cannot disagree.
struct window_attention_scratch {
  std::size_t mp = 0;          // query rows rounded up to the 32-column panels
  std::size_t chunks = 0;      // softmax chunks of attention_key_chunk keys
  std::size_t queries = 0;     // [Mp / 32][D][32] packed, pre-scaled query rows
  std::size_t query_pos = 0;   // [Mp] position of each row's query (int32 bits)
  std::size_t key_block = 0;   // [attention_key_block][D] keys converted to float
  std::size_t logits = 0;      // [tokens][Mp] logits, then exp per chunk
  std::size_t chunk_max = 0;   // [chunks][Mp] maximum per chunk, then each chunk's factor
  std::size_t chunk_sum = 0;   // [chunks][Mp] sum of exponentials per chunk
  std::size_t row_max = 0;     // [Mp] maximum over all chunks
  std::size_t row_sum = 0;     // [Mp] normaliser over all chunks
  std::size_t end = 0;         // floats used

  [[nodiscard]] static constexpr window_attention_scratch of(std::size_t tokens, std::size_t head_dim,
                                                             std::size_t query_rows) noexcept {
    window_attention_scratch w;
    w.mp = (query_rows + 31) / 32 * 32;
    w.chunks = (tokens + attention_key_chunk - 1) / attention_key_chunk;
    w.queries = 0;
    w.query_pos = w.queries + w.mp * head_dim;
    w.key_block = w.query_pos + w.mp;
    w.logits = w.key_block + attention_key_block * head_dim;
    w.chunk_max = w.logits + tokens * w.mp;
    w.chunk_sum = w.chunk_max + w.chunks * w.mp;
    w.row_max = w.chunk_sum + w.chunks * w.mp;
    w.row_sum = w.row_max + w.mp;
    w.end = w.row_sum + w.mp;
    return w;
  }
};

/// Scratch of the window-attention kernel for at most `query_rows` query rows.
[[nodiscard]] constexpr std::size_t window_attention_scratch_floats(std::size_t tokens, std::size_t head_dim,
                                                                    std::size_t query_rows) noexcept {
  return window_attention_scratch::of(tokens, head_dim, query_rows).end;
}

/// Scratch a single scorer may use from layer_context::scratch, for T tokens, head_dim D and at
/// most `query_rows` window query rows per KV head (group size x window).
[[nodiscard]] constexpr std::size_t scorer_scratch_floats(std::size_t tokens, std::size_t head_dim,
                                                          std::size_t query_rows = 1) noexcept {
  const std::size_t padded = (tokens + 31) / 32 * 32;
  const std::size_t own = 4 * padded + 3 * head_dim * head_dim + 8 * head_dim + 64;
  const std::size_t window = window_attention_scratch_floats(tokens, head_dim, query_rows);
  return own > window ? own : window;
}
/// Scratch the compressor hands a policy: a scorer's, plus two [heads x T] matrices a composite
/// policy may use for its parts' scores.
[[nodiscard]] constexpr std::size_t policy_scratch_floats(std::size_t tokens, std::size_t head_dim,
                                                          std::size_t heads, std::size_t query_rows = 1) noexcept {
  return scorer_scratch_floats(tokens, head_dim, query_rows) + 2 * heads * tokens;
}

INFOKV_END_NAMESPACE
