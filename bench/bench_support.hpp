// SPDX-License-Identifier: Apache-2.0
// What every benchmark binary shares: the model shapes of the issue, the machine's own limits
// measured in the same binary and run (stream-read and memcpy bandwidth over buffers larger than
// the last-level cache), deterministic fills, and ISA names for benchmark labels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include <sys/mman.h>

#include <cstdlib>
#include <new>

#include <benchmark/benchmark.h>

#include <infokv/infokv.hpp>
#include <infokv/simd/kernels.hpp>

namespace infokv_bench {

struct model {
  const char* name;
  infokv::model_shape shape;
};
// Llama-3.1-8B (bfloat16 cache) and SmolLM2-135M, the shapes the SIMD issue names.
inline const model kModels[] = {
    {"llama31_8b", {.num_layers = 32, .num_q_heads = 32, .num_kv_heads = 8, .head_dim = 128,
                    .hidden_size = 4096, .vocab_size = 128256}},
    {"smollm2_135m", {.num_layers = 30, .num_q_heads = 9, .num_kv_heads = 3, .head_dim = 64,
                      .hidden_size = 576, .vocab_size = 49152}},
};

/// An allocator that asks for transparent huge pages, as a serving engine does for its KV pool
/// (pages of 2 MiB keep random page-table walks out of gathers and compaction).
template <class T>
struct huge_page_allocator {
  using value_type = T;
  huge_page_allocator() = default;
  template <class U>
  huge_page_allocator(const huge_page_allocator<U>&) noexcept {}  // NOLINT
  T* allocate(std::size_t n) {
    constexpr std::size_t kHuge = 2u << 20;
    const std::size_t bytes = (n * sizeof(T) + kHuge - 1) / kHuge * kHuge;
    void* p = std::aligned_alloc(kHuge, bytes);
    if (p == nullptr) throw std::bad_alloc();
    madvise(p, bytes, MADV_HUGEPAGE);
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) noexcept { std::free(p); }
  template <class U>
  bool operator==(const huge_page_allocator<U>&) const noexcept { return true; }
};
template <class T>
using pool_vector = std::vector<T, huge_page_allocator<T>>;

/// Deterministic pseudo-random floats in [-1, 1) (a hash, so large buffers fill fast).
inline float hashed(std::uint64_t i) {
  return static_cast<float>(static_cast<double>(infokv::detail::mix64(i) >> 40) / 8388608.0 - 1.0);
}
template <class Vec>
void fill(Vec& v, std::uint64_t seed) {
  using T = typename Vec::value_type;
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = infokv::from_float<T>(hashed(seed * 0x9E3779B97F4A7C15ull + i));
}

template <class Isa>
const char* isa_name() {
  return Isa::name;
}

/// True when this CPU can run Isa's kernels. Otherwise the benchmark is marked skipped, with the
/// reason in its row, and must return before its loop: the binaries hold every ISA's kernels, and
/// one built for baseline x86-64 also runs on CPUs without AVX-512 (or AVX2).
template <class Isa>
bool cpu_runs(benchmark::State& state) {
  if (infokv::simd::cpu_supports(Isa{})) return true;
  state.SkipWithError((std::string(Isa::name) + " is not supported by this CPU (skipped)").c_str());
  return false;
}

/// The machine's read bandwidth: sum a 512 MiB buffer of 64-bit words (vectorised integer adds).
inline void BM_StreamRead(benchmark::State& state) {
  const std::size_t words = (512u << 20) / 8;
  pool_vector<std::uint64_t> buf(words, 1);
  for (auto _ : state) {
    std::uint64_t a = 0, b = 0, c = 0, d = 0;
    for (std::size_t i = 0; i < words; i += 4) {
      a += buf[i];
      b += buf[i + 1];
      c += buf[i + 2];
      d += buf[i + 3];
    }
    benchmark::DoNotOptimize(a + b + c + d);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(words * 8));
}

/// The machine's copy bandwidth: memcpy of 256 MiB (bytes counted once, as copied).
inline void BM_Memcpy(benchmark::State& state) {
  const std::size_t bytes = 256u << 20;
  pool_vector<char> a(bytes, 1), b(bytes, 2);
  for (auto _ : state) {
    std::memcpy(b.data(), a.data(), bytes);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(bytes));
}

}  // namespace infokv_bench

#define INFOKV_BENCH_MACHINE_LIMITS()                                                            \
  BENCHMARK(infokv_bench::BM_StreamRead)->Name("Limit_StreamRead")->Unit(benchmark::kMillisecond); \
  BENCHMARK(infokv_bench::BM_Memcpy)->Name("Limit_Memcpy")->Unit(benchmark::kMillisecond)
