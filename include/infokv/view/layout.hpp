// SPDX-License-Identifier: Apache-2.0
// Where one (slot, head) row of head_dim elements lives inside a page. The layout is a policy
// type so the offset arithmetic folds at compile time. Names and orders follow FlashInfer / vLLM:
// NHD = page [page_size, heads, head_dim], HND = page [heads, page_size, head_dim].
#pragma once

#include <concepts>
#include <cstddef>

#include "infokv/config.hpp"

INFOKV_BEGIN_NAMESPACE

struct layout_nhd {
  static constexpr const char* name = "NHD";
  /// Offset in elements of (slot, head) from the start of its page.
  INFOKV_HOST_DEVICE static constexpr std::size_t offset(std::size_t slot, std::size_t head,
                                                         std::size_t /*page_size*/, std::size_t num_heads,
                                                         std::size_t head_dim) noexcept {
    return (slot * num_heads + head) * head_dim;
  }
  /// True when all heads of one slot are contiguous (one copy moves the slot).
  static constexpr bool slot_contiguous = true;
};

struct layout_hnd {
  static constexpr const char* name = "HND";
  INFOKV_HOST_DEVICE static constexpr std::size_t offset(std::size_t slot, std::size_t head,
                                                         std::size_t page_size, std::size_t /*num_heads*/,
                                                         std::size_t head_dim) noexcept {
    return (head * page_size + slot) * head_dim;
  }
  static constexpr bool slot_contiguous = false;
};

template <class L>
concept kv_layout = requires(std::size_t i) {
  { L::offset(i, i, i, i, i) } -> std::same_as<std::size_t>;
  { L::slot_contiguous } -> std::convertible_to<bool>;
};

INFOKV_END_NAMESPACE
