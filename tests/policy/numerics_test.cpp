// SPDX-License-Identifier: Apache-2.0
// Numerics at the edges: extreme, equal and one-hot logits; subnormal queries and keys; keys that
// overflowed a half-precision pool to infinity; a zero hidden state. Whatever the values, compress()
// must succeed (or reject the signal with non_finite_input), keep exactly its budget, always keep
// the sinks and the recent window, and decide the same way on every run (no NaN reaches a
// keep decision: NaN scores rank below every number and ties go to the newer position).
#include <gtest/gtest.h>

#include <cmath>
#include <algorithm>
#include <limits>
#include <set>
#include <vector>

#include "../support/test_cache.hpp"
#include "infokv/infokv.hpp"

namespace {

using infokv_test::signal_source;
using infokv_test::test_cache;

const infokv::model_shape kShape{.num_layers = 2, .num_q_heads = 4, .num_kv_heads = 2, .head_dim = 8,
                                 .hidden_size = 12, .vocab_size = 64};

TEST(NumericsTest, TopKEntropyAtTheExtremes) {
  constexpr std::size_t n = 64, k = 16;
  std::vector<float> x(n), scratch(n);
  const auto entropy = [&](auto isa) { return infokv::simd::top_k_entropy(isa, x.data(), n, k, scratch.data()); };
  const auto for_each_isa = [&](auto check) {
    check(infokv::simd::scalar_t{});
    if (infokv::simd::cpu_supports(infokv::simd::avx2_t{})) check(infokv::simd::avx2_t{});
    if (infokv::simd::cpu_supports(infokv::simd::avx512_t{})) check(infokv::simd::avx512_t{});
  };
  std::fill(x.begin(), x.end(), 3.0f);  // all equal: log k
  for_each_isa([&](auto isa) { EXPECT_NEAR(entropy(isa), std::log(16.0f), 1e-5f); });
  std::fill(x.begin(), x.end(), 0.0f);
  x[7] = 1e30f;  // one-hot: 0
  for_each_isa([&](auto isa) { EXPECT_EQ(entropy(isa), 0.0f); });
  for (std::size_t i = 0; i < n; ++i) x[i] = (i % 2 ? 1e30f : -1e30f);  // +-1e30: the top 16 are equal
  for_each_isa([&](auto isa) { EXPECT_NEAR(entropy(isa), std::log(16.0f), 1e-5f); });
  std::fill(x.begin(), x.end(), -std::numeric_limits<float>::infinity());  // all masked: 0
  for_each_isa([&](auto isa) { EXPECT_EQ(entropy(isa), 0.0f); });
  for (std::size_t i = 0; i < n; ++i) x[i] = 1e-40f * static_cast<float>(i);  // subnormal, nearly equal
  for_each_isa([&](auto isa) { EXPECT_NEAR(entropy(isa), std::log(16.0f), 1e-5f); });
}

TEST(NumericsTest, ZeroHiddenStateHasDistanceOne) {
  std::vector<float> zero(12, 0.0f), h(12, 0.5f);
  EXPECT_EQ(infokv::simd::cosine_distance(infokv::simd::scalar_t{}, zero.data(), h.data(), 12), 1.0f);
  EXPECT_EQ(infokv::simd::cosine_distance(infokv::simd::scalar_t{}, h.data(), zero.data(), 12), 1.0f);
  std::vector<float> zero2(12, 0.0f);
  EXPECT_EQ(infokv::simd::cosine_distance(infokv::simd::scalar_t{}, zero.data(), zero2.data(), 12), 1.0f);
  std::vector<float> tiny(12, 1e-30f);  // squares underflow to 0 in float, not in the double sums
  EXPECT_NEAR(infokv::simd::cosine_distance(infokv::simd::scalar_t{}, tiny.data(), h.data(), 12), 0.0f, 1e-6f);
}

// Runs InfoKV on a cache whose contents and signals `edit` changes; checks the budget and the
// protected tokens at every eviction and returns the kept positions (compared across two runs).
template <class T>
std::vector<std::vector<std::int32_t>> run(void (*edit)(test_cache<T, infokv::layout_nhd>&, infokv_test::signal_source&,
                                                        std::size_t),
                                           std::size_t* evictions) {
  infokv::compress_config cfg;
  cfg.granularity = infokv::stream_granularity::per_layer;
  cfg.capacity = 80;
  cfg.sink_tokens = 2;
  cfg.recent_tokens = 8;
  cfg.decode_budget = infokv::budget::of_tokens(24);
  cfg.slack = 4;
  auto pol = infokv::make_infokv();
  pol.attention.window = 8;
  pol.attention.kernel = 3;
  pol.entropy.top_k = 16;
  const infokv::compressor comp(pol, cfg, kShape);
  test_cache<T, infokv::layout_nhd> cache(kShape, cfg.granularity, 1, 4, 64, 3);
  auto state = comp.make_state();
  signal_source src(kShape, 9);
  *evictions = 0;
  for (std::size_t t = 0; t < 120; ++t) {
    std::size_t max_len = 0;
    for (std::size_t s = 0; s < state.num_streams(); ++s) max_len = std::max(max_len, state.length(s) + 1);
    (void)src.make(1, max_len);
    cache.append(0, 1, static_cast<std::int32_t>(t));
    edit(cache, src, t);
    infokv::step_signals sig;
    sig.num_tokens = 1;
    sig.queries = src.queries;
    sig.hidden_states = src.hidden;
    sig.logits = src.logits;
    const auto st = comp.compress(cache.view(), 0, state, sig);
    EXPECT_TRUE(st.ok()) << st.message() << " at " << t;
    if (!st.ok()) return {};
    if (state.last_event().evicted) {
      ++*evictions;
      for (const auto& sp : state.last_plan().streams) EXPECT_EQ(sp.new_length, 24u);
      cache.sync_after_compaction(state.last_plan());
      // Sinks and the recent window survive.
      for (std::size_t s = 0; s < state.num_streams(); ++s) {
        std::set<std::int32_t> kept(state.positions(s), state.positions(s) + state.length(s));
        for (std::int32_t p = 0; p < 2; ++p) EXPECT_TRUE(kept.count(p)) << "sink " << p;
        for (std::int32_t p = static_cast<std::int32_t>(t) - 7; p <= static_cast<std::int32_t>(t); ++p)
          EXPECT_TRUE(kept.count(p)) << "recent " << p;
      }
    }
  }
  // The kept positions of every stream (contents are not checked: the edits changed them).
  std::vector<std::vector<std::int32_t>> kept;
  for (std::size_t s = 0; s < state.num_streams(); ++s) {
    kept.emplace_back(state.positions(s), state.positions(s) + state.length(s));
    std::sort(kept.back().begin(), kept.back().end());
  }
  return kept;
}

template <class T>
void expect_deterministic_and_evicting(void (*edit)(test_cache<T, infokv::layout_nhd>&, signal_source&, std::size_t)) {
  std::size_t e1 = 0, e2 = 0;
  const auto a = run<T>(edit, &e1);
  const auto b = run<T>(edit, &e2);
  EXPECT_GT(e1, 3u);
  EXPECT_EQ(a, b);
}

TEST(NumericsTest, ExtremeAndDegenerateSignalsNeverReachAKeepDecisionAsNaN) {
  // Logits +-1e30, all equal, or one-hot; queries subnormal; a zero hidden state.
  expect_deterministic_and_evicting<float>([](auto&, signal_source& s, std::size_t t) {
    for (std::size_t i = 0; i < s.logits.size(); ++i)
      s.logits[i] = t % 3 == 0 ? (i % 2 ? 1e30f : -1e30f) : (t % 3 == 1 ? 2.0f : (i == t % 64 ? 1e30f : 0.0f));
    for (auto& q : s.queries) q *= 1e-41f;
    if (t % 5 == 0) std::fill(s.hidden.begin(), s.hidden.end(), 0.0f);
  });
}

TEST(NumericsTest, KeysThatOverflowedAHalfPoolToInfinity) {
  // An engine's half pool can hold +-inf (overflowed activations) or subnormals; the scores of
  // such keys may be NaN or infinite: they still give a valid, deterministic keep set.
  expect_deterministic_and_evicting<infokv::half>([](test_cache<infokv::half, infokv::layout_nhd>& c, signal_source&,
                                                     std::size_t t) {
    if (t % 4 != 1) return;
    for (auto& layer : c.keys())
      for (std::size_t i = (t * 13) % layer.size(); i < layer.size(); i += 97)
        layer[i] = infokv::half{static_cast<std::uint16_t>(t % 8 == 1 ? 0x7c00 : (t % 8 == 5 ? 0xfc00 : 0x0001))};
  });
}

TEST(NumericsTest, NonFiniteSignalsAreRejectedNotScored) {
  const infokv::compressor comp(infokv::make_infokv(), [] {
    infokv::compress_config c;
    c.capacity = 128;
    return c;
  }(), kShape);
  test_cache<float, infokv::layout_nhd> cache(kShape, infokv::stream_granularity::per_sequence, 1, 4, 64, 3);
  auto state = comp.make_state();
  signal_source src(kShape, 1);
  cache.append(0, 1, 0);
  (void)src.make(1, 1);
  const auto before = state;
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    auto q = src.queries;
    q[3] = bad;
    infokv::step_signals sig;
    sig.queries = q;
    sig.hidden_states = src.hidden;
    sig.logits = src.logits;
    EXPECT_EQ(comp.compress(cache.view(), 0, state, sig), infokv::errc::non_finite_input);
    auto h = src.hidden;
    h[0] = bad;
    sig.queries = src.queries;
    sig.hidden_states = h;
    EXPECT_EQ(comp.compress(cache.view(), 0, state, sig), infokv::errc::non_finite_input);
    auto l = src.logits;
    l[5] = bad;
    sig.hidden_states = src.hidden;
    sig.logits = l;
    EXPECT_EQ(comp.compress(cache.view(), 0, state, sig), infokv::errc::non_finite_input);
  }
  EXPECT_TRUE(state == before);
}

}  // namespace
