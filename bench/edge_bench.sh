#!/usr/bin/env bash
# Rounds on emulated edge links, lock-step against exchange.overlap: 1 (issue 23), side by side.
# Every agent's peer port sits behind its own bench/link_emulator (one-way delay D, rate R per
# direction; the launcher's --peer-ports makes the neighbours dial the emulator), the cluster is
# the launcher's (mutual TLS), and each rep runs every variant once, in turn, so load drifts hit
# all of them alike. Loopback runs of the same variants stand beside them.
#
#   bench/edge_bench.sh [--agents N] [--delay-ms D] [--rate-mbit R] [--codecs "fp32 int8"]
#                       [--epochs E] [--reps K] [--manifest FILE] [--out DIR]
#
# Per run: ms per training round (summary.json), the agents' own mean compute and wait per round
# (gut_agent_round_{compute,wait}_seconds, every rank), the bytes of one message (the agents'
# gut_agent_peer_sent_bytes_total per edge per round), and the physical limit of a synchronous
# ring on these links:
#   compute = the loopback round of the same codec and overlap, run beside it: what a round costs
#             when the link costs nothing (with more agents than cores it is CPU-bound: the
#             gradients, TLS and gRPC work of every agent on the machine's cores; an agent's own
#             "compute" leaves out the time it waits for neighbours that wait for a core)
#   tx      = message bytes x 8 / R (each connection, i.e. each edge, is its own emulated link
#             per direction; one message per edge per direction per round)
#   lock-step limit = compute + tx + D        overlap limit = max(compute, tx + D)
# and round / limit. The last table gives, per rep and codec, overlap / lock-step on the links.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${GUT_BUILD_DIR:-$here/build}"
manifest="$here/deploy/examples/fmnist-ring16-qggutm-quick.yaml"
agents=8 delay=10 rate=100 codecs="fp32 int8" epochs=1 reps=2 out="$here/out/edge-bench"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --agents) agents=$2; shift 2 ;;
    --delay-ms) delay=$2; shift 2 ;;
    --rate-mbit) rate=$2; shift 2 ;;
    --codecs) codecs=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --manifest) manifest=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
done
emulator="$build/bench/link_emulator"
[[ -x $emulator ]] || { echo "edge_bench: $emulator not built (cmake --build build --target link_emulator)" >&2; exit 2; }
py=/usr/bin/python3
sets=(--set "agents.count=$agents" --set "run.epochs=$epochs" --set "run.eval_every=$((epochs + 1))"
      --set run.final_gossip_rounds=1 --set checkpoint.enabled=false)
emu_pids=()
stop_emulators() { for p in "${emu_pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; emu_pids=(); }
trap stop_emulators EXIT
run() {  # DIR emulate(0|1) codec overlap
  local dir=$1 emulate=$2 codec=$3 overlap=$4 ports=()
  rm -rf "$dir"
  if [[ $emulate == 1 ]]; then
    local base=$((20000 + RANDOM % 20000))
    for ((r = 0; r < agents; r++)); do
      "$emulator" --listen "127.0.0.1:$((base + 100 + r))" --to "127.0.0.1:$((base + r))" --delay-ms "$delay" \
        --rate-mbit "$rate" >"$dir.emulator-$r.log" 2>&1 &
      emu_pids+=($!)
    done
    ports=(--peer-ports "$base:$((base + 100))")
  fi
  "$here/deploy/local/run-cluster.sh" --manifest "$manifest" --out "$dir" "${sets[@]}" --set "exchange.codec=$codec" \
    --set "exchange.overlap=$overlap" "${ports[@]}" >"$dir.log" 2>&1 ||
    { tail -5 "$dir.log" >&2; echo "edge_bench: run in $dir failed" >&2; exit 1; }
  stop_emulators
}
# One row: ms/round, the agents' compute and wait, message bytes, tx, limit, round / limit (ms).
row() {  # DIR emulate overlap LOOPBACK_DIR
  $py - "$1" "$2" "$3" "$delay" "$rate" "$4" <<'PY'
import glob, json, re, sys
d, emulate, overlap, delay, rate, loop = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1", float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
ms_of = lambda x: json.load(open(x + "/summary.json"))["timing"]["ms_per_training_round"]
s = json.load(open(d + "/summary.json"))
ms = s["timing"]["ms_per_training_round"]
comp = wait = n = 0.0
sent = edges = 0.0
rounds = s["timing"]["rounds"]
for f in glob.glob(d + "/agents/rank-*/metrics.prom"):
    t = open(f).read()
    g = lambda k: float(re.search(r"^%s (\S+)" % k, t, re.M).group(1))
    c = g("gut_agent_round_compute_seconds_count")
    comp += 1000 * g("gut_agent_round_compute_seconds_sum") / c
    wait += 1000 * g("gut_agent_round_wait_seconds_sum") / c
    n += 1
    v = [float(x) for x in re.findall(r'^gut_agent_peer_sent_bytes_total\{peer="\d+"\} (\S+)', t, re.M)]
    sent += sum(v); edges += len(v)
comp /= n; wait /= n
msg = sent / edges / rounds
floor = ms_of(loop)
tx = msg * 8 / (rate * 1e3) if emulate else 0.0  # ms
lat = delay if emulate else 0.0
limit = max(floor, tx + lat) if overlap else floor + tx + lat
print("%.1f | %.1f / %.1f | %.0f | %.1f | %.1f | %.1f | %.2f" % (ms, comp, wait, msg, floor, tx, limit, ms / limit))
PY
}
ms() { $py -c "import json,sys; print(json.load(open(sys.argv[1]))['timing']['ms_per_training_round'])" "$1/summary.json"; }
mkdir -p "$out"
echo "# Rounds on emulated links: $(basename "$manifest"), $agents agents, $epochs epoch(s), $reps reps, $(nproc) cores, $(date -u +%F)"
echo
echo "Command: \`bench/edge_bench.sh --agents $agents --delay-ms $delay --rate-mbit $rate --codecs \"$codecs\" --epochs $epochs --reps $reps\`"
echo "Links: one-way delay $delay ms (RTT $((2 * delay)) ms), $rate Mbit/s per direction; mutual TLS. Times in ms per training round."
echo
echo "| rep | link | codec | overlap | round | agents' compute / wait | message bytes | compute (loopback round) | tx | limit | round / limit |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
declare -A ratio
for ((k = 1; k <= reps; k++)); do
  for codec in $codecs; do
    for emulate in 0 1; do
      for overlap in 0 1; do
        dir="$out/$codec-e$emulate-o$overlap"
        run "$dir" "$emulate" "$codec" "$overlap"
        link=$([[ $emulate == 1 ]] && echo "emulated" || echo "loopback")
        echo "| $k | $link | $codec | $overlap | $(row "$dir" "$emulate" "$overlap" "$out/$codec-e0-o$overlap") |"
      done
    done
    ratio[$k-$codec]=$($py -c "import sys; print('%.3f' % (float(sys.argv[1]) / float(sys.argv[2])))" \
      "$(ms "$out/$codec-e1-o1")" "$(ms "$out/$codec-e1-o0")")
  done
done
echo
echo "| rep | codec | overlap / lock-step round, emulated links |"
echo "|---|---|---|"
for ((k = 1; k <= reps; k++)); do
  for codec in $codecs; do echo "| $k | $codec | ${ratio[$k-$codec]} |"; done
done
