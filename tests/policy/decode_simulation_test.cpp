// SPDX-License-Identifier: Apache-2.0
// A 10,000-step decode with random signals: compress() every step, invariants checked after every
// step, and the figures (evictions, pages freed, peak vs full-cache memory) recorded.
#include <cstdio>
#include <set>

#include <gtest/gtest.h>

#include "../support/test_cache.hpp"
#include "infokv/infokv.hpp"

namespace {

TEST(DecodeSimulationTest, TenThousandStepsKeepEveryInvariant) {
  const infokv::model_shape shape{.num_layers = 2, .num_q_heads = 4, .num_kv_heads = 2, .head_dim = 8,
                                  .hidden_size = 16, .vocab_size = 64};
  infokv::compress_config cfg;
  cfg.granularity = infokv::stream_granularity::per_layer;
  cfg.capacity = 256;
  cfg.sink_tokens = 4;
  cfg.recent_tokens = 16;
  cfg.decode_budget = infokv::budget::of_tokens(96);
  cfg.slack = 32;
  auto pol = infokv::make_infokv();
  pol.attention.window = 16;
  pol.attention.kernel = 5;
  pol.entropy.top_k = 32;
  infokv::compressor comp(pol, cfg, shape);
  constexpr std::size_t kPageSize = 16, kSteps = 10000;
  infokv_test::test_cache<float, infokv::layout_nhd> cache(shape, cfg.granularity, 1, kPageSize, 64, 42);
  auto st = comp.make_state();
  infokv_test::signal_source src(shape, 9);
  std::size_t evictions = 0, pages_freed = 0, peak_pages = 0;
  std::vector<std::set<std::int32_t>> alive(cache.num_streams());
  std::size_t state_bytes = 0;  // taken after the first eviction sized the page-check bitmap
  for (std::size_t t = 0; t < kSteps; ++t) {
    std::size_t max_len = 0;
    for (std::size_t s = 0; s < st.num_streams(); ++s) max_len = std::max(max_len, st.length(s) + 1);
    const auto sig = src.make(1, max_len);
    cache.append(0, 1, static_cast<std::int32_t>(t));
    peak_pages = std::max(peak_pages, cache.pages_in_use());
    ASSERT_TRUE(comp.compress(cache.view(), 0, st, sig).ok()) << "step " << t;
    cache.sync_after_compaction(st.last_plan());
    evictions += st.last_event().evicted;
    if (evictions == 1 && state_bytes == 0) state_bytes = st.memory_bytes();
    pages_freed += st.last_event().pages_freed;
    const auto kept = cache.check_contents();
    for (std::size_t s = 0; s < cache.num_streams(); ++s) {
      ASSERT_LE(kept[s].size(), 96u + 32u);
      if (st.last_event().evicted) {
        ASSERT_EQ(kept[s].size(), 96u);
      }
      const std::set<std::int32_t> now(kept[s].begin(), kept[s].end());
      for (std::int32_t p = 0; p < 4 && static_cast<std::size_t>(p) <= t; ++p) ASSERT_TRUE(now.count(p));
      for (std::size_t p = t + 1 - std::min<std::size_t>(16, t + 1); p <= t; ++p)
        ASSERT_TRUE(now.count(static_cast<std::int32_t>(p)));
      for (std::int32_t p : now)
        if (static_cast<std::size_t>(p) != t) {
          ASSERT_TRUE(alive[s].count(p)) << "resurrected " << p;
        }
      alive[s] = now;
    }
  }
  ASSERT_EQ(st.memory_bytes(), state_bytes) << "state memory must not grow with steps";
  const std::size_t full_pages = cache.num_streams() * ((kSteps + kPageSize - 1) / kPageSize);
  const double page_bytes = static_cast<double>(cache.page_bytes());
  std::printf("decode simulation: %zu steps, %zu evictions, %zu pages freed, peak %zu pages (%.1f KiB) vs "
              "full cache %zu pages (%.1f KiB): %.1fx less KV memory; state %zu bytes\n",
              kSteps, evictions, pages_freed, peak_pages, static_cast<double>(peak_pages) * page_bytes / 1024.0, full_pages,
              static_cast<double>(full_pages) * page_bytes / 1024.0, static_cast<double>(full_pages) / static_cast<double>(peak_pages),
              state_bytes);
  RecordProperty("evictions", static_cast<int>(evictions));
  RecordProperty("pages_freed", static_cast<int>(pages_freed));
  RecordProperty("peak_pages", static_cast<int>(peak_pages));
  RecordProperty("full_cache_pages", static_cast<int>(full_pages));
  // 32 tokens of slack between evictions: one eviction per 33 steps once the budget is reached.
  EXPECT_EQ(evictions, (kSteps - 128 - 1) / 33 + 1);
  EXPECT_LE(peak_pages, cache.num_streams() * ((96 + 32 + kPageSize - 1) / kPageSize + 1));
}

}  // namespace
