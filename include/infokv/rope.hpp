// SPDX-License-Identifier: Apache-2.0
// The rotary position embedding an engine applies, as a fact the engine states: the frequency
// base theta and which dimensions form a rotated pair. Both differ between models and between
// engines running the same model (Hugging Face rotates halves; llama.cpp's GGUF Llama weights are
// permuted for adjacent pairs), so the library never assumes them: a policy that rotates
// queries itself (Expected Attention) refuses to run until they are stated.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "infokv/config.hpp"

INFOKV_BEGIN_NAMESPACE

/// Which two of a head's D dimensions rotate together at frequency i (0 <= i < D/2).
enum class rope_pairing : std::uint8_t {
  unstated,     // not said: policies that need RoPE return errc::rope_not_stated
  rotate_half,  // (i, i + D/2): Hugging Face Llama / Qwen, GPT-NeoX, vLLM's is_neox_style
  adjacent,     // (2i, 2i + 1): GPT-J; llama.cpp's LLAMA_ROPE_TYPE_NORM on GGUF Llama weights
};

/// RoPE parameters of the engine: dimension pair i of position p rotates by the angle
/// p * theta^(-2i/D).
struct rope_params {
  double theta = 0.0;  // frequency base (1e4 Llama 2, 1e5 SmolLM2, 5e5 Llama 3, 1e6 Qwen2.5); 0: unstated
  rope_pairing pairing = rope_pairing::unstated;

  /// Both facts given, theta a positive finite number.
  [[nodiscard]] bool stated() const noexcept {
    return std::isfinite(theta) && theta > 0.0 && pairing != rope_pairing::unstated;
  }
  /// The two dimensions of frequency i for head_dim D.
  INFOKV_HOST_DEVICE constexpr void pair(std::size_t i, std::size_t head_dim, std::size_t& a, std::size_t& b) const noexcept {
    if (pairing == rope_pairing::adjacent) {
      a = 2 * i;
      b = 2 * i + 1;
    } else {
      a = i;
      b = i + head_dim / 2;
    }
  }
  friend constexpr bool operator==(const rope_params&, const rope_params&) = default;
};

INFOKV_END_NAMESPACE
