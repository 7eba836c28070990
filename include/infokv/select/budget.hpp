// SPDX-License-Identifier: Apache-2.0
// How many tokens each stream keeps: the budget (a token count or a keep ratio of the tokens
// seen) and the schedules that share a sequence's total across layers (PyramidKV, InfoKV
// adaptive) or across the heads of a layer (AdaKV). The rounding keeps totals exact.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>

#include "infokv/config.hpp"
#include "infokv/status.hpp"

INFOKV_BEGIN_NAMESPACE

/// Keep `tokens` per stream, or, when tokens == 0, int(keep_ratio * tokens seen) per stream
/// (kvpress' n_kept = int(T * (1 - compression_ratio)) with keep_ratio = 1 - compression_ratio).
struct budget {
  std::size_t tokens = 0;
  double keep_ratio = 0.0;

  [[nodiscard]] static constexpr budget of_tokens(std::size_t n) noexcept { return {n, 0.0}; }
  [[nodiscard]] static constexpr budget of_ratio(double r) noexcept { return {0, r}; }
  [[nodiscard]] constexpr bool is_ratio() const noexcept { return tokens == 0; }
  /// Tokens a stream keeps once `seen` tokens have been observed.
  [[nodiscard]] constexpr std::size_t keep_for(std::size_t seen) const noexcept {
    return is_ratio() ? static_cast<std::size_t>(static_cast<double>(seen) * keep_ratio) : tokens;
  }
  [[nodiscard]] constexpr status check(std::size_t protected_tokens) const noexcept {
    if (is_ratio()) {
      if (!(keep_ratio > 0.0 && keep_ratio <= 1.0)) return errc::invalid_ratio;  // also NaN
      return {};
    }
    if (tokens == 0 || tokens < protected_tokens) return errc::invalid_budget;
    return {};
  }
};

enum class budget_schedule {
  policy_default,   // whatever the policy prefers (uniform unless it says otherwise)
  uniform,          // every stream keeps the budget
  pyramid,          // PyramidKV: linearly fewer tokens in higher layers (per_layer streams)
  infokv_adaptive,  // layer budgets proportional to sum_i E_i^l (per_layer streams)
  adakv,            // global top-k across the heads of a layer, 20% floor (per_layer_head streams)
};

struct schedule_params {
  budget_schedule kind = budget_schedule::policy_default;
  double pyramid_beta = 20.0;
  double adakv_floor = 0.2;  // alpha_safeguard: each head keeps at least floor * its budget by score
};

/// Splits `total` into integers out[i] in [lo[i], hi[i]] as close as possible to proportional
/// to weights (largest remainder, ties to the lower index), with sum(out) == total exactly.
/// Requires sum(lo) <= total <= sum(hi). Weights <= 0 or non-finite count as 0; all-zero
/// weights split evenly. Returns invalid_budget when the bounds cannot hold the total.
[[nodiscard]] inline status apportion(std::span<const double> weights, std::size_t total,
                                      std::span<const std::size_t> lo, std::span<const std::size_t> hi,
                                      std::span<std::size_t> out, std::span<double> scratch) noexcept {
  const std::size_t n = weights.size();
  std::size_t sum_lo = 0, sum_hi = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (lo[i] > hi[i]) return errc::invalid_budget;
    sum_lo += lo[i];
    sum_hi += hi[i];
  }
  if (total < sum_lo || total > sum_hi) return errc::invalid_budget;
  // Water-filling: give every item lo, then share the rest proportionally among the items not
  // yet at their cap, repeating while caps bind.
  for (std::size_t i = 0; i < n; ++i) out[i] = lo[i];
  std::size_t left = total - sum_lo;
  double* share = scratch.data();
  for (int round = 0; left > 0 && round < 64; ++round) {
    double wsum = 0.0;
    std::size_t open = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (out[i] < hi[i]) {
        ++open;
        const double w = weights[i];
        if (std::isfinite(w) && w > 0.0) wsum += w;
      }
    }
    if (open == 0) break;
    std::size_t given = 0;
    for (std::size_t i = 0; i < n; ++i) {
      share[i] = 0.0;
      if (out[i] >= hi[i]) continue;
      const double w = (std::isfinite(weights[i]) && weights[i] > 0.0) ? weights[i] : 0.0;
      const double want = wsum > 0.0 ? static_cast<double>(left) * w / wsum
                                     : static_cast<double>(left) / static_cast<double>(open);
      const std::size_t room = hi[i] - out[i];
      const double capped = std::min(want, static_cast<double>(room));
      const auto whole = static_cast<std::size_t>(std::floor(capped));
      out[i] += whole;
      given += whole;
      share[i] = capped < static_cast<double>(room) ? capped - static_cast<double>(whole) : -1.0;
    }
    left -= given;
    // Hand the remainder out one by one, largest fractional share first, lower index on ties.
    while (left > 0) {
      std::size_t best = n;
      for (std::size_t i = 0; i < n; ++i)
        if (out[i] < hi[i] && share[i] >= 0.0 && (best == n || share[i] > share[best])) best = i;
      if (best == n || share[best] <= 0.0) break;
      ++out[best];
      --left;
      share[best] = -1.0;
    }
  }
  // Any unit still left (all shares exhausted by caps): fill open items in index order.
  for (std::size_t i = 0; i < n && left > 0; ++i) {
    const std::size_t add = std::min(left, hi[i] - out[i]);
    out[i] += add;
    left -= add;
  }
  return left == 0 ? status{} : status{errc::invalid_budget};
}

/// PyramidKV's per-layer weights for a uniform per-layer budget `b` over T tokens, w of which
/// are the protected window (kvpress / KVCache-Factory formula, beta = 20): layer l gets
/// max_num - l * (max_num - min_num) / (L - 1) tokens beyond the window. Falls back to uniform
/// weights where the formula's preconditions fail, as kvpress does.
inline void pyramid_weights(std::size_t num_layers, std::size_t T, std::size_t b, std::size_t w, double beta,
                            std::span<double> out) noexcept {
  const double cap = static_cast<double>(b);
  const double ww = static_cast<double>(w);
  double min_num = (cap - ww) / beta;
  double max_num = 2.0 * (cap - ww) - min_num;
  if (max_num >= static_cast<double>(T) - ww) {
    max_num = static_cast<double>(T) - ww;
    min_num = 2.0 * (cap - ww) - max_num;
  }
  const bool valid = num_layers > 1 && static_cast<double>(T) >= max_num && max_num >= min_num && min_num >= 0.0;
  for (std::size_t l = 0; l < num_layers; ++l) {
    out[l] = valid ? max_num - static_cast<double>(l) * (max_num - min_num) / static_cast<double>(num_layers - 1)
                   : 1.0;
  }
}

INFOKV_END_NAMESPACE
