// SPDX-License-Identifier: Apache-2.0
// Reduce stage: one score per slot of a stream from the policy's [heads x T] scores per layer.
// The mean over the stream's KV heads; for a per_sequence stream, which covers every layer, the
// mean over layers of L1-normalised layer scores (so no layer dominates by scale). For AdaKV's
// per-head streams the row is the head's own score.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "infokv/config.hpp"
#include "infokv/reduce/stream_context.hpp"
#include "infokv/rope.hpp"
#include "infokv/scorer/layer_context.hpp"
#include "infokv/sequence_state.hpp"
#include "infokv/status.hpp"

INFOKV_BEGIN_NAMESPACE
namespace reduce_stage {

/// Scores stream s (global gs) into row[T]; order / nc from sort_by_position.
template <class Isa, class Policy, class View>
[[nodiscard]] status score_stream(const Policy& policy, const View& view, detail::sequence_data& d,
                                  const rope_params& rope, std::size_t s, std::size_t gs, const std::uint32_t* order,
                                  std::size_t nc, float* row) noexcept {
  const std::size_t T = d.length[s];
  const std::size_t Ls = d.layers_per_stream;
  const std::size_t heads = view.heads_per_page();
  std::fill(row, row + T, 0.0f);
  for (std::size_t a = 0; a < Ls; ++a) {
    const std::size_t l = Ls == 1 ? view.stream_layer(gs) : a;
    const auto ctx = make_context<Isa>(view, d, rope, s, gs, l, a, nc, order);
    score_matrix out{d.layer_scores.data(), heads, T};
    INFOKV_TRY(policy.score(ctx, out));
    double l1 = 0.0;
    for (std::size_t i = 0; i < T; ++i) {
      float m = 0.0f;
      for (std::size_t h = 0; h < heads; ++h) m += out(h, i);
      m /= static_cast<float>(heads);
      d.reduce_tmp[i] = m;  // this layer's head-mean
      if (std::isfinite(m)) l1 += std::fabs(static_cast<double>(m));
    }
    const float scale = (Ls > 1 && l1 > 0.0) ? static_cast<float>(1.0 / l1) : 1.0f;
    for (std::size_t i = 0; i < T; ++i) row[i] += d.reduce_tmp[i] * scale;
  }
  if (Ls > 1)
    for (std::size_t i = 0; i < T; ++i) row[i] /= static_cast<float>(Ls);
  return {};
}

}  // namespace reduce_stage
INFOKV_END_NAMESPACE
