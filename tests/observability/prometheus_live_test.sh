#!/usr/bin/env bash
# observability.prometheus_live: a real Prometheus scrapes two real 4-agent loopback clusters in
# turn: every dashboard query, alert selector and target label is checked on a healthy run that
# finishes, a killed agent must page before its run fails, and the dashboard must show how each run
# ended 10 minutes later (prometheus_live_test.py).
#
#   tests/observability/prometheus_live_test.sh [SOURCE_DIR [BUILD_DIR]]   (about 2 minutes)
#
# BUILD_DIR defaults to $GUT_BUILD_DIR, then SOURCE_DIR/build. Exit 77 (skipped) when Prometheus,
# Debian's /usr/bin/python3 or the Fashion-MNIST data set is missing.
set -uo pipefail
src="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
build="${2:-${GUT_BUILD_DIR:-$src/build}}"

prometheus="${PROMETHEUS:-}"
if [[ -z "$prometheus" ]]; then
  for c in "$(command -v prometheus 2>/dev/null)" /usr/bin/prometheus "$src/.deps/bin/prometheus"; do
    [[ -n "$c" && -x "$c" ]] && { prometheus="$c"; break; }
  done
fi
if [[ -z "$prometheus" ]]; then
  echo "SKIP: the prometheus server binary was not found (looked at \$PROMETHEUS, PATH, /usr/bin/prometheus)."
  echo "      Install it with: deploy/install-deps.sh --with-test-tools"
  echo "      (Debian's prometheus package: apt-get install --no-install-recommends prometheus;"
  echo "      the test starts its own process on a free loopback port, not the system service)"
  exit 77
fi
py=/usr/bin/python3
if [[ ! -x "$py" ]]; then
  echo "SKIP: Debian's /usr/bin/python3 not found (apt-get install python3)"
  exit 77
fi
data=/usr/share/datasets/fashion-mnist
if ! ls "$data"/train-images-idx3-ubyte* >/dev/null 2>&1; then
  echo "SKIP: Fashion-MNIST not found in $data (apt-get install dataset-fashion-mnist, or deploy/install-deps.sh)"
  exit 77
fi
for b in "$build/coordinator/gut-coordinator" "$build/agent/gut-agentd"; do
  if [[ ! -x "$b" ]]; then
    echo "FAIL: $b not found: build the project first (scripts/build.sh), or pass BUILD_DIR"
    exit 1
  fi
done
echo "prometheus: $prometheus ($("$prometheus" --version 2>&1 | head -n 1)); binaries from $build"
exec "$py" "$src/tests/observability/prometheus_live_test.py" --source "$src" --build "$build" --prometheus "$prometheus"
