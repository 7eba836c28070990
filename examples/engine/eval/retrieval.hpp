// SPDX-License-Identifier: Apache-2.0
// The retrieval scenarios: a passage repeated after a gap (NLL on the repeat) and passkey
// retrieval over depths (greedy: every answer token must be the arg max).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "../cli.hpp"
#include "harness.hpp"

namespace eval {

/// A passage, a gap of other text, the passage again: NLL on the repeat after compressing
/// passage + gap. The first read's NLL (nothing to copy from) bounds what memory is worth.
/// `b`: the passage and the longest gap.
inline void repeat_scenario(harness& h, const tokens& b) {
  const auto t = cli::clock_type::now();
  const options& o = h.opt;
  const tokens passage(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(o.passage));
  double first_read = 0.0;
  std::vector<std::size_t> stops;
  for (std::size_t g : o.gaps) stops.push_back(o.passage + g);
  std::sort(stops.begin(), stops.end());
  if (stops.back() + o.passage > h.cfg.context) cli::usage_error("passage + gap + passage exceeds the model's context");
  std::printf("repeat: passage of %zu tokens after gaps of", o.passage);
  for (std::size_t g : o.gaps) std::printf(" %zu", g);
  std::printf("\n");
  h.shared_pass(
      b, o.passage, o.policies, stops,
      [&](const engine::session& full, const fanout_hook& fan, std::size_t C) {
        h.out.first_read.row(C - o.passage, C, o.passage - 1, first_read / static_cast<double>(o.passage - 1));
        h.compare_at("repeat", 0, full, fan, passage, C, o.prefill_budgets);
      },
      [&](std::size_t first, const engine::row_matrix& lg) {
        for (std::size_t j = 0; j < static_cast<std::size_t>(lg.rows()); ++j)
          if (first + j + 1 < o.passage)
            first_read += engine::token_nll(lg.row(static_cast<Eigen::Index>(j)), b[first + j + 1]);
      });
  std::printf("repeat took %.1f s\n", cli::seconds_since(t));
}

/// Passkey retrieval: a 5-digit key stated once at a depth of real text, asked for at the end.
/// The prompt is compressed once (the question is in the recent window, as in SnapKV's
/// protocol); the answer is teacher-forced and counts as retrieved when every answer token is
/// the arg max, which is what greedy decoding would produce. `filler_all`: the text around the
/// key.
inline void passkey_scenario(harness& h, const tokens& filler_all) {
  const auto t = cli::clock_type::now();
  const options& o = h.opt;
  const tokens intro = h.tok.encode(
      "There is a pass key hidden inside a lot of irrelevant text. Find it and memorize it. "
      "I will quiz you about the pass key.\n\n");
  const tokens question = h.tok.encode("\n\nWhat is the pass key? The pass key is");
  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<int> key_dist(10000, 99999);
  struct tally {
    std::size_t trials = 0, correct = 0;
    double nll = 0.0;
  };
  std::map<std::tuple<std::string, double, double>, tally> results;  // (policy, budget, depth)
  std::size_t trial = 0;
  for (const double depth : o.passkey_depths)
    for (std::size_t k = 0; k < o.passkey_trials; ++k, ++trial) {
      const std::string key = std::to_string(key_dist(rng));
      const tokens needle = h.tok.encode("\n\nThe pass key is " + key + ". Remember it. " + key + " is the pass key.\n\n");
      const tokens answer = h.tok.encode(" " + key);
      const std::size_t fixed = intro.size() + needle.size() + question.size();
      if (fixed + 64 > o.passkey_context) cli::usage_error("--passkey-context is too short for the prompt");
      const std::size_t fill = o.passkey_context - fixed;
      const auto at = static_cast<std::size_t>(std::lround(depth * static_cast<double>(fill)));
      tokens prompt = intro;
      prompt.insert(prompt.end(), filler_all.begin(), filler_all.begin() + static_cast<std::ptrdiff_t>(at));
      prompt.insert(prompt.end(), needle.begin(), needle.end());
      prompt.insert(prompt.end(), filler_all.begin() + static_cast<std::ptrdiff_t>(at),
                    filler_all.begin() + static_cast<std::ptrdiff_t>(fill));
      prompt.insert(prompt.end(), question.begin(), question.end());
      // The first answer token comes from the prompt's last row (computed before eviction).
      bool first_ok = false;
      double first_nll = 0.0;
      const auto score = [&](const engine::row_matrix& lg, tally& tl) {
        bool ok = first_ok;
        double nll = first_nll;
        for (std::size_t r = 0; r + 1 < answer.size(); ++r) {
          Eigen::Index am = 0;
          lg.row(static_cast<Eigen::Index>(r)).maxCoeff(&am);
          ok = ok && static_cast<std::int32_t>(am) == answer[r + 1];
          nll += engine::token_nll(lg.row(static_cast<Eigen::Index>(r)), answer[r + 1]);
        }
        ++tl.trials;
        tl.correct += ok;
        tl.nll += nll / static_cast<double>(answer.size());
      };
      const std::size_t C = prompt.size();
      h.shared_pass(
          prompt, answer.size(), o.policies, {C},
          [&](const engine::session& full, const fanout_hook& fan, std::size_t) {
            engine::session f(h.model, full.cache(), C, nullptr);
            score(f.forward(answer, engine::step_kind::decode, true), results[{"full", 1.0, depth}]);
            const std::size_t nb = o.prefill_budgets.size();
            std::vector<tally> got(o.policies.size() * nb);
            parallel_for(got.size(), o.jobs, [&](std::size_t job) {
              double kept = 0.0, lib_s = 0.0;
              auto s = h.compressed_copy(full, fan, job / nb, o.policies[job / nb], o.prefill_budgets[job % nb], C, kept,
                                         lib_s);
              score(s->forward(answer, engine::step_kind::decode, true), got[job]);
            });
            for (std::size_t job = 0; job < got.size(); ++job) {
              tally& tl = results[{o.policies[job / nb].label, o.prefill_budgets[job % nb], depth}];
              tl.trials += got[job].trials;
              tl.correct += got[job].correct;
              tl.nll += got[job].nll;
            }
          },
          [&](std::size_t first, const engine::row_matrix& lg) {
            if (first + static_cast<std::size_t>(lg.rows()) != C) return;
            const auto last = lg.row(lg.rows() - 1);
            Eigen::Index am = 0;
            last.maxCoeff(&am);
            first_ok = static_cast<std::int32_t>(am) == answer[0];
            first_nll = engine::token_nll(last, answer[0]);
          });
      const tally& full = results[{"full", 1.0, depth}];
      std::printf("  passkey trial %zu: depth %.2f, %zu tokens, full cache %s\n", trial, depth, C,
                  full.correct == full.trials ? "retrieves it so far" : "has missed at least once");
      std::fflush(stdout);
    }
  for (const auto& [key, tl] : results) {
    const auto& [policy, budget, depth] = key;
    std::string gran = "-";
    for (const auto& v : o.policies)
      if (v.label == policy) gran = granularity_name(v.opt.granularity);
    h.out.passkey.row(policy, gran, budget, o.passkey_context, depth, tl.trials, tl.correct,
                      tl.nll / static_cast<double>(tl.trials));
  }
  std::printf("passkey took %.1f s\n", cli::seconds_since(t));
}

}  // namespace eval
