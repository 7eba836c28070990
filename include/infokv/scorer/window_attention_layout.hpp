// SPDX-License-Identifier: Apache-2.0
// The window-attention kernel's blocking and its scratch layout: keys are converted and
// multiplied in blocks, softmaxed in chunks, and every array the kernel keeps lives at an offset
// this layout computes. The scorers that call the kernel size their scratch from the same
// function that carves it, so the two cannot disagree.
#pragma once

#include <cstddef>

#include "infokv/config.hpp"
#include "infokv/simd/window_product.hpp"

INFOKV_BEGIN_NAMESPACE

/// Keys the vector ISAs' window-attention product converts and multiplies at once (at most; AMX
/// takes simd::tile_key_block), and keys per softmax chunk. The two are independent: a block
/// never crosses its chunk's end.
inline constexpr std::size_t attention_key_block = simd::vector_key_block;
inline constexpr std::size_t attention_key_chunk = 1024;

/// Where the window-attention kernel keeps each of its arrays in scratch (offsets in floats), for
/// `tokens` keys, head_dim D and `query_rows` rows M (rounded up to 32 columns, Mp). The same
/// function sizes scratch and carves it, so the two cannot disagree.
struct window_attention_scratch {
  std::size_t mp = 0;          // query rows rounded up to the 32-column panels
  std::size_t chunks = 0;      // softmax chunks of attention_key_chunk keys
  std::size_t queries = 0;     // pre-scaled query rows packed by the ISA's product (window_product.hpp)
  std::size_t query_pos = 0;   // [Mp] position of each row's query (int32 bits)
  std::size_t query_slot = 0;  // [Mp] window slot of each row's query (int32 bits)
  std::size_t key_block = 0;   // one block of keys in the ISA's product's form
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
    w.query_pos = w.queries + simd::window_query_pack_floats(w.mp, head_dim);
    w.query_slot = w.query_pos + w.mp;
    w.key_block = w.query_slot + w.mp;
    w.logits = w.key_block + simd::window_key_block_floats(head_dim);
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

INFOKV_END_NAMESPACE
