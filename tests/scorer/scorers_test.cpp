// SPDX-License-Identifier: Apache-2.0
// Each scorer against small cases computed by hand from its formula (DESIGN §3, kvpress).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "infokv/infokv.hpp"
#include "infokv/simd/scalar.hpp"

namespace {

using infokv::simd::scalar_t;
using view_t = infokv::stream_view<float>;

// One stream of T tokens, one KV head, head_dim 2, dense keys/values, positions 0..T-1.
struct tiny {
  std::vector<float> keys, values;
  std::vector<std::int32_t> positions;
  std::vector<std::uint32_t> order;
  std::vector<float> queries;
  std::vector<std::int32_t> qpos;
  std::vector<float> scratch;
  infokv::layer_context<view_t> ctx;

  tiny(std::vector<float> k, std::vector<float> v, std::size_t group = 1) : keys(std::move(k)), values(std::move(v)) {
    const std::size_t T = keys.size() / 2;
    positions.resize(T);
    std::iota(positions.begin(), positions.end(), 0);
    order.resize(T);
    std::iota(order.begin(), order.end(), 0u);
    // The most any built-in policy declares for this stream (windows of up to 8 queries here;
    // InfoKV's default window of 64 bounds them all).
    const infokv::scratch_shape sh{T, 2, 1, group};
    scratch.assign(std::max({infokv::scratch_floats_of(infokv::make_infokv(), sh),
                             infokv::scratch_floats_of(infokv::make_rkv(), sh),
                             infokv::scratch_floats_of(infokv::make_expected_attention(), sh)}),
                   0.0f);
    ctx.kv = view_t(keys.data(), values.data(), 2 * T, nullptr, 0, T, T, 1, 2);
    ctx.group_size = group;
    ctx.num_q_heads = group;
    ctx.num_layers = 1;
    ctx.positions = positions.data();
    ctx.order = order.data();
    ctx.num_candidates = T;
    ctx.next_position = T;
    ctx.scratch = scratch;
  }
  void window(std::vector<float> q, std::vector<std::int32_t> pos) {
    queries = std::move(q);
    qpos = std::move(pos);
    ctx.window_queries = queries.data();
    ctx.window_positions = qpos.data();
    ctx.window_count = qpos.size();
    ctx.newest_query = qpos.size() - 1;
    // Candidates: tokens older than the window.
    ctx.num_candidates = static_cast<std::size_t>(qpos.front());
  }
  std::vector<float> run(const auto& scorer) {
    std::vector<float> out(positions.size());
    infokv::score_matrix m{out.data(), 1, out.size()};
    EXPECT_TRUE(scorer.score(ctx, m).ok());
    return out;
  }
};

TEST(KeyNormScorerTest, NegativeL2Norm) {
  tiny t({3, 4, 0, 1, 0, 0}, {0, 0, 0, 0, 0, 0});
  const auto s = t.run(infokv::key_norm_scorer{});
  EXPECT_FLOAT_EQ(s[0], -5.0f);
  EXPECT_FLOAT_EQ(s[1], -1.0f);
  EXPECT_FLOAT_EQ(s[2], 0.0f);
}

TEST(RecencyScorerTest, ScoreIsThePosition) {
  tiny t({0, 0, 0, 0, 0, 0}, {0, 0, 0, 0, 0, 0});
  t.positions = {7, 2, 9};
  EXPECT_EQ(t.run(infokv::recency_scorer{}), (std::vector<float>{7, 2, 9}));
}

// Keys [a_i, 0] and the query [sqrt 2, 0]: logits q.k / sqrt(2) = a_i.
TEST(AttentionScorerTest, WindowMeanSoftmaxThenAveragePooling) {
  const float l2 = std::log(2.0f), l3 = std::log(3.0f);
  tiny t({0, 0, l2, 0, l3, 0, 0, 0}, std::vector<float>(8, 0.0f));
  t.window({std::sqrt(2.0f), 0.0f}, {3});
  infokv::attention_scorer no_pool{1, 1, infokv::pooling::none};
  auto a = t.run(no_pool);
  EXPECT_NEAR(a[0], 1.0f / 7, 1e-6);
  EXPECT_NEAR(a[1], 2.0f / 7, 1e-6);
  EXPECT_NEAR(a[2], 3.0f / 7, 1e-6);
  EXPECT_NEAR(a[3], 1.0f / 7, 1e-6);
  // Pooling (kernel 3, zero padding, divide by 3) over the candidates 0..2 only.
  infokv::attention_scorer pooled{1, 3, infokv::pooling::average};
  a = t.run(pooled);
  EXPECT_NEAR(a[0], (1.0f + 2.0f) / 3 / 7, 1e-6);
  EXPECT_NEAR(a[1], (1.0f + 2.0f + 3.0f) / 3 / 7, 1e-6);
  EXPECT_NEAR(a[2], (2.0f + 3.0f) / 3 / 7, 1e-6);
  EXPECT_NEAR(a[3], 1.0f / 7, 1e-6);  // window token: not pooled
}

TEST(AttentionScorerTest, CausalMaskAndGroupMean) {
  // Two window queries at positions 2 and 3; the one at 2 must not see key 3.
  // Group of 2 query heads: head 0 query [0,0] (uniform), head 1 query [sqrt2 ln2, 0].
  const float l2 = std::log(2.0f);
  tiny t({1, 0, 1, 0, 1, 0, 1, 0}, std::vector<float>(8, 0.0f), 2);
  const float s2 = std::sqrt(2.0f) * l2;
  t.window({0, 0, s2, 0, 0, 0, s2, 0}, {2, 3});
  const auto a = t.run(infokv::attention_scorer{2, 1, infokv::pooling::none});
  // Query at 2: head 0 uniform over keys 0..2 -> 1/3; head 1 logits all ln2 -> also 1/3.
  // Query at 3: uniform over 4 keys -> 1/4 for both heads.
  EXPECT_NEAR(a[0], (1.0f / 3 + 1.0f / 4) / 2, 1e-6);
  EXPECT_NEAR(a[3], (0.0f + 1.0f / 4) / 2, 1e-6);
}

TEST(LastQueryScorerTest, AttentionOfTheNewestQuery) {
  const float l3 = std::log(3.0f);
  tiny t({0, 0, l3, 0, 0, 0}, std::vector<float>(6, 0.0f));
  t.window({0, 0, std::sqrt(2.0f), 0}, {1, 2});
  const auto a = t.run(infokv::last_query_scorer{});
  EXPECT_NEAR(a[0], 1.0f / 5, 1e-6);
  EXPECT_NEAR(a[1], 3.0f / 5, 1e-6);
  EXPECT_NEAR(a[2], 1.0f / 5, 1e-6);
}

TEST(TopKEntropyTest, RenormalisedOverTheTopK) {
  std::vector<float> scratch(16);
  const std::vector<float> uniform(10, 0.5f);
  EXPECT_NEAR(infokv::simd::top_k_entropy(scalar_t{}, uniform.data(), 10, 4, scratch.data()), std::log(4.0f), 1e-6);
  EXPECT_NEAR(infokv::simd::top_k_entropy(scalar_t{}, uniform.data(), 10, 256, scratch.data()), std::log(10.0f), 1e-6);
  // p = (.1, .2, .3, .4) from logits ln(1..4), plus two entries the top-4 leaves out.
  const std::vector<float> z{std::log(3.0f), -50.0f, std::log(1.0f), std::log(4.0f), std::log(2.0f), -60.0f};
  double h = 0.0;
  for (double p : {0.1, 0.2, 0.3, 0.4}) h -= p * std::log(p);
  EXPECT_NEAR(infokv::simd::top_k_entropy(scalar_t{}, z.data(), z.size(), 4, scratch.data()), h, 1e-6);
  const std::vector<float> one_hot{1e30f, 0.0f, -1e30f};
  EXPECT_EQ(infokv::simd::top_k_entropy(scalar_t{}, one_hot.data(), 3, 2, scratch.data()), 0.0f);
}

TEST(CosineDistanceTest, OneMinusCosine) {
  const float a[2] = {1, 0}, b[2] = {0, 3}, c[2] = {-2, 0}, z[2] = {0, 0};
  EXPECT_FLOAT_EQ(infokv::simd::cosine_distance(scalar_t{}, a, b, 2), 1.0f);
  EXPECT_FLOAT_EQ(infokv::simd::cosine_distance(scalar_t{}, a, c, 2), 2.0f);
  EXPECT_FLOAT_EQ(infokv::simd::cosine_distance(scalar_t{}, a, a, 2), 0.0f);
  EXPECT_FLOAT_EQ(infokv::simd::cosine_distance(scalar_t{}, a, z, 2), 1.0f);  // zero vector: documented 1
}

TEST(InfoKvPolicyTest, MixesAttentionWithSoftmaxOfEntropyScore) {
  const float l2 = std::log(2.0f), l3 = std::log(3.0f);
  tiny t({0, 0, l2, 0, l3, 0, 0, 0}, std::vector<float>(8, 0.0f));
  t.window({std::sqrt(2.0f), 0.0f}, {3});
  const std::vector<float> H{0.0f, 2.0f, 1.0f, 5.0f}, D{0.5f, 0.0f, 1.0f, 0.0f};
  t.ctx.entropy = H.data();
  t.ctx.evolution = D.data();
  infokv::infokv_policy<> p;
  p.attention = {1, 1, infokv::pooling::none};
  p.alpha = 0.75f;
  p.tau = 1.0f;
  const auto s = t.run(p);
  // E over candidates 0..2: (0.5+1)*0, (0+1)*2, (1+1)*1 = 0, 2, 2.
  const double z = 1.0 + 2.0 * std::exp(2.0);
  const double sm[3] = {1.0 / z, std::exp(2.0) / z, std::exp(2.0) / z};
  const double A[4] = {1.0 / 7, 2.0 / 7, 3.0 / 7, 1.0 / 7};
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(s[static_cast<std::size_t>(i)], 0.75 * A[i] + 0.25 * sm[i], 1e-6) << i;
  EXPECT_NEAR(s[3], 0.75 * A[3], 1e-6);  // window token: no entropy term
  EXPECT_NEAR(p.layer_weight(t.ctx), 4.0, 1e-6);
}

TEST(ExpectedAttentionScorerTest, MeanOnlyAndCovarianceTerms) {
  // Identity mean rotation: one future position, at position 0.
  tiny t({1, 0, 2, 0, 0, 1}, {3, 4, 1, 0, 0, 2});
  t.ctx.next_position = 0;
  std::vector<double> sum{2.0, 0.0}, outer{2.0, 0.0, 0.0, 0.0};  // queries [1,0], [1,0]: mu = [1,0], Sigma = 0
  t.ctx.query_sum = sum.data();
  t.ctx.query_outer = outer.data();
  t.ctx.query_count = 2;
  t.ctx.rope = {1e4, infokv::rope_pairing::rotate_half};  // one pair: frequency 1 at any theta
  infokv::expected_attention_scorer ea;
  ea.future_positions = 1;
  ea.sinks = 0;
  ea.use_value_norm = false;
  auto s = t.run(ea);
  const double r2 = std::sqrt(2.0);
  double e[3] = {std::exp(1 / r2), std::exp(2 / r2), 1.0};
  double z = e[0] + e[1] + e[2];
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(s[static_cast<std::size_t>(i)], e[i] / z, 1e-6);
  // Queries [1,0] and [-1,0]: mu = 0, Sigma = diag(1, 0); k^T Sigma k / (2D) = k0^2 / 4; times ||v||.
  sum = {0.0, 0.0};
  t.ctx.query_sum = sum.data();
  ea.use_value_norm = true;
  s = t.run(ea);
  e[0] = std::exp(0.25), e[1] = std::exp(1.0), e[2] = 1.0;
  z = e[0] + e[1] + e[2];
  const double vn[3] = {5.0, 1.0, 2.0};
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(s[static_cast<std::size_t>(i)], e[i] / z * vn[i], 1e-6);
  // Sinks are scored above everything else.
  ea.sinks = 1;
  s = t.run(ea);
  EXPECT_GT(s[0], std::max(s[1], s[2]));
}

TEST(ExpectedAttentionScorerTest, RotatesTheMeanToFuturePositions) {
  // D = 2, theta irrelevant for frequency 0 (pair 0: freq = 1); positions 5..6.
  tiny t({1, 0, 0, 1}, {1, 0, 1, 0});
  t.ctx.next_position = 5;
  std::vector<double> sum{1.0, 0.0};
  t.ctx.query_sum = sum.data();
  t.ctx.query_count = 1;
  t.ctx.rope = {1e4, infokv::rope_pairing::adjacent};  // one pair: frequency 1 at any theta
  infokv::expected_attention_scorer ea;
  ea.future_positions = 2;
  ea.sinks = 0;
  ea.use_covariance = false;
  ea.use_value_norm = false;
  const auto s = t.run(ea);
  const double c = (std::cos(5.0) + std::cos(6.0)) / 2, sn = (std::sin(5.0) + std::sin(6.0)) / 2;
  // mu' = (c, s); logits k.mu'/sqrt2.
  const double e0 = std::exp(c / std::sqrt(2.0)), e1 = std::exp(sn / std::sqrt(2.0));
  EXPECT_NEAR(s[0], e0 / (e0 + e1), 1e-6);
}

// Expected Attention with head_dim 8 against an oracle that builds every future position's
// rotation matrix explicitly from the stated theta and pairing, averages them, and scores by the
// formula. Wrong parameters (the engine's theta 1e5 with adjacent pairs scored as 1e4 with
// rotate-half, say) must not pass: the oracle of one convention rejects the other.
std::vector<double> expected_attention_oracle(const std::vector<float>& keys, const std::vector<double>& sum,
                                              const std::vector<double>& outer, double n, std::size_t D,
                                              std::size_t first_pos, std::size_t future, infokv::rope_params rope) {
  const std::size_t T = keys.size() / D;
  std::vector<double> R(D * D, 0.0);  // mean rotation
  for (std::size_t p = first_pos; p < first_pos + future; ++p)
    for (std::size_t i = 0; i < D / 2; ++i) {
      const std::size_t a = rope.pairing == infokv::rope_pairing::adjacent ? 2 * i : i;
      const std::size_t b = rope.pairing == infokv::rope_pairing::adjacent ? 2 * i + 1 : i + D / 2;
      const double ang = static_cast<double>(p) * std::pow(rope.theta, -2.0 * static_cast<double>(i) / static_cast<double>(D));
      R[a * D + a] += std::cos(ang) / static_cast<double>(future);
      R[a * D + b] -= std::sin(ang) / static_cast<double>(future);
      R[b * D + a] += std::sin(ang) / static_cast<double>(future);
      R[b * D + b] += std::cos(ang) / static_cast<double>(future);
    }
  std::vector<double> mu(D), cov(D * D), mu_r(D, 0.0), rs(D * D, 0.0), sig(D * D, 0.0);
  for (std::size_t d = 0; d < D; ++d) mu[d] = sum[d] / n;
  for (std::size_t r = 0; r < D; ++r)
    for (std::size_t c = 0; c < D; ++c) cov[r * D + c] = outer[r * D + c] / n - mu[r] * mu[c];
  for (std::size_t r = 0; r < D; ++r)
    for (std::size_t c = 0; c < D; ++c) mu_r[r] += R[r * D + c] * mu[c];
  for (std::size_t r = 0; r < D; ++r)
    for (std::size_t c = 0; c < D; ++c)
      for (std::size_t k = 0; k < D; ++k) rs[r * D + c] += R[r * D + k] * cov[k * D + c];
  for (std::size_t r = 0; r < D; ++r)
    for (std::size_t c = 0; c < D; ++c)
      for (std::size_t k = 0; k < D; ++k) sig[r * D + c] += rs[r * D + k] * R[c * D + k];
  std::vector<double> z(T);
  double zmax = -1e300;
  for (std::size_t i = 0; i < T; ++i) {
    const float* k = keys.data() + i * D;
    double lin = 0.0, quad = 0.0;
    for (std::size_t r = 0; r < D; ++r) {
      lin += k[r] * mu_r[r];
      for (std::size_t c = 0; c < D; ++c) quad += k[r] * sig[r * D + c] * k[c];
    }
    z[i] = lin / std::sqrt(static_cast<double>(D)) + quad / (2.0 * static_cast<double>(D));
    zmax = std::max(zmax, z[i]);
  }
  double total = 0.0;
  for (auto& x : z) total += (x = std::exp(x - zmax));
  for (auto& x : z) x /= total;
  return z;
}

TEST(ExpectedAttentionScorerTest, UsesTheStatedThetaAndPairing) {
  constexpr std::size_t D = 8, T = 12, Q = 5, F = 64, first = 1000;
  std::mt19937 rng(8);
  std::normal_distribution<float> N(0.0f, 1.0f);
  std::vector<float> keys(T * D), values(T * D, 1.0f);
  for (auto& x : keys) x = N(rng);
  std::vector<double> sum(D, 0.0), outer(D * D, 0.0);
  for (std::size_t q = 0; q < Q; ++q) {
    std::vector<float> x(D);
    for (std::size_t d = 0; d < D; ++d) x[d] = 2.0f * N(rng) + static_cast<float>(d % 3);
    for (std::size_t r = 0; r < D; ++r) {
      sum[r] += x[r];
      for (std::size_t c = 0; c < D; ++c) outer[r * D + c] += static_cast<double>(x[r]) * x[c];
    }
  }
  std::vector<float> scratch(infokv::expected_attention_scorer{}.scratch_floats({T, D, 1, 1}), 0.0f);
  std::vector<std::int32_t> positions(T);
  std::iota(positions.begin(), positions.end(), 0);
  infokv::layer_context<view_t> ctx;
  ctx.kv = view_t(keys.data(), values.data(), D * T, nullptr, 0, T, T, 1, D);
  ctx.group_size = 1;
  ctx.num_q_heads = 1;
  ctx.num_layers = 1;
  ctx.positions = positions.data();
  ctx.query_sum = sum.data();
  ctx.query_outer = outer.data();
  ctx.query_count = Q;
  ctx.next_position = first;
  ctx.scratch = scratch;
  infokv::expected_attention_scorer ea;
  ea.future_positions = F;
  ea.sinks = 0;
  ea.use_value_norm = false;
  const auto score = [&](infokv::rope_params rope) {
    ctx.rope = rope;
    std::vector<float> out(T);
    EXPECT_TRUE(ea.score(ctx, infokv::score_matrix{out.data(), 1, T}).ok());
    return out;
  };
  using infokv::rope_pairing;
  for (const double theta : {5e5, 1e5, 1e6}) {
    for (const auto pairing : {rope_pairing::rotate_half, rope_pairing::adjacent}) {
      const infokv::rope_params stated{theta, pairing};
      const auto want = expected_attention_oracle(keys, sum, outer, Q, D, first, F, stated);
      const auto got = score(stated);
      for (std::size_t i = 0; i < T; ++i) EXPECT_NEAR(got[i], want[i], 1e-5 + 1e-4 * want[i]) << theta << " " << i;
      // The same scores under the library's former silent default disagree with this oracle.
      const auto wrong = score({1e4, rope_pairing::rotate_half});
      double worst = 0.0;
      for (std::size_t i = 0; i < T; ++i) worst = std::max(worst, std::abs(wrong[i] - want[i]));
      EXPECT_GT(worst, 1e-3) << "theta " << theta << ": the oracle cannot tell the parameters apart";
    }
  }
  // Nothing stated: a clear status, not a default.
  ctx.rope = {};
  std::vector<float> out(T);
  EXPECT_EQ(ea.score(ctx, infokv::score_matrix{out.data(), 1, T}), infokv::errc::rope_not_stated);
  ctx.rope = {1e5, rope_pairing::unstated};
  EXPECT_EQ(ea.score(ctx, infokv::score_matrix{out.data(), 1, T}), infokv::errc::rope_not_stated);
  ctx.rope = {std::nan(""), rope_pairing::adjacent};
  EXPECT_EQ(ea.score(ctx, infokv::score_matrix{out.data(), 1, T}), infokv::errc::rope_not_stated);
}

TEST(RedundancyScorerTest, OlderDuplicatesAreMoreRedundant) {
  tiny t({1, 0, 1, 0, 1, 0, 0, 1}, std::vector<float>(8, 0.0f));
  t.window({0.0f, 0.0f}, {3});
  infokv::redundancy_scorer r;
  r.window = 1;
  r.kernel = 3;
  const auto s = t.run(r);
  // Similarity column means (see the R-KV rule): [2, 1, 0, 0] / 4, softmaxed.
  const double e[4] = {std::exp(0.5), std::exp(0.25), 1.0, 1.0};
  const double z = e[0] + e[1] + e[2] + e[3];
  const double attn[4] = {1.0 / 3, 1.0 / 3, 1.0 / 3, 0.0};  // uniform over candidates, max-pooled
  for (int i = 0; i < 4; ++i)
    EXPECT_NEAR(s[static_cast<std::size_t>(i)], r.lambda * attn[i] - (1 - r.lambda) * e[i] / z, 1e-6) << i;
}

TEST(AccumulatedAttentionScorerTest, ReadsTheAccumulatedRow) {
  tiny t({0, 0, 0, 0}, {0, 0, 0, 0});
  const std::vector<float> acc{0.25f, 1.5f, 9.0f, 7.0f};  // head-major, stride 2: head 0 first
  t.ctx.accumulated = acc.data();
  t.ctx.accumulated_stride = 2;
  EXPECT_EQ(t.run(infokv::accumulated_attention_scorer{}), (std::vector<float>{0.25f, 1.5f}));
  // Mean over the queries that could attend each key (kvpress's observed attention): 5 tokens
  // seen, so the key at position 0 had 5 queries and the one at position 3 had 2.
  t.positions = {0, 3};
  t.ctx.next_position = 5;
  EXPECT_EQ(t.run(infokv::accumulated_attention_scorer{.mean_over_queries = true}),
            (std::vector<float>{0.25f / 5.0f, 1.5f / 2.0f}));
}

TEST(RandomScorerTest, ReproducibleAndFreshPerEviction) {
  tiny t(std::vector<float>(64, 0.0f), std::vector<float>(64, 0.0f));
  const auto a = t.run(infokv::random_scorer{3});
  EXPECT_EQ(a, t.run(infokv::random_scorer{3}));
  EXPECT_NE(a, t.run(infokv::random_scorer{4}));
  t.ctx.eviction_index = 1;
  EXPECT_NE(a, t.run(infokv::random_scorer{3}));
  for (float x : a) EXPECT_TRUE(x >= 0.0f && x < 1.0f);
}

TEST(PoolingTest, MatchesPyTorchSamePadding) {
  const float in[4] = {1, 2, 3, 4};
  float out[4];
  infokv::simd::avg_pool(scalar_t{}, in, out, 4, 3);
  EXPECT_FLOAT_EQ(out[0], 1.0f);       // (0 + 1 + 2) / 3
  EXPECT_FLOAT_EQ(out[3], 7.0f / 3);   // (3 + 4 + 0) / 3
  infokv::simd::max_pool(scalar_t{}, in, out, 4, 3);
  EXPECT_FLOAT_EQ(out[0], 2.0f);
  EXPECT_FLOAT_EQ(out[3], 4.0f);
}

}  // namespace
