// SPDX-License-Identifier: Apache-2.0
// The extension points of the library, as concepts: a key/value view, a paged view, a token
// scorer and an eviction policy. Third-party types conform without inheriting anything.
#pragma once

#include <concepts>
#include <cstddef>
#include <string_view>

#include "infokv/config.hpp"
#include "infokv/scorer/layer_context.hpp"
#include "infokv/signals.hpp"
#include "infokv/simd/isa.hpp"
#include "infokv/status.hpp"
#include "infokv/view/stream_view.hpp"

INFOKV_BEGIN_NAMESPACE

/// \brief Keys and values of tokens [0, num_tokens()), num_heads() rows of head_dim() elements
/// each; key(t, h) points at head_dim contiguous elements. Copyable, non-owning, O(1) access.
template <class V>
concept kv_view = std::copyable<V> && requires(const V& v, std::size_t i) {
  typename V::element_type;
  { v.num_tokens() } -> std::same_as<std::size_t>;
  { v.num_heads() } -> std::same_as<std::size_t>;
  { v.head_dim() } -> std::same_as<std::size_t>;
  { v.key(i, i) } -> std::same_as<const typename V::element_type*>;
  { v.value(i, i) } -> std::same_as<const typename V::element_type*>;
};

/// \brief A kv_view whose tokens live in fixed-size pages found through a page table.
template <class V>
concept paged_kv_view = kv_view<V> && requires(const V& v, std::size_t i) {
  { v.page_size() } -> std::same_as<std::size_t>;
  { v.num_pages() } -> std::same_as<std::size_t>;
  { v.physical_page(i) } -> std::same_as<std::size_t>;
};

/// \brief Scores every token of one stream in one layer, one row per KV head of the stream.
/// Semantics: higher score == keep; deterministic for equal inputs; reads only the context;
/// const and safe to call from several threads on different contexts. needs() says what the
/// library must record at observe time (queries, entropy, hidden states, ...).
template <class S, class View, class Isa = simd::native_isa>
concept token_scorer = kv_view<View> && requires(const S& s, const layer_context<View, Isa>& ctx,
                                                 score_matrix out) {
  { s.needs() } -> std::same_as<observation_needs>;
  { s.score(ctx, out) } -> std::same_as<status>;
};

/// \brief A complete eviction policy: a scorer plus a name; the compressor adds selection,
/// budgets and compaction.
template <class P, class View, class Isa = simd::native_isa>
concept eviction_policy = token_scorer<P, View, Isa> && requires(const P& p) {
  { p.name() } -> std::convertible_to<std::string_view>;
};

/// A policy that can weight layers for an adaptive budget (InfoKV-adaptive): a non-negative
/// weight per (stream, layer), budgets proportional to it.
template <class P, class View, class Isa = simd::native_isa>
concept layer_weighted_policy = eviction_policy<P, View, Isa> && requires(const P& p,
                                                                          const layer_context<View, Isa>& ctx) {
  { p.layer_weight(ctx) } -> std::same_as<double>;
};

/// The view each built-in scorer states its conformance against, next to its definition.
using conformance_view = stream_view<float>;

/// Runs `x.check()` when the type has one (scorers and policies with parameters to validate);
/// types without parameters are always valid.
template <class X>
[[nodiscard]] constexpr status check_parameters(const X& x) noexcept {
  if constexpr (requires { { x.check() } -> std::same_as<status>; }) {
    return x.check();
  } else {
    return {};
  }
}

INFOKV_END_NAMESPACE
