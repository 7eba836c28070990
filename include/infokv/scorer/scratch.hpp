// SPDX-License-Identifier: Apache-2.0
// How much scratch a scorer gets. Each scorer states what it needs next to its definition
// (a `scratch_floats(const scratch_shape&)` member); a composite adds its parts' needs to its
// own. The compressor allocates the policy's figure once per sequence state, for the largest
// stream it can hold, and hands it to every score() call as layer_context::scratch.
#pragma once

#include <concepts>
#include <cstddef>

#include "infokv/config.hpp"
#include "infokv/scorer/window_attention_layout.hpp"

INFOKV_BEGIN_NAMESPACE

/// The largest stream a scorer is called on: `tokens` slots of `heads` KV heads, head_dim, and
/// the query heads per KV head (a window of w queries gives group_size * w query rows).
struct scratch_shape {
  std::size_t tokens = 0;
  std::size_t head_dim = 0;
  std::size_t heads = 1;
  std::size_t group_size = 1;
};

/// Floats a scorer (or a policy wrapping one) that does not state its need gets: what any
/// built-in kernel could use for its needs().window queries (the window-attention layout), or a
/// few [T] rows and [D x D] matrices, plus two [heads x T] matrices for a composite's parts. The
/// figure every policy got before scorers declared their own; kept so that scorers written
/// against it still work.
template <class X>
[[nodiscard]] constexpr std::size_t undeclared_scratch_floats(const X& x, const scratch_shape& s) noexcept {
  const std::size_t padded = (s.tokens + 31) / 32 * 32;
  const std::size_t own = 4 * padded + 3 * s.head_dim * s.head_dim + 8 * s.head_dim + 64;
  const std::size_t w = x.needs().window;
  const std::size_t window = window_attention_scratch_floats(s.tokens, s.head_dim, s.group_size * (w > 1 ? w : 1));
  return (own > window ? own : window) + 2 * s.heads * s.tokens;
}

/// What scorer (or policy) `x` needs: its own declaration, else the undeclared figure.
template <class X>
[[nodiscard]] constexpr std::size_t scratch_floats_of(const X& x, const scratch_shape& s) noexcept {
  if constexpr (requires { { x.scratch_floats(s) } -> std::same_as<std::size_t>; }) {
    return x.scratch_floats(s);
  } else {
    return undeclared_scratch_floats(x, s);
  }
}

INFOKV_END_NAMESPACE
