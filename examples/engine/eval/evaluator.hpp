// SPDX-License-Identifier: Apache-2.0
// The plan of an infokv_eval run: which text each scenario reads, every size checked before the
// first forward pass, then the scenarios in the order their rows appear in the result files.
#pragma once

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "../cli.hpp"
#include "harness.hpp"
#include "prefill.hpp"
#include "retrieval.hpp"

namespace eval {

/// Tokens [from, from + n) of the text.
[[nodiscard]] inline tokens take(const tokens& ids, std::size_t from, std::size_t n) {
  if (from + n > ids.size())
    throw std::runtime_error("the text has " + std::to_string(ids.size()) + " tokens; the evaluation needs " +
                             std::to_string(from + n) + " (lower --windows, --offset or the sizes)");
  return {ids.begin() + static_cast<std::ptrdiff_t>(from), ids.begin() + static_cast<std::ptrdiff_t>(from + n)};
}

/// Every scenario the options ask for, on the text `ids`.
inline void evaluate(harness& h, const tokens& ids) {
  using cli::usage_error;
  const options& o = h.opt;
  const std::size_t ctx = h.cfg.context;
  // Region A: prefill contexts, the influence prefix and the decode stream start at the same
  // token, so one forward pass serves all three. Later windows: prefill only.
  std::vector<std::size_t> contexts;
  for (const auto& c : o.contexts) {
    const std::size_t C = c == "max" ? ctx - o.continuation : cli::to_size(c, "--contexts");
    if (C < o.sinks + o.recent + 64 || C + o.continuation > ctx)
      usage_error("context " + std::to_string(C) + " does not fit (needs protected tokens < C and C + continuation <= " +
                  std::to_string(ctx) + ")");
    contexts.push_back(C);
  }
  std::sort(contexts.begin(), contexts.end());
  contexts.erase(std::unique(contexts.begin(), contexts.end()), contexts.end());
  if (o.wants("prefill") && contexts.empty()) usage_error("--contexts is empty");
  if (o.wants("influence") && (o.influence_prefix < o.sinks + o.recent + 64 || o.influence_prefix + 2 > ctx))
    usage_error("--influence-prefix must exceed the protected tokens and leave room in the context");
  const std::size_t inf_tokens = o.influence_tokens == 0 ? ctx - o.influence_prefix : o.influence_tokens;
  if (o.wants("influence") && (inf_tokens < 2 || o.influence_prefix + inf_tokens > ctx))
    usage_error("influence prefix + tokens exceed the context");
  if (o.wants("decode") && o.decode_tokens > ctx) usage_error("--decode-tokens exceeds the model's context");
  if (o.wants("decode") &&
      (o.periods.empty() || *std::max_element(o.periods.begin(), o.periods.end()) + 1 >= o.decode_tokens ||
       *std::min_element(o.periods.begin(), o.periods.end()) == 0))
    usage_error("--periods must be positive and the longest below --decode-tokens - 1 (rows after it are scored)");
  std::size_t region = 0;
  if (o.wants("prefill")) region = std::max(region, contexts.back() + o.continuation);
  if (o.wants("influence")) region = std::max(region, o.influence_prefix + inf_tokens);
  if (o.wants("decode")) region = std::max(region, o.decode_tokens);
  // Everything that could fail late is checked before the first forward pass.
  std::size_t needed = o.offset + (o.wants("prefill") ? o.windows : 1) * region;
  if (o.wants("retrieval")) {
    const std::size_t gmax = *std::max_element(o.gaps.begin(), o.gaps.end());
    if (o.passage + gmax + o.passage > ctx) usage_error("passage + gap + passage exceeds the model's context");
    if (o.passkey_context + 16 > ctx) usage_error("--passkey-context leaves no room for the answer in the context");
    needed += o.passage + gmax + o.passkey_context;
  }
  if (needed > ids.size())
    throw std::runtime_error("the text has " + std::to_string(ids.size()) + " tokens; the evaluation needs " +
                             std::to_string(needed) + " (lower --windows, --offset or the sizes)");
  std::size_t used = o.offset;
  for (std::size_t w = 0; w < (o.wants("prefill") ? o.windows : 1) && region > 0; ++w) {
    const tokens a = take(ids, used, region);
    if (h.dump != nullptr) h.dump->tokens(w, used, a);
    used += region;
    prefill_scenarios(h, w, a, contexts, inf_tokens);
  }
  if (o.wants("retrieval")) {
    const std::size_t gmax = *std::max_element(o.gaps.begin(), o.gaps.end());
    const tokens b = take(ids, used, o.passage + gmax);
    used += o.passage + gmax;
    repeat_scenario(h, b);
    passkey_scenario(h, take(ids, used, o.passkey_context));
  }
}

}  // namespace eval
