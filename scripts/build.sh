#!/usr/bin/env bash
# Installs missing dependencies (deploy/install-deps.sh), configures and builds gut into build/.
# Usage: scripts/build.sh [make targets...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
if [[ ! -f build/CMakeCache.txt ]]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
fi
cmake --build build -j "$jobs" ${1:+--target "$@"}
