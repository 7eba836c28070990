// SPDX-License-Identifier: Apache-2.0
// Top-k selection over one stream's scores with a deterministic total order: higher score first,
// NaN below every number, ties broken by the newer position (positions are unique in a stream,
// so the selected set is unique). select_top_k is an MSD radix select on the order-preserving
// bits of the scores; select_top_k_reference (std::nth_element) is its oracle.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>

#include "infokv/config.hpp"

INFOKV_BEGIN_NAMESPACE

namespace detail {
/// An unsigned key that orders like the float (NaN as -inf): larger key == larger score.
[[nodiscard]] inline std::uint32_t score_key(float s) noexcept {
  if (std::isnan(s)) s = -std::numeric_limits<float>::infinity();
  const std::uint32_t u = std::bit_cast<std::uint32_t>(s);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
}  // namespace detail

/// The oracle: writes the slots of the k best tokens to idx[0, k) (in no particular order); idx
/// must hold scores.size() entries. k >= size selects everything.
inline void select_top_k_reference(std::span<const float> scores, std::span<const std::int32_t> positions,
                                   std::size_t k, std::span<std::uint32_t> idx) noexcept {
  const std::size_t n = scores.size();
  for (std::size_t i = 0; i < n; ++i) idx[i] = static_cast<std::uint32_t>(i);
  if (k >= n || k == 0) return;
  std::nth_element(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(k), idx.begin() + static_cast<std::ptrdiff_t>(n),
                   [&](std::uint32_t a, std::uint32_t b) {
                     const std::uint32_t ka = detail::score_key(scores[a]), kb = detail::score_key(scores[b]);
                     if (ka != kb) return ka > kb;
                     return positions[a] > positions[b];
                   });
}

/// Scratch select_top_k needs for n scores, in 32-bit words.
[[nodiscard]] constexpr std::size_t select_scratch_words(std::size_t n) noexcept { return 2 * n + 2048; }

/// Same result as select_top_k_reference (the same set in idx[0, k)): 11-, 11- and 10-bit digit
/// passes over the score keys, each keeping only the bucket that straddles the k-th place, then
/// the remaining ties by position. `scratch` holds select_scratch_words(n) words.
inline void select_top_k(std::span<const float> scores, std::span<const std::int32_t> positions, std::size_t k,
                         std::span<std::uint32_t> idx, std::span<std::uint32_t> scratch) noexcept {
  const std::size_t n = scores.size();
  if (k >= n || k == 0 || n < 1024 || scratch.size() < select_scratch_words(n)) {
    select_top_k_reference(scores, positions, k, idx);
    return;
  }
  std::uint32_t* keys = scratch.data();          // [n] keys of the live candidates
  std::uint32_t* cand = keys + n;                // [n] their slots
  std::uint32_t* hist = cand + n;                // [2048]
  std::size_t out = 0;                           // idx[0, out) are selected
  std::size_t live = n;
  std::size_t need = k;
  // Pass 1 builds the keys while counting the top digit.
  std::fill(hist, hist + 2048, 0u);
  for (std::size_t i = 0; i < n; ++i) {
    keys[i] = detail::score_key(scores[i]);
    cand[i] = static_cast<std::uint32_t>(i);
    ++hist[keys[i] >> 21];
  }
  constexpr int kShifts[3] = {21, 10, 0};
  constexpr std::uint32_t kMasks[3] = {0x7ffu, 0x7ffu, 0x3ffu};
  for (int pass = 0; pass < 3 && need > 0; ++pass) {
    const int shift = kShifts[pass];
    const std::uint32_t mask = kMasks[pass];
    if (pass > 0) {
      std::fill(hist, hist + 2048, 0u);
      for (std::size_t i = 0; i < live; ++i) ++hist[(keys[i] >> shift) & mask];
    }
    // The bucket b where the count from the top first reaches `need`.
    std::size_t above = 0;
    std::uint32_t b = mask;
    while (above + hist[b] < need) above += hist[b--];
    // Buckets above b are selected; bucket b stays live; below b is dropped.
    std::size_t w = 0;
    for (std::size_t i = 0; i < live; ++i) {
      const std::uint32_t d = (keys[i] >> shift) & mask;
      if (d > b) {
        idx[out++] = cand[i];
      } else if (d == b) {
        keys[w] = keys[i];
        cand[w++] = cand[i];
      }
    }
    live = w;
    need -= above;
    if (live == need) break;
  }
  // The live candidates share one score key: take the newest `need` of them.
  if (need < live)
    std::nth_element(cand, cand + need, cand + live,
                     [&](std::uint32_t a, std::uint32_t c) { return positions[a] > positions[c]; });
  for (std::size_t i = 0; i < need; ++i) idx[out++] = cand[i];
  // The rest of idx: the slots not selected (callers read only idx[0, k)).
}

/// Convenience overload without scratch: the reference.
inline void select_top_k(std::span<const float> scores, std::span<const std::int32_t> positions, std::size_t k,
                         std::span<std::uint32_t> idx) noexcept {
  select_top_k_reference(scores, positions, k, idx);
}

INFOKV_END_NAMESPACE
