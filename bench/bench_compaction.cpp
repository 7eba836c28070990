// SPDX-License-Identifier: Apache-2.0
// Compaction: applying an eviction plan that keeps 25% of a layer (holes filled from the tail,
// as the compressor plans them) to a paged bfloat16 pool, NHD (one copy per slot) and HND (one
// copy per head), against memcpy bandwidth in the same run. Bytes = K and V rows moved.
#include <algorithm>

#include "bench_support.hpp"

namespace {

using infokv_bench::kModels;

template <class Layout, class Isa = infokv::simd::native_isa>
void BM_Compaction(benchmark::State& state) {
  const auto& m = kModels[static_cast<std::size_t>(state.range(0))].shape;
  const auto T = static_cast<std::size_t>(state.range(1));
  const std::size_t D = m.head_dim, H = m.num_kv_heads, ps = 16, pages = T / ps;
  infokv_bench::pool_vector<infokv::bfloat16> k(pages * ps * H * D), v(k.size());
  infokv_bench::fill(k, 6);
  infokv::bfloat16* kp[1] = {k.data()};
  infokv::bfloat16* vp[1] = {v.data()};
  std::vector<std::int32_t> indptr{0, static_cast<std::int32_t>(pages)}, indices(pages), last{16};
  for (std::size_t i = 0; i < pages; ++i) indices[i] = static_cast<std::int32_t>((i * 7919) % pages);
  infokv::paged_kv_cache_params<infokv::bfloat16> p;
  p.num_layers = 1, p.num_kv_heads = H, p.head_dim = D, p.page_size = ps;
  p.granularity = infokv::stream_granularity::per_layer, p.num_sequences = 1;
  p.key_pools = kp, p.value_pools = vp, p.pool_pages = pages;
  p.indptr = indptr.data(), p.indices = indices.data(), p.last_page_len = last.data();
  const infokv::paged_kv_cache_view<infokv::bfloat16, Layout> view(p);
  // Keep 25%: every 4th slot (pattern 0), or runs of 8 slots out of every 32 (pattern 1, as
  // when evicted and kept tokens come in runs). Holes below T/4 are filled from the survivors
  // above it, as the compressor plans them.
  const bool runs = state.range(2) != 0;
  const auto kept = [&](std::size_t i) { return runs ? i % 32 < 8 : i % 4 == 0; };
  std::vector<infokv::slot_move> moves;
  const std::size_t n = T / 4;
  std::size_t hole = 0;
  for (std::size_t src = n; src < T; ++src) {
    if (!kept(src)) continue;
    while (hole < n && kept(hole)) ++hole;
    moves.push_back({0, static_cast<std::uint32_t>(src), static_cast<std::uint32_t>(hole++)});
  }
  for (auto _ : state) {
    infokv::apply_slot_moves<Isa>(view, std::span<const infokv::slot_move>(moves));
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * moves.size() * 2 * H * D * sizeof(infokv::bfloat16)));
  state.counters["moves"] = static_cast<double>(moves.size());
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"model", "tokens", "runs"})
      ->ArgsProduct({{0, 1}, {4096, 32768, 131072}, {0, 1}})
      ->Unit(benchmark::kMicrosecond);
}

}  // namespace

INFOKV_BENCH_MACHINE_LIMITS();
BENCHMARK_TEMPLATE(BM_Compaction, infokv::layout_nhd)->Apply(shapes);
BENCHMARK_TEMPLATE(BM_Compaction, infokv::layout_hnd)->Apply(shapes);
BENCHMARK_MAIN();
