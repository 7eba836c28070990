// SPDX-License-Identifier: Apache-2.0
#include "oracle.hpp"

#include <algorithm>
#include <type_traits>

#include "infokv/infokv.hpp"
#include "../support/test_cache.hpp"

namespace infokv_gpu_test {

namespace {
infokv::model_shape model_of(const cache_shape& s) {
  return infokv::model_shape{.num_layers = s.layers, .num_q_heads = s.q_heads, .num_kv_heads = s.kv_heads,
                             .head_dim = s.head_dim, .hidden_size = 16, .vocab_size = 64};
}

template <class T, class Layout>
host_cache<T> snapshot(infokv_test::test_cache<T, Layout>& tc, const cache_shape& shape, std::size_t sequences) {
  const auto v = tc.view();
  host_cache<T> c;
  c.params = v.params();
  c.params.key_pools = c.params.value_pools = nullptr;
  c.params.indptr = c.params.indices = c.params.last_page_len = c.params.positions = nullptr;
  c.params.num_sequences = sequences;
  c.keys = tc.keys();
  c.values = tc.values();
  c.indptr = tc.indptr();
  c.indices = tc.indices();
  c.last = tc.last_page_len();
  c.positions = tc.positions();
  (void)shape;
  return c;
}
}  // namespace

template <class T, class Layout>
host_cache<T> make_cache(const cache_shape& shape, const std::vector<std::size_t>& tokens, std::uint64_t seed) {
  infokv_test::test_cache<T, Layout> tc(model_of(shape), shape.granularity, tokens.size(), shape.page_size,
                                        shape.pool_pages, seed);
  for (std::size_t b = 0; b < tokens.size(); ++b) tc.append(b, tokens[b], 0);
  return snapshot(tc, shape, tokens.size());
}

template <class T, class Layout>
std::vector<float> window_attention_oracle(host_cache<T>& cache, std::size_t s, std::size_t layer,
                                           const float* queries, const std::int32_t* query_positions,
                                           std::size_t window, std::size_t q_heads) {
  auto view = cache.template view<Layout>();
  const auto sv = view.stream(s, layer);
  const std::size_t T_ = sv.num_tokens(), H = view.heads_per_page();
  std::vector<std::int32_t> pos(T_);
  for (std::size_t i = 0; i < T_; ++i) {
    const std::size_t ps = view.page_size();
    pos[i] = view.domain_positions(view.stream_domain(s))[view.stream_page(s, i / ps) * ps + i % ps];
  }
  infokv::layer_context<std::remove_const_t<decltype(sv)>, infokv::simd::scalar_t> ctx;
  ctx.kv = sv;
  ctx.layer = layer;
  ctx.num_layers = view.num_layers();
  ctx.kv_head_offset = view.stream_head(s);
  ctx.group_size = q_heads / view.num_kv_heads();
  ctx.num_q_heads = q_heads;
  ctx.positions = pos.data();
  ctx.window_queries = queries;
  ctx.window_positions = query_positions;
  ctx.window_count = window;
  ctx.newest_query = static_cast<std::size_t>(std::max_element(query_positions, query_positions + window) - query_positions);
  std::vector<float> out(H * T_), logits(T_);
  for (std::size_t h = 0; h < H; ++h) {
    const auto st = infokv::detail::window_attention_mean_reference(ctx, h, window,
                                                                    infokv::group_reduction::mean_of_probabilities, false,
                                                                    out.data() + h * T_, logits.data());
    EXPECT_TRUE(st.ok());
  }
  return out;
}

float top_k_entropy_oracle(const float* logits, std::size_t n, std::size_t k) {
  std::vector<float> scratch(n);
  return infokv::simd::top_k_entropy(infokv::simd::scalar_t{}, logits, n, k, scratch.data());
}

float cosine_distance_oracle(const float* a, const float* b, std::size_t n) {
  return infokv::simd::cosine_distance(infokv::simd::scalar_t{}, a, b, n);
}

std::vector<std::uint32_t> select_oracle(const float* scores, const std::int32_t* positions, std::size_t n,
                                         std::size_t k) {
  std::vector<std::uint32_t> idx(n);
  infokv::select_top_k_reference(std::span<const float>(scores, n), std::span<const std::int32_t>(positions, n), k, idx);
  idx.resize(std::min(k, n));
  std::sort(idx.begin(), idx.end());
  return idx;
}

template <class T, class Layout>
compaction_case<T> make_compaction_case(const cache_shape& shape, std::uint64_t seed) {
  const auto model = model_of(shape);
  infokv_test::test_cache<T, Layout> tc(model, shape.granularity, 2, shape.page_size, shape.pool_pages, seed);
  constexpr std::size_t kPrefill = 700;
  tc.append(0, kPrefill, 0);
  tc.append(1, 300, 0);
  infokv::compress_config cfg;
  cfg.granularity = shape.granularity;
  cfg.prefill_budget = infokv::budget::of_ratio(0.3);
  cfg.sink_tokens = 4;
  cfg.recent_tokens = 16;
  cfg.capacity = 1024;
  cfg.apply = infokv::apply_mode::plan_only;
  infokv::compressor<infokv::random_policy, infokv::simd::scalar_t> comp(infokv::make_random(seed), cfg, model);
  auto state = comp.make_state();
  infokv_test::signal_source src(model, seed);
  const auto sig = src.make(kPrefill, kPrefill);
  compaction_case<T> out;
  out.before = snapshot(tc, shape, 2);
  const auto view = tc.view();
  const auto st = comp.compress_prefill(view, 0, state, sig);
  EXPECT_TRUE(st.ok()) << st.message();
  const auto plan = state.last_plan();
  out.streams.assign(plan.streams.begin(), plan.streams.end());
  out.keep.assign(plan.keep.begin(), plan.keep.end());
  out.moves.assign(plan.moves.begin(), plan.moves.end());
  infokv::apply_slot_moves<infokv::simd::scalar_t>(view, plan.moves);
  out.after = snapshot(tc, shape, 2);
  return out;
}

#define INFOKV_GPU_TEST_INSTANTIATE(T, L)                                                                         \
  template host_cache<T> make_cache<T, L>(const cache_shape&, const std::vector<std::size_t>&, std::uint64_t);      \
  template std::vector<float> window_attention_oracle<T, L>(host_cache<T>&, std::size_t, std::size_t, const float*, \
                                                            const std::int32_t*, std::size_t, std::size_t);         \
  template compaction_case<T> make_compaction_case<T, L>(const cache_shape&, std::uint64_t);

INFOKV_GPU_TEST_INSTANTIATE(float, infokv::layout_nhd)
INFOKV_GPU_TEST_INSTANTIATE(float, infokv::layout_hnd)
INFOKV_GPU_TEST_INSTANTIATE(infokv::half, infokv::layout_nhd)
INFOKV_GPU_TEST_INSTANTIATE(infokv::half, infokv::layout_hnd)
INFOKV_GPU_TEST_INSTANTIATE(infokv::bfloat16, infokv::layout_nhd)
INFOKV_GPU_TEST_INSTANTIATE(infokv::bfloat16, infokv::layout_hnd)

}  // namespace infokv_gpu_test
