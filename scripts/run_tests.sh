#!/usr/bin/env bash
# The README's test command: installs dependencies, fetches the real model for the engine tests
# (scripts/fetch_model.sh), builds everything with warnings as errors, and runs every test
# through CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
model=$(bash scripts/fetch_model.sh)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DINFOKV_WERROR=ON "-DINFOKV_TEST_MODEL=$model"
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)"
