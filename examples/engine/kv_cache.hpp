// SPDX-License-Identifier: Apache-2.0
// The engine's paged KV cache for one sequence, as a production engine keeps it: per layer one K
// and one V pool of fixed-size pages, a free list per pool domain, a page list per stream, slot
// positions, and the CSR table (indptr, indices, last_page_len) that the library's view reads.
// After the library compacts in place it rewrites the table; sync() reads it back and returns
// the pages past each stream's new end to the free lists.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include <infokv/infokv.hpp>

#include "llama_model.hpp"

namespace engine {

template <class Layout = infokv::layout_hnd>
class paged_cache {
 public:
  using view_type = infokv::paged_kv_cache_view<float, Layout>;

  paged_cache(const llama_config& c, infokv::stream_granularity g, std::size_t page_size, std::size_t max_tokens)
      : L_(c.layers), H_(c.kv_heads), D_(c.head_dim), ps_(page_size), g_(g) {
    const view_type probe(shape_params());
    S_ = probe.num_streams();
    domains_ = probe.num_domains();
    hpp_ = probe.heads_per_page();
    page_elems_ = probe.page_elements();
    const std::size_t streams_per_domain = S_ / domains_;
    pool_pages_ = streams_per_domain * ((max_tokens + ps_ - 1) / ps_ + 1);
    for (std::size_t l = 0; l < L_; ++l) {
      k_.emplace_back(pool_pages_ * page_elems_, 0.0f);
      v_.emplace_back(pool_pages_ * page_elems_, 0.0f);
    }
    point_at_pools();
    positions_.assign(domains_ * pool_pages_ * ps_, -1);
    clear();
  }

  // A copy owns its pages: the pool pointers the view hands out must point at the copy's pools.
  paged_cache(const paged_cache& o)
      : L_(o.L_), H_(o.H_), D_(o.D_), ps_(o.ps_), g_(o.g_), S_(o.S_), domains_(o.domains_), hpp_(o.hpp_),
        page_elems_(o.page_elems_), pool_pages_(o.pool_pages_), k_(o.k_), v_(o.v_), pages_(o.pages_), len_(o.len_),
        base_(o.base_), free_(o.free_), indptr_(o.indptr_), indices_(o.indices_), last_(o.last_),
        positions_(o.positions_) {
    point_at_pools();
  }
  paged_cache& operator=(const paged_cache& o) {
    if (this != &o) {
      paged_cache copy(o);
      *this = std::move(copy);
    }
    return *this;
  }
  paged_cache(paged_cache&&) noexcept = default;  // moved vectors keep their buffers
  paged_cache& operator=(paged_cache&&) noexcept = default;
  ~paged_cache() = default;

  /// Drops every token (all pages back to the free lists).
  void clear() {
    pages_.assign(S_, {});
    len_.assign(S_, 0);
    base_.assign(S_, 0);
    free_.assign(domains_, {});
    for (auto& f : free_)
      for (std::size_t i = pool_pages_; i-- > 0;) f.push_back(static_cast<std::int32_t>(i));
    rebuild();
  }

  [[nodiscard]] view_type view() {
    infokv::paged_kv_cache_params<float> p = shape_params();
    p.key_pools = kp_.data();
    p.value_pools = vp_.data();
    p.pool_pages = pool_pages_;
    p.indptr = indptr_.data();
    p.indices = indices_.data();
    p.last_page_len = last_.data();
    p.positions = positions_.data();
    return view_type(p);
  }

  /// Appends n slots at positions first_pos.. to every stream (pages from the free lists).
  void reserve(std::size_t n, std::int32_t first_pos) {
    const view_type v = view();
    for (std::size_t s = 0; s < S_; ++s) {
      base_[s] = len_[s];
      for (std::size_t j = 0; j < n; ++j) {
        const std::size_t slot = len_[s];
        if (slot % ps_ == 0) {
          auto& fl = free_[v.stream_domain(s)];
          if (fl.empty()) throw std::runtime_error("KV cache pool exhausted (more tokens than the cache was sized for)");
          pages_[s].push_back(fl.back());
          fl.pop_back();
        }
        const std::size_t page = static_cast<std::size_t>(pages_[s][slot / ps_]);
        positions_[(v.stream_domain(s) * pool_pages_ + page) * ps_ + slot % ps_] = first_pos + static_cast<std::int32_t>(j);
        ++len_[s];
      }
    }
    rebuild();
  }

  /// Appends the newest n tokens of another cache of the same model (any granularity): their
  /// K/V rows and positions. A per_sequence copy of a per_layer cache this way holds the same
  /// keys and values in the other layout.
  template <class SrcView>
  void append_from(const SrcView& src, std::size_t n) {
    if (n == 0) return;
    const std::size_t s0 = src.stream_index(0, 0, 0);
    const std::size_t src_len = src.stream_length(s0);
    if (src_len < n) throw std::invalid_argument("append_from: the source holds fewer tokens than asked");
    const std::size_t sp = src.page_size();
    const auto* src_pos = src.domain_positions(src.stream_domain(s0));
    const std::size_t first_slot = src_len - n;
    reserve(n, src_pos[src.stream_page(s0, first_slot / sp) * sp + first_slot % sp]);
    for (std::size_t l = 0; l < L_; ++l)
      for (std::size_t h = 0; h < H_; ++h) {
        const std::size_t s = src.stream_index(0, l, h);
        const auto sv = src.stream(s, l);
        const std::size_t hh = src.heads_per_page() == 1 ? 0 : h;
        for (std::size_t j = 0; j < n; ++j) {
          std::copy_n(sv.key(src.stream_length(s) - n + j, hh), D_, key_row(l, h, j));
          std::copy_n(sv.value(src.stream_length(s) - n + j, hh), D_, value_row(l, h, j));
        }
      }
  }

  [[nodiscard]] infokv::stream_granularity granularity() const noexcept { return g_; }

  /// The original positions stream s holds, in slot order.
  [[nodiscard]] std::vector<std::int32_t> stream_positions(std::size_t s) const {
    infokv::paged_kv_cache_params<float> p = shape_params();
    p.pool_pages = pool_pages_;
    const std::size_t d = view_type(p).stream_domain(s);  // the table is not needed for the domain
    std::vector<std::int32_t> out(len_[s]);
    for (std::size_t i = 0; i < len_[s]; ++i)
      out[i] = positions_[(d * pool_pages_ + static_cast<std::size_t>(pages_[s][i / ps_])) * ps_ + i % ps_];
    return out;
  }

  /// Where the K row of (layer, KV head) for token j of the last reserve() lives (V: value_row).
  [[nodiscard]] float* key_row(std::size_t l, std::size_t h, std::size_t j) { return row(k_[l].data(), l, h, j); }
  [[nodiscard]] float* value_row(std::size_t l, std::size_t h, std::size_t j) { return row(v_[l].data(), l, h, j); }

  /// Reads the table back after the library compacted in place; freed pages return to the lists.
  void sync() {
    const view_type v = view();
    for (std::size_t s = 0; s < S_; ++s) {
      const std::size_t np = v.stream_num_pages(s);
      len_[s] = v.stream_length(s);
      std::vector<std::int32_t> now(np);
      for (std::size_t i = 0; i < np; ++i) now[i] = static_cast<std::int32_t>(v.stream_page(s, i));
      for (std::size_t i = np; i < pages_[s].size(); ++i) free_[v.stream_domain(s)].push_back(pages_[s][i]);
      pages_[s] = std::move(now);
    }
    rebuild();
  }

  [[nodiscard]] std::size_t num_streams() const noexcept { return S_; }
  /// Tokens held, summed over the streams.
  [[nodiscard]] std::size_t tokens_held() const noexcept {
    std::size_t n = 0;
    for (std::size_t l : len_) n += l;
    return n;
  }
  [[nodiscard]] std::size_t length(std::size_t s) const noexcept { return len_[s]; }
  [[nodiscard]] std::size_t max_length() const noexcept { return *std::max_element(len_.begin(), len_.end()); }
  [[nodiscard]] std::size_t pages_in_use() const noexcept {
    std::size_t n = 0;
    for (const auto& p : pages_) n += p.size();
    return n;
  }
  /// Bytes of K and V held by the pages in use.
  [[nodiscard]] std::size_t bytes_in_use() const noexcept {
    const std::size_t layers_per_page = g_ == infokv::stream_granularity::per_sequence ? L_ : 1;
    return pages_in_use() * layers_per_page * 2 * page_elems_ * sizeof(float);
  }
  /// Bytes of the pages a cache with nothing evicted would hold for `tokens` tokens per stream.
  [[nodiscard]] std::size_t full_cache_bytes(std::size_t tokens) const noexcept {
    const std::size_t layers_per_page = g_ == infokv::stream_granularity::per_sequence ? L_ : 1;
    return S_ * ((tokens + ps_ - 1) / ps_) * layers_per_page * 2 * page_elems_ * sizeof(float);
  }
  [[nodiscard]] std::size_t heads_per_page() const noexcept { return hpp_; }
  [[nodiscard]] std::size_t page_size() const noexcept { return ps_; }

 private:
  [[nodiscard]] infokv::paged_kv_cache_params<float> shape_params() const noexcept {
    infokv::paged_kv_cache_params<float> p;
    p.num_layers = L_;
    p.num_kv_heads = H_;
    p.head_dim = D_;
    p.page_size = ps_;
    p.granularity = g_;
    p.num_sequences = 1;
    return p;
  }
  void point_at_pools() {
    kp_.clear();
    vp_.clear();
    for (std::size_t l = 0; l < L_; ++l) {
      kp_.push_back(k_[l].data());
      vp_.push_back(v_[l].data());
    }
  }
  float* row(float* pool, std::size_t l, std::size_t h, std::size_t j) {
    const view_type v = view();
    const std::size_t s = v.stream_index(0, l, h);
    const std::size_t slot = base_[s] + j;
    const std::size_t page = static_cast<std::size_t>(pages_[s][slot / ps_]);
    const std::size_t hh = hpp_ == 1 ? 0 : h;
    return pool + page * page_elems_ + Layout::offset(slot % ps_, hh, ps_, hpp_, D_);
  }
  void rebuild() {
    indptr_.assign(S_ + 1, 0);
    indices_.clear();
    last_.assign(S_, 0);
    for (std::size_t s = 0; s < S_; ++s) {
      indptr_[s] = static_cast<std::int32_t>(indices_.size());
      indices_.insert(indices_.end(), pages_[s].begin(), pages_[s].end());
      last_[s] = len_[s] == 0 ? 0 : static_cast<std::int32_t>(len_[s] - (pages_[s].size() - 1) * ps_);
    }
    indptr_[S_] = static_cast<std::int32_t>(indices_.size());
    if (indices_.empty()) indices_.push_back(0);  // data() stays non-null
  }

  std::size_t L_, H_, D_, ps_;
  infokv::stream_granularity g_;
  std::size_t S_ = 0, domains_ = 0, hpp_ = 0, page_elems_ = 0, pool_pages_ = 0;
  std::vector<std::vector<float>> k_, v_;
  std::vector<float*> kp_, vp_;
  std::vector<std::vector<std::int32_t>> pages_;
  std::vector<std::size_t> len_, base_;
  std::vector<std::vector<std::int32_t>> free_;
  std::vector<std::int32_t> indptr_, indices_, last_, positions_;
};

}  // namespace engine
