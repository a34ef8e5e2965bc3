#!/usr/bin/env bash
# What the service costs per training round against gut-sim, measured side by side on one machine
# (bench/results/<date>-cluster-vs-sim.md keeps the tables). Each rep runs
# every variant once, in turn, so load drifts hit all of them alike; the table gives each run's
# training time per round (summary.json timing.ms_per_training_round; evaluation off until the
# last epoch) and per-rep ratios, then the median ratio of each comparison:
#
#   tls        loopback cluster, mutual TLS (the launcher's default), checkpoints every epoch
#   plain      the same with --insecure (plaintext gRPC)
#   plain8     plaintext with exchange.codec=int8 (a quarter of the bytes: is the cost per byte?)
#   nockpt     mutual TLS with checkpoint.enabled=false
#   sim        gut-sim on the same manifest (16 agents in one process)
#   pair       a 2-agent cluster (mutual TLS, checkpoints) and pair-sim, gut-sim with 2 agents
#   pair-plain the 2-agent cluster with --insecure
#
#   bench/cluster_bench.sh [--manifest FILE] [--epochs N] [--reps R] [--out DIR] [--pair-overlap]
#
# --pair-overlap runs only the pair, lock-step against exchange.overlap: 1 (issue 23): per rep the
# 2-agent cluster (mutual TLS) and pair-sim, each with overlap 0 and 1, and the ratios
# pair/pair-sim for both, with the pair agents' compute / wait split.
#
# Ratios: tls/plain (what mTLS costs), tls/nockpt (what checkpointing every epoch costs: on the
# run's wall time, since a checkpoint is written between rounds and so is not in the per-round
# time), tls/sim and plain/sim (the cluster against gut-sim), pair/pair-sim and pair-plain/pair-sim
# (two processes against one), with the pair agents' own split of a round into compute and waiting
# for the neighbour's message (gut_agent_round_{compute,wait}_seconds). Then the bytes on the wire
# per round per edge for fp32, bf16 and int8, from the agents' last /metrics page.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${GUT_BUILD_DIR:-$here/build}"
manifest="$here/deploy/examples/fmnist-ring16-qggutm-quick.yaml"
epochs=2 reps=3 out="$here/out/cluster-bench" pair_overlap=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --manifest) manifest=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --pair-overlap) pair_overlap=1; shift ;;
    *) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
done
py=/usr/bin/python3
ms() { $py -c "import json,sys; print('%.2f' % json.load(open(sys.argv[1]))['timing']['ms_per_training_round'])" "$1/summary.json"; }
wall() { $py -c "import json,sys; print('%.2f' % json.load(open(sys.argv[1]))['timing']['wall_s'])" "$1/summary.json"; }
ratio() { $py -c "import sys; print('%.3f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$1" "$2"; }
median() { printf '%s\n' "$@" | sort -n | sed -n "$((($# + 1) / 2))p"; }
sets=(--set "run.epochs=$epochs" --set "run.eval_every=$((epochs + 1))")
pair=(--set agents.count=2 --set topology.graph=chain --set run.final_gossip_rounds=5)
cluster() {  # DIR [launcher args]
  local dir=$1; shift
  rm -rf "$dir"
  "$here/deploy/local/run-cluster.sh" --manifest "$manifest" --out "$dir" "${sets[@]}" "$@" >"$dir.log" 2>&1 ||
    { tail -5 "$dir.log" >&2; echo "cluster_bench: cluster run in $dir failed" >&2; exit 1; }
}
sim() {  # DIR [gut-sim args]
  local dir=$1; shift
  rm -rf "$dir"
  "$build/sim/gut-sim" --manifest "$manifest" --out "$dir" "${sets[@]}" "$@" >"$dir.log" 2>&1
}
mkdir -p "$out"
echo "# Service overhead per training round: $(basename "$manifest"), $epochs epochs, $reps reps, $(nproc) cores, $(date -u +%F)"
r_tls=() r_ck=() r_sim=() r_plain=() r_pair=() r_pplain=()
# A pair agent's mean compute and wait per round, ms (rank 0), from its last /metrics page.
split() { $py - "$1/agents/rank-00/metrics.prom" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
n = float(re.search(r"^gut_agent_round_compute_seconds_count (\S+)", t, re.M).group(1))
s = lambda k: float(re.search(r"^gut_agent_round_%s_seconds_sum (\S+)" % k, t, re.M).group(1))
print("%.2f / %.2f" % (1000 * s("compute") / n, 1000 * s("wait") / n))
PY
}
if [[ $pair_overlap == 1 ]]; then
  echo
  echo "Command: \`bench/cluster_bench.sh --pair-overlap --epochs $epochs --reps $reps\`; 2 agents (chain), one process each."
  echo
  echo "| rep | pair | pair-sim | pair overlap | pair-sim overlap | pair/pair-sim | pair/pair-sim, overlap | overlap/lock-step (pair) | compute / wait | compute / wait, overlap |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  r0=() r1=()
  for ((k = 1; k <= reps; k++)); do
    cluster "$out/pair-o0" "${pair[@]}"
    sim "$out/pair-sim-o0" "${pair[@]}"
    cluster "$out/pair-o1" "${pair[@]}" --set exchange.overlap=1
    sim "$out/pair-sim-o1" "${pair[@]}" --set exchange.overlap=1
    c0=$(ms "$out/pair-o0") s0=$(ms "$out/pair-sim-o0") c1=$(ms "$out/pair-o1") s1=$(ms "$out/pair-sim-o1")
    a=$(ratio "$c0" "$s0") b=$(ratio "$c1" "$s1")
    r0+=("$a") r1+=("$b")
    echo "| $k | $c0 | $s0 | $c1 | $s1 | $a | $b | $(ratio "$c1" "$c0") | $(split "$out/pair-o0") | $(split "$out/pair-o1") |"
  done
  echo
  echo "median: pair/pair-sim $(median "${r0[@]}"), with overlap $(median "${r1[@]}")"
  exit 0
fi
echo
echo "Command: \`bench/cluster_bench.sh --epochs $epochs --reps $reps\`; ms per training round (evaluation excluded)."
echo
echo "| rep | tls | plain | plain8 | nockpt | sim | pair | pair-plain | pair-sim | tls wall s | nockpt wall s | tls/plain | tls/nockpt (wall) | tls/sim | plain/sim | plain8/sim | pair/pair-sim | pair-plain/pair-sim | pair-plain compute / wait |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for ((k = 1; k <= reps; k++)); do
  cluster "$out/tls"
  cluster "$out/plain" --insecure
  cluster "$out/plain8" --insecure --set exchange.codec=int8
  cluster "$out/nockpt" --set checkpoint.enabled=false
  sim "$out/sim"
  cluster "$out/pair" "${pair[@]}"
  cluster "$out/pair-plain" --insecure "${pair[@]}"
  sim "$out/pair-sim" "${pair[@]}"
  t=$(ms "$out/tls") p=$(ms "$out/plain") p8=$(ms "$out/plain8") n=$(ms "$out/nockpt") s=$(ms "$out/sim")
  c2=$(ms "$out/pair") p2=$(ms "$out/pair-plain") s2=$(ms "$out/pair-sim")
  wt=$(wall "$out/tls") wn=$(wall "$out/nockpt")
  a=$(ratio "$t" "$p") b=$(ratio "$wt" "$wn") c=$(ratio "$t" "$s") e=$(ratio "$p" "$s") f=$(ratio "$p8" "$s")
  d=$(ratio "$c2" "$s2") g=$(ratio "$p2" "$s2")
  r_tls+=("$a") r_ck+=("$b") r_sim+=("$c") r_plain+=("$e") r_pair+=("$d") r_pplain+=("$g")
  echo "| $k | $t | $p | $p8 | $n | $s | $c2 | $p2 | $s2 | $wt | $wn | $a | $b | $c | $e | $f | $d | $g | $(split "$out/pair-plain") |"
done
echo
echo "median: tls/plain $(median "${r_tls[@]}"), tls/nockpt (wall) $(median "${r_ck[@]}"), tls/sim $(median "${r_sim[@]}"), plain/sim $(median "${r_plain[@]}"), pair/pair-sim $(median "${r_pair[@]}"), pair-plain/pair-sim $(median "${r_pplain[@]}")"
echo
echo "| codec | bytes per round per edge | / 4P |"
echo "|---|---|---|"
for codec in fp32 bf16 int8; do
  "$here/deploy/local/run-cluster.sh" --manifest "$manifest" --out "$out/$codec" --set run.epochs=1 \
    --set "exchange.codec=$codec" >/dev/null 2>&1
  $py - "$out/$codec" "$codec" <<'PY'
import glob, json, re, sys
d, codec = sys.argv[1], sys.argv[2]
p = json.load(open(d + "/summary.json"))["exchange"]["num_params"]
total = rounds = edges = 0
for f in glob.glob(d + "/agents/rank-*/metrics.prom"):
    text = open(f).read()
    sent = [float(v) for v in re.findall(r'^gut_agent_peer_sent_bytes_total\{peer="\d+"\} (\S+)', text, re.M)]
    total += sum(sent); edges += len(sent)
    rounds = float(re.search(r"^gut_agent_rounds_completed_total (\S+)", text, re.M).group(1))
# Messages per edge: one per training round plus one per final gossip round.
gossip = json.load(open(d + "/summary.json"))["timing"]["rounds"] - rounds
per = total / edges / (rounds + gossip)
print("| %s | %.0f | %.4f |" % (codec, per, per / (4 * p)))
PY
done
