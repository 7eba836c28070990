// SPDX-License-Identifier: Apache-2.0
// AVX2 + FMA + F16C kernels: overloads on avx2_t compiled with [[gnu::target]], so they exist in
// every x86-64 binary and run where cpu_supports(avx2_t) says so. Each one computes what its
// scalar_t twin in simd/scalar.hpp computes (the tests compare them).
#pragma once

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "infokv/config.hpp"
#include "infokv/element_types.hpp"
#include "infokv/simd/isa.hpp"
#include "infokv/simd/scalar.hpp"

#define INFOKV_AVX2 gnu::target("avx2,fma,f16c")

INFOKV_BEGIN_NAMESPACE
namespace simd {
namespace avx2_detail {

template <class T>
[[INFOKV_AVX2]] inline __m256 load8(const T* p) noexcept {
  if constexpr (std::is_same_v<T, float>) {
    return _mm256_loadu_ps(p);
  } else {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    if constexpr (std::is_same_v<T, half>) {
      return _mm256_cvtph_ps(raw);
    } else {
      static_assert(std::is_same_v<T, bfloat16>, "a 2-byte element that is not half is read as bfloat16 only");
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
    }
  }
}

[[INFOKV_AVX2]] inline float hsum(__m256 v) noexcept {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

[[INFOKV_AVX2]] inline float hmax(__m256 v) noexcept {
  const __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_max_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_max_ss(t, _mm_movehdup_ps(t)));
}

/// e^x for x <= 88.7, relative error about 2 ulp; x below -87.3 (and -inf) gives 0.
[[INFOKV_AVX2]] inline __m256 exp8(__m256 x) noexcept {
  const __m256 lo = _mm256_set1_ps(-87.3f);
  const __m256 keep = _mm256_cmp_ps(x, lo, _CMP_GE_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(88.7f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), keep);
}

}  // namespace avx2_detail

template <class T>
[[INFOKV_AVX2]] inline void to_float_row(avx2_t, const T* src, float* dst, std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, avx2_detail::load8(src + i));
  for (; i < n; ++i) dst[i] = to_float(src[i]);
}

template <class T>
[[nodiscard, INFOKV_AVX2]] inline float dot(avx2_t, const T* x, const float* q, std::size_t n) noexcept {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps(avx2_detail::load8(x + i), _mm256_loadu_ps(q + i), a0);
    a1 = _mm256_fmadd_ps(avx2_detail::load8(x + i + 8), _mm256_loadu_ps(q + i + 8), a1);
  }
  for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(avx2_detail::load8(x + i), _mm256_loadu_ps(q + i), a0);
  float s = avx2_detail::hsum(_mm256_add_ps(a0, a1));
  for (; i < n; ++i) s += to_float(x[i]) * q[i];
  return s;
}

template <class T>
[[nodiscard, INFOKV_AVX2]] inline float squared_norm(avx2_t, const T* x, std::size_t n) noexcept {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 v0 = avx2_detail::load8(x + i), v1 = avx2_detail::load8(x + i + 8);
    a0 = _mm256_fmadd_ps(v0, v0, a0);
    a1 = _mm256_fmadd_ps(v1, v1, a1);
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 v = avx2_detail::load8(x + i);
    a0 = _mm256_fmadd_ps(v, v, a0);
  }
  float s = avx2_detail::hsum(_mm256_add_ps(a0, a1));
  for (; i < n; ++i) s += to_float(x[i]) * to_float(x[i]);
  return s;
}

[[nodiscard, INFOKV_AVX2]] inline float cosine_distance(avx2_t, const float* a, const float* b,
                                                       std::size_t n) noexcept {
  if (a == b) return 0.0f;
  __m256 ab = _mm256_setzero_ps(), aa = _mm256_setzero_ps(), bb = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(a + i), y = _mm256_loadu_ps(b + i);
    ab = _mm256_fmadd_ps(x, y, ab);
    aa = _mm256_fmadd_ps(x, x, aa);
    bb = _mm256_fmadd_ps(y, y, bb);
  }
  double sab = avx2_detail::hsum(ab), saa = avx2_detail::hsum(aa), sbb = avx2_detail::hsum(bb);
  // The tail: fewer than 8 entries (bounded explicitly, which keeps GCC 12's loop analysis quiet).
  const float* at = a + i;
  const float* bt = b + i;
  for (std::size_t j = 0; j < 8 && i + j < n; ++j) {
    sab += static_cast<double>(at[j]) * bt[j];
    saa += static_cast<double>(at[j]) * at[j];
    sbb += static_cast<double>(bt[j]) * bt[j];
  }
  if (saa == 0.0 || sbb == 0.0) return 1.0f;
  return static_cast<float>(std::clamp(1.0 - sab / (std::sqrt(saa) * std::sqrt(sbb)), 0.0, 2.0));
}

/// Non-temporal copy when both ends are 32-byte aligned and the size a multiple of 32; memcpy
/// otherwise. Pair with store_fence.
[[INFOKV_AVX2]] inline void stream_copy(avx2_t, void* dst, const void* src, std::size_t bytes) noexcept {
  if (((reinterpret_cast<std::uintptr_t>(dst) | reinterpret_cast<std::uintptr_t>(src) | bytes) & 31u) != 0) {
    std::memcpy(dst, src, bytes);
    return;
  }
  auto* d = static_cast<__m256i*>(dst);
  const auto* s = static_cast<const __m256i*>(src);
  for (std::size_t i = 0; i < bytes / 32; ++i) _mm256_stream_si256(d + i, _mm256_load_si256(s + i));
}
[[INFOKV_AVX2]] inline void store_fence(avx2_t) noexcept { _mm_sfence(); }

[[nodiscard, INFOKV_AVX2]] inline bool all_finite(avx2_t, const float* x, std::size_t n) noexcept {
  // x - x is NaN exactly when x is NaN or infinite.
  __m256 acc = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    acc = _mm256_or_ps(acc, _mm256_cmp_ps(_mm256_sub_ps(v, v), _mm256_setzero_ps(), _CMP_UNORD_Q));
  }
  if (_mm256_movemask_ps(acc) != 0) return false;
  for (; i < n; ++i)
    if (!std::isfinite(x[i])) return false;
  return true;
}
[[nodiscard, INFOKV_AVX2]] inline bool no_nan_or_pos_inf(avx2_t, const float* x, std::size_t n) noexcept {
  const __m256 inf = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  __m256 acc = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    acc = _mm256_or_ps(acc, _mm256_or_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q), _mm256_cmp_ps(v, inf, _CMP_EQ_OQ)));
  }
  if (_mm256_movemask_ps(acc) != 0) return false;
  for (; i < n; ++i)
    if (std::isnan(x[i]) || x[i] == std::numeric_limits<float>::infinity()) return false;
  return true;
}

[[INFOKV_AVX2]] inline void axpy(avx2_t, float a, const float* x, float* y, std::size_t n) noexcept {
  const __m256 va = _mm256_set1_ps(a);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

[[INFOKV_AVX2]] inline void column_max(avx2_t, const float* e, std::size_t rows, std::size_t cols, std::size_t ld,
                                       float* m) noexcept {
  for (std::size_t c = 0; c < cols; c += 8) {
    __m256 v = _mm256_loadu_ps(m + c);
    for (std::size_t r = 0; r < rows; ++r) v = _mm256_max_ps(v, _mm256_loadu_ps(e + r * ld + c));
    _mm256_storeu_ps(m + c, v);
  }
}

[[INFOKV_AVX2]] inline void exp_sub_rows(avx2_t, float* e, std::size_t rows, std::size_t cols, std::size_t ld,
                                         const float* m, float* colsum) noexcept {
  const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  for (std::size_t c = 0; c < cols; c += 8) {
    const __m256 mv = _mm256_loadu_ps(m + c);
    const __m256 live = _mm256_cmp_ps(mv, ninf, _CMP_NEQ_OQ);
    __m256 z = _mm256_loadu_ps(colsum + c);
    for (std::size_t r = 0; r < rows; ++r) {
      float* p = e + r * ld + c;
      const __m256 x = _mm256_and_ps(live, avx2_detail::exp8(_mm256_sub_ps(_mm256_loadu_ps(p), mv)));
      _mm256_storeu_ps(p, x);
      z = _mm256_add_ps(z, x);
    }
    _mm256_storeu_ps(colsum + c, z);
  }
}

namespace avx2_detail {
/// Rows [0, MR) of C[:, 16 columns] = A rows . B half-panel, over k (B row stride 32).
template <std::size_t MR>
[[INFOKV_AVX2]] inline void gemm_block(const float* a, std::size_t lda, const float* b, std::size_t k, float* c,
                                       std::size_t ldc) noexcept {
  __m256 acc0[MR], acc1[MR];
  // Unrolled at every -O level so the 2 x MR accumulators live in registers.
#pragma GCC unroll 16
  for (std::size_t r = 0; r < MR; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
  for (std::size_t d = 0; d < k; ++d) {
    const __m256 b0 = _mm256_loadu_ps(b + d * panel_width);
    const __m256 b1 = _mm256_loadu_ps(b + d * panel_width + 8);
#pragma GCC unroll 16
    for (std::size_t r = 0; r < MR; ++r) {
      const __m256 av = _mm256_broadcast_ss(a + r * lda + d);
      acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
      acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
    }
  }
#pragma GCC unroll 16
  for (std::size_t r = 0; r < MR; ++r) {
    _mm256_storeu_ps(c + r * ldc, acc0[r]);
    _mm256_storeu_ps(c + r * ldc + 8, acc1[r]);
  }
}
}  // namespace avx2_detail

[[INFOKV_AVX2]] inline void gemm_packed(avx2_t, const float* a, std::size_t m, std::size_t lda, const float* b_panels,
                                        std::size_t n, std::size_t k, float* c, std::size_t ldc) noexcept {
  // Panel-outer: a half panel of B stays in L1 while every row block of A passes over it.
  constexpr std::size_t kRows = 6;
  const std::size_t panels = (n + panel_width - 1) / panel_width;
  for (std::size_t p = 0; p < panels; ++p)
    for (std::size_t h = 0; h < panel_width; h += 16) {
      const float* b = b_panels + p * k * panel_width + h;
      float* cc = c + p * panel_width + h;
      std::size_t r = 0;
      for (; r + kRows <= m; r += kRows) avx2_detail::gemm_block<kRows>(a + r * lda, lda, b, k, cc + r * ldc, ldc);
      for (; r + 2 <= m; r += 2) avx2_detail::gemm_block<2>(a + r * lda, lda, b, k, cc + r * ldc, ldc);
      for (; r < m; ++r) avx2_detail::gemm_block<1>(a + r * lda, lda, b, k, cc + r * ldc, ldc);
    }
}

[[nodiscard, INFOKV_AVX2]] inline float max_value(avx2_t, const float* x, std::size_t n) noexcept {
  __m256 vm = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
  float m = avx2_detail::hmax(vm);
  for (; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

[[INFOKV_AVX2]] inline void softmax_accumulate_rows(avx2_t, float* s, std::size_t rows, std::size_t n,
                                                    std::size_t lds, float* acc, float weight) noexcept {
  for (std::size_t r = 0; r < rows; ++r) {
    float* row = s + r * lds;
    const float m = max_value(avx2_t{}, row, n);
    if (m == -std::numeric_limits<float>::infinity()) continue;
    const __m256 mv = _mm256_set1_ps(m);
    __m256 vz = _mm256_setzero_ps();
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const __m256 e = avx2_detail::exp8(_mm256_sub_ps(_mm256_loadu_ps(row + i), mv));
      _mm256_storeu_ps(row + i, e);
      vz = _mm256_add_ps(vz, e);
    }
    float z = avx2_detail::hsum(vz);
    for (; i < n; ++i) {
      row[i] = row[i] == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp(row[i] - m);
      z += row[i];
    }
    axpy(avx2_t{}, weight / z, row, acc, n);
  }
}

[[INFOKV_AVX2]] inline void split_by_thresholds(avx2_t, const float* x, std::size_t n, float hi, float lo,
                                                std::uint32_t* above, std::size_t& n_above, std::uint32_t* between,
                                                std::size_t& n_between) noexcept {
  const __m256 vh = _mm256_set1_ps(hi), vl = _mm256_set1_ps(lo);
  std::size_t a = 0, b = 0, i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    int ma = _mm256_movemask_ps(_mm256_cmp_ps(v, vh, _CMP_GT_OQ));
    int mb = _mm256_movemask_ps(_mm256_cmp_ps(v, vl, _CMP_GE_OQ)) & ~ma;
    while (ma != 0) {
      above[a++] = static_cast<std::uint32_t>(i + static_cast<std::size_t>(__builtin_ctz(static_cast<unsigned>(ma))));
      ma &= ma - 1;
    }
    while (mb != 0) {
      between[b++] = static_cast<std::uint32_t>(i + static_cast<std::size_t>(__builtin_ctz(static_cast<unsigned>(mb))));
      mb &= mb - 1;
    }
  }
  for (; i < n; ++i) {
    if (x[i] > hi)
      above[a++] = static_cast<std::uint32_t>(i);
    else if (x[i] >= lo)
      between[b++] = static_cast<std::uint32_t>(i);
  }
  n_above = a;
  n_between = b;
}

[[INFOKV_AVX2]] inline std::size_t filter_at_least(avx2_t, const float* x, std::size_t n, float t, float* out) noexcept {
  const __m256 vt = _mm256_set1_ps(t);
  std::size_t c = 0, i = 0;
  for (; i + 8 <= n; i += 8) {
    int m = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), vt, _CMP_GE_OQ));
    while (m != 0) {
      const int j = __builtin_ctz(static_cast<unsigned>(m));
      out[c++] = x[i + static_cast<std::size_t>(j)];
      m &= m - 1;
    }
  }
  for (; i < n; ++i)
    if (x[i] >= t) out[c++] = x[i];
  return c;
}

[[INFOKV_AVX2]] inline void exp_moments(avx2_t, const float* x, std::size_t n, float m, double& z,
                                        double& weighted) noexcept {
  const __m256 mv = _mm256_set1_ps(m);
  __m256 vz = _mm256_setzero_ps(), vw = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), mv);
    const __m256 e = avx2_detail::exp8(d);
    vz = _mm256_add_ps(vz, e);
    vw = _mm256_add_ps(vw, _mm256_and_ps(_mm256_mul_ps(e, d), _mm256_cmp_ps(e, _mm256_setzero_ps(), _CMP_GT_OQ)));
  }
  double tail_z = 0.0, tail_w = 0.0;
  exp_moments(scalar_t{}, x + i, n - i, m, tail_z, tail_w);
  z = avx2_detail::hsum(vz) + tail_z;
  weighted = avx2_detail::hsum(vw) + tail_w;
}

}  // namespace simd
INFOKV_END_NAMESPACE

#undef INFOKV_AVX2

#endif  // x86
