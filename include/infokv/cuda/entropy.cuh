// SPDX-License-Identifier: Apache-2.0
// Top-k predictive entropy over the vocabulary on the GPU: for each logits row, the entropy in
// nats of softmax restricted to the k largest logits and renormalised over them (the host oracle
// is simd::top_k_entropy(scalar_t, ...)). One block per row finds the k-th largest logit exactly
// with an MSD radix select on order-preserving keys (up to four 8-bit digits, histograms in
// shared memory), then sums the exponential moments of the values above it plus the needed copies of
// it, in double. The row is read at most six times (16-byte loads), from L2 after the
// first.
#pragma once

#include <cstddef>
#include <cstdint>

#include "infokv/cuda/common.cuh"
#include "infokv/cuda/radix_select.cuh"

INFOKV_BEGIN_NAMESPACE
namespace cuda {

namespace detail {

inline constexpr int entropy_threads = 1024;

/// Calls f(float value) for this thread's share of x[0, n): 16-byte vector loads over the aligned
/// middle of the row (8 half / bfloat16 or 4 float values per load), scalar loads at the ends.
template <class T, class F>
__device__ __forceinline__ void for_each_value(const T* x, std::size_t n, F&& f) {
  constexpr std::size_t per_vector = 16 / sizeof(T);
  const auto misalign = reinterpret_cast<std::uintptr_t>(x) % 16;
  std::size_t head = misalign == 0 ? 0 : (16 - misalign) / sizeof(T);
  if (misalign % sizeof(T) != 0) head = n;  // not element aligned in 16 bytes: all scalar
  if (head > n) head = n;
  for (std::size_t i = threadIdx.x; i < head; i += blockDim.x) f(load_float(x + i));
  const std::size_t vectors = (n - head) / per_vector;
  const uint4* v = reinterpret_cast<const uint4*>(x + head);
#pragma unroll 4
  for (std::size_t j = threadIdx.x; j < vectors; j += blockDim.x) {
    const uint4 w = v[j];
    const T* e = reinterpret_cast<const T*>(&w);
#pragma unroll
    for (std::size_t q = 0; q < per_vector; ++q) f(load_float(e + q));
  }
  for (std::size_t i = head + vectors * per_vector + threadIdx.x; i < n; i += blockDim.x) f(load_float(x + i));
}

template <class T>
__global__ void __launch_bounds__(entropy_threads)
    top_k_entropy_kernel(const T* logits, std::size_t ld, std::size_t vocab, std::size_t k, float* out) {
  __shared__ radix_shared rsh;
  __shared__ double red_d[entropy_threads / 32];
  __shared__ unsigned red_u[entropy_threads / 32];
  const T* x = logits + blockIdx.x * ld;
  // Maximum and poison check (NaN or +inf make the row's entropy NaN).
  unsigned top = 0, bad = 0;
  for_each_value(x, vocab, [&](float v) {
    bad |= (v != v) || (v == __int_as_float(0x7f800000));
    top = max(top, order_key(v));
  });
  top = block_max(top, red_u);
  bad = block_max(bad, red_u);
  if (bad != 0 || vocab == 0 || k == 0) {
    if (threadIdx.x == 0) out[blockIdx.x] = (bad != 0) ? __int_as_float(0x7fc00000) : 0.0f;
    return;
  }
  const float mx = key_value(top);
  if (mx == -__int_as_float(0x7f800000)) {  // every entry masked
    if (threadIdx.x == 0) out[blockIdx.x] = 0.0f;
    return;
  }
  std::uint32_t kth = 0;
  std::size_t need = 0;
  if (k < vocab) {
    const auto visit = [&](auto&& f) { for_each_value(x, vocab, [&](float v) { f(order_key(v)); }); };
    block_radix_select<std::uint32_t>(visit, k, rsh, kth, need);
  }
  // H = log Z - sum p (z - mx): the values above the k-th, plus `need` copies of the k-th.
  double z = 0.0, w = 0.0;
  for_each_value(x, vocab, [&](float v) {
    if (k < vocab && order_key(v) <= kth) return;
    const double d = static_cast<double>(v) - static_cast<double>(mx);
    const double e = exp(d);
    z += e;
    if (e > 0.0) w += e * d;
  });
  if (threadIdx.x == 0 && need > 0) {
    const double d = static_cast<double>(key_value(kth)) - static_cast<double>(mx);
    const double e = exp(d);
    z += static_cast<double>(need) * e;
    if (e > 0.0) w += static_cast<double>(need) * e * d;
  }
  z = block_sum(z, red_d);
  w = block_sum(w, red_d);
  if (threadIdx.x == 0) {
    const double h = log(z) - w / z;
    out[blockIdx.x] = static_cast<float>(h > 0.0 ? h : 0.0);
  }
}

}  // namespace detail

/// entropy[r] = top-k entropy (nats) of logits row r, rows of `vocab` entries `ld` apart, for
/// T = float, infokv::half or infokv::bfloat16 (also __half / __nv_bfloat16). -inf logits are
/// masked entries; a row holding NaN or +inf gets NaN (the host path rejects such rows with
/// non_finite_input). No workspace.
template <class T>
[[nodiscard]] status top_k_entropy(const T* logits, std::size_t rows, std::size_t vocab, std::size_t ld,
                                   std::size_t k, float* entropy, cudaStream_t stream) noexcept {
  if (rows == 0) return {};
  if (logits == nullptr || entropy == nullptr) return errc::null_pointer;
  if (ld < vocab) return errc::logits_size_mismatch;
  if (k == 0) return errc::invalid_config;
  if (rows > 0x7fffffffu) return errc::invalid_config;
  detail::top_k_entropy_kernel<T><<<static_cast<unsigned>(rows), detail::entropy_threads, 0, stream>>>(
      logits, ld, vocab, k, entropy);
  return launch_status();
}

}  // namespace cuda
INFOKV_END_NAMESPACE
