// SPDX-License-Identifier: Apache-2.0
// Moved to infokv/plan/compaction.hpp (a plan and its application are not policies); this header
// stays so that code written against the old path keeps compiling.
#pragma once

#include "infokv/plan/compaction.hpp"
