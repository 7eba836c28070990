// SPDX-License-Identifier: Apache-2.0
// Window attention scoring on the GPU: for a batch of streams of one layer, the attention that
// the last W queries pay to every cached key, softmax per (query, query head) over the stream's
// keys with keys newer than the query masked, averaged over the window and the GQA group (the
// SnapKV / TOVA / InfoKV attention part; the host oracle is
// detail::window_attention_mean_reference with mean_of_probabilities over all keys).
//
// The T x M logit matrix (M = W x group) is never stored. Pass 1 computes 128 x 64 logit tiles
// (keys x query rows, an 8 x 8 block per thread, FP32 FMA)
// and keeps per (key tile, query row) the maximum and the sum of exponentials; pass 2 folds them
// into one maximum and one normaliser per query row; pass 3 recomputes the tiles and sums the
// normalised probabilities of each key over the rows. Twice the FLOPs of one GEMM in exchange
// for a workspace of O(tiles x M) floats instead of O(T x M).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "infokv/cuda/common.cuh"
#include "infokv/view/paged_kv_cache_view.hpp"

INFOKV_BEGIN_NAMESPACE
namespace cuda {

/// One launch: `batch` streams of layer `layer`, each with its own query window.
struct window_attention_args {
  const std::int32_t* streams = nullptr;          // [batch] stream index of each entry (device)
  std::size_t batch = 0;
  std::size_t layer = 0;                          // the layer whose pools are read
  const float* queries = nullptr;                 // [batch][window][num_q_heads][head_dim], post-RoPE
  const std::int32_t* query_positions = nullptr;  // [batch][window]
  std::size_t window = 0;                         // W queries per entry, all used
  std::size_t num_q_heads = 0;                    // a multiple of the view's num_kv_heads
  std::size_t max_tokens = 0;                     // >= every stream's length; row stride of scores
  float* scores = nullptr;                        // [batch][heads_per_page][max_tokens]
};

namespace detail {

inline constexpr int wa_keys = 128;   // keys per tile
inline constexpr int wa_rows = 64;    // query rows per tile
inline constexpr int wa_dims = 32;    // head_dim slice staged in shared memory
inline constexpr int wa_threads = 128;

[[nodiscard]] INFOKV_HOST_DEVICE constexpr std::size_t wa_tiles(std::size_t max_tokens) noexcept {
  return (max_tokens + wa_keys - 1) / wa_keys;
}

/// Thread (tx, ty) computes an 8 x 8 block: query rows tx*8.. and keys ty*8... A warp covers
/// 8 x 4 of them, so each shared-memory vector load reads 8 distinct query or 4 distinct key
/// vectors (the rest broadcast), and 64 FMAs are paid for with four 16-byte loads.
__device__ __forceinline__ int wa_tx(int tid) { return tid % 8; }
__device__ __forceinline__ int wa_ty(int tid) { return (tid / 32) * 4 + (tid % 32) / 8; }

/// Shared state of one block: the staged key and query slices (dimension-major, so the compute
/// loop reads contiguous vectors) and a reduction area.
struct wa_shared {
  alignas(16) float k[wa_dims][wa_keys + 4];
  alignas(16) float q[wa_dims][wa_rows + 4];
  float red[16 * wa_rows];  // [16 ty][64 rows] in pass 1, [8 tx][128 keys] in pass 3
  float row_a[wa_rows];     // pass 1: tile maximum; pass 3: global maximum
  float row_b[wa_rows];     // pass 3: normalising factor
  std::int32_t key_pos[wa_keys];
  std::int32_t query_pos[wa_rows];
};

/// out[e] = float(p[e]) for e < valid (0 beyond): 16-byte loads when p is aligned and the slice
/// is whole, element loads otherwise.
template <class T, int N>
__device__ __forceinline__ void wa_load_slice(const T* p, int valid, float (&out)[N]) {
  if (p != nullptr && valid == N && reinterpret_cast<std::uintptr_t>(p) % 16 == 0) {
    constexpr int per_vector = 16 / static_cast<int>(sizeof(T));
#pragma unroll
    for (int v = 0; v < N / per_vector; ++v) {
      const uint4 w = reinterpret_cast<const uint4*>(p)[v];
      const T* e = reinterpret_cast<const T*>(&w);
#pragma unroll
      for (int q = 0; q < per_vector; ++q) out[v * per_vector + q] = load_float(e + q);
    }
  } else {
#pragma unroll
    for (int e = 0; e < N; ++e) out[e] = (p != nullptr && e < valid) ? load_float(p + e) : 0.0f;
  }
}

/// The 8 x 8 logits (keys ty*8+i, rows tx*8+j) of the tile (key0, row0); masked entries are -inf.
template <class View>
__device__ void wa_tile_logits(const View& view, const window_attention_args& a, wa_shared& sh,
                               std::size_t b, std::size_t s, std::size_t h, std::size_t T,
                               std::size_t M, std::size_t G, std::size_t key0, std::size_t row0,
                               float (&acc)[8][8]) {
  const int tid = static_cast<int>(threadIdx.x);
  const int tx = wa_tx(tid), ty = wa_ty(tid);
  const std::size_t D = view.head_dim();
  const auto sv = view.stream(s, a.layer);
  const float scale = rsqrtf(static_cast<float>(D));
  // Thread tid stages all 32 dims of key key0 + tid, and 16 dims of query row row0 + tid / 2.
  const std::size_t key = key0 + static_cast<std::size_t>(tid);
  const typename View::element_type* krow = key < T ? sv.key(key, h) : nullptr;
  const std::size_t row = row0 + static_cast<std::size_t>(tid / 2);
  const int qhalf = (tid % 2) * 16;
  const float* qrow = nullptr;
  if (row < M) {
    const std::size_t t = row / G, g = row % G;
    const std::size_t qh = (view.stream_head(s) + h) * G + g;
    qrow = a.queries + ((b * a.window + t) * a.num_q_heads + qh) * D;
  }
  {
    std::int32_t p = static_cast<std::int32_t>(key);
    if (key < T) {
      const std::int32_t* pos = view.domain_positions(view.stream_domain(s));
      if (pos != nullptr) {
        const std::size_t ps = view.page_size();
        p = pos[view.stream_page(s, key / ps) * ps + key % ps];
      }
    }
    sh.key_pos[tid] = p;
    if (tid % 2 == 0) sh.query_pos[tid / 2] = row < M ? a.query_positions[b * a.window + row / G] : -1;
  }
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;
  for (std::size_t d0 = 0; d0 < D; d0 += wa_dims) {
    float kv[wa_dims];
    float qv[16];
    const int kvalid = static_cast<int>(D - d0 < wa_dims ? D - d0 : wa_dims);
    const int qvalid = static_cast<int>(D - d0 > static_cast<std::size_t>(qhalf)
                                            ? (D - d0 - static_cast<std::size_t>(qhalf) < 16 ? D - d0 - static_cast<std::size_t>(qhalf) : 16)
                                            : 0);
    wa_load_slice(krow == nullptr ? krow : krow + d0, kvalid, kv);
    wa_load_slice(qrow == nullptr ? qrow : qrow + d0 + static_cast<std::size_t>(qhalf), qvalid, qv);
    __syncthreads();  // the previous slice is no longer read
#pragma unroll
    for (int e = 0; e < wa_dims; ++e) sh.k[e][tid] = kv[e];
#pragma unroll
    for (int e = 0; e < 16; ++e) sh.q[qhalf + e][tid / 2] = qv[e] * scale;
    __syncthreads();
#pragma unroll 4
    for (int d = 0; d < wa_dims; ++d) {
      const float4 k0 = *reinterpret_cast<const float4*>(&sh.k[d][ty * 8]);
      const float4 k1 = *reinterpret_cast<const float4*>(&sh.k[d][ty * 8 + 4]);
      const float4 q0 = *reinterpret_cast<const float4*>(&sh.q[d][tx * 8]);
      const float4 q1 = *reinterpret_cast<const float4*>(&sh.q[d][tx * 8 + 4]);
      const float kk[8] = {k0.x, k0.y, k0.z, k0.w, k1.x, k1.y, k1.z, k1.w};
      const float qq[8] = {q0.x, q0.y, q0.z, q0.w, q1.x, q1.y, q1.z, q1.w};
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(kk[i], qq[j], acc[i][j]);
    }
  }
  const float ninf = -__int_as_float(0x7f800000);
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const std::size_t k = key0 + static_cast<std::size_t>(ty * 8 + i);
      const std::size_t r = row0 + static_cast<std::size_t>(tx * 8 + j);
      if (k >= T || r >= M || sh.key_pos[ty * 8 + i] > sh.query_pos[tx * 8 + j]) acc[i][j] = ninf;
    }
}

/// Pass 1: per (key tile, query row) the tile maximum and sum of exp(logit - maximum).
template <class View>
__global__ void __launch_bounds__(wa_threads)
    wa_tile_stats(View view, window_attention_args a, std::size_t G, float* tile_max, float* tile_sum) {
  __shared__ wa_shared sh;
  const std::size_t b = blockIdx.z, h = blockIdx.y, tile = blockIdx.x;
  const std::size_t s = static_cast<std::size_t>(a.streams[b]);
  const std::size_t T = view.stream_length(s);
  const std::size_t key0 = tile * wa_keys;
  if (key0 >= T) return;
  const std::size_t M = a.window * G, H = view.heads_per_page(), tiles = wa_tiles(a.max_tokens);
  const int tid = static_cast<int>(threadIdx.x), tx = wa_tx(tid), ty = wa_ty(tid);
  const float ninf = -__int_as_float(0x7f800000);
  for (std::size_t row0 = 0; row0 < M; row0 += wa_rows) {
    float acc[8][8];
    wa_tile_logits(view, a, sh, b, s, h, T, M, G, key0, row0, acc);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      float m = acc[0][j];
#pragma unroll
      for (int i = 1; i < 8; ++i) m = fmaxf(m, acc[i][j]);
      sh.red[ty * wa_rows + tx * 8 + j] = m;
    }
    __syncthreads();
    if (tid < wa_rows) {
      float m = ninf;
      for (int y = 0; y < 16; ++y) m = fmaxf(m, sh.red[y * wa_rows + tid]);
      sh.row_a[tid] = m;
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float m = sh.row_a[tx * 8 + j];
      float z = 0.0f;
#pragma unroll
      for (int i = 0; i < 8; ++i) z += (acc[i][j] == ninf) ? 0.0f : expf(acc[i][j] - m);
      sh.red[ty * wa_rows + tx * 8 + j] = z;
    }
    __syncthreads();
    if (tid < wa_rows && row0 + static_cast<std::size_t>(tid) < M) {
      float z = 0.0f;
      for (int y = 0; y < 16; ++y) z += sh.red[y * wa_rows + tid];
      const std::size_t o = ((b * H + h) * tiles + tile) * M + row0 + static_cast<std::size_t>(tid);
      tile_max[o] = sh.row_a[tid];
      tile_sum[o] = z;
    }
  }
}

/// Pass 2: per query row the global maximum and 1 / (normaliser x M) (0 for a fully masked row).
template <class View>
__global__ void wa_row_stats(View view, window_attention_args a, std::size_t G, const float* tile_max,
                             const float* tile_sum, float* row_max, float* row_factor) {
  const std::size_t H = view.heads_per_page(), M = a.window * G, tiles = wa_tiles(a.max_tokens);
  const std::size_t bh = blockIdx.y;
  const std::size_t r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= M) return;
  const std::size_t s = static_cast<std::size_t>(a.streams[bh / H]);
  const std::size_t used = wa_tiles(view.stream_length(s));
  const float ninf = -__int_as_float(0x7f800000);
  float gm = ninf;
  for (std::size_t t = 0; t < used; ++t) gm = fmaxf(gm, tile_max[(bh * tiles + t) * M + r]);
  double z = 0.0;
  if (gm != ninf)
    for (std::size_t t = 0; t < used; ++t) {
      const float m = tile_max[(bh * tiles + t) * M + r];
      if (m != ninf) z += static_cast<double>(tile_sum[(bh * tiles + t) * M + r]) * exp(static_cast<double>(m - gm));
    }
  row_max[bh * M + r] = gm;
  row_factor[bh * M + r] = (gm == ninf || z <= 0.0) ? 0.0f : static_cast<float>(1.0 / (z * static_cast<double>(M)));
}

/// Pass 3: score of each key = sum over rows of exp(logit - row max) x row factor.
template <class View>
__global__ void __launch_bounds__(wa_threads)
    wa_scores(View view, window_attention_args a, std::size_t G, const float* row_max, const float* row_factor) {
  __shared__ wa_shared sh;
  const std::size_t b = blockIdx.z, h = blockIdx.y, tile = blockIdx.x;
  const std::size_t s = static_cast<std::size_t>(a.streams[b]);
  const std::size_t T = view.stream_length(s);
  const std::size_t key0 = tile * wa_keys;
  const std::size_t M = a.window * G, H = view.heads_per_page();
  const int tid = static_cast<int>(threadIdx.x), tx = wa_tx(tid), ty = wa_ty(tid);
  const float ninf = -__int_as_float(0x7f800000);
  float* out = a.scores + (b * H + h) * a.max_tokens;
  const std::size_t k = key0 + static_cast<std::size_t>(tid);
  if (key0 >= T) {  // past the stream's end: -inf, never a token
    if (k < a.max_tokens) out[k] = ninf;
    return;
  }
  float part[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  for (std::size_t row0 = 0; row0 < M; row0 += wa_rows) {
    float acc[8][8];
    wa_tile_logits(view, a, sh, b, s, h, T, M, G, key0, row0, acc);
    if (tid < wa_rows) {
      const std::size_t r = row0 + static_cast<std::size_t>(tid);
      sh.row_a[tid] = r < M ? row_max[(b * H + h) * M + r] : ninf;
      sh.row_b[tid] = r < M ? row_factor[(b * H + h) * M + r] : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float m = sh.row_a[tx * 8 + j], f = sh.row_b[tx * 8 + j];
#pragma unroll
      for (int i = 0; i < 8; ++i)
        if (acc[i][j] != ninf && f != 0.0f) part[i] += expf(acc[i][j] - m) * f;
    }
  }
  __syncthreads();
#pragma unroll
  for (int i = 0; i < 8; ++i) sh.red[tx * wa_keys + ty * 8 + i] = part[i];
  __syncthreads();
  float sum = 0.0f;
  for (int x = 0; x < 8; ++x) sum += sh.red[x * wa_keys + tid];
  if (k < a.max_tokens) out[k] = k < T ? sum : ninf;
}

}  // namespace detail

/// Workspace bytes window_attention needs for this view and these arguments.
template <class View>
[[nodiscard]] std::size_t window_attention_workspace_bytes(const View& view, const window_attention_args& a) noexcept {
  if (view.num_kv_heads() == 0) return 0;
  const std::size_t G = a.num_q_heads / view.num_kv_heads();
  const std::size_t bh = a.batch * view.heads_per_page(), M = a.window * G;
  return 2 * aligned_bytes(bh * detail::wa_tiles(a.max_tokens) * M * sizeof(float)) +
         2 * aligned_bytes(bh * M * sizeof(float));
}

/// Scores every key of `a.batch` streams of layer `a.layer` (device view: pools, pool pointer
/// arrays, page table and positions in device memory). Key positions come from the view's
/// positions, or are the slot index when it has none. Slots at or past a stream's length score
/// -inf up to max_tokens. Enqueued on `stream`; no synchronisation, no allocation.
template <class View>
[[nodiscard]] status window_attention(const View& view, const window_attention_args& a, workspace ws,
                                      cudaStream_t stream) noexcept {
  if (a.batch == 0 || a.max_tokens == 0) return {};
  if (a.streams == nullptr || a.queries == nullptr || a.query_positions == nullptr || a.scores == nullptr)
    return errc::null_pointer;
  if (a.window == 0) return errc::missing_signal;
  if (view.num_kv_heads() == 0 || a.num_q_heads % view.num_kv_heads() != 0 || view.head_dim() == 0 ||
      a.layer >= view.num_layers())
    return errc::shape_mismatch;
  if (view.page_size() == 0) return errc::invalid_page_size;
  if (ws.bytes < window_attention_workspace_bytes(view, a) || (ws.data == nullptr && ws.bytes != 0))
    return errc::workspace_too_small;
  if (a.batch > 65535 || view.heads_per_page() > 65535) return errc::invalid_config;
  const std::size_t G = a.num_q_heads / view.num_kv_heads();
  const std::size_t H = view.heads_per_page(), M = a.window * G, tiles = detail::wa_tiles(a.max_tokens);
  char* p = static_cast<char*>(ws.data);
  float* tile_max = reinterpret_cast<float*>(p);
  p += aligned_bytes(a.batch * H * tiles * M * sizeof(float));
  float* tile_sum = reinterpret_cast<float*>(p);
  p += aligned_bytes(a.batch * H * tiles * M * sizeof(float));
  float* row_max = reinterpret_cast<float*>(p);
  p += aligned_bytes(a.batch * H * M * sizeof(float));
  float* row_factor = reinterpret_cast<float*>(p);
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(H), static_cast<unsigned>(a.batch));
  detail::wa_tile_stats<<<grid, detail::wa_threads, 0, stream>>>(view, a, G, tile_max, tile_sum);
  const dim3 grid2(static_cast<unsigned>((M + 127) / 128), static_cast<unsigned>(a.batch * H));
  detail::wa_row_stats<<<grid2, 128, 0, stream>>>(view, a, G, tile_max, tile_sum, row_max, row_factor);
  detail::wa_scores<<<grid, detail::wa_threads, 0, stream>>>(view, a, G, row_max, row_factor);
  return launch_status();
}

}  // namespace cuda
INFOKV_END_NAMESPACE
