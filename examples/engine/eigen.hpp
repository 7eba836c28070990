// SPDX-License-Identifier: Apache-2.0
// Eigen for the engine. GCC 12 reports bogus -Wmaybe-uninitialized / -Wuninitialized warnings
// from its own AVX-512 intrinsic headers once they are inlined (GCC PR105593; STYLE.md lists
// it): with -march=x86-64-v4 and -Werror that would fail the build, so the diagnostics are off
// for the headers included here, and only for GCC < 13.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <Eigen/Core>
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic pop
#endif
