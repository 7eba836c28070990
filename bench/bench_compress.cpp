// One full compression event (score, select, compact) on a SmolLM2-135M-shaped cache, next to a
// memcpy of the same K bytes measured in the same run. The SIMD issue extends this suite; the
// kernels here are still the scalar reference.
#include <cstring>
#include <random>
#include <vector>

#include <benchmark/benchmark.h>

#include <infokv/infokv.hpp>

namespace {

const infokv::model_shape kShape{.num_layers = 30, .num_q_heads = 9, .num_kv_heads = 3, .head_dim = 64,
                                 .hidden_size = 576, .vocab_size = 49152};

template <class Policy>
void BM_CompressionEvent(benchmark::State& state, Policy policy) {
  const auto T = static_cast<std::size_t>(state.range(0));
  const std::size_t L = kShape.num_layers, H = kShape.num_kv_heads, D = kShape.head_dim, ps = 16;
  infokv::compress_config cfg;
  cfg.granularity = infokv::stream_granularity::per_layer;
  cfg.capacity = T;
  cfg.prefill_budget = infokv::budget::of_ratio(0.25);
  infokv::compressor comp(policy, cfg, kShape);
  const std::size_t pages = T / ps;
  std::vector<std::vector<float>> k(L, std::vector<float>(pages * ps * H * D)), v = k;
  std::mt19937 rng(1);
  std::normal_distribution<float> N;
  for (auto& x : k) for (auto& y : x) y = N(rng);
  std::vector<float*> kp(L), vp(L);
  for (std::size_t l = 0; l < L; ++l) kp[l] = k[l].data(), vp[l] = v[l].data();
  std::vector<float> q(L * T * kShape.num_q_heads * D), hidden(L * T * kShape.hidden_size), ent(T, 1.0f);
  for (auto& x : q) x = N(rng);
  for (auto& x : hidden) x = N(rng);
  infokv::step_signals sig;
  sig.num_tokens = T, sig.queries = q, sig.hidden_states = hidden, sig.next_token_entropy = ent;
  std::vector<std::int32_t> indptr(L + 1), indices(L * pages), last(L);
  for (auto _ : state) {
    state.PauseTiming();
    for (std::size_t l = 0; l <= L; ++l) indptr[l] = static_cast<std::int32_t>(l * pages);
    for (std::size_t l = 0; l < L; ++l) {
      last[l] = static_cast<std::int32_t>(ps);
      for (std::size_t i = 0; i < pages; ++i) indices[l * pages + i] = static_cast<std::int32_t>(i);
    }
    infokv::paged_kv_cache_params<float> p;
    p.num_layers = L, p.num_kv_heads = H, p.head_dim = D, p.page_size = ps;
    p.granularity = cfg.granularity, p.num_sequences = 1, p.key_pools = kp.data(), p.value_pools = vp.data();
    p.pool_pages = pages, p.indptr = indptr.data(), p.indices = indices.data(), p.last_page_len = last.data();
    auto st = comp.make_state();
    state.ResumeTiming();
    benchmark::DoNotOptimize(comp.compress_prefill(infokv::paged_kv_cache_view<float>(p), 0, st, sig));
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(T));
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(L * T * H * D * sizeof(float)));
}

void BM_MemcpyKeys(benchmark::State& state) {
  const auto T = static_cast<std::size_t>(state.range(0));
  const std::size_t bytes = kShape.num_layers * T * kShape.num_kv_heads * kShape.head_dim * sizeof(float);
  std::vector<char> a(bytes, 1), b(bytes);
  for (auto _ : state) {
    std::memcpy(b.data(), a.data(), bytes);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes));
}

BENCHMARK_CAPTURE(BM_CompressionEvent, snapkv, infokv::make_snapkv())->Arg(1024)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_CompressionEvent, infokv, infokv::make_infokv())->Arg(1024)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MemcpyKeys)->Arg(1024)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
