// SPDX-License-Identifier: Apache-2.0
// AVX-512 (F, BW, DQ, VL) kernels: overloads on avx512_t compiled with [[gnu::target]], so they
// exist in every x86-64 binary and run where cpu_supports(avx512_t) says so. Each one computes
// what its scalar_t twin in simd/scalar.hpp computes (the tests compare them).
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

// GCC < 13 warns about uninitialised vectors inside its own AVX-512 cast intrinsics (PR105593).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define INFOKV_AVX512 gnu::target("avx512f,avx512bw,avx512dq,avx512vl,fma,f16c")

INFOKV_BEGIN_NAMESPACE
namespace simd {
namespace avx512_detail {

/// 16 elements of T as floats; `count` < 16 loads a masked tail (the rest are 0).
template <class T>
[[INFOKV_AVX512]] inline __m512 load16(const T* p, std::size_t count = 16) noexcept {
  const __mmask16 m = count >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << count) - 1u);
  if constexpr (std::is_same_v<T, float>) {
    return _mm512_maskz_loadu_ps(m, p);
  } else {
    const __m256i raw = _mm256_maskz_loadu_epi16(m, p);
    if constexpr (std::is_same_v<T, half>) {
      return _mm512_cvtph_ps(raw);
    } else {
      static_assert(std::is_same_v<T, bfloat16>, "a 2-byte element that is not half is read as bfloat16 only");
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
    }
  }
}

[[INFOKV_AVX512]] inline float hsum(__m512 v) noexcept { return _mm512_reduce_add_ps(v); }

/// e^x for x <= 88.7, relative error about 2 ulp; x below -87.3 (and -inf) gives 0.
[[INFOKV_AVX512]] inline __m512 exp16(__m512 x) noexcept {
  const __m512 lo = _mm512_set1_ps(-87.3f);
  const __mmask16 tiny = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  x = _mm512_min_ps(_mm512_max_ps(x, lo), _mm512_set1_ps(88.7f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  const __m512 y = _mm512_mul_ps(p, _mm512_castsi512_ps(e));
  return _mm512_maskz_mov_ps(static_cast<__mmask16>(~tiny), y);
}

}  // namespace avx512_detail

template <class T>
[[INFOKV_AVX512]] inline void to_float_row(avx512_t, const T* src, float* dst, std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, avx512_detail::load16(src + i));
  if (i < n) {
    const auto m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(dst + i, m, avx512_detail::load16(src + i, n - i));
  }
}

template <class T>
[[nodiscard, INFOKV_AVX512]] inline float dot(avx512_t, const T* x, const float* q, std::size_t n) noexcept {
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm512_fmadd_ps(avx512_detail::load16(x + i), _mm512_loadu_ps(q + i), a0);
    a1 = _mm512_fmadd_ps(avx512_detail::load16(x + i + 16), _mm512_loadu_ps(q + i + 16), a1);
  }
  for (; i < n; i += 16) {
    const std::size_t c = std::min<std::size_t>(16, n - i);
    a0 = _mm512_fmadd_ps(avx512_detail::load16(x + i, c), avx512_detail::load16(q + i, c), a0);
  }
  return avx512_detail::hsum(_mm512_add_ps(a0, a1));
}

template <class T>
[[nodiscard, INFOKV_AVX512]] inline float squared_norm(avx512_t, const T* x, std::size_t n) noexcept {
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 v0 = avx512_detail::load16(x + i), v1 = avx512_detail::load16(x + i + 16);
    a0 = _mm512_fmadd_ps(v0, v0, a0);
    a1 = _mm512_fmadd_ps(v1, v1, a1);
  }
  for (; i < n; i += 16) {
    const __m512 v = avx512_detail::load16(x + i, std::min<std::size_t>(16, n - i));
    a0 = _mm512_fmadd_ps(v, v, a0);
  }
  return avx512_detail::hsum(_mm512_add_ps(a0, a1));
}

[[nodiscard, INFOKV_AVX512]] inline float cosine_distance(avx512_t, const float* a, const float* b,
                                                         std::size_t n) noexcept {
  if (a == b) return 0.0f;
  __m512 ab = _mm512_setzero_ps(), aa = _mm512_setzero_ps(), bb = _mm512_setzero_ps();
  for (std::size_t i = 0; i < n; i += 16) {
    const std::size_t c = std::min<std::size_t>(16, n - i);
    const __m512 x = avx512_detail::load16(a + i, c), y = avx512_detail::load16(b + i, c);
    ab = _mm512_fmadd_ps(x, y, ab);
    aa = _mm512_fmadd_ps(x, x, aa);
    bb = _mm512_fmadd_ps(y, y, bb);
  }
  const double sab = avx512_detail::hsum(ab), saa = avx512_detail::hsum(aa), sbb = avx512_detail::hsum(bb);
  if (saa == 0.0 || sbb == 0.0) return 1.0f;
  return static_cast<float>(std::clamp(1.0 - sab / (std::sqrt(saa) * std::sqrt(sbb)), 0.0, 2.0));
}

/// Non-temporal copy when both ends are 64-byte aligned and the size is a multiple of 64 (no
/// read-for-ownership of the destination); memcpy otherwise. Pair with store_fence.
[[INFOKV_AVX512]] inline void stream_copy(avx512_t, void* dst, const void* src, std::size_t bytes) noexcept {
  if (((reinterpret_cast<std::uintptr_t>(dst) | reinterpret_cast<std::uintptr_t>(src) | bytes) & 63u) != 0) {
    std::memcpy(dst, src, bytes);
    return;
  }
  auto* d = static_cast<__m512i*>(dst);
  const auto* s = static_cast<const __m512i*>(src);
  for (std::size_t i = 0; i < bytes / 64; ++i) _mm512_stream_si512(d + i, _mm512_load_si512(s + i));
}
[[INFOKV_AVX512]] inline void store_fence(avx512_t) noexcept { _mm_sfence(); }

namespace avx512_detail {
/// True when no x[i] falls in the fpclass categories `Classes` (an immediate: 0x01 QNaN,
/// 0x08 +inf, 0x10 -inf, 0x80 SNaN).
template <int Classes>
[[nodiscard, INFOKV_AVX512]] inline bool none_in_class(const float* x, std::size_t n) noexcept {
  __mmask16 bad = 0;
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) bad = static_cast<__mmask16>(bad | _mm512_fpclass_ps_mask(_mm512_loadu_ps(x + i), Classes));
  if (i < n) {
    const auto m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    bad = static_cast<__mmask16>(bad | _mm512_mask_fpclass_ps_mask(m, _mm512_maskz_loadu_ps(m, x + i), Classes));
  }
  return bad == 0;
}
}  // namespace avx512_detail

[[nodiscard, INFOKV_AVX512]] inline bool all_finite(avx512_t, const float* x, std::size_t n) noexcept {
  return avx512_detail::none_in_class<0x99>(x, n);  // NaN, +inf, -inf
}
[[nodiscard, INFOKV_AVX512]] inline bool no_nan_or_pos_inf(avx512_t, const float* x, std::size_t n) noexcept {
  return avx512_detail::none_in_class<0x89>(x, n);  // NaN, +inf
}

/// y[i] += a * x[i].
[[INFOKV_AVX512]] inline void axpy(avx512_t, float a, const float* x, float* y, std::size_t n) noexcept {
  const __m512 va = _mm512_set1_ps(a);
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

[[INFOKV_AVX512]] inline void column_max(avx512_t, const float* e, std::size_t rows, std::size_t cols,
                                         std::size_t ld, float* m) noexcept {
  for (std::size_t c = 0; c < cols; c += 16) {
    __m512 v = _mm512_loadu_ps(m + c);
    for (std::size_t r = 0; r < rows; ++r) v = _mm512_max_ps(v, _mm512_loadu_ps(e + r * ld + c));
    _mm512_storeu_ps(m + c, v);
  }
}

[[INFOKV_AVX512]] inline void exp_sub_rows(avx512_t, float* e, std::size_t rows, std::size_t cols, std::size_t ld,
                                           const float* m, float* colsum) noexcept {
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (std::size_t c = 0; c < cols; c += 16) {
    const __m512 mv = _mm512_loadu_ps(m + c);
    const __mmask16 live = _mm512_cmp_ps_mask(mv, ninf, _CMP_NEQ_OQ);
    __m512 z = _mm512_loadu_ps(colsum + c);
    for (std::size_t r = 0; r < rows; ++r) {
      float* p = e + r * ld + c;
      // exp16 maps -inf (a masked logit) to 0; columns whose max is -inf stay 0.
      const __m512 x = _mm512_maskz_mov_ps(live, avx512_detail::exp16(_mm512_sub_ps(_mm512_loadu_ps(p), mv)));
      _mm512_storeu_ps(p, x);
      z = _mm512_add_ps(z, x);
    }
    _mm512_storeu_ps(colsum + c, z);
  }
}

namespace avx512_detail {
/// Rows [0, MR) of C[:, panel] += A rows . B panel (32 columns), over k.
template <std::size_t MR>
[[INFOKV_AVX512]] inline void gemm_block(const float* a, std::size_t lda, const float* b, std::size_t k, float* c,
                                         std::size_t ldc) noexcept {
  __m512 acc0[MR], acc1[MR];
  // Unrolled at every -O level so the 2 x MR accumulators live in registers.
#pragma GCC unroll 16
  for (std::size_t r = 0; r < MR; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
  for (std::size_t d = 0; d < k; ++d) {
    const __m512 b0 = _mm512_loadu_ps(b + d * panel_width);
    const __m512 b1 = _mm512_loadu_ps(b + d * panel_width + 16);
#pragma GCC unroll 16
    for (std::size_t r = 0; r < MR; ++r) {
      const __m512 av = _mm512_set1_ps(a[r * lda + d]);
      acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
      acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
    }
  }
#pragma GCC unroll 16
  for (std::size_t r = 0; r < MR; ++r) {
    _mm512_storeu_ps(c + r * ldc, acc0[r]);
    _mm512_storeu_ps(c + r * ldc + 16, acc1[r]);
  }
}
}  // namespace avx512_detail

[[INFOKV_AVX512]] inline void gemm_packed(avx512_t, const float* a, std::size_t m, std::size_t lda,
                                          const float* b_panels, std::size_t n, std::size_t k, float* c,
                                          std::size_t ldc) noexcept {
  // Panel-outer: a panel of B stays in L1 while every row block of A passes over it.
  constexpr std::size_t kRows = 12;
  const std::size_t panels = (n + panel_width - 1) / panel_width;
  for (std::size_t p = 0; p < panels; ++p) {
    const float* b = b_panels + p * k * panel_width;
    std::size_t r = 0;
    for (; r + kRows <= m; r += kRows)
      avx512_detail::gemm_block<kRows>(a + r * lda, lda, b, k, c + r * ldc + p * panel_width, ldc);
    for (; r + 4 <= m; r += 4) avx512_detail::gemm_block<4>(a + r * lda, lda, b, k, c + r * ldc + p * panel_width, ldc);
    for (; r < m; ++r) avx512_detail::gemm_block<1>(a + r * lda, lda, b, k, c + r * ldc + p * panel_width, ldc);
  }
}

[[INFOKV_AVX512]] inline void softmax_accumulate_rows(avx512_t, float* s, std::size_t rows, std::size_t n,
                                                      std::size_t lds, float* acc, float weight) noexcept {
  for (std::size_t r = 0; r < rows; ++r) {
    float* row = s + r * lds;
    __m512 vm = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(row + i));
    float m = _mm512_reduce_max_ps(vm);
    for (; i < n; ++i) m = std::max(m, row[i]);
    if (m == -std::numeric_limits<float>::infinity()) continue;  // an all-masked row adds nothing
    const __m512 mv = _mm512_set1_ps(m);
    __m512 vz = _mm512_setzero_ps();
    for (i = 0; i + 16 <= n; i += 16) {
      const __m512 e = avx512_detail::exp16(_mm512_sub_ps(_mm512_loadu_ps(row + i), mv));
      _mm512_storeu_ps(row + i, e);
      vz = _mm512_add_ps(vz, e);
    }
    if (i < n) {
      const auto mk = static_cast<__mmask16>((1u << (n - i)) - 1u);
      const __m512 e = _mm512_maskz_mov_ps(mk, avx512_detail::exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, row + i), mv)));
      _mm512_mask_storeu_ps(row + i, mk, e);
      vz = _mm512_add_ps(vz, e);
    }
    axpy(avx512_t{}, weight / _mm512_reduce_add_ps(vz), row, acc, n);
  }
}

/// The largest value and, when k < n, a threshold t with at least k values >= t found by
/// filtering: values >= t are copied to out (returns their count).
[[INFOKV_AVX512]] inline std::size_t filter_at_least(avx512_t, const float* x, std::size_t n, float t,
                                                     float* out) noexcept {
  const __m512 vt = _mm512_set1_ps(t);
  std::size_t c = 0, i = 0;
  // Compress in a register and store a whole vector (compress-to-memory is microcoded and slow
  // on several cores); `out` is written up to 15 entries past the count, within its n floats
  // whenever i + 16 <= n.
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    const __mmask16 m = _mm512_cmp_ps_mask(v, vt, _CMP_GE_OQ);
    if (m == 0) continue;
    _mm512_storeu_ps(out + c, _mm512_maskz_compress_ps(m, v));
    c += static_cast<std::size_t>(__builtin_popcount(m));
  }
  for (; i < n; ++i)
    if (x[i] >= t) out[c++] = x[i];
  return c;
}

/// Splits indices of x into above (x > hi) and between (lo <= x <= hi); NaN goes to neither.
/// Each output needs room for n + 16 entries. Returns the two counts.
[[INFOKV_AVX512]] inline void split_by_thresholds(avx512_t, const float* x, std::size_t n, float hi, float lo,
                                                  std::uint32_t* above, std::size_t& n_above,
                                                  std::uint32_t* between, std::size_t& n_between) noexcept {
  const __m512 vh = _mm512_set1_ps(hi), vl = _mm512_set1_ps(lo);
  __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i step = _mm512_set1_epi32(16);
  std::size_t a = 0, b = 0, i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    const __mmask16 ma = _mm512_cmp_ps_mask(v, vh, _CMP_GT_OQ);
    const __mmask16 mb = static_cast<__mmask16>(_mm512_cmp_ps_mask(v, vl, _CMP_GE_OQ) & ~ma);
    _mm512_storeu_si512(above + a, _mm512_maskz_compress_epi32(ma, idx));
    _mm512_storeu_si512(between + b, _mm512_maskz_compress_epi32(mb, idx));
    a += static_cast<std::size_t>(__builtin_popcount(ma));
    b += static_cast<std::size_t>(__builtin_popcount(mb));
    idx = _mm512_add_epi32(idx, step);
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

[[nodiscard, INFOKV_AVX512]] inline float max_value(avx512_t, const float* x, std::size_t n) noexcept {
  __m512 vm = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(x + i));
  float m = _mm512_reduce_max_ps(vm);
  for (; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

/// sum_i exp(x_i - m) and sum_i exp(x_i - m) * (x_i - m), for x_i <= m.
[[INFOKV_AVX512]] inline void exp_moments(avx512_t, const float* x, std::size_t n, float m, double& z,
                                          double& weighted) noexcept {
  const __m512 mv = _mm512_set1_ps(m);
  __m512 vz = _mm512_setzero_ps(), vw = _mm512_setzero_ps();
  for (std::size_t i = 0; i < n; i += 16) {
    const std::size_t c = std::min<std::size_t>(16, n - i);
    const auto mk = static_cast<__mmask16>(c >= 16 ? 0xffffu : (1u << c) - 1u);
    const __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), mv);
    const __m512 e = _mm512_maskz_mov_ps(mk, avx512_detail::exp16(d));
    vz = _mm512_add_ps(vz, e);
    // -inf entries have e == 0; keep their product at 0 instead of 0 * -inf.
    vw = _mm512_add_ps(vw, _mm512_maskz_mul_ps(_mm512_cmp_ps_mask(e, _mm512_setzero_ps(), _CMP_GT_OQ), e, d));
  }
  z = _mm512_reduce_add_ps(vz);
  weighted = _mm512_reduce_add_ps(vw);
}

}  // namespace simd
INFOKV_END_NAMESPACE

#undef INFOKV_AVX512

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic pop
#endif

#endif  // x86
