// SPDX-License-Identifier: Apache-2.0
// Every SIMD kernel against the scalar reference, for every ISA this CPU has (the others skip),
// over float / half / bfloat16 inputs and ragged lengths.
#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "../support/isa_list.hpp"
#include "../support/test_cache.hpp"
#include "infokv/infokv.hpp"
#include "infokv/simd/kernels.hpp"

namespace {

namespace simd = infokv::simd;
using simd::scalar_t;

template <class Isa>
class KernelTest : public infokv_test::isa_test<Isa> {
 public:
  std::mt19937 rng{12345};
  std::vector<float> normal(std::size_t n, float sd = 1.0f) {
    std::normal_distribution<float> N(0.0f, sd);
    std::vector<float> v(n);
    for (auto& x : v) x = N(rng);
    return v;
  }
};
TYPED_TEST_SUITE(KernelTest, infokv_test::all_isas, infokv_test::isa_name);

constexpr std::size_t kLengths[] = {0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 64, 127, 128, 129, 1000};

template <class T, class Isa>
void check_row_kernels(KernelTest<Isa>& t) {
  for (std::size_t n : kLengths) {
    const auto src = t.normal(n);
    std::vector<T> x(n);
    for (std::size_t i = 0; i < n; ++i) x[i] = infokv::from_float<T>(src[i]);
    const auto q = t.normal(n);
    std::vector<float> a(n), b(n);
    simd::to_float_row(Isa{}, x.data(), a.data(), n);
    simd::to_float_row(scalar_t{}, x.data(), b.data(), n);
    ASSERT_EQ(a, b) << "conversion is exact, n=" << n;
    const float tol = 1e-5f * static_cast<float>(n + 1);
    EXPECT_NEAR(simd::dot(Isa{}, x.data(), q.data(), n), simd::dot(scalar_t{}, x.data(), q.data(), n), tol) << n;
    EXPECT_NEAR(simd::squared_norm(Isa{}, x.data(), n), simd::squared_norm(scalar_t{}, x.data(), n), tol * 4) << n;
  }
}

TYPED_TEST(KernelTest, RowKernelsMatchScalarForEveryElementType) {
  check_row_kernels<float>(*this);
  check_row_kernels<infokv::half>(*this);
  check_row_kernels<infokv::bfloat16>(*this);
}

TYPED_TEST(KernelTest, CosineDistanceAndAxpy) {
  for (std::size_t n : kLengths) {
    if (n == 0) continue;
    const auto a = this->normal(n), b = this->normal(n);
    EXPECT_NEAR(simd::cosine_distance(TypeParam{}, a.data(), b.data(), n),
                simd::cosine_distance(scalar_t{}, a.data(), b.data(), n), 1e-5) << n;
    std::vector<float> y1 = this->normal(n), y2 = y1;
    simd::axpy(TypeParam{}, 0.375f, a.data(), y1.data(), n);
    simd::axpy(scalar_t{}, 0.375f, a.data(), y2.data(), n);
    for (std::size_t i = 0; i < n; ++i) ASSERT_NEAR(y1[i], y2[i], 1e-6) << n;
  }
  const std::vector<float> z(64, 0.0f), one(64, 1.0f);
  EXPECT_EQ(simd::cosine_distance(TypeParam{}, z.data(), one.data(), 64), 1.0f);
}

TYPED_TEST(KernelTest, FiniteChecksFindEveryBadValue) {
  constexpr float inf = std::numeric_limits<float>::infinity();
  for (std::size_t n : {1u, 7u, 8u, 16u, 17u, 100u}) {
    for (std::size_t at : {std::size_t{0}, n / 2, n - 1}) {
      for (float bad : {std::nanf(""), inf, -inf}) {
        auto x = this->normal(n);
        EXPECT_TRUE(simd::all_finite(TypeParam{}, x.data(), n));
        EXPECT_TRUE(simd::no_nan_or_pos_inf(TypeParam{}, x.data(), n));
        x[at] = bad;
        EXPECT_FALSE(simd::all_finite(TypeParam{}, x.data(), n)) << n << " " << at << " " << bad;
        EXPECT_EQ(simd::no_nan_or_pos_inf(TypeParam{}, x.data(), n), bad == -inf) << n << " " << at << " " << bad;
      }
    }
  }
}

TYPED_TEST(KernelTest, PackedGemmMatchesScalar) {
  for (std::size_t m : {1u, 5u, 12u, 13u, 32u}) {
    for (std::size_t n : {1u, 31u, 32u, 70u}) {
      const std::size_t k = 24, ldc = (n + 31) / 32 * 32;
      const auto a = this->normal(m * k);
      const auto b = this->normal(ldc * k);
      std::vector<float> c1(m * ldc), c2(m * ldc);
      simd::gemm_packed(TypeParam{}, a.data(), m, k, b.data(), n, k, c1.data(), ldc);
      simd::gemm_packed(scalar_t{}, a.data(), m, k, b.data(), n, k, c2.data(), ldc);
      for (std::size_t r = 0; r < m; ++r)
        for (std::size_t j = 0; j < n; ++j) ASSERT_NEAR(c1[r * ldc + j], c2[r * ldc + j], 1e-4) << m << "x" << n;
    }
  }
}

TYPED_TEST(KernelTest, SoftmaxAccumulateMatchesScalarWithMaskedEntries) {
  for (std::size_t n : {1u, 9u, 16u, 100u, 1025u}) {
    auto s = this->normal(3 * n, 4.0f);
    s[0] = -std::numeric_limits<float>::infinity();
    if (n > 5) s[n + 5] = -std::numeric_limits<float>::infinity();
    for (std::size_t i = 0; i < n; ++i) s[2 * n + i] = -std::numeric_limits<float>::infinity();  // all masked
    auto s2 = s;
    std::vector<float> acc1(n, 0.5f), acc2(n, 0.5f);
    simd::softmax_accumulate_rows(TypeParam{}, s.data(), 3, n, n, acc1.data(), 0.25f);
    simd::softmax_accumulate_rows(scalar_t{}, s2.data(), 3, n, n, acc2.data(), 0.25f);
    for (std::size_t i = 0; i < n; ++i) ASSERT_NEAR(acc1[i], acc2[i], 2e-6) << n << " " << i;
  }
}

TYPED_TEST(KernelTest, TopKEntropyOverRealVocabularySizes) {
  std::vector<float> scratch(152064);
  for (std::size_t v : {40u, 5000u, 49152u, 128256u, 152064u}) {
    for (float sd : {0.5f, 3.0f, 12.0f}) {
      auto z = this->normal(v, sd);
      z[v / 3] = -std::numeric_limits<float>::infinity();  // a masked vocabulary entry
      for (std::size_t k : {1u, 16u, 256u, 100000u}) {
        const float want = simd::top_k_entropy(scalar_t{}, z.data(), v, k, scratch.data());
        const float got = simd::top_k_entropy(TypeParam{}, z.data(), v, k, scratch.data());
        ASSERT_NEAR(got, want, 2e-5 * (1.0 + want)) << "vocab " << v << " sd " << sd << " k " << k;
      }
    }
  }
  // Ties at the k-th place and extreme logits.
  std::vector<float> ties(50000, 1.0f);
  EXPECT_NEAR(simd::top_k_entropy(TypeParam{}, ties.data(), ties.size(), 256, scratch.data()), std::log(256.0f), 1e-5);
  ties[7] = 1e30f;
  EXPECT_NEAR(simd::top_k_entropy(TypeParam{}, ties.data(), ties.size(), 256, scratch.data()), 0.0f, 1e-6);
}

// The GEMM window attention against the per-key reference, through a real layer context.
TYPED_TEST(KernelTest, WindowAttentionGemmMatchesReference) {
  using view_t = infokv::stream_view<infokv::bfloat16>;
  for (std::size_t T : {5u, 40u, 333u}) {
    const std::size_t D = 16, G = 3, W = 7;
    std::vector<infokv::bfloat16> keys(T * 2 * D);
    for (auto& k : keys) k = infokv::to_bfloat16(this->normal(1)[0]);
    std::vector<std::int32_t> pos(T), qpos(W);
    for (std::size_t i = 0; i < T; ++i) pos[i] = static_cast<std::int32_t>((i * 37) % T);  // scrambled slots
    for (std::size_t t = 0; t < W; ++t) qpos[t] = static_cast<std::int32_t>(T - 1 - (t * 3) % W);
    const auto queries = this->normal(W * 2 * G * D);
    std::vector<float> scratch(infokv::window_attention_scratch_floats(T, D, G * W));
    infokv::layer_context<view_t, TypeParam> ctx;
    ctx.kv = view_t(keys.data(), keys.data(), 2 * D * T, nullptr, 0, T, T, 2, D);
    ctx.group_size = G;
    ctx.num_q_heads = 2 * G;
    ctx.positions = pos.data();
    ctx.window_queries = queries.data();
    ctx.window_positions = qpos.data();
    ctx.window_count = W;
    ctx.newest_query = 0;  // qpos[0] = T - 1
    ctx.scratch = scratch;
    for (std::size_t used : {1u, 4u, 7u}) {
      for (std::size_t h = 0; h < 2; ++h) {
        std::vector<float> fast(T), ref(T), logits(T);
        ASSERT_TRUE(infokv::detail::window_attention_mean_gemm(ctx, h, used, fast.data()).ok());
        ASSERT_TRUE(infokv::detail::window_attention_mean_reference(ctx, h, used,
                                                                    infokv::group_reduction::mean_of_probabilities,
                                                                    false, ref.data(), logits.data())
                        .ok());
        for (std::size_t i = 0; i < T; ++i) ASSERT_NEAR(fast[i], ref[i], 2e-6) << "T " << T << " used " << used;
      }
    }
  }
}

TYPED_TEST(KernelTest, TopKSelectionGivesTheReferenceSet) {
  std::mt19937 gen(7);
  for (std::size_t n : {1000u, 2048u, 5000u, 40000u}) {
    for (int kind = 0; kind < 5; ++kind) {
      std::vector<float> s(n);
      std::normal_distribution<float> N;
      for (std::size_t i = 0; i < n; ++i) {
        switch (kind) {
          case 0: s[i] = N(gen); break;
          case 1: s[i] = static_cast<float>(gen() % 7);  break;               // heavy ties
          case 2: s[i] = std::abs(N(gen)) * 1e-3f; break;                      // softmax-like
          case 3: s[i] = (gen() % 10 == 0) ? std::nanf("") : N(gen); break;    // NaN below all
          default: s[i] = (gen() % 50 == 0) ? std::numeric_limits<float>::infinity() : -std::abs(N(gen)); break;
        }
      }
      std::vector<std::int32_t> pos(n);
      for (std::size_t i = 0; i < n; ++i) pos[i] = static_cast<std::int32_t>(i);
      std::shuffle(pos.begin(), pos.end(), gen);
      std::vector<std::uint32_t> scratch(infokv::select_scratch_words(n));
      for (std::size_t k : {std::size_t{1}, n / 10, n / 2, n - 1}) {
        std::vector<std::uint32_t> a(n), b(n);
        infokv::select_top_k(TypeParam{}, s, pos, k, a, scratch);
        infokv::select_top_k_reference(s, pos, k, b);
        std::vector<std::uint32_t> c(n);
        infokv::detail::radix_select(s, pos, k, c, scratch.data());
        std::sort(c.begin(), c.begin() + static_cast<std::ptrdiff_t>(k));
        std::sort(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(k));
        std::sort(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(k));
        ASSERT_TRUE(std::equal(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(k), b.begin()))
            << "n " << n << " kind " << kind << " k " << k;
        ASSERT_TRUE(std::equal(c.begin(), c.begin() + static_cast<std::ptrdiff_t>(k), b.begin()))
            << "radix: n " << n << " kind " << kind << " k " << k;
      }
    }
  }
}

// The compressor gives the same keep sets whichever ISA it was instantiated for (KNorm: scores
// differ only by rounding, far from ties with random keys).
TYPED_TEST(KernelTest, CompressorKeepSetsDoNotDependOnTheIsa) {
  const infokv::model_shape shape{.num_layers = 2, .num_q_heads = 4, .num_kv_heads = 2, .head_dim = 16,
                                  .hidden_size = 8, .vocab_size = 64};
  infokv::compress_config cfg;
  cfg.granularity = infokv::stream_granularity::per_layer;
  cfg.capacity = 64;
  cfg.sink_tokens = 2;
  cfg.recent_tokens = 4;
  cfg.decode_budget = infokv::budget::of_tokens(16);
  infokv::compressor<infokv::knorm_policy, TypeParam> fast(infokv::make_knorm(), cfg, shape);
  infokv::compressor<infokv::knorm_policy, scalar_t> ref(infokv::make_knorm(), cfg, shape);
  infokv_test::test_cache<infokv::half, infokv::layout_hnd> a(shape, cfg.granularity, 1, 4, 64, 1), b(shape, cfg.granularity, 1, 4, 64, 1);
  auto sa = fast.make_state();
  auto sb = ref.make_state();
  for (std::int32_t t = 0; t < 100; ++t) {
    a.append(0, 1, t);
    b.append(0, 1, t);
    ASSERT_TRUE(fast.compress(a.view(), 0, sa, {}).ok());
    ASSERT_TRUE(ref.compress(b.view(), 0, sb, {}).ok());
    a.sync_after_compaction(sa.last_plan());
    b.sync_after_compaction(sb.last_plan());
    ASSERT_EQ(a.check_contents(), b.check_contents()) << t;
  }
}

}  // namespace
