// SPDX-License-Identifier: Apache-2.0
// The baselines InfoKV is measured against, each a policy on the same selection and compaction
// machinery, with the defaults of their papers / NVIDIA kvpress. See README's policy table.
#pragma once

#include <cstdint>

#include "infokv/config.hpp"
#include "infokv/policy/infokv_policy.hpp"
#include "infokv/policy/scorer_policy.hpp"
#include "infokv/scorer/accumulated_attention.hpp"
#include "infokv/scorer/attention.hpp"
#include "infokv/scorer/expected_attention.hpp"
#include "infokv/scorer/key_norm.hpp"
#include "infokv/scorer/last_query.hpp"
#include "infokv/scorer/random.hpp"
#include "infokv/scorer/recency.hpp"
#include "infokv/scorer/redundancy.hpp"

INFOKV_BEGIN_NAMESPACE

using streaming_llm_policy = scorer_policy<recency_scorer>;
using h2o_policy = scorer_policy<accumulated_attention_scorer>;
using tova_policy = scorer_policy<last_query_scorer>;
using snapkv_policy = scorer_policy<attention_scorer>;
using knorm_policy = scorer_policy<key_norm_scorer>;
using expected_attention_policy = scorer_policy<expected_attention_scorer>;
using rkv_policy = scorer_policy<redundancy_scorer>;
using random_policy = scorer_policy<random_scorer>;

[[nodiscard]] constexpr streaming_llm_policy make_streaming_llm() noexcept { return {{}, "StreamingLLM"}; }
[[nodiscard]] constexpr h2o_policy make_h2o() noexcept { return {{}, "H2O"}; }
[[nodiscard]] constexpr tova_policy make_tova() noexcept { return {{}, "TOVA"}; }
/// SnapKV with InfoKV's shared settings: window 64, average pooling, kernel 9.
[[nodiscard]] constexpr snapkv_policy make_snapkv(std::size_t window = 64, std::size_t kernel = 9) noexcept {
  return {{window, kernel, pooling::average}, "SnapKV"};
}
/// PyramidKV: SnapKV scores with the pyramid layer schedule (beta = 20).
[[nodiscard]] constexpr snapkv_policy make_pyramidkv(std::size_t window = 64, std::size_t kernel = 9) noexcept {
  return {{window, kernel, pooling::average}, "PyramidKV", budget_schedule::pyramid};
}
[[nodiscard]] constexpr knorm_policy make_knorm() noexcept { return {{}, "KNorm"}; }
[[nodiscard]] constexpr expected_attention_policy make_expected_attention() noexcept {
  return {{}, "ExpectedAttention"};
}
[[nodiscard]] constexpr rkv_policy make_rkv() noexcept { return {{}, "R-KV"}; }
[[nodiscard]] constexpr random_policy make_random(std::uint64_t seed = 0) noexcept { return {{seed}, "Random"}; }
/// InfoKV with the paper's defaults (alpha 0.9, tau 1, top-256 entropy, window 64, kernel 9).
[[nodiscard]] constexpr infokv_policy<> make_infokv(float alpha = 0.9f, float tau = 1.0f) noexcept {
  infokv_policy<> p;
  p.alpha = alpha;
  p.tau = tau;
  return p;
}
static_assert(eviction_policy<streaming_llm_policy, conformance_view> && eviction_policy<h2o_policy, conformance_view> &&
              eviction_policy<tova_policy, conformance_view> && eviction_policy<snapkv_policy, conformance_view> &&
              eviction_policy<knorm_policy, conformance_view> &&
              eviction_policy<expected_attention_policy, conformance_view> &&
              eviction_policy<rkv_policy, conformance_view> && eviction_policy<random_policy, conformance_view> &&
              layer_weighted_policy<infokv_policy<>, conformance_view>,
              "every built-in policy must satisfy eviction_policy (InfoKV also layer_weighted_policy)");

[[nodiscard]] constexpr infokv_policy<> make_infokv_adaptive(float alpha = 0.9f, float tau = 1.0f) noexcept {
  infokv_policy<> p = make_infokv(alpha, tau);
  p.preferred_schedule = budget_schedule::infokv_adaptive;
  return p;
}

INFOKV_END_NAMESPACE
