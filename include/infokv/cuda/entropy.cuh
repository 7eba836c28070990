// SPDX-License-Identifier: Apache-2.0
// Top-k predictive entropy over the vocabulary on the GPU: for each logits row, the entropy in
// nats of softmax restricted to the k largest logits and renormalised over them (the host oracle
// is simd::top_k_entropy(scalar_t, ...)). One block per row finds the k-th largest logit exactly
// with an MSD radix select on order-preserving keys (up to four 8-bit digits, histograms in
// shared memory), then sums the exponential moments of the values above it plus the needed copies of
// it, in double. With the paper's k = 256 a row is first cut into 8,192-value chunks whose top k
// are found in parallel with each chunk in shared memory; the selection then runs over those
// candidates only (see entropy_uses_candidates).
#pragma once

#include <cstddef>
#include <cstdint>

#include "infokv/cuda/common.cuh"
#include "infokv/cuda/radix_select.cuh"

INFOKV_BEGIN_NAMESPACE
namespace cuda {

namespace detail {

inline constexpr int entropy_threads = 1024;

/// Calls f(index, float value) for this thread's share of x[0, n): 16-byte vector loads over the
/// aligned middle of the row (8 half / bfloat16 or 4 float values per load), scalar loads at the
/// ends.
template <class T, class F>
__device__ __forceinline__ void for_each_value(const T* x, std::size_t n, F&& f) {
  constexpr std::size_t per_vector = 16 / sizeof(T);
  const auto misalign = reinterpret_cast<std::uintptr_t>(x) % 16;
  std::size_t head = misalign == 0 ? 0 : (16 - misalign) / sizeof(T);
  if (misalign % sizeof(T) != 0) head = n;  // not element aligned in 16 bytes: all scalar
  if (head > n) head = n;
  for (std::size_t i = threadIdx.x; i < head; i += blockDim.x) f(i, load_float(x + i));
  const std::size_t vectors = (n - head) / per_vector;
  const uint4* v = reinterpret_cast<const uint4*>(x + head);
#pragma unroll 4
  for (std::size_t j = threadIdx.x; j < vectors; j += blockDim.x) {
    const uint4 w = v[j];
    const T* e = reinterpret_cast<const T*>(&w);
#pragma unroll
    for (std::size_t q = 0; q < per_vector; ++q) f(head + j * per_vector + q, load_float(e + q));
  }
  for (std::size_t i = head + vectors * per_vector + threadIdx.x; i < n; i += blockDim.x) f(i, load_float(x + i));
}

/// The top-k entropy of the values `visit` hands this block's threads (visit(f) calls f(float)
/// for each value a thread owns; n values in all), written to *out by thread 0. `bad`: the row
/// holds NaN or +inf (its entropy is NaN).
template <class Visit>
__device__ void block_top_k_entropy(Visit visit, std::size_t n, std::size_t k, unsigned bad, float* out) {
  __shared__ radix_shared rsh;
  __shared__ double red_d[32];
  __shared__ unsigned red_u[32];
  unsigned top = 0;
  visit([&](float v) {
    bad |= (v != v) || (v == __int_as_float(0x7f800000));
    top = max(top, order_key(v));
  });
  top = block_max(top, red_u);
  bad = block_max(bad, red_u);
  if (bad != 0 || n == 0 || k == 0) {
    if (threadIdx.x == 0) *out = (bad != 0) ? __int_as_float(0x7fc00000) : 0.0f;
    return;
  }
  const float mx = key_value(top);
  if (mx == -__int_as_float(0x7f800000)) {  // every entry masked
    if (threadIdx.x == 0) *out = 0.0f;
    return;
  }
  std::uint32_t kth = 0;
  std::size_t need = 0;
  if (k < n) {
    const auto keys = [&](auto&& f) { visit([&](float v) { f(order_key(v)); }); };
    block_radix_select<std::uint32_t>(keys, k, rsh, kth, need);
  }
  // H = log Z - sum p (z - mx): the values above the k-th, plus `need` copies of the k-th.
  double z = 0.0, w = 0.0;
  visit([&](float v) {
    if (k < n && order_key(v) <= kth) return;
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
    *out = static_cast<float>(h > 0.0 ? h : 0.0);
  }
}

/// One block per row, reading the row from global memory (the direct path).
template <class T>
__global__ void __launch_bounds__(entropy_threads)
    top_k_entropy_kernel(const T* logits, std::size_t ld, std::size_t vocab, std::size_t k, float* out) {
  const T* x = logits + blockIdx.x * ld;
  const auto visit = [&](auto&& f) { for_each_value(x, vocab, [&](std::size_t, float v) { f(v); }); };
  block_top_k_entropy(visit, vocab, k, 0u, out + blockIdx.x);
}

// The split path for k <= entropy_chunk: the top k of a row is the top k of the union of its
// chunks' top k (as multisets), so stage 1 reduces each 8,192-value chunk to its k largest with
// the chunk in shared memory, and stage 2 takes the entropy of the few candidates per row. The
// row is read once, by (rows x chunks) blocks instead of one block per row.
inline constexpr std::size_t entropy_chunk = 8192;
inline constexpr int candidate_threads = 512;
inline constexpr std::size_t candidate_shared_floats = 11264;  // stage 2's candidates: 44 KiB of shared memory

template <class T>
__global__ void __launch_bounds__(candidate_threads)
    entropy_candidates_kernel(const T* logits, std::size_t ld, std::size_t vocab, std::size_t k, float* cand,
                              unsigned* cand_bad) {
  __shared__ std::uint32_t keys[entropy_chunk];
  __shared__ radix_shared rsh;
  __shared__ unsigned red_u[candidate_threads / 32];
  __shared__ unsigned written;
  const std::size_t row = blockIdx.y, chunk = blockIdx.x, chunks = gridDim.x;
  const std::size_t first = chunk * entropy_chunk;
  const std::size_t len = vocab - first < entropy_chunk ? vocab - first : entropy_chunk;
  const std::size_t take = k < len ? k : len;
  unsigned bad = 0;
  for_each_value(logits + row * ld + first, len, [&](std::size_t i, float v) {
    bad |= (v != v) || (v == __int_as_float(0x7f800000));
    keys[i] = order_key(v);
  });
  bad = block_max(bad, red_u);  // also orders the key stores before the reads below
  float* out = cand + (row * chunks + chunk) * k;
  if (threadIdx.x == 0) {
    cand_bad[row * chunks + chunk] = bad;
    written = 0;
  }
  std::uint32_t kth = 0;
  std::size_t need = 0;
  const bool all = take == len;
  if (!all) {
    const auto visit = [&](auto&& f) {
      for (std::size_t i = threadIdx.x; i < len; i += candidate_threads) f(keys[i]);
    };
    block_radix_select<std::uint32_t>(visit, take, rsh, kth, need);
  }
  __syncthreads();
  for (std::size_t i = threadIdx.x; i < len; i += candidate_threads)
    if (all || keys[i] > kth) out[atomicAdd(&written, 1u)] = key_value(keys[i]);
  __syncthreads();
  for (std::size_t t = threadIdx.x; t < need; t += candidate_threads) out[written + t] = key_value(kth);
}

__global__ void __launch_bounds__(entropy_threads)
    entropy_from_candidates_kernel(const float* cand, const unsigned* cand_bad, std::size_t vocab, std::size_t k,
                                   float* entropy) {
  __shared__ float values[candidate_shared_floats];
  const std::size_t row = blockIdx.x, chunks = (vocab + entropy_chunk - 1) / entropy_chunk;
  // Chunk c contributed min(k, its length) values; all but the last are whole.
  const std::size_t last_len = vocab - (chunks - 1) * entropy_chunk;
  const std::size_t n = (chunks - 1) * k + (k < last_len ? k : last_len);
  unsigned bad = 0;
  for (std::size_t c = threadIdx.x; c < chunks; c += entropy_threads) bad |= cand_bad[row * chunks + c];
  for (std::size_t i = threadIdx.x; i < n; i += entropy_threads) {
    const std::size_t c = i / k, j = i % k;
    values[i] = cand[(row * chunks + c) * k + j];
  }
  __syncthreads();
  const auto visit = [&](auto&& f) {
    for (std::size_t i = threadIdx.x; i < n; i += entropy_threads) f(values[i]);
  };
  block_top_k_entropy(visit, n, k, bad, entropy + row);
}

/// True when the split path runs (small k, candidates fit stage 2's shared memory).
[[nodiscard]] constexpr bool entropy_uses_candidates(std::size_t vocab, std::size_t k) noexcept {
  const std::size_t chunks = (vocab + entropy_chunk - 1) / entropy_chunk;
  return k < vocab && k <= entropy_chunk && chunks * k <= candidate_shared_floats;
}

}  // namespace detail

/// Workspace bytes top_k_entropy needs (0 when it reads rows directly: k >= vocab or large k).
[[nodiscard]] constexpr std::size_t top_k_entropy_workspace_bytes(std::size_t rows, std::size_t vocab,
                                                                  std::size_t k) noexcept {
  if (!detail::entropy_uses_candidates(vocab, k)) return 0;
  const std::size_t chunks = (vocab + detail::entropy_chunk - 1) / detail::entropy_chunk;
  return aligned_bytes(rows * chunks * k * sizeof(float)) + aligned_bytes(rows * chunks * sizeof(unsigned));
}

/// entropy[r] = top-k entropy (nats) of logits row r, rows of `vocab` entries `ld` apart, for
/// T = float, infokv::half or infokv::bfloat16 (also __half / __nv_bfloat16). -inf logits are
/// masked entries; a row holding NaN or +inf gets NaN (the host path rejects such rows with
/// non_finite_input). When the candidates fit (k <= 8,192 and chunks x k <= 11,264: the paper's
/// k = 256 up to a 360K vocabulary) the rows are split into chunks reduced in parallel, which
/// needs top_k_entropy_workspace_bytes(rows, vocab, k) of workspace (0 otherwise).
template <class T>
[[nodiscard]] status top_k_entropy(const T* logits, std::size_t rows, std::size_t vocab, std::size_t ld,
                                   std::size_t k, float* entropy, workspace ws, cudaStream_t stream) noexcept {
  if (rows == 0) return {};
  if (logits == nullptr || entropy == nullptr) return errc::null_pointer;
  if (ld < vocab) return errc::logits_size_mismatch;
  if (k == 0) return errc::invalid_config;
  if (rows > 65535) return errc::invalid_config;
  if (!detail::entropy_uses_candidates(vocab, k)) {
    detail::top_k_entropy_kernel<T><<<static_cast<unsigned>(rows), detail::entropy_threads, 0, stream>>>(
        logits, ld, vocab, k, entropy);
    return launch_status();
  }
  if (ws.bytes < top_k_entropy_workspace_bytes(rows, vocab, k) || ws.data == nullptr) return errc::workspace_too_small;
  const std::size_t chunks = (vocab + detail::entropy_chunk - 1) / detail::entropy_chunk;
  float* cand = static_cast<float*>(ws.data);
  auto* bad = reinterpret_cast<unsigned*>(static_cast<char*>(ws.data) + aligned_bytes(rows * chunks * k * sizeof(float)));
  const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>(rows));
  detail::entropy_candidates_kernel<T><<<grid, detail::candidate_threads, 0, stream>>>(logits, ld, vocab, k, cand, bad);
  const dim3 grid2(static_cast<unsigned>(rows), 1);
  detail::entropy_from_candidates_kernel<<<grid2, detail::entropy_threads, 0, stream>>>(cand, bad, vocab, k, entropy);
  return launch_status();
}

}  // namespace cuda
INFOKV_END_NAMESPACE
