// SPDX-License-Identifier: Apache-2.0
// Instruction-set tags. Kernels are overloads on these tags, so the ISA is part of every mangled
// name; native_isa follows the translation unit's baseline flags. This is the only header that
// may test __AVX*__ / __AMX*__ macros.
//
// Each tag derives from the one below it, so overload resolution picks the most specialised
// kernel an ISA has and falls back to its base for every other one: a new ISA is a tag, its
// cpu_supports, and only the kernels it does better.
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
struct avx2_t : scalar_t {
  static constexpr const char* name = "avx2";
};
struct avx512_t : avx2_t {
  static constexpr const char* name = "avx512";
};
/// AVX-512 plus AMX tiles (AMX-TILE, AMX-BF16): the window-logit product on bf16 tiles.
struct amx_t : avx512_t {
  static constexpr const char* name = "amx";
};

#if defined(INFOKV_DEFAULT_ISA)
using native_isa = INFOKV_DEFAULT_ISA;
#elif defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512F__) && defined(__AVX512BW__) && \
    defined(__AVX512VL__) && defined(__AVX512DQ__)
using native_isa = amx_t;
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
/// AMX-TILE and AMX-BF16 (CPUID leaf 7, EDX bits 24 and 22) with the tile state enabled by the OS
/// in XCR0 (bits 17 and 18). Linux also wants a per-process permission before the first tile
/// instruction; simd::prepare(amx_t) asks for it.
[[nodiscard]] inline bool cpu_supports(amx_t) noexcept {
  if (!cpu_supports(avx512_t{})) return false;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return false;
  if ((d & (1u << 24)) == 0 || (d & (1u << 22)) == 0) return false;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0 || (c & (1u << 27)) == 0) return false;  // OSXSAVE
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0u));
  return (lo & (3u << 17)) == (3u << 17);
}
#else
[[nodiscard]] inline bool cpu_supports(avx2_t) noexcept { return false; }
[[nodiscard]] inline bool cpu_supports(avx512_t) noexcept { return false; }
[[nodiscard]] inline bool cpu_supports(amx_t) noexcept { return false; }
#endif

/// Whatever an ISA needs from the OS before its kernels run; false when it is refused. Nothing
/// for the vector ISAs; amx_t overrides it (simd/amx.hpp) to ask Linux for the tile data state.
[[nodiscard]] inline bool prepare(scalar_t) noexcept { return true; }

}  // namespace simd
INFOKV_END_NAMESPACE
