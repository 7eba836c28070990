// SPDX-License-Identifier: Apache-2.0
// The shape of the model whose cache is being compressed: what the engine knows from its config
// and the library needs to size state and check every input against.
#pragma once

#include <cstddef>

#include "infokv/config.hpp"
#include "infokv/status.hpp"

INFOKV_BEGIN_NAMESPACE

struct model_shape {
  std::size_t num_layers = 0;
  std::size_t num_q_heads = 0;   // query heads per layer
  std::size_t num_kv_heads = 0;  // key/value heads per layer (GQA: num_q_heads % num_kv_heads == 0)
  std::size_t head_dim = 0;
  std::size_t hidden_size = 0;  // d_model: length of one hidden-state row (layer evolution)
  std::size_t vocab_size = 0;   // length of one logits row (token entropy)

  friend constexpr bool operator==(const model_shape&, const model_shape&) = default;

  [[nodiscard]] constexpr std::size_t group_size() const noexcept {
    return num_kv_heads == 0 ? 0 : num_q_heads / num_kv_heads;
  }
  [[nodiscard]] constexpr status check() const noexcept {
    if (num_layers == 0 || num_q_heads == 0 || num_kv_heads == 0 || head_dim == 0)
      return errc::shape_mismatch;
    if (num_q_heads % num_kv_heads != 0) return errc::shape_mismatch;
    return {};
  }
};

INFOKV_END_NAMESPACE
