// SPDX-License-Identifier: Apache-2.0
// The paged view: layout offsets, CSR addressing, granularities, the dense form, element types.
#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "infokv/infokv.hpp"

namespace {

TEST(LayoutTest, OffsetsFollowFlashInferOrders) {
  // NHD page [page_size=4][heads=3][dim=8]; HND page [heads=3][page_size=4][dim=8].
  EXPECT_EQ(infokv::layout_nhd::offset(2, 1, 4, 3, 8), (2u * 3 + 1) * 8);
  EXPECT_EQ(infokv::layout_hnd::offset(2, 1, 4, 3, 8), (1u * 4 + 2) * 8);
}

TEST(PagedKvCacheViewTest, KeyResolvesThroughPageTable) {
  // Two sequences, per_layer streams over 2 layers, page_size 2, 1 head, dim 1.
  std::vector<float> k0(8), k1(8);
  for (int i = 0; i < 8; ++i) k0[static_cast<std::size_t>(i)] = static_cast<float>(i), k1[static_cast<std::size_t>(i)] = 100.0f + static_cast<float>(i);
  float* kp[2] = {k0.data(), k1.data()};
  std::vector<std::int32_t> indptr{0, 2, 3, 4, 4}, indices{3, 0, 1, 2}, last{1, 2, 1, 0};
  infokv::paged_kv_cache_params<float> p;
  p.num_layers = 2, p.num_kv_heads = 1, p.head_dim = 1, p.page_size = 2;
  p.granularity = infokv::stream_granularity::per_layer;
  p.num_sequences = 2, p.key_pools = kp, p.value_pools = kp, p.pool_pages = 4;
  p.indptr = indptr.data(), p.indices = indices.data(), p.last_page_len = last.data();
  const infokv::paged_kv_cache_view<float> v(p);
  EXPECT_EQ(v.num_streams(), 4u);
  EXPECT_EQ(v.stream_index(1, 0, 0), 2u);
  EXPECT_EQ(v.stream_layer(3), 1u);
  EXPECT_EQ(v.stream_length(0), 3u);
  EXPECT_EQ(v.stream_length(3), 0u);
  const auto s0 = v.stream(0, 0);  // sequence 0, layer 0: pages 3, 0
  EXPECT_EQ(*s0.key(0, 0), 6.0f);
  EXPECT_EQ(*s0.key(1, 0), 7.0f);
  EXPECT_EQ(*s0.key(2, 0), 0.0f);
  const auto s1 = v.stream(1, 1);  // sequence 0, layer 1: page 1 in layer 1's pool
  EXPECT_EQ(*s1.key(1, 0), 103.0f);
  std::vector<std::uint64_t> bits(infokv::page_bitmap_words(v));
  EXPECT_TRUE(infokv::validate_page_table(v, bits).ok());
  static_assert(infokv::paged_kv_view<infokv::stream_view<float>>);
  static_assert(std::is_trivially_copyable_v<infokv::paged_kv_cache_view<infokv::half, infokv::layout_hnd, 128>>);
}

TEST(PagedKvCacheViewTest, DenseFormAddressesOneSlabPerStream) {
  std::vector<float> k(2 * 5 * 3 * 4);  // [sequences 2][capacity 5][heads 3][dim 4]
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<float>(i);
  float* kp[1] = {k.data()};
  std::vector<std::int32_t> len{3, 5};
  const auto v = infokv::make_dense_view<float>(1, 3, 4, 5, infokv::stream_granularity::per_sequence, 2, kp, kp, len.data());
  EXPECT_TRUE(v.dense());
  EXPECT_EQ(v.stream_length(1), 5u);
  EXPECT_EQ(*v.stream(1, 0).key(2, 1), static_cast<float>(((1 * 5 + 2) * 3 + 1) * 4));
}

TEST(ElementTypeTest, HalfAndBfloat16ConvertExactly) {
  EXPECT_EQ(infokv::to_float(infokv::half{0x3c00}), 1.0f);
  EXPECT_EQ(infokv::to_float(infokv::half{0xc000}), -2.0f);
  EXPECT_EQ(infokv::to_float(infokv::half{0x7bff}), 65504.0f);
  EXPECT_EQ(infokv::to_float(infokv::half{0x0001}), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_TRUE(std::isinf(infokv::to_float(infokv::half{0x7c00})));
  EXPECT_TRUE(std::isnan(infokv::to_float(infokv::half{0x7e00})));
  EXPECT_EQ(infokv::to_float(infokv::bfloat16{0x3f80}), 1.0f);
  EXPECT_EQ(infokv::to_float(infokv::bfloat16{0xc0a0}), -5.0f);
  // Every finite half round-trips through float.
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    const infokv::half h{static_cast<std::uint16_t>(b)};
    const float f = infokv::to_float(h);
    if (std::isnan(f)) continue;
    ASSERT_EQ(infokv::to_half(f).bits, h.bits) << b;
  }
  EXPECT_EQ(infokv::to_half(70000.0f).bits, 0x7c00);    // overflow to inf
  EXPECT_EQ(infokv::to_half(1.0f + std::ldexp(1.0f, -11)).bits, 0x3c00);  // tie to even
  EXPECT_EQ(infokv::to_bfloat16(1.0f + std::ldexp(1.0f, -8)).bits, 0x3f80);  // tie to even
  EXPECT_EQ(infokv::to_bfloat16(3.0f).bits, 0x4040);
}

}  // namespace
