#!/usr/bin/env bash
# The daemons and their tests under AddressSanitizer + UndefinedBehaviorSanitizer: configures a
# separate tree (build-asan, -DGUT_SANITIZE=ON, RelWithDebInfo), builds gut-agentd, gut-coordinator
# and the services, coordinator and integration tests, and runs them (every sanitizer report is
# fatal: halt_on_error, -fno-sanitize-recover). Prints a markdown summary.
#   bench/sanitize.sh [--jobs N] [--tests REGEX] [--out FILE.md]
# The libraries (LibTorch, gRPC, protobuf) are Debian's, uninstrumented: container-overflow checks
# are off (they need every library instrumented) and so is leak checking (gut-agentd never frees its
# Agent on purpose, see agent/agent.cc; gRPC and LibTorch keep process-lifetime singletons).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=2 tests='^(GrpcExchange|PeerEdge|PeerAdmission|FrameAssembly|Implementations|LibraryLogs|Cluster|Faults|PageCluster|FakeCoordinatorTest|Modes/ForgedUpdates|Membership|Coordinator|ReportChecks|EpochAggregator|StreamTuning)' out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --jobs) jobs=$2; shift 2 ;;
    --tests) tests=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) sed -n '2,9p' "$0"; exit 2 ;;
  esac
done
tree=${GUT_ASAN_DIR:-build-asan}
start=$(date +%s)
cmake -S . -B "$tree" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGUT_SANITIZE=ON -DGUT_BUILD_BENCH=OFF > "$tree.configure.log" 2>&1 ||
  { tail -20 "$tree.configure.log"; exit 1; }
cmake --build "$tree" -j "$jobs" --target gut-agentd gut-coordinator gut-sim services_test coordinator_test integration_test \
  > "$tree.build.log" 2>&1 || { grep -m5 -A3 'error' "$tree.build.log"; exit 1; }
built=$(date +%s)
export ASAN_OPTIONS=detect_leaks=0:detect_container_overflow=0:halt_on_error=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
set +e
(cd "$tree" && ctest -j "$jobs" -R "$tests" --timeout 900) > "$tree.ctest.log" 2>&1
rc=$?
set -e
reports=$( (grep -c -E 'ERROR: AddressSanitizer|runtime error:' "$tree.ctest.log" "$tree"/Testing/Temporary/LastTest.log 2>/dev/null || true) |
  awk -F: '{s+=$2} END {print s+0}')
{
  echo "### sanitize, $(date -u '+%Y-%m-%d %H:%M') UTC: ASan + UBSan (g++ $(g++ -dumpversion)), tests matching $tests"
  echo
  echo "| build | tests | result | sanitizer reports |"
  echo "|---|---|---|---|"
  echo "| $((built - start)) s | $(grep -oE '[0-9]+ tests failed out of [0-9]+' "$tree.ctest.log" || echo '?') ($((($(date +%s) - built))) s) | ctest rc $rc | $reports |"
} | tee -a "${out:-/dev/null}"
[[ $rc -eq 0 && $reports -eq 0 ]]
