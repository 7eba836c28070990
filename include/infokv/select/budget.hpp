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

/// Splits `total` into integers out[i] in [lo[i], hi[i]] proportional to weights where the
/// bounds allow: out[i] ~ clamp(lambda * w[i], lo[i], hi[i]) with lambda chosen so the sum is
/// `total` (water-filling), then floors plus largest remainders (ties to the lower index), so
/// sum(out) == total exactly. Weights <= 0 or non-finite count as 0; all-zero weights split
/// evenly. Returns invalid_budget unless sum(lo) <= total <= sum(hi). `scratch` holds n doubles.
[[nodiscard]] inline status apportion(std::span<const double> weights, std::size_t total,
                                      std::span<const std::size_t> lo, std::span<const std::size_t> hi,
                                      std::span<std::size_t> out, std::span<double> scratch) noexcept {
  const std::size_t n = weights.size();
  std::size_t sum_lo = 0, sum_hi = 0;
  double wsum = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    if (lo[i] > hi[i]) return errc::invalid_budget;
    sum_lo += lo[i];
    sum_hi += hi[i];
    if (std::isfinite(weights[i]) && weights[i] > 0.0) wsum += weights[i];
  }
  if (total < sum_lo || total > sum_hi) return errc::invalid_budget;
  const auto weight = [&](std::size_t i) {
    if (wsum <= 0.0) return 1.0;
    return (std::isfinite(weights[i]) && weights[i] > 0.0) ? weights[i] : 0.0;
  };
  const auto filled = [&](double lambda) {
    double f = 0.0;
    for (std::size_t i = 0; i < n; ++i)
      f += std::clamp(lambda * weight(i), static_cast<double>(lo[i]), static_cast<double>(hi[i]));
    return f;
  };
  // Bisection for lambda: filled() is continuous and non-decreasing.
  double a = 0.0, b = 1.0;
  while (filled(b) < static_cast<double>(total) && b < 1e300) b *= 2.0;
  for (int it = 0; it < 200; ++it) {
    const double m = 0.5 * (a + b);
    (filled(m) < static_cast<double>(total) ? a : b) = m;
  }
  std::size_t given = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double x = std::clamp(b * weight(i), static_cast<double>(lo[i]), static_cast<double>(hi[i]));
    out[i] = std::clamp(static_cast<std::size_t>(std::floor(x)), lo[i], hi[i]);
    scratch[i] = x - static_cast<double>(out[i]);
    given += out[i];
  }
  // Bisection overshoots by at most rounding: trim from the smallest remainders if needed.
  while (given > total) {
    std::size_t worst = n;
    for (std::size_t i = 0; i < n; ++i)
      if (out[i] > lo[i] && (worst == n || scratch[i] < scratch[worst])) worst = i;
    if (worst == n) return errc::invalid_budget;
    --out[worst];
    scratch[worst] += 1.0;
    --given;
  }
  while (given < total) {
    std::size_t best = n;
    for (std::size_t i = 0; i < n; ++i)
      if (out[i] < hi[i] && (best == n || scratch[i] > scratch[best])) best = i;
    if (best == n) return errc::invalid_budget;
    ++out[best];
    scratch[best] -= 1.0;
    ++given;
  }
  return {};
}

/// PyramidKV's per-layer budgets (kvpress / KVCache-Factory): with n_kept tokens per layer on
/// average, T tokens and a window of w, layer l keeps max_num - l * (max_num - min_num) / (L - 1)
/// where min_num = n_kept / beta and max_num = 2 n_kept - min_num (capped at T - w). Where the
/// formula's preconditions (T >= max_num >= min_num >= w) fail, every layer keeps n_kept, as in
/// kvpress. The budgets sum to L * n_kept.
inline void pyramid_budgets(std::size_t num_layers, std::size_t T, std::size_t n_kept, std::size_t w, double beta,
                            std::span<double> out) noexcept {
  const double kept = static_cast<double>(n_kept), ww = static_cast<double>(w), t = static_cast<double>(T);
  double min_num = kept / beta;
  double max_num = 2.0 * kept - min_num;
  if (max_num >= t - ww) {
    max_num = t - ww;
    min_num = 2.0 * kept - max_num;
  }
  const bool valid = num_layers > 1 && t >= max_num && max_num >= min_num && min_num >= ww;
  for (std::size_t l = 0; l < num_layers; ++l)
    out[l] = valid ? max_num - static_cast<double>(l) * (max_num - min_num) / static_cast<double>(num_layers - 1)
                   : kept;
}

INFOKV_END_NAMESPACE
