// SPDX-License-Identifier: Apache-2.0
// The scalar reference kernels: written in the most obvious way, they are the oracle every fast
// kernel is tested against. Keys and values of any storage type are converted to float on read.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>

#include "infokv/config.hpp"
#include "infokv/element_types.hpp"
#include "infokv/simd/isa.hpp"

INFOKV_BEGIN_NAMESPACE
namespace simd {

/// sum_d x[d] * q[d], x of any KV element type.
template <class T>
[[nodiscard]] inline float dot(scalar_t, const T* x, const float* q, std::size_t n) noexcept {
  float acc = 0.0f;
  for (std::size_t i = 0; i < n; ++i) acc += to_float(x[i]) * q[i];
  return acc;
}

template <class T>
[[nodiscard]] inline float squared_norm(scalar_t, const T* x, std::size_t n) noexcept {
  float acc = 0.0f;
  for (std::size_t i = 0; i < n; ++i) {
    const float v = to_float(x[i]);
    acc += v * v;
  }
  return acc;
}

/// In-place softmax over x[0, n). -inf entries become 0; an all -inf row becomes all 0.
inline void softmax(scalar_t, float* x, std::size_t n) noexcept {
  if (n == 0) return;
  float m = -std::numeric_limits<float>::infinity();
  for (std::size_t i = 0; i < n; ++i) m = std::max(m, x[i]);
  if (m == -std::numeric_limits<float>::infinity()) {
    std::fill(x, x + n, 0.0f);
    return;
  }
  float z = 0.0f;
  for (std::size_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - m);
    z += x[i];
  }
  const float inv = 1.0f / z;
  for (std::size_t i = 0; i < n; ++i) x[i] *= inv;
}

/// Entropy in nats of softmax(logits) restricted to the k largest logits and renormalised over
/// them (k >= vocab: the full distribution). -inf logits have probability 0. `scratch` holds
/// at least min(k, n) floats... and n floats when k < n (selection copies the row).
[[nodiscard]] inline float top_k_entropy(scalar_t, const float* logits, std::size_t n, std::size_t k,
                                         float* scratch) noexcept {
  if (n == 0 || k == 0) return 0.0f;
  const std::size_t m = std::min(k, n);
  std::copy(logits, logits + n, scratch);
  if (m < n) std::nth_element(scratch, scratch + (m - 1), scratch + n, std::greater<float>());
  float mx = -std::numeric_limits<float>::infinity();
  for (std::size_t i = 0; i < m; ++i) mx = std::max(mx, scratch[i]);
  if (mx == -std::numeric_limits<float>::infinity()) return 0.0f;
  // H = log Z - sum_v p_v (z_v - mx), with Z = sum_v exp(z_v - mx).
  double z = 0.0, weighted = 0.0;
  for (std::size_t i = 0; i < m; ++i) {
    const double d = static_cast<double>(scratch[i]) - mx;
    const double e = std::exp(d);
    z += e;
    if (e > 0.0) weighted += e * d;
  }
  const double h = std::log(z) - weighted / z;
  return static_cast<float>(std::max(0.0, h));
}

/// 1 - cos(a, b), clamped to [0, 2]. A zero vector has no direction: the distance is 1 (neither
/// aligned nor opposed), except that a vector is always at distance 0 from itself.
[[nodiscard]] inline float cosine_distance(scalar_t, const float* a, const float* b,
                                           std::size_t n) noexcept {
  if (a == b) return 0.0f;
  double ab = 0.0, aa = 0.0, bb = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    ab += static_cast<double>(a[i]) * b[i];
    aa += static_cast<double>(a[i]) * a[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  if (aa == 0.0 || bb == 0.0) return 1.0f;
  const double c = ab / (std::sqrt(aa) * std::sqrt(bb));
  return static_cast<float>(std::clamp(1.0 - c, 0.0, 2.0));
}

/// 1-D average pooling, stride 1, `same` zero padding, divisor always `kernel` (PyTorch's
/// avg_pool1d with padding = kernel / 2 and count_include_pad). kernel must be odd.
inline void avg_pool(scalar_t, const float* in, float* out, std::size_t n, std::size_t kernel) noexcept {
  const std::size_t half = kernel / 2;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t lo = i >= half ? i - half : 0;
    const std::size_t hi = std::min(n, i + half + 1);
    float s = 0.0f;
    for (std::size_t j = lo; j < hi; ++j) s += in[j];
    out[i] = s / static_cast<float>(kernel);
  }
}

/// 1-D max pooling, stride 1, `same` padding with -inf (PyTorch's max_pool1d).
inline void max_pool(scalar_t, const float* in, float* out, std::size_t n, std::size_t kernel) noexcept {
  const std::size_t half = kernel / 2;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t lo = i >= half ? i - half : 0;
    const std::size_t hi = std::min(n, i + half + 1);
    float m = -std::numeric_limits<float>::infinity();
    for (std::size_t j = lo; j < hi; ++j) m = std::max(m, in[j]);
    out[i] = m;
  }
}

/// dst[i] = float(src[i]).
template <class T>
inline void to_float_row(scalar_t, const T* src, float* dst, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) dst[i] = to_float(src[i]);
}

/// Keys per packed panel in the attention GEMM (the same for every ISA, so packing is shared).
inline constexpr std::size_t panel_width = 32;

/// C[M x N] = A[M x K] * B^T, B packed as panels [ceil(N / 32)][K][32] (zero padded). C rows
/// hold ceil(N / 32) * 32 columns (ldc at least that).
inline void gemm_packed(scalar_t, const float* a, std::size_t m, std::size_t lda, const float* b_panels,
                        std::size_t n, std::size_t k, float* c, std::size_t ldc) noexcept {
  const std::size_t panels = (n + panel_width - 1) / panel_width;
  for (std::size_t r = 0; r < m; ++r)
    for (std::size_t p = 0; p < panels; ++p)
      for (std::size_t j = 0; j < panel_width; ++j) {
        float acc = 0.0f;
        for (std::size_t d = 0; d < k; ++d) acc += a[r * lda + d] * b_panels[(p * k + d) * panel_width + j];
        c[r * ldc + p * panel_width + j] = acc;
      }
}

/// For each of `rows` rows of s (stride lds, n entries): softmax in place, then
/// acc[i] += weight * softmax_i. -inf entries contribute 0.
inline void softmax_accumulate_rows(scalar_t, float* s, std::size_t rows, std::size_t n, std::size_t lds, float* acc,
                                    float weight) noexcept {
  for (std::size_t r = 0; r < rows; ++r) {
    float* row = s + r * lds;
    softmax(scalar_t{}, row, n);
    for (std::size_t i = 0; i < n; ++i) acc[i] += weight * row[i];
  }
}

/// m[c] = max(m[c], e[r * ld + c]) over rows r; cols is a multiple of 16.
inline void column_max(scalar_t, const float* e, std::size_t rows, std::size_t cols, std::size_t ld,
                       float* m) noexcept {
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) m[c] = std::max(m[c], e[r * ld + c]);
}

/// e[r][c] = exp(e[r][c] - m[c]) (0 where either is -inf), colsum[c] += e[r][c].
inline void exp_sub_rows(scalar_t, float* e, std::size_t rows, std::size_t cols, std::size_t ld, const float* m,
                         float* colsum) noexcept {
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) {
      float& x = e[r * ld + c];
      x = (x == ninf || m[c] == ninf) ? 0.0f : std::exp(x - m[c]);
      colsum[c] += x;
    }
}

/// Copies a row that will not be read again soon (compaction); the SIMD versions stream it past
/// the cache. store_fence orders such copies before later stores.
inline void stream_copy(scalar_t, void* dst, const void* src, std::size_t bytes) noexcept {
  std::memcpy(dst, src, bytes);
}
inline void store_fence(scalar_t) noexcept {}

/// True when every x[i] is finite (no NaN, no +-inf).
[[nodiscard]] inline bool all_finite(scalar_t, const float* x, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i])) return false;
  return true;
}
/// True when no x[i] is NaN or +inf (-inf allowed: a masked logit).
[[nodiscard]] inline bool no_nan_or_pos_inf(scalar_t, const float* x, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i)
    if (std::isnan(x[i]) || x[i] == std::numeric_limits<float>::infinity()) return false;
  return true;
}

/// y[i] += a * x[i].
inline void axpy(scalar_t, float a, const float* x, float* y, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) y[i] += a * x[i];
}

[[nodiscard]] inline float max_value(scalar_t, const float* x, std::size_t n) noexcept {
  float m = -std::numeric_limits<float>::infinity();
  for (std::size_t i = 0; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

/// Splits indices of x into above (x > hi) and between (lo <= x <= hi); NaN goes to neither.
inline void split_by_thresholds(scalar_t, const float* x, std::size_t n, float hi, float lo, std::uint32_t* above,
                                std::size_t& n_above, std::uint32_t* between, std::size_t& n_between) noexcept {
  std::size_t a = 0, b = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (x[i] > hi)
      above[a++] = static_cast<std::uint32_t>(i);
    else if (x[i] >= lo)
      between[b++] = static_cast<std::uint32_t>(i);
  }
  n_above = a;
  n_between = b;
}

/// Copies the values >= t to out, in order; returns how many.
inline std::size_t filter_at_least(scalar_t, const float* x, std::size_t n, float t, float* out) noexcept {
  std::size_t c = 0;
  for (std::size_t i = 0; i < n; ++i)
    if (x[i] >= t) out[c++] = x[i];
  return c;
}

/// z = sum_i exp(x_i - m), weighted = sum_i exp(x_i - m) * (x_i - m), for x_i <= m.
inline void exp_moments(scalar_t, const float* x, std::size_t n, float m, double& z, double& weighted) noexcept {
  z = 0.0;
  weighted = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(x[i]) - m;
    const double e = std::exp(d);
    z += e;
    if (e > 0.0) weighted += e * d;
  }
}

}  // namespace simd
INFOKV_END_NAMESPACE
