// SPDX-License-Identifier: Apache-2.0
// Compiler and build configuration: the versioned namespace, the host/device annotation and the
// assertion macro. This is the only header that asks which compiler is running (__CUDACC__).
#pragma once

#include <cstdio>
#include <cstdlib>

#include "infokv/version.hpp"

// The inline namespace carries the major version so two majors can link into one program.
#define INFOKV_BEGIN_NAMESPACE \
  namespace infokv {           \
  inline namespace v0 {
#define INFOKV_END_NAMESPACE \
  }                          \
  }

#if defined(__CUDACC__)
#define INFOKV_HOST_DEVICE __host__ __device__ inline
#define INFOKV_DEVICE __device__ inline
#else
#define INFOKV_HOST_DEVICE inline
#define INFOKV_DEVICE inline
#endif

// Precondition checks for programming errors (not for bad input, which gets a status).
// Active unless NDEBUG; INFOKV_HARDENED keeps them in release builds; a user may define
// INFOKV_ASSERT before including any infokv header to route failures elsewhere.
#ifndef INFOKV_ASSERT
#if !defined(NDEBUG) || defined(INFOKV_HARDENED)
#define INFOKV_ASSERT(cond, msg)                                                             \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "%s:%d: infokv assertion failed: %s\n", __FILE__, __LINE__, msg); \
      std::abort();                                                                          \
    }                                                                                        \
  } while (false)
#else
#define INFOKV_ASSERT(cond, msg) ((void)0)
#endif
#endif
