// SPDX-License-Identifier: Apache-2.0
// The instruction sets a typed test runs over: every ISA the library has kernels for on this
// architecture, each skipped at run time when the CPU lacks it. One list, so a test cannot
// forget an ISA.
#pragma once

#include <string>
#include <type_traits>

#include <gtest/gtest.h>

#include "infokv/simd/isa.hpp"

namespace infokv_test {

#if defined(__x86_64__)
using all_isas =
    ::testing::Types<infokv::simd::scalar_t, infokv::simd::avx2_t, infokv::simd::avx512_t, infokv::simd::amx_t>;
#elif defined(__i386__)
using all_isas = ::testing::Types<infokv::simd::scalar_t, infokv::simd::avx2_t, infokv::simd::avx512_t>;
#else
using all_isas = ::testing::Types<infokv::simd::scalar_t>;
#endif

/// Relative tolerance of a window-attention score against the FP32 scalar oracle. The vector
/// ISAs compute the logits in FP32; AMX multiplies bf16 parts (simd/amx.hpp), each logit within
/// 2^-14 of sum |q_d k_d| (held by tests/simd/amx_test.cpp), which moves a probability by up to a
/// few 1e-4 of itself at the sweep's magnitudes.
template <class Isa>
inline constexpr double window_score_rel_tolerance =
#if defined(__x86_64__)
    std::is_base_of_v<infokv::simd::amx_t, Isa> ? 5e-4 :
#endif
                                                  1e-5;

/// Readable typed-test names: the ISA's own name.
struct isa_name {
  template <class Isa>
  static std::string GetName(int) {
    return Isa::name;
  }
};

/// Fixture base: skips the test when the CPU cannot run Isa.
template <class Isa>
class isa_test : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!infokv::simd::cpu_supports(Isa{})) GTEST_SKIP() << Isa::name << " is not supported by this CPU";
  }
};

}  // namespace infokv_test
