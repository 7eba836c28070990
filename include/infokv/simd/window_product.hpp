// SPDX-License-Identifier: Apache-2.0
// The window-logit product's blocking and scratch needs, for every ISA's way of computing it: the
// vector ISAs multiply float keys against 32-column float panels (kernels.hpp), AMX multiplies
// bf16 parts of keys and queries on tiles (amx.hpp). The window-attention layout reserves the
// larger of the two, so scratch sized once works for whichever ISA the scorer was built for.
#pragma once

#include <algorithm>
#include <cstddef>

#include "infokv/config.hpp"

INFOKV_BEGIN_NAMESPACE
namespace simd {

/// Vector ISAs: keys converted to float and multiplied this many at once.
inline constexpr std::size_t vector_key_block = 12;

/// AMX: keys per block (two 16-row tiles), the head dimension padded to the 32-element tile
/// depth, and the most bf16 parts an operand is split into.
inline constexpr std::size_t tile_key_block = 32;
inline constexpr std::size_t tile_max_parts = 3;
[[nodiscard]] constexpr std::size_t tile_padded_dim(std::size_t d) noexcept { return (d + 31) / 32 * 32; }

/// Floats for the packed query rows (Mp rows, head_dim d): float panels, or bf16 parts on tiles.
[[nodiscard]] constexpr std::size_t window_query_pack_floats(std::size_t mp, std::size_t d) noexcept {
  return std::max(mp * d, (tile_max_parts * mp * tile_padded_dim(d) + 1) / 2);
}

/// Floats of the AMX key block: its bf16 parts, then one 16 x 16 tile for a partial block's rows.
[[nodiscard]] constexpr std::size_t tile_key_block_floats(std::size_t d) noexcept {
  return tile_max_parts * tile_key_block * tile_padded_dim(d) / 2 + 256;
}

/// Floats for one block of keys in the product's own form.
[[nodiscard]] constexpr std::size_t window_key_block_floats(std::size_t d) noexcept {
  return std::max(vector_key_block * d, tile_key_block_floats(d));
}

}  // namespace simd
INFOKV_END_NAMESPACE
