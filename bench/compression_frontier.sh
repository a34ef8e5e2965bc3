#!/usr/bin/env bash
# Bytes against accuracy: gut-sim runs of the Fashion-MNIST protocol (16-agent ring, alpha 0.1,
# seed 12) for each codec over a small grid of consensus steps (exchange.consensus_step, gamma),
# QG-GUTm and DSGD. One row per run goes to a CSV (final accuracy, compression ratio = bytes on the
# wire / the same messages as fp32, replica error, status); build/bench/frontier_report turns the
# CSV into a table and a plot of final accuracy against bytes per round per edge.
#
#   bench/compression_frontier.sh [--quick] [--only REGEX] [--methods "qg-gutm dsgd"] [--list]
#                                 [--csv FILE] [--runs DIR] [--set KEY=VALUE ...]
#
#   --quick   the 3-epoch quick manifest (a screen: which gamma each codec needs, minutes per run);
#             default: the full 100-epoch protocol (about 7 minutes per run on 2 cores)
#   --only    run only the settings whose tag matches REGEX (e.g. 'topk' or 'g0\.2$')
#   --set     a further manifest override for every run (repeatable); the tag gets "-<last key
#             part>-<value>", e.g. --set algorithm.mu=0.05 tags "...-g0.3-mu-0.05"
#   GAMMAS    environment: the gamma grid for every codec family instead of its default grid
# Resumable: a tag already in the CSV is skipped (runs are deterministic). A run that diverges is
# recorded with status "failed" and its error.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${GUT_BUILD_DIR:-$here/build}"
quick=0 only="" methods="qg-gutm dsgd" list=0 csv="" runs="" extra=() suffix=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --only) only=$2; shift 2 ;;
    --methods) methods=$2; shift 2 ;;
    --list) list=1; shift ;;
    --csv) csv=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --set)
      [[ $2 == *=* ]] || { echo "--set wants KEY=VALUE, got '$2'" >&2; exit 2; }
      extra+=(--set "$2") k=${2%%=*}; suffix+="-${k##*.}-${2#*=}"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if ((quick)); then
  manifest="$here/deploy/examples/fmnist-ring16-qggutm-quick.yaml" kind=quick
else
  manifest="$here/deploy/examples/fmnist-ring16-qggutm.yaml" kind=full
fi
csv="${csv:-$here/bench/results/compression/frontier-$kind.csv}"
runs="${runs:-$here/out/frontier-$kind}"
mkdir -p "$(dirname "$csv")" "$runs"
header="tag,method,codec,fraction,values,rank,zstd,gamma,epochs,status,final_acc_mean,final_acc_min,final_acc_max,last_epoch_acc,compression_ratio,replica_error,wall_s,command"
[[ -s $csv ]] || echo "$header" >"$csv"

# codec settings: name|overrides (gamma is added per grid point)
settings=(
  "fp32|exchange.codec=fp32"
  "bf16|exchange.codec=bf16"
  "int8|exchange.codec=int8"
  "int8-zstd|exchange.codec=int8 exchange.zstd=true"
  "int4|exchange.codec=int4"
  "int4-zstd|exchange.codec=int4 exchange.zstd=true"
  "int2-c16k-zstd|exchange.codec=int2 exchange.int8_chunk=16384 exchange.zstd=true"
  "int2-c32k-zstd|exchange.codec=int2 exchange.int8_chunk=32768 exchange.zstd=true"
  "topk0.1-int8|exchange.codec=topk exchange.topk_fraction=0.1 exchange.sparse_values=int8"
  "topk0.2-int8|exchange.codec=topk exchange.topk_fraction=0.2 exchange.sparse_values=int8"
  "topk0.05-int8|exchange.codec=topk exchange.topk_fraction=0.05 exchange.sparse_values=int8"
  "topk0.01|exchange.codec=topk exchange.topk_fraction=0.01"
  "topk0.01-int8|exchange.codec=topk exchange.topk_fraction=0.01 exchange.sparse_values=int8"
  "randk0.1-int8|exchange.codec=randk exchange.topk_fraction=0.1 exchange.sparse_values=int8"
  "sign|exchange.codec=sign"
  "lowrank1|exchange.codec=lowrank exchange.lowrank_rank=1"
  "lowrank2|exchange.codec=lowrank exchange.lowrank_rank=2"
  "lowrank2-zstd|exchange.codec=lowrank exchange.lowrank_rank=2 exchange.zstd=true"
  "lowrank4|exchange.codec=lowrank exchange.lowrank_rank=4"
)
# The gamma grid per codec family (dense codecs: plain gossip only).
gammas() {
  case "$1" in
    fp32 | bf16 | int8 | int8-zstd) echo "${GAMMAS:-1}" ;;
    int4 | int4-zstd) echo "${GAMMAS:-1 0.5}" ;;
    int2*) echo "${GAMMAS:-0.5 0.3}" ;;
    *) echo "${GAMMAS:-1 0.5 0.2 0.1 0.05}" ;;
  esac
}

done_tags=$(cut -d, -f1 "$csv")
for method in $methods; do
  for s in "${settings[@]}"; do
    name=${s%%|*} overrides=${s#*|}
    for g in $(gammas "$name"); do
      tag="$method-$name-g$g$suffix"
      [[ -n $only && ! $tag =~ $only ]] && continue
      if grep -qx "$tag" <<<"$done_tags"; then
        ((list)) && echo "done   $tag"
        continue
      fi
      if ((list)); then echo "to do  $tag"; continue; fi
      sets=(--set "algorithm.name=$method" --set "exchange.consensus_step=$g")
      [[ $method == dsgd ]] && sets+=(--set algorithm.momentum=0 --set algorithm.mu=0)
      for o in $overrides; do sets+=(--set "$o"); done
      sets+=("${extra[@]}")
      out="$runs/$tag"
      rm -rf "$out"
      cmd="build/sim/gut-sim --manifest ${manifest#"$here/"} --out OUT ${sets[*]}"
      echo "[$(date -u +%T)] $tag" >&2
      status=finished error=""
      if ! "$build/sim/gut-sim" --manifest "$manifest" --out "$out" "${sets[@]}" --log-level warn >"$out.log" 2>&1; then
        status=failed
      fi
      /usr/bin/python3 - "$out" "$tag" "$method" "$name" "$g" "$status" "$cmd" "$out.log" >>"$csv" <<'PY'
import csv, json, os, sys
out, tag, method, name, gamma, status, cmd, log = sys.argv[1:9]
s = json.load(open(os.path.join(out, "summary.json"))) if os.path.exists(os.path.join(out, "summary.json")) else None
cfg = s["config"] if s else {}
fin = s["final"] if s else {}
ex = s["exchange"] if s else {}
last = s.get("last_epoch", {}) if s else {}
if s and s.get("status") == "failed":
    status = "failed"
row = [tag, method, name, cfg.get("topk_fraction", ""), cfg.get("sparse_values", ""), cfg.get("lowrank_rank", ""),
       cfg.get("zstd", ""), gamma, cfg.get("epochs", ""), status,
       fin.get("test_acc_mean", "") if status == "finished" else "", fin.get("test_acc_min", "") if status == "finished" else "",
       fin.get("test_acc_max", "") if status == "finished" else "", last.get("test_acc_mean", ""),
       ex.get("compression_ratio", ""), "" if ex.get("replica_error") is None else ex.get("replica_error"),
       s["timing"]["wall_s"] if s else "", cmd]
csv.writer(sys.stdout, lineterminator="\n").writerow(row)
PY
      tail -n 1 "$csv" | cut -d, -f1,10,11,15 >&2
    done
  done
done
((list)) || echo "rows in $csv; table and plot: build/bench/frontier_report --csv $csv" >&2
