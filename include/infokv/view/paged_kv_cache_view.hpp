// SPDX-License-Identifier: Apache-2.0
// The engine's whole paged KV cache for a batch of sequences, seen without owning it: one K and
// one V pool per layer, a FlashInfer-style CSR page table over streams (indptr, indices,
// last_page_len), and optionally the original position of every slot. Trivially copyable; every
// accessor is host/device, so the same type with device pointers is the view a CUDA kernel reads.
//
// Streams are numbered sequence-major: per_sequence s = b; per_layer s = b * L + l;
// per_layer_head s = (b * L + l) * H_kv + h. Page ids of a stream index the pool of the stream's
// layer (per_sequence: the same id in every layer's pool). Position arrays are per "domain":
// one domain (shared by all layers) for per_sequence, one per layer otherwise; slot (page, i)
// of domain d is positions[(d * pool_pages + page) * page_size + i].
//
// Dense form: indptr == nullptr means every stream owns exactly one page, the stream's index
// within its domain (b, or b * H_kv + h for per_layer_head), and last_page_len[s] is its length.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "infokv/config.hpp"
#include "infokv/element_types.hpp"
#include "infokv/view/granularity.hpp"
#include "infokv/view/layout.hpp"
#include "infokv/view/stream_view.hpp"

INFOKV_BEGIN_NAMESPACE

template <class T, class Index = std::int32_t>
struct paged_kv_cache_params {
  std::size_t num_layers = 0;
  std::size_t num_kv_heads = 0;
  std::size_t head_dim = 0;
  std::size_t page_size = 0;
  stream_granularity granularity = stream_granularity::per_sequence;
  std::size_t num_sequences = 0;
  T* const* key_pools = nullptr;    // [num_layers] base pointers
  T* const* value_pools = nullptr;  // [num_layers]
  std::size_t pool_pages = 0;       // pages in each layer's pool
  std::size_t page_stride = 0;      // elements between pages; 0 = page_size * heads_per_page * head_dim
  Index* indptr = nullptr;          // [num_streams + 1], or null for the dense form
  Index* indices = nullptr;         // [indptr[num_streams]]
  Index* last_page_len = nullptr;   // [num_streams]
  Index* positions = nullptr;       // optional, see the header comment
};

template <class T, class Layout = layout_nhd, std::size_t HeadDim = dynamic_extent,
          class Index = std::int32_t>
class paged_kv_cache_view {
  static_assert(require_kv_element<T>::value);

 public:
  using element_type = T;
  using layout_type = Layout;
  using index_type = Index;
  using params_type = paged_kv_cache_params<T, Index>;
  using stream_view_type = stream_view<T, Layout, HeadDim, Index>;
  static constexpr std::size_t static_head_dim = HeadDim;

  constexpr paged_kv_cache_view() noexcept = default;
  INFOKV_HOST_DEVICE constexpr explicit paged_kv_cache_view(const params_type& p) noexcept : p_(p) {}

  [[nodiscard]] INFOKV_HOST_DEVICE constexpr const params_type& params() const noexcept { return p_; }
  [[nodiscard]] INFOKV_HOST_DEVICE constexpr stream_granularity granularity() const noexcept { return p_.granularity; }
  [[nodiscard]] INFOKV_HOST_DEVICE constexpr std::size_t num_sequences() const noexcept { return p_.num_sequences; }
  [[nodiscard]] INFOKV_HOST_DEVICE constexpr std::size_t num_layers() const noexcept { return p_.num_layers; }
  [[nodiscard]] INFOKV_HOST_DEVICE constexpr std::size_t num_kv_heads() const noexcept { return p_.num_kv_heads; }
  [[nodiscard]] INFOKV_HOST_DEVICE constexpr std::size_t head_dim() const noexcept {
    return HeadDim == dynamic_extent ? p_.head_dim : HeadDim;
  }
  [[nodiscard]] INFOKV_HOST_DEVICE constexpr std::size_t page_size() const noexcept { return p_.page_size; }
  [[nodiscard]] INFOKV_HOST_DEVICE constexpr std::size_t pool_pages() const noexcept { return p_.pool_pages; }
  [[nodiscard]] INFOKV_HOST_DEVICE constexpr bool dense() const noexcept { return p_.indptr == nullptr; }

  /// KV heads stored in one page (all heads of a layer, or one for per_layer_head).
  [[nodiscard]] INFOKV_HOST_DEVICE constexpr std::size_t heads_per_page() const noexcept {
    return p_.granularity == stream_granularity::per_layer_head ? 1 : p_.num_kv_heads;
  }
  [[nodiscard]] INFOKV_HOST_DEVICE constexpr std::size_t page_elements() const noexcept {
    return p_.page_size * heads_per_page() * head_dim();
  }
  [[nodiscard]] INFOKV_HOST_DEVICE constexpr std::size_t page_stride() const noexcept {
    return p_.page_stride == 0 ? page_elements() : p_.page_stride;
  }
  [[nodiscard]] INFOKV_HOST_DEVICE constexpr std::size_t streams_per_sequence() const noexcept {
    switch (p_.granularity) {
      case stream_granularity::per_sequence: return 1;
      case stream_granularity::per_layer: return p_.num_layers;
      case stream_granularity::per_layer_head: return p_.num_layers * p_.num_kv_heads;
    }
    return 1;
  }
  [[nodiscard]] INFOKV_HOST_DEVICE constexpr std::size_t num_streams() const noexcept {
    return p_.num_sequences * streams_per_sequence();
  }
  [[nodiscard]] INFOKV_HOST_DEVICE constexpr std::size_t num_domains() const noexcept {
    return p_.granularity == stream_granularity::per_sequence ? 1 : p_.num_layers;
  }
  /// Layers whose storage a stream covers: all for per_sequence, one otherwise.
  [[nodiscard]] INFOKV_HOST_DEVICE constexpr std::size_t layers_per_stream() const noexcept {
    return p_.granularity == stream_granularity::per_sequence ? p_.num_layers : 1;
  }

  /// Stream of (sequence, layer, KV head); layer / head are ignored where the granularity
  /// shares one stream across them.
  [[nodiscard]] INFOKV_HOST_DEVICE constexpr std::size_t stream_index(std::size_t seq, std::size_t layer,
                                                   std::size_t head) const noexcept {
    switch (p_.granularity) {
      case stream_granularity::per_sequence: return seq;
      case stream_granularity::per_layer: return seq * p_.num_layers + layer;
      case stream_granularity::per_layer_head:
        return (seq * p_.num_layers + layer) * p_.num_kv_heads + head;
    }
    return seq;
  }
  /// The layer a stream lives in (0 for per_sequence streams, which span all layers).
  [[nodiscard]] INFOKV_HOST_DEVICE constexpr std::size_t stream_layer(std::size_t s) const noexcept {
    switch (p_.granularity) {
      case stream_granularity::per_sequence: return 0;
      case stream_granularity::per_layer: return s % p_.num_layers;
      case stream_granularity::per_layer_head: return (s / p_.num_kv_heads) % p_.num_layers;
    }
    return 0;
  }
  /// The first KV head a stream holds (its head for per_layer_head, else 0).
  [[nodiscard]] INFOKV_HOST_DEVICE constexpr std::size_t stream_head(std::size_t s) const noexcept {
    return p_.granularity == stream_granularity::per_layer_head ? s % p_.num_kv_heads : 0;
  }
  [[nodiscard]] INFOKV_HOST_DEVICE constexpr std::size_t stream_domain(std::size_t s) const noexcept {
    return p_.granularity == stream_granularity::per_sequence ? 0 : stream_layer(s);
  }
  [[nodiscard]] INFOKV_HOST_DEVICE constexpr std::size_t stream_sequence(std::size_t s) const noexcept {
    return s / streams_per_sequence();
  }

  [[nodiscard]] INFOKV_HOST_DEVICE constexpr std::size_t stream_num_pages(std::size_t s) const noexcept {
    return dense() ? 1 : static_cast<std::size_t>(p_.indptr[s + 1] - p_.indptr[s]);
  }
  /// The dense form's single page of stream s.
  [[nodiscard]] INFOKV_HOST_DEVICE constexpr std::size_t dense_page(std::size_t s) const noexcept {
    const std::size_t seq = stream_sequence(s);
    return p_.granularity == stream_granularity::per_layer_head
               ? seq * p_.num_kv_heads + stream_head(s)
               : seq;
  }
  [[nodiscard]] INFOKV_HOST_DEVICE constexpr std::size_t stream_length(std::size_t s) const noexcept {
    const std::size_t pages = stream_num_pages(s);
    if (pages == 0) return 0;
    return (pages - 1) * p_.page_size + static_cast<std::size_t>(p_.last_page_len[s]);
  }
  [[nodiscard]] INFOKV_HOST_DEVICE constexpr std::size_t stream_page(std::size_t s, std::size_t logical) const noexcept {
    return dense() ? dense_page(s) + logical
                   : static_cast<std::size_t>(p_.indices[static_cast<std::size_t>(p_.indptr[s]) + logical]);
  }

  [[nodiscard]] INFOKV_HOST_DEVICE constexpr T* key_pool(std::size_t layer) const noexcept { return p_.key_pools[layer]; }
  [[nodiscard]] INFOKV_HOST_DEVICE constexpr T* value_pool(std::size_t layer) const noexcept {
    return p_.value_pools[layer];
  }
  /// Position slot array of a domain, or null when the engine keeps no positions in the view.
  [[nodiscard]] INFOKV_HOST_DEVICE constexpr Index* domain_positions(std::size_t domain) const noexcept {
    return p_.positions == nullptr ? nullptr
                                   : p_.positions + domain * p_.pool_pages * p_.page_size;
  }

  /// Keys and values of stream s as stored in `layer` (must be the stream's layer unless the
  /// stream is per_sequence).
  [[nodiscard]] INFOKV_HOST_DEVICE constexpr stream_view_type stream(std::size_t s, std::size_t layer) const noexcept {
    const Index* pages =
        dense() ? nullptr : p_.indices + static_cast<std::size_t>(p_.indptr[s]);
    return stream_view_type(p_.key_pools[layer], p_.value_pools[layer], page_stride(), pages,
                            dense() ? dense_page(s) : 0, stream_length(s), p_.page_size,
                            heads_per_page(), head_dim());
  }

 private:
  params_type p_{};
};

static_assert(std::is_trivially_copyable_v<paged_kv_cache_view<float>>);

/// A dense cache for simple engines: per layer one contiguous [streams, capacity, heads, dim]
/// buffer (NHD), lengths[s] the current length of stream s. Built as a paged view with one page
/// of `capacity` slots per stream, so every algorithm runs on one code path.
template <class T, class Index = std::int32_t>
[[nodiscard]] constexpr paged_kv_cache_view<T, layout_nhd, dynamic_extent, Index> make_dense_view(
    std::size_t num_layers, std::size_t num_kv_heads, std::size_t head_dim, std::size_t capacity,
    stream_granularity granularity, std::size_t num_sequences, T* const* key_layers,
    T* const* value_layers, Index* lengths, Index* positions = nullptr) noexcept {
  paged_kv_cache_params<T, Index> p;
  p.num_layers = num_layers;
  p.num_kv_heads = num_kv_heads;
  p.head_dim = head_dim;
  p.page_size = capacity;
  p.granularity = granularity;
  p.num_sequences = num_sequences;
  p.key_pools = key_layers;
  p.value_pools = value_layers;
  p.pool_pages = granularity == stream_granularity::per_layer_head ? num_sequences * num_kv_heads
                                                                     : num_sequences;
  p.last_page_len = lengths;
  p.positions = positions;
  return paged_kv_cache_view<T, layout_nhd, dynamic_extent, Index>(p);
}

INFOKV_END_NAMESPACE
