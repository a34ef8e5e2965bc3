#!/usr/bin/env bash
# The main job on its embedded default: a real loopback cluster (one gut-coordinator and 16
# gut-agentd processes on 127.0.0.1) trains LeNet-5 on Fashion-MNIST over a ring with QG-GUTm
# (3 epochs of the paper's protocol), installing and building first.
# Usage: ./run.sh [--manifest FILE] [--out DIR] [--set key.path=value ...]
#        ./run.sh --sim ...   runs the same manifest in gut-sim (one process) instead
set -euo pipefail
cd "$(dirname "$0")"
manifest=deploy/examples/fmnist-ring16-qggutm-quick.yaml
out=out/quick
sim=0
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --manifest) manifest=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --sim) sim=1; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
if [[ $sim == 1 ]]; then
  scripts/build.sh gut-sim >&2
  exec build/sim/gut-sim --manifest "$manifest" --out "$out" ${args[@]+"${args[@]}"}
fi
scripts/build.sh gut-coordinator gut-agentd >&2
exec deploy/local/run-cluster.sh --manifest "$manifest" --out "$out" ${args[@]+"${args[@]}"}
