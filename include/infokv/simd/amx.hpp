// SPDX-License-Identifier: Apache-2.0
// AMX-BF16 kernels: overloads on amx_t compiled with [[gnu::target]], so they exist in every
// x86-64 binary and run where cpu_supports(amx_t) says so and the OS grants the tile state
// (prepare(amx_t)). Only the window-logit product is specialised; every other kernel is
// avx512_t's, which amx_t derives from.
//
// Precision. A bf16 x bf16 product is exact in FP32 and the tiles accumulate in FP32, so the
// error comes only from how each operand is split into bf16 parts, each part the bf16 rounding
// (to nearest even) of what the earlier parts left: a bf16 key is exact in one part, an f16 key
// in two (11 significant bits), a float in three. The product of parts (i, j) is summed when
// i + j <= window_split_order (default 1: hi.hi, hi.lo, lo.hi), and only the parts that order
// uses are made. The dropped terms are at most about 2^-17 of |q_d k_d| each, against about 2^-9
// for one bf16 pass; tests/simd/amx_test.cpp holds every logit within 2^-14 of sum |q_d k_d|.
#pragma once

#if defined(__x86_64__)

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "infokv/config.hpp"
#include "infokv/element_types.hpp"
#include "infokv/simd/avx512.hpp"
#include "infokv/simd/isa.hpp"
#include "infokv/simd/window_product.hpp"

// GCC < 13 warns about uninitialised vectors inside its own AVX-512 cast intrinsics (PR105593).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define INFOKV_AMX gnu::target("avx512f,avx512bw,avx512dq,avx512vl,fma,f16c,amx-tile,amx-bf16")

INFOKV_BEGIN_NAMESPACE
namespace simd {
namespace amx_detail {

/// Linux enables the AMX tile data state per process on request (ARCH_REQ_XCOMP_PERM for
/// XFEATURE_XTILEDATA); a tile instruction before that faults. Asked once per process (a
/// function-local static is initialised once even when threads race), the answer kept.
[[nodiscard]] inline bool request_tiles_from_os() noexcept {
#if defined(__linux__) && defined(SYS_arch_prctl)
  constexpr long kReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  static const bool granted = syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
  return granted;
#else
  return false;
#endif
}

/// Where prepare(amx_t) gets its answer: the OS by default. Tests replace it to see what the
/// library does when the OS refuses (a status, no fault, nothing changed).
using tile_permission_fn = bool (*)() noexcept;
[[nodiscard]] inline std::atomic<tile_permission_fn>& tile_permission_source() noexcept {
  static std::atomic<tile_permission_fn> source{&request_tiles_from_os};
  return source;
}

}  // namespace amx_detail

[[nodiscard]] inline bool prepare(amx_t) noexcept {
  return amx_detail::tile_permission_source().load(std::memory_order_acquire)();
}

/// Products of bf16 parts summed by the window-logit product: (i, j) with i + j <= order. Order 0
/// is one bf16 pass; 1, the default, adds hi.lo and lo.hi; 2 the next terms (about FP32).
inline constexpr std::size_t window_split_order = 1;

/// The bf16 parts an operand of element type T needs to be exact (float queries: 3), capped at
/// what the order uses.
template <class T, std::size_t Order>
inline constexpr std::size_t split_parts =
    std::min<std::size_t>(Order + 1, std::is_same_v<T, bfloat16> ? 1 : std::is_same_v<T, half> ? 2 : 3);

namespace amx_detail {

/// Palette 1, all eight tiles 16 rows x 64 bytes: 0-3 accumulate (16 keys x 16 query rows, FP32),
/// 4-5 hold keys (16 keys x 32 dims, bf16), 6-7 queries (16 dim pairs x 16 rows x 2, bf16).
struct alignas(64) tile_config {
  std::uint8_t palette = 1;
  std::uint8_t start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t colsb[16] = {};
  std::uint8_t rows[16] = {};
};
static_assert(sizeof(tile_config) == 64);

/// The bf16 nearest to x (ties to even), as bits; x - bf16(x) is exact in FP32.
[[nodiscard]] inline std::uint16_t bf16_nearest(float x) noexcept {
  std::uint32_t b = 0;
  std::memcpy(&b, &x, 4);
  b += 0x7fffu + ((b >> 16) & 1u);
  return static_cast<std::uint16_t>(b >> 16);
}
[[nodiscard]] inline float bf16_value(std::uint16_t h) noexcept {
  const std::uint32_t b = static_cast<std::uint32_t>(h) << 16;
  float x = 0.0f;
  std::memcpy(&x, &b, 4);
  return x;
}

[[INFOKV_AMX]] inline __m256i bf16_nearest16(__m512 x) noexcept {
  __m512i b = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
  b = _mm512_add_epi32(b, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
  return _mm512_cvtepi32_epi16(_mm512_srli_epi32(b, 16));
}
[[INFOKV_AMX]] inline __m512 bf16_value16(__m256i h) noexcept {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/// Keys [0, n) (n <= 32) as `parts` bf16 planes [part][32][Dp]; rows n..31 and dims D..Dp are 0.
template <std::size_t Parts, class T, class KeyFn>
[[INFOKV_AMX]] inline void split_keys(KeyFn key, std::size_t n, std::size_t D, std::size_t Dp,
                                      std::uint16_t* planes) noexcept {
  const std::size_t plane = tile_key_block * Dp;
  for (std::size_t j = 0; j < tile_key_block; ++j) {
    const T* src = j < n ? key(j) : nullptr;
    for (std::size_t d = 0; d < Dp; d += 16) {
      const std::size_t count = src == nullptr || d >= D ? 0 : std::min<std::size_t>(16, D - d);
      __m512 rest = count == 0 ? _mm512_setzero_ps() : avx512_detail::load16(src + d, count);
      for (std::size_t p = 0; p < Parts; ++p) {
        const __m256i h = bf16_nearest16(rest);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(planes + p * plane + j * Dp + d), h);
        if (p + 1 < Parts) rest = _mm512_sub_ps(rest, bf16_value16(h));
      }
    }
  }
}

/// Tiles 4-5 = keys a (32 rows of 32 dims); tiles 6-7 = two 16-row query groups b0, b1; then
/// C tiles 0-3 += their products. A key part is loaded once for every query part it meets.
[[INFOKV_AMX]] inline void load_keys(const std::uint16_t* a, std::size_t a_stride) noexcept {
  _tile_loadd(4, a, a_stride);
  _tile_loadd(5, a + 16 * (a_stride / 2), a_stride);
}
[[INFOKV_AMX]] inline void multiply_queries(const std::uint16_t* b0, const std::uint16_t* b1) noexcept {
  _tile_loadd(6, b0, 64);
  _tile_loadd(7, b1, 64);
  _tile_dpbf16ps(0, 4, 6);
  _tile_dpbf16ps(1, 4, 7);
  _tile_dpbf16ps(2, 5, 6);
  _tile_dpbf16ps(3, 5, 7);
}

}  // namespace amx_detail

/// Packs the M query rows row(u) (D floats each, multiplied by `scale`) for window_logits:
/// parts x [Mp / 16 row groups][Dp / 32 depth steps][16 dim pairs][16 rows][2] bf16, zero padded.
/// The first argument picks the product (amx_t and the tags derived from it).
template <std::size_t Order = window_split_order, class Isa, class RowFn>
[[INFOKV_AMX]] inline void pack_window_queries(amx_t, Isa, RowFn row, std::size_t M, std::size_t D, float scale,
                                               float* packed, std::size_t Mp) noexcept {
  constexpr std::size_t kParts = split_parts<float, Order>;
  const std::size_t Dp = tile_padded_dim(D);
  const std::size_t plane = Mp * Dp;
  auto* out = reinterpret_cast<std::uint16_t*>(packed);
  std::memset(out, 0, kParts * plane * sizeof(std::uint16_t));
  for (std::size_t u = 0; u < M; ++u) {
    const float* q = row(u);
    const std::size_t g = u / 16, n = u % 16;
    for (std::size_t d = 0; d < D; ++d) {
      const std::size_t s = d / 32, pair = (d % 32) / 2;
      const std::size_t at = ((g * (Dp / 32) + s) * 16 + pair) * 32 + n * 2 + d % 2;
      float rest = q[d] * scale;
      for (std::size_t p = 0; p < kParts; ++p) {
        const std::uint16_t h = amx_detail::bf16_nearest(rest);
        out[p * plane + at] = h;
        rest -= amx_detail::bf16_value(h);
      }
    }
  }
}

/// e[i * Mp + r] = key(i) . query row r for keys [0, n) and every one of the Mp packed rows
/// (Mp a multiple of 32), on AMX tiles; writes rows [0, n) of e only. `work` holds
/// tile_key_block_floats(D) floats. The caller has had prepare(amx_t) return true.
template <std::size_t Order = window_split_order, class Isa, class KeyFn>
[[INFOKV_AMX]] inline void window_logits(amx_t, Isa, KeyFn key, std::size_t n, std::size_t D, const float* packed,
                                         std::size_t Mp, float* work, float* e) noexcept {
  using T = std::remove_cv_t<std::remove_pointer_t<decltype(key(std::size_t{0}))>>;
  constexpr std::size_t kKeyParts = split_parts<T, Order>;
  constexpr std::size_t kQueryParts = split_parts<float, Order>;
  const std::size_t Dp = tile_padded_dim(D), steps = Dp / 32;
  const std::size_t key_plane = tile_key_block * Dp, query_plane = Mp * Dp;
  auto* keys = reinterpret_cast<std::uint16_t*>(work);
  float* spill = work + tile_key_block_floats(D) - 256;  // one 16 x 16 tile
  const auto* queries = reinterpret_cast<const std::uint16_t*>(packed);
  amx_detail::tile_config cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
  const std::size_t ldc = Mp * sizeof(float);
  for (std::size_t b = 0; b < n; b += tile_key_block) {
    const std::size_t nb = std::min(tile_key_block, n - b);
    amx_detail::split_keys<kKeyParts, T>([&](std::size_t j) { return key(b + j); }, nb, D, Dp, keys);
    for (std::size_t c = 0; c < Mp; c += 32) {
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (std::size_t s = 0; s < steps; ++s)
        for (std::size_t i = 0; i < kKeyParts; ++i) {
          amx_detail::load_keys(keys + i * key_plane + s * 32, Dp * 2);
          for (std::size_t j = 0; i + j <= Order && j < kQueryParts; ++j) {
            const std::uint16_t* qb = queries + j * query_plane + ((c / 16) * steps + s) * 512;
            amx_detail::multiply_queries(qb, qb + steps * 512);
          }
        }
      float* out = e + b * Mp + c;
      if (nb == tile_key_block) {
        _tile_stored(0, out, ldc);
        _tile_stored(1, out + 16, ldc);
        _tile_stored(2, out + 16 * Mp, ldc);
        _tile_stored(3, out + 16 * Mp + 16, ldc);
        continue;
      }
      // A partial block: only its nb rows are written.
      const auto spill_rows = [&](std::size_t row0, std::size_t col0) {
        for (std::size_t r = row0; r < std::min(nb, row0 + 16); ++r)
          std::memcpy(out + r * Mp + col0, spill + (r - row0) * 16, 16 * sizeof(float));
      };
      _tile_stored(0, spill, 64);
      spill_rows(0, 0);
      _tile_stored(1, spill, 64);
      spill_rows(0, 16);
      _tile_stored(2, spill, 64);
      spill_rows(16, 0);
      _tile_stored(3, spill, 64);
      spill_rows(16, 16);
    }
  }
  _tile_release();
}

}  // namespace simd
INFOKV_END_NAMESPACE

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic pop
#endif

#endif  // __x86_64__
