// SPDX-License-Identifier: Apache-2.0
// Instruction-set tags. Kernels are overloads on these tags, so the ISA is part of every mangled
// name; native_isa follows the translation unit's baseline flags. This is the only header that
// may test __AVX*__ macros.
#pragma once

#include "infokv/config.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

INFOKV_BEGIN_NAMESPACE
namespace simd {

struct scalar_t {
  static constexpr const char* name = "scalar";
};
struct avx2_t {
  static constexpr const char* name = "avx2";
};
struct avx512_t {
  static constexpr const char* name = "avx512";
};

#if defined(INFOKV_DEFAULT_ISA)
using native_isa = INFOKV_DEFAULT_ISA;
#elif defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__)
using native_isa = avx512_t;
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
using native_isa = avx2_t;
#else
using native_isa = scalar_t;
#endif

[[nodiscard]] inline bool cpu_supports(scalar_t) noexcept { return true; }
#if defined(__x86_64__) || defined(__i386__)
namespace detail {
/// F16C (CPUID leaf 1, ECX bit 29); clang 14's __builtin_cpu_supports does not know "f16c".
[[nodiscard]] inline bool cpu_has_f16c() noexcept {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) != 0 && (c & (1u << 29)) != 0;
}
}  // namespace detail
[[nodiscard]] inline bool cpu_supports(avx2_t) noexcept {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && detail::cpu_has_f16c();
}
[[nodiscard]] inline bool cpu_supports(avx512_t) noexcept {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("fma") && detail::cpu_has_f16c();
}
#else
[[nodiscard]] inline bool cpu_supports(avx2_t) noexcept { return false; }
[[nodiscard]] inline bool cpu_supports(avx512_t) noexcept { return false; }
#endif

}  // namespace simd
INFOKV_END_NAMESPACE
