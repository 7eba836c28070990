// SPDX-License-Identifier: Apache-2.0
// Budgets, schedules and top-k selection.
#include <algorithm>
#include <numeric>
#include <set>
#include <vector>

#include <gtest/gtest.h>

#include "../support/test_cache.hpp"
#include "infokv/infokv.hpp"

namespace {

TEST(BudgetTest, RatioRoundsDownLikeKvpress) {
  EXPECT_EQ(infokv::budget::of_ratio(0.25).keep_for(1001), 250u);  // int(1001 * 0.25)
  EXPECT_EQ(infokv::budget::of_ratio(1.0).keep_for(7), 7u);
  EXPECT_EQ(infokv::budget::of_tokens(64).keep_for(10000), 64u);
}

TEST(ApportionTest, ExactTotalsWithinBounds) {
  const std::vector<double> w{1, 2, 3, 0};
  const std::vector<std::size_t> lo{1, 1, 1, 1}, hi{100, 100, 5, 100};
  std::vector<std::size_t> out(4);
  std::vector<double> scratch(4);
  ASSERT_TRUE(infokv::apportion(w, 40, lo, hi, out, scratch).ok());
  EXPECT_EQ(std::accumulate(out.begin(), out.end(), std::size_t{0}), 40u);
  EXPECT_EQ(out[2], 5u);  // capped; its share went to the others in proportion
  EXPECT_EQ(out[3], 1u);  // zero weight keeps its floor
  // The free items share 40 - 5 - 1 = 34 as 1 : 2 -> 11.33 : 22.67 -> 11 : 23 (largest remainder).
  EXPECT_EQ(out[0], 11u);
  EXPECT_EQ(out[1], 23u);
  // Proportional when no bound binds.
  const std::vector<double> w2{1, 1, 2};
  const std::vector<std::size_t> lo2{0, 0, 0}, hi2{100, 100, 100};
  std::vector<std::size_t> out2(3);
  ASSERT_TRUE(infokv::apportion(w2, 40, lo2, hi2, out2, scratch).ok());
  EXPECT_EQ(out2, (std::vector<std::size_t>{10, 10, 20}));
  EXPECT_EQ(infokv::apportion(w, 3, lo, hi, out, scratch).code(), infokv::errc::invalid_budget);
}

TEST(PyramidTest, KvpressBudgetsDecreaseLinearlyAndSumToTheUniformTotal) {
  std::vector<double> w(8);
  infokv::pyramid_budgets(8, 16384, 2048, 64, 20.0, w);
  for (std::size_t l = 1; l < 8; ++l) EXPECT_LT(w[l], w[l - 1]);
  EXPECT_NEAR(std::accumulate(w.begin(), w.end(), 0.0), 8.0 * 2048, 1e-6);
  EXPECT_NEAR(w[7], 2048.0 / 20, 1e-9);         // min_num = n_kept / beta
  EXPECT_NEAR(w[0], 2 * 2048.0 - 2048.0 / 20, 1e-9);  // max_num = 2 n_kept - min_num
  // kvpress falls back to uniform when min_num < window (here 1024 / 20 < 64).
  infokv::pyramid_budgets(8, 16384, 1024, 64, 20.0, w);
  for (double x : w) EXPECT_EQ(x, 1024.0);
  // max_num capped at T - w.
  infokv::pyramid_budgets(4, 3000, 2048, 64, 20.0, w);
  EXPECT_NEAR(w[0], 3000.0 - 64, 1e-9);
  EXPECT_NEAR(w[3], 2 * 2048.0 - (3000.0 - 64), 1e-9);
}

TEST(TopKTest, DeterministicTiesPreferNewerAndNanIsLowest) {
  const std::vector<float> s{1.0f, 2.0f, std::nanf(""), 2.0f, 1.0f};
  const std::vector<std::int32_t> pos{0, 1, 2, 3, 4};
  std::vector<std::uint32_t> idx(5);
  infokv::select_top_k(s, pos, 3, idx);
  std::vector<std::uint32_t> top(idx.begin(), idx.begin() + 3);
  std::sort(top.begin(), top.end());
  EXPECT_EQ(top, (std::vector<std::uint32_t>{1, 3, 4}));
}

// Schedules through the compressor: exact totals, floors, per-stream protection.
TEST(ScheduleTest, PyramidAdaptiveAndAdaKvKeepExactTotals) {
  const infokv::model_shape shape{.num_layers = 4, .num_q_heads = 4, .num_kv_heads = 2, .head_dim = 8,
                                  .hidden_size = 8, .vocab_size = 16};
  for (auto kind : {infokv::budget_schedule::pyramid, infokv::budget_schedule::infokv_adaptive,
                    infokv::budget_schedule::adakv}) {
    infokv::compress_config cfg;
    cfg.granularity = kind == infokv::budget_schedule::adakv ? infokv::stream_granularity::per_layer_head
                                                             : infokv::stream_granularity::per_layer;
    cfg.capacity = 128;
    cfg.sink_tokens = 2;
    cfg.recent_tokens = 4;
    cfg.prefill_budget = infokv::budget::of_tokens(20);
    cfg.schedule.kind = kind;
    cfg.schedule.pyramid_beta = 2.0;  // min_num = 20 / 2 >= window 4: the pyramid applies (kvpress rule)
    auto pol = infokv::make_infokv();
    pol.attention.window = 4;
    pol.attention.kernel = 3;
    pol.entropy.top_k = 8;
    infokv::compressor comp(pol, cfg, shape);
    ASSERT_TRUE(comp.can_implement().ok());
    infokv_test::test_cache<float, infokv::layout_nhd> cache(shape, cfg.granularity, 1, 8, 64, 1);
    auto st = comp.make_state();
    infokv_test::signal_source src(shape, 2);
    const auto sig = src.make(100, 100);
    cache.append(0, 100, 0);
    ASSERT_TRUE(comp.compress_prefill(cache.view(), 0, st, sig).ok());
    cache.sync_after_compaction(st.last_plan());
    const auto kept = cache.check_contents();
    std::size_t total = 0;
    std::vector<std::size_t> per_stream;
    for (const auto& k : kept) {
      total += k.size();
      per_stream.push_back(k.size());
      const std::set<std::int32_t> s(k.begin(), k.end());
      for (std::int32_t p : {0, 1, 96, 97, 98, 99}) EXPECT_TRUE(s.count(p)) << "protected " << p;
    }
    EXPECT_EQ(total, cache.num_streams() * 20u) << static_cast<int>(kind);
    if (kind == infokv::budget_schedule::pyramid) {
      // kvpress budgets for n_kept 20, beta 2, 4 layers: 30, 23.33, 16.67, 10.
      EXPECT_EQ(per_stream, (std::vector<std::size_t>{30, 23, 17, 10}));
    } else if (kind == infokv::budget_schedule::adakv) {
      for (std::size_t l = 0; l < 4; ++l) EXPECT_EQ(per_stream[2 * l] + per_stream[2 * l + 1], 40u);
      for (std::size_t n : per_stream) EXPECT_GE(n, 4u);  // floor int(20 * 0.2)
    }
  }
}

}  // namespace

namespace {

// Scores with many ties across tokens, and across heads at even positions, to exercise AdaKV's
// tie order (newer position, then lower head).
constexpr std::size_t tied_score(std::size_t pos, std::size_t head) { return (pos / 3) % 5 + (pos % 5 == 0 ? head : 0); }
struct tied_scorer {
  [[nodiscard]] constexpr infokv::observation_needs needs() const noexcept { return {}; }
  template <infokv::kv_view View, class Isa>
  [[nodiscard]] infokv::status score(const infokv::layer_context<View, Isa>& ctx, infokv::score_matrix out) const noexcept {
    for (std::size_t h = 0; h < out.heads; ++h)
      for (std::size_t i = 0; i < ctx.num_tokens(); ++i)
        out(h, i) = static_cast<float>(tied_score(static_cast<std::size_t>(ctx.positions[i]), ctx.kv_head_offset + h));
    return {};
  }
};

// AdaKV over 2 x 1,100 candidates (the fast selection path) against a direct computation of its
// rule: protected and each head's top 20% first, then the global top by score, newer position,
// lower head.
TEST(ScheduleTest, AdaKvSelectsExactlyByItsRule) {
  const infokv::model_shape shape{.num_layers = 2, .num_q_heads = 2, .num_kv_heads = 2, .head_dim = 8};
  infokv::compress_config cfg;
  cfg.granularity = infokv::stream_granularity::per_layer_head;
  cfg.capacity = 1200;
  cfg.sink_tokens = 2;
  cfg.recent_tokens = 4;
  cfg.prefill_budget = infokv::budget::of_tokens(200);
  cfg.decode_budget = infokv::budget::of_tokens(200);
  cfg.schedule.kind = infokv::budget_schedule::adakv;
  infokv::compressor comp(infokv::scorer_policy<tied_scorer>{}, cfg, shape);
  infokv_test::test_cache<float, infokv::layout_nhd> cache(shape, cfg.granularity, 1, 16, 200, 1);
  auto st = comp.make_state();
  const std::size_t T = 1100, H = 2;
  cache.append(0, T, 0);
  infokv::step_signals sig;
  sig.num_tokens = T;
  ASSERT_TRUE(comp.compress_prefill(cache.view(), 0, st, sig).ok());
  cache.sync_after_compaction(st.last_plan());
  const auto kept = cache.check_contents();
  for (std::size_t l = 0; l < 2; ++l) {
    struct cand {
      double score;
      std::int32_t pos;
      std::size_t head;
    };
    std::vector<cand> all;
    for (std::size_t h = 0; h < H; ++h) {
      std::vector<cand> mine;
      for (std::int32_t p = 0; p < static_cast<std::int32_t>(T); ++p)
        mine.push_back({static_cast<double>(tied_score(static_cast<std::size_t>(p), h)), p, h});
      const auto better = [](const cand& a, const cand& b) {
        if (a.score != b.score) return a.score > b.score;
        if (a.pos != b.pos) return a.pos > b.pos;
        return a.head < b.head;
      };
      std::sort(mine.begin(), mine.end(), better);
      for (std::size_t r = 0; r < mine.size(); ++r) {
        const bool prot = mine[r].pos < 2 || mine[r].pos >= static_cast<std::int32_t>(T - 4);
        if (prot || r < 40) mine[r].score = 1e9;  // protected and the head's top int(200 * 0.2)
      }
      all.insert(all.end(), mine.begin(), mine.end());
    }
    std::sort(all.begin(), all.end(), [](const cand& a, const cand& b) {
      if (a.score != b.score) return a.score > b.score;
      if (a.pos != b.pos) return a.pos > b.pos;
      return a.head < b.head;
    });
    std::vector<std::set<std::int32_t>> want(H);
    for (std::size_t r = 0; r < 400; ++r) want[all[r].head].insert(all[r].pos);
    for (std::size_t h = 0; h < H; ++h) {
      const auto& got = kept[l * H + h];
      EXPECT_EQ(std::set<std::int32_t>(got.begin(), got.end()), want[h]) << "layer " << l << " head " << h;
    }
  }
}

}  // namespace
