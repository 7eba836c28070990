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
  std::span<float> scratch;  // the policy's scratch_floats() (scorer/scratch.hpp) for this stream

  [[nodiscard]] std::size_t num_tokens() const noexcept { return kv.num_tokens(); }
  [[nodiscard]] std::size_t head_dim() const noexcept { return kv.head_dim(); }
  [[nodiscard]] const float* window_query(std::size_t i, std::size_t q_head) const noexcept {
    return window_queries + (i * num_q_heads + q_head) * kv.head_dim();
  }
};

INFOKV_END_NAMESPACE
