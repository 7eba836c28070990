// SPDX-License-Identifier: Apache-2.0
// Top-k selection of the 25% best of T scores with the library's deterministic order (score,
// then newer position): the radix select against std::nth_element and std::partial_sort with
// the same comparator, in the same run.
#include <algorithm>

#include "bench_support.hpp"

namespace {

struct select_input {
  std::vector<float> scores;
  std::vector<std::int32_t> positions;
  explicit select_input(std::size_t T) : scores(T), positions(T) {
    // Softmax-like scores: small positive values with a heavy head and many near-ties.
    for (std::size_t i = 0; i < T; ++i) {
      const float u = 0.5f * (infokv_bench::hashed(i) + 1.0f);
      scores[i] = 1e-4f * u * u * u;
      positions[i] = static_cast<std::int32_t>((i * 2654435761u) % T);
    }
  }
};

template <class Isa>
void BM_TopKSelect(benchmark::State& state) {
  if (!infokv_bench::cpu_runs<Isa>(state)) return;
  const auto T = static_cast<std::size_t>(state.range(0));
  const select_input in(T);
  std::vector<std::uint32_t> idx(T), scratch(infokv::select_scratch_words(T));
  for (auto _ : state) {
    infokv::select_top_k(Isa{}, in.scores, in.positions, T / 4, idx, scratch);
    benchmark::DoNotOptimize(idx.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * T));
}

void BM_RadixSelect(benchmark::State& state) {
  const auto T = static_cast<std::size_t>(state.range(0));
  const select_input in(T);
  std::vector<std::uint32_t> idx(T), scratch(infokv::select_scratch_words(T));
  for (auto _ : state) {
    infokv::detail::radix_select(in.scores, in.positions, T / 4, idx, scratch.data());
    benchmark::DoNotOptimize(idx.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * T));
}

void BM_NthElement(benchmark::State& state) {
  const auto T = static_cast<std::size_t>(state.range(0));
  const select_input in(T);
  std::vector<std::uint32_t> idx(T);
  for (auto _ : state) {
    infokv::select_top_k_reference(in.scores, in.positions, T / 4, idx);
    benchmark::DoNotOptimize(idx.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * T));
}

void BM_PartialSort(benchmark::State& state) {
  const auto T = static_cast<std::size_t>(state.range(0));
  const select_input in(T);
  std::vector<std::uint32_t> idx(T);
  for (auto _ : state) {
    for (std::size_t i = 0; i < T; ++i) idx[i] = static_cast<std::uint32_t>(i);
    std::partial_sort(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(T / 4), idx.end(),
                      [&](std::uint32_t a, std::uint32_t b) {
                        const auto ka = infokv::detail::score_key(in.scores[a]), kb = infokv::detail::score_key(in.scores[b]);
                        if (ka != kb) return ka > kb;
                        return in.positions[a] > in.positions[b];
                      });
    benchmark::DoNotOptimize(idx.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * T));
}

void sizes(benchmark::internal::Benchmark* b) {
  b->ArgName("tokens")->Arg(4096)->Arg(32768)->Arg(131072)->Unit(benchmark::kMicrosecond);
}

}  // namespace

BENCHMARK_TEMPLATE(BM_TopKSelect, infokv::simd::avx512_t)->Apply(sizes);
BENCHMARK_TEMPLATE(BM_TopKSelect, infokv::simd::avx2_t)->Apply(sizes);
BENCHMARK_TEMPLATE(BM_TopKSelect, infokv::simd::scalar_t)->Apply(sizes);
BENCHMARK(BM_RadixSelect)->Apply(sizes);
BENCHMARK(BM_NthElement)->Apply(sizes);
BENCHMARK(BM_PartialSort)->Apply(sizes);
BENCHMARK_MAIN();
