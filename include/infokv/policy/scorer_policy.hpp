// SPDX-License-Identifier: Apache-2.0
// A policy made of one scorer: the scorer's scores are the keep scores. Every baseline is one of
// these (see policy/baselines.hpp), and so is any scorer a user writes.
#pragma once

#include <cstddef>
#include <string_view>
#include <utility>

#include "infokv/concepts.hpp"
#include "infokv/config.hpp"
#include "infokv/scorer/scratch.hpp"
#include "infokv/select/budget.hpp"

INFOKV_BEGIN_NAMESPACE

template <class Scorer>
struct scorer_policy {
  Scorer scorer{};
  std::string_view label = "custom";
  budget_schedule preferred_schedule = budget_schedule::uniform;

  [[nodiscard]] constexpr std::string_view name() const noexcept { return label; }
  [[nodiscard]] constexpr observation_needs needs() const noexcept { return scorer.needs(); }
  [[nodiscard]] constexpr status check() const noexcept { return check_parameters(scorer); }
  [[nodiscard]] constexpr std::size_t scratch_floats(const scratch_shape& s) const noexcept {
    return scratch_floats_of(scorer, s);
  }
  template <kv_view View, class Isa>
    requires token_scorer<Scorer, View, Isa>
  [[nodiscard]] status score(const layer_context<View, Isa>& ctx, score_matrix out) const noexcept {
    return scorer.score(ctx, out);
  }
};

INFOKV_END_NAMESPACE
