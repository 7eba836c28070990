// SPDX-License-Identifier: Apache-2.0
// The decode scenario: T tokens streamed in chunks of P, compressed after every chunk to a ratio
// of the tokens seen (chunked teacher forcing = decoding with compression every P steps).
#pragma once

#include <algorithm>
#include <cstdio>
#include <span>
#include <vector>

#include "../cli.hpp"
#include "harness.hpp"

namespace eval {

/// `a`: the region's tokens; `ref`: the full cache's rows over them (row g predicts a[g + 1]).
inline void decode_scenario(harness& h, const tokens& a, const engine::reference_rows& ref) {
  const auto t = cli::clock_type::now();
  const options& o = h.opt;
  const std::size_t T = o.decode_tokens;
  // Rows before the longest period's first compression are the full cache's: score after it.
  const std::size_t from = *std::max_element(o.periods.begin(), o.periods.end());
  engine::quality_sum fq;
  for (std::size_t g = from; g + 1 < T; ++g) {
    ++fq.predictions;
    fq.nll_full += ref.nll(g);
    fq.nll += ref.nll(g);
    fq.top1_same += 1;
  }
  h.out.write_quality("decode", 0, T, 0, 1.0, "full", "-", 1.0, fq, 0.0);
  struct job {
    std::size_t period;
    double budget;
    const variant* base;
  };
  std::vector<job> jobs;
  for (const std::size_t P : o.periods)
    for (const double b : o.decode_budgets)
      for (const variant& base : o.policies) jobs.push_back({P, b, &base});
  std::vector<run_result> res(jobs.size());
  parallel_for(jobs.size(), o.jobs, [&](std::size_t k) {
    const std::size_t P = jobs[k].period;
    variant v = *jobs[k].base;
    v.opt.decode_ratio = jobs[k].budget;
    v.opt.prefill_ratio = jobs[k].budget;
    v.opt.slack = 0;  // evict after every chunk of P tokens
    engine::session s(h.model, v.opt.granularity, harness::page_size, T, engine::make_hook(v.opt, h.cfg, T));
    double kept_sum = 0.0;
    std::size_t kept_n = 0;
    for (std::size_t t0 = 0; t0 < T; t0 += P) {
      const std::size_t n = std::min(P, T - t0);
      const auto& lg = s.forward(std::span<const std::int32_t>(a.data() + t0, n), engine::step_kind::decode, true);
      for (std::size_t g = std::max(t0, from); g < t0 + n && g + 1 < T; ++g)
        res[k].q.add(ref, g, lg.row(static_cast<Eigen::Index>(g - t0)), a[g + 1]);
      kept_sum += static_cast<double>(s.cache().tokens_held()) / static_cast<double>(s.cache().num_streams() * (t0 + n));
      ++kept_n;
    }
    res[k].kept = kept_sum / static_cast<double>(kept_n);
    res[k].library_s = s.stats().library_seconds;
  });
  for (std::size_t k = 0; k < jobs.size(); ++k)
    h.out.write_quality("decode", 0, T, jobs[k].period, jobs[k].budget, jobs[k].base->label,
                        granularity_name(jobs[k].base->opt.granularity), res[k].kept, res[k].q, res[k].library_s);
  std::printf("decode took %.1f s\n", cli::seconds_since(t));
}

}  // namespace eval
