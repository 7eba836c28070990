// SPDX-License-Identifier: Apache-2.0
// Bandwidth-bound key reads: KNorm's key norms over a paged bfloat16 layer, and H2O's attention
// accumulation (y += a * x over T), against the machine's stream-read bandwidth in the same run.
#include "bench_support.hpp"

namespace {

using infokv_bench::kModels;

template <class Isa>
void BM_KeyNorms(benchmark::State& state) {
  if (!infokv_bench::cpu_runs<Isa>(state)) return;
  const auto& m = kModels[static_cast<std::size_t>(state.range(0))].shape;
  const auto T = static_cast<std::size_t>(state.range(1));
  const std::size_t D = m.head_dim, H = m.num_kv_heads;
  using view_t = infokv::stream_view<infokv::bfloat16>;
  infokv_bench::pool_vector<infokv::bfloat16> keys(T * H * D);
  infokv_bench::fill(keys, 3);
  std::vector<std::int32_t> pages(T / 16), pos(T);
  // Pages in pool order, or scattered over the pool as after many evictions and reallocations.
  const bool scattered = state.range(2) != 0;
  for (std::size_t i = 0; i < pages.size(); ++i)
    pages[i] = static_cast<std::int32_t>(scattered ? (i * 7919) % pages.size() : i);
  std::vector<float> out(H * T);
  infokv::layer_context<view_t, Isa> ctx;
  ctx.kv = view_t(keys.data(), keys.data(), 16 * H * D, pages.data(), 0, T, 16, H, D);
  ctx.positions = pos.data();
  const infokv::key_norm_scorer scorer;
  for (auto _ : state) {
    benchmark::DoNotOptimize(scorer.score(ctx, infokv::score_matrix{out.data(), H, T}));
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * T * H * D * sizeof(infokv::bfloat16)));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * T));
}

template <class Isa>
void BM_AccumulateAttention(benchmark::State& state) {
  if (!infokv_bench::cpu_runs<Isa>(state)) return;
  const auto T = static_cast<std::size_t>(state.range(0));
  std::vector<float> row(T), acc(T);
  infokv_bench::fill(row, 4);
  for (auto _ : state) {
    infokv::simd::axpy(Isa{}, 0.25f, row.data(), acc.data(), T);
    benchmark::ClobberMemory();
  }
  // Reads row and acc, writes acc.
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * T * 3 * sizeof(float)));
}

void key_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"model", "tokens", "scattered"})
      ->ArgsProduct({{0, 1}, {4096, 32768, 131072}, {0, 1}})
      ->Unit(benchmark::kMicrosecond);
}

}  // namespace

INFOKV_BENCH_MACHINE_LIMITS();
BENCHMARK_TEMPLATE(BM_KeyNorms, infokv::simd::avx512_t)->Apply(key_shapes);
BENCHMARK_TEMPLATE(BM_KeyNorms, infokv::simd::avx2_t)->Apply(key_shapes);
BENCHMARK_TEMPLATE(BM_KeyNorms, infokv::simd::scalar_t)->Apply(key_shapes);
// Accumulated attention at the row lengths of 32 layers x 32 heads x T (one decode step).
BENCHMARK_TEMPLATE(BM_AccumulateAttention, infokv::simd::avx512_t)->ArgName("tokens")->Arg(32 * 32 * 4096)->Arg(32 * 32 * 32768)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_AccumulateAttention, infokv::simd::avx2_t)->ArgName("tokens")->Arg(32 * 32 * 4096)->Arg(32 * 32 * 32768)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_AccumulateAttention, infokv::simd::scalar_t)->ArgName("tokens")->Arg(32 * 32 * 4096)->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
