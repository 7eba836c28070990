// SPDX-License-Identifier: Apache-2.0
// Top-k (k = 256) entropy of one logits row, at the vocabulary sizes of SmolLM2 (49,152),
// Llama 3 (128,256) and Qwen2 (152,064): the per-step cost of the entropy signal.
#include "bench_support.hpp"

namespace {

template <class Isa>
void BM_TopKEntropy(benchmark::State& state) {
  if (!infokv_bench::cpu_runs<Isa>(state)) return;
  const auto V = static_cast<std::size_t>(state.range(0));
  std::vector<float> logits(V), scratch(V);
  for (std::size_t i = 0; i < V; ++i) logits[i] = 4.0f * infokv_bench::hashed(i);  // spread like real logits
  for (auto _ : state) benchmark::DoNotOptimize(infokv::simd::top_k_entropy(Isa{}, logits.data(), V, 256, scratch.data()));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * V * sizeof(float)));
}

void vocabs(benchmark::internal::Benchmark* b) {
  b->ArgName("vocab")->Arg(49152)->Arg(128256)->Arg(152064)->Unit(benchmark::kMicrosecond);
}

}  // namespace

INFOKV_BENCH_MACHINE_LIMITS();
BENCHMARK_TEMPLATE(BM_TopKEntropy, infokv::simd::avx512_t)->Apply(vocabs);
BENCHMARK_TEMPLATE(BM_TopKEntropy, infokv::simd::avx2_t)->Apply(vocabs);
BENCHMARK_TEMPLATE(BM_TopKEntropy, infokv::simd::scalar_t)->Apply(vocabs);
BENCHMARK_MAIN();
