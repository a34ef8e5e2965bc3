#!/usr/bin/env bash
# What one forging agent does to a run, with the message guard (core/exchange/message_guard.h):
# gut-sim with the drill flag (--inject-forged-updates), agent 0 of an 8-agent ring forging its
# slot-0 messages, against the undisturbed run on the same manifest and seed. Prints a markdown
# table: per drill, the outcome (final mean accuracy of the honest agents 1-7, or the divergence),
# the messages refused, and the first sender the divergence error names.
#   bench/forged_updates.sh [--manifest FILE] [--set key=value ...] [--out FILE.md] [DRILL ...]
# A DRILL is MODE:FROM_ROUND:ROUNDS (default: huge, zeros and negate10 for 100 rounds from round 20,
# and one huge or zeros message at round 20 and at round 400).
set -euo pipefail
cd "$(dirname "$0")/.."
manifest=deploy/examples/fmnist-ring16-qggutm-quick.yaml out=""
sets=(--set agents.count=8 --set run.epochs=2 --set checkpoint.enabled=false)
drills=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --manifest) manifest=$2; shift 2 ;;
    --set) sets+=(--set "$2"); shift 2 ;;
    --out) out=$2; shift 2 ;;
    -*) sed -n '2,10p' "$0"; exit 2 ;;
    *) drills+=("$1"); shift ;;
  esac
done
[[ ${#drills[@]} -gt 0 ]] || drills=(huge:20:100 zeros:20:100 negate10:20:100 huge:20:1 zeros:20:1 huge:400:1 zeros:400:1)
build=${GUT_BUILD_DIR:-build}
work=$(mktemp -d /tmp/gut-forged-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
row() {  # tag, drill
  local dir=$work/$1
  if [[ -f $dir/summary.json ]]; then
    /usr/bin/python3 - "$dir/summary.json" "$2" <<'PY'
import json, sys
f = json.load(open(sys.argv[1]))["final"]
a = f["test_acc_per_agent"]
print(f"| {sys.argv[2]} | finished | {100 * sum(a[1:]) / len(a[1:]):.2f} % | {f.get('messages_refused', 0)} | |")
PY
  else
    local err
    err=$(grep -o 'training diverged at epoch [0-9]*\|the first from agent [0-9]* in round [0-9]* ([0-9]* from it, [0-9]* in all' "$dir.log" | paste -sd ' ' -)
    echo "| $2 | failed | | | ${err:-$(grep error "$dir.log" | tail -1)} |"
  fi
}
{
  echo "### forged_updates, $(date -u '+%Y-%m-%d %H:%M') UTC: $manifest ${sets[*]}"
  echo
  echo "| drill (agent 0) | run | honest agents' final accuracy | messages refused | divergence error |"
  echo "|---|---|---|---|---|"
  "$build/sim/gut-sim" --manifest "$manifest" --out "$work/undisturbed" "${sets[@]}" > "$work/undisturbed.log" 2>&1 || true
  row undisturbed "none (undisturbed)"
  for d in "${drills[@]}"; do
    tag=${d//:/-}
    "$build/sim/gut-sim" --manifest "$manifest" --out "$work/$tag" "${sets[@]}" --inject-forged-updates "0:$d" \
      > "$work/$tag.log" 2>&1 || true
    row "$tag" "$d"
    echo "done $d" >&2
  done
} | tee -a "${out:-/dev/null}"
