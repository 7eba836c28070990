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

#if defined(__x86_64__) || defined(__i386__)
using all_isas = ::testing::Types<infokv::simd::scalar_t, infokv::simd::avx2_t, infokv::simd::avx512_t>;
#else
using all_isas = ::testing::Types<infokv::simd::scalar_t>;
#endif

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
