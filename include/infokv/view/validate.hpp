// SPDX-License-Identifier: Apache-2.0
// Checks a paged view before the library reads or writes through it: shapes, null pointers,
// CSR structure, page ids in range and never shared. Every failure is a status naming the first
// fault (detail = the stream, layer or page index); nothing is written.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "infokv/config.hpp"
#include "infokv/model_shape.hpp"
#include "infokv/status.hpp"
#include "infokv/view/stream_view.hpp"

INFOKV_BEGIN_NAMESPACE

/// Head dims the statically sized kernels are written for: multiples of 8 lanes up to 512.
[[nodiscard]] constexpr bool static_head_dim_supported(std::size_t d) noexcept {
  return d != 0 && d % 8 == 0 && d <= 512;
}

namespace detail {
[[nodiscard]] constexpr std::int32_t narrow_detail(std::size_t v) noexcept {
  return v > 0x7fffffffu ? 0x7fffffff : static_cast<std::int32_t>(v);
}
}  // namespace detail

/// Shape, pointer and page-size checks that need no scratch memory (O(layers)).
template <class View>
[[nodiscard]] status validate_view_shape(const View& v, const model_shape& shape) noexcept {
  const auto& p = v.params();
  if (p.page_size == 0) return errc::invalid_page_size;
  if constexpr (View::static_head_dim != dynamic_extent) {
    if (!static_head_dim_supported(View::static_head_dim))
      return {errc::unsupported_head_dim, detail::narrow_detail(View::static_head_dim)};
    if (p.head_dim != View::static_head_dim)
      return {errc::unsupported_head_dim, detail::narrow_detail(p.head_dim)};
  }
  if (p.num_layers != shape.num_layers || p.num_kv_heads != shape.num_kv_heads ||
      v.head_dim() != shape.head_dim || p.num_layers == 0 || p.num_kv_heads == 0 ||
      v.head_dim() == 0)
    return errc::shape_mismatch;
  if (p.page_stride != 0 && p.page_stride < v.page_elements()) return errc::shape_mismatch;
  if (p.key_pools == nullptr || p.value_pools == nullptr || p.last_page_len == nullptr)
    return errc::null_pointer;
  for (std::size_t l = 0; l < p.num_layers; ++l) {
    if (p.key_pools[l] == nullptr || p.value_pools[l] == nullptr)
      return {errc::null_pointer, detail::narrow_detail(l)};
  }
  if (p.num_sequences == 0 || p.pool_pages == 0) return errc::shape_mismatch;
  if (!v.dense() && p.indices == nullptr && p.indptr[v.num_streams()] != 0) return errc::null_pointer;
  return {};
}

/// Structure of streams [first, last): CSR bounds, last_page_len, page ids in range.
template <class View>
[[nodiscard]] status validate_streams(const View& v, std::size_t first, std::size_t last) noexcept {
  const auto& p = v.params();
  const std::size_t ps = p.page_size;
  for (std::size_t s = first; s < last; ++s) {
    const auto d = detail::narrow_detail(s);
    if (v.dense()) {
      if (p.last_page_len[s] < 0) return {errc::invalid_page_table, d};
      if (static_cast<std::size_t>(p.last_page_len[s]) > ps) return {errc::length_exceeds_capacity, d};
      if (v.dense_page(s) >= p.pool_pages) return {errc::page_out_of_range, d};
      continue;
    }
    if (p.indptr[s] < 0 || p.indptr[s + 1] < p.indptr[s]) return {errc::invalid_page_table, d};
    const std::size_t pages = v.stream_num_pages(s);
    const auto last_len = p.last_page_len[s];
    if (pages == 0) {
      if (last_len != 0) return {errc::length_exceeds_capacity, d};
    } else {
      if (last_len < 1) return {errc::invalid_page_table, d};
      if (static_cast<std::size_t>(last_len) > ps) return {errc::length_exceeds_capacity, d};
    }
    for (std::size_t i = 0; i < pages; ++i) {
      const auto id = p.indices[static_cast<std::size_t>(p.indptr[s]) + i];
      if (id < 0 || static_cast<std::size_t>(id) >= p.pool_pages) return {errc::page_out_of_range, d};
    }
  }
  return {};
}

/// Bits needed by validate_page_table's uniqueness check.
template <class View>
[[nodiscard]] constexpr std::size_t page_bitmap_words(const View& v) noexcept {
  return (v.num_domains() * v.pool_pages() + 63) / 64;
}

/// Full check of the whole batch: every stream's structure, and no physical page referenced
/// twice within one pool domain. `bitmap` must hold page_bitmap_words(v) words.
template <class View>
[[nodiscard]] status validate_page_table(const View& v, std::span<std::uint64_t> bitmap) noexcept {
  const auto& p = v.params();
  if (!v.dense()) {
    if (p.indptr[0] != 0) return errc::invalid_page_table;
  }
  INFOKV_TRY(validate_streams(v, 0, v.num_streams()));
  if (bitmap.size() < page_bitmap_words(v)) return errc::workspace_too_small;
  for (std::size_t i = 0; i < page_bitmap_words(v); ++i) bitmap[i] = 0;
  for (std::size_t s = 0; s < v.num_streams(); ++s) {
    const std::size_t base = v.stream_domain(s) * p.pool_pages;
    for (std::size_t i = 0; i < v.stream_num_pages(s); ++i) {
      const std::size_t bit = base + v.stream_page(s, i);
      const std::uint64_t mask = std::uint64_t{1} << (bit % 64);
      if (bitmap[bit / 64] & mask) return {errc::page_used_twice, detail::narrow_detail(v.stream_page(s, i))};
      bitmap[bit / 64] |= mask;
    }
  }
  return {};
}

INFOKV_END_NAMESPACE
