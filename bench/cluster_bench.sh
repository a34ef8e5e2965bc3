#!/usr/bin/env bash
# Per-round wall time of a loopback cluster (gut-coordinator + n gut-agentd processes) against
# gut-sim on the same manifest, measured side by side: the two alternate, `reps` times each, and
# the table reports each run's training time per round (evaluation excluded: run.eval_every is set
# past the last epoch, so only the final epoch evaluates) and the median ratio. Then bytes on the
# wire per round per edge for fp32, bf16 and int8, from the agents' last /metrics page.
# Usage: bench/cluster_bench.sh [--manifest FILE] [--epochs N] [--reps R] [--out DIR]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${GUT_BUILD_DIR:-$here/build}"
manifest="$here/deploy/examples/fmnist-ring16-qggutm-quick.yaml"
epochs=2 reps=3 out="$here/out/cluster-bench"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --manifest) manifest=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
py=/usr/bin/python3
ms() { $py -c "import json,sys; print('%.2f' % json.load(open(sys.argv[1]))['timing']['ms_per_training_round'])" "$1"; }
sets=(--set "run.epochs=$epochs" --set "run.eval_every=$((epochs + 1))")
echo "# cluster vs gut-sim: $(basename "$manifest"), $epochs epochs, $reps reps, $(nproc) cores, $(date -u +%F)"
echo
echo "| rep | gut-sim ms/round | cluster ms/round | ratio |"
echo "|---|---|---|---|"
ratios=()
for ((k = 1; k <= reps; k++)); do
  "$build/sim/gut-sim" --manifest "$manifest" --out "$out/sim" "${sets[@]}" >/dev/null
  "$here/deploy/local/run-cluster.sh" --manifest "$manifest" --out "$out/cluster" "${sets[@]}" >/dev/null 2>&1
  s=$(ms "$out/sim/summary.json"); c=$(ms "$out/cluster/summary.json")
  r=$($py -c "print('%.3f' % ($c / $s))")
  ratios+=("$r")
  echo "| $k | $s | $c | $r |"
done
echo
echo "median ratio: $(printf '%s\n' "${ratios[@]}" | sort -n | sed -n "$(((reps + 1) / 2))p")"
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
