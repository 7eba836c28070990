// SPDX-License-Identifier: Apache-2.0
// Random eviction: a uniform score per (token, layer, head, eviction), from a counter-based hash
// of the seed, so runs are reproducible and independent of slot order and threads.
#pragma once

#include <cstddef>
#include <cstdint>

#include "infokv/concepts.hpp"
#include "infokv/config.hpp"
#include "infokv/scorer/scratch.hpp"

INFOKV_BEGIN_NAMESPACE

namespace detail {
/// SplitMix64 finaliser: a bijective 64-bit mix.
[[nodiscard]] constexpr std::uint64_t mix64(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
}  // namespace detail

struct random_scorer {
  std::uint64_t seed = 0;

  [[nodiscard]] constexpr observation_needs needs() const noexcept { return {}; }
  /// No scratch: one hash per slot.
  [[nodiscard]] constexpr std::size_t scratch_floats(const scratch_shape&) const noexcept { return 0; }
  template <kv_view View, class Isa>
  [[nodiscard]] status score(const layer_context<View, Isa>& ctx, score_matrix out) const noexcept {
    for (std::size_t h = 0; h < out.heads; ++h) {
      const std::uint64_t key = detail::mix64(seed ^ detail::mix64(ctx.eviction_index * 0x10001ull + ctx.layer) ^
                                              detail::mix64(ctx.kv_head_offset + h + 0x51ed27ull));
      for (std::size_t i = 0; i < ctx.num_tokens(); ++i) {
        const std::uint64_t r = detail::mix64(key ^ static_cast<std::uint64_t>(ctx.positions[i]));
        out(h, i) = static_cast<float>(r >> 40) * (1.0f / 16777216.0f);  // 24 bits: exact in float
      }
    }
    return {};
  }
};
static_assert(token_scorer<random_scorer, conformance_view>, "random_scorer must satisfy token_scorer");

INFOKV_END_NAMESPACE
