// SPDX-License-Identifier: Apache-2.0
// Layer evolution of one token: D^l = 1 - cos(h^l, h^L) for every layer, Llama-3.1-8B
// (32 x 4096) and SmolLM2-135M (30 x 576): part of the per-step observe cost.
#include "bench_support.hpp"

namespace {

using infokv_bench::kModels;

template <class Isa>
void BM_LayerEvolution(benchmark::State& state) {
  if (!infokv_bench::cpu_runs<Isa>(state)) return;
  const auto& m = kModels[static_cast<std::size_t>(state.range(0))].shape;
  std::vector<float> hidden(m.num_layers * m.hidden_size), out(m.num_layers);
  infokv_bench::fill(hidden, 5);
  const float* last = hidden.data() + (m.num_layers - 1) * m.hidden_size;
  for (auto _ : state) {
    for (std::size_t l = 0; l < m.num_layers; ++l)
      out[l] = infokv::simd::cosine_distance(Isa{}, hidden.data() + l * m.hidden_size, last, m.hidden_size);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * m.num_layers * m.hidden_size * 2 * sizeof(float)));
}

}  // namespace

INFOKV_BENCH_MACHINE_LIMITS();
BENCHMARK_TEMPLATE(BM_LayerEvolution, infokv::simd::avx512_t)->ArgName("model")->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_LayerEvolution, infokv::simd::avx2_t)->ArgName("model")->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_LayerEvolution, infokv::simd::scalar_t)->ArgName("model")->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
