// SPDX-License-Identifier: Apache-2.0
// compress() paths beyond the basic decode loop: every policy through the compressor, triggers
// (interval, ratio budgets), multi-token chunks, chunked prefill, precomputed entropies, strided
// pools, schedules over repeated evictions, and errors that must leave everything unchanged.
#include <algorithm>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "../support/test_cache.hpp"
#include "infokv/infokv.hpp"

namespace {

using infokv::stream_granularity;
using infokv_test::signal_source;
using infokv_test::test_cache;

const infokv::model_shape kShape{.num_layers = 2, .num_q_heads = 4, .num_kv_heads = 2, .head_dim = 8,
                                 .hidden_size = 12, .vocab_size = 40};

infokv::compress_config base_config(stream_granularity g) {
  infokv::compress_config cfg;
  cfg.granularity = g;
  cfg.capacity = 96;
  cfg.sink_tokens = 2;
  cfg.recent_tokens = 8;
  cfg.decode_budget = infokv::budget::of_tokens(24);
  cfg.prefill_budget = infokv::budget::of_tokens(20);
  cfg.slack = 4;
  cfg.rope = {5e5, infokv::rope_pairing::adjacent};  // stated, and not the most common values
  return cfg;
}

// Drives `steps` calls of `chunk` tokens each through `comp`, checking after every call that
// the cache holds exactly the K/V of the positions the state lists, that sinks and the recent
// window survive, and that nothing comes back. Returns the number of evictions.
template <class Comp>
std::size_t drive(const Comp& comp, test_cache<float, infokv::layout_nhd>& cache, infokv::sequence_state& st,
                  std::size_t steps, std::size_t chunk, std::uint64_t seed = 1) {
  signal_source src(kShape, seed);
  std::vector<std::set<std::int32_t>> alive(cache.num_streams());
  std::size_t evictions = 0;
  const std::size_t recent = comp.protected_recent();
  for (std::size_t step = 0; step < steps; ++step) {
    std::size_t max_len = 0;
    for (std::size_t s = 0; s < st.num_streams(); ++s) max_len = std::max(max_len, st.length(s) + chunk);
    const auto sig = src.make(chunk, max_len);
    const auto first = static_cast<std::int32_t>(st.tokens_seen());
    cache.append(0, chunk, first);
    const infokv::status rc = comp.compress(cache.view(), 0, st, sig);
    EXPECT_TRUE(rc.ok()) << rc.message();
    if (!rc.ok()) return evictions;
    cache.sync_after_compaction(st.last_plan());
    evictions += st.last_event().evicted;
    const auto kept = cache.check_contents();
    const std::size_t seen = st.tokens_seen();
    for (std::size_t s = 0; s < cache.num_streams(); ++s) {
      EXPECT_EQ(kept[s].size(), st.length(s));
      const std::set<std::int32_t> now(kept[s].begin(), kept[s].end());
      for (std::size_t p = 0; p < std::min<std::size_t>(comp.config().sink_tokens, seen); ++p)
        EXPECT_TRUE(now.count(static_cast<std::int32_t>(p))) << "sink " << p;
      for (std::size_t p = seen - std::min(recent, seen); p < seen; ++p)
        EXPECT_TRUE(now.count(static_cast<std::int32_t>(p))) << "recent " << p;
      for (std::int32_t p : now) {
        if (p < first) {
          EXPECT_TRUE(alive[s].count(p)) << "resurrected " << p;
        }
      }
      alive[s] = now;
    }
  }
  return evictions;
}

// Every policy, every granularity, through compress(): invariants and exact budgets.
template <class P>
class EveryPolicyTest : public ::testing::Test {};
struct infokv_default {
  static auto make() {
    auto p = infokv::make_infokv();
    p.attention.window = 8;
    p.entropy.top_k = 16;
    return p;
  }
};
struct snapkv_default {
  static auto make() { return infokv::make_snapkv(8, 3); }
};
struct h2o_default {
  static auto make() { return infokv::make_h2o(); }
};
struct tova_default {
  static auto make() { return infokv::make_tova(); }
};
struct knorm_default {
  static auto make() { return infokv::make_knorm(); }
};
struct streaming_default {
  static auto make() { return infokv::make_streaming_llm(); }
};
struct expected_attention_default {
  static auto make() { return infokv::make_expected_attention(); }
};
struct rkv_default {
  static auto make() { return infokv::make_rkv(); }
};
struct random_default {
  static auto make() { return infokv::make_random(5); }
};
using Policies = ::testing::Types<infokv_default, snapkv_default, h2o_default, tova_default, knorm_default,
                                  streaming_default, expected_attention_default, rkv_default, random_default>;
TYPED_TEST_SUITE(EveryPolicyTest, Policies);

TYPED_TEST(EveryPolicyTest, KeepsEveryInvariantAtEveryGranularity) {
  for (auto g : {stream_granularity::per_sequence, stream_granularity::per_layer, stream_granularity::per_layer_head}) {
    infokv::compressor comp(TypeParam::make(), base_config(g), kShape);
    ASSERT_TRUE(comp.can_implement().ok());
    test_cache<float, infokv::layout_nhd> cache(kShape, g, 1, 4, 64, 3);
    auto st = comp.make_state();
    const std::size_t evictions = drive(comp, cache, st, 80, 1);
    EXPECT_GT(evictions, 5u) << to_string(g);
    for (std::size_t s = 0; s < st.num_streams(); ++s) EXPECT_LE(st.length(s), 24u + 4u);
  }
}

TEST(TriggerTest, IntervalCountsDecodeStepsFromTheLastEviction) {
  auto cfg = base_config(stream_granularity::per_layer);
  cfg.slack = 1000;  // only the interval fires
  cfg.interval = 16;
  infokv::compressor comp(infokv::make_knorm(), cfg, kShape);
  test_cache<float, infokv::layout_nhd> cache(kShape, cfg.granularity, 1, 4, 64, 3);
  auto st = comp.make_state();
  signal_source src(kShape, 1);
  cache.append(0, 60, 0);
  ASSERT_TRUE(comp.compress_prefill(cache.view(), 0, st, src.make(60, 60)).ok());
  cache.sync_after_compaction(st.last_plan());
  ASSERT_TRUE(st.last_event().evicted);
  ASSERT_EQ(st.length(0), 20u);
  std::vector<std::size_t> evicted_at;
  for (std::size_t step = 1; step <= 48; ++step) {
    cache.append(0, 1, static_cast<std::int32_t>(st.tokens_seen()));
    ASSERT_TRUE(comp.compress(cache.view(), 0, st, src.make(1, 64)).ok());
    cache.sync_after_compaction(st.last_plan());
    if (st.last_event().evicted) {
      evicted_at.push_back(step);
      EXPECT_EQ(st.length(0), 24u);
    }
  }
  EXPECT_EQ(evicted_at, (std::vector<std::size_t>{16, 32, 48}));
}

TEST(TriggerTest, RatioBudgetKeepsAFractionOfTheTokensSeen) {
  auto cfg = base_config(stream_granularity::per_sequence);
  cfg.decode_budget = infokv::budget::of_ratio(0.25);
  cfg.slack = 0;
  cfg.interval = 32;  // RPC-style: compress every 32 steps to 25% of what was seen
  cfg.slack = 1000;
  cfg.capacity = 512;
  infokv::compressor comp(infokv::make_knorm(), cfg, kShape);
  test_cache<float, infokv::layout_nhd> cache(kShape, cfg.granularity, 1, 8, 128, 3);
  auto st = comp.make_state();
  signal_source src(kShape, 1);
  std::size_t evictions = 0;
  for (std::size_t t = 1; t <= 320; ++t) {
    cache.append(0, 1, static_cast<std::int32_t>(t - 1));
    ASSERT_TRUE(comp.compress(cache.view(), 0, st, src.make(1, 512)).ok());
    cache.sync_after_compaction(st.last_plan());
    if (st.last_event().evicted) {
      ++evictions;
      EXPECT_EQ(t % 32, 0u);
      EXPECT_EQ(st.length(0), std::max<std::size_t>(t / 4, 2 + 8)) << t;  // int(0.25 * seen), protected floor
    }
  }
  EXPECT_EQ(evictions, 10u);
}

TEST(ChunkTest, MultiTokenDecodeChunksKeepTheInvariants) {
  for (std::size_t chunk : {2u, 3u, 7u}) {
    infokv::compressor comp(infokv_default::make(), base_config(stream_granularity::per_layer), kShape);
    test_cache<float, infokv::layout_nhd> cache(kShape, stream_granularity::per_layer, 1, 4, 64, 3);
    auto st = comp.make_state();
    EXPECT_GT(drive(comp, cache, st, 40, chunk), 3u) << chunk;
  }
}

// The prompt in one call, in chunks through observe(), and with precomputed entropies: the
// same keep sets.
TEST(PrefillTest, ChunkedObserveAndPrecomputedEntropyMatchOneCall) {
  const auto cfg = base_config(stream_granularity::per_layer);
  infokv::compressor comp(infokv_default::make(), cfg, kShape);
  signal_source src(kShape, 4);
  const auto whole = src.make(50, 50);
  std::vector<float> q(whole.queries.begin(), whole.queries.end()), h(whole.hidden_states.begin(), whole.hidden_states.end()),
      z(whole.logits.begin(), whole.logits.end());
  // Layer-major signals: slice tokens [a, b) of every layer.
  const auto slice = [&](std::size_t a, std::size_t b, std::vector<float>& qs, std::vector<float>& hs,
                         std::vector<float>& zs) {
    qs.clear(), hs.clear(), zs.clear();
    const std::size_t qrow = kShape.num_q_heads * kShape.head_dim;
    for (std::size_t l = 0; l < kShape.num_layers; ++l) {
      qs.insert(qs.end(), q.begin() + static_cast<std::ptrdiff_t>((l * 50 + a) * qrow),
                q.begin() + static_cast<std::ptrdiff_t>((l * 50 + b) * qrow));
      hs.insert(hs.end(), h.begin() + static_cast<std::ptrdiff_t>((l * 50 + a) * kShape.hidden_size),
                h.begin() + static_cast<std::ptrdiff_t>((l * 50 + b) * kShape.hidden_size));
    }
    zs.assign(z.begin() + static_cast<std::ptrdiff_t>(a * kShape.vocab_size),
              z.begin() + static_cast<std::ptrdiff_t>(b * kShape.vocab_size));
    infokv::step_signals sig;
    sig.num_tokens = b - a;
    sig.queries = qs, sig.hidden_states = hs, sig.logits = zs;
    return sig;
  };
  test_cache<float, infokv::layout_nhd> one(kShape, cfg.granularity, 1, 4, 64, 1);
  auto st_one = comp.make_state();
  one.append(0, 50, 0);
  ASSERT_TRUE(comp.compress_prefill(one.view(), 0, st_one, whole).ok());
  one.sync_after_compaction(st_one.last_plan());

  test_cache<float, infokv::layout_nhd> chunked(kShape, cfg.granularity, 1, 4, 64, 1);
  auto st_chunked = comp.make_state();
  std::vector<float> qs, hs, zs;
  std::size_t at = 0;
  for (std::size_t len : {20u, 17u}) {
    chunked.append(0, len, static_cast<std::int32_t>(at));
    ASSERT_TRUE(comp.observe(chunked.view(), 0, st_chunked, slice(at, at + len, qs, hs, zs)).ok());
    at += len;
  }
  chunked.append(0, 13, static_cast<std::int32_t>(at));
  ASSERT_TRUE(comp.compress_prefill(chunked.view(), 0, st_chunked, slice(at, 50, qs, hs, zs)).ok());
  chunked.sync_after_compaction(st_chunked.last_plan());
  EXPECT_EQ(one.check_contents(), chunked.check_contents());

  // The engine computes the entropies itself with the library's kernel.
  std::vector<float> ent(50), scratch(kShape.vocab_size);
  for (std::size_t j = 0; j < 50; ++j)
    ent[j] = infokv::simd::top_k_entropy(infokv::simd::native_isa{}, z.data() + j * kShape.vocab_size, kShape.vocab_size,
                                         16, scratch.data());
  test_cache<float, infokv::layout_nhd> pre(kShape, cfg.granularity, 1, 4, 64, 1);
  auto st_pre = comp.make_state();
  pre.append(0, 50, 0);
  auto sig = whole;
  sig.logits = {};
  sig.next_token_entropy = ent;
  ASSERT_TRUE(comp.compress_prefill(pre.view(), 0, st_pre, sig).ok());
  pre.sync_after_compaction(st_pre.last_plan());
  EXPECT_EQ(one.check_contents(), pre.check_contents());
}

TEST(StridedPoolTest, PaddedPagesCompactLikeDensePages) {
  const auto cfg = base_config(stream_granularity::per_sequence);
  infokv::compressor comp(infokv_default::make(), cfg, kShape);
  test_cache<float, infokv::layout_nhd> plain(kShape, cfg.granularity, 1, 4, 64, 1);
  test_cache<float, infokv::layout_nhd> padded(kShape, cfg.granularity, 1, 4, 64, 1, false, 5);
  auto a = comp.make_state(), b = comp.make_state();
  drive(comp, plain, a, 60, 1);
  drive(comp, padded, b, 60, 1);
  EXPECT_EQ(plain.check_contents(), padded.check_contents());
}

// Pyramid, InfoKV-adaptive and AdaKV keep the sequence total exact at every decode eviction.
TEST(ScheduleDecodeTest, TotalsStayExactAcrossRepeatedEvictions) {
  for (auto kind : {infokv::budget_schedule::pyramid, infokv::budget_schedule::infokv_adaptive, infokv::budget_schedule::adakv}) {
    auto cfg = base_config(kind == infokv::budget_schedule::adakv ? stream_granularity::per_layer_head
                                                                  : stream_granularity::per_layer);
    cfg.schedule.kind = kind;
    cfg.schedule.pyramid_beta = 2.0;
    infokv::compressor comp(infokv_default::make(), cfg, kShape);
    test_cache<float, infokv::layout_nhd> cache(kShape, cfg.granularity, 1, 4, 64, 3);
    auto st = comp.make_state();
    signal_source src(kShape, 2);
    std::size_t evictions = 0;
    for (std::size_t t = 0; t < 120; ++t) {
      cache.append(0, 1, static_cast<std::int32_t>(t));
      ASSERT_TRUE(comp.compress(cache.view(), 0, st, src.make(1, 96)).ok());
      cache.sync_after_compaction(st.last_plan());
      if (!st.last_event().evicted) continue;
      ++evictions;
      std::size_t total = 0;
      for (std::size_t s = 0; s < st.num_streams(); ++s) total += st.length(s);
      EXPECT_EQ(total, st.num_streams() * 24u) << static_cast<int>(kind) << " step " << t;
    }
    EXPECT_GT(evictions, 10u);
    (void)cache.check_contents();
  }
}

TEST(ErrorTest, AStateFromAnotherCompressorIsRejectedUnchanged) {
  const auto cfg = base_config(stream_granularity::per_sequence);
  const infokv::model_shape small{.num_layers = 1, .num_q_heads = 2, .num_kv_heads = 2, .head_dim = 8,
                                  .hidden_size = 12, .vocab_size = 40};
  infokv::compressor comp(infokv_default::make(), cfg, kShape);
  infokv::compressor other(infokv_default::make(), cfg, small);
  infokv::compressor other_policy(infokv::make_knorm(), cfg, kShape);
  test_cache<float, infokv::layout_nhd> cache(kShape, cfg.granularity, 1, 4, 64, 3);
  signal_source src(kShape, 2);
  cache.append(0, 1, 0);
  for (auto st : {other.make_state(), other_policy.make_state()}) {
    const auto before = st;
    EXPECT_EQ(comp.compress(cache.view(), 0, st, src.make(1, 8)).code(), infokv::errc::shape_mismatch);
    EXPECT_TRUE(st == before);
  }
}

TEST(ErrorTest, AdaptiveScheduleWithoutLayerWeightsIsRejectedBeforeAnyChange) {
  auto cfg = base_config(stream_granularity::per_layer);
  cfg.schedule.kind = infokv::budget_schedule::infokv_adaptive;
  infokv::compressor comp(infokv::make_snapkv(8, 3), cfg, kShape);
  test_cache<float, infokv::layout_nhd> cache(kShape, cfg.granularity, 1, 4, 64, 3);
  auto st = comp.make_state();
  const auto before = st;
  signal_source src(kShape, 2);
  cache.append(0, 30, 0);
  EXPECT_EQ(comp.compress_prefill(cache.view(), 0, st, src.make(30, 30)).code(), infokv::errc::invalid_config);
  EXPECT_TRUE(st == before);
}

TEST(ErrorTest, CapacityThatCannotHoldTheBudget) {
  auto cfg = base_config(stream_granularity::per_layer);
  cfg.capacity = 24;  // == the decode budget: no room to grow before an eviction
  infokv::compressor comp(infokv::make_knorm(), cfg, kShape);
  EXPECT_EQ(comp.can_implement().code(), infokv::errc::invalid_config);
}

// A user scorer that fails in one layer: the call reports it, the cache is untouched, and the
// state still matches the cache slot for slot, so the engine can go on.
struct fails_in_layer_one {
  [[nodiscard]] constexpr infokv::observation_needs needs() const noexcept { return {}; }
  template <infokv::kv_view View, class Isa>
  [[nodiscard]] infokv::status score(const infokv::layer_context<View, Isa>& ctx, infokv::score_matrix out) const noexcept {
    if (ctx.layer == 1 && ctx.num_tokens() > 40) return infokv::errc::invalid_config;
    for (std::size_t h = 0; h < out.heads; ++h)
      for (std::size_t i = 0; i < ctx.num_tokens(); ++i) out(h, i) = static_cast<float>(ctx.positions[i] % 7);
    return {};
  }
};

TEST(ErrorTest, AUserScorerFailingMidEvictionLeavesCacheAndStateConsistent) {
  auto cfg = base_config(stream_granularity::per_layer);
  cfg.slack = 20;  // the first eviction comes at 45 tokens, when layer 1's scorer fails
  infokv::compressor comp(infokv::scorer_policy<fails_in_layer_one>{}, cfg, kShape);
  test_cache<float, infokv::layout_nhd> cache(kShape, cfg.granularity, 1, 4, 64, 3);
  auto st = comp.make_state();
  bool failed = false;
  for (std::int32_t t = 0; t < 60; ++t) {
    cache.append(0, 1, t);
    const auto view = cache.view();
    const std::vector<std::int32_t> indptr_before = cache.indptr(), last_before = cache.last_page_len();
    const infokv::status rc = comp.compress(view, 0, st, {});
    if (!rc.ok()) {
      failed = true;
      EXPECT_EQ(rc.code(), infokv::errc::invalid_config);
      EXPECT_EQ(cache.indptr(), indptr_before);
      EXPECT_EQ(cache.last_page_len(), last_before);
      EXPECT_FALSE(st.last_event().evicted);
    } else {
      cache.sync_after_compaction(st.last_plan());
    }
    const auto kept = cache.check_contents();
    for (std::size_t s = 0; s < st.num_streams(); ++s) {
      ASSERT_EQ(st.length(s), kept[s].size()) << t;
      for (std::size_t i = 0; i < kept[s].size(); ++i) ASSERT_EQ(st.positions(s)[i], kept[s][i]) << t;
    }
  }
  EXPECT_TRUE(failed);
}

TEST(ExpectedAttentionTest, EvictsBeforeAnyQueryStatisticsExist) {
  auto cfg = base_config(stream_granularity::per_sequence);
  cfg.prefill_budget = infokv::budget::of_ratio(0.5);
  cfg.sink_tokens = 0;
  cfg.recent_tokens = 1;
  infokv::compressor comp(infokv::make_expected_attention(), cfg, kShape);
  test_cache<float, infokv::layout_nhd> cache(kShape, cfg.granularity, 1, 4, 64, 3);
  auto st = comp.make_state();
  signal_source src(kShape, 2);
  cache.append(0, 3, 0);  // 3 tokens, all inside Expected Attention's 4 sinks: no statistics
  ASSERT_TRUE(comp.compress_prefill(cache.view(), 0, st, src.make(3, 3)).ok());
  cache.sync_after_compaction(st.last_plan());
  EXPECT_EQ(st.length(0), 1u);
}

}  // namespace

namespace {

// Merged runs of moves copy exactly what the moves one by one copy (NHD and HND, page edges).
template <class Layout>
void check_runs_match_single_moves() {
  for (std::size_t ps : {1u, 3u, 8u}) {
    test_cache<infokv::half, Layout> a(kShape, stream_granularity::per_layer, 1, ps, 64, 5);
    test_cache<infokv::half, Layout> b(kShape, stream_granularity::per_layer, 1, ps, 64, 5);
    a.append(0, 64, 0);
    b.append(0, 64, 0);
    // Keep blocks of tokens; holes below the new length filled from the tail, as planned.
    std::vector<bool> keep(64, false);
    for (std::size_t i = 0; i < 64; ++i) keep[i] = i < 5 || (i >= 20 && i < 29) || i >= 44;
    const auto n = static_cast<std::size_t>(std::count(keep.begin(), keep.end(), true));
    std::vector<infokv::slot_move> moves;
    for (std::uint32_t stream = 0; stream < kShape.num_layers; ++stream) {
      std::size_t hole = 0, tail = n;
      while (true) {
        while (hole < n && keep[hole]) ++hole;
        while (tail < 64 && !keep[tail]) ++tail;
        if (hole >= n || tail >= 64) break;
        moves.push_back({stream, static_cast<std::uint32_t>(tail++), static_cast<std::uint32_t>(hole++)});
      }
    }
    const auto va = a.view(), vb = b.view();
    infokv::apply_slot_moves(va, std::span<const infokv::slot_move>(moves));
    for (const auto& m : moves) infokv::apply_slot_move(vb, m);
    infokv::simd::store_fence(infokv::simd::native_isa{});
    for (std::size_t l = 0; l < kShape.num_layers; ++l)
      for (std::size_t i = 0; i < a.keys()[l].size(); ++i)
        ASSERT_EQ(a.keys()[l][i].bits, b.keys()[l][i].bits) << Layout::name << " page size " << ps;
    EXPECT_EQ(a.positions(), b.positions());
  }
}

TEST(CompactionTest, MergedRunsCopyWhatSingleMovesCopy) {
  check_runs_match_single_moves<infokv::layout_nhd>();
  check_runs_match_single_moves<infokv::layout_hnd>();
}

}  // namespace
