// SPDX-License-Identifier: Apache-2.0
// Window attention scoring (the GEMM-shaped hot path of SnapKV / InfoKV) for one KV head: the
// G x 64 window query rows against T bfloat16 or half keys, fused with masking, softmax, the
// window / group mean; against Eigen's sgemm on the same [M x D] x [D x T] product and, on an
// AMX CPU, against a bare tile loop (the machine's bf16 peak) in the same run.
#include <Eigen/Core>

#include "bench_support.hpp"

namespace {

using infokv_bench::kModels;
constexpr std::size_t kWindow = 64;

template <class Isa, class Elem>
void BM_WindowScoring(benchmark::State& state) {
  if (!infokv_bench::cpu_runs<Isa>(state)) return;
  const auto& m = kModels[static_cast<std::size_t>(state.range(0))].shape;
  const auto T = static_cast<std::size_t>(state.range(1));
  const std::size_t D = m.head_dim, G = m.group_size(), H = m.num_kv_heads;
  using view_t = infokv::stream_view<Elem>;
  // One layer's keys, NHD pages of 16 tokens, pages in a scrambled order.
  infokv_bench::pool_vector<Elem> keys(T * H * D);
  infokv_bench::fill(keys, 1);
  std::vector<std::int32_t> pages(T / 16), pos(T), qpos(kWindow);
  for (std::size_t i = 0; i < pages.size(); ++i) pages[i] = static_cast<std::int32_t>((i * 7919) % pages.size());
  std::iota(pos.begin(), pos.end(), 0);
  for (std::size_t t = 0; t < kWindow; ++t) qpos[t] = static_cast<std::int32_t>(T - kWindow + t);
  std::vector<float> queries(kWindow * m.num_q_heads * D);
  infokv_bench::fill(queries, 2);
  std::vector<float> scratch(infokv::window_attention_scratch_floats(T, D, G * kWindow)), row(T);
  infokv::layer_context<view_t, Isa> ctx;
  ctx.kv = view_t(keys.data(), keys.data(), 16 * H * D, pages.data(), 0, T, 16, H, D);
  ctx.group_size = G;
  ctx.num_q_heads = m.num_q_heads;
  ctx.positions = pos.data();
  ctx.window_queries = queries.data();
  ctx.window_positions = qpos.data();
  ctx.window_count = kWindow;
  ctx.newest_query = kWindow - 1;
  ctx.scratch = scratch;
  for (auto _ : state) {
    benchmark::DoNotOptimize(infokv::detail::window_attention_mean_gemm(ctx, 0, kWindow, row.data()));
    benchmark::ClobberMemory();
  }
  const double flops = 2.0 * static_cast<double>(G * kWindow) * static_cast<double>(T) * static_cast<double>(D);
  state.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * T));
}

/// The parts of window scoring on the same shape, per KV head: the product alone (keys read from
/// one contiguous layer, logits into one 1,024-key chunk buffer that stays in cache, as the
/// kernel's chunks do), and the column maximum + exponentials over T x Mp logits.
template <class Isa, class Elem>
void BM_WindowLogits(benchmark::State& state) {
  if (!infokv_bench::cpu_runs<Isa>(state)) return;
  if (!infokv::simd::prepare(Isa{})) {
    state.SkipWithError("the OS refused the ISA's state (skipped)");
    return;
  }
  const auto& m = kModels[static_cast<std::size_t>(state.range(0))].shape;
  const auto T = static_cast<std::size_t>(state.range(1));
  const std::size_t D = m.head_dim, M = m.group_size() * kWindow, Mp = (M + 31) / 32 * 32;
  constexpr std::size_t kChunk = infokv::attention_key_chunk;
  infokv_bench::pool_vector<Elem> keys(T * D);
  infokv_bench::fill(keys, 1);
  std::vector<float> queries(M * D);
  infokv_bench::fill(queries, 2);
  std::vector<float> packed(infokv::simd::window_query_pack_floats(Mp, D)),
      work(infokv::simd::window_key_block_floats(D)), e(kChunk * Mp);
  infokv::simd::pack_window_queries(Isa{}, Isa{}, [&](std::size_t u) { return queries.data() + u * D; }, M, D,
                                    0.125f, packed.data(), Mp);
  for (auto _ : state) {
    for (std::size_t c = 0; c < T; c += kChunk)
      infokv::simd::window_logits(Isa{}, Isa{}, [&](std::size_t j) { return keys.data() + (c + j) * D; },
                                  std::min(kChunk, T - c), D, packed.data(), Mp, work.data(), e.data());
    benchmark::DoNotOptimize(e.data());
    benchmark::ClobberMemory();
  }
  const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(T) * static_cast<double>(D);
  state.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

template <class Isa>
void BM_WindowExp(benchmark::State& state) {
  if (!infokv_bench::cpu_runs<Isa>(state)) return;
  const auto& m = kModels[static_cast<std::size_t>(state.range(0))].shape;
  const auto T = static_cast<std::size_t>(state.range(1));
  const std::size_t M = m.group_size() * kWindow, Mp = (M + 31) / 32 * 32;
  constexpr std::size_t kChunk = infokv::attention_key_chunk;
  std::vector<float> e(kChunk * Mp), cmax(Mp), csum(Mp);
  infokv_bench::fill(e, 3);
  for (auto _ : state) {
    for (std::size_t c = 0; c < T; c += kChunk) {
      std::fill(cmax.begin(), cmax.end(), -1e30f);
      std::fill(csum.begin(), csum.end(), 0.0f);
      infokv::simd::column_max(Isa{}, e.data(), std::min(kChunk, T - c), Mp, Mp, cmax.data());
      infokv::simd::exp_sub_rows(Isa{}, e.data(), std::min(kChunk, T - c), Mp, Mp, cmax.data(), csum.data());
    }
    benchmark::DoNotOptimize(csum.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * T * Mp));
}

void BM_EigenSgemm(benchmark::State& state) {
  const auto& m = kModels[static_cast<std::size_t>(state.range(0))].shape;
  const auto T = static_cast<Eigen::Index>(state.range(1));
  const auto D = static_cast<Eigen::Index>(m.head_dim);
  const auto M = static_cast<Eigen::Index>(m.group_size() * kWindow);
  Eigen::MatrixXf q = Eigen::MatrixXf::Random(M, D), k = Eigen::MatrixXf::Random(T, D), s(M, T);
  for (auto _ : state) {
    s.noalias() = q * k.transpose();
    benchmark::DoNotOptimize(s.data());
    benchmark::ClobberMemory();
  }
  const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(T) * static_cast<double>(D);
  state.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

#if defined(__x86_64__)
/// The AMX-BF16 peak of one core: four independent 16 x 16 x 32 tile products per iteration on
/// operands that stay in tiles (no loads), FLOPs counted as 2 x 16 x 16 x 32 per product.
[[gnu::target("amx-tile,amx-bf16")]] void tile_loop(std::int64_t n, float* out) {
  infokv::simd::amx_detail::tile_config cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
  alignas(64) static std::uint16_t ones[16 * 32];
  std::fill(std::begin(ones), std::end(ones), std::uint16_t{0x3f80});
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, ones, 64);
  _tile_loadd(5, ones, 64);
  _tile_loadd(6, ones, 64);
  _tile_loadd(7, ones, 64);
  for (std::int64_t i = 0; i < n; ++i) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, out, 64);
  _tile_release();
}

void BM_AmxTilePeak(benchmark::State& state) {
  if (!infokv_bench::cpu_runs<infokv::simd::amx_t>(state)) return;
  if (!infokv::simd::prepare(infokv::simd::amx_t{})) {
    state.SkipWithError("the OS refused the AMX tile state (skipped)");
    return;
  }
  constexpr std::int64_t kIters = 100000;
  alignas(64) float out[256];
  for (auto _ : state) {
    tile_loop(kIters, out);
    benchmark::DoNotOptimize(out);
  }
  const double flops = 4.0 * kIters * 2.0 * 16 * 16 * 32;
  state.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
#endif

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"model", "tokens"})->ArgsProduct({{0, 1}, {4096, 32768, 131072}})->Unit(benchmark::kMillisecond);
}

}  // namespace

BENCHMARK(BM_EigenSgemm)->Apply(shapes);
#if defined(__x86_64__)
BENCHMARK(BM_AmxTilePeak)->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_WindowScoring, infokv::simd::amx_t, infokv::bfloat16)->Apply(shapes);
BENCHMARK_TEMPLATE(BM_WindowScoring, infokv::simd::amx_t, infokv::half)->Apply(shapes);
BENCHMARK_TEMPLATE(BM_WindowLogits, infokv::simd::amx_t, infokv::bfloat16)->Apply(shapes);
BENCHMARK_TEMPLATE(BM_WindowLogits, infokv::simd::amx_t, infokv::half)->Apply(shapes);
#endif
BENCHMARK_TEMPLATE(BM_WindowLogits, infokv::simd::avx512_t, infokv::bfloat16)->Apply(shapes);
BENCHMARK_TEMPLATE(BM_WindowLogits, infokv::simd::avx512_t, infokv::half)->Apply(shapes);
BENCHMARK_TEMPLATE(BM_WindowExp, infokv::simd::avx512_t)->Apply(shapes);
BENCHMARK_TEMPLATE(BM_WindowScoring, infokv::simd::avx512_t, infokv::bfloat16)->Apply(shapes);
BENCHMARK_TEMPLATE(BM_WindowScoring, infokv::simd::avx512_t, infokv::half)->Apply(shapes);
BENCHMARK_TEMPLATE(BM_WindowScoring, infokv::simd::avx2_t, infokv::bfloat16)->Apply(shapes);
BENCHMARK_TEMPLATE(BM_WindowScoring, infokv::simd::scalar_t, infokv::bfloat16)->ArgNames({"model", "tokens"})->Args({0, 4096})->Args({1, 4096})->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
