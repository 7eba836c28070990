// SPDX-License-Identifier: Apache-2.0
// Keep-set selection: which slots of a stream survive, given its reduced scores and a target
// count. Protected tokens (sinks, the recent window) always survive and rank above every
// scored token; ties go to the newer position. AdaKV lets the KV heads of one layer share their
// budget: each head keeps its own top floor * b first, the rest goes to the best scores of any
// head of the layer.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>

#include "infokv/config.hpp"
#include "infokv/select/top_k.hpp"
#include "infokv/sequence_state.hpp"
#include "infokv/status.hpp"

INFOKV_BEGIN_NAMESPACE
namespace select_stage {

/// The tokens no eviction may take: positions below `sinks` and the `recent` newest.
struct protection {
  std::size_t sinks = 0;
  std::size_t recent = 0;

  [[nodiscard]] bool covers(std::int32_t pos, std::size_t seen) const noexcept {
    const auto p = static_cast<std::size_t>(pos);
    return p < sinks || p + recent >= seen;
  }
  /// Protected tokens stream s holds now.
  [[nodiscard]] std::size_t count(const detail::sequence_data& d, std::size_t s) const noexcept {
    std::size_t c = 0;
    for (std::size_t i = 0; i < d.length[s]; ++i) c += covers(d.positions[s * d.capacity + i], d.seen);
    return c;
  }
};

/// Marks keep[i] = 1 for the `target` best slots of stream s (protected first); row[] is the
/// stream's reduced score and is overwritten.
template <class Isa>
void keep_best(detail::sequence_data& d, const protection& prot, std::size_t s, float* row, std::size_t target,
               std::uint32_t* keep) noexcept {
  const std::size_t T = d.length[s];
  const std::int32_t* pos = d.positions.data() + s * d.capacity;
  for (std::size_t i = 0; i < T; ++i) {
    if (prot.covers(pos[i], d.seen))
      row[i] = std::numeric_limits<float>::infinity();
    else if (row[i] > std::numeric_limits<float>::max())
      row[i] = std::numeric_limits<float>::max();  // only protected tokens rank at +inf
  }
  std::uint32_t* idx = d.rank.data();
  select_top_k(Isa{}, std::span<const float>(row, T), std::span<const std::int32_t>(pos, T), target,
               std::span<std::uint32_t>(idx, T), std::span<std::uint32_t>(d.select_scratch));
  std::fill(keep, keep + T, 0u);
  for (std::size_t i = 0; i < target; ++i) keep[idx[i]] = 1u;
}

[[nodiscard]] inline float nan_last(float x) noexcept {
  return std::isnan(x) ? -std::numeric_limits<float>::infinity() : x;
}

/// AdaKV: the head-streams [first, first + H) of one layer keep H * b tokens together, each head
/// first keeping its own top floor * b. `score(s, order, nc, row)` fills a head-stream's row
/// (reduce_stage::score_stream); the keep flags end in d.keep[h * capacity + slot].
template <class Isa, class ScoreStream>
[[nodiscard]] status keep_adakv(detail::sequence_data& d, const protection& prot, double floor, std::size_t first,
                                std::size_t H, std::size_t b, ScoreStream&& score) noexcept {
  const std::size_t C = d.capacity;
  const auto n_safe = static_cast<std::size_t>(static_cast<double>(b) * floor);
  std::size_t total_len = 0;
  for (std::size_t h = 0; h < H; ++h) total_len += d.length[first + h];
  std::size_t total = std::min(total_len, H * b);
  // Score each head; protected and each head's top n_safe get +inf.
  for (std::size_t h = 0; h < H; ++h) {
    const std::size_t s = first + h;
    const std::size_t T = d.length[s];
    std::uint32_t* order = d.order.data() + h * C;
    float* row = d.stream_scores.data() + h * C;
    INFOKV_TRY(score(s, order, row));
    for (std::size_t i = 0; i < T; ++i) row[i] = std::min(row[i], std::numeric_limits<float>::max());
    const std::int32_t* pos = d.positions.data() + s * C;
    std::uint32_t* idx = d.rank.data();
    const std::size_t safe = std::min(n_safe, T);
    select_top_k(Isa{}, std::span<const float>(row, T), std::span<const std::int32_t>(pos, T), safe,
                 std::span<std::uint32_t>(idx, T), std::span<std::uint32_t>(d.select_scratch));
    for (std::size_t i = 0; i < safe; ++i) row[idx[i]] = std::numeric_limits<float>::infinity();
    for (std::size_t i = 0; i < T; ++i)
      if (prot.covers(pos[i], d.seen)) row[i] = std::numeric_limits<float>::infinity();
  }
  // Protected and safeguarded tokens always fit, even when they exceed H * b together.
  std::size_t must = 0;
  for (std::size_t h = 0; h < H; ++h)
    for (std::size_t i = 0; i < d.length[first + h]; ++i)
      must += d.stream_scores[h * C + i] == std::numeric_limits<float>::infinity();
  total = std::max(total, must);
  // Global top `total` over (head, slot), ties: newer position, then lower head. The rows are
  // flattened and the tie order packed into one rank (position * H + H - 1 - head) so the
  // fast per-stream selection applies; beyond int32 ranks the comparator path decides.
  std::size_t n = 0;
  std::uint32_t* cand = d.rank.data();
  for (std::size_t h = 0; h < H; ++h)
    for (std::size_t i = 0; i < d.length[first + h]; ++i) cand[n++] = static_cast<std::uint32_t>(h * C + i);
  std::uint32_t* chosen = d.order.data();  // free again once every head is scored
  if (total < n && d.seen * H < 0x7fffffffu) {
    float* flat = d.layer_scores.data();
    std::int32_t* rank = d.rank_positions.data();
    for (std::size_t j = 0; j < n; ++j) {
      const std::size_t h = cand[j] / C, i = cand[j] % C;
      flat[j] = d.stream_scores[cand[j]];
      rank[j] = static_cast<std::int32_t>(static_cast<std::size_t>(d.positions[(first + h) * C + i]) * H + (H - 1 - h));
    }
    select_top_k(Isa{}, std::span<const float>(flat, n), std::span<const std::int32_t>(rank, n), total,
                 std::span<std::uint32_t>(chosen, n), std::span<std::uint32_t>(d.select_scratch));
    for (std::size_t j = 0; j < total; ++j) chosen[j] = cand[chosen[j]];
  } else {
    const auto better = [&](std::uint32_t a, std::uint32_t c) {
      const float sa = nan_last(d.stream_scores[a]), sc = nan_last(d.stream_scores[c]);
      if (sa != sc) return sa > sc;
      const std::int32_t pa = d.positions[(first + a / C) * C + a % C];
      const std::int32_t pc = d.positions[(first + c / C) * C + c % C];
      if (pa != pc) return pa > pc;
      return a < c;
    };
    if (total < n) std::nth_element(cand, cand + total, cand + n, better);
    std::copy(cand, cand + std::min(total, n), chosen);
  }
  std::fill(d.keep.begin(), d.keep.begin() + static_cast<std::ptrdiff_t>(H * C), 0u);
  for (std::size_t i = 0; i < std::min(total, n); ++i) d.keep[chosen[i]] = 1u;
  return {};
}

}  // namespace select_stage
INFOKV_END_NAMESPACE
