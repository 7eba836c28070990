// SPDX-License-Identifier: Apache-2.0
// Top-k selection over one stream's scores with a deterministic total order: higher score first,
// NaN below every number, ties broken by the newer position (positions are unique in a stream).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>

#include "infokv/config.hpp"

INFOKV_BEGIN_NAMESPACE

/// Writes the slots of the k best tokens to idx[0, k) (in no particular order); idx must hold
/// scores.size() entries. k > size selects everything.
inline void select_top_k(std::span<const float> scores, std::span<const std::int32_t> positions, std::size_t k,
                         std::span<std::uint32_t> idx) noexcept {
  const std::size_t n = scores.size();
  for (std::size_t i = 0; i < n; ++i) idx[i] = static_cast<std::uint32_t>(i);
  if (k >= n || k == 0) return;
  const auto key = [&](std::uint32_t i) {
    const float s = scores[i];
    return std::isnan(s) ? -std::numeric_limits<float>::infinity() : s;
  };
  std::nth_element(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(k), idx.begin() + static_cast<std::ptrdiff_t>(n),
                   [&](std::uint32_t a, std::uint32_t b) {
                     const float sa = key(a), sb = key(b);
                     if (sa != sb) return sa > sb;
                     return positions[a] > positions[b];
                   });
}

INFOKV_END_NAMESPACE
