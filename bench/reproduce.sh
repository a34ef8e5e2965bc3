#!/usr/bin/env bash
# Reproduces the paper's Fashion-MNIST experiments and the ablations beyond it with gut-sim, and
# writes the tables and plots (bench/results/fmnist-table.md; bench/results/reproduce/: *.svg, runs/<tag>/).
#
#   bench/reproduce.sh [--phase NAME]... [--seeds "12 1 2"] [--epochs 100] [--root DIR] [--list]
#
# Phases (default: all, in this order):
#   table      QG-DSGDm vs QG-GUTm, alpha 0.1 and 0.01, 16-agent ring (the poster's table)
#   dsgd-gut   DSGD vs GUT (beta = 0), alpha 0.1
#   baselines  every other method at alpha 0.1 (GT, D2, momentum tracking, RelaySGD, NGM, CGA,
#              DSGDm-N, QG-DSGDm of Lin et al.)
#   topology   ring vs torus vs Dyck at 32 agents, QG-DSGDm vs QG-GUTm, alpha 0.1
#   agents     8/16/32/64 agents on the ring, QG-DSGDm vs QG-GUTm, alpha 0.1
#   mu-grid    QG-GUTm at alpha 0.01 with mu in {0.005, 0.02, 0.05, 0.08} on the first seed, then
#              0.05 (the best there) on the others; the table uses 0.01, which the paper records
#              for alpha 0.1 only (ALGORITHMS.md 6.2)
#   table-ref  the table again with data.shuffle: reference (the reference code's DataLoader order:
#              ranks 1..n-1 share one permutation per epoch); methods qg-dsgdm-ref, qg-gutm-ref,
#              alpha 0.01 first
# Resumable: a run whose folder holds summary.json is done and skipped; a run is written to
# <tag>.partial and renamed only when gut-sim exits 0, so a stopped script loses at most the run in
# progress. Runs are deterministic: rerunning a tag gives the same numbers.
# --list prints the plan (done / to do) without running anything. The report (tables, plots) is
# rebuilt at the end from whatever runs are done: build/bench/reproduce_report --root DIR.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${GUT_BUILD_DIR:-$here/build}"
manifest="$here/deploy/examples/fmnist-ring16-qggutm.yaml"
root="$here/bench/results/reproduce"
seeds="12 1 2" epochs=100 list=0 phases=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --phase) phases+=("$2"); shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --root) root=$2; shift 2 ;;
    --list) list=1; shift ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "reproduce.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ ${#phases[@]} -eq 0 ]] && phases=(table dsgd-gut baselines topology agents mu-grid table-ref)
for p in "${phases[@]}"; do
  case "$p" in table|dsgd-gut|baselines|topology|agents|mu-grid|table-ref) ;;
    *) echo "reproduce.sh: unknown phase '$p' (table, dsgd-gut, baselines, topology, agents, mu-grid, table-ref)" >&2; exit 2 ;;
  esac
done
if [[ $list -eq 0 && ! -x "$build/sim/gut-sim" ]]; then
  echo "reproduce.sh: $build/sim/gut-sim not found; build first (./test.sh or scripts/build.sh)" >&2
  exit 1
fi

# Method name -> gut-sim overrides (the manifest is QG-GUTm, beta 0.9, mu 0.01, lr 0.1).
method_sets() {
  case "$1" in
    *-ref) echo "$(method_sets "${1%-ref}") --set data.shuffle=reference" ;;
    qg-gutm) echo "--set algorithm.name=qg-gutm" ;;
    qg-gutm-mu*) echo "--set algorithm.name=qg-gutm --set algorithm.mu=${1#qg-gutm-mu}" ;;
    qg-dsgdm) echo "--set algorithm.name=qg-dsgdm --set algorithm.mu=0" ;;
    dsgd) echo "--set algorithm.name=dsgd --set algorithm.momentum=0 --set algorithm.mu=0" ;;
    gut) echo "--set algorithm.name=gut --set algorithm.momentum=0 --set algorithm.mu=0.9" ;;
    gt) echo "--set algorithm.name=gt --set algorithm.momentum=0 --set algorithm.mu=0" ;;
    d2) echo "--set algorithm.name=d2 --set algorithm.momentum=0 --set algorithm.mu=0" ;;
    mt) echo "--set algorithm.name=mt --set algorithm.mu=0" ;;
    relaysgd) echo "--set algorithm.name=relaysgd --set algorithm.mu=0 --set topology.graph=chain --set topology.weights=metropolis" ;;
    ngm) echo "--set algorithm.name=ngm --set algorithm.mu=0" ;;
    cga) echo "--set algorithm.name=cga --set algorithm.mu=0" ;;
    dsgdm-n) echo "--set algorithm.name=dsgdm --set algorithm.mu=0 --set algorithm.nesterov=true" ;;
    qg-dsgdm-lin) echo "--set algorithm.name=qg-dsgdm-lin --set algorithm.mu=0" ;;
    *) echo "reproduce.sh: no settings for method $1" >&2; exit 1 ;;
  esac
}

# The plan: one line per run, "tag|overrides".
plan=()
add() {  # add GRAPH AGENTS ALPHA METHOD [SEEDS]
  local graph=$1 n=$2 alpha=$3 method=$4 seed
  for seed in ${5:-$seeds}; do
    local tag="fmnist-${graph}${n}-a${alpha}-${method}-s${seed}"
    local sets=" $(method_sets "$method") --set data.alpha=$alpha --set run.seed=$seed --set run.epochs=$epochs"
    [[ $graph != ring ]] && sets="$sets --set topology.graph=$graph"
    [[ $n != 16 ]] && sets="$sets --set agents.count=$n"
    plan+=("$tag|$sets")
  done
}
for p in "${phases[@]}"; do
  case "$p" in
    table) for a in 0.1 0.01; do for m in qg-dsgdm qg-gutm; do add ring 16 "$a" "$m"; done; done ;;
    dsgd-gut) for m in dsgd gut; do add ring 16 0.1 "$m"; done ;;
    # Seed-major: every method gets its first seed before any gets its second, so a partial run
    # of these long phases already covers every row.
    baselines) for s in $seeds; do for m in gt d2 mt relaysgd ngm cga dsgdm-n qg-dsgdm-lin; do add ring 16 0.1 "$m" "$s"; done; done ;;
    topology) for s in $seeds; do for g in ring torus dyck; do for m in qg-dsgdm qg-gutm; do add "$g" 32 0.1 "$m" "$s"; done; done; done ;;
    agents) for s in $seeds; do for n in 8 16 32 64; do for m in qg-dsgdm qg-gutm; do add ring "$n" 0.1 "$m" "$s"; done; done; done ;;
    # Every mu on the first seed; then the best of them there (0.05) on the other seeds.
    mu-grid) first=${seeds%% *}
             for mu in 0.02 0.05 0.005 0.08; do add ring 16 0.01 "qg-gutm-mu$mu" "$first"; done
             for s in ${seeds#"$first"}; do add ring 16 0.01 qg-gutm-mu0.05 "$s"; done ;;
    table-ref) for a in 0.01 0.1; do for m in qg-dsgdm-ref qg-gutm-ref; do add ring 16 "$a" "$m"; done; done ;;
  esac
done

mkdir -p "$root/runs"
total=${#plan[@]} done_count=0
for entry in "${plan[@]}"; do [[ -f "$root/runs/${entry%%|*}/summary.json" ]] && done_count=$((done_count + 1)); done
echo "reproduce: $total runs planned, $done_count done, $((total - done_count)) to do (root $root)"
k=0
for entry in "${plan[@]}"; do
  k=$((k + 1))
  tag=${entry%%|*} sets=${entry#*|}
  dir="$root/runs/$tag"
  if [[ -f "$dir/summary.json" ]]; then
    [[ $list -eq 1 ]] && echo "  done  $tag"
    continue
  fi
  if [[ $list -eq 1 ]]; then echo "  to do $tag: gut-sim --manifest ${manifest#$here/}$sets"; continue; fi
  echo "[$k/$total] $tag  ($(date -u +%H:%M:%S))"
  rm -rf "$dir.partial"
  mkdir -p "$dir.partial"
  echo "build/sim/gut-sim --manifest ${manifest#$here/} --out OUT$sets" > "$dir.partial/command.txt"
  # shellcheck disable=SC2086
  if "$build/sim/gut-sim" --manifest "$manifest" --out "$dir.partial" $sets > "$dir.partial/progress.log" 2>&1; then
    rm -rf "$dir" && mv "$dir.partial" "$dir"
    tail -n 2 "$dir/progress.log" | sed 's/^/    /'
  else
    echo "    FAILED (kept $dir.partial/progress.log):" >&2
    tail -n 5 "$dir.partial/progress.log" | sed 's/^/    /' >&2
  fi
done
[[ $list -eq 1 ]] && exit 0
if [[ -x "$build/bench/reproduce_report" ]]; then
  "$build/bench/reproduce_report" --root "$root"
else
  echo "reproduce: $build/bench/reproduce_report not built; tables not written" >&2
fi
