#!/usr/bin/env bash
# deploy/local/run-cluster.sh keeps the command-line contract of the binaries (issue 21): --help
# exits 0 with the usage on stdout, --version prints the binaries' version, an unknown argument
# exits 2 naming it, and a manifest the coordinator refuses exits 2 with the reason on stderr
# (it used to vanish into a command substitution).
# And its run contract, on small real clusters (4 agents, a synthetic data set, 5 rounds an epoch,
# plaintext; 30 s to a minute on 2 cores):
#  - a finished run exits 0 saying "done", and leaves its lock (DIR/.lock) free;
#  - a coordinator killed with -9 (no --restart) does not stop the agents: they finish on their
#    own and write params-final.f32, and the launcher waits for them, says the coordinator died
#    and exits 4 (not "done": there is no summary.json);
#  - while a launcher runs, a second one on the same --out refuses at once (exit 5) naming its pid;
#  - Ctrl-C (SIGINT to the launcher) exits 130 with every process gone and a checkpoint on every
#    rank, every rank's newest of the same round (the agents stop at the round the coordinator
#    names: RunCommand.stop_round), so a --resume loses nothing;
#  - a launcher killed with -9 leaves its lock free, and a new launcher on its --out refuses
#    (exit 5) while the processes it started still run, naming them.
#   tests/launcher_contract.sh VERSION BUILD_DIR
set -uo pipefail
version="$1"
export GUT_BUILD_DIR="$2"
here="$(cd "$(dirname "$0")" && pwd)"
launcher="$here/../deploy/local/run-cluster.sh"
work="$(mktemp -d)"
bg=()  # launchers started in the background, and what they left behind
cleanup() {
  for f in "$work"/*/pids/*.pid; do [[ -f $f ]] && bg+=("$(cat "$f")"); done
  for p in "${bg[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
fail=0
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fail=1; }
check() {  # description, want exit code, stream (out|err), want regex, command...
  local what="$1" want="$2" stream="$3" re="$4"; shift 4
  "$@" >"$work/out" 2>"$work/err"
  local rc=$?
  if [[ $rc != "$want" ]] || ! grep -qE -- "$re" "$work/$stream"; then
    bad "$what: exit $rc (want $want), std$stream: $(head -c 300 "$work/$stream")"
  else
    ok "$what"
  fi
}
check "--help" 0 out "--manifest FILE --out DIR" bash "$launcher" --help
check "--version" 0 out "^gut-coordinator $version " bash "$launcher" --version
check "unknown argument" 2 err "unknown argument '--frobnicate'" bash "$launcher" --frobnicate
check "no manifest" 2 err "--manifest and --out are required" bash "$launcher" --out "$work/run"
check "bad --peer-ports" 2 err "--peer-ports wants LISTEN_BASE:ADVERTISE_BASE, got '9000'" bash "$launcher" --peer-ports 9000 --manifest x --out "$work/run"
printf 'run: {name: bad, epochs: -3}\n' >"$work/bad.yaml"
check "bad manifest" 2 err "run.epochs must be in \[1, 100000\], got -3" bash "$launcher" --manifest "$work/bad.yaml" --out "$work/run"

# ---- real clusters ----
mkdir -p "$work/data"
perl "$here/deploy/make-idx-dataset.pl" "$work/data" 320 100
cat >"$work/run.yaml" <<YAML
run: {name: launcher, seed: 3, epochs: 2, final_gossip_rounds: 3, eval_every: 100}
agents: {count: 4}
topology: {graph: ring}
algorithm: {name: qg-gutm, lr: 0.05, momentum: 0.9, mu: 0.01}
data: {path: $work/data, partition: dirichlet, alpha: 1.0, batch_size: 16, test_batch_size: 50}
model: {name: lenet5, init: gut}
exchange: {deadline_s: 60}
checkpoint: {every_rounds: 0}  # once an epoch
YAML
# Job control: a background job of a script would ignore SIGINT, and so would the launcher's trap.
set -m
start() {  # NAME [launcher args...]: a launcher in the background on --out $work/NAME; sets pid
  local name="$1"; shift
  bash "$launcher" --manifest "$work/run.yaml" --out "$work/$name" --insecure "$@" \
    >"$work/$name.out" 2>"$work/$name.err" &
  pid=$!
  bg+=("$pid")
}
finish() {  # PID SECONDS: waits for the launcher; sets rc (-1: still running, then killed)
  local p="$1"
  for _ in $(seq $(($2 * 10))); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$p" 2>/dev/null; then kill -KILL "$p"; wait "$p" 2>/dev/null; rc=-1; else wait "$p"; rc=$?; fi
}
wait_for() {  # FILE REGEX SECONDS; then notes the pids the launcher wrote, for the cleanup
  for _ in $(seq $(($3 * 10))); do
    if grep -qE -- "$2" "$1" 2>/dev/null; then
      for f in "${1%/logs/*}"/pids/*.pid; do [[ -f $f ]] && bg+=("$(cat "$f")"); done
      return 0
    fi
    sleep 0.1
  done
  return 1
}
newest() {  # DIR RANK: the newest round rank RANK holds a checkpoint of ("" for none)
  local r
  r="$(printf '%s/agents/rank-%02d/checkpoints' "$1" "$2")"
  ls "$r" 2>/dev/null | sed -n 's/^ckpt-0*\([0-9][0-9]*\)\(-stop\)\{0,1\}\.gutckpt$/\1/p' | sort -n | tail -n 1
}
finals() {  # DIR: how many ranks wrote params-final.f32
  ls "$1"/agents/rank-*/params-final.f32 2>/dev/null | wc -l
}

# A finished run; its lock is gone with it.
start done
finish "$pid" 180
if [[ $rc == 0 ]] && grep -q "run-cluster: done" "$work/done.out" &&
   grep -q '"status": "finished"' "$work/done/summary.json" && [[ $(finals "$work/done") == 4 ]]; then
  ok "a finished run exits 0 saying done"
else
  bad "a finished run: exit $rc, stdout: $(tail -n 2 "$work/done.out"), stderr: $(tail -n 5 "$work/done.err")"
fi
if flock -n "$work/done/.lock" true; then ok "the lock is free once the launcher has ended"
else bad "the lock is still held after the launcher ended"; fi

# The coordinator killed with -9 in the middle of the run, without --restart.
start nocoord --set run.epochs=12 --agent-arg --report-flush-s --agent-arg 2
if wait_for "$work/nocoord/logs/agent-00.log" "epoch 2/" 120; then
  kill -KILL "$(cat "$work/nocoord/pids/coordinator.pid")"
  finish "$pid" 240
  on_their_own=0  # agents that ended the run themselves (not stopped by the launcher)
  for r in 0 1 2 3; do
    grep -q "rank $r done: final test accuracy" "$(printf '%s/nocoord/logs/agent-%02d.log' "$work" "$r")" &&
      on_their_own=$((on_their_own + 1))
  done
  if [[ $rc == 4 && $(finals "$work/nocoord") == 4 && $on_their_own == 4 && ! -e "$work/nocoord/summary.json" ]] &&
     grep -q "the coordinator died (status 137" "$work/nocoord.err" && grep -q -- "--restart" "$work/nocoord.err" &&
     ! grep -q "run-cluster: done" "$work/nocoord.out"; then
    ok "a dead coordinator: the agents finish on their own (4 params-final.f32) and the launcher exits 4"
  else
    bad "a dead coordinator: exit $rc (want 4), $(finals "$work/nocoord") of 4 params-final.f32, $on_their_own of 4" \
      "agents done on their own, stderr: $(tail -n 12 "$work/nocoord.err")"
  fi
else
  bad "the coordinator-death cluster did not reach epoch 2: $(tail -n 5 "$work/nocoord.err")"
fi

# Ctrl-C in the middle of an epoch (and a second launcher on the directory before it).
start stop --set run.epochs=200
if wait_for "$work/stop/logs/agent-00.log" "epoch 3/" 120; then
  check "a second launcher on a busy --out" 5 err "in use: another run-cluster.sh \(pid $pid\)" \
    timeout 30 bash "$launcher" --manifest "$work/run.yaml" --out "$work/stop" --insecure
  sleep 0.$((RANDOM % 10))
  kill -INT "$pid"
  finish "$pid" 60
  running=""
  for f in "$work"/stop/pids/*.pid; do kill -0 "$(cat "$f")" 2>/dev/null && running+=" $(basename "$f" .pid)"; done
  rounds=()
  for r in 0 1 2 3; do rounds+=("$(newest "$work/stop" "$r")"); done
  if [[ $rc == 130 && -z "$running" && ${#rounds[*]} == 4 && -n ${rounds[0]} && -n ${rounds[1]} && -n ${rounds[2]} &&
        -n ${rounds[3]} ]] && ! grep -q "still running\|did not stop" "$work/stop.err"; then
    ok "Ctrl-C: exit 130, every process gone, every rank holds a checkpoint (newest: ${rounds[*]})"
  else
    bad "Ctrl-C: exit $rc (want 130), still running:${running:- none}, newest checkpoint per rank: ${rounds[*]}"
  fi
  same=$([[ $(printf '%s\n' "${rounds[@]}" | sort -u | wc -l) == 1 ]] && echo 1 || echo 0)
  if [[ $same == 1 ]]; then
    ok "after Ctrl-C every rank holds a checkpoint of round ${rounds[0]}"
  else
    bad "after Ctrl-C the ranks' newest checkpoints differ: ${rounds[*]} (a --resume loses the difference)"
  fi
else
  bad "the Ctrl-C cluster did not reach epoch 3: $(tail -n 5 "$work/stop.err")"
fi

# A launcher killed with -9: its lock goes with it, the processes it started keep DIR busy.
start stray --set run.epochs=200
if wait_for "$work/stray/logs/agent-00.log" "connected to all" 120; then
  kill -KILL "$pid"
  wait "$pid" 2>/dev/null
  freed=0
  for _ in $(seq 30); do flock -n "$work/stray/.lock" true && { freed=1; break; }; sleep 0.1; done
  if [[ $freed == 1 ]]; then ok "kill -9 of the launcher releases its lock"
  else bad "the lock outlived the launcher killed with -9"; fi
  check "a launcher on a directory whose processes still run" 5 err \
    "processes of an earlier launcher still run there: .*gut-coordinator \(pid $(cat "$work/stray/pids/coordinator.pid")\)" \
    timeout 30 bash "$launcher" --manifest "$work/run.yaml" --out "$work/stray" --insecure
  for f in "$work"/stray/pids/*.pid; do kill -TERM "$(cat "$f")" 2>/dev/null; done
else
  bad "the kill -9 cluster did not start: $(tail -n 5 "$work/stray.err")"
fi
exit $fail
