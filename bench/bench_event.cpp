// SPDX-License-Identifier: Apache-2.0
// End to end: one full compression event (score every layer, select, compact in place) and one
// decode step's observe (top-k entropy of the logits row, layer evolution, the query ring), for
// Llama-3.1-8B (32 layers, 32/8 heads, head_dim 128, bfloat16, pages of 16) and SmolLM2-135M.
// InfoKV with the paper's defaults, one keep set per layer, prefill budget 25%.
#include <memory>

#include "bench_support.hpp"

namespace {

using infokv_bench::kModels;

struct cache {
  infokv::model_shape m;
  std::size_t T, pages;
  std::vector<infokv_bench::pool_vector<infokv::bfloat16>> k, v;
  std::vector<infokv::bfloat16*> kp, vp;
  std::vector<std::int32_t> indptr, indices, last;
  cache(const infokv::model_shape& shape, std::size_t tokens) : m(shape), T(tokens), pages(tokens / 16) {
    const std::size_t L = m.num_layers, elems = pages * 16 * m.num_kv_heads * m.head_dim;
    for (std::size_t l = 0; l < L; ++l) {
      k.emplace_back(elems);
      v.emplace_back(elems);
      infokv_bench::fill(k.back(), 10 + l);
      kp.push_back(k.back().data());
      vp.push_back(v.back().data());
    }
    reset_table();
  }
  void reset_table() {
    const std::size_t L = m.num_layers;
    indptr.assign(L + 1, 0);
    indices.assign(L * pages, 0);
    last.assign(L, 16);
    for (std::size_t l = 0; l < L; ++l) {
      indptr[l + 1] = static_cast<std::int32_t>((l + 1) * pages);
      for (std::size_t i = 0; i < pages; ++i) indices[l * pages + i] = static_cast<std::int32_t>((i * 7919) % pages);
    }
  }
  infokv::paged_kv_cache_view<infokv::bfloat16> view() {
    infokv::paged_kv_cache_params<infokv::bfloat16> p;
    p.num_layers = m.num_layers, p.num_kv_heads = m.num_kv_heads, p.head_dim = m.head_dim, p.page_size = 16;
    p.granularity = infokv::stream_granularity::per_layer, p.num_sequences = 1;
    p.key_pools = kp.data(), p.value_pools = vp.data(), p.pool_pages = pages;
    p.indptr = indptr.data(), p.indices = indices.data(), p.last_page_len = last.data();
    return infokv::paged_kv_cache_view<infokv::bfloat16>(p);
  }
};

infokv::compress_config event_config(std::size_t T) {
  infokv::compress_config cfg;
  cfg.granularity = infokv::stream_granularity::per_layer;
  cfg.capacity = T;
  cfg.prefill_budget = infokv::budget::of_ratio(0.25);
  return cfg;
}

// Observes the whole prompt in chunks (entropies precomputed, hidden states and queries given),
// so that the timed call is the eviction alone.
template <class Comp>
void observe_prompt(const Comp& comp, cache& c, infokv::sequence_state& st) {
  const std::size_t chunk = 256, L = c.m.num_layers;
  std::vector<float> q(L * chunk * c.m.num_q_heads * c.m.head_dim), h(L * chunk * c.m.hidden_size), ent(chunk);
  infokv_bench::fill(q, 20);
  infokv_bench::fill(h, 21);
  for (std::size_t j = 0; j < chunk; ++j) ent[j] = 2.0f + infokv_bench::hashed(j);
  std::vector<std::int32_t> full_last = c.last, full_indptr = c.indptr;
  for (std::size_t t = 0; t < c.T; t += chunk) {
    // Expose the first t + chunk tokens of every layer.
    const std::size_t n = t + chunk, np = n / 16;
    for (std::size_t l = 0; l < L; ++l) c.last[l] = 16;
    for (std::size_t l = 0; l <= L; ++l) c.indptr[l] = static_cast<std::int32_t>(l * np);
    std::vector<std::int32_t> idx(L * np);
    for (std::size_t l = 0; l < L; ++l)
      for (std::size_t i = 0; i < np; ++i) idx[l * np + i] = static_cast<std::int32_t>((i * 7919) % c.pages);
    std::copy(idx.begin(), idx.end(), c.indices.begin());
    infokv::step_signals sig;
    sig.num_tokens = chunk, sig.queries = q, sig.hidden_states = h, sig.next_token_entropy = ent;
    if (!comp.observe(c.view(), 0, st, sig).ok()) std::abort();
  }
}

void BM_CompressionEvent(benchmark::State& state) {
  const auto& m = kModels[static_cast<std::size_t>(state.range(0))].shape;
  const auto T = static_cast<std::size_t>(state.range(1));
  const infokv::compressor comp(infokv::make_infokv(), event_config(T), m);
  cache c(m, T);
  for (auto _ : state) {
    state.PauseTiming();
    c.reset_table();
    auto st = comp.make_state();
    observe_prompt(comp, c, st);
    state.ResumeTiming();
    infokv::step_signals none;
    none.num_tokens = 0;
    if (!comp.compress_prefill(c.view(), 0, st, none).ok()) std::abort();
    benchmark::ClobberMemory();
    state.counters["evicted_tokens"] = static_cast<double>(st.last_event().tokens_before - st.last_event().tokens_after);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * T));
}

// One decode step's observe() on a cache of 1,024 tokens: entropy over the vocabulary, layer
// evolution over every layer, the query ring; the per-token state appended.
void BM_ObserveStep(benchmark::State& state) {
  const auto& m = kModels[static_cast<std::size_t>(state.range(0))].shape;
  const std::size_t T = 1024;
  infokv::compress_config cfg = event_config(T + 4096);
  const infokv::compressor comp(infokv::make_infokv(), cfg, m);
  cache c(m, T + 4096);
  std::vector<float> q(m.num_layers * m.num_q_heads * m.head_dim), h(m.num_layers * m.hidden_size), z(m.vocab_size);
  infokv_bench::fill(q, 30);
  infokv_bench::fill(h, 31);
  for (std::size_t i = 0; i < z.size(); ++i) z[i] = 4.0f * infokv_bench::hashed(i);
  infokv::step_signals sig;
  sig.queries = q, sig.hidden_states = h, sig.logits = z;
  auto st = comp.make_state();
  std::size_t len = 0;
  const auto set_len = [&](std::size_t n) {
    const std::size_t np = (n + 15) / 16;
    for (std::size_t l = 0; l < m.num_layers; ++l) {
      c.indptr[l] = static_cast<std::int32_t>(l * np);
      c.last[l] = static_cast<std::int32_t>(n - (np - 1) * 16);
      for (std::size_t i = 0; i < np; ++i) c.indices[l * np + i] = static_cast<std::int32_t>(i);
    }
    c.indptr[m.num_layers] = static_cast<std::int32_t>(m.num_layers * np);
  };
  for (auto _ : state) {
    if (len == T + 4096) {
      state.PauseTiming();
      st = comp.make_state();
      len = 0;
      state.ResumeTiming();
    }
    state.PauseTiming();
    set_len(++len);
    state.ResumeTiming();
    if (!comp.observe(c.view(), 0, st, sig).ok()) std::abort();
  }
}

}  // namespace

BENCHMARK(BM_CompressionEvent)->ArgNames({"model", "tokens"})->Args({0, 32768})->Args({1, 4096})->Args({1, 32768})
    ->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ObserveStep)->ArgName("model")->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
