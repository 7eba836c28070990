// SPDX-License-Identifier: Apache-2.0
// The prefill scenario (the paper's long-prefill setting): a context of C tokens compressed
// once to a keep ratio, then NLL, KL(p_full || p) and top-1 agreement on the next tokens. Its
// shared pass over a region of the text also serves the forward-influence prefix and the
// decode stream, which start at the same token: it makes the influence runs' compressed copies
// and the full cache's reference rows, then runs those two scenarios.
#pragma once

#include <algorithm>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "../cli.hpp"
#include "decode.hpp"
#include "harness.hpp"
#include "influence.hpp"

namespace eval {

/// Prefill, influence and decode on one region `a` of the text (influence and decode in window
/// 0 only). `contexts`: the prefill contexts, sorted.
inline void prefill_scenarios(harness& h, std::size_t window, const tokens& a, const std::vector<std::size_t>& contexts,
                              std::size_t inf_tokens) {
  const auto t = cli::clock_type::now();
  const options& o = h.opt;
  const bool prefill = o.wants("prefill");
  const bool influence = window == 0 && o.wants("influence");
  const bool decode = window == 0 && o.wants("decode");
  std::vector<variant> observed = prefill ? o.policies : std::vector<variant>{};
  const std::size_t n_main = observed.size();
  if (influence) observed.insert(observed.end(), o.influence_policies.begin(), o.influence_policies.end());
  std::vector<std::size_t> stops;
  if (prefill) stops = contexts;
  if (influence) stops.push_back(o.influence_prefix);
  std::sort(stops.begin(), stops.end());
  stops.erase(std::unique(stops.begin(), stops.end()), stops.end());
  const std::size_t pass_end = std::max(influence ? o.influence_prefix + inf_tokens : 0, decode ? o.decode_tokens : 0);
  // Full-cache reference rows of the pass (row r predicts a[r + 1]) for decode and influence.
  engine::reference_rows ref;
  if (pass_end > 0) ref.resize(pass_end - 1, h.cfg.vocab);
  influence_runs runs;
  std::vector<double> influence_budget_of;
  const std::size_t end = std::max(pass_end, stops.empty() ? 0 : stops.back());
  const tokens x(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(end));
  std::printf("window %zu: one pass over %zu tokens observed by %zu policy states\n", window, end, observed.size());
  h.shared_pass(
      x, o.continuation, observed, stops,
      [&](const engine::session& full, const fanout_hook& fan, std::size_t C) {
        if (prefill && std::find(contexts.begin(), contexts.end(), C) != contexts.end()) {
          const tokens cont(a.begin() + static_cast<std::ptrdiff_t>(C),
                            a.begin() + static_cast<std::ptrdiff_t>(C + o.continuation));
          h.compare_at("prefill", window, full, fan, cont, C, o.prefill_budgets);
        }
        if (influence && C == o.influence_prefix)
          for (std::size_t i = 0; i < o.influence_policies.size(); ++i)
            for (const double b : o.influence_policies[i].keep > 0.0 ? std::vector<double>{o.influence_policies[i].keep}
                                                                      : o.influence_budgets) {
              double kept = 0.0, lib_s = 0.0;
              runs.emplace_back(o.influence_policies[i].label,
                                h.compressed_copy(full, fan, n_main + i, o.influence_policies[i], b, C, kept, lib_s));
              influence_budget_of.push_back(b);
            }
      },
      [&](std::size_t first, const engine::row_matrix& lg) {
        for (std::size_t j = 0; j < static_cast<std::size_t>(lg.rows()); ++j)
          if (first + j + 1 < pass_end) ref.set(first + j, lg.row(static_cast<Eigen::Index>(j)), a[first + j + 1]);
      });
  std::printf("window %zu: pass and prefill comparisons took %.1f s\n", window, cli::seconds_since(t));
  if (influence) influence_scenario(h, a, ref, runs, influence_budget_of, inf_tokens, stops);
  if (decode) decode_scenario(h, a, ref);
}

}  // namespace eval
