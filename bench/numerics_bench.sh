#!/usr/bin/env bash
# What run.numerics costs: gut-sim's training round in native, portable and portable-v3 mode on the
# same manifest, side by side (each repetition runs the three in turn; a mode needs a process of its
# own, since the libraries read its settings when they load), from each run's summary.json
# (timing.ms_per_training_round: training rounds only, no evaluation). Prints a markdown table of
# medians and of the median per-repetition ratios to native.
#   bench/numerics_bench.sh [--manifest FILE] [--reps K] [--set key=value ...] [--out FILE.md]
set -euo pipefail
cd "$(dirname "$0")/.."
manifest=deploy/examples/fmnist-ring16-qggutm-quick.yaml reps=5 out="" sets=(--set run.epochs=1 --set checkpoint.enabled=false)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --manifest) manifest=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --set) sets+=(--set "$2"); shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) sed -n '2,8p' "$0"; exit 2 ;;
  esac
done
build=${GUT_BUILD_DIR:-build}
work=$(mktemp -d /tmp/gut-numerics-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
modes=(native portable portable-v3)
for ((k = 1; k <= reps; k++)); do
  for m in "${modes[@]}"; do
    "$build/sim/gut-sim" --manifest "$manifest" --out "$work/$m-$k" "${sets[@]}" --set "run.numerics=$m" > "$work/$m-$k.log" 2>&1
    /usr/bin/python3 -c "import json; print(json.load(open('$work/$m-$k/summary.json'))['timing']['ms_per_training_round'])" \
      > "$work/$m-$k.ms"
    echo "rep $k $m: $(cat "$work/$m-$k.ms") ms per round" >&2
  done
done
table=$(/usr/bin/python3 - "$work" "$reps" "${modes[@]}" <<'PY'
import statistics, sys
work, reps, modes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
ms = {m: [float(open(f"{work}/{m}-{k}.ms").read()) for k in range(1, reps + 1)] for m in modes}
print("| run.numerics | ms per training round (median) | min | max | ratio to native (median of per-repetition ratios) |")
print("|---|---|---|---|---|")
for m in modes:
    ratio = statistics.median(a / b for a, b in zip(ms[m], ms["native"]))
    print(f"| {m} | {statistics.median(ms[m]):.2f} | {min(ms[m]):.2f} | {max(ms[m]):.2f} | {ratio:.3f} |")
PY
)
header="### numerics_bench, $(date -u '+%Y-%m-%d %H:%M UTC'): $manifest ${sets[*]}, $reps repetitions"
printf '%s\n\n%s\n' "$header" "$table" | tee ${out:+-a "$out"}
