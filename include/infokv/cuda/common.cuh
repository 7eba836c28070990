// SPDX-License-Identifier: Apache-2.0
// What every CUDA kernel of the library shares: the nvcc-only guard, the translation of CUDA
// errors into status, exact loads of the KV element types as float, the caller-owned workspace
// and small block-level reductions. The CUDA headers are an optional layer over the CPU ones: a
// CPU engine never includes them, and nothing in include/infokv/*.hpp includes CUDA headers.
//
// Rules every launcher in include/infokv/cuda follows:
//  * it enqueues work on the caller's cudaStream_t and returns; it never synchronises, never
//    allocates, and never throws;
//  * memory it needs beyond its inputs and outputs comes from a caller-owned workspace whose size
//    the matching *_workspace_bytes() function gives (the CUTLASS protocol);
//  * it returns a status: invalid arguments that the host can see (null pointers, zero sizes,
//    a workspace that is too small) before anything is enqueued, errc::cuda_error with the
//    cudaError_t as detail when a launch fails. Faults inside a kernel surface, as in any CUDA
//    code, at the caller's next synchronisation.
#pragma once

#if !defined(__CUDACC__)
#error "infokv/cuda/*.cuh needs nvcc (a CUDA translation unit); CPU code includes infokv/infokv.hpp"
#endif

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "infokv/config.hpp"
#include "infokv/element_types.hpp"
#include "infokv/status.hpp"

INFOKV_BEGIN_NAMESPACE
namespace cuda {

/// A caller-owned device buffer the launchers carve their scratch from.
struct workspace {
  void* data = nullptr;
  std::size_t bytes = 0;
};

/// The status of a CUDA runtime result: ok, or cuda_error carrying the cudaError_t.
[[nodiscard]] inline status to_status(cudaError_t e) noexcept {
  return e == cudaSuccess ? status{} : status{errc::cuda_error, static_cast<std::int32_t>(e)};
}
/// The status of the launches just enqueued (configuration errors are reported at once).
[[nodiscard]] inline status launch_status() noexcept { return to_status(cudaGetLastError()); }

/// Bytes rounded up so every part carved from a workspace stays 256-byte aligned.
[[nodiscard]] constexpr std::size_t aligned_bytes(std::size_t bytes) noexcept {
  return (bytes + 255) / 256 * 256;
}

/// Exact conversion of a stored element to float (the same values as to_float on the host).
__device__ __forceinline__ float load_float(const float* p) noexcept { return *p; }
__device__ __forceinline__ float load_float(const half* p) noexcept {
  return __half2float(__ushort_as_half(p->bits));
}
__device__ __forceinline__ float load_float(const bfloat16* p) noexcept {
  return __uint_as_float(static_cast<unsigned>(p->bits) << 16);
}
__device__ __forceinline__ float load_float(const __half* p) noexcept { return __half2float(*p); }
__device__ __forceinline__ float load_float(const __nv_bfloat16* p) noexcept {
  return __bfloat162float(*p);
}

/// An unsigned key that orders like the float, NaN treated as -inf (as detail::score_key on the
/// host): larger key == larger value.
__device__ __forceinline__ std::uint32_t order_key(float s) noexcept {
  if (s != s) s = -__int_as_float(0x7f800000);
  const std::uint32_t u = __float_as_uint(s);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
/// The float an order_key came from.
__device__ __forceinline__ float key_value(std::uint32_t k) noexcept {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

/// Sum over the block of one value per thread; every thread gets the result. `shared` holds one
/// T per warp; blockDim.x is a multiple of 32.
template <class T>
__device__ T block_sum(T v, T* shared) noexcept {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  __syncthreads();  // `shared` may still be read by a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  T total = 0;
  for (unsigned w = 0; w < warps; ++w) total += shared[w];
  return total;
}

template <class T>
__device__ T block_max(T v, T* shared) noexcept {
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  T m = shared[0];
  for (unsigned w = 1; w < warps; ++w) m = max(m, shared[w]);
  return m;
}

}  // namespace cuda
INFOKV_END_NAMESPACE
