// SPDX-License-Identifier: Apache-2.0
// Every bad input named in the core issue: a clear status, and pools, page table and sequence
// state byte-for-byte as they were.
#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "../support/test_cache.hpp"
#include "infokv/infokv.hpp"

namespace {

using infokv::errc;
using infokv::stream_granularity;
using infokv_test::signal_source;
using infokv_test::test_cache;

const infokv::model_shape kShape{.num_layers = 2, .num_q_heads = 4, .num_kv_heads = 2, .head_dim = 8,
                                 .hidden_size = 12, .vocab_size = 40};

infokv::compress_config config() {
  infokv::compress_config cfg;
  cfg.granularity = stream_granularity::per_layer;
  cfg.capacity = 64;
  cfg.sink_tokens = 2;
  cfg.recent_tokens = 4;
  cfg.decode_budget = infokv::budget::of_tokens(12);
  cfg.slack = 0;  // every step past the budget evicts, so bad tables are met at once
  return cfg;
}

infokv::infokv_policy<> policy() {
  auto p = infokv::make_infokv();
  p.attention.window = 4;
  p.attention.kernel = 3;
  p.entropy.top_k = 8;
  return p;
}

// A cache that has run 20 steps; the next token is appended and its signals prepared.
class BadInputTest : public ::testing::Test {
 protected:
  BadInputTest() : comp_(policy(), config(), kShape), cache_(kShape, config().granularity, 2, 4, 32, 1), src_(kShape, 5) {
    state_ = comp_.make_state();
    other_ = comp_.make_state();
    for (std::int32_t t = 0; t < 20; ++t) {
      const auto sig = src_.make(1, max_len());
      cache_.append(0, 1, t);
      EXPECT_TRUE(comp_.compress(cache_.view(), 0, state_, sig).ok());
      cache_.sync_after_compaction(state_.last_plan());
      cache_.append(1, 1, t);
      EXPECT_TRUE(comp_.compress(cache_.view(), 1, other_, src_.make(1, max_len())).ok());
      cache_.sync_after_compaction(other_.last_plan());
    }
    sig_ = src_.make(1, max_len());
    cache_.append(0, 1, 20);
    view_ = cache_.view();
  }
  std::size_t max_len() const {
    std::size_t m = 0;
    for (std::size_t s = 0; s < state_.num_streams(); ++s) m = std::max(m, state_.length(s) + 1);
    return m;
  }
  struct snapshot {
    std::vector<std::vector<float>> keys;
    std::vector<std::int32_t> indptr, indices, last, positions;
    infokv::sequence_state state;
    bool operator==(const snapshot&) const = default;
  };
  snapshot take() { return {cache_.keys(), cache_.indptr(), cache_.indices(), cache_.last_page_len(), cache_.positions(), state_}; }

  // Calls compress on `view` with `sig` and expects `code` and no change anywhere.
  void expect_rejected(const infokv::paged_kv_cache_view<float, infokv::layout_nhd>& view, const infokv::step_signals& sig,
                       errc code) {
    const snapshot before = take();
    const infokv::status st = comp_.compress(view, 0, state_, sig);
    EXPECT_EQ(st.code(), code) << "got: " << st.message();
    EXPECT_FALSE(st.message().empty());
    EXPECT_TRUE(take() == before) << "a rejected call changed the cache or the state";
  }

  infokv::compressor<infokv::infokv_policy<>> comp_;
  test_cache<float, infokv::layout_nhd> cache_;
  signal_source src_;
  infokv::sequence_state state_, other_;
  infokv::step_signals sig_;
  infokv::paged_kv_cache_view<float, infokv::layout_nhd> view_;
};

TEST_F(BadInputTest, TheFixtureCallSucceedsAndEvicts) {
  ASSERT_TRUE(comp_.compress(view_, 0, state_, sig_).ok());
  EXPECT_TRUE(state_.last_event().evicted);
}

TEST_F(BadInputTest, ShapesThatDisagreeWithTheModel) {
  auto p = view_.params();
  p.num_kv_heads = 1;
  expect_rejected(decltype(view_)(p), sig_, errc::shape_mismatch);
  p = view_.params();
  p.head_dim = 16;
  expect_rejected(decltype(view_)(p), sig_, errc::shape_mismatch);
  p = view_.params();
  p.page_stride = view_.page_elements() - 1;
  expect_rejected(decltype(view_)(p), sig_, errc::shape_mismatch);
  p = view_.params();
  p.granularity = stream_granularity::per_sequence;
  expect_rejected(decltype(view_)(p), sig_, errc::shape_mismatch);
  auto bad = sig_;
  bad.queries = bad.queries.subspan(1);
  expect_rejected(view_, bad, errc::shape_mismatch);
  bad = sig_;
  bad.hidden_states = bad.hidden_states.first(bad.hidden_states.size() - 1);
  expect_rejected(view_, bad, errc::shape_mismatch);
}

TEST_F(BadInputTest, NullPools) {
  auto p = view_.params();
  p.key_pools = nullptr;
  expect_rejected(decltype(view_)(p), sig_, errc::null_pointer);
  std::vector<float*> pools(cache_.key_pointers());
  pools[1] = nullptr;
  p = view_.params();
  p.value_pools = pools.data();
  expect_rejected(decltype(view_)(p), sig_, errc::null_pointer);
  p = view_.params();
  p.last_page_len = nullptr;
  expect_rejected(decltype(view_)(p), sig_, errc::null_pointer);
}

TEST_F(BadInputTest, PageIdOutOfRange) {
  const auto saved = cache_.indices()[0];
  cache_.indices()[0] = 32;  // == pool_pages
  expect_rejected(view_, sig_, errc::page_out_of_range);
  cache_.indices()[0] = -1;
  expect_rejected(view_, sig_, errc::page_out_of_range);
  cache_.indices()[0] = saved;
  // A stream of another sequence pointing outside the pool is met by the whole-table check.
  const auto last = cache_.indices().size() - 1;
  const auto saved_last = cache_.indices()[last];
  cache_.indices()[last] = 1000;
  expect_rejected(view_, sig_, errc::page_out_of_range);
  cache_.indices()[last] = saved_last;
}

TEST_F(BadInputTest, PageUsedTwice) {
  // Sequence 1's first page is also claimed by sequence 0's stream 0.
  const std::size_t s1 = view_.stream_index(1, 0, 0);
  const auto saved = cache_.indices()[0];
  cache_.indices()[0] = cache_.indices()[static_cast<std::size_t>(cache_.indptr()[s1])];
  expect_rejected(view_, sig_, errc::page_used_twice);
  cache_.indices()[0] = saved;
}

TEST_F(BadInputTest, LengthBeyondThePagesCapacity) {
  const auto saved = cache_.last_page_len()[0];
  cache_.last_page_len()[0] = 5;  // page_size 4
  expect_rejected(view_, sig_, errc::length_exceeds_capacity);
  cache_.last_page_len()[0] = 0;  // a non-empty page list with an empty last page
  expect_rejected(view_, sig_, errc::invalid_page_table);
  cache_.last_page_len()[0] = saved;
  const auto saved_ptr = cache_.indptr()[1];
  cache_.indptr()[1] = cache_.indptr()[0] - 1;
  expect_rejected(view_, sig_, errc::invalid_page_table);
  cache_.indptr()[1] = saved_ptr;
}

TEST_F(BadInputTest, MoreTokensThanTheStateCanHold) {
  // The engine appends a chunk that would take stream 0 past the state's capacity (64).
  cache_.append(0, 60, 21);
  const std::size_t n = 61;  // the fixture's token and these 60
  const auto sig = src_.make(n, max_len() + 60);
  expect_rejected(cache_.view(), sig, errc::length_exceeds_capacity);
}

TEST_F(BadInputTest, PageSizeZero) {
  auto p = view_.params();
  p.page_size = 0;
  expect_rejected(decltype(view_)(p), sig_, errc::invalid_page_size);
}

TEST_F(BadInputTest, BudgetsAndRatios) {
  const snapshot before = take();
  auto run = [&](infokv::compress_config cfg) {
    infokv::compressor c(policy(), cfg, kShape);
    return c.compress(view_, 0, state_, sig_).code();
  };
  auto cfg = config();
  cfg.decode_budget = infokv::budget::of_tokens(0);
  EXPECT_EQ(run(cfg), errc::invalid_ratio);  // tokens == 0 means "ratio", and ratio 0 is outside (0, 1]
  cfg.decode_budget = infokv::budget::of_tokens(5);  // below sinks 2 + window 4
  EXPECT_EQ(run(cfg), errc::invalid_budget);
  for (double r : {0.0, -0.5, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
    cfg.decode_budget = infokv::budget::of_ratio(r);
    EXPECT_EQ(run(cfg), errc::invalid_ratio) << r;
  }
  cfg = config();
  cfg.prefill_budget = infokv::budget::of_ratio(2.0);
  EXPECT_EQ(run(cfg), errc::invalid_ratio);
  EXPECT_TRUE(take() == before);
  EXPECT_EQ(infokv::budget::of_tokens(0).check(0).code(), errc::invalid_ratio);
  EXPECT_EQ((infokv::budget{0, 0.0}).check(0).code(), errc::invalid_ratio);
}

TEST_F(BadInputTest, NonFiniteSignals) {
  for (float bad_value : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity()}) {
    std::vector<float> q(sig_.queries.begin(), sig_.queries.end());
    q[3] = bad_value;
    auto bad = sig_;
    bad.queries = q;
    expect_rejected(view_, bad, errc::non_finite_input);
    std::vector<float> h(sig_.hidden_states.begin(), sig_.hidden_states.end());
    h[5] = bad_value;
    bad = sig_;
    bad.hidden_states = h;
    expect_rejected(view_, bad, errc::non_finite_input);
  }
  for (float bad_value : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    std::vector<float> z(sig_.logits.begin(), sig_.logits.end());
    z[7] = bad_value;
    auto bad = sig_;
    bad.logits = z;
    expect_rejected(view_, bad, errc::non_finite_input);
  }
  // -inf logits are masked vocabulary entries, not an error.
  std::vector<float> z(sig_.logits.begin(), sig_.logits.end());
  z[7] = -std::numeric_limits<float>::infinity();
  auto masked = sig_;
  masked.logits = z;
  EXPECT_TRUE(comp_.compress(view_, 0, state_, masked).ok());
}

TEST_F(BadInputTest, LogitsRowOfTheWrongSize) {
  auto bad = sig_;
  bad.logits = bad.logits.first(39);
  expect_rejected(view_, bad, errc::logits_size_mismatch);
  std::vector<float> longer(41, 0.0f);
  bad.logits = longer;
  expect_rejected(view_, bad, errc::logits_size_mismatch);
}

TEST_F(BadInputTest, MissingSignals) {
  auto bad = sig_;
  bad.queries = {};
  expect_rejected(view_, bad, errc::missing_signal);
  bad = sig_;
  bad.logits = {};
  expect_rejected(view_, bad, errc::missing_signal);
  bad = sig_;
  bad.hidden_states = {};
  expect_rejected(view_, bad, errc::missing_signal);
}

TEST_F(BadInputTest, ViewLengthDisagreesWithTheState) {
  auto bad = sig_;
  bad.num_tokens = 2;  // the engine says two tokens, the cache grew by one
  expect_rejected(view_, bad, errc::length_mismatch);
  // Calling for sequence 1, whose state is `other_`, with sequence 0's state.
  const snapshot before = take();
  EXPECT_EQ(comp_.compress(view_, 1, state_, sig_).code(), errc::length_mismatch);
  EXPECT_TRUE(take() == before);
  EXPECT_EQ(comp_.compress(view_, 2, state_, sig_).code(), errc::shape_mismatch);  // no sequence 2
}

TEST_F(BadInputTest, HeadDimTheStaticKernelDoesNotSupport) {
  auto p = view_.params();
  const snapshot before = take();
  // head_dim 12 is not a multiple of the 8-lane kernels.
  infokv::paged_kv_cache_view<float, infokv::layout_nhd, 12> twelve(p);
  EXPECT_EQ(comp_.compress(twelve, 0, state_, sig_).code(), errc::unsupported_head_dim);
  // A statically 16-wide view over a cache whose runtime head_dim is 8.
  infokv::paged_kv_cache_view<float, infokv::layout_nhd, 16> sixteen(p);
  EXPECT_EQ(comp_.compress(sixteen, 0, state_, sig_).code(), errc::unsupported_head_dim);
  EXPECT_TRUE(take() == before);
  // The matching static view works.
  infokv::paged_kv_cache_view<float, infokv::layout_nhd, 8> eight(p);
  EXPECT_TRUE(comp_.compress(eight, 0, state_, sig_).ok());
}

TEST_F(BadInputTest, SchedulesAtAGranularityThatCannotHoldThem) {
  auto cfg = config();
  cfg.schedule.kind = infokv::budget_schedule::adakv;  // needs per_layer_head streams
  infokv::compressor c(policy(), cfg, kShape);
  EXPECT_EQ(c.can_implement().code(), errc::unsupported_granularity);
  cfg.granularity = stream_granularity::per_sequence;
  cfg.schedule.kind = infokv::budget_schedule::pyramid;
  infokv::compressor c2(policy(), cfg, kShape);
  EXPECT_EQ(c2.can_implement().code(), errc::unsupported_granularity);
}

TEST(StatusTest, EveryCodeHasAMessage) {
  for (int i = 0; i <= static_cast<int>(errc::isa_not_permitted); ++i) {
    const auto m = infokv::to_string(static_cast<errc>(i));
    EXPECT_FALSE(m.empty());
    EXPECT_NE(m, "unknown error");
  }
  static_assert(sizeof(infokv::status) == 8);
  const infokv::result<int> r = infokv::status{errc::invalid_budget, 3};
  EXPECT_FALSE(r.has_value());
  EXPECT_EQ(r.error().detail(), 3);
  const infokv::result<int> v = 5;
  EXPECT_EQ(v.value(), 5);
}

}  // namespace

namespace {

TEST_F(BadInputTest, PolicyParametersOutsideTheirDomain) {
  const snapshot before = take();
  auto run = [&](const auto& pol) {
    infokv::compressor c(pol, config(), kShape);
    return c.compress(view_, 0, state_, sig_).code();
  };
  auto p = policy();
  p.attention.kernel = 4;  // pooling kernels are odd
  EXPECT_EQ(run(p), errc::invalid_config);
  p = policy();
  p.alpha = 1.5f;
  EXPECT_EQ(run(p), errc::invalid_config);
  p = policy();
  p.tau = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(run(p), errc::invalid_config);
  p = policy();
  p.entropy.top_k = 0;
  EXPECT_EQ(run(p), errc::invalid_config);
  auto ea = infokv::make_expected_attention();
  ea.scorer.future_positions = 0;
  EXPECT_EQ(run(ea), errc::invalid_config);
  EXPECT_TRUE(take() == before);
}

// A policy that rotates queries itself (Expected Attention) refuses to run on RoPE the engine
// has not stated, instead of assuming theta 1e4 with rotate-half pairs.
TEST_F(BadInputTest, RopeTheEngineDidNotState) {
  const snapshot before = take();
  for (const infokv::rope_params rope : {infokv::rope_params{}, infokv::rope_params{1e5, infokv::rope_pairing::unstated},
                                         infokv::rope_params{0.0, infokv::rope_pairing::adjacent},
                                         infokv::rope_params{-1e4, infokv::rope_pairing::rotate_half},
                                         infokv::rope_params{std::numeric_limits<double>::infinity(),
                                                             infokv::rope_pairing::adjacent}}) {
    auto cfg = config();
    cfg.rope = rope;
    const infokv::compressor c(infokv::make_expected_attention(), cfg, kShape);
    EXPECT_EQ(c.can_implement(), errc::rope_not_stated);
    auto st = c.make_state();
    EXPECT_EQ(c.compress(view_, 0, st, sig_), errc::rope_not_stated);
    EXPECT_TRUE(take() == before);
  }
  // Policies that never rotate do not ask for it.
  EXPECT_TRUE(comp_.can_implement().ok());
  auto cfg = config();
  cfg.rope = {1e5, infokv::rope_pairing::adjacent};
  EXPECT_TRUE(infokv::compressor(infokv::make_expected_attention(), cfg, kShape).can_implement().ok());
}

}  // namespace
