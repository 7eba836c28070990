// SPDX-License-Identifier: Apache-2.0
// apply_mode::reindex over a cell-addressed cache (view/cell_view.hpp), the way llama.cpp keeps
// its KV cells: two sequences share one pool of cells handed out in a random order, with holes.
// The oracle is the same compressor evicting in place on an ordinary paged cache fed the same
// signals: every step both must keep the same tokens in the same logical order, the cells must
// still hold the keys of the tokens the library thinks they hold, the pools and the cell
// positions must never be written by the library, every evicted cell (and no other) must be
// reported freed, and the other sequence's cells must stay as they were.
#include <algorithm>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include <gtest/gtest.h>

#include "../support/test_cache.hpp"
#include "infokv/infokv.hpp"
#include "infokv/view/cell_view.hpp"

namespace {

const infokv::model_shape kShape{.num_layers = 2, .num_q_heads = 4, .num_kv_heads = 2, .head_dim = 8,
                                 .hidden_size = 16, .vocab_size = 64};

/// A cell-addressed cache as an engine like llama.cpp keeps it: a pool of cells per layer whose
/// rows are padded (row_stride > H * D), per-sequence cell lists, the position in each cell, and
/// a free list that hands cells out in a seeded random order (lowest freed cell first after that).
struct cell_engine {
  static constexpr std::size_t kPad = 3;
  std::size_t cells, stride, B;
  std::vector<std::vector<float>> k, v;
  std::vector<float*> kp, vp;
  std::vector<std::vector<std::int32_t>> seq_cells;
  std::vector<std::int32_t> cell_pos, begin, flat, nonempty;
  std::set<std::int32_t> free_cells;
  std::vector<std::int32_t> first_order;  // the random order of first use

  cell_engine(std::size_t num_cells, std::size_t num_seqs, std::uint64_t seed)
      : cells(num_cells), stride(kShape.num_kv_heads * kShape.head_dim + kPad), B(num_seqs), seq_cells(num_seqs),
        cell_pos(num_cells, -1), nonempty(num_seqs, 0) {
    for (std::size_t l = 0; l < kShape.num_layers; ++l) {
      k.emplace_back(cells * stride, 7.0f);
      v.emplace_back(cells * stride, 7.0f);
    }
    for (std::size_t l = 0; l < kShape.num_layers; ++l) {
      kp.push_back(k[l].data());
      vp.push_back(v[l].data());
    }
    for (std::size_t c = 0; c < cells; ++c) first_order.push_back(static_cast<std::int32_t>(c));
    std::mt19937_64 rng(seed);
    std::shuffle(first_order.begin(), first_order.end(), rng);
  }
  std::int32_t take_cell() {
    if (!first_order.empty()) {
      const std::int32_t c = first_order.back();
      first_order.pop_back();
      return c;
    }
    EXPECT_FALSE(free_cells.empty()) << "out of cells";
    const std::int32_t c = *free_cells.begin();
    free_cells.erase(free_cells.begin());
    return c;
  }
  void append(std::size_t b, std::int32_t pos) {
    const std::int32_t c = take_cell();
    cell_pos[static_cast<std::size_t>(c)] = pos;
    for (std::size_t l = 0; l < kShape.num_layers; ++l)
      for (std::size_t h = 0; h < kShape.num_kv_heads; ++h)
        for (std::size_t d = 0; d < kShape.head_dim; ++d) {
          const std::size_t off = static_cast<std::size_t>(c) * stride + h * kShape.head_dim + d;
          k[l][off] = infokv_test::token_value(pos, l, h, d, false);
          v[l][off] = infokv_test::token_value(pos, l, h, d, true);
        }
    seq_cells[b].push_back(c);
  }
  infokv::paged_kv_cache_view<float> view() {
    begin.assign(B + 1, 0);
    flat.clear();
    for (std::size_t b = 0; b < B; ++b) {
      begin[b] = static_cast<std::int32_t>(flat.size());
      flat.insert(flat.end(), seq_cells[b].begin(), seq_cells[b].end());
    }
    begin[B] = static_cast<std::int32_t>(flat.size());
    flat.push_back(0);  // data() non-null while every sequence is empty
    infokv::cell_cache_params<float> p;
    p.num_layers = kShape.num_layers;
    p.num_kv_heads = kShape.num_kv_heads;
    p.head_dim = kShape.head_dim;
    p.num_cells = cells;
    p.row_stride = stride;
    p.num_sequences = B;
    p.key_layers = kp.data();
    p.value_layers = vp.data();
    p.seq_begin = begin.data();
    p.cells = flat.data();
    p.seq_nonempty = nonempty.data();
    p.cell_positions = cell_pos.data();
    return infokv::make_cell_view(p);
  }
  /// Reads the cell lists back from the table the library rewrote and frees the plan's cells.
  void sync(const infokv::eviction_plan& plan) {
    for (std::size_t b = 0; b < B; ++b)
      seq_cells[b].assign(flat.begin() + begin[b], flat.begin() + begin[b + 1]);
    for (const auto& f : plan.freed) {
      EXPECT_TRUE(free_cells.insert(f.page).second) << "cell " << f.page << " freed twice";
      cell_pos[static_cast<std::size_t>(f.page)] = -1;
    }
  }
};

template <class Policy>
void run_against_in_place(Policy policy, const char* name) {
  SCOPED_TRACE(name);
  infokv::compress_config cfg;
  cfg.granularity = infokv::stream_granularity::per_sequence;
  cfg.capacity = 160;
  cfg.sink_tokens = 2;
  cfg.recent_tokens = 8;
  cfg.decode_budget = infokv::budget::of_tokens(48);
  cfg.prefill_budget = infokv::budget::of_ratio(0.5);
  cfg.slack = 7;
  cfg.rope = {.theta = 5e5, .pairing = infokv::rope_pairing::rotate_half};
  infokv::compress_config oracle_cfg = cfg;
  cfg.apply = infokv::apply_mode::reindex;
  const infokv::compressor comp(policy, cfg, kShape);
  const infokv::compressor oracle(policy, oracle_cfg, kShape);
  ASSERT_TRUE(comp.can_implement().ok());

  constexpr std::size_t kSeqs = 2, kPrompt = 90, kSteps = 260;
  cell_engine cells(2 * 160, kSeqs, 17);
  infokv_test::test_cache<float, infokv::layout_nhd> paged(kShape, cfg.granularity, kSeqs, 16, 64, 23);
  std::vector<infokv::sequence_state> st, ost;
  for (std::size_t b = 0; b < kSeqs; ++b) {
    st.push_back(comp.make_state());
    ost.push_back(oracle.make_state());
  }
  std::vector<infokv_test::signal_source> src{{kShape, 5}, {kShape, 6}};
  std::vector<std::int32_t> next(kSeqs, 0);
  std::size_t evictions = 0;
  for (std::size_t step = 0; step < kSteps; ++step) {
    // The prompt arrives as one chunk per sequence (compress_prefill), then one token per step;
    // the two sequences take turns, so their cells interleave in the pool.
    for (std::size_t b = 0; b < kSeqs; ++b) {
      if (step > 0 && (step + b) % 3 == 0) continue;  // sequences advance at different rates
      const std::size_t n = step == 0 ? kPrompt - 10 * b : 1;
      const auto sig = src[b].make(n, st[b].length(0) + n);
      for (std::size_t j = 0; j < n; ++j) cells.append(b, next[b] + static_cast<std::int32_t>(j));
      paged.append(b, n, next[b]);
      next[b] += static_cast<std::int32_t>(n);

      const auto k_before = cells.k, v_before = cells.v;
      const auto pos_before = cells.cell_pos;
      const std::vector<std::int32_t> other_before = cells.seq_cells[1 - b];
      const std::set<std::int32_t> held_before(cells.seq_cells[b].begin(), cells.seq_cells[b].end());

      const auto view = cells.view();
      const auto s = step == 0 ? comp.compress_prefill(view, b, st[b], sig) : comp.compress(view, b, st[b], sig);
      ASSERT_TRUE(s.ok()) << s.message() << " at step " << step;
      const auto os = step == 0 ? oracle.compress_prefill(paged.view(), b, ost[b], sig)
                                : oracle.compress(paged.view(), b, ost[b], sig);
      ASSERT_TRUE(os.ok()) << os.message();
      paged.sync_after_compaction(ost[b].last_plan());

      // The library never writes K, V or the engine's positions in this mode.
      ASSERT_EQ(cells.k, k_before);
      ASSERT_EQ(cells.v, v_before);
      ASSERT_EQ(cells.cell_pos, pos_before);
      ASSERT_EQ(st[b].last_event().evicted, ost[b].last_event().evicted);
      cells.sync(st[b].last_plan());
      evictions += st[b].last_event().evicted;

      // The same tokens as the in-place oracle, in the same logical order.
      const std::size_t len = st[b].length(0);
      ASSERT_EQ(len, ost[b].length(0));
      ASSERT_EQ(cells.seq_cells[b].size(), len);
      ASSERT_TRUE(std::equal(st[b].positions(0), st[b].positions(0) + len, ost[b].positions(0)));
      // Each cell holds the key and value of the token the library believes is there.
      for (std::size_t i = 0; i < len; ++i) {
        const auto c = static_cast<std::size_t>(cells.seq_cells[b][i]);
        ASSERT_EQ(cells.cell_pos[c], st[b].positions(0)[i]);
        for (std::size_t l = 0; l < kShape.num_layers; ++l)
          for (std::size_t h = 0; h < kShape.num_kv_heads; ++h)
            for (std::size_t d = 0; d < kShape.head_dim; ++d) {
              ASSERT_EQ(cells.k[l][c * cells.stride + h * kShape.head_dim + d],
                        infokv_test::token_value(cells.cell_pos[c], l, h, d, false));
              ASSERT_EQ(cells.v[l][c * cells.stride + h * kShape.head_dim + d],
                        infokv_test::token_value(cells.cell_pos[c], l, h, d, true));
            }
      }
      // Freed: exactly the cells the sequence held before and holds no more.
      const std::set<std::int32_t> held_after(cells.seq_cells[b].begin(), cells.seq_cells[b].end());
      ASSERT_EQ(held_after.size(), len) << "a cell addressed twice";
      std::set<std::int32_t> freed;
      for (const auto& f : st[b].last_plan().freed) freed.insert(f.page);
      if (st[b].last_event().evicted) {
        std::set<std::int32_t> gone;
        std::set_difference(held_before.begin(), held_before.end(), held_after.begin(), held_after.end(),
                            std::inserter(gone, gone.end()));
        ASSERT_EQ(freed, gone);
        ASSERT_EQ(st[b].last_event().pages_freed, gone.size());
        for (std::int32_t c : held_after) ASSERT_TRUE(held_before.count(c)) << "a survivor changed cells";
      }
      ASSERT_EQ(cells.seq_cells[1 - b], other_before) << "the other sequence's cells changed";
      ASSERT_LE(len, step == 0 ? kPrompt : 48u + 7u);
    }
  }
  EXPECT_GT(evictions, 8u);
}

TEST(ReindexTest, InfoKVKeepsWhatInPlaceKeeps) {
  auto pol = infokv::make_infokv();
  pol.attention.window = 16;  // the default 64-query window would not fit the 48-token budget
  pol.attention.kernel = 5;
  pol.entropy.top_k = 32;
  run_against_in_place(pol, "infokv");
}
TEST(ReindexTest, SnapKVKeepsWhatInPlaceKeeps) { run_against_in_place(infokv::make_snapkv(16, 5), "snapkv"); }
TEST(ReindexTest, StreamingLLMKeepsWhatInPlaceKeeps) { run_against_in_place(infokv::make_streaming_llm(), "streamingllm"); }
TEST(ReindexTest, ExpectedAttentionKeepsWhatInPlaceKeeps) {
  run_against_in_place(infokv::make_expected_attention(), "expected-attention");  // reads value norms too
}
TEST(ReindexTest, KNormKeepsWhatInPlaceKeeps) { run_against_in_place(infokv::make_knorm(), "knorm"); }

infokv::compress_config reindex_config() {
  infokv::compress_config cfg;
  cfg.capacity = 64;
  cfg.sink_tokens = 2;
  cfg.recent_tokens = 4;
  cfg.decode_budget = infokv::budget::of_tokens(16);
  cfg.apply = infokv::apply_mode::reindex;
  return cfg;
}

// A view that is not cell-addressed gets errc::unsupported_view, and nothing changes.
TEST(ReindexTest, RefusesAViewThatIsNotCellAddressed) {
  const infokv::compressor comp(infokv::make_knorm(), reindex_config(), kShape);
  for (const bool dense : {false, true}) {
    SCOPED_TRACE(dense ? "dense" : "page_size 4");
    infokv_test::test_cache<float, infokv::layout_nhd> cache(kShape, infokv::stream_granularity::per_sequence, 1,
                                                             dense ? 64 : 4, 32, 3, dense);
    auto st = comp.make_state();
    infokv_test::signal_source src(kShape, 1);
    const auto sig = src.make(40, 40);
    cache.append(0, 40, 0);
    const auto keys = cache.keys();
    const auto indices = cache.indices();
    const auto s = comp.compress_prefill(cache.view(), 0, st, sig);
    EXPECT_EQ(s, infokv::errc::unsupported_view);
    EXPECT_FALSE(s.message().empty());
    EXPECT_EQ(st.length(0), 0u);
    EXPECT_EQ(st.tokens_seen(), 0u);
    EXPECT_EQ(cache.keys(), keys);
    EXPECT_EQ(cache.indices(), indices);
  }
}

TEST(ReindexTest, AnApplyModeOutsideTheEnumIsInvalid) {
  auto cfg = reindex_config();
  cfg.apply = static_cast<infokv::apply_mode>(7);
  const infokv::compressor comp(infokv::make_knorm(), cfg, kShape);
  EXPECT_EQ(comp.can_implement(), infokv::errc::invalid_config);
}

// The cell view describes exactly the engine's rows: stream lengths, pages = cells, row stride.
TEST(CellViewTest, AddressesEachTokensRowInPlace) {
  cell_engine cells(32, 2, 9);
  for (std::int32_t p = 0; p < 5; ++p) cells.append(0, p);
  for (std::int32_t p = 0; p < 3; ++p) cells.append(1, p);
  const auto view = cells.view();
  EXPECT_EQ(view.page_size(), 1u);
  EXPECT_EQ(view.stream_length(0), 5u);
  EXPECT_EQ(view.stream_length(1), 3u);
  EXPECT_EQ(cells.nonempty, (std::vector<std::int32_t>{1, 1}));
  EXPECT_TRUE(infokv::validate_streams(view, 0, 2).ok());
  for (std::size_t b = 0; b < 2; ++b)
    for (std::size_t i = 0; i < view.stream_length(b); ++i) {
      const auto sv = view.stream(b, 1);
      const auto c = static_cast<std::size_t>(cells.seq_cells[b][i]);
      EXPECT_EQ(sv.key(i, 1), cells.k[1].data() + c * cells.stride + kShape.head_dim);
    }
  cells.seq_cells[1].clear();
  const auto emptied = cells.view();
  EXPECT_EQ(cells.nonempty, (std::vector<std::int32_t>{1, 0}));
  EXPECT_EQ(emptied.stream_length(1), 0u);
  EXPECT_TRUE(infokv::validate_streams(emptied, 0, 2).ok());
}

}  // namespace
