// SPDX-License-Identifier: Apache-2.0
// The soak: decode steps with compress() every step, the configuration (policy, granularity,
// budget kind and size, slack, page order) redrawn every 2,000 steps, on a small shape. Every
// 50 steps the page table is validated and every stream checked against its budget; the state's
// memory must not grow after a configuration's first eviction. INFOKV_SOAK_STEPS sets the
// number of steps (default 20,000; the README's figure is from 1,000,000). CTest also runs the
// 20,000 steps under valgrind memcheck when valgrind is installed.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "../support/test_cache.hpp"
#include "infokv/infokv.hpp"

namespace {

using infokv_test::signal_source;
using infokv_test::test_cache;

const infokv::model_shape kShape{.num_layers = 2, .num_q_heads = 4, .num_kv_heads = 2, .head_dim = 8,
                                 .hidden_size = 8, .vocab_size = 32};

struct totals {
  std::size_t steps = 0, evictions = 0, pages_freed = 0, configurations = 0, checks = 0;
};

template <class Policy>
void run_configuration(const Policy& policy, std::mt19937_64& rng, std::size_t steps, totals& tot) {
  std::uniform_int_distribution<int> coin(0, 1);
  const auto g = static_cast<infokv::stream_granularity>(std::uniform_int_distribution<int>(0, 2)(rng));
  infokv::compress_config cfg;
  cfg.granularity = g;
  cfg.sink_tokens = std::uniform_int_distribution<std::size_t>(0, 4)(rng);
  cfg.recent_tokens = std::uniform_int_distribution<std::size_t>(4, 16)(rng);
  cfg.slack = std::uniform_int_distribution<std::size_t>(0, 16)(rng);
  const bool by_tokens = coin(rng) == 1;
  const std::size_t budget = std::uniform_int_distribution<std::size_t>(24, 64)(rng);
  const double ratio = std::uniform_real_distribution<double>(0.1, 0.5)(rng);
  cfg.decode_budget = by_tokens ? infokv::budget::of_tokens(budget) : infokv::budget::of_ratio(ratio);
  // Ratio budgets grow with the tokens seen: the capacity must hold every step of this run.
  cfg.capacity = by_tokens ? budget + cfg.slack + 2 : steps + 8;
  infokv::compressor comp(policy, cfg, kShape);
  ASSERT_TRUE(comp.can_implement().ok()) << comp.can_implement().message();
  auto state = comp.make_state();
  const std::size_t ps = std::uniform_int_distribution<std::size_t>(1, 16)(rng);
  const std::size_t pool = (cfg.capacity + ps) / ps * (g == infokv::stream_granularity::per_layer_head ? 2 : 1) + 2;
  test_cache<float, infokv::layout_hnd> cache(kShape, g, 1, ps, pool, rng());
  signal_source src(kShape, rng());
  std::size_t memory_after_first_eviction = 0;
  for (std::size_t t = 0; t < steps; ++t) {
    std::size_t max_len = 0;
    for (std::size_t s = 0; s < state.num_streams(); ++s) max_len = std::max(max_len, state.length(s) + 1);
    const auto sig = src.make(1, max_len);
    cache.append(0, 1, static_cast<std::int32_t>(t));
    const auto view = cache.view();
    const auto st = comp.compress(view, 0, state, sig);
    ASSERT_TRUE(st.ok()) << st.message() << " at step " << t;
    if (state.last_event().evicted) {
      ++tot.evictions;
      tot.pages_freed += state.last_event().pages_freed;
      cache.sync_after_compaction(state.last_plan());
      if (memory_after_first_eviction == 0) memory_after_first_eviction = state.memory_bytes();
    }
    if (memory_after_first_eviction != 0) {
      ASSERT_EQ(state.memory_bytes(), memory_after_first_eviction) << "the state grew at step " << t;
    }
    if (t % 50 == 0) {
      ++tot.checks;
      std::vector<std::uint64_t> bits(infokv::page_bitmap_words(cache.view()));
      ASSERT_TRUE(infokv::validate_page_table(cache.view(), bits).ok());
      const std::size_t protect = cfg.sink_tokens + std::max(cfg.recent_tokens, comp.needs().window);
      const std::size_t limit =
          std::max(protect, by_tokens ? budget : static_cast<std::size_t>(ratio * static_cast<double>(t + 1)) + 1) + cfg.slack + 1;
      for (std::size_t s = 0; s < state.num_streams(); ++s) {
        ASSERT_LE(state.length(s), limit) << "step " << t;
      }
    }
  }
  tot.steps += steps;
  ++tot.configurations;
}

TEST(SoakTest, ManyStepsChangingPoliciesAndBudgets) {
  const char* env = std::getenv("INFOKV_SOAK_STEPS");
  const std::size_t total = env != nullptr ? std::strtoull(env, nullptr, 10) : 20000;
  constexpr std::size_t kPerConfiguration = 2000;
  std::mt19937_64 rng(2026);
  totals tot;
  while (tot.steps < total) {
    const std::size_t steps = std::min(kPerConfiguration, total - tot.steps);
    auto small = [](auto p) {
      p.window = 8;
      p.kernel = 3;
      return p;
    };
    switch (std::uniform_int_distribution<int>(0, 6)(rng)) {
      case 0: {
        auto p = infokv::make_infokv();
        p.attention.window = 8;
        p.attention.kernel = 3;
        p.entropy.top_k = 16;
        run_configuration(p, rng, steps, tot);
        break;
      }
      case 1: {
        auto p = infokv::make_snapkv();
        p.scorer = small(p.scorer);
        run_configuration(p, rng, steps, tot);
        break;
      }
      case 2: run_configuration(infokv::make_h2o(), rng, steps, tot); break;
      case 3: run_configuration(infokv::make_tova(), rng, steps, tot); break;
      case 4: run_configuration(infokv::make_knorm(), rng, steps, tot); break;
      case 5: run_configuration(infokv::make_streaming_llm(), rng, steps, tot); break;
      default: run_configuration(infokv::make_random(rng()), rng, steps, tot);
    }
    if (::testing::Test::HasFatalFailure()) return;
  }
  std::printf("soak: %zu steps, %zu configurations, %zu evictions, %zu pages freed, %zu table checks\n", tot.steps,
              tot.configurations, tot.evictions, tot.pages_freed, tot.checks);
  EXPECT_GT(tot.evictions, tot.steps / 100);
}

}  // namespace
