#!/usr/bin/env bash
# Fault-tolerance acceptance on a real loopback cluster (the README's quick manifest: 16 agents,
# ring, QG-GUTm, 3 epochs, checkpoints every epoch): crashes, a killed coordinator, a rolling
# restart, Ctrl-C and resume, an agent lost for good under `fail` and `drop`, and gut-sim's own
# stop/resume. Every trial that completes is compared bit for bit (cmp of every agent's
# params-final.f32) with an undisturbed run of the same manifest and codec.
#
#   bench/fault_bench.sh [--out DIR] [--trials N] [--seed S] [--only PHASE]
#
# Phases: ref, kill, int8, coordinator, rolling, resume, drop, fail, sim. Writes DIR/faults.csv
# (one row per trial) and prints a markdown table; bench/results/ keeps the committed copy.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${GUT_BUILD_DIR:-$here/build}"
manifest="$here/deploy/examples/fmnist-ring16-qggutm-quick.yaml"
out="$here/out/fault-bench" trials=5 seed=1 only=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --trials) trials="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    *) sed -n '2,12p' "$0"; exit 2 ;;
  esac
done
RANDOM=$seed
mkdir -p "$out"
csv="$out/faults.csv"
[[ -f "$csv" ]] || echo "trial,phase,codec,event,outcome,seconds,ref_seconds,lost_seconds,identical_agents,detail" >"$csv"
launcher="$here/deploy/local/run-cluster.sh"
export GUT_BUILD_DIR="$build"
want() { [[ -z "$only" || "$only" == "$1" ]]; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
row() { echo "$*" >>"$csv"; echo "$*"; }
pid_of() { cat "$1/pids/$2.pid" 2>/dev/null; }

# Runs the launcher to completion in DIR with the extra arguments; echoes the seconds it took.
run() {
  local dir="$1"; shift
  rm -rf "$dir"
  local t0; t0=$(now)
  bash "$launcher" --manifest "$manifest" --out "$dir" "$@" >"$dir.log" 2>&1
  echo "$? $(elapsed "$t0")"
}
# How many of the 16 agents' final parameters equal the reference's, byte for byte.
identical() {
  local k=0
  for r in $(seq -f '%02g' 0 15); do
    cmp -s "$1/agents/rank-$r/params-final.f32" "$2/agents/rank-$r/params-final.f32" && k=$((k + 1))
  done
  echo $k
}
# Starts the launcher in the background; sets LPID.
start() {
  local dir="$1"; shift
  rm -rf "$dir"
  bash "$launcher" --manifest "$manifest" --out "$dir" "$@" >"$dir.log" 2>&1 &
  LPID=$!
}
wait_for() {  # file pattern seconds
  for _ in $(seq $(( $3 * 10 ))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

ref_s=0 ref8_s=0
if want ref || [[ -n "$only" ]]; then
  if [[ ! -f "$out/ref/summary.json" ]]; then read -r rc ref_s < <(run "$out/ref"); echo "$ref_s" >"$out/ref.seconds"; fi
  if [[ ! -f "$out/ref-int8/summary.json" ]]; then
    read -r rc ref8_s < <(run "$out/ref-int8" --set exchange.codec=int8); echo "$ref8_s" >"$out/ref-int8.seconds"
  fi
  ref_s=$(cat "$out/ref.seconds"); ref8_s=$(cat "$out/ref-int8.seconds")
fi

kill_trial() {  # name reference-dir reference-seconds codec [launcher args...]
  local name="$1" ref="$2" refs="$3" codec="$4"; shift 4
  local dir="$out/$name"
  local t0; t0=$(now)
  start "$dir" --restart "$@"
  wait_for "$dir/logs/coordinator.log" "epoch   1/" 300 || { row "$name,kill,,no first epoch,error,,,,,"; return; }
  local victim=$((RANDOM % 16)) delay=$((RANDOM % 20 + 1))
  sleep "$delay"
  local pid; pid=$(pid_of "$dir" "$(printf 'agent-%02d' $victim)")
  kill -9 "$pid" 2>/dev/null
  wait "$LPID"; local rc=$?
  local s; s=$(elapsed "$t0")
  local same; same=$(identical "$dir" "$ref")
  local lost; lost=$(awk -v a="$s" -v b="$refs" 'BEGIN { printf "%.1f", a - b }')
  row "$name,kill,$codec,kill -9 agent $victim ${delay}s after epoch 1,exit $rc,$s,$refs,$lost,$same/16,"
}

if want kill; then
  for t in $(seq 1 "$trials"); do kill_trial "kill-$t" "$out/ref" "$ref_s" fp32; done
fi
if want int8; then kill_trial "kill-int8" "$out/ref-int8" "$ref8_s" int8 --set exchange.codec=int8; fi

if want coordinator; then
  dir="$out/coordinator"; t0=$(now)
  start "$dir" --restart
  wait_for "$dir/logs/coordinator.log" "epoch   1/" 300
  sleep $((RANDOM % 10 + 1))
  kill -9 "$(pid_of "$dir" coordinator)"
  wait "$LPID"; rc=$?
  s=$(elapsed "$t0")
  status=$(grep -o '"status": "[a-z]*"' "$dir/summary.json" 2>/dev/null)
  row "coordinator,coordinator,fp32,kill -9 coordinator,exit $rc $status,$s,$ref_s,$(awk -v a="$s" -v b="$ref_s" 'BEGIN{printf "%.1f",a-b}'),$(identical "$dir" "$out/ref")/16,metrics.csv rows $(($(wc -l <"$dir/metrics.csv") - 1))"
fi

if want rolling; then
  dir="$out/rolling"; t0=$(now)
  start "$dir" --restart --set checkpoint.every_rounds=20
  wait_for "$dir/logs/coordinator.log" "all 16 agents in" 300
  sleep 3
  worst=0 bad=0
  for r in $(seq 0 15); do
    pid=$(pid_of "$dir" "$(printf 'agent-%02d' "$r")")
    ts=$(now)
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    took=$(elapsed "$ts")
    worst=$(awk -v a="$worst" -v b="$took" 'BEGIN { print (b > a) ? b : a }')
    wait_for "$dir.log" "agent $r stopped; starting it again" 10 || bad=$((bad + 1))
    wait_for "$(printf '%s/logs/agent-%02d.log' "$dir" "$r")" "rejoined run" 60
    sleep 2
  done
  wait "$LPID"; rc=$?
  s=$(elapsed "$t0")
  row "rolling,rolling,fp32,SIGTERM + restart of each agent in turn,exit $rc,$s,$ref_s,,$(identical "$dir" "$out/ref")/16,slowest stop ${worst}s (--stop-timeout-s 10); agents not exiting 0: $bad"
fi

if want resume; then
  dir="$out/resume"; t0=$(now)
  start "$dir"
  wait_for "$dir/logs/coordinator.log" "epoch   2/" 300
  sleep $((RANDOM % 5))
  # Ctrl-C stand-in: SIGTERM, which the launcher handles as it handles SIGINT (a background job
  # of a non-interactive shell starts with SIGINT ignored, so kill -INT would not reach it).
  kill -TERM "$LPID"; wait "$LPID"; rc1=$?
  bash "$launcher" --manifest "$manifest" --out "$dir" --resume >>"$dir.log" 2>&1; rc=$?
  s=$(elapsed "$t0")
  row "resume,resume,fp32,Ctrl-C then --resume,exit $rc1 then $rc,$s,$ref_s,,$(identical "$dir" "$out/ref")/16,"
fi

if want drop; then
  dir="$out/drop"; t0=$(now)
  start "$dir" --set fault.on_peer_loss=drop --set fault.rejoin_timeout_s=5
  wait_for "$dir/logs/coordinator.log" "epoch   1/" 300
  victim=$((RANDOM % 16))
  kill -9 "$(pid_of "$dir" "$(printf 'agent-%02d' $victim)")"
  wait "$LPID"; rc=$?
  s=$(elapsed "$t0")
  acc=$(/usr/bin/python3 -c "import json;d=json.load(open('$dir/summary.json'));r=json.load(open('$out/ref/summary.json'));print('%.2f vs %.2f undisturbed, dropped %s' % (100*d['final']['test_acc_mean'], 100*r['final']['test_acc_mean'], d['dropped']))" 2>&1)
  row "drop,drop,fp32,kill -9 agent $victim for good (drop; rejoin 5 s),exit $rc,$s,$ref_s,,,$acc"
fi

if want fail; then
  dir="$out/fail"
  start "$dir" --set fault.rejoin_timeout_s=5
  wait_for "$dir/logs/coordinator.log" "epoch   1/" 300
  victim=$((RANDOM % 16))
  tk=$(now)
  kill -9 "$(pid_of "$dir" "$(printf 'agent-%02d' $victim)")"
  wait "$LPID"; rc=$?
  s=$(elapsed "$tk")
  named=$(grep -l "agent $victim ('agent-$victim') was lost" "$dir"/logs/*.log | wc -l)
  row "fail,fail,fp32,kill -9 agent $victim for good (fail; rejoin 5 s),exit $rc,$s,,,,every process gone ${s}s after the kill (bound 15 s); logs naming the rank: $named/17"
fi

if want sim; then
  sim="$build/sim/gut-sim"
  rm -rf "$out/sim-ref" "$out/sim-stop"
  "$sim" --manifest "$manifest" --out "$out/sim-ref" >"$out/sim-ref.log" 2>&1
  "$sim" --manifest "$manifest" --out "$out/sim-stop" >"$out/sim-stop.log" 2>&1 &
  spid=$!
  wait_for "$out/sim-stop.log" "epoch   1/" 300
  kill -INT "$spid"; wait "$spid"
  "$sim" --manifest "$manifest" --out "$out/sim-stop" --resume >>"$out/sim-stop.log" 2>&1; rc=$?
  same=$(/usr/bin/python3 -c "import json;a=json.load(open('$out/sim-ref/summary.json'));b=json.load(open('$out/sim-stop/summary.json'));print(a['final']['test_acc_per_agent']==b['final']['test_acc_per_agent'] and a['final']['consensus_after_gossip']==b['final']['consensus_after_gossip'])")
  row "sim,sim,fp32,gut-sim Ctrl-C then --resume,exit $rc,,,,,final accuracies and consensus equal to the uninterrupted run: $same"
fi

echo
echo "| trial | event | outcome | seconds (undisturbed) | lost | identical agents | detail |"
echo "|---|---|---|---|---|---|---|"
tail -n +2 "$csv" | awk -F, '{ printf "| %s | %s | %s | %s (%s) | %s | %s | %s |\n", $1, $4, $5, $6, $7, $8, $9, $10 }'
