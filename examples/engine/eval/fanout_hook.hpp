// SPDX-License-Identifier: Apache-2.0
// The hook of infokv_eval's shared pass: the model runs each context once, and every policy
// variant observes that one forward pass.
#pragma once

#include <map>
#include <memory>
#include <vector>

#include <infokv/infokv.hpp>

#include "../session.hpp"

namespace eval {

/// Every variant observes the forward pass of one full-cache session: the hooks of the
/// session's granularity read its cache; the others read a copy in their own layout, kept in
/// step token by token. Never evicts. A step whose attention rows come in pieces reaches each
/// hook whole, with the session's row source: the hooks that observe rows take it in pieces,
/// the others in one call, as without pieces.
class fanout_hook final : public engine::compression_hook {
 public:
  fanout_hook(std::vector<std::unique_ptr<engine::compressor_hook>> hooks, infokv::stream_granularity own,
              const engine::llama_config& c, std::size_t page_size, std::size_t max_tokens)
      : hooks_(std::move(hooks)), own_(own) {
    for (const auto& h : hooks_) {
      needs_ = needs_ | h->required();
      const auto g = h->config().granularity;
      if (g != own_ && shadows_.find(g) == shadows_.end())
        shadows_.emplace(g, engine::cache_type(c, g, page_size, max_tokens));
    }
  }
  [[nodiscard]] infokv::signal_set required() const override { return needs_; }
  [[nodiscard]] infokv::status run(const engine::view_type& v, const engine::step_input& in, engine::step_kind) override {
    for (auto& [g, cache] : shadows_) cache.append_from(v, in.signals.num_tokens);
    for (auto& h : hooks_) {
      const auto g = h->config().granularity;
      const engine::view_type view = g == own_ ? v : shadows_.at(g).view();
      INFOKV_TRY(h->run(view, in, engine::step_kind::prefill_chunk));
    }
    return {};
  }
  [[nodiscard]] const infokv::eviction_event& last_event() const override { return none_; }
  [[nodiscard]] std::size_t state_bytes() const override {
    std::size_t b = 0;
    for (const auto& h : hooks_) b += h->state_bytes();
    return b;
  }
  [[nodiscard]] const engine::compressor_hook& hook(std::size_t i) const { return *hooks_[i]; }
  /// The cache of granularity g, as the session holds it or as the shadow copy.
  [[nodiscard]] const engine::cache_type& cache_for(infokv::stream_granularity g, const engine::cache_type& own) const {
    return g == own_ ? own : shadows_.at(g);
  }

 private:
  std::vector<std::unique_ptr<engine::compressor_hook>> hooks_;
  infokv::stream_granularity own_;
  infokv::signal_set needs_{};
  std::map<infokv::stream_granularity, engine::cache_type> shadows_;
  infokv::eviction_event none_{};
};

}  // namespace eval
