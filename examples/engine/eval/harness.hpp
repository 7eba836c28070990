// SPDX-License-Identifier: Apache-2.0
// What every scenario of infokv_eval shares: the model, the options and the result files, one
// full-cache forward pass observed by every variant (shared_pass), copies of it compressed per
// variant and budget (compressed_copy), and the comparison of those copies with the full cache
// on the same continuation (compare_at).
#pragma once

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "../llama_model.hpp"
#include "../metrics.hpp"
#include "../policy_registry.hpp"
#include "../session.hpp"
#include "../tokenizer.hpp"
#include "fanout_hook.hpp"
#include "keep_dump.hpp"
#include "options.hpp"
#include "results.hpp"
#include "thread_pool.hpp"

namespace eval {

using tokens = std::vector<std::int32_t>;

/// What one compressed run measured.
struct run_result {
  engine::quality_sum q;
  double kept = 0.0, library_s = 0.0;
  std::vector<std::vector<std::int32_t>> keep;  // sorted positions per stream (with --dump-keep)
};

/// At each stop of a shared pass: the full-cache session, the fan-out its variants observe
/// through, and the stop (tokens in the cache).
using stop_fn = std::function<void(const engine::session&, const fanout_hook&, std::size_t)>;
/// Every chunk of a shared pass: the position of its first token and its logits.
using chunk_fn = std::function<void(std::size_t, const engine::row_matrix&)>;

struct harness {
  harness(const options& o, const engine::llama_model& m, const engine::bpe_tokenizer& t, keep_dump* d)
      : opt(o), model(m), tok(t), cfg(m.config), dump(d), out(o.out) {}

  const options& opt;
  const engine::llama_model& model;
  const engine::bpe_tokenizer& tok;
  const engine::llama_config cfg;
  keep_dump* const dump;  // null without --dump-keep
  result_files out;
  static constexpr std::size_t page_size = 64;

  /// Chunk boundaries of a pass over [0, end): every opt.chunk tokens and at each stop.
  [[nodiscard]] std::vector<std::size_t> boundaries(std::size_t end, const std::vector<std::size_t>& stops) const {
    std::vector<std::size_t> b;
    for (std::size_t t = opt.chunk; t < end; t += opt.chunk) b.push_back(t);
    for (std::size_t s : stops)
      if (s > 0 && s < end) b.push_back(s);
    b.push_back(end);
    std::sort(b.begin(), b.end());
    b.erase(std::unique(b.begin(), b.end()), b.end());
    return b;
  }

  /// One full-cache forward pass over `x` that every variant of `vars` observes. At each stop
  /// `at_stop(session, fanout, stop)` runs; `on_chunk(first, logits)` sees every chunk's logits.
  /// `extra`: tokens a copy made at a stop appends after the pass.
  void shared_pass(const tokens& x, std::size_t extra, const std::vector<variant>& vars,
                   const std::vector<std::size_t>& stops, const stop_fn& at_stop, const chunk_fn& on_chunk) const {
    std::vector<std::unique_ptr<engine::compressor_hook>> hooks;
    for (const auto& v : vars) hooks.push_back(engine::make_hook(v.opt, cfg, cfg.context));
    // Pages for the pass and what a copy appends after it: every copy made at a stop carries the
    // whole pool, so it is sized to what is needed.
    const std::size_t pool = std::min(x.size() + extra, cfg.context);
    auto fan = std::make_unique<fanout_hook>(std::move(hooks), infokv::stream_granularity::per_layer, cfg, page_size, pool);
    const fanout_hook* fan_ptr = fan.get();
    engine::session s(model, infokv::stream_granularity::per_layer, page_size, pool, std::move(fan));
    std::size_t t0 = 0;
    for (const std::size_t t1 : boundaries(x.size(), stops)) {
      const auto& lg = s.forward(std::span<const std::int32_t>(x.data() + t0, t1 - t0), engine::step_kind::prefill_chunk, true);
      if (on_chunk) on_chunk(t0, lg);
      t0 = t1;
      if (std::find(stops.begin(), stops.end(), t1) != stops.end()) at_stop(s, *fan_ptr, t1);
    }
  }

  /// A session continuing the pass at position C with variant i evicted to `budget` (prefill
  /// budget: one compress_prefill), no compression after that.
  [[nodiscard]] std::unique_ptr<engine::session> compressed_copy(const engine::session& full, const fanout_hook& fan,
                                                                 std::size_t i, const variant& v, double budget,
                                                                 std::size_t C, double& kept, double& lib_s) const {
    const engine::compressor_hook& h = fan.hook(i);
    auto s = std::make_unique<engine::session>(model, fan.cache_for(v.opt.granularity, full.cache()), C,
                                               h.clone_with_budgets(h.config().decode_budget, infokv::budget::of_ratio(budget)));
    s->compress_now();
    kept = static_cast<double>(s->cache().tokens_held()) / static_cast<double>(s->cache().num_streams() * C);
    lib_s = s->stats().library_seconds;
    s->set_hook(nullptr);
    return s;
  }

  /// Reference rows for `cont` fed after the full cache at C: row r predicts cont[r + 1].
  [[nodiscard]] engine::reference_rows continuation_reference(const engine::session& full, const tokens& cont,
                                                              std::size_t C, engine::row_matrix* logits_out = nullptr) const {
    engine::session f(model, full.cache(), C, nullptr);
    const auto& lg = f.forward(cont, engine::step_kind::decode, true);
    engine::reference_rows ref(cont.size() - 1, cfg.vocab);
    for (std::size_t r = 0; r + 1 < cont.size(); ++r) ref.set(r, lg.row(static_cast<Eigen::Index>(r)), cont[r + 1]);
    if (logits_out) *logits_out = lg;
    return ref;
  }

  /// Every variant and budget compressed at C, then `cont` fed; one quality row each. The full
  /// cache's rows are recomputed at the end and must be bit-identical (the copies never touch
  /// the shared pass).
  void compare_at(const std::string& scenario, std::size_t window, const engine::session& full, const fanout_hook& fan,
                  const tokens& cont, std::size_t C, const std::vector<double>& budgets) {
    engine::row_matrix before;
    const engine::reference_rows ref = continuation_reference(full, cont, C, &before);
    engine::quality_sum fq;
    for (std::size_t r = 0; r + 1 < cont.size(); ++r) fq.add(ref, r, before.row(static_cast<Eigen::Index>(r)), cont[r + 1]);
    out.write_quality(scenario, window, C, 0, 1.0, "full", "-", 1.0, fq, 0.0);
    const std::size_t nb = budgets.size();
    std::vector<run_result> res(opt.policies.size() * nb);
    parallel_for(res.size(), opt.jobs, [&](std::size_t k) {
      const std::size_t i = k / nb;
      run_result& r = res[k];
      auto s = compressed_copy(full, fan, i, opt.policies[i], budgets[k % nb], C, r.kept, r.library_s);
      if (dump != nullptr && scenario == "prefill")
        for (std::size_t st = 0; st < s->cache().num_streams(); ++st) {
          r.keep.push_back(s->cache().stream_positions(st));
          std::sort(r.keep.back().begin(), r.keep.back().end());
        }
      const auto& lg = s->forward(cont, engine::step_kind::decode, true);
      for (std::size_t j = 0; j + 1 < cont.size(); ++j) r.q.add(ref, j, lg.row(static_cast<Eigen::Index>(j)), cont[j + 1]);
    });
    for (std::size_t k = 0; k < res.size(); ++k) {
      const variant& v = opt.policies[k / nb];
      out.write_quality(scenario, window, C, 0, budgets[k % nb], v.label, granularity_name(v.opt.granularity), res[k].kept,
                        res[k].q, res[k].library_s);
      if (!res[k].keep.empty())
        dump->keep_set(window, C, budgets[k % nb], v.label, v.opt.granularity, cfg.layers, cfg.kv_heads, res[k].keep);
    }
    engine::session again(model, full.cache(), C, nullptr);
    const auto& after = again.forward(cont, engine::step_kind::decode, true);
    if (after.rows() != before.rows() ||
        std::memcmp(after.data(), before.data(), static_cast<std::size_t>(after.size()) * sizeof(float)) != 0)
      throw std::logic_error("the full cache's logits changed after the compressed runs");
  }
};

}  // namespace eval
