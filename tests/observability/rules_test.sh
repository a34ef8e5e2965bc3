#!/usr/bin/env bash
# observability.rules: the Prometheus configuration, alert rules and Grafana dashboard of
# deploy/observability/ are valid and tested.
#
#   tests/observability/rules_test.sh [SOURCE_DIR]
#
# 1. promtool check rules alerts.yml; promtool test rules alerts_test.yml (every alert fires in one
#    case and stays quiet in another);
# 2. promtool check config prometheus.yml, copied next to the rules and a sample targets file in
#    the layout it expects (no warnings allowed);
# 3. static_checks.py: the dashboard's structure (data source, titles, targets, unique ids, every
#    query filtered by $run_id); every dashboard query parsed by promtool as a recording rule;
#    alerts.yml's labels and annotations, runbook anchors in docs/operations/monitoring.md, test
#    and probe coverage.
# Exit 77 (skipped) when promtool or Debian's /usr/bin/python3 is missing (and after steps 1-2 and
# the dashboard checks when PyYAML is).
set -uo pipefail
src="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
obs="$src/deploy/observability"

promtool="${PROMTOOL:-}"
if [[ -z "$promtool" ]]; then
  for c in "$(command -v promtool 2>/dev/null)" /usr/bin/promtool "$src/.deps/bin/promtool"; do
    [[ -n "$c" && -x "$c" ]] && { promtool="$c"; break; }
  done
fi
if [[ -z "$promtool" ]]; then
  echo "SKIP: promtool not found (looked at \$PROMTOOL, PATH, /usr/bin/promtool, $src/.deps/bin/promtool)."
  echo "      Install it with: deploy/install-deps.sh --with-test-tools"
  echo "      (Debian's prometheus package: apt-get install --no-install-recommends prometheus)"
  exit 77
fi
py=/usr/bin/python3
if [[ ! -x "$py" ]]; then
  echo "SKIP: Debian's /usr/bin/python3 not found (apt-get install python3)"
  exit 77
fi
echo "promtool: $promtool ($("$promtool" --version 2>&1 | head -n 1))"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail=0
step() { echo; echo "== $*"; }

step "promtool check rules alerts.yml"
"$promtool" check rules "$obs/alerts.yml" || fail=1

step "promtool test rules alerts_test.yml"
(cd "$obs" && "$promtool" test rules alerts_test.yml) || fail=1

step "promtool check config prometheus.yml (with a sample targets file where it looks)"
mkdir -p "$tmp/tree/deploy/observability" "$tmp/tree/out/quick"
cp "$obs/prometheus.yml" "$obs/alerts.yml" "$tmp/tree/deploy/observability/"
cat >"$tmp/tree/out/quick/prometheus-targets.json" <<'EOF'
[
  {"labels": {"job": "gut-coordinator", "run_id": "sample-run"}, "targets": ["127.0.0.1:9090"]},
  {"labels": {"job": "gut-agent", "name": "agent-0", "rank": "0", "run_id": "sample-run"}, "targets": ["127.0.0.1:9100"]}
]
EOF
if out="$("$promtool" check config "$tmp/tree/deploy/observability/prometheus.yml" 2>&1)"; then
  echo "$out"
  if grep -q WARNING <<<"$out"; then echo "FAIL: promtool check config warned"; fail=1; fi
else
  echo "$out"; fail=1
fi

step "dashboard and alert structure (static_checks.py)"
"$py" "$src/tests/observability/static_checks.py" "$src" "$tmp/dashboard-rules.yml"
static=$?
[[ $static == 0 || $static == 77 ]] || fail=1

step "promtool parses every dashboard query"
if [[ -s "$tmp/dashboard-rules.yml" ]]; then
  "$promtool" check rules "$tmp/dashboard-rules.yml" || { fail=1; cat -n "$tmp/dashboard-rules.yml"; }
else
  echo "FAIL: static_checks.py wrote no dashboard queries"; fail=1
fi

echo
if [[ $fail != 0 ]]; then echo "observability.rules: FAILED"; exit 1; fi
if [[ $static == 77 ]]; then echo "observability.rules: passed, but skipped the checks that need PyYAML"; exit 77; fi
echo "observability.rules: passed"
