// SPDX-License-Identifier: Apache-2.0
// Every kernel for every instruction set the library has: the scalar reference and, on x86-64,
// the AVX2 and AVX-512 overloads. Algorithms call simd::kernel(Isa{}, ...) with the Isa they
// were instantiated for (simd::native_isa by default), so the choice is made at compile time
// and is part of every mangled name. Composite kernels built from the primitives live here.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>

#include "infokv/config.hpp"
#include "infokv/simd/isa.hpp"
#include "infokv/simd/scalar.hpp"
#if defined(__x86_64__) || defined(__i386__)
#include "infokv/simd/avx2.hpp"
#include "infokv/simd/avx512.hpp"
#endif

INFOKV_BEGIN_NAMESPACE
namespace simd {

/// Top-k entropy (see the scalar reference) with a vectorised filter: a threshold from a strided
/// sample keeps about 2k candidates in one pass, the exact top k is selected among them, and
/// their exp-moments are vectorised. Falls back to the full row when the sample misjudges.
/// `scratch` holds n floats.
template <class Isa>
  requires(!std::is_same_v<Isa, scalar_t>)
[[nodiscard]] inline float top_k_entropy(Isa isa, const float* logits, std::size_t n, std::size_t k,
                                         float* scratch) noexcept {
  if (n == 0 || k == 0) return 0.0f;
  std::size_t c = n;
  const float* top = logits;
  if (k < n) {
    c = 0;
    if (n >= 4096 && k * 16 <= n) {
      // Sample 1024 values; the threshold is the sample value at twice the expected rank of k.
      constexpr std::size_t kSample = 1024;
      const std::size_t stride = n / kSample;
      for (std::size_t i = 0; i < kSample; ++i) scratch[i] = logits[i * stride];
      const std::size_t rank = std::min(kSample - 1, (2 * k * kSample) / n + 8);
      std::nth_element(scratch, scratch + rank, scratch + kSample, std::greater<float>());
      c = filter_at_least(isa, logits, n, scratch[rank], scratch);
    }
    if (c < k) {  // no sampling, or too few candidates: the whole row
      std::copy(logits, logits + n, scratch);
      c = n;
    }
    std::nth_element(scratch, scratch + (k - 1), scratch + c, std::greater<float>());
    top = scratch;
    c = k;
  }
  const float m = max_value(isa, top, c);
  if (m == -std::numeric_limits<float>::infinity()) return 0.0f;
  double z = 0.0, weighted = 0.0;
  exp_moments(isa, top, c, m, z, weighted);
  return static_cast<float>(std::max(0.0, std::log(z) - weighted / z));
}

}  // namespace simd
INFOKV_END_NAMESPACE
