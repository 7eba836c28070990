// SPDX-License-Identifier: Apache-2.0
// A small engine-side paged KV cache for tests: owns pools, per-stream page lists and a free list
// per pool domain, hands pages out in a seeded random order, writes each token's K/V as a pure
// function of (position, layer, head, dim) so any slot can be checked after compaction, and
// builds the CSR view the library sees, exactly as an engine would.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include <gtest/gtest.h>

#include "infokv/infokv.hpp"

namespace infokv_test {

inline float token_value(std::int32_t pos, std::size_t layer, std::size_t head, std::size_t d, bool value) {
  std::uint64_t x = static_cast<std::uint64_t>(pos) * 0x9E3779B97F4A7C15ull ^ (layer * 0x100000001B3ull) ^
                    (head << 20) ^ (d << 40) ^ (value ? 0x5555ull : 0ull);
  x = infokv::detail::mix64(x);
  return static_cast<float>(static_cast<double>(x >> 40) / 16777216.0 * 2.0 - 1.0);
}

template <class T, class Layout>
class test_cache {
 public:
  using view_type = infokv::paged_kv_cache_view<T, Layout>;

  /// `page_padding` elements of unused space after every page (a strided pool).
  test_cache(const infokv::model_shape& shape, infokv::stream_granularity g, std::size_t num_sequences,
             std::size_t page_size, std::size_t pool_pages, std::uint64_t seed, bool dense = false,
             std::size_t page_padding = 0)
      : shape_(shape), g_(g), B_(num_sequences), ps_(page_size), pool_pages_(pool_pages), dense_(dense),
        pad_(page_padding), rng_(seed) {
    infokv::paged_kv_cache_params<T, std::int32_t> p;
    p.num_layers = shape.num_layers;
    p.num_kv_heads = shape.num_kv_heads;
    p.head_dim = shape.head_dim;
    p.page_size = page_size;
    p.granularity = g;
    p.num_sequences = num_sequences;
    view_type probe(p);
    S_ = probe.num_streams();
    domains_ = probe.num_domains();
    page_elems_ = probe.page_elements();
    if (dense_) pool_pages_ = g == infokv::stream_granularity::per_layer_head ? B_ * shape.num_kv_heads : B_;
    for (std::size_t l = 0; l < shape.num_layers; ++l) {
      k_.emplace_back(pool_pages_ * (page_elems_ + pad_), infokv::from_float<T>(7.0f));
      v_.emplace_back(pool_pages_ * (page_elems_ + pad_), infokv::from_float<T>(7.0f));
    }
    for (std::size_t l = 0; l < shape.num_layers; ++l) {
      kp_.push_back(k_[l].data());
      vp_.push_back(v_[l].data());
    }
    pages_.assign(S_, {});
    len_.assign(S_, 0);
    last_.assign(S_, 0);
    positions_.assign(domains_ * pool_pages_ * ps_, -1);
    free_.assign(domains_, {});
    for (std::size_t d = 0; d < domains_; ++d) {
      for (std::size_t i = 0; i < pool_pages_; ++i) free_[d].push_back(static_cast<std::int32_t>(i));
      std::shuffle(free_[d].begin(), free_[d].end(), rng_);
    }
    rebuild();
  }

  /// The view the engine passes to the library, built from its page lists.
  [[nodiscard]] view_type view() {
    rebuild();
    return view_after();
  }

  /// Appends n tokens with positions next_pos .. next_pos + n - 1 to every stream of sequence b.
  void append(std::size_t b, std::size_t n, std::int32_t next_pos) {
    const view_type v = view();
    for (std::size_t s = b * v.streams_per_sequence(); s < (b + 1) * v.streams_per_sequence(); ++s) {
      for (std::size_t j = 0; j < n; ++j) {
        const std::size_t slot = len_[s];
        if (!dense_ && slot % ps_ == 0) {
          auto& fl = free_[v.stream_domain(s)];
          ASSERT_FALSE(fl.empty()) << "test pool exhausted";
          pages_[s].push_back(fl.back());
          fl.pop_back();
        }
        const std::size_t page = dense_ ? v.dense_page(s) : static_cast<std::size_t>(pages_[s][slot / ps_]);
        const std::int32_t pos = next_pos + static_cast<std::int32_t>(j);
        positions_[(v.stream_domain(s) * pool_pages_ + page) * ps_ + slot % ps_] = pos;
        for_layers(v, s, [&](std::size_t l) {
          for (std::size_t h = 0; h < v.heads_per_page(); ++h) {
            const std::size_t head = v.stream_head(s) + h;
            for (std::size_t d = 0; d < shape_.head_dim; ++d) {
              const std::size_t off = page * v.page_stride() + Layout::offset(slot % ps_, h, ps_, v.heads_per_page(), shape_.head_dim) + d;
              k_[l][off] = infokv::from_float<T>(token_value(pos, l, head, d, false));
              v_[l][off] = infokv::from_float<T>(token_value(pos, l, head, d, true));
            }
          }
        });
        ++len_[s];
      }
    }
    rebuild();
  }

  /// Reads the table back after an in-place compaction, returns freed pages to the free lists
  /// and checks that exactly the plan's freed pages left the streams.
  void sync_after_compaction(const infokv::eviction_plan& plan) {
    const view_type v = view_after();
    std::vector<std::multiset<std::int32_t>> dropped(S_);
    for (std::size_t s = 0; s < S_; ++s) {
      const std::size_t np = v.stream_num_pages(s);
      len_[s] = v.stream_length(s);
      if (dense_) continue;
      std::vector<std::int32_t> now(np);
      for (std::size_t i = 0; i < np; ++i) now[i] = static_cast<std::int32_t>(v.stream_page(s, i));
      ASSERT_LE(now.size(), pages_[s].size());
      for (std::size_t i = 0; i < now.size(); ++i) ASSERT_EQ(now[i], pages_[s][i]) << "kept pages must not move";
      for (std::size_t i = now.size(); i < pages_[s].size(); ++i) {
        dropped[s].insert(pages_[s][i]);
        free_[v.stream_domain(s)].push_back(pages_[s][i]);
      }
      pages_[s] = now;
    }
    std::vector<std::multiset<std::int32_t>> planned(S_);
    for (const auto& f : plan.freed) planned[f.stream].insert(f.page);
    for (std::size_t s = 0; s < S_; ++s) EXPECT_EQ(planned[s], dropped[s]) << "stream " << s;
    // No page is both free and referenced, and none is referenced twice in a domain.
    for (std::size_t d = 0; d < domains_; ++d) {
      std::set<std::int32_t> referenced;
      for (std::size_t s = 0; s < S_; ++s) {
        if (v.stream_domain(s) != d) continue;
        for (std::int32_t pg : pages_[s]) {
          EXPECT_TRUE(referenced.insert(pg).second) << "page " << pg << " twice";
        }
      }
      for (std::int32_t pg : free_[d]) EXPECT_FALSE(referenced.count(pg)) << "page " << pg << " free and referenced";
    }
    rebuild();
  }

  /// Every live slot holds exactly the K/V of its position; returns the positions per stream.
  [[nodiscard]] std::vector<std::vector<std::int32_t>> check_contents() {
    const view_type v = view();
    std::vector<std::vector<std::int32_t>> out(S_);
    for (std::size_t s = 0; s < S_; ++s) {
      for (std::size_t i = 0; i < len_[s]; ++i) {
        const std::size_t page = v.stream_page(s, i / ps_);
        const std::int32_t pos = positions_[(v.stream_domain(s) * pool_pages_ + page) * ps_ + i % ps_];
        out[s].push_back(pos);
        for_layers(v, s, [&](std::size_t l) {
          const auto sv = v.stream(s, l);
          for (std::size_t h = 0; h < v.heads_per_page(); ++h)
            for (std::size_t d = 0; d < shape_.head_dim; ++d) {
              const float want_k = infokv::to_float(infokv::from_float<T>(token_value(pos, l, v.stream_head(s) + h, d, false)));
              const float want_v = infokv::to_float(infokv::from_float<T>(token_value(pos, l, v.stream_head(s) + h, d, true)));
              if (infokv::to_float(sv.key(i, h)[d]) != want_k || infokv::to_float(sv.value(i, h)[d]) != want_v) {
                ADD_FAILURE() << "stream " << s << " slot " << i << " layer " << l << " holds wrong K/V";
                return;
              }
            }
        });
      }
    }
    return out;
  }

  [[nodiscard]] std::size_t length(std::size_t s) const { return len_[s]; }
  [[nodiscard]] std::size_t num_streams() const { return S_; }
  [[nodiscard]] std::size_t pages_in_use() const {
    std::size_t n = 0;
    for (const auto& p : pages_) n += p.size();
    return n;
  }
  [[nodiscard]] std::size_t page_bytes() const { return 2 * page_elems_ * sizeof(T) * (g_ == infokv::stream_granularity::per_sequence ? shape_.num_layers : 1); }
  std::vector<std::int32_t>& indptr() { return indptr_; }
  std::vector<std::int32_t>& indices() { return indices_; }
  std::vector<std::int32_t>& last_page_len() { return last_; }
  std::vector<T*>& key_pointers() { return kp_; }
  std::vector<std::vector<T>>& keys() { return k_; }
  std::vector<std::vector<T>>& values() { return v_; }
  std::vector<std::int32_t>& positions() { return positions_; }

 private:
  template <class F>
  void for_layers(const view_type& v, std::size_t s, F&& f) {
    if (v.layers_per_stream() == 1)
      f(v.stream_layer(s));
    else
      for (std::size_t l = 0; l < shape_.num_layers; ++l) f(l);
  }
  // The view over the arrays as they are (after a compaction: as the library left them).
  view_type view_after() {
    infokv::paged_kv_cache_params<T, std::int32_t> p;
    p.num_layers = shape_.num_layers;
    p.num_kv_heads = shape_.num_kv_heads;
    p.head_dim = shape_.head_dim;
    p.page_size = ps_;
    p.granularity = g_;
    p.num_sequences = B_;
    p.key_pools = kp_.data();
    p.value_pools = vp_.data();
    p.pool_pages = pool_pages_;
    p.page_stride = pad_ == 0 ? 0 : page_elems_ + pad_;
    p.indptr = dense_ ? nullptr : indptr_.data();
    p.indices = dense_ ? nullptr : indices_.data();
    p.last_page_len = last_.data();
    p.positions = positions_.data();
    return view_type(p);
  }
  void rebuild() {
    indptr_.assign(S_ + 1, 0);
    indices_.clear();
    for (std::size_t s = 0; s < S_; ++s) {
      if (dense_) {
        last_[s] = static_cast<std::int32_t>(len_[s]);
        continue;
      }
      indptr_[s] = static_cast<std::int32_t>(indices_.size());
      indices_.insert(indices_.end(), pages_[s].begin(), pages_[s].end());
      last_[s] = len_[s] == 0 ? 0 : static_cast<std::int32_t>(len_[s] - (pages_[s].size() - 1) * ps_);
    }
    indptr_[S_] = static_cast<std::int32_t>(indices_.size());
    if (indices_.empty()) indices_.push_back(0);  // keep data() non-null
  }

  infokv::model_shape shape_;
  infokv::stream_granularity g_;
  std::size_t B_, ps_, pool_pages_;
  bool dense_;
  std::size_t pad_;
  std::mt19937_64 rng_;
  std::size_t S_ = 0, domains_ = 0, page_elems_ = 0;
  std::vector<std::vector<T>> k_, v_;
  std::vector<T*> kp_, vp_;
  std::vector<std::vector<std::int32_t>> pages_;
  std::vector<std::size_t> len_;
  std::vector<std::int32_t> indptr_, indices_, last_, positions_;
  std::vector<std::vector<std::int32_t>> free_;
};

/// Random but reproducible signals for n new tokens, in the layouts step_signals documents.
struct signal_source {
  infokv::model_shape shape;
  std::mt19937_64 rng;
  std::vector<float> queries, prerope, hidden, logits, attention;
  std::size_t attention_stride = 0;

  signal_source(const infokv::model_shape& s, std::uint64_t seed) : shape(s), rng(seed) {}

  infokv::step_signals make(std::size_t n, std::size_t max_len_after) {
    std::normal_distribution<float> N(0.0f, 1.0f);
    const std::size_t L = shape.num_layers, Hq = shape.num_q_heads, D = shape.head_dim;
    queries.resize(L * n * Hq * D);
    for (auto& x : queries) x = N(rng);
    prerope.resize(L * n * Hq * D);
    for (auto& x : prerope) x = N(rng);
    hidden.resize(L * n * shape.hidden_size);
    for (auto& x : hidden) x = N(rng);
    logits.resize(n * shape.vocab_size);
    for (auto& x : logits) x = 3.0f * N(rng);
    attention_stride = max_len_after;
    attention.assign(L * n * Hq * attention_stride, 0.0f);
    std::uniform_real_distribution<float> U(0.0f, 1.0f);
    for (std::size_t r = 0; r < L * n * Hq; ++r) {
      float z = 0.0f;
      for (std::size_t i = 0; i < attention_stride; ++i) z += (attention[r * attention_stride + i] = U(rng));
      for (std::size_t i = 0; i < attention_stride; ++i) attention[r * attention_stride + i] /= z;
    }
    infokv::step_signals sig;
    sig.num_tokens = n;
    sig.queries = queries;
    sig.prerope_queries = prerope;
    sig.hidden_states = hidden;
    sig.logits = logits;
    sig.attention = attention;
    sig.attention_stride = attention_stride;
    return sig;
  }
};

}  // namespace infokv_test
