// SPDX-License-Identifier: Apache-2.0
// Layer-wise representation evolution on the GPU: D_j^l = 1 - cos(h_j^l, h_j^{L-1}) for every
// layer l and token j of a step's hidden states (0 at the last layer), clamped to [0, 2], with a
// zero vector at distance 1 (the host oracle is simd::cosine_distance(scalar_t, ...) as the
// compressor's observe() applies it). One block per (token, layer) accumulates the three dot
// products in double, so the result matches the host's to float rounding whatever the hidden
// size, and a single decode token still spreads over as many blocks as there are layers.
#pragma once

#include <cstddef>

#include "infokv/cuda/common.cuh"

INFOKV_BEGIN_NAMESPACE
namespace cuda {

namespace detail {

inline constexpr int evolution_threads = 128;

/// One block per (token, layer): the three dot products over the hidden size in double.
template <class T>
__global__ void __launch_bounds__(evolution_threads)
    layer_evolution_kernel(const T* hidden, std::size_t layers, std::size_t tokens, std::size_t dim,
                           float* out, std::size_t ld_out) {
  __shared__ double red[evolution_threads / 32];
  const std::size_t j = blockIdx.x, l = blockIdx.y;
  if (l == layers - 1) {
    if (threadIdx.x == 0) out[l * ld_out + j] = 0.0f;
    return;
  }
  const T* cur = hidden + (l * tokens + j) * dim;
  const T* last = hidden + ((layers - 1) * tokens + j) * dim;
  double ab = 0.0, aa = 0.0, bb = 0.0;
  for (std::size_t d = threadIdx.x; d < dim; d += evolution_threads) {
    const double a = load_float(cur + d), b = load_float(last + d);
    ab = fma(a, b, ab);
    aa = fma(a, a, aa);
    bb = fma(b, b, bb);
  }
  ab = block_sum(ab, red);
  aa = block_sum(aa, red);
  bb = block_sum(bb, red);
  if (threadIdx.x == 0) {
    float r = 1.0f;
    if (aa != 0.0 && bb != 0.0) {
      const double c = 1.0 - ab / (sqrt(aa) * sqrt(bb));
      r = static_cast<float>(c < 0.0 ? 0.0 : (c > 2.0 ? 2.0 : c));
    }
    out[l * ld_out + j] = r;
  }
}

}  // namespace detail

/// out[l * ld_out + j] = D_j^l for hidden states [layers][tokens][dim] (signals::hidden_states'
/// layout), T = float, infokv::half or infokv::bfloat16. Non-finite hidden states give NaN
/// distances (the host path rejects them with non_finite_input). No workspace.
template <class T>
[[nodiscard]] status layer_evolution(const T* hidden, std::size_t layers, std::size_t tokens, std::size_t dim,
                                     float* out, std::size_t ld_out, cudaStream_t stream) noexcept {
  if (tokens == 0 || layers == 0) return {};
  if (hidden == nullptr || out == nullptr) return errc::null_pointer;
  if (dim == 0 || ld_out < tokens) return errc::shape_mismatch;
  if (tokens > 0x7fffffffu || layers > 65535) return errc::invalid_config;
  const dim3 grid(static_cast<unsigned>(tokens), static_cast<unsigned>(layers));
  detail::layer_evolution_kernel<T><<<grid, detail::evolution_threads, 0, stream>>>(hidden, layers, tokens, dim,
                                                                                    out, ld_out);
  return launch_status();
}

}  // namespace cuda
INFOKV_END_NAMESPACE
