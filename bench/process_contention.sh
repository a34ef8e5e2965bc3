#!/usr/bin/env bash
# How much do separate processes alone cost, with no communication at all? A: one gut-sim running
# 2k agents on all cores. B: k gut-sim processes at once, 2 agents and 1 thread each (the same
# 2k agent-steps per round, no exchange between processes). Prints ms per round of each and B/A.
# This is the floor under any loopback cluster's ratio to gut-sim on this machine.
# Usage: bench/process_contention.sh [k]   (default 16: the 16-process cluster's count)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${GUT_BUILD_DIR:-$here/build}"
k="${1:-16}"
m="$here/deploy/examples/fmnist-ring16-qggutm-quick.yaml"
out="$here/out/process-contention"
ms() { /usr/bin/python3 -c "import json,sys; print('%.2f' % json.load(open(sys.argv[1]))['timing']['ms_per_training_round'])" "$1"; }
common=(--set run.epochs=2 --set run.eval_every=3 --set data.partition=iid)
"$build/sim/gut-sim" --manifest "$m" --out "$out/A" "${common[@]}" --set "agents.count=$((2 * k))" >/dev/null
a=$(ms "$out/A/summary.json")
for ((i = 0; i < k; i++)); do
  "$build/sim/gut-sim" --manifest "$m" --out "$out/B$i" "${common[@]}" --set agents.count=2 \
    --set topology.graph=full --set run.threads=1 >/dev/null &
done
wait
b=$(for ((i = 0; i < k; i++)); do ms "$out/B$i/summary.json"; done | /usr/bin/python3 -c "import sys; v=[float(x) for x in sys.stdin]; print('%.2f' % (sum(v)/len(v)))")
echo "A: 1 process x $((2 * k)) agents: $a ms per round"
echo "B: $k processes x 2 agents at once: $b ms per round (mean)"
echo "B/A: $(/usr/bin/python3 -c "print('%.3f' % ($b / $a))")"
