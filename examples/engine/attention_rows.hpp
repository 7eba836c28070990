// SPDX-License-Identifier: Apache-2.0
// Attention rows in pieces. H2O-style policies observe the softmax attention row of every new
// token over every cached slot, in every layer and query head: [L][n][Hq][T] floats for a step
// of n tokens over T slots, which for 512 prompt tokens at an 8K context is 4.5 GB. Beyond a
// fixed byte cap the engine does not hold a step's rows at once: it hands the step to the
// library in pieces of new tokens (observe() for every piece but the last, which gets the call
// the step asked for), each with its own rows computed on demand. This header has what that
// needs and that is not the forward pass itself: where the pieces start, a view of the cache as
// it stood after an earlier piece, and the other signals cut to a piece.
//
// Nothing a policy decides may change. The library accumulates a key's attention over the new
// tokens in token order, and pieces keep that order; the rows themselves must be bit-identical
// to the rows one whole step would have had, which constrains where pieces start (see
// attention_piece_bounds).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <numeric>
#include <span>
#include <vector>

#include <infokv/infokv.hpp>

namespace engine {

/// The most bytes of attention rows held at once (256 MiB). A step whose rows fit is handed
/// over whole, as before pieces existed; beyond it, in pieces of at most this much, except that
/// a piece never shrinks below one alignment granule of tokens (and a query window, for a policy
/// that keeps one), so at very long contexts one piece may exceed it.
inline constexpr std::size_t default_attention_row_bytes = std::size_t{256} << 20;

/// The attention rows of the step just computed, produced on demand: fill(first, last, stride,
/// out) writes the rows of new tokens [first, last) of every layer to out, laid out
/// [L][last - first][Hq][stride] like step_signals::attention, each row holding the stream's
/// slots as they stood after token last - 1 was appended (the rest of a row stays as it was: the
/// caller zeroes it).
struct attention_row_source {
  std::size_t layers = 0, q_heads = 0, group_size = 1;
  std::size_t stride = 0;  // the longest stream after the whole step: what a full row spans
  std::size_t byte_cap = default_attention_row_bytes;
  std::function<void(std::size_t first, std::size_t last, std::size_t stride, float* out)> fill;

  [[nodiscard]] std::size_t bytes_per_token() const noexcept { return layers * q_heads * stride * sizeof(float); }
};

/// Where the pieces of an n-token step start, followed by n. The rows of a piece are the same
/// matrix products and softmaxes as those of the whole step restricted to the piece's queries,
/// and they come out bit-identical only if every query row lands on the same register tile and
/// the same vector alignment as in the whole step (a row on another tile, or an element on the
/// scalar side of a vector loop, is summed in another order). Eigen's tiles span 12 rows with
/// SSE, 24 with AVX and 48 with AVX-512 (4 columns), and a score row's 64-byte alignment repeats
/// every 16 rows, so a piece starts at a multiple of 48 query rows: of 48 / gcd(48, G) tokens,
/// with G query heads per KV head. A policy that keeps a query window of w queries ends each
/// observe() with the last min(piece, w) of them in a ring buffer whose layout depends on where
/// calls end: pieces of at least w tokens leave it as one call would. `window`: that w (0 for
/// none).
[[nodiscard]] inline std::vector<std::size_t> attention_piece_bounds(std::size_t n, std::size_t bytes_per_token,
                                                                     std::size_t byte_cap, std::size_t group_size,
                                                                     std::size_t window) {
  const std::size_t granule = 48 / std::gcd<std::size_t>(48, std::max<std::size_t>(group_size, 1));
  // The last piece is whatever is left; a single-token piece with one query head per group would
  // be a matrix-vector product (another kernel, other rounding), and a short one would break the
  // query window: such a tail joins the piece before it.
  const std::size_t shortest_tail = std::max<std::size_t>(window, group_size <= 1 ? 2 : 1);
  const std::size_t shortest = (std::max<std::size_t>(window, 1) + granule - 1) / granule * granule;
  std::size_t per = byte_cap / std::max<std::size_t>(bytes_per_token, 1);
  per = per >= shortest_tail ? per - (shortest_tail - 1) : 0;  // room for a tail that joins it
  per = std::max(per / granule * granule, shortest);
  std::vector<std::size_t> bounds{0};
  while (n - bounds.back() > per) bounds.push_back(bounds.back() + per);
  if (bounds.size() > 1 && n - bounds.back() < shortest_tail) bounds.pop_back();
  bounds.push_back(n);
  return bounds;
}

/// The page table of a view without its newest slots (what view_without_newest points at).
struct truncated_table {
  std::vector<std::int32_t> indptr, indices, last_page_len;
};

/// `v` with the newest `drop` slots of every stream hidden: the cache as it stood before the
/// step's last `drop` tokens were appended (an engine appends new tokens at the end of each
/// stream). Pools and positions are shared with `v`; the table lives in `t`.
template <class View>
[[nodiscard]] View view_without_newest(const View& v, std::size_t drop, truncated_table& t) {
  auto p = v.params();
  const std::size_t S = v.num_streams(), ps = v.page_size();
  t.indptr.assign(S + 1, 0);
  t.indices.clear();
  t.last_page_len.assign(S, 0);
  for (std::size_t s = 0; s < S; ++s) {
    const std::size_t len = v.stream_length(s) - drop;
    const std::size_t pages = (len + ps - 1) / ps;
    t.indptr[s] = static_cast<std::int32_t>(t.indices.size());
    for (std::size_t i = 0; i < pages; ++i) t.indices.push_back(static_cast<std::int32_t>(v.stream_page(s, i)));
    t.last_page_len[s] = len == 0 ? 0 : static_cast<std::int32_t>(len - (pages - 1) * ps);
  }
  t.indptr[S] = static_cast<std::int32_t>(t.indices.size());
  if (t.indices.empty()) t.indices.push_back(0);  // data() stays non-null
  p.indptr = t.indptr.data();
  p.indices = t.indices.data();
  p.last_page_len = t.last_page_len.data();
  return View(p);
}

/// Tokens [first, first + m) of a per-layer signal laid out [layers][n][x] (x floats per token),
/// copied to `buf` as [layers][m][x]. Empty stays empty.
[[nodiscard]] inline std::span<const float> layer_slice(std::span<const float> all, std::size_t layers, std::size_t n,
                                                        std::size_t first, std::size_t m, std::vector<float>& buf) {
  if (all.empty()) return {};
  const std::size_t x = all.size() / (layers * n);
  buf.resize(layers * m * x);
  for (std::size_t l = 0; l < layers; ++l)
    std::copy_n(all.data() + (l * n + first) * x, m * x, buf.data() + l * m * x);
  return buf;
}

}  // namespace engine
