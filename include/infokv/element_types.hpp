// SPDX-License-Identifier: Apache-2.0
// The storage types a KV pool may hold (float, IEEE binary16, bfloat16) and their exact
// conversion to float. half and bfloat16 are 2-byte bit containers with the layout of
// Eigen::half / __half and Eigen::bfloat16 / __nv_bfloat16, so an engine's pool of those types
// can be viewed through a reinterpret_cast of the base pointer. The conversions use
// __builtin_bit_cast (GCC, Clang and nvcc) rather than std::bit_cast, a host-only function that
// device code cannot call.
#pragma once

#include <cstdint>
#include <type_traits>

#include "infokv/config.hpp"

INFOKV_BEGIN_NAMESPACE

/// IEEE 754 binary16 storage.
struct half {
  std::uint16_t bits = 0;
};
/// bfloat16 storage: the upper 16 bits of a binary32.
struct bfloat16 {
  std::uint16_t bits = 0;
};
static_assert(sizeof(half) == 2 && std::is_trivially_copyable_v<half>);
static_assert(sizeof(bfloat16) == 2 && std::is_trivially_copyable_v<bfloat16>);

template <class T>
inline constexpr bool is_kv_element_v =
    std::is_same_v<T, float> || std::is_same_v<T, half> || std::is_same_v<T, bfloat16>;

/// Every view instantiates this: a pool of any other element type (another 2-byte float such as
/// _Float16 or a host __half, an integer, a quantized block) stops the build here, instead of
/// being read as bfloat16 by the SIMD loaders or converted implicitly by the scalar ones.
template <class T>
struct require_kv_element {
  static_assert(is_kv_element_v<T>,
                "infokv: a KV pool holds float, infokv::half or infokv::bfloat16, the types the kernels decode. "
                "View a __half / Eigen::half / _Float16 pool as infokv::half and a __nv_bfloat16 / Eigen::bfloat16 "
                "pool as infokv::bfloat16 (same bits); quantized caches are not supported.");
  static constexpr bool value = true;
};

INFOKV_HOST_DEVICE constexpr float to_float(float x) noexcept { return x; }

INFOKV_HOST_DEVICE constexpr float to_float(bfloat16 x) noexcept {
  return __builtin_bit_cast(float, static_cast<std::uint32_t>(x.bits) << 16);
}

// Exact binary16 -> binary32, including subnormals, infinities and NaN payloads.
INFOKV_HOST_DEVICE constexpr float to_float(half x) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(x.bits & 0x8000u) << 16;
  const std::uint32_t exp = (x.bits >> 10) & 0x1fu;
  std::uint32_t man = x.bits & 0x3ffu;
  if (exp == 0x1f) return __builtin_bit_cast(float, sign | 0x7f800000u | (man << 13));
  if (exp != 0) return __builtin_bit_cast(float, sign | ((exp + 112u) << 23) | (man << 13));
  if (man == 0) return __builtin_bit_cast(float, sign);
  // Subnormal half: normalise into a binary32 normal.
  std::uint32_t e = 113;
  while ((man & 0x400u) == 0) {
    man <<= 1;
    --e;
  }
  return __builtin_bit_cast(float, sign | (e << 23) | ((man & 0x3ffu) << 13));
}

/// float -> bfloat16, round to nearest even (NaN stays a quiet NaN).
INFOKV_HOST_DEVICE constexpr bfloat16 to_bfloat16(float f) noexcept {
  const std::uint32_t u = __builtin_bit_cast(std::uint32_t, f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bfloat16{static_cast<std::uint16_t>((u >> 16) | 0x40u)};
  const std::uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
  return bfloat16{static_cast<std::uint16_t>(rounded >> 16)};
}

/// float -> binary16, round to nearest even, overflow to infinity, gradual underflow.
INFOKV_HOST_DEVICE constexpr half to_half(float f) noexcept {
  const std::uint32_t u = __builtin_bit_cast(std::uint32_t, f);
  const std::uint16_t sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
  const std::uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return half{static_cast<std::uint16_t>(sign | 0x7e00u)};  // NaN
  if (a >= 0x477ff000u) return half{static_cast<std::uint16_t>(sign | 0x7c00u)};  // >= 65520: inf
  if (a < 0x38800000u) {                                                          // half subnormal
    if (a < 0x33000000u) return half{sign};                                        // < 2^-25: zero
    const std::uint32_t e = a >> 23;
    const std::uint32_t m = (a & 0x7fffffu) | 0x800000u;
    const std::uint32_t shift = 126u - e;  // 14..24
    std::uint32_t h = m >> shift;
    const std::uint32_t rem = m & ((1u << shift) - 1u);
    const std::uint32_t halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (h & 1u))) ++h;
    return half{static_cast<std::uint16_t>(sign | h)};
  }
  std::uint32_t h = ((a >> 13) - (112u << 10));
  const std::uint32_t rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return half{static_cast<std::uint16_t>(sign | h)};
}

template <class T>
INFOKV_HOST_DEVICE constexpr T from_float(float f) noexcept {
  if constexpr (std::is_same_v<T, float>) {
    return f;
  } else if constexpr (std::is_same_v<T, half>) {
    return to_half(f);
  } else {
    static_assert(std::is_same_v<T, bfloat16>, "KV elements are float, half or bfloat16");
    return to_bfloat16(f);
  }
}

INFOKV_END_NAMESPACE
