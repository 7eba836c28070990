// SPDX-License-Identifier: Apache-2.0
// The keys and values of one stream in one layer, seen through its page list: the unit every
// scorer reads. Non-owning and trivially copyable, so it can be passed by value into kernels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "infokv/config.hpp"
#include "infokv/element_types.hpp"
#include "infokv/view/layout.hpp"

INFOKV_BEGIN_NAMESPACE

inline constexpr std::size_t dynamic_extent = static_cast<std::size_t>(-1);

/// One stream of one layer: tokens [0, num_tokens) in logical order, each holding num_heads()
/// rows of head_dim() elements, token t at page physical_page(t / page_size), slot t % page_size.
template <class T, class Layout = layout_nhd, std::size_t HeadDim = dynamic_extent,
          class Index = std::int32_t>
class stream_view {
  static_assert(require_kv_element<T>::value);

 public:
  using element_type = T;
  using layout_type = Layout;
  using index_type = Index;
  static constexpr std::size_t static_head_dim = HeadDim;

  constexpr stream_view() noexcept = default;
  /// `pages` may be null: then the stream's pages are first_page, first_page + 1, ... (dense).
  INFOKV_HOST_DEVICE constexpr stream_view(const T* keys, const T* values, std::size_t page_stride, const Index* pages,
                        std::size_t first_page, std::size_t num_tokens, std::size_t page_size,
                        std::size_t num_heads, std::size_t head_dim) noexcept
      : k_(keys),
        v_(values),
        page_stride_(page_stride),
        pages_(pages),
        first_page_(first_page),
        tokens_(num_tokens),
        page_size_(page_size),
        heads_(num_heads),
        dim_(HeadDim == dynamic_extent ? head_dim : HeadDim) {}

  INFOKV_HOST_DEVICE constexpr std::size_t num_tokens() const noexcept { return tokens_; }
  INFOKV_HOST_DEVICE constexpr std::size_t num_heads() const noexcept { return heads_; }
  INFOKV_HOST_DEVICE constexpr std::size_t head_dim() const noexcept {
    if constexpr (HeadDim == dynamic_extent) {
      return dim_;
    } else {
      return HeadDim;
    }
  }
  INFOKV_HOST_DEVICE constexpr std::size_t page_size() const noexcept { return page_size_; }
  INFOKV_HOST_DEVICE constexpr std::size_t num_pages() const noexcept {
    return page_size_ == 0 ? 0 : (tokens_ + page_size_ - 1) / page_size_;
  }
  INFOKV_HOST_DEVICE constexpr std::size_t physical_page(std::size_t logical_page) const noexcept {
    return pages_ == nullptr ? first_page_ + logical_page
                             : static_cast<std::size_t>(pages_[logical_page]);
  }
  /// Offset in elements of (token, head) from the pool base.
  INFOKV_HOST_DEVICE constexpr std::size_t offset(std::size_t token, std::size_t head) const noexcept {
    return physical_page(token / page_size_) * page_stride_ +
           Layout::offset(token % page_size_, head, page_size_, heads_, head_dim());
  }
  INFOKV_HOST_DEVICE constexpr const T* key(std::size_t token, std::size_t head) const noexcept {
    return k_ + offset(token, head);
  }
  INFOKV_HOST_DEVICE constexpr const T* value(std::size_t token, std::size_t head) const noexcept {
    return v_ + offset(token, head);
  }

 private:
  const T* k_ = nullptr;
  const T* v_ = nullptr;
  std::size_t page_stride_ = 0;
  const Index* pages_ = nullptr;
  std::size_t first_page_ = 0;
  std::size_t tokens_ = 0;
  std::size_t page_size_ = 0;
  std::size_t heads_ = 0;
  std::size_t dim_ = HeadDim == dynamic_extent ? 0 : HeadDim;
};

static_assert(std::is_trivially_copyable_v<stream_view<float>>);


INFOKV_END_NAMESPACE
