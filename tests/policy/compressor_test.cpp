// SPDX-License-Identifier: Apache-2.0
// compress() end to end on a paged cache: the invariants of DESIGN §4 after every step, over
// element type x layout x granularity; paged vs dense; permuted pages; in-place vs plan-only;
// InfoKV with alpha = 1 against SnapKV; a user-written scorer composed into policies.
#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <tuple>

#include <gtest/gtest.h>

#include "../support/test_cache.hpp"
#include "infokv/infokv.hpp"

namespace {

using infokv::stream_granularity;
using infokv_test::signal_source;
using infokv_test::test_cache;

const infokv::model_shape kShape{.num_layers = 3, .num_q_heads = 4, .num_kv_heads = 2, .head_dim = 8,
                                 .hidden_size = 12, .vocab_size = 40};

template <class T, class Layout, stream_granularity G>
struct combo {
  using element = T;
  using layout = Layout;
  static constexpr stream_granularity granularity = G;
};

template <class C>
class CompressorInvariantTest : public ::testing::Test {};

using Combos = ::testing::Types<
    combo<float, infokv::layout_nhd, stream_granularity::per_sequence>,
    combo<float, infokv::layout_hnd, stream_granularity::per_layer>,
    combo<float, infokv::layout_nhd, stream_granularity::per_layer_head>,
    combo<infokv::half, infokv::layout_hnd, stream_granularity::per_sequence>,
    combo<infokv::half, infokv::layout_nhd, stream_granularity::per_layer>,
    combo<infokv::half, infokv::layout_hnd, stream_granularity::per_layer_head>,
    combo<infokv::bfloat16, infokv::layout_nhd, stream_granularity::per_sequence>,
    combo<infokv::bfloat16, infokv::layout_hnd, stream_granularity::per_layer>,
    combo<infokv::bfloat16, infokv::layout_nhd, stream_granularity::per_layer_head>,
    combo<float, infokv::layout_hnd, stream_granularity::per_sequence>,
    combo<infokv::half, infokv::layout_nhd, stream_granularity::per_layer_head>,
    combo<infokv::bfloat16, infokv::layout_hnd, stream_granularity::per_layer_head>>;

struct ComboName {
  template <class C>
  static std::string GetName(int) {
    std::string s;
    if constexpr (std::is_same_v<typename C::element, float>) s += "Float";
    if constexpr (std::is_same_v<typename C::element, infokv::half>) s += "Half";
    if constexpr (std::is_same_v<typename C::element, infokv::bfloat16>) s += "Bf16";
    s += C::layout::name;
    switch (C::granularity) {
      case stream_granularity::per_sequence: s += "PerSequence"; break;
      case stream_granularity::per_layer: s += "PerLayer"; break;
      case stream_granularity::per_layer_head: s += "PerLayerHead"; break;
    }
    return s;
  }
};
TYPED_TEST_SUITE(CompressorInvariantTest, Combos, ComboName);

infokv::compress_config small_config(stream_granularity g) {
  infokv::compress_config cfg;
  cfg.granularity = g;
  cfg.capacity = 64;
  cfg.sink_tokens = 2;
  cfg.recent_tokens = 6;
  cfg.decode_budget = infokv::budget::of_tokens(20);
  cfg.prefill_budget = infokv::budget::of_tokens(16);
  cfg.slack = 3;
  return cfg;
}

infokv::infokv_policy<> small_infokv(float alpha = 0.9f) {
  auto p = infokv::make_infokv(alpha);
  p.attention.window = 6;
  p.attention.kernel = 3;
  p.entropy.top_k = 16;
  return p;
}

// Runs `steps` decode steps on two sequences through a paged cache, a dense cache and a paged
// cache with another page order, checking the invariants after each step.
TYPED_TEST(CompressorInvariantTest, InvariantsHoldEveryStepAndLayoutsAgree) {
  using T = typename TypeParam::element;
  using Layout = typename TypeParam::layout;
  constexpr auto G = TypeParam::granularity;
  const auto cfg = small_config(G);
  infokv::compressor comp(small_infokv(), cfg, kShape);
  ASSERT_TRUE(comp.can_implement().ok());
  constexpr std::size_t kSeqs = 2, kPageSize = 4, kPool = 64;
  test_cache<T, Layout> paged(kShape, G, kSeqs, kPageSize, kPool, 1);
  test_cache<T, Layout> permuted(kShape, G, kSeqs, kPageSize, kPool, 99);
  test_cache<T, Layout> dense(kShape, G, kSeqs, cfg.capacity, 0, 5, true);
  std::vector<infokv::sequence_state> st_a, st_b, st_c;
  for (std::size_t b = 0; b < kSeqs; ++b) {
    st_a.push_back(comp.make_state());
    st_b.push_back(comp.make_state());
    st_c.push_back(comp.make_state());
  }
  signal_source src(kShape, 7);
  const std::size_t spq = paged.num_streams() / kSeqs;
  std::vector<std::set<std::int32_t>> alive(paged.num_streams());
  std::size_t evictions = 0;
  for (std::size_t step = 0; step < 120; ++step) {
    const std::size_t b = step % kSeqs;
    const auto pos = static_cast<std::int32_t>(st_a[b].tokens_seen());
    std::size_t max_len = 0;
    for (std::size_t s = 0; s < spq; ++s) max_len = std::max(max_len, st_a[b].length(s) + 1);
    const auto sig = src.make(1, max_len);
    paged.append(b, 1, pos);
    permuted.append(b, 1, pos);
    dense.append(b, 1, pos);
    ASSERT_TRUE(comp.compress(paged.view(), b, st_a[b], sig).ok()) << "step " << step;
    ASSERT_TRUE(comp.compress(permuted.view(), b, st_b[b], sig).ok());
    ASSERT_TRUE(comp.compress(dense.view(), b, st_c[b], sig).ok());
    paged.sync_after_compaction(st_a[b].last_plan());
    permuted.sync_after_compaction(st_b[b].last_plan());
    dense.sync_after_compaction(st_c[b].last_plan());
    evictions += st_a[b].last_event().evicted;

    const auto got = paged.check_contents();   // kept K/V unchanged, bit for bit
    EXPECT_EQ(got, permuted.check_contents()); // physical page order changes nothing
    EXPECT_EQ(got, dense.check_contents());    // paged and dense agree
    const std::size_t seen = st_a[b].tokens_seen();
    for (std::size_t s = 0; s < spq; ++s) {
      const std::size_t gs = b * spq + s;
      // The library's state and the engine's cache agree slot by slot.
      ASSERT_EQ(st_a[b].length(s), got[gs].size());
      for (std::size_t i = 0; i < got[gs].size(); ++i) ASSERT_EQ(st_a[b].positions(s)[i], got[gs][i]);
      // Budget: never above budget + slack; exactly the budget right after an eviction.
      EXPECT_LE(got[gs].size(), 20u + cfg.slack);
      if (st_a[b].last_event().evicted) {
        EXPECT_EQ(got[gs].size(), 20u);
      }
      // Sinks and the recent window survive; nothing evicted comes back.
      const std::set<std::int32_t> now(got[gs].begin(), got[gs].end());
      EXPECT_EQ(now.size(), got[gs].size()) << "a position appears twice";
      for (std::int32_t p = 0; p < 2 && static_cast<std::size_t>(p) < seen; ++p) EXPECT_TRUE(now.count(p));
      for (std::size_t p = seen - std::min<std::size_t>(6, seen); p < seen; ++p)
        EXPECT_TRUE(now.count(static_cast<std::int32_t>(p)));
      for (std::int32_t p : now)
        if (p != pos) {
          EXPECT_TRUE(alive[gs].count(p)) << "position " << p << " resurrected";
        }
      alive[gs] = now;
    }
    // The table is a valid CSR with no page both free and referenced.
    std::vector<std::uint64_t> bits(infokv::page_bitmap_words(paged.view()));
    EXPECT_TRUE(infokv::validate_page_table(paged.view(), bits).ok());
  }
  EXPECT_GT(evictions, 10u);
}

TYPED_TEST(CompressorInvariantTest, PlanOnlyAppliedByTheEngineMatchesInPlace) {
  using T = typename TypeParam::element;
  using Layout = typename TypeParam::layout;
  constexpr auto G = TypeParam::granularity;
  auto cfg = small_config(G);
  infokv::compressor in_place(small_infokv(), cfg, kShape);
  cfg.apply = infokv::apply_mode::plan_only;
  infokv::compressor plan_only(small_infokv(), cfg, kShape);
  test_cache<T, Layout> a(kShape, G, 1, 4, 64, 3);
  test_cache<T, Layout> b(kShape, G, 1, 4, 64, 3);
  auto sa = in_place.make_state();
  auto sb = plan_only.make_state();
  signal_source src(kShape, 11);
  for (std::size_t step = 0; step < 60; ++step) {
    std::size_t max_len = 0;
    for (std::size_t s = 0; s < a.num_streams(); ++s) max_len = std::max(max_len, sa.length(s) + 1);
    const auto sig = src.make(1, max_len);
    a.append(0, 1, static_cast<std::int32_t>(step));
    b.append(0, 1, static_cast<std::int32_t>(step));
    ASSERT_TRUE(in_place.compress(a.view(), 0, sa, sig).ok());
    a.sync_after_compaction(sa.last_plan());
    auto vb = b.view();
    ASSERT_TRUE(plan_only.compress(vb, 0, sb, sig).ok());
    const auto plan = sb.last_plan();
    ASSERT_EQ(plan.streams.size(), sa.last_plan().streams.size());
    // The engine applies the plan: copy slots, truncate streams, release pages.
    for (const auto& m : plan.moves) {
      const std::size_t ps = vb.page_size();
      const std::size_t sp = vb.stream_page(m.stream, m.src / ps), dp = vb.stream_page(m.stream, m.dst / ps);
      auto& pos = b.positions();
      const std::size_t dom = vb.stream_domain(m.stream) * vb.pool_pages();
      pos[(dom + dp) * ps + m.dst % ps] = pos[(dom + sp) * ps + m.src % ps];
      const std::size_t l0 = vb.layers_per_stream() == 1 ? vb.stream_layer(m.stream) : 0;
      for (std::size_t l = l0; l < l0 + vb.layers_per_stream(); ++l)
        for (std::size_t h = 0; h < vb.heads_per_page(); ++h)
          for (T* pool : {vb.key_pool(l), vb.value_pool(l)})
            std::memcpy(pool + dp * vb.page_stride() + Layout::offset(m.dst % ps, h, ps, vb.heads_per_page(), vb.head_dim()),
                        pool + sp * vb.page_stride() + Layout::offset(m.src % ps, h, ps, vb.heads_per_page(), vb.head_dim()),
                        vb.head_dim() * sizeof(T));
    }
    // Rebuild the engine's table from the plan's new lengths.
    for (const auto& s : plan.streams) {
      const std::size_t ps = vb.page_size();
      const std::size_t pages = (s.new_length + ps - 1) / ps;
      b.last_page_len()[s.stream] = static_cast<std::int32_t>(s.new_length - (pages - 1) * ps);
    }
    if (!plan.empty()) {
      std::vector<std::int32_t> indptr{0}, indices;
      for (std::size_t s = 0; s < vb.num_streams(); ++s) {
        std::size_t keep_pages = vb.stream_num_pages(s);
        for (const auto& sp : plan.streams)
          if (sp.stream == s) keep_pages = (sp.new_length + vb.page_size() - 1) / vb.page_size();
        for (std::size_t i = 0; i < keep_pages; ++i) indices.push_back(static_cast<std::int32_t>(vb.stream_page(s, i)));
        indptr.push_back(static_cast<std::int32_t>(indices.size()));
      }
      std::copy(indptr.begin(), indptr.end(), b.indptr().begin());
      std::copy(indices.begin(), indices.end(), b.indices().begin());
    }
    b.sync_after_compaction(plan);
    EXPECT_EQ(a.check_contents(), b.check_contents()) << "step " << step;
  }
}

// Runs two compressors on identical caches and signals for `steps` decode steps and calls
// on_step(kept_a, kept_b, evicted_a) after each.
template <class A, class B, class F>
void lockstep(const A& ca, const B& cb, std::size_t steps, F&& on_step) {
  const auto g = ca.config().granularity;
  test_cache<float, infokv::layout_nhd> a(kShape, g, 1, 4, 64, 1), b(kShape, g, 1, 4, 64, 1);
  auto sa = ca.make_state();
  auto sb = cb.make_state();
  signal_source src(kShape, 3);
  for (std::size_t step = 0; step < steps; ++step) {
    std::size_t max_len = 0;
    for (std::size_t s = 0; s < a.num_streams(); ++s) max_len = std::max(max_len, sa.length(s) + 1);
    const auto sig = src.make(1, max_len);
    a.append(0, 1, static_cast<std::int32_t>(step));
    b.append(0, 1, static_cast<std::int32_t>(step));
    ASSERT_TRUE(ca.compress(a.view(), 0, sa, sig).ok());
    ASSERT_TRUE(cb.compress(b.view(), 0, sb, sig).ok());
    a.sync_after_compaction(sa.last_plan());
    b.sync_after_compaction(sb.last_plan());
    on_step(a.check_contents(), b.check_contents(), sa.last_event().evicted);
  }
}

// Every granularity: InfoKV with alpha = 1 must select exactly SnapKV's tokens.
TEST(InfoKvPolicyTest, AlphaOneGivesExactlySnapKvKeepSets) {
  for (auto g : {stream_granularity::per_sequence, stream_granularity::per_layer, stream_granularity::per_layer_head}) {
    const auto cfg = small_config(g);
    std::size_t evictions = 0, step = 0;
    lockstep(infokv::compressor(small_infokv(1.0f), cfg, kShape), infokv::compressor(infokv::make_snapkv(6, 3), cfg, kShape),
             150, [&](const auto& a, const auto& b, bool evicted) {
               ASSERT_EQ(a, b) << to_string(g) << " step " << step++;
               evictions += evicted;
             });
    EXPECT_GT(evictions, 20u);
  }
}

// With alpha < 1 the entropy term must change some decision, or the test above proves nothing.
TEST(InfoKvPolicyTest, EntropyTermChangesKeepSetsWhenAlphaBelowOne) {
  const auto cfg = small_config(stream_granularity::per_layer);
  bool differed = false;
  lockstep(infokv::compressor(small_infokv(0.5f), cfg, kShape), infokv::compressor(infokv::make_snapkv(6, 3), cfg, kShape),
           100, [&](const auto& a, const auto& b, bool) { differed = differed || a != b; });
  EXPECT_TRUE(differed);
}

// A user-written scorer: keep tokens whose first key element is largest.
struct first_element_scorer {
  [[nodiscard]] constexpr infokv::observation_needs needs() const noexcept { return {}; }
  template <infokv::kv_view View, class Isa>
  [[nodiscard]] infokv::status score(const infokv::layer_context<View, Isa>& ctx, infokv::score_matrix out) const noexcept {
    for (std::size_t h = 0; h < out.heads; ++h)
      for (std::size_t i = 0; i < ctx.num_tokens(); ++i) out(h, i) = infokv::to_float(ctx.kv.key(i, h)[0]);
    return {};
  }
};
static_assert(infokv::token_scorer<first_element_scorer, infokv::stream_view<float>>);
struct not_a_scorer {};
static_assert(!infokv::token_scorer<not_a_scorer, infokv::stream_view<float>>);

TEST(UserScorerTest, ComposesIntoScorerPolicyAndInfoKv) {
  auto cfg = small_config(stream_granularity::per_layer_head);
  cfg.sink_tokens = 0;
  cfg.recent_tokens = 1;
  cfg.slack = 0;
  cfg.decode_budget = infokv::budget::of_tokens(5);
  infokv::compressor comp(infokv::scorer_policy<first_element_scorer>{{}, "first-element"}, cfg, kShape);
  test_cache<float, infokv::layout_nhd> cache(kShape, cfg.granularity, 1, 4, 64, 2);
  auto st = comp.make_state();
  for (std::int32_t t = 0; t < 30; ++t) {
    cache.append(0, 1, t);
    ASSERT_TRUE(comp.compress(cache.view(), 0, st, {}).ok());
    cache.sync_after_compaction(st.last_plan());
  }
  // Expected: the newest token plus the 4 older tokens with the largest first key element.
  const auto kept = cache.check_contents();
  for (std::size_t s = 0; s < cache.num_streams(); ++s) {
    const std::size_t layer = s / kShape.num_kv_heads, head = s % kShape.num_kv_heads;
    std::vector<std::pair<float, std::int32_t>> all;
    for (std::int32_t p = 0; p < 29; ++p)
      all.push_back({infokv_test::token_value(p, layer, head, 0, false), p});
    // The greedy per-step eviction keeps the running top-4 of older tokens, same as a final top-4.
    std::sort(all.rbegin(), all.rend());
    std::set<std::int32_t> want{29};
    for (int i = 0; i < 4; ++i) want.insert(all[static_cast<std::size_t>(i)].second);
    EXPECT_EQ(std::set<std::int32_t>(kept[s].begin(), kept[s].end()), want) << "stream " << s;
  }
  // The same scorer as InfoKV's attention part.
  infokv::infokv_policy<first_element_scorer> composed;
  composed.entropy.top_k = 8;
  static_assert(infokv::eviction_policy<decltype(composed), infokv::stream_view<float>>);
  EXPECT_EQ(composed.needs().entropy_top_k, 8u);
  EXPECT_TRUE(composed.needs().evolution);
  EXPECT_EQ(composed.needs().window, 0u);
}

}  // namespace

namespace {

// H2O through compress(): the engine's attention rows (given per slot) accumulate per token and
// follow it through every compaction. Checked against a direct greedy simulation by position.
TEST(H2oPolicyTest, AccumulatesAttentionRowsThroughCompactions) {
  const infokv::model_shape shape{.num_layers = 1, .num_q_heads = 2, .num_kv_heads = 1, .head_dim = 2};
  infokv::compress_config cfg;
  cfg.granularity = stream_granularity::per_sequence;
  cfg.capacity = 16;
  cfg.sink_tokens = 0;
  cfg.recent_tokens = 1;
  cfg.decode_budget = infokv::budget::of_tokens(4);
  infokv::compressor comp(infokv::make_h2o(), cfg, shape);
  test_cache<float, infokv::layout_nhd> cache(shape, cfg.granularity, 1, 2, 16, 4);
  auto st = comp.make_state();
  // Attention of the query at step t (head g) on the key at position p.
  const auto a = [](std::size_t t, std::size_t g, std::int32_t p) {
    return static_cast<float>(((t * 7 + static_cast<std::size_t>(p) * 3 + g * 5) % 11) + 1) / 16.0f;
  };
  std::map<std::int32_t, double> acc;  // the reference: position -> accumulated score
  std::vector<float> rows;
  for (std::size_t t = 0; t < 40; ++t) {
    cache.append(0, 1, static_cast<std::int32_t>(t));
    const auto slots = cache.check_contents()[0];  // slot -> position, after the append
    rows.assign(2 * slots.size(), 0.0f);
    for (std::size_t g = 0; g < 2; ++g)
      for (std::size_t i = 0; i < slots.size(); ++i) rows[g * slots.size() + i] = a(t, g, slots[i]);
    infokv::step_signals sig;
    sig.attention = rows;
    sig.attention_stride = slots.size();
    ASSERT_TRUE(comp.compress(cache.view(), 0, st, sig).ok());
    cache.sync_after_compaction(st.last_plan());
    // Reference: add the group-mean row, then drop the lowest non-newest token (ties: older goes).
    acc[static_cast<std::int32_t>(t)] = 0.0;
    for (auto& [p, v] : acc) v += (a(t, 0, p) + a(t, 1, p)) / 2.0;
    if (acc.size() > 4) {
      auto worst = acc.end();
      for (auto it = acc.begin(); it != acc.end(); ++it)
        if (it->first != static_cast<std::int32_t>(t) && (worst == acc.end() || it->second < worst->second - 1e-9))
          worst = it;
      acc.erase(worst);
    }
    const auto kept = cache.check_contents()[0];
    std::set<std::int32_t> want;
    for (const auto& [p, v] : acc) want.insert(p);
    ASSERT_EQ(std::set<std::int32_t>(kept.begin(), kept.end()), want) << "step " << t;
  }
}

}  // namespace
