// SPDX-License-Identifier: Apache-2.0
// Every CUDA kernel against the CPU library's scalar oracle, for float, half and bfloat16 and
// both layouts, on paged caches with pages in random order. Without a device the kernel tests
// skip (they are compiled all the same); the launcher argument checks run everywhere, since they
// return before anything is enqueued.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "gpu_support.cuh"
#include "infokv/cuda/compaction.cuh"
#include "infokv/cuda/entropy.cuh"
#include "infokv/cuda/layer_evolution.cuh"
#include "infokv/cuda/top_k.cuh"
#include "infokv/cuda/window_attention.cuh"
#include "oracle.hpp"

namespace {

using infokv::stream_granularity;
using namespace infokv_gpu_test;

template <class T, class L, stream_granularity G, std::size_t D, std::size_t W>
struct combo {
  using element = T;
  using layout = L;
  static constexpr stream_granularity granularity = G;
  static constexpr std::size_t head_dim = D;
  static constexpr std::size_t window = W;
};

// All six element type x layout pairs, every granularity, a head_dim that is not a multiple of
// the 32-wide slice, and windows of 1, 8 and 64 queries (64 x group 3 = three query-row tiles).
using Combos = ::testing::Types<combo<float, infokv::layout_nhd, stream_granularity::per_layer, 64, 64>,
                                combo<float, infokv::layout_hnd, stream_granularity::per_sequence, 80, 8>,
                                combo<infokv::half, infokv::layout_nhd, stream_granularity::per_layer_head, 64, 8>,
                                combo<infokv::half, infokv::layout_hnd, stream_granularity::per_layer, 128, 64>,
                                combo<infokv::bfloat16, infokv::layout_nhd, stream_granularity::per_sequence, 64, 1>,
                                combo<infokv::bfloat16, infokv::layout_hnd, stream_granularity::per_layer_head, 80, 64>>;

template <class C>
class CudaViewKernels : public ::testing::Test {
 protected:
  static cache_shape shape(std::size_t pool_pages) {
    cache_shape s;
    s.head_dim = C::head_dim;
    s.granularity = C::granularity;
    s.pool_pages = pool_pages;
    return s;
  }
};
TYPED_TEST_SUITE(CudaViewKernels, Combos);

/// Runs the window-attention launcher over `streams` of `layer` (W queries of Hq heads each, one
/// window per stream) and returns the scores [streams][heads_per_page][max_tokens].
template <class View>
std::vector<float> run_window_attention(const View& view, const std::vector<std::int32_t>& streams, std::size_t layer,
                                        const std::vector<float>& q, const std::vector<std::int32_t>& qpos,
                                        std::size_t W, std::size_t Hq, std::size_t max_tokens) {
  device_buffer<std::int32_t> d_streams(streams), d_qpos(qpos);
  device_buffer<float> d_q(q), d_scores(streams.size() * view.heads_per_page() * max_tokens);
  infokv::cuda::window_attention_args a;
  a.streams = d_streams.get();
  a.batch = streams.size();
  a.layer = layer;
  a.queries = d_q.get();
  a.query_positions = d_qpos.get();
  a.window = W;
  a.num_q_heads = Hq;
  a.max_tokens = max_tokens;
  a.scores = d_scores.get();
  device_buffer<char> ws(infokv::cuda::window_attention_workspace_bytes(view, a));
  EXPECT_TRUE(infokv::cuda::window_attention(view, a, {ws.get(), ws.size()}, nullptr).ok());
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return d_scores.download();
}

TYPED_TEST(CudaViewKernels, WindowAttentionMatchesTheScalarReference) {
  INFOKV_REQUIRE_GPU();
  using T = typename TypeParam::element;
  using L = typename TypeParam::layout;
  const cache_shape shape = TestFixture::shape(400);
  const std::vector<std::size_t> tokens = {1000, 77};  // a tail tile, and a stream shorter than two tiles
  auto host = make_cache<T, L>(shape, tokens, 7);
  device_cache<T> dev(host);
  const auto view = dev.template view<L>();
  const std::size_t W = TypeParam::window, Hq = shape.q_heads, D = shape.head_dim, H = view.heads_per_page();
  const std::size_t max_tokens = 1030;
  std::mt19937 rng(3);
  std::normal_distribution<float> N(0.0f, 1.5f);
  for (std::size_t layer = 0; layer < shape.layers; ++layer) {
    // Every stream of this layer (per_sequence streams span all layers).
    std::vector<std::int32_t> streams;
    for (std::size_t s = 0; s < view.num_streams(); ++s)
      if (view.layers_per_stream() > 1 || view.stream_layer(s) == layer) streams.push_back(static_cast<std::int32_t>(s));
    const std::size_t B = streams.size();
    std::vector<float> q(B * W * Hq * D);
    for (auto& x : q) x = N(rng);
    std::vector<std::int32_t> qpos(B * W);
    for (std::size_t b = 0; b < B; ++b) {
      const std::size_t len = tokens[view.stream_sequence(static_cast<std::size_t>(streams[b]))];
      for (std::size_t t = 0; t < W; ++t) qpos[b * W + t] = static_cast<std::int32_t>(len - W + t);  // the newest tokens
    }
    const auto got = run_window_attention(view, streams, layer, q, qpos, W, Hq, max_tokens);
    ASSERT_FALSE(this->HasFailure());
    for (std::size_t b = 0; b < B; ++b) {
      const auto want = window_attention_oracle<T, L>(host, static_cast<std::size_t>(streams[b]), layer,
                                                      q.data() + b * W * Hq * D, qpos.data() + b * W, W, Hq);
      const std::size_t len = want.size() / H;
      for (std::size_t h = 0; h < H; ++h) {
        double total = 0.0;
        for (std::size_t i = 0; i < max_tokens; ++i) {
          const float g = got[(b * H + h) * max_tokens + i];
          if (i >= len) {
            ASSERT_EQ(g, -std::numeric_limits<float>::infinity()) << "slot past the end, i=" << i;
            continue;
          }
          const float w = want[h * len + i];
          ASSERT_NEAR(g, w, 1e-7 + 2e-4 * std::fabs(w)) << "layer " << layer << " stream " << streams[b] << " head " << h
                                                         << " key " << i;
          total += g;
        }
        EXPECT_NEAR(total, 1.0, 1e-4) << "a mean of softmax rows sums to 1";
      }
    }
  }
}

TYPED_TEST(CudaViewKernels, DevicePlanAndCompactionMatchTheHostCompressor) {
  INFOKV_REQUIRE_GPU();
  using T = typename TypeParam::element;
  using L = typename TypeParam::layout;
  const cache_shape shape = TestFixture::shape(200);
  auto c = make_compaction_case<T, L>(shape, 11);
  ASSERT_FALSE(c.moves.empty());
  // Rows = the plan's streams, keep lists as select_top_k would write them.
  const std::size_t rows = c.streams.size(), ld = 1024;
  std::vector<std::uint32_t> keep(rows * ld, 0);
  std::vector<std::int32_t> kept(rows), streams(rows);
  for (std::size_t r = 0; r < rows; ++r) {
    const auto& sp = c.streams[r];
    std::copy_n(c.keep.begin() + sp.keep_offset, sp.new_length, keep.begin() + static_cast<std::ptrdiff_t>(r * ld));
    kept[r] = static_cast<std::int32_t>(sp.new_length);
    streams[r] = static_cast<std::int32_t>(sp.stream);
  }
  device_buffer<std::uint32_t> d_keep(keep);
  device_buffer<std::int32_t> d_kept(kept), d_streams(streams), d_counts(rows);
  device_buffer<infokv::slot_move> d_moves(rows * ld);
  ASSERT_TRUE(infokv::cuda::plan_moves(d_keep.get(), d_kept.get(), d_streams.get(), rows, ld, d_moves.get(),
                                       d_counts.get(), nullptr).ok());
  INFOKV_CUDA_OK(cudaDeviceSynchronize());
  const auto moves = d_moves.download();
  const auto counts = d_counts.download();
  std::vector<infokv::slot_move> device_plan;
  for (std::size_t r = 0; r < rows; ++r)
    device_plan.insert(device_plan.end(), moves.begin() + static_cast<std::ptrdiff_t>(r * ld),
                       moves.begin() + static_cast<std::ptrdiff_t>(r * ld + static_cast<std::size_t>(counts[r])));
  ASSERT_EQ(device_plan, c.moves) << "the device plans the host compressor's moves, in order";

  // Apply the device-made moves (rows) to one upload and the host's flat list to another.
  device_cache<T> a(c.before), b(c.before);
  infokv::cuda::move_list rows_list{d_moves.get(), d_counts.get(), rows, ld, ld};
  ASSERT_TRUE(infokv::cuda::apply_slot_moves(a.template view<L>(), rows_list, nullptr).ok());
  device_buffer<infokv::slot_move> flat(c.moves);
  infokv::cuda::move_list flat_list{flat.get(), nullptr, 1, c.moves.size(), c.moves.size()};
  ASSERT_TRUE(infokv::cuda::apply_slot_moves(b.template view<L>(), flat_list, nullptr).ok());
  INFOKV_CUDA_OK(cudaDeviceSynchronize());
  for (auto* d : {&a, &b}) {
    for (std::size_t l = 0; l < shape.layers; ++l) {
      const auto k = d->keys[l].download(), v = d->values[l].download();
      ASSERT_EQ(0, std::memcmp(k.data(), c.after.keys[l].data(), k.size() * sizeof(T))) << "keys of layer " << l;
      ASSERT_EQ(0, std::memcmp(v.data(), c.after.values[l].data(), v.size() * sizeof(T))) << "values of layer " << l;
    }
    EXPECT_EQ(d->positions.download(), c.after.positions);
    EXPECT_EQ(d->indptr.download(), c.before.indptr) << "the page table is the engine's to truncate";
  }
}

template <class T>
std::vector<T> convert(const std::vector<float>& x) {
  std::vector<T> out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = infokv::from_float<T>(x[i]);
  return out;
}
template <class T>
std::vector<float> as_float(const std::vector<T>& x) {
  std::vector<float> out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = infokv::to_float(x[i]);
  return out;
}

template <class T>
class CudaElementKernels : public ::testing::Test {};
using Elements = ::testing::Types<float, infokv::half, infokv::bfloat16>;
TYPED_TEST_SUITE(CudaElementKernels, Elements);

TYPED_TEST(CudaElementKernels, TopKEntropyMatchesTheScalarReference) {
  INFOKV_REQUIRE_GPU();
  using T = TypeParam;
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  for (const std::size_t vocab : {std::size_t{49152}, std::size_t{1000}}) {
    std::mt19937 rng(static_cast<unsigned>(vocab));
    std::normal_distribution<float> N(0.0f, 3.0f);
    std::vector<std::vector<float>> rows;
    std::vector<float> r(vocab);
    for (auto& x : r) x = N(rng);
    rows.push_back(r);                                  // ordinary
    rows.push_back(std::vector<float>(vocab, 2.5f));    // all equal: ties at the threshold
    std::vector<float> hot(vocab, -5.0f);
    hot[vocab / 3] = 30.0f;
    rows.push_back(hot);                                // one-hot
    for (auto& x : r) x = std::round(x * 2.0f) / 2.0f;  // few distinct values: many ties
    rows.push_back(r);
    for (std::size_t i = 0; i < vocab; i += 2) r[i] = ninf;
    rows.push_back(r);                                  // half of the vocabulary masked
    rows.push_back(std::vector<float>(vocab, ninf));    // all masked: 0
    std::vector<float> big(vocab);
    for (auto& x : big) x = N(rng) * 1e3f;
    rows.push_back(big);                                // huge logits
    const std::size_t R = rows.size();
    std::vector<float> flat;
    for (const auto& row : rows) flat.insert(flat.end(), row.begin(), row.end());
    const auto stored = convert<T>(flat);
    const auto exact = as_float(stored);  // what the kernel reads
    device_buffer<T> d_logits(stored);
    device_buffer<float> d_out(R);
    // k = 256 and 1 take the chunked path, 9,000 (> one chunk) and >= vocab the direct one.
    for (const std::size_t k : {std::size_t{256}, std::size_t{1}, std::size_t{9000}, vocab, vocab + 5}) {
      device_buffer<char> ws(infokv::cuda::top_k_entropy_workspace_bytes(R, vocab, k));
      ASSERT_TRUE(infokv::cuda::top_k_entropy(d_logits.get(), R, vocab, vocab, k, d_out.get(), {ws.get(), ws.size()},
                                              nullptr).ok());
      INFOKV_CUDA_OK(cudaDeviceSynchronize());
      const auto got = d_out.download();
      for (std::size_t i = 0; i < R; ++i) {
        const float want = top_k_entropy_oracle(exact.data() + i * vocab, vocab, k);
        EXPECT_NEAR(got[i], want, 2e-6 + 2e-5 * want) << "vocab " << vocab << " k " << k << " row " << i;
      }
    }
  }
  // A NaN or +inf logit poisons its row only.
  std::vector<float> two(2 * 300, 1.0f);
  two[17] = std::numeric_limits<float>::quiet_NaN();
  device_buffer<T> d_two(convert<T>(two));
  device_buffer<float> d_o(2);
  device_buffer<char> ws(infokv::cuda::top_k_entropy_workspace_bytes(2, 300, 256));
  ASSERT_TRUE(infokv::cuda::top_k_entropy(d_two.get(), 2, 300, 300, 256, d_o.get(), {ws.get(), ws.size()}, nullptr).ok());
  INFOKV_CUDA_OK(cudaDeviceSynchronize());
  const auto o = d_o.download();
  EXPECT_TRUE(std::isnan(o[0]));
  EXPECT_NEAR(o[1], std::log(256.0f), 1e-5);
}

TYPED_TEST(CudaElementKernels, LayerEvolutionMatchesTheScalarReference) {
  INFOKV_REQUIRE_GPU();
  using T = TypeParam;
  constexpr std::size_t L = 5, n = 37, d = 576;
  std::mt19937 rng(5);
  std::normal_distribution<float> N(0.0f, 1.0f);
  std::vector<float> h(L * n * d);
  for (auto& x : h) x = N(rng);
  for (std::size_t i = 0; i < d; ++i) {
    h[(1 * n + 3) * d + i] = 0.0f;                          // a zero vector: distance 1
    h[(2 * n + 4) * d + i] = h[((L - 1) * n + 4) * d + i];  // aligned: 0
    h[(3 * n + 5) * d + i] = -h[((L - 1) * n + 5) * d + i]; // opposed: 2
  }
  const auto stored = convert<T>(h);
  const auto exact = as_float(stored);
  device_buffer<T> d_h(stored);
  constexpr std::size_t ld = 40;
  device_buffer<float> d_out(L * ld);
  ASSERT_TRUE(infokv::cuda::layer_evolution(d_h.get(), L, n, d, d_out.get(), ld, nullptr).ok());
  INFOKV_CUDA_OK(cudaDeviceSynchronize());
  const auto got = d_out.download();
  for (std::size_t l = 0; l < L; ++l)
    for (std::size_t j = 0; j < n; ++j) {
      const float want = l == L - 1 ? 0.0f
                                    : cosine_distance_oracle(exact.data() + (l * n + j) * d,
                                                             exact.data() + ((L - 1) * n + j) * d, d);
      ASSERT_NEAR(got[l * ld + j], want, 1e-6) << "layer " << l << " token " << j;
    }
  EXPECT_EQ(got[1 * ld + 3], 1.0f);
  EXPECT_NEAR(got[2 * ld + 4], 0.0f, 1e-6);
  EXPECT_NEAR(got[3 * ld + 5], 2.0f, 1e-6);
}

TEST(CudaSelect, TopKMatchesTheHostOrderExactly) {
  INFOKV_REQUIRE_GPU();
  constexpr std::size_t ld = 40000;
  // (length, keep): ordinary, few, none, all, more than all, empty, one of many ties.
  const std::vector<std::pair<std::size_t, std::size_t>> cases = {
      {40000, 10000}, {5000, 37}, {3000, 0}, {3000, 3000}, {100, 400}, {0, 5}, {20000, 1}, {1, 1}, {2048, 2047}};
  const std::size_t R = cases.size();
  std::mt19937 rng(9);
  std::normal_distribution<float> N(0.0f, 1.0f);
  std::vector<float> scores(R * ld, 0.0f);
  std::vector<std::int32_t> pos(R * ld, 0), lengths(R), keeps(R);
  for (std::size_t r = 0; r < R; ++r) {
    const auto [n, k] = cases[r];
    lengths[r] = static_cast<std::int32_t>(n);
    keeps[r] = static_cast<std::int32_t>(k);
    std::vector<std::int32_t> perm(n);
    std::iota(perm.begin(), perm.end(), 1000);  // unique positions, scrambled like after compactions
    std::shuffle(perm.begin(), perm.end(), rng);
    for (std::size_t i = 0; i < n; ++i) {
      float s = N(rng);
      if (r % 3 == 0) s = std::round(s * 4.0f) / 4.0f;  // heavy ties: the position decides
      if (r == 6) s = 0.5f;                           // all tied
      if (i % 97 == 0) s = std::numeric_limits<float>::quiet_NaN();
      if (i % 89 == 0) s = -std::numeric_limits<float>::infinity();
      scores[r * ld + i] = s;
      pos[r * ld + i] = perm[i];
    }
  }
  device_buffer<float> d_s(scores);
  device_buffer<std::int32_t> d_p(pos), d_len(lengths), d_k(keeps), d_kept(R);
  device_buffer<std::uint32_t> d_keep(R * ld);
  for (const bool with_positions : {true, false}) {
    infokv::cuda::select_args a{d_s.get(), with_positions ? d_p.get() : nullptr, d_len.get(), d_k.get(), R, ld,
                                d_keep.get(), d_kept.get()};
    ASSERT_TRUE(infokv::cuda::select_top_k(a, nullptr).ok());
    INFOKV_CUDA_OK(cudaDeviceSynchronize());
    const auto keep = d_keep.download();
    const auto kept = d_kept.download();
    for (std::size_t r = 0; r < R; ++r) {
      const auto [n, k] = cases[r];
      std::vector<std::int32_t> p(pos.begin() + static_cast<std::ptrdiff_t>(r * ld),
                                  pos.begin() + static_cast<std::ptrdiff_t>(r * ld + n));
      if (!with_positions) std::iota(p.begin(), p.end(), 0);
      const auto want = select_oracle(scores.data() + r * ld, p.data(), n, k);
      ASSERT_EQ(static_cast<std::size_t>(kept[r]), want.size()) << "row " << r;
      const std::vector<std::uint32_t> got(keep.begin() + static_cast<std::ptrdiff_t>(r * ld),
                                           keep.begin() + static_cast<std::ptrdiff_t>(r * ld + want.size()));
      ASSERT_EQ(got, want) << "row " << r << (with_positions ? " (positions)" : " (slot order)");
    }
  }
}

// Length sweeps of the tiled kernels (tests/sweep/ does the same for the CPU kernels): every
// stream length through three 128-key tiles and a bit, in one batch, with 66 query rows (two
// 64-row tiles), plus random lengths to 32K; every row must also sum to 1.
TEST(CudaSweep, WindowAttentionEveryLengthThroughThreeTiles) {
  INFOKV_REQUIRE_GPU();
  using T = infokv::bfloat16;
  using L = infokv::layout_nhd;
  std::vector<std::size_t> tokens;
  for (std::size_t n = 1; n <= 3 * 128 + 9; ++n) tokens.push_back(n);
  std::mt19937 rng(11);
  std::uniform_int_distribution<std::size_t> U(400, 32768);
  for (int i = 0; i < 4; ++i) tokens.push_back(U(rng));
  cache_shape shape;
  shape.layers = 1;
  shape.head_dim = 40;  // not a multiple of the 32-wide slice
  shape.granularity = stream_granularity::per_sequence;
  std::size_t pages = 0, max_tokens = 0;
  for (std::size_t n : tokens) {
    pages += (n + shape.page_size - 1) / shape.page_size;
    max_tokens = std::max(max_tokens, n);
  }
  shape.pool_pages = pages + 8;
  auto host = make_cache<T, L>(shape, tokens, 13);
  device_cache<T> dev(host);
  const auto view = dev.template view<L>();
  const std::size_t W = 22, Hq = shape.q_heads, D = shape.head_dim, H = view.heads_per_page(), B = tokens.size();
  std::vector<std::int32_t> streams(B), qpos(B * W);
  std::iota(streams.begin(), streams.end(), 0);
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t t = 0; t < W; ++t) qpos[b * W + t] = static_cast<std::int32_t>(tokens[b] - 1 - t % tokens[b]);
  std::normal_distribution<float> N(0.0f, 2.0f);
  std::vector<float> q(B * W * Hq * D);
  for (auto& x : q) x = N(rng);
  const auto got = run_window_attention(view, streams, 0, q, qpos, W, Hq, max_tokens);
  ASSERT_FALSE(HasFailure());
  for (std::size_t b = 0; b < B; ++b) {
    const auto want = window_attention_oracle<T, L>(host, b, 0, q.data() + b * W * Hq * D, qpos.data() + b * W, W, Hq);
    const std::size_t len = tokens[b];
    for (std::size_t h = 0; h < H; ++h) {
      double total = 0.0;
      for (std::size_t i = 0; i < len; ++i) {
        const float g = got[(b * H + h) * max_tokens + i], w = want[h * len + i];
        ASSERT_NEAR(g, w, 1e-7 + 2e-4 * std::fabs(w)) << "length " << len << " head " << h << " key " << i;
        total += g;
      }
      ASSERT_NEAR(total, 1.0, 1e-4) << "length " << len << " head " << h;
    }
  }
}

// The split entropy path cuts rows into 8,192-value chunks: every vocabulary size through three
// chunks and a bit (one launch per size, one buffer), k = 1 and 256, against the oracle.
TEST(CudaSweep, TopKEntropyEveryVocabularySizeThroughThreeChunks) {
  INFOKV_REQUIRE_GPU();
  constexpr std::size_t kEnd = 3 * infokv::cuda::detail::entropy_chunk + 300;
  std::mt19937 rng(17);
  std::normal_distribution<float> N(0.0f, 3.0f);
  std::vector<float> row(kEnd);
  for (auto& x : row) x = N(rng);
  device_buffer<float> d_row(row), d_out(1);
  device_buffer<char> ws(std::max(infokv::cuda::top_k_entropy_workspace_bytes(1, kEnd, 256),
                                  infokv::cuda::top_k_entropy_workspace_bytes(1, kEnd, 1)));
  for (std::size_t n = 1; n <= kEnd; ++n) {
    for (const std::size_t k : {std::size_t{1}, std::size_t{256}}) {
      ASSERT_LE(infokv::cuda::top_k_entropy_workspace_bytes(1, n, k), ws.size());
      ASSERT_TRUE(infokv::cuda::top_k_entropy(d_row.get(), 1, n, n, k, d_out.get(), {ws.get(), ws.size()}, nullptr).ok());
      INFOKV_CUDA_OK(cudaDeviceSynchronize());
      const float got = d_out.download()[0], want = top_k_entropy_oracle(row.data(), n, k);
      ASSERT_NEAR(got, want, 2e-6 + 2e-5 * want) << "vocabulary " << n << " k " << k;
    }
  }
}

// Selection over every row length through three 1,024-thread blocks and a bit, in one launch.
TEST(CudaSweep, TopKSelectionEveryLength) {
  INFOKV_REQUIRE_GPU();
  constexpr std::size_t ld = 3 * 1024 + 20;
  const std::size_t R = ld;
  std::mt19937 rng(19);
  std::normal_distribution<float> N(0.0f, 1.0f);
  std::vector<float> scores(R * ld, 0.0f);
  std::vector<std::int32_t> pos(R * ld, 0), lengths(R), keeps(R);
  for (std::size_t r = 0; r < R; ++r) {
    const std::size_t n = r + 1;
    lengths[r] = static_cast<std::int32_t>(n);
    keeps[r] = static_cast<std::int32_t>(r % 3 == 0 ? n / 3 : r % 3 == 1 ? n / 2 + 1 : (n > 1 ? n - 1 : 1));
    std::vector<std::int32_t> perm(n);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (std::size_t i = 0; i < n; ++i) {
      const auto u = rng() % 20;
      scores[r * ld + i] = u == 0 ? std::numeric_limits<float>::quiet_NaN() : u < 4 ? static_cast<float>(u) : N(rng);
      pos[r * ld + i] = perm[i];
    }
  }
  device_buffer<float> d_s(scores);
  device_buffer<std::int32_t> d_p(pos), d_len(lengths), d_k(keeps), d_kept(R);
  device_buffer<std::uint32_t> d_keep(R * ld);
  infokv::cuda::select_args a{d_s.get(), d_p.get(), d_len.get(), d_k.get(), R, ld, d_keep.get(), d_kept.get()};
  ASSERT_TRUE(infokv::cuda::select_top_k(a, nullptr).ok());
  INFOKV_CUDA_OK(cudaDeviceSynchronize());
  const auto keep = d_keep.download();
  const auto kept = d_kept.download();
  for (std::size_t r = 0; r < R; ++r) {
    const std::size_t n = r + 1;
    const auto want = select_oracle(scores.data() + r * ld, pos.data() + r * ld, n, static_cast<std::size_t>(keeps[r]));
    ASSERT_EQ(static_cast<std::size_t>(kept[r]), want.size()) << "length " << n;
    const std::vector<std::uint32_t> got(keep.begin() + static_cast<std::ptrdiff_t>(r * ld),
                                         keep.begin() + static_cast<std::ptrdiff_t>(r * ld + want.size()));
    ASSERT_EQ(got, want) << "length " << n;
  }
}

// Argument checks happen on the host before anything is enqueued: no device needed.
TEST(CudaLaunchers, RejectBadArgumentsBeforeEnqueueing) {
  using V = infokv::paged_kv_cache_view<infokv::half, infokv::layout_nhd>;
  infokv::paged_kv_cache_params<infokv::half> p;
  p.num_layers = 2;
  p.num_kv_heads = 2;
  p.head_dim = 64;
  p.page_size = 16;
  p.granularity = stream_granularity::per_layer;
  p.num_sequences = 1;
  const V view(p);
  std::int32_t dummy_i = 0;
  float dummy_f = 0.0f;
  infokv::cuda::window_attention_args a;
  a.streams = &dummy_i;
  a.batch = 1;
  a.queries = &dummy_f;
  a.query_positions = &dummy_i;
  a.window = 4;
  a.num_q_heads = 6;
  a.max_tokens = 100;
  a.scores = &dummy_f;
  const std::size_t need = infokv::cuda::window_attention_workspace_bytes(view, a);
  EXPECT_GT(need, 0u);
  EXPECT_EQ(infokv::cuda::window_attention(view, a, {&dummy_f, need - 1}, nullptr), infokv::errc::workspace_too_small);
  auto b = a;
  b.num_q_heads = 5;
  EXPECT_EQ(infokv::cuda::window_attention(view, b, {&dummy_f, need}, nullptr), infokv::errc::shape_mismatch);
  b = a;
  b.layer = 2;
  EXPECT_EQ(infokv::cuda::window_attention(view, b, {&dummy_f, need}, nullptr), infokv::errc::shape_mismatch);
  b = a;
  b.queries = nullptr;
  EXPECT_EQ(infokv::cuda::window_attention(view, b, {&dummy_f, need}, nullptr), infokv::errc::null_pointer);
  b = a;
  b.window = 0;
  EXPECT_EQ(infokv::cuda::window_attention(view, b, {&dummy_f, need}, nullptr), infokv::errc::missing_signal);
  b = a;
  b.batch = 0;
  EXPECT_TRUE(infokv::cuda::window_attention(view, b, {}, nullptr).ok()) << "nothing to do is not an error";

  EXPECT_EQ(infokv::cuda::top_k_entropy(static_cast<const float*>(nullptr), 1, 10, 10, 5, &dummy_f, {}, nullptr),
            infokv::errc::null_pointer);
  EXPECT_EQ(infokv::cuda::top_k_entropy(&dummy_f, 1, 10, 9, 5, &dummy_f, {}, nullptr), infokv::errc::logits_size_mismatch);
  EXPECT_EQ(infokv::cuda::top_k_entropy(&dummy_f, 1, 10, 10, 0, &dummy_f, {}, nullptr), infokv::errc::invalid_config);
  const std::size_t ews = infokv::cuda::top_k_entropy_workspace_bytes(4, 49152, 256);
  EXPECT_GT(ews, 4u * 6 * 256 * sizeof(float));
  EXPECT_EQ(infokv::cuda::top_k_entropy(&dummy_f, 4, 49152, 49152, 256, &dummy_f, {&dummy_f, ews - 1}, nullptr),
            infokv::errc::workspace_too_small);
  EXPECT_EQ(infokv::cuda::top_k_entropy_workspace_bytes(4, 49152, 49152), 0u) << "k >= vocab reads rows directly";
  EXPECT_EQ(infokv::cuda::layer_evolution(&dummy_f, 2, 3, 0, &dummy_f, 3, nullptr), infokv::errc::shape_mismatch);
  EXPECT_EQ(infokv::cuda::layer_evolution(&dummy_f, 2, 3, 8, &dummy_f, 2, nullptr), infokv::errc::shape_mismatch);
  EXPECT_EQ(infokv::cuda::layer_evolution(static_cast<const float*>(nullptr), 2, 3, 8, &dummy_f, 3, nullptr),
            infokv::errc::null_pointer);
  infokv::cuda::select_args s;
  s.rows = 1;
  s.ld = 10;
  EXPECT_EQ(infokv::cuda::select_top_k(s, nullptr), infokv::errc::null_pointer);
  EXPECT_EQ(infokv::cuda::plan_moves(nullptr, &dummy_i, &dummy_i, 1, 10, nullptr, &dummy_i, nullptr),
            infokv::errc::null_pointer);
  infokv::cuda::move_list m;
  m.max_moves = 3;
  EXPECT_EQ(infokv::cuda::apply_slot_moves(view, m, nullptr), infokv::errc::null_pointer);
  p.page_size = 0;
  infokv::slot_move one{};
  m.moves = &one;
  EXPECT_EQ(infokv::cuda::apply_slot_moves(V(p), m, nullptr), infokv::errc::invalid_page_size);
}

}  // namespace
