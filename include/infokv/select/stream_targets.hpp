// SPDX-License-Identifier: Apache-2.0
// How many tokens each stream of a sequence keeps at one eviction. Each stream keeps at least
// its protected tokens and at most what it holds; uniform schedules give every stream the
// budget, weighted ones (the pyramid over layers, InfoKV-adaptive's entropy weights) share
// streams x budget in proportion to a weight per stream, exactly (select/budget.hpp).
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>

#include "infokv/config.hpp"
#include "infokv/select/budget.hpp"
#include "infokv/select/keep_set.hpp"
#include "infokv/sequence_state.hpp"
#include "infokv/status.hpp"

INFOKV_BEGIN_NAMESPACE
namespace select_stage {

/// The bounds and uniform targets of every stream, in d.bounds: lo (protected), hi (length),
/// target = clamp(budget, lo, hi). Returns the tokens the sequence holds before eviction.
inline std::size_t uniform_targets(detail::sequence_data& d, const protection& prot, std::size_t budget) noexcept {
  const std::size_t S = d.streams;
  std::size_t* lo = d.bounds.data();
  std::size_t* hi = lo + S;
  std::size_t* target = hi + S;
  std::size_t total = 0;
  for (std::size_t s = 0; s < S; ++s) {
    lo[s] = prot.count(d, s);
    hi[s] = d.length[s];
    target[s] = std::min(hi[s], std::max(budget, lo[s]));
    total += d.length[s];
  }
  return total;
}

/// Replaces the uniform targets by shares of S x budget proportional to d.layer_weights (one
/// per stream), within each stream's bounds; the total is exact.
[[nodiscard]] inline status weighted_targets(detail::sequence_data& d, std::size_t budget) noexcept {
  const std::size_t S = d.streams;
  std::size_t* lo = d.bounds.data();
  std::size_t* hi = lo + S;
  std::size_t* target = hi + S;
  std::size_t sum_lo = 0, sum_hi = 0;
  for (std::size_t s = 0; s < S; ++s) sum_lo += lo[s], sum_hi += hi[s];
  // The sequence keeps S * budget tokens in total, within what its streams can hold.
  const std::size_t total = std::clamp(S * budget, sum_lo, sum_hi);
  return apportion(std::span<const double>(d.layer_weights.data(), S), total, std::span<const std::size_t>(lo, S),
                   std::span<const std::size_t>(hi, S), std::span<std::size_t>(target, S),
                   std::span<double>(d.apportion_scratch.data(), S));
}

/// Stream s's target after uniform_targets / weighted_targets.
[[nodiscard]] inline std::size_t target_of(const detail::sequence_data& d, std::size_t s) noexcept {
  return d.bounds[2 * d.streams + s];
}

}  // namespace select_stage
INFOKV_END_NAMESPACE
