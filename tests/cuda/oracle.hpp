// SPDX-License-Identifier: Apache-2.0
// The host side of the CUDA tests: caches built by the engine-side test cache, and the CPU
// library's scalar kernels as oracles. Compiled by the host compiler in oracle.cpp, so the CUDA
// translation units include nothing of the CPU SIMD code; this header only uses the plain view
// and plan types.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "infokv/element_types.hpp"
#include "infokv/plan/eviction_plan.hpp"
#include "infokv/view/granularity.hpp"
#include "infokv/view/layout.hpp"
#include "infokv/view/paged_kv_cache_view.hpp"

namespace infokv_gpu_test {

struct cache_shape {
  std::size_t layers = 2;
  std::size_t kv_heads = 2;
  std::size_t q_heads = 6;
  std::size_t head_dim = 64;
  std::size_t page_size = 16;
  std::size_t pool_pages = 256;
  infokv::stream_granularity granularity = infokv::stream_granularity::per_layer;
};

/// Everything a view needs, in host vectors; params holds the sizes (pointers unset).
template <class T>
struct host_cache {
  infokv::paged_kv_cache_params<T> params;
  std::vector<std::vector<T>> keys, values;
  std::vector<std::int32_t> indptr, indices, last, positions;
  std::vector<T*> key_ptrs, value_ptrs;

  template <class Layout>
  infokv::paged_kv_cache_view<T, Layout> view() {
    key_ptrs.clear();
    value_ptrs.clear();
    for (auto& k : keys) key_ptrs.push_back(k.data());
    for (auto& v : values) value_ptrs.push_back(v.data());
    auto p = params;
    p.key_pools = key_ptrs.data();
    p.value_pools = value_ptrs.data();
    p.indptr = indptr.data();
    p.indices = indices.data();
    p.last_page_len = last.data();
    p.positions = positions.data();
    return infokv::paged_kv_cache_view<T, Layout>(p);
  }
};

/// A paged cache with pages handed out in a seeded random order; sequence b holds tokens[b]
/// tokens with positions 0 .. tokens[b] - 1, each K/V a pure function of its coordinates.
template <class T, class Layout>
host_cache<T> make_cache(const cache_shape& shape, const std::vector<std::size_t>& tokens, std::uint64_t seed);

/// The host scalar reference of window attention for stream `s` of `layer`: [heads][T].
template <class T, class Layout>
std::vector<float> window_attention_oracle(host_cache<T>& cache, std::size_t s, std::size_t layer,
                                           const float* queries, const std::int32_t* query_positions,
                                           std::size_t window, std::size_t q_heads);

float top_k_entropy_oracle(const float* logits, std::size_t n, std::size_t k);
float cosine_distance_oracle(const float* a, const float* b, std::size_t n);
/// The host oracle's kept slots, sorted ascending.
std::vector<std::uint32_t> select_oracle(const float* scores, const std::int32_t* positions, std::size_t n,
                                         std::size_t k);

/// A real plan: the host compressor (Random policy, plan_only) run on a cache after a prefill,
/// the cache before the plan is applied, and after the host applied it in place.
template <class T>
struct compaction_case {
  host_cache<T> before, after;
  std::vector<infokv::stream_plan> streams;
  std::vector<std::uint32_t> keep;
  std::vector<infokv::slot_move> moves;
};
template <class T, class Layout>
compaction_case<T> make_compaction_case(const cache_shape& shape, std::uint64_t seed);

}  // namespace infokv_gpu_test
