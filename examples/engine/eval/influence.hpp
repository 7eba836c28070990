// SPDX-License-Identifier: Apache-2.0
// The forward-influence scenario (the paper's analysis): a prefix compressed once by a score
// (attention alone is InfoKV with alpha = 1, entropy alone alpha = 0), then KL per 128-token
// chunk of what follows, as a function of the distance after the prefix.
#pragma once

#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../cli.hpp"
#include "harness.hpp"

namespace eval {

/// A compressed copy of the prefix per influence variant and budget, made at the pass's stop.
using influence_runs = std::vector<std::pair<std::string, std::unique_ptr<engine::session>>>;

/// Feeds the rest of the region to every run. `pass_stops`: the shared pass's stops, whose chunk
/// boundaries are reused after the prefix so that an unevicted cache would give the full
/// cache's rows; `ref`: those rows; `budgets[k]`: the keep ratio of runs[k].
inline void influence_scenario(harness& h, const tokens& a, const engine::reference_rows& ref, influence_runs& runs,
                               const std::vector<double>& budgets, std::size_t inf_tokens,
                               const std::vector<std::size_t>& pass_stops) {
  const auto t = cli::clock_type::now();
  const std::size_t N = h.opt.influence_prefix, end = N + inf_tokens, bin = 128;
  const auto bounds = h.boundaries(end, pass_stops);
  std::vector<std::vector<engine::quality_sum>> per_run(runs.size());
  parallel_for(runs.size(), h.opt.jobs, [&](std::size_t k) {
    auto& s = *runs[k].second;
    auto& per_bin = per_run[k];
    per_bin.resize((inf_tokens - 1 + bin - 1) / bin);  // predictions cover offsets 0 .. inf_tokens - 2
    std::size_t t0 = N;
    for (const std::size_t t1 : bounds) {
      if (t1 <= N) continue;
      const auto& lg = s.forward(std::span<const std::int32_t>(a.data() + t0, t1 - t0), engine::step_kind::decode, true);
      for (std::size_t g = t0; g < t1 && g + 1 < end; ++g)
        per_bin[(g - N) / bin].add(ref, g, lg.row(static_cast<Eigen::Index>(g - t0)), a[g + 1]);
      t0 = t1;
    }
    runs[k].second.reset();
  });
  for (std::size_t k = 0; k < runs.size(); ++k) {
    const auto& per_bin = per_run[k];
    for (std::size_t c = 0; c < per_bin.size(); ++c) {
      const auto& q = per_bin[c];
      h.out.influence.row(runs[k].first, budgets[k], N, c, c * bin, q.predictions, q.mean(q.nll_full), q.mean(q.nll),
                          q.mean(q.nll - q.nll_full), q.mean(q.kl), q.mean(static_cast<double>(q.top1_same)));
    }
    std::printf("  influence %-20s keep %.3g: KL first chunk %.4f, last chunk %.4f\n", runs[k].first.c_str(), budgets[k],
                per_bin.front().mean(per_bin.front().kl), per_bin.back().mean(per_bin.back().kl));
  }
  std::fflush(stdout);
  std::printf("influence took %.1f s\n", cli::seconds_since(t));
}

}  // namespace eval
