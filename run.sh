#!/usr/bin/env bash
# The main job on its embedded default: 16 agents on a ring train LeNet-5 on Fashion-MNIST with
# QG-GUTm (3 epochs of the paper's protocol), installing and building first.
# Usage: ./run.sh [--manifest FILE] [--out DIR] [--set key.path=value ...]
set -euo pipefail
cd "$(dirname "$0")"
scripts/build.sh gut-sim >&2
manifest=deploy/examples/fmnist-ring16-qggutm-quick.yaml
out=out/quick
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --manifest) manifest=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
exec build/sim/gut-sim --manifest "$manifest" --out "$out" ${args[@]+"${args[@]}"}
