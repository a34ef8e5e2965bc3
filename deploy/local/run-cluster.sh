#!/usr/bin/env bash
# A real gut cluster on one machine: one gut-coordinator and n gut-agentd processes on 127.0.0.1,
# from one manifest (same schema, overrides and output files as gut-sim).
#
#   deploy/local/run-cluster.sh --manifest FILE --out DIR [--set key.path=value ...]
#
# Shows the coordinator's progress live; every process logs to DIR/logs/. The run's metrics.csv,
# metrics.svg and summary.json land in DIR, each agent's own metrics.csv and final parameters in
# DIR/agents/rank-NN/, and DIR/prometheus-targets.json lists the agents' /metrics endpoints.
# Ctrl-C stops everything (SIGTERM, then SIGKILL after 10 s). The exit status is the
# coordinator's: 0 when the run finished, non-zero when it or an agent failed.
# Binaries come from $GUT_BUILD_DIR (default: build/ of this checkout).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${GUT_BUILD_DIR:-$here/build}"
coordinator_bin="$build/coordinator/gut-coordinator"
agent_bin="$build/agent/gut-agentd"

usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }
manifest="" out="" sets=() agent_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --manifest) manifest="${2:-}"; shift 2 ;;
    --out) out="${2:-}"; shift 2 ;;
    --set) sets+=(--set "${2:-}"); shift 2 ;;
    --agent-arg) agent_args+=("${2:-}"); shift 2 ;;  # extra flag for every gut-agentd (tests)
    -h|--help) usage ;;
    *) echo "run-cluster: unknown argument '$1'" >&2; usage ;;
  esac
done
[[ -n "$manifest" && -n "$out" ]] || usage
for b in "$coordinator_bin" "$agent_bin"; do
  [[ -x "$b" ]] || { echo "run-cluster: $b not found; build first (scripts/build.sh)" >&2; exit 2; }
done

n="$("$coordinator_bin" --manifest "$manifest" "${sets[@]}" --print-num-agents)" || exit 2
mkdir -p "$out/logs" "$out/agents" || exit 2
rm -f "$out/coordinator.port" "$out/summary.json"

pids=()
stop_all() {
  local sig="$1"
  for p in "${pids[@]}"; do kill "-$sig" "$p" 2>/dev/null; done
}
interrupted=0
on_interrupt() {
  interrupted=1
  echo "run-cluster: stopping $((${#pids[@]})) processes..." >&2
  stop_all TERM
  for _ in $(seq 100); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.1
  done
  stop_all KILL
  [[ -n "${tail_pid:-}" ]] && kill "$tail_pid" 2>/dev/null
  exit 130
}
trap on_interrupt INT TERM

"$coordinator_bin" --manifest "$manifest" "${sets[@]}" --listen 127.0.0.1:0 \
  --port-file "$out/coordinator.port" --out "$out" --metrics 127.0.0.1:0 \
  >"$out/logs/coordinator.log" 2>&1 &
coord=$!
pids+=("$coord")
for _ in $(seq 300); do
  [[ -s "$out/coordinator.port" ]] && break
  kill -0 "$coord" 2>/dev/null || { cat "$out/logs/coordinator.log" >&2; exit 2; }
  sleep 0.1
done
port="$(cat "$out/coordinator.port" 2>/dev/null)"
[[ -n "$port" ]] || { echo "run-cluster: the coordinator did not start" >&2; stop_all KILL; exit 1; }

echo "run-cluster: coordinator on 127.0.0.1:$port, starting $n agents (logs in $out/logs/)"
agent_pids=()
for ((r = 0; r < n; r++)); do
  dir="$(printf '%s/agents/rank-%02d' "$out" "$r")"
  "$agent_bin" --coordinator "127.0.0.1:$port" --listen 127.0.0.1:0 --rank "$r" \
    --name "agent-$r" --checkpoint-dir "$dir" --metrics 127.0.0.1:0 "${agent_args[@]}" \
    >"$(printf '%s/logs/agent-%02d.log' "$out" "$r")" 2>&1 &
  agent_pids+=($!)
  pids+=($!)
done

tail -n +1 -f "$out/logs/coordinator.log" --pid="$coord" &
tail_pid=$!

status=0
while kill -0 "$coord" 2>/dev/null; do
  for i in "${!agent_pids[@]}"; do
    p="${agent_pids[$i]}"
    [[ -z "$p" ]] && continue
    if ! kill -0 "$p" 2>/dev/null; then
      wait "$p"; rc=$?
      agent_pids[$i]=""
      if [[ $rc != 0 ]]; then
        echo "run-cluster: agent $i exited with status $rc; last lines of its log:" >&2
        tail -n 5 "$(printf '%s/logs/agent-%02d.log' "$out" "$i")" >&2
        status=1
      fi
    fi
  done
  [[ $status != 0 ]] && break
  sleep 0.5
done
if [[ $status != 0 ]]; then
  stop_all TERM
  sleep 2
  stop_all KILL
  kill "$tail_pid" 2>/dev/null
  exit 1
fi
wait "$coord"; status=$?
wait "$tail_pid" 2>/dev/null
# The agents finish right after the coordinator; give them a moment, then make sure.
for i in "${!agent_pids[@]}"; do
  p="${agent_pids[$i]}"
  [[ -z "$p" ]] && continue
  for _ in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && { echo "run-cluster: agent $i still running; stopping it" >&2; kill -TERM "$p"; }
  wait "$p"; rc=$?
  [[ $rc != 0 && $status == 0 ]] && { echo "run-cluster: agent $i exited with status $rc" >&2; status=1; }
done
[[ $status == 0 ]] && echo "run-cluster: done; results in $out (metrics.csv, metrics.svg, summary.json)"
exit $status
