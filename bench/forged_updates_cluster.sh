#!/usr/bin/env bash
# One forging agent against a real loopback cluster (gut-coordinator and 8 gut-agentd processes,
# plaintext on 127.0.0.1), where the coordinator acts on the neighbours' refusals
# (fault.on_refused_peer; docs/algorithms.md §11). Agent 0 runs with --inject-forged-updates; the
# table gives, per drill, how the run ended, whether agent 0 was dropped and from which round the
# others replayed, the honest agents' final mean accuracy, and the messages they refused from it.
#   bench/forged_updates_cluster.sh [--policy drop|fail|keep] [--manifest FILE] [--set key=value ...]
#                                   [--out FILE.md] [DRILL ...]
# A DRILL is MODE:FROM_ROUND:ROUNDS (default: huge, zeros and negate10 for 100 rounds from round 20).
set -euo pipefail
cd "$(dirname "$0")/.."
manifest=deploy/examples/fmnist-ring16-qggutm-quick.yaml out="" policy=drop
sets=(--set agents.count=8 --set run.epochs=2 --set checkpoint.every_rounds=10)
drills=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --policy) policy=$2; shift 2 ;;
    --manifest) manifest=$2; shift 2 ;;
    --set) sets+=(--set "$2"); shift 2 ;;
    --out) out=$2; shift 2 ;;
    -*) sed -n '2,10p' "$0"; exit 2 ;;
    *) drills+=("$1"); shift ;;
  esac
done
sets+=(--set "fault.on_refused_peer=$policy")
[[ ${#drills[@]} -gt 0 ]] || drills=(huge:20:100 zeros:20:100 negate10:20:100)
build=${GUT_BUILD_DIR:-build}
work=$(mktemp -d /tmp/gut-forged-cluster.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
n=$("$build/coordinator/gut-coordinator" --manifest "$manifest" "${sets[@]}" --print-num-agents)

run() {  # tag, drill ("" for none)
  local dir=$work/$1
  mkdir -p "$dir"
  "$build/coordinator/gut-coordinator" --manifest "$manifest" "${sets[@]}" --out "$dir/out" --listen 127.0.0.1:0 \
    --port-file "$dir/port" --linger-s 0 > "$dir/coordinator.log" 2>&1 &
  local coordinator=$!
  pids=("$coordinator")
  for _ in $(seq 100); do [[ -s $dir/port ]] && break; sleep 0.1; done
  for ((r = 0; r < n; r++)); do
    local drill=()
    [[ $r == 0 && -n $2 ]] && drill=(--inject-forged-updates "$2")
    "$build/agent/gut-agentd" --coordinator "127.0.0.1:$(cat "$dir/port")" --listen 127.0.0.1:0 --rank "$r" \
      --checkpoint-dir "$dir/rank-$r" --metrics 127.0.0.1:0 "${drill[@]}" > "$dir/agent-$r.log" 2>&1 &
    pids+=($!)
  done
  wait "$coordinator" || true
  sleep 2
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
row() {  # tag, label
  /usr/bin/python3 - "$work/$1" "$2" "$n" <<'PY'
import json, os, re, sys
d, label, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    s = json.load(open(os.path.join(d, "out", "summary.json")))
except (OSError, ValueError):
    print(f"| {label} | no summary | | | | |"); sys.exit()
dropped = {x["rank"]: x["round"] for x in s.get("dropped", [])}
acc = s["final"].get("test_acc_per_agent", [])
honest = acc if 0 in dropped else acc[1:]
refused = 0
for r in range(1, n):
    try:
        page = open(os.path.join(d, f"rank-{r}", "metrics.prom")).read()
    except OSError:
        continue
    m = re.search(r'^gut_agent_peer_messages_refused_total\{peer="0"\} (\S+)', page, re.M)
    refused += float(m.group(1)) if m else 0
mean = f"{100 * sum(honest) / len(honest):.2f} %" if honest and s["status"] == "finished" else ""
why = s.get("failure", "")[:120]
print(f"| {label} | {s['status']} | {'round ' + str(dropped[0]) if 0 in dropped else 'no'} | {mean} | {refused:.0f} | {why} |")
PY
}
{
  echo "### forged_updates_cluster, $(date -u '+%Y-%m-%d %H:%M') UTC: $manifest ${sets[*]}"
  echo
  echo "| drill (agent 0) | run | agent 0 dropped, others restored | honest agents' final accuracy | refused from agent 0 | failure |"
  echo "|---|---|---|---|---|---|"
  run undisturbed ""
  row undisturbed "none (undisturbed)"
  for d in "${drills[@]}"; do
    tag=${d//:/-}
    run "$tag" "$d"
    row "$tag" "$d"
    echo "done $d" >&2
  done
} | tee -a "${out:-/dev/null}"
