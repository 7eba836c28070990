// SPDX-License-Identifier: Apache-2.0
// Every kernel for every instruction set the library has: the scalar reference and, on x86-64,
// the AVX2, AVX-512 and AMX overloads. Algorithms call simd::kernel(Isa{}, ...) with the Isa they
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
#if defined(__x86_64__)
#include "infokv/simd/amx.hpp"
#endif
#include "infokv/simd/window_product.hpp"

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

/// The window-logit product of the vector ISAs (the first argument: scalar_t and every tag derived
/// from it that brings no product of its own). Packs the M query rows row(u) (D floats each, times
/// `scale`) as float panels [Mp / 32][D][32], zero padded.
template <class Isa, class RowFn>
inline void pack_window_queries(scalar_t, Isa, RowFn row, std::size_t M, std::size_t D, float scale, float* packed,
                                std::size_t Mp) noexcept {
  std::fill(packed, packed + Mp * D, 0.0f);
  for (std::size_t u = 0; u < M; ++u) {
    const float* q = row(u);
    const std::size_t p = u / panel_width, lane = u % panel_width;
    for (std::size_t d = 0; d < D; ++d) packed[(p * D + d) * panel_width + lane] = q[d] * scale;
  }
}

/// e[i * Mp + r] = key(i) . packed row r for keys [0, n): keys converted to float vector_key_block
/// at a time into `work` (window_key_block_floats(D) floats) and multiplied by the ISA's
/// gemm_packed. Writes rows [0, n) of e only.
template <class Isa, class KeyFn>
inline void window_logits(scalar_t, Isa isa, KeyFn key, std::size_t n, std::size_t D, const float* packed,
                          std::size_t Mp, float* work, float* e) noexcept {
  for (std::size_t b = 0; b < n; b += vector_key_block) {
    const std::size_t nb = std::min(vector_key_block, n - b);
    for (std::size_t j = 0; j < nb; ++j) to_float_row(isa, key(b + j), work + j * D, D);
    gemm_packed(isa, work, nb, D, packed, Mp, D, e + b * Mp, Mp);
  }
}

}  // namespace simd
INFOKV_END_NAMESPACE
