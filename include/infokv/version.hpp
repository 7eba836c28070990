// SPDX-License-Identifier: Apache-2.0
// The library's version, as numbers a consumer can test at compile time. The CMake package
// version (project() in CMakeLists.txt) must say the same; a test checks that they agree.
#pragma once

#define INFOKV_VERSION_MAJOR 0
#define INFOKV_VERSION_MINOR 1
#define INFOKV_VERSION_PATCH 0
#define INFOKV_VERSION (INFOKV_VERSION_MAJOR * 10000 + INFOKV_VERSION_MINOR * 100 + INFOKV_VERSION_PATCH)
