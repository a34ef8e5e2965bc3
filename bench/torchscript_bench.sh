#!/usr/bin/env bash
# What a user's TorchScript model costs against the same network built into gut: LeNet-5 written in
# Python (examples/own-model/models.py), scripted and saved by Debian's python3-torch, against the
# zoo's lenet5 at the same initial weights (model.init: torch is PyTorch's own initialisation for
# the same seed), in gut-sim side by side (round_bench --against, alternating repetitions), after
# checking that both compute the same parameters to the bit over one epoch.
#   bench/torchscript_bench.sh [--out FILE.md] [--reps K] [--rounds R]
set -euo pipefail
cd "$(dirname "$0")/.."
out="" reps=7 rounds=118
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) sed -n '2,8p' "$0"; exit 2 ;;
  esac
done
build=${GUT_BUILD_DIR:-build}
work=$(mktemp -d /tmp/gut-ts-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 examples/own-model/make_model.py --model lenet5 --seed 12 --out "$work/lenet5.pt" >&2
manifest=deploy/examples/fmnist-ring16-qggutm-quick.yaml
ts=(--set model.name=torchscript --set "model.path=$work/lenet5.pt")
for v in zoo ts; do
  extra=(); [[ $v == ts ]] && extra=("${ts[@]}")
  "$build/sim/gut-sim" --manifest "$manifest" --out "$work/$v" --set run.epochs=1 --set model.init=torch \
    --set checkpoint.enabled=false "${extra[@]}" > "$work/$v.log" 2>&1
done
same=0
for f in "$work"/zoo/agents/*/params-final.f32; do
  cmp -s "$f" "$work/ts/agents/$(basename "$(dirname "$f")")/params-final.f32" && same=$((same + 1))
done
echo "one epoch, 16 agents: $same of 16 agents' params-final.f32 identical (zoo lenet5 vs TorchScript LeNet-5)" >&2
table=$("$build/bench/round_bench" --manifest "$manifest" --set model.init=torch --rounds "$rounds" --reps "$reps" \
  --against model.name=torchscript --against "model.path=$work/lenet5.pt")
{
  echo "$table" | sed "s|$work/lenet5.pt|lenet5.pt|g"
  echo "- one epoch of the 16-agent quick manifest: $same of 16 agents end with identical params-final.f32"
} | tee ${out:+-a "$out"}
