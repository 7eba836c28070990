// SPDX-License-Identifier: Apache-2.0
// Concurrency (run under ThreadSanitizer in CI): the thread-safety rules the README and
// compressor.hpp state, exercised with real threads.
//  * One const compressor shared by many threads, each compressing its own sequences in place
//    on its own cache: every thread's result equals a single-threaded run of the same steps.
//  * Many sequences of ONE batch view compressed concurrently in plan_only mode (the view is only
//    read), the plans applied afterwards by one thread: the same plans as a sequential run.
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "../support/test_cache.hpp"
#include "infokv/infokv.hpp"

namespace {

using infokv_test::signal_source;
using infokv_test::test_cache;

const infokv::model_shape kShape{.num_layers = 2, .num_q_heads = 4, .num_kv_heads = 2, .head_dim = 8,
                                 .hidden_size = 12, .vocab_size = 48};

infokv::compress_config config(infokv::apply_mode mode) {
  infokv::compress_config cfg;
  cfg.granularity = infokv::stream_granularity::per_layer;
  cfg.capacity = 96;
  cfg.sink_tokens = 2;
  cfg.recent_tokens = 8;
  cfg.decode_budget = infokv::budget::of_tokens(32);
  cfg.slack = 8;
  cfg.apply = mode;
  return cfg;
}

infokv::infokv_policy<> policy() {
  auto p = infokv::make_infokv();
  p.attention.window = 8;
  p.attention.kernel = 3;
  p.entropy.top_k = 16;
  return p;
}

// One sequence's whole decode on its own cache; returns the positions kept per stream.
std::vector<std::vector<std::int32_t>> run_sequence(const infokv::compressor<infokv::infokv_policy<>>& comp,
                                                    std::uint64_t seed, std::size_t steps) {
  test_cache<float, infokv::layout_nhd> cache(kShape, infokv::stream_granularity::per_layer, 1, 8, 64, seed);
  auto state = comp.make_state();
  signal_source src(kShape, seed);
  for (std::size_t t = 0; t < steps; ++t) {
    std::size_t max_len = 0;
    for (std::size_t s = 0; s < cache.num_streams(); ++s) max_len = std::max(max_len, state.length(s) + 1);
    const auto sig = src.make(1, max_len);
    cache.append(0, 1, static_cast<std::int32_t>(t));
    const auto st = comp.compress(cache.view(), 0, state, sig);
    if (!st.ok()) {
      ADD_FAILURE() << st.message();
      return {};
    }
    cache.sync_after_compaction(state.last_plan());
  }
  return cache.check_contents();
}

TEST(ConcurrencyTest, OneSharedCompressorManyThreadsOwnCaches) {
  const infokv::compressor comp(policy(), config(infokv::apply_mode::in_place), kShape);
  constexpr std::size_t kThreads = 8, kSteps = 200;
  std::vector<std::vector<std::vector<std::int32_t>>> got(kThreads);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < kThreads; ++i)
    threads.emplace_back([&, i] { got[i] = run_sequence(comp, 100 + i, kSteps); });
  for (auto& t : threads) t.join();
  for (std::size_t i = 0; i < kThreads; ++i) {
    const auto want = run_sequence(comp, 100 + i, kSteps);  // the same steps, single-threaded
    ASSERT_FALSE(want.empty());
    EXPECT_EQ(got[i], want) << "thread " << i;
  }
}

TEST(ConcurrencyTest, SequencesOfOneBatchPlannedConcurrently) {
  const infokv::compressor comp(policy(), config(infokv::apply_mode::plan_only), kShape);
  constexpr std::size_t kSeqs = 8, kSteps = 60;
  // Two identical batches: one planned by 8 threads at once, one sequentially.
  test_cache<float, infokv::layout_hnd> par(kShape, infokv::stream_granularity::per_layer, kSeqs, 8, 512, 7);
  test_cache<float, infokv::layout_hnd> seq(kShape, infokv::stream_granularity::per_layer, kSeqs, 8, 512, 7);
  std::vector<infokv::sequence_state> sp, ss;
  std::vector<signal_source> src;
  for (std::size_t b = 0; b < kSeqs; ++b) {
    sp.push_back(comp.make_state());
    ss.push_back(comp.make_state());
    src.emplace_back(kShape, 500 + b);
  }
  std::size_t evictions = 0;
  for (std::size_t t = 0; t < kSteps; ++t) {
    std::vector<infokv::step_signals> sig(kSeqs);
    for (std::size_t b = 0; b < kSeqs; ++b) {
      std::size_t max_len = 0;
      for (std::size_t s = 0; s < sp[b].num_streams(); ++s) max_len = std::max(max_len, sp[b].length(s) + 1);
      sig[b] = src[b].make(1, max_len);
      par.append(b, 1, static_cast<std::int32_t>(t));
      seq.append(b, 1, static_cast<std::int32_t>(t));
    }
    const auto vp = par.view();
    std::vector<infokv::status> st(kSeqs);
    std::vector<std::thread> threads;
    for (std::size_t b = 0; b < kSeqs; ++b)
      threads.emplace_back([&, b] { st[b] = comp.compress(vp, b, sp[b], sig[b]); });
    for (auto& th : threads) th.join();
    const auto vs = seq.view();
    for (std::size_t b = 0; b < kSeqs; ++b) {
      ASSERT_TRUE(st[b].ok()) << st[b].message();
      ASSERT_TRUE(comp.compress(vs, b, ss[b], sig[b]).ok());
      ASSERT_TRUE(sp[b] == ss[b]) << "sequence " << b << " step " << t;
    }
    // The engine applies the plans one sequence at a time (truncation shifts later segments).
    for (std::size_t b = 0; b < kSeqs; ++b) {
      if (!sp[b].last_event().evicted) continue;
      ++evictions;
      infokv::apply_plan(par.view(), sp[b].last_plan());
      par.sync_after_compaction(sp[b].last_plan());
      infokv::apply_plan(seq.view(), ss[b].last_plan());
      seq.sync_after_compaction(ss[b].last_plan());
    }
  }
  EXPECT_EQ(par.check_contents(), seq.check_contents());
  EXPECT_GT(evictions, 8u);
}

}  // namespace
