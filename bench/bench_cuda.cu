// SPDX-License-Identifier: Apache-2.0
// The CUDA kernels on Llama-3.1-8B shapes, timed with CUDA events (Google Benchmark's manual
// time), each reported against a limit of the same device measured in the same run: the
// device-to-device copy bandwidth (bytes read + written per second) for the memory-bound kernels,
// and the FP32 FMA throughput of a register-only kernel for window attention (the kernels use
// plain FP32 FMA, not tensor cores). Without a device the binary prints why and exits with 77
// (CTest: skipped).
#include <benchmark/benchmark.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <random>
#include <vector>

#include <infokv/cuda/compaction.cuh>
#include <infokv/cuda/entropy.cuh>
#include <infokv/cuda/layer_evolution.cuh>
#include <infokv/cuda/top_k.cuh>
#include <infokv/cuda/window_attention.cuh>

namespace {

#define BENCH_CUDA(expr)                                                                   \
  do {                                                                                     \
    const cudaError_t e_ = (expr);                                                         \
    if (e_ != cudaSuccess) {                                                               \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_)); \
      std::exit(1);                                                                        \
    }                                                                                      \
  } while (false)
#define BENCH_OK(expr)                                                                            \
  do {                                                                                            \
    const ::infokv::status s_ = (expr);                                                           \
    if (!s_.ok()) {                                                                               \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, s_.message().data());    \
      std::exit(1);                                                                               \
    }                                                                                             \
  } while (false)

std::vector<void*> g_allocations;  // freed by the free_on_exit of the benchmark that made them

/// Frees, at the end of a benchmark function, everything device_alloc gave it (Google Benchmark
/// calls each function several times while it sizes the iteration count).
struct free_on_exit {
  std::size_t mark = g_allocations.size();
  free_on_exit() = default;
  free_on_exit(const free_on_exit&) = delete;
  free_on_exit& operator=(const free_on_exit&) = delete;
  ~free_on_exit() {
    while (g_allocations.size() > mark) {
      cudaFree(g_allocations.back());
      g_allocations.pop_back();
    }
  }
};

template <class T>
T* device_alloc(std::size_t n) {
  void* p = nullptr;
  BENCH_CUDA(cudaMalloc(&p, std::max<std::size_t>(n, 1) * sizeof(T)));
  g_allocations.push_back(p);
  return static_cast<T*>(p);
}
template <class T>
T* device_copy(const std::vector<T>& v) {
  T* p = device_alloc<T>(v.size());
  BENCH_CUDA(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return p;
}

__device__ float hash_uniform(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return static_cast<float>(x >> 40) * (1.0f / 16777216.0f);
}
/// Approximately normal(0, scale) values (Irwin-Hall of four uniforms), a function of (seed, i).
template <class T>
__global__ void fill_kernel(T* p, std::size_t n, unsigned seed, float scale) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::uint64_t base = (static_cast<std::uint64_t>(seed) << 40) ^ (i * 4);
    const float u = hash_uniform(base) + hash_uniform(base + 1) + hash_uniform(base + 2) + hash_uniform(base + 3);
    p[i] = infokv::from_float<T>((u - 2.0f) * 1.7320508f * scale);
  }
}
template <class T>
T* device_random(std::size_t n, float scale, unsigned seed) {
  T* p = device_alloc<T>(n);
  fill_kernel<T><<<1024, 256>>>(p, n, seed, scale);
  BENCH_CUDA(cudaGetLastError());
  return p;
}

/// Times `launch` with CUDA events around each iteration.
template <class F>
double run_timed(benchmark::State& state, F&& launch) {
  cudaEvent_t a, b;
  BENCH_CUDA(cudaEventCreate(&a));
  BENCH_CUDA(cudaEventCreate(&b));
  launch();  // warm-up
  BENCH_CUDA(cudaDeviceSynchronize());
  double total = 0.0;
  for (auto _ : state) {
    BENCH_CUDA(cudaEventRecord(a));
    launch();
    BENCH_CUDA(cudaEventRecord(b));
    BENCH_CUDA(cudaEventSynchronize(b));
    float ms = 0.0f;
    BENCH_CUDA(cudaEventElapsedTime(&ms, a, b));
    state.SetIterationTime(ms * 1e-3);
    total += ms * 1e-3;
  }
  BENCH_CUDA(cudaEventDestroy(a));
  BENCH_CUDA(cudaEventDestroy(b));
  return total / static_cast<double>(state.iterations());
}

// ---- The device's own limits, measured first -------------------------------------------------

double g_copy_gbps = 0.0;     // device-to-device copy, bytes read + written
double g_fma_tflops = 0.0;    // FP32 FMA, 2 FLOP each

__global__ void fma_peak_kernel(float* out, int iters) {
  float a[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) a[i] = static_cast<float>(threadIdx.x + i);
  const float b = 1.0000001f, c = 1e-7f;
  for (int it = 0; it < iters; ++it)
#pragma unroll
    for (int i = 0; i < 8; ++i) a[i] = fmaf(a[i], b, c);
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < 8; ++i) s += a[i];
  if (s == 12345.678f) out[0] = s;  // keeps the chains alive
}

void Limit_DeviceCopy(benchmark::State& state) {
  free_on_exit frees;
  const std::size_t bytes = std::size_t{2} << 30;
  char* src = device_alloc<char>(bytes);
  char* dst = device_alloc<char>(bytes);
  BENCH_CUDA(cudaMemset(src, 1, bytes));
  const double t = run_timed(state, [&] { BENCH_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice)); });
  g_copy_gbps = 2.0 * static_cast<double>(bytes) / t / 1e9;
  state.counters["GBps"] = g_copy_gbps;
}

void Limit_Fp32Fma(benchmark::State& state) {
  free_on_exit frees;
  int sms = 0;
  BENCH_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  float* out = device_alloc<float>(1);
  const int blocks = sms * 8, threads = 256, iters = 4096;
  const double t = run_timed(state, [&] { fma_peak_kernel<<<blocks, threads>>>(out, iters); });
  g_fma_tflops = 2.0 * 8.0 * iters * blocks * threads / t / 1e12;
  state.counters["TFLOPs"] = g_fma_tflops;
}

void report_bytes(benchmark::State& state, double bytes, double t) {
  const double gbps = bytes / t / 1e9;
  state.counters["GBps"] = gbps;
  if (g_copy_gbps > 0.0) state.counters["of_copy"] = gbps / g_copy_gbps;
}

// ---- Llama-3.1-8B shapes ---------------------------------------------------------------------

constexpr std::size_t kLayers = 32, kKvHeads = 8, kQHeads = 32, kHeadDim = 128, kHidden = 4096;
constexpr std::size_t kPageSize = 16;

/// One layer's pools for `sequences` per_layer streams of `tokens` tokens each (pages shuffled).
template <class T>
struct layer_cache {
  T *k = nullptr, *v = nullptr;
  T** kp = nullptr;
  T** vp = nullptr;
  std::int32_t *indptr = nullptr, *indices = nullptr, *last = nullptr;
  infokv::paged_kv_cache_params<T> p;

  layer_cache(std::size_t layers, std::size_t sequences, std::size_t tokens, unsigned seed, bool fill) {
    const std::size_t pages_per = (tokens + kPageSize - 1) / kPageSize, pages = sequences * pages_per;
    const std::size_t elems = pages * kPageSize * kKvHeads * kHeadDim;
    std::vector<T*> hk, hv;
    for (std::size_t l = 0; l < layers; ++l) {
      hk.push_back(fill ? device_random<T>(elems, 1.0f, seed + static_cast<unsigned>(l)) : device_alloc<T>(elems));
      hv.push_back(device_alloc<T>(elems));
      if (!fill) BENCH_CUDA(cudaMemset(hk.back(), 0, elems * sizeof(T)));
      BENCH_CUDA(cudaMemset(hv.back(), 0, elems * sizeof(T)));
    }
    kp = device_copy(hk);
    vp = device_copy(hv);
    std::vector<std::int32_t> order(pages);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), std::mt19937(seed));
    // Streams are (sequence, layer); each takes pages_per pages of its layer's pool.
    std::vector<std::int32_t> ip(sequences * layers + 1), idx, lp(sequences * layers);
    for (std::size_t s = 0; s < sequences * layers; ++s) {
      ip[s] = static_cast<std::int32_t>(idx.size());
      const std::size_t b = s / layers;
      for (std::size_t j = 0; j < pages_per; ++j) idx.push_back(order[b * pages_per + j]);
      lp[s] = static_cast<std::int32_t>(tokens - (pages_per - 1) * kPageSize);
    }
    ip.back() = static_cast<std::int32_t>(idx.size());
    indptr = device_copy(ip);
    indices = device_copy(idx);
    last = device_copy(lp);
    p.num_layers = layers;
    p.num_kv_heads = kKvHeads;
    p.head_dim = kHeadDim;
    p.page_size = kPageSize;
    p.granularity = infokv::stream_granularity::per_layer;
    p.num_sequences = sequences;
    p.key_pools = kp;
    p.value_pools = vp;
    p.pool_pages = pages;
    p.indptr = indptr;
    p.indices = indices;
    p.last_page_len = last;
  }
};

template <class T, class Layout>
void BM_WindowAttention(benchmark::State& state) {
  free_on_exit frees;
  const std::size_t tokens = static_cast<std::size_t>(state.range(0)), batch = static_cast<std::size_t>(state.range(1));
  constexpr std::size_t W = 64;
  layer_cache<T> c(1, batch, tokens, 1, true);
  const infokv::paged_kv_cache_view<T, Layout> view(c.p);
  std::vector<std::int32_t> streams(batch), qpos(batch * W);
  std::iota(streams.begin(), streams.end(), 0);
  for (std::size_t b = 0; b < batch; ++b)
    for (std::size_t t = 0; t < W; ++t) qpos[b * W + t] = static_cast<std::int32_t>(tokens - W + t);
  infokv::cuda::window_attention_args a;
  a.streams = device_copy(streams);
  a.batch = batch;
  a.queries = device_random<float>(batch * W * kQHeads * kHeadDim, 1.0f, 2);
  a.query_positions = device_copy(qpos);
  a.window = W;
  a.num_q_heads = kQHeads;
  a.max_tokens = tokens;
  a.scores = device_alloc<float>(batch * kKvHeads * tokens);
  const std::size_t ws_bytes = infokv::cuda::window_attention_workspace_bytes(view, a);
  void* ws = device_alloc<char>(ws_bytes);
  const double t = run_timed(state, [&] { BENCH_OK(infokv::cuda::window_attention(view, a, {ws, ws_bytes}, nullptr)); });
  // Two GEMM passes of T x (W x group) x D per KV head.
  const double flops = 2.0 * 2.0 * static_cast<double>(batch * tokens) * W * kQHeads * kHeadDim;
  state.counters["TFLOPs"] = flops / t / 1e12;
  if (g_fma_tflops > 0.0) state.counters["of_fma_peak"] = flops / t / 1e12 / g_fma_tflops;
  state.counters["workspace_MiB"] = static_cast<double>(ws_bytes) / (1 << 20);
}

template <class T>
void BM_TopKEntropy(benchmark::State& state) {
  free_on_exit frees;
  const std::size_t rows = static_cast<std::size_t>(state.range(0)), vocab = static_cast<std::size_t>(state.range(1));
  T* logits = device_random<T>(rows * vocab, 3.0f, 4);
  float* out = device_alloc<float>(rows);
  const std::size_t ws_bytes = infokv::cuda::top_k_entropy_workspace_bytes(rows, vocab, 256);
  void* ws = device_alloc<char>(ws_bytes);
  const double t = run_timed(state, [&] {
    BENCH_OK(infokv::cuda::top_k_entropy(logits, rows, vocab, vocab, 256, out, {ws, ws_bytes}, nullptr));
  });
  report_bytes(state, static_cast<double>(rows * vocab * sizeof(T)), t);  // the row read once
  state.counters["us_per_row"] = t * 1e6 / static_cast<double>(rows);
}

template <class T>
void BM_LayerEvolution(benchmark::State& state) {
  free_on_exit frees;
  const std::size_t tokens = static_cast<std::size_t>(state.range(0));
  T* hidden = device_random<T>(kLayers * tokens * kHidden, 1.0f, 5);
  float* out = device_alloc<float>(kLayers * tokens);
  const double t = run_timed(state, [&] { BENCH_OK(infokv::cuda::layer_evolution(hidden, kLayers, tokens, kHidden, out, tokens, nullptr)); });
  report_bytes(state, static_cast<double>(kLayers * tokens * kHidden * sizeof(T)), t);
}

void BM_SelectTopK(benchmark::State& state) {
  free_on_exit frees;
  const std::size_t rows = static_cast<std::size_t>(state.range(0)), n = static_cast<std::size_t>(state.range(1));
  float* scores = device_random<float>(rows * n, 1.0f, 6);
  std::vector<std::int32_t> pos(rows * n);
  for (std::size_t r = 0; r < rows; ++r) std::iota(pos.begin() + static_cast<std::ptrdiff_t>(r * n), pos.begin() + static_cast<std::ptrdiff_t>((r + 1) * n), 0);
  infokv::cuda::select_args a;
  a.scores = scores;
  a.positions = device_copy(pos);
  a.lengths = device_copy(std::vector<std::int32_t>(rows, static_cast<std::int32_t>(n)));
  a.keep_counts = device_copy(std::vector<std::int32_t>(rows, static_cast<std::int32_t>(n / 4)));
  a.rows = rows;
  a.ld = n;
  a.keep = device_alloc<std::uint32_t>(rows * n);
  a.kept = device_alloc<std::int32_t>(rows);
  const double t = run_timed(state, [&] { BENCH_OK(infokv::cuda::select_top_k(a, nullptr)); });
  report_bytes(state, static_cast<double>(rows * n * 8), t);  // scores + positions read once
  state.counters["us_per_row"] = t * 1e6 / static_cast<double>(rows);
}

/// Per layer stream, a sorted random keep list of tokens / 4 slots, as select_top_k writes them
/// ([kLayers][tokens], device), with the kept counts and the stream index of each row.
struct random_keep_lists {
  std::uint32_t* keep = nullptr;
  std::int32_t* kept = nullptr;
  std::int32_t* streams = nullptr;
  std::size_t keep_n = 0;
  random_keep_lists(std::size_t tokens, unsigned seed) : keep_n(tokens / 4) {
    std::vector<std::uint32_t> h(kLayers * tokens);
    std::vector<std::int32_t> s(kLayers);
    std::mt19937 rng(seed);
    for (std::size_t l = 0; l < kLayers; ++l) {
      std::vector<std::uint32_t> all(tokens);
      std::iota(all.begin(), all.end(), 0u);
      std::shuffle(all.begin(), all.end(), rng);
      std::sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(keep_n));
      std::copy_n(all.begin(), keep_n, h.begin() + static_cast<std::ptrdiff_t>(l * tokens));
      s[l] = static_cast<std::int32_t>(l);
    }
    keep = device_copy(h);
    kept = device_copy(std::vector<std::int32_t>(kLayers, static_cast<std::int32_t>(keep_n)));
    streams = device_copy(s);
  }
};

/// Compaction of all 32 layers of one sequence (per_layer streams), keeping a random 25%.
template <class Layout>
void BM_Compaction(benchmark::State& state) {
  free_on_exit frees;
  using T = infokv::bfloat16;
  const std::size_t tokens = static_cast<std::size_t>(state.range(0));
  layer_cache<T> c(kLayers, 1, tokens, 7, false);
  const infokv::paged_kv_cache_view<T, Layout> view(c.p);
  const random_keep_lists lists(tokens, 8);
  const std::size_t keep_n = lists.keep_n;
  auto* moves = device_alloc<infokv::slot_move>(kLayers * tokens);
  std::int32_t* counts = device_alloc<std::int32_t>(kLayers);
  BENCH_OK(infokv::cuda::plan_moves(lists.keep, lists.kept, lists.streams, kLayers, tokens, moves, counts, nullptr));
  std::vector<std::int32_t> h_counts(kLayers);
  BENCH_CUDA(cudaMemcpy(h_counts.data(), counts, kLayers * sizeof(std::int32_t), cudaMemcpyDeviceToHost));
  const double total_moves = std::accumulate(h_counts.begin(), h_counts.end(), 0.0);
  const infokv::cuda::move_list list{moves, counts, kLayers, tokens, keep_n};
  const double t = run_timed(state, [&] { BENCH_OK(infokv::cuda::apply_slot_moves(view, list, nullptr)); });
  // Each move reads and writes one K and one V row of 8 heads x 128 dims.
  report_bytes(state, total_moves * 2.0 * 2.0 * kKvHeads * kHeadDim * sizeof(T), t);
  state.counters["moves"] = total_moves;
}

void BM_PlanMoves(benchmark::State& state) {
  free_on_exit frees;
  const std::size_t tokens = static_cast<std::size_t>(state.range(0));
  const random_keep_lists lists(tokens, 9);
  auto* moves = device_alloc<infokv::slot_move>(kLayers * tokens);
  std::int32_t* counts = device_alloc<std::int32_t>(kLayers);
  const double t = run_timed(state, [&] { BENCH_OK(infokv::cuda::plan_moves(lists.keep, lists.kept, lists.streams, kLayers, tokens, moves, counts, nullptr)); });
  state.counters["us_per_stream"] = t * 1e6 / kLayers;
}

}  // namespace

// Limits first (benchmarks run in registration order), then the kernels.
BENCHMARK(Limit_DeviceCopy)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(Limit_Fp32Fma)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_WindowAttention<infokv::bfloat16, infokv::layout_nhd>)
    ->ArgNames({"tokens", "batch"})->Args({4096, 8})->Args({32768, 1})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_WindowAttention<infokv::bfloat16, infokv::layout_hnd>)
    ->ArgNames({"tokens", "batch"})->Args({4096, 8})->Args({32768, 1})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_WindowAttention<float, infokv::layout_nhd>)
    ->ArgNames({"tokens", "batch"})->Args({32768, 1})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TopKEntropy<infokv::bfloat16>)
    ->ArgNames({"rows", "vocab"})->Args({1, 128256})->Args({64, 128256})->Args({64, 49152})->Args({1, 152064})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TopKEntropy<float>)
    ->ArgNames({"rows", "vocab"})->Args({64, 128256})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_LayerEvolution<infokv::bfloat16>)->ArgName("tokens")->Arg(1)->Arg(512)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_LayerEvolution<float>)->ArgName("tokens")->Arg(512)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SelectTopK)->ArgNames({"rows", "tokens"})->Args({1, 32768})->Args({256, 32768})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Compaction<infokv::layout_nhd>)->ArgName("tokens")->Arg(32768)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Compaction<infokv::layout_hnd>)->ArgName("tokens")->Arg(32768)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_PlanMoves)->ArgName("tokens")->Arg(32768)->UseManualTime()->Unit(benchmark::kMicrosecond);

int main(int argc, char** argv) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: the CUDA benchmarks were built but not run\n");
    return 77;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) benchmark::AddCustomContext("device", prop.name);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
