// SPDX-License-Identifier: Apache-2.0
// Every kernel with a chunked or blocked structure, swept over every length up to three chunks
// and a block past its chunk size, plus random lengths to 32K, for every ISA this CPU has:
// against the scalar oracle, and with invariants that need no oracle (attention rows sum to 1,
// keep counts exact, kept slots hold their own K/V). A kernel that is right at 5, 40 and 333
// tokens and wrong at 1,025 cannot pass here.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "../support/isa_list.hpp"
#include "../support/test_cache.hpp"
#include "infokv/infokv.hpp"
#include "infokv/simd/kernels.hpp"

namespace {

namespace simd = infokv::simd;
using infokv::attention_key_block;
using infokv::attention_key_chunk;
using simd::scalar_t;

template <class Isa>
class LengthSweep : public infokv_test::isa_test<Isa> {
 public:
  std::mt19937_64 rng{20261202};
  std::vector<float> normal(std::size_t n, float sd = 1.0f) {
    std::normal_distribution<float> N(0.0f, sd);
    std::vector<float> v(n);
    for (auto& x : v) x = N(rng);
    return v;
  }
  /// Random lengths in (lo, hi], sorted.
  std::vector<std::size_t> random_lengths(std::size_t count, std::size_t lo, std::size_t hi) {
    std::uniform_int_distribution<std::size_t> U(lo + 1, hi);
    std::vector<std::size_t> out(count);
    for (auto& n : out) n = U(rng);
    std::sort(out.begin(), out.end());
    return out;
  }
};
TYPED_TEST_SUITE(LengthSweep, infokv_test::all_isas, infokv_test::isa_name);

/// The longest length every chunked kernel is swept to: three chunks and a block past them.
constexpr std::size_t kSweepEnd = 3 * attention_key_chunk + attention_key_block;

/// One stream of T tokens with one KV head, keys of type Elem in scrambled slot order, and a
/// window of `window` queries (G query heads each) at positions T-1, T-2, ...: the older queries
/// mask the keys newer than themselves, and every query sees at least one key.
template <class Elem, class Isa>
struct window_fixture {
  using view_t = infokv::stream_view<Elem>;
  std::size_t T, D, G, W;
  std::vector<Elem> keys;
  std::vector<std::int32_t> pos, qpos;
  std::vector<float> queries, scratch, fast, ref, logits;
  infokv::layer_context<view_t, Isa> ctx;

  window_fixture(std::size_t tokens, std::size_t dim, std::size_t group, std::size_t window, std::mt19937_64& rng)
      : T(tokens), D(dim), G(group), W(std::min(window, tokens)) {
    std::normal_distribution<float> N(0.0f, 1.0f);
    keys.resize(T * D);
    for (auto& k : keys) k = infokv::from_float<Elem>(N(rng));
    pos.resize(T);
    std::iota(pos.begin(), pos.end(), 0);
    std::shuffle(pos.begin(), pos.end(), rng);
    qpos.resize(W);
    for (std::size_t t = 0; t < W; ++t) qpos[t] = static_cast<std::int32_t>(T - 1 - t);
    // Scaled so that attention is peaked: the softmax statistics of every chunk matter.
    queries.resize(W * G * D);
    for (auto& q : queries) q = 2.0f * N(rng);
    scratch.assign(infokv::window_attention_scratch_floats(T, D, G * W), 0.0f);
    fast.assign(T, 0.0f);
    ref.assign(T, 0.0f);
    logits.assign(T, 0.0f);
    ctx.kv = view_t(keys.data(), keys.data(), D * T, nullptr, 0, T, T, 1, D);
    ctx.group_size = G;
    ctx.num_q_heads = G;
    ctx.positions = pos.data();
    ctx.window_queries = queries.data();
    ctx.window_positions = qpos.data();
    ctx.window_count = W;
    ctx.newest_query = 0;
    ctx.scratch = scratch;
  }

  /// GEMM path against the per-key reference for the newest `used` queries, and the row sum.
  void check(std::size_t used) {
    ASSERT_TRUE(infokv::detail::window_attention_mean_gemm(ctx, 0, used, fast.data()).ok());
    ASSERT_TRUE(infokv::detail::window_attention_mean_reference(
                    ctx, 0, used, infokv::group_reduction::mean_of_probabilities, false, ref.data(), logits.data())
                    .ok());
    double sum = 0.0, sum_ref = 0.0;
    for (std::size_t i = 0; i < T; ++i) {
      ASSERT_NEAR(fast[i], ref[i], 2e-6 + infokv_test::window_score_rel_tolerance<Isa> * ref[i]) << "T " << T << " key " << i << " used " << used << " G " << G;
      sum += fast[i];
      sum_ref += ref[i];
    }
    // Each used (query, head) row is a probability distribution: the mean sums to 1.
    ASSERT_NEAR(sum, 1.0, 1e-4) << "T " << T << " used " << used << " G " << G;
    ASSERT_NEAR(sum_ref, 1.0, 1e-4) << "reference, T " << T;
  }
};

template <class Elem, class Isa>
void sweep_window_attention(LengthSweep<Isa>& t, std::size_t first, std::size_t last, std::size_t step) {
  for (std::size_t T = first; T <= last; T += step) {
    window_fixture<Elem, Isa> f(T, 8, 3, 2, t.rng);
    f.check(2);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

// Every length from 1 to three softmax chunks and a key block past them, bfloat16 keys (the
// blocking does not depend on the element type; the other types take every third length).
TYPED_TEST(LengthSweep, WindowAttentionEveryLength) {
  sweep_window_attention<infokv::bfloat16>(*this, 1, kSweepEnd, 1);
  sweep_window_attention<float>(*this, 1, kSweepEnd, 3);
  sweep_window_attention<infokv::half>(*this, 2, kSweepEnd, 3);
}

TYPED_TEST(LengthSweep, WindowAttentionRandomLengthsTo32K) {
  for (std::size_t T : this->random_lengths(12, kSweepEnd, 32768)) {
    window_fixture<infokv::bfloat16, TypeParam> f(T, 16, 3, 4, this->rng);
    f.check(4);
    if (this->HasFatalFailure()) return;
  }
}

// Query rows M = G x used on both sides of the 32-column panels, at lengths around chunk and
// block boundaries.
TYPED_TEST(LengthSweep, WindowAttentionQueryRowsAcrossPanels) {
  const std::size_t c = attention_key_chunk, b = attention_key_block;
  for (std::size_t T : {b - 1, b, b + 1, c - 1, c, c + 1, c + b - 1, c + b, 2 * c + 7, 2 * c + b + 1}) {
    for (std::size_t G : {1u, 4u, 7u}) {
      window_fixture<float, TypeParam> f(T, 8, G, 10, this->rng);
      for (std::size_t used = 1; used <= f.W; ++used) {
        f.check(used);
        if (this->HasFatalFailure()) return;
      }
    }
  }
}

// The micro-kernel shapes: every row count through three 12-row blocks and every column count
// through two 32-column panels.
TYPED_TEST(LengthSweep, PackedGemmEveryShape) {
  for (std::size_t k : {1u, 3u, 8u, 17u}) {
    for (std::size_t m = 1; m <= 3 * attention_key_block + 4; ++m) {
      for (std::size_t n = 1; n <= 2 * simd::panel_width + 6; ++n) {
        const std::size_t ldc = (n + simd::panel_width - 1) / simd::panel_width * simd::panel_width;
        const auto a = this->normal(m * k);
        const auto bp = this->normal(ldc * k);
        // A guard row past the m rows: the kernel must not write it.
        std::vector<float> c1((m + 1) * ldc, 42.0f), c2((m + 1) * ldc, 42.0f);
        simd::gemm_packed(TypeParam{}, a.data(), m, k, bp.data(), n, k, c1.data(), ldc);
        simd::gemm_packed(scalar_t{}, a.data(), m, k, bp.data(), n, k, c2.data(), ldc);
        for (std::size_t r = 0; r < m; ++r)
          for (std::size_t j = 0; j < n; ++j)
            ASSERT_NEAR(c1[r * ldc + j], c2[r * ldc + j], 1e-5 * static_cast<double>(k + 1)) << m << "x" << n << "x" << k;
        for (std::size_t j = 0; j < ldc; ++j) ASSERT_EQ(c1[m * ldc + j], 42.0f) << "row past m written, " << m << "x" << n;
      }
    }
  }
}

// Top-k entropy: the sampled threshold starts at 4,096 entries and filters 16 at a time; every
// vocabulary size through two sample thresholds, then real vocabulary sizes.
TYPED_TEST(LengthSweep, TopKEntropyEveryLength) {
  constexpr std::size_t kEnd = 2 * 4096 + 16;
  std::vector<float> scratch(160000), scratch_ref(160000);
  const auto z = this->normal(160000, 3.0f);
  for (std::size_t n = 1; n <= kEnd; ++n) {
    for (std::size_t k : {std::size_t{1}, std::size_t{16}, std::size_t{256}}) {
      const float want = simd::top_k_entropy(scalar_t{}, z.data(), n, k, scratch_ref.data());
      const float got = simd::top_k_entropy(TypeParam{}, z.data(), n, k, scratch.data());
      ASSERT_NEAR(got, want, 2e-5 * (1.0 + want)) << "n " << n << " k " << k;
    }
  }
  for (std::size_t n : this->random_lengths(10, kEnd, 160000)) {
    for (std::size_t k : {std::size_t{1}, std::size_t{64}, std::size_t{256}, n / 16, n}) {
      const float want = simd::top_k_entropy(scalar_t{}, z.data(), n, k, scratch_ref.data());
      const float got = simd::top_k_entropy(TypeParam{}, z.data(), n, k, scratch.data());
      ASSERT_NEAR(got, want, 2e-5 * (1.0 + want)) << "n " << n << " k " << k;
    }
  }
}

/// Sorted keep set of select_top_k (fast) and of the reference; both must be k slots.
template <class Isa>
void check_selection(std::span<const float> s, std::span<const std::int32_t> pos, std::size_t k,
                     std::vector<std::uint32_t>& scratch) {
  const std::size_t n = s.size();
  std::vector<std::uint32_t> a(n), b(n);
  infokv::select_top_k(Isa{}, s, pos, k, a, scratch);
  infokv::select_top_k_reference(s, pos, k, b);
  const std::size_t kk = std::min(k, n);
  std::sort(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(kk));
  std::sort(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(kk));
  ASSERT_TRUE(std::equal(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(kk), b.begin())) << "n " << n << " k " << k;
  ASSERT_TRUE(std::adjacent_find(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(kk)) ==
              a.begin() + static_cast<std::ptrdiff_t>(kk))
      << "a slot selected twice, n " << n << " k " << k;
  if (k == 0 || k >= n) return;
  std::vector<std::uint32_t> c(n);
  infokv::detail::radix_select(s, pos, k, c, scratch.data());
  std::sort(c.begin(), c.begin() + static_cast<std::ptrdiff_t>(k));
  ASSERT_TRUE(std::equal(c.begin(), c.begin() + static_cast<std::ptrdiff_t>(k), b.begin())) << "radix, n " << n << " k " << k;
}

// Selection: the sampled brackets start at 2,048 scores (a 1,024-score sample, 16-wide splits);
// every length through three sample sizes and a vector past them, ties and NaN included.
TYPED_TEST(LengthSweep, TopKSelectionEveryLength) {
  constexpr std::size_t kEnd = 3 * 1024 + 16;
  std::normal_distribution<float> N;
  const auto run = [&](std::size_t n) {
    std::vector<float> s(n);
    for (std::size_t i = 0; i < n; ++i) {
      const auto r = this->rng() % 20;
      s[i] = r == 0 ? std::nanf("") : r < 4 ? static_cast<float>(r) : N(this->rng);  // NaN, ties, numbers
    }
    std::vector<std::int32_t> pos(n);
    std::iota(pos.begin(), pos.end(), 0);
    std::shuffle(pos.begin(), pos.end(), this->rng);
    // radix_select alone needs 2n + 2,048 words (select_top_k calls it from 2,048 scores on).
    std::vector<std::uint32_t> scratch(std::max(infokv::select_scratch_words(n), 2 * n + 2048));
    for (std::size_t k : {std::size_t{1}, n / 3, n / 2 + 1, n > 1 ? n - 1 : 1}) {
      check_selection<TypeParam>(s, pos, k, scratch);
      if (this->HasFatalFailure()) return;
    }
  };
  for (std::size_t n = 1; n <= kEnd && !this->HasFatalFailure(); ++n) run(n);
  for (std::size_t n : this->random_lengths(10, kEnd, 32768)) run(n);
}

/// Appends T tokens to one sequence, compresses once to `keep` (a ratio) and checks what an
/// engine relies on: each stream holds exactly its budget, every kept slot holds its own K/V,
/// the kept positions are those the scalar-ISA compressor keeps (the oracle), and the freed
/// pages are exactly those that left the streams (checked by sync_after_compaction).
template <class Isa, class Layout>
void compress_once(std::size_t T, std::size_t page_size, infokv::stream_granularity g, double keep) {
  const infokv::model_shape shape{.num_layers = 2, .num_q_heads = 2, .num_kv_heads = 2, .head_dim = 8,
                                  .hidden_size = 8, .vocab_size = 16};
  infokv::compress_config cfg;
  cfg.granularity = g;
  cfg.capacity = T;
  cfg.sink_tokens = 1;
  cfg.recent_tokens = 2;
  cfg.prefill_budget = infokv::budget::of_ratio(keep);
  infokv::compressor<infokv::knorm_policy, Isa> fast(infokv::make_knorm(), cfg, shape);
  infokv::compressor<infokv::knorm_policy, scalar_t> oracle(infokv::make_knorm(), cfg, shape);
  const std::size_t pages = (T + page_size - 1) / page_size * (g == infokv::stream_granularity::per_layer_head ? 2 : 1) + 1;
  infokv_test::test_cache<infokv::half, Layout> a(shape, g, 1, page_size, pages, T), b(shape, g, 1, page_size, pages, T);
  auto sa = fast.make_state();
  auto sb = oracle.make_state();
  infokv::step_signals sig;
  sig.num_tokens = T;
  a.append(0, T, 0);
  b.append(0, T, 0);
  ASSERT_TRUE(fast.compress_prefill(a.view(), 0, sa, sig).ok()) << "T " << T;
  ASSERT_TRUE(oracle.compress_prefill(b.view(), 0, sb, sig).ok()) << "T " << T;
  a.sync_after_compaction(sa.last_plan());
  b.sync_after_compaction(sb.last_plan());
  const std::size_t want = std::max<std::size_t>(static_cast<std::size_t>(static_cast<double>(T) * keep),
                                                 std::min<std::size_t>(T, cfg.sink_tokens + cfg.recent_tokens));
  for (std::size_t s = 0; s < a.num_streams(); ++s) ASSERT_EQ(a.length(s), want) << "T " << T << " stream " << s;
  auto kept = a.check_contents();
  auto kept_oracle = b.check_contents();
  for (auto* v : {&kept, &kept_oracle})
    for (auto& s : *v) std::sort(s.begin(), s.end());
  ASSERT_EQ(kept, kept_oracle) << "T " << T << " page size " << page_size;
}

// Compaction moves runs of consecutive slots within a page and frees whole pages: every length
// through three pages and a bit of the largest page size, for page sizes 1 (cells), 3 and 16,
// both layouts, per-sequence and per-head streams, two keep ratios.
TYPED_TEST(LengthSweep, CompactionEveryLength) {
  for (std::size_t ps : {1u, 3u, 16u}) {
    for (std::size_t T = 4; T <= 3 * 16 + 5; ++T) {
      for (double keep : {0.5, 0.3}) {
        compress_once<TypeParam, infokv::layout_nhd>(T, ps, infokv::stream_granularity::per_sequence, keep);
        compress_once<TypeParam, infokv::layout_hnd>(T, ps, infokv::stream_granularity::per_layer_head, keep);
        if (this->HasFatalFailure()) return;
      }
    }
  }
}

// Keep counts and contents through the whole compressor where selection takes its sampled path
// (2,048 scores and more per stream): lengths across the selection's and the attention kernel's
// chunk boundaries, and random lengths.
TYPED_TEST(LengthSweep, CompressorKeepCountsAcrossSelectionPaths) {
  std::vector<std::size_t> lengths = {2047, 2048, 2049, 2063, 2064, 3071, 3072, 3073, 3084, 3085};
  for (std::size_t T : this->random_lengths(4, 3085, 9000)) lengths.push_back(T);
  for (std::size_t T : lengths) {
    compress_once<TypeParam, infokv::layout_nhd>(T, 16, infokv::stream_granularity::per_layer_head, 0.25);
    if (this->HasFatalFailure()) return;
  }
}

}  // namespace
