// SPDX-License-Identifier: Apache-2.0
// Top-k selection over one stream's scores with a deterministic total order: higher score first,
// NaN below every number, ties broken by the newer position (positions are unique in a stream,
// so the selected set is unique). select_top_k brackets the k-th score by sampling and decides
// the few in between exactly (an MSD radix select when sampling misjudges);
// select_top_k_reference (std::nth_element) is the oracle of both.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <new>
#include <type_traits>
#include <span>

#include "infokv/config.hpp"
#include "infokv/simd/kernels.hpp"

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
[[nodiscard]] constexpr std::size_t select_scratch_words(std::size_t n) noexcept {
  // above and between (n + 16 each), the 1,024-score sample, 16-byte (key, slot) pairs for up
  // to n / 4 + 16 undecided scores, and 4 words of alignment slack.
  return 2 * (n + 16) + 1024 + 4 * (n / 4 + 16) + 4;
}

namespace detail {

/// MSD radix select on the order-preserving score keys (11-, 11- and 10-bit digits), each pass
/// keeping only the bucket that straddles the k-th place, then the remaining ties by newer
/// position. Branch-free partitioning. `scratch` holds 2n + 2048 words.
inline void radix_select(std::span<const float> scores, std::span<const std::int32_t> positions, std::size_t k,
                         std::span<std::uint32_t> idx, std::uint32_t* scratch) noexcept {
  const std::size_t n = scores.size();
  std::uint32_t* keys = scratch;
  std::uint32_t* cand = keys + n;
  std::uint32_t* hist = cand + n;
  std::size_t out = 0, live = n, need = k;
  std::fill(hist, hist + 2048, 0u);
  for (std::size_t i = 0; i < n; ++i) {
    keys[i] = score_key(scores[i]);
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
    std::size_t above = 0;
    std::uint32_t b = mask;
    while (above + hist[b] < need) above += hist[b--];
    std::size_t w = 0;
    for (std::size_t i = 0; i < live; ++i) {
      const std::uint32_t d = (keys[i] >> shift) & mask;
      const std::uint32_t c = cand[i];
      idx[out] = c;
      out += d > b;
      keys[w] = keys[i];
      cand[w] = c;
      w += d == b;
    }
    live = w;
    need -= above;
    if (live == need) break;
  }
  if (need < live)
    std::nth_element(cand, cand + need, cand + live,
                     [&](std::uint32_t a, std::uint32_t c) { return positions[a] > positions[c]; });
  for (std::size_t i = 0; i < need; ++i) idx[out++] = cand[i];
}

}  // namespace detail

/// Same set as select_top_k_reference in idx[0, k), fast: a strided sample of 1,024 scores gives
/// two thresholds that bracket the k-th score with a wide margin; one vectorised pass sorts every
/// index into "surely kept" (above), "to decide" (between) or dropped; the exact order decides
/// among the few in between. When the sample misjudges (too many above, too few in both) the
/// radix select answers instead. `scratch` holds select_scratch_words(n) words.
template <class Isa>
inline void select_top_k(Isa isa, std::span<const float> scores, std::span<const std::int32_t> positions,
                         std::size_t k, std::span<std::uint32_t> idx, std::span<std::uint32_t> scratch) noexcept {
  const std::size_t n = scores.size();
  if (k >= n || k == 0 || n < 2048 || scratch.size() < select_scratch_words(n)) {
    select_top_k_reference(scores, positions, k, idx);
    return;
  }
  constexpr std::size_t kSample = 1024, kMargin = 40;
  std::uint32_t* above = scratch.data();
  std::uint32_t* between = above + n + 16;
  float* sample = reinterpret_cast<float*>(between + n + 16);  // 1,024 floats in the tail
  const std::size_t stride = n / kSample;
  for (std::size_t i = 0; i < kSample; ++i) {
    const float s = scores[i * stride];
    sample[i] = std::isnan(s) ? -std::numeric_limits<float>::infinity() : s;
  }
  // The sample values at ranks k' - margin and k' + margin (descending), k' = k's rank in it.
  const std::size_t rank = (k * kSample) / n;
  const std::size_t r_hi = rank >= kMargin ? rank - kMargin : 0;
  const std::size_t r_lo = std::min(kSample - 1, rank + kMargin);
  std::nth_element(sample, sample + r_lo, sample + kSample, std::greater<float>());
  const float lo = sample[r_lo];
  std::nth_element(sample, sample + r_hi, sample + r_lo, std::greater<float>());
  const float hi = rank >= kMargin ? sample[r_hi] : std::numeric_limits<float>::infinity();
  std::size_t n_above = 0, n_between = 0;
  simd::split_by_thresholds(isa, scores.data(), n, hi, lo, above, n_above, between, n_between);
  if (n_above > k || n_above + n_between < k) {
    detail::radix_select(scores, positions, k, idx, scratch.data());
    return;
  }
  std::copy(above, above + n_above, idx.begin());
  const std::size_t need = k - n_above;
  if (need < n_between) {
    // Decide among the few in between on packed (score key, position) keys: one 64-bit compare.
    // Positions are unique and >= 0, so the packed key orders exactly like the comparator.
    struct keyed {
      std::uint64_t key;
      std::uint32_t slot;
    };
    static_assert(sizeof(keyed) == 16 && std::is_trivially_destructible_v<keyed>);
    void* region = sample + kSample;
    std::size_t room = 4 * (n / 4 + 16 + 1) * sizeof(std::uint32_t);
    void* aligned = std::align(alignof(keyed), n_between * sizeof(keyed), region, room);
    if (aligned != nullptr) {
      keyed* pairs = static_cast<keyed*>(aligned);
      for (std::size_t i = 0; i < n_between; ++i) {
        const std::uint32_t slot = between[i];
        ::new (static_cast<void*>(pairs + i)) keyed{
            (std::uint64_t{detail::score_key(scores[slot])} << 32) | static_cast<std::uint32_t>(positions[slot]), slot};
      }
      std::nth_element(pairs, pairs + need, pairs + n_between,
                       [](const keyed& a, const keyed& b) { return a.key > b.key; });
      for (std::size_t i = 0; i < need; ++i) between[i] = pairs[i].slot;
    } else {
      std::nth_element(between, between + need, between + n_between, [&](std::uint32_t a, std::uint32_t b) {
        const std::uint32_t ka = detail::score_key(scores[a]), kb = detail::score_key(scores[b]);
        if (ka != kb) return ka > kb;
        return positions[a] > positions[b];
      });
    }
  }
  std::copy(between, between + need, idx.begin() + static_cast<std::ptrdiff_t>(n_above));
}

/// Convenience overload without scratch: the reference.
inline void select_top_k(std::span<const float> scores, std::span<const std::int32_t> positions, std::size_t k,
                         std::span<std::uint32_t> idx) noexcept {
  select_top_k_reference(scores, positions, k, idx);
}

INFOKV_END_NAMESPACE
