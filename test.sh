#!/usr/bin/env bash
# Installs missing dependencies, builds everything and runs the whole test suite (ctest).
set -euo pipefail
cd "$(dirname "$0")"
scripts/build.sh
cd build
ctest --output-on-failure -j "$(nproc 2>/dev/null || echo 2)" "$@"
