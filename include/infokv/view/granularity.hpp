// SPDX-License-Identifier: Apache-2.0
// Stream granularity: which token slots share one keep set and are evicted as one.
#pragma once

#include <cstddef>
#include <string_view>

#include "infokv/config.hpp"

INFOKV_BEGIN_NAMESPACE

enum class stream_granularity {
  /// One keep set per sequence: all layers and heads keep the same tokens, one page table per
  /// sequence shared by every layer's pool (vLLM blocks, llama.cpp cells).
  per_sequence,
  /// One keep set per (sequence, layer): the paper's setting; one page table per layer.
  per_layer,
  /// One keep set per (sequence, layer, KV head): AdaKV-style; pages hold a single head.
  per_layer_head,
};

[[nodiscard]] constexpr std::string_view to_string(stream_granularity g) noexcept {
  switch (g) {
    case stream_granularity::per_sequence: return "per_sequence";
    case stream_granularity::per_layer: return "per_layer";
    case stream_granularity::per_layer_head: return "per_layer_head";
  }
  return "?";
}

INFOKV_END_NAMESPACE
