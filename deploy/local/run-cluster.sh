#!/usr/bin/env bash
# A real gut cluster on one machine: one gut-coordinator and n gut-agentd processes on 127.0.0.1,
# from one manifest (same schema, overrides and output files as gut-sim).
#
#   deploy/local/run-cluster.sh --manifest FILE --out DIR [--set key.path=value ...]
#                               [--restart] [--resume]
#
#   --restart   supervise: an agent or the coordinator that dies from a signal (a crash, kill -9),
#               and an agent stopped by SIGTERM before the run ended (a rolling restart), is started
#               again with the same command; the run rolls back to the newest common checkpoint
#               and ends as if nothing had happened
#   --resume    carry on the run saved in DIR (after Ctrl-C, or a machine restart): the
#               coordinator resumes from DIR, the agents from their checkpoints in DIR/agents
#   --insecure  plaintext gRPC; by default every channel is mutual TLS with a throwaway CA and one
#               certificate per process made for the run in DIR/tls (deploy/local/make-certs.sh)
#   --peer-ports L:A  agent r listens for its neighbours on 127.0.0.1:(L+r) and tells them to dial
#               127.0.0.1:(A+r) (gut-agentd --advertise): put a relay such as bench/link_emulator
#               on A+r to carry that agent's messages over an emulated link (bench/edge_bench.sh)
#   --version   the version of the binaries it starts
#
# Shows the coordinator's progress live; every process logs to DIR/logs/. The run's metrics.csv,
# metrics.svg and summary.json land in DIR, each agent's own metrics.csv, checkpoints and final
# parameters in DIR/agents/rank-NN/, and DIR/prometheus-targets.json lists the /metrics endpoints.
# DIR/pids/ holds every process's pid (for fault-injection scripts). One launcher per DIR: it holds
# a lock on DIR/.lock while it runs (released when it exits, however it exits), and a second one on
# the same DIR refuses at once, naming the pid that holds it (or the processes of an earlier
# launcher still running there). Ctrl-C stops everything (SIGTERM: agents checkpoint and say
# goodbye; SIGKILL after 15 s). A coordinator that dies (a signal) without --restart does not stop
# the agents: they train on, finish and keep their own results; the launcher waits for them.
# Exit status: 0 only when the run finished (summary.json says so), 3 when it stopped before the
# end (carry on with --resume), 4 when the coordinator died and nobody restarted it (the agents'
# results are in DIR/agents/rank-NN/, but there is no summary.json), 5 when DIR is in use by
# another launcher, 2 for bad arguments or a bad manifest, 130 after Ctrl-C, otherwise the
# failure's (non-zero).
# Binaries come from $GUT_BUILD_DIR (default: build/ of this checkout).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${GUT_BUILD_DIR:-$here/build}"
coordinator_bin="$build/coordinator/gut-coordinator"
agent_bin="$build/agent/gut-agentd"

usage() {  # $1: exit status (0: asked for with --help, to stdout)
  # The header comment: line 2 up to the first line that is not a comment.
  if [[ ${1:-2} == 0 ]]; then sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"; exit 0; fi
  sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}" >&2
  exit "$1"
}
manifest="" out="" sets=() agent_args=() restart=0 resume=0 insecure=0 peer_ports=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --manifest) manifest="${2:-}"; shift 2 ;;
    --out) out="${2:-}"; shift 2 ;;
    --set) sets+=(--set "${2:-}"); shift 2 ;;
    --restart) restart=1; shift ;;
    --resume) resume=1; shift ;;
    --insecure) insecure=1; shift ;;
    --agent-arg) agent_args+=("${2:-}"); shift 2 ;;  # extra flag for every gut-agentd (tests)
    --peer-ports) peer_ports="${2:-}"; shift 2
      [[ $peer_ports =~ ^[0-9]+:[0-9]+$ ]] || { echo "run-cluster: --peer-ports wants LISTEN_BASE:ADVERTISE_BASE, got '$peer_ports'" >&2; exit 2; } ;;
    -h|--help) usage 0 ;;
    --version) exec "$coordinator_bin" --version ;;
    *) echo "run-cluster: unknown argument '$1'" >&2; usage 2 ;;
  esac
done
[[ -n "$manifest" && -n "$out" ]] || { echo "run-cluster: --manifest and --out are required" >&2; usage 2; }
for b in "$coordinator_bin" "$agent_bin"; do
  [[ -x "$b" ]] || { echo "run-cluster: $b not found; build first (scripts/build.sh)" >&2; exit 2; }
done

n="$("$coordinator_bin" --manifest "$manifest" "${sets[@]}" --print-num-agents)" ||
  { echo "run-cluster: the manifest cannot be used (above)" >&2; exit 2; }  # the reason is on stderr
umask 027  # the run directory holds models, names and addresses: 0750/0640, as the daemons write
mkdir -p "$out/logs" "$out/agents" "$out/pids" || exit 2

# One launcher per run directory: a lock on DIR/.lock, held through a descriptor that only this
# shell has (every process it starts gets it closed: {lock_fd}>&-), so the kernel releases it
# when the launcher ends, kill -9 included. The file holds the holder's pid, for the message.
exec {lock_fd}>>"$out/.lock" || exit 2
if ! command -v flock >/dev/null; then
  echo "run-cluster: flock not found (util-linux): nothing keeps a second launcher off $out" >&2
elif ! flock -n "$lock_fd"; then
  holder="$(cat "$out/.lock" 2>/dev/null)"
  [[ -n "$holder" ]] || { sleep 0.2; holder="$(cat "$out/.lock" 2>/dev/null)"; }  # it is writing it
  echo "run-cluster: $out is in use: another run-cluster.sh (pid ${holder:-unknown}) runs there;" \
    "wait for it to end, stop it (kill -INT ${holder:-PID}), or use another --out" >&2
  exit 5
fi
printf '%s\n' "$$" >"$out/.lock"
# Processes an earlier launcher left behind (it was killed with -9: its children run on and still
# write here) also keep DIR busy.
stray=()
for f in "$out"/pids/*.pid; do
  [[ -f "$f" ]] || continue
  p="$(cat "$f" 2>/dev/null)"
  [[ $p =~ ^[0-9]+$ ]] || continue
  comm="$(cat "/proc/$p/comm" 2>/dev/null)"
  [[ $comm == gut-agentd || $comm == gut-coordinator ]] || continue
  # ... started for this DIR (its --out, or a --checkpoint-dir in it), not a reused pid
  while IFS= read -r -d '' arg; do
    if [[ $arg == "$out" || $arg == "$out"/agents/rank-* ]]; then stray+=("$comm (pid $p)"); break; fi
  done 2>/dev/null <"/proc/$p/cmdline"
done
if [[ ${#stray[@]} -gt 0 ]]; then
  echo "run-cluster: $out is in use: processes of an earlier launcher still run there: ${stray[*]};" \
    "stop them (kill -TERM PID) or wait for them to end" >&2
  exit 5
fi
rm -f "$out/coordinator.port"
[[ $resume == 1 ]] || rm -f "$out/summary.json"

# Mutual TLS: a CA and a certificate per process, made for this run (kept for --resume).
tls_coordinator=() 
if [[ $insecure == 0 ]]; then
  names=(gut-coordinator)
  for ((r = 0; r < n; r++)); do names+=("agent-$r"); done
  [[ $resume == 1 ]] || rm -rf "$out/tls"
  bash "$here/deploy/local/make-certs.sh" "$out/tls" "${names[@]}" {lock_fd}>&- || exit 2
  tls_coordinator=(--tls-ca "$out/tls/ca.pem" --tls-cert "$out/tls/gut-coordinator.pem" --tls-key "$out/tls/gut-coordinator.key"
                   --require-rank-binding)
fi
tls_agent() {  # $1: rank
  [[ $insecure == 1 ]] && return
  echo --tls-ca "$out/tls/ca.pem" --tls-cert "$out/tls/agent-$1.pem" --tls-key "$out/tls/agent-$1.key"
}

coord="" tail_pid=""
agent_pids=() agent_log_start=()
all_pids() { echo "$coord" "${agent_pids[@]}"; }
stop_all() {
  local sig="$1"
  for p in $(all_pids); do [[ -n "$p" ]] && kill "-$sig" "$p" 2>/dev/null; done
}
wait_gone() {  # up to $1 tenths of a second
  for _ in $(seq "$1"); do
    local alive=0
    for p in $(all_pids); do [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && return 0
    sleep 0.1
  done
  return 1
}
on_interrupt() {
  echo "run-cluster: stopping $n agents and the coordinator (continue later with --resume)..." >&2
  stop_all TERM
  if ! wait_gone 150; then
    for p in $(all_pids); do
      kill -0 "$p" 2>/dev/null && echo "run-cluster: $(cat "/proc/$p/comm" 2>/dev/null) (pid $p) did not stop within 15 s; killing it" >&2
    done
    stop_all KILL
  fi
  [[ -n "$tail_pid" ]] && kill "$tail_pid" 2>/dev/null
  exit 130
}
trap on_interrupt INT TERM

coordinator_cmd=("$coordinator_bin" --manifest "$manifest" "${sets[@]}" --port-file "$out/coordinator.port" --out "$out"
                 --metrics 127.0.0.1:0 "${tls_coordinator[@]}")
start_coordinator() {  # $1: listen address; extra flags follow
  local listen="$1"; shift
  "${coordinator_cmd[@]}" --listen "$listen" "$@" >>"$out/logs/coordinator.log" 2>&1 {lock_fd}>&- &
  coord=$!
  echo "$coord" >"$out/pids/coordinator.pid"
}
[[ $resume == 1 ]] || : >"$out/logs/coordinator.log"
log_start=$(( $(stat -c %s "$out/logs/coordinator.log" 2>/dev/null || echo 0) + 1 ))
if [[ $resume == 1 ]]; then start_coordinator 127.0.0.1:0 --resume; else start_coordinator 127.0.0.1:0; fi
for _ in $(seq 300); do
  [[ -s "$out/coordinator.port" ]] && break
  if ! kill -0 "$coord" 2>/dev/null; then
    # A coordinator that exits 0 before listening had nothing to do (--resume of a finished run).
    wait "$coord" && { tail -n 1 "$out/logs/coordinator.log" >&2; exit 0; }
    cat "$out/logs/coordinator.log" >&2
    exit 2
  fi
  sleep 0.1
done
port="$(cat "$out/coordinator.port" 2>/dev/null)"
[[ -n "$port" ]] || { echo "run-cluster: the coordinator did not start" >&2; stop_all KILL; exit 1; }

agent_log() { printf '%s/logs/agent-%02d.log' "$out" "$1"; }
agent_dir() { printf '%s/agents/rank-%02d' "$out" "$1"; }
start_agent() {  # $1: rank
  local dir
  dir="$(agent_dir "$1")"
  agent_log_start[$1]=$(( $(stat -c %s "$(agent_log "$1")" 2>/dev/null || echo 0) + 1 ))  # this start's lines
  local listen=(--listen 127.0.0.1:0)
  [[ -n "$peer_ports" ]] &&
    listen=(--listen "127.0.0.1:$((${peer_ports%%:*} + $1))" --advertise "127.0.0.1:$((${peer_ports##*:} + $1))")
  "$agent_bin" --coordinator "127.0.0.1:$port" "${listen[@]}" --rank "$1" --name "agent-$1" \
    --checkpoint-dir "$dir" --metrics 127.0.0.1:0 $(tls_agent "$1") "${agent_args[@]}" >>"$(agent_log "$1")" 2>&1 {lock_fd}>&- &
  agent_pids[$1]=$!
  printf '%s\n' "$!" >"$(printf '%s/pids/agent-%02d.pid' "$out" "$1")"
}
echo "run-cluster: coordinator on 127.0.0.1:$port, starting $n agents (logs in $out/logs/), $([[ $insecure == 1 ]] && echo plaintext || echo 'mutual TLS')$([[ $restart == 1 ]] && echo ', restarting any that crashes')"
for ((r = 0; r < n; r++)); do
  [[ $resume == 1 ]] || : >"$(agent_log "$r")"
  [[ $resume == 1 ]] || rm -f "$(agent_dir "$r")/params-final.f32"
  start_agent "$r"
done

tail -c "+$log_start" -f "$out/logs/coordinator.log" --pid="$$" {lock_fd}>&- &
tail_pid=$!

# Sets rc to the exit status of a finished child ("" while it runs); a death by signal reads
# 128 + the signal. Not a $(...) function: a command substitution is a subshell, whose wait
# cannot collect the parent's children and answers -1 (exit 255) when the child has just ended.
reap() { rc=""; if ! kill -0 "$1" 2>/dev/null; then wait "$1"; rc=$?; fi; }

status=0
coord_died=""  # the coordinator's status once it died without --restart: the agents go on alone
unjoined=()    # agents stopped because the coordinator died before they joined
while :; do
  if [[ -z "$coord_died" ]]; then
    reap "$coord"
    if [[ -n "$rc" ]]; then
      if [[ $restart == 1 && $rc -gt 128 ]]; then
        echo "run-cluster: the coordinator died (status $rc); starting it again on port $port" >&2
        start_coordinator "127.0.0.1:$port" --resume
        continue
      fi
      if [[ $rc -le 128 ]]; then  # it ended the run (finished, failed or stopped): the agents follow
        status=$rc
        break
      fi
      coord_died=$rc coord=""  # reaped: its pid may belong to someone else now
      status=4
      # An agent that has not joined yet has no run to train without it: stop it. One that has
      # trains on: its neighbours' addresses came with the join.
      joined=0
      for ((r = 0; r < n; r++)); do
        p="${agent_pids[$r]}"
        [[ -n "$p" ]] || { joined=$((joined + 1)); continue; }  # it has ended already
        if tail -c "+${agent_log_start[$r]}" "$(agent_log "$r")" 2>/dev/null | grep -qE "joined run .* as rank "; then
          joined=$((joined + 1))
        else
          kill -TERM "$p" 2>/dev/null
          unjoined[$r]=1
        fi
      done
      if [[ $joined == 0 ]]; then
        echo "run-cluster: the coordinator died (status $rc; see $out/logs/coordinator.log) before the agents" \
          "joined; stopping them" >&2
      else
        {
          echo "run-cluster: the coordinator died (status $rc; see $out/logs/coordinator.log) and nobody restarts it"
          echo "  (no --restart). The agents train on without it and keep their own results in"
          echo "  $out/agents/rank-NN/ (metrics.csv, params-final.f32); without it there is no summary.json."
          echo "  Waiting for the agents (at the end each waits --report-flush-s, 30 s by default, for it)."
          echo "  To bring it back while they run (--restart does this by itself):"
          echo "  $(printf '%q ' "${coordinator_cmd[@]}" --listen "127.0.0.1:$port" --resume)>>$(printf '%q' "$out/logs/coordinator.log") 2>&1 &"
        } >&2
        [[ ${#unjoined[@]} -gt 0 ]] && echo "run-cluster: stopped agent(s) ${!unjoined[*]}: not joined" >&2
      fi
    fi
  fi
  left=0
  for ((r = 0; r < n; r++)); do
    p="${agent_pids[$r]}"
    [[ -z "$p" ]] && continue
    reap "$p"
    [[ -z "$rc" ]] && { left=$((left + 1)); continue; }
    agent_pids[$r]=""
    [[ -n "${unjoined[$r]:-}" ]] && continue  # stopped above: the coordinator died before it joined
    if [[ $restart == 1 && ( $rc -gt 128 || ( $rc == 0 && ! -f "$(agent_dir "$r")/params-final.f32" ) ) ]]; then
      # Died, or stopped (SIGTERM) before the run ended.
      echo "run-cluster: agent $r $([[ $rc == 0 ]] && echo stopped || echo "died (status $rc)"); starting it again" >&2
      start_agent "$r"
      left=$((left + 1))
    elif [[ $rc != 0 ]]; then
      echo "run-cluster: agent $r exited with status $rc; last lines of its log:" >&2
      tail -n 5 "$(agent_log "$r")" >&2
      # The coordinator applies the run's fault policy (fault.on_peer_loss) once the agent has
      # stayed away for fault.rejoin_timeout_s.
      if [[ $rc -gt 128 && -z "$coord_died" ]]; then
        echo "run-cluster: nobody restarts it (no --restart); the coordinator applies fault.on_peer_loss" >&2
      fi
      [[ -n "$coord_died" ]] && status=1  # the run failed without its coordinator
    fi
  done
  [[ -n "$coord_died" && $left == 0 ]] && break
  sleep 0.5
done
# The agents finish right after the coordinator; give them a moment, then make sure.
for ((r = 0; r < n; r++)); do
  p="${agent_pids[$r]}"
  [[ -z "$p" ]] && continue
  for _ in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && { echo "run-cluster: agent $r still running; stopping it" >&2; kill -TERM "$p"; }
  wait "$p"; rc=$?
  [[ $rc != 0 && $status == 0 ]] && { echo "run-cluster: agent $r exited with status $rc" >&2; status=1; }
done
kill "$tail_pid" 2>/dev/null
if [[ $status == 4 ]]; then
  if [[ $(sed -n 's/^ *"status": "\([a-z]*\)".*/\1/p' "$out/summary.json" 2>/dev/null | head -n 1) == finished ]]; then
    status=0  # a coordinator brought back by hand (--resume) completed the run after all
  else
    finished=0
    for ((r = 0; r < n; r++)); do [[ -f "$(agent_dir "$r")/params-final.f32" ]] && finished=$((finished + 1)); done
    echo "run-cluster: the coordinator died (status $coord_died) and was not restarted; $finished of $n agents" \
      "finished the run without it (their results: $out/agents/rank-NN/metrics.csv, params-final.f32);" \
      "no summary.json" >&2
  fi
fi
if [[ $status == 0 ]]; then
  # The coordinator also exits 0 when it was stopped (SIGTERM) before the end: that run is not done.
  ended="$(sed -n 's/^ *"status": "\([a-z]*\)".*/\1/p' "$out/summary.json" 2>/dev/null | head -n 1)"
  if [[ $ended != finished ]]; then
    echo "run-cluster: the run stopped before it finished (summary.json: ${ended:-none}); carry on with" \
      "$0 --manifest $manifest --out $out --resume" >&2
    exit 3
  fi
  echo "run-cluster: done; results in $out (metrics.csv, metrics.svg, summary.json, status.html)"
fi
exit $status
