#!/usr/bin/env bash
# Your model, your data, end to end with the real Python side (issue 19's acceptance): Debian's
# python3-torch defines a small CNN with BatchNorm and dropout and a small MLP regressor
# (examples/own-model/models.py), scripts and saves them, and writes a Fashion-MNIST subset and a
# synthetic regression set as .npy. gut-sim trains each on 4 agents; a 4-agent loopback cluster
# (mutual TLS, agents without a model file: the coordinator hands it over) trains the CNN and
# must end with every agent's params-final.f32 equal to gut-sim's byte for byte. Python loads
# every model-final.pt (and gut-sim's model-average.pt) and its test accuracy or RMSE must equal
# what gut reported, to 1e-6; the built-in LeNet-5's (and ResNet-20's) model-final.pt loads with
# torch.load into models.LeNet5 (zoo.py's resnet) and gives gut's accuracy. Finally an agent started with another model file
# (--model) is refused with a message saying so.
# Usage: python_e2e.sh SOURCE_DIR BUILD_DIR. Exits 77 (skipped) without python3-torch.
set -uo pipefail
src="$1" build="$2"
py=/usr/bin/python3
if ! "$py" -c "import torch, numpy" 2>/dev/null; then
  echo "SKIP: Debian's python3-torch (and python3-numpy) are not installed: bash deploy/install-deps.sh --with-test-tools"
  exit 77
fi
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "SKIP: dataset-fashion-mnist is not installed"; exit 77; }
work="$(mktemp -d /tmp/gut-own-model.XXXXXX)"
trap 'pkill -P $$ 2>/dev/null; rm -rf "$work"' EXIT
ex="$src/examples/own-model"
fail() { echo "FAIL: $*"; for f in "$work"/*/logs/*.log; do [[ -f $f ]] && { echo "== $f"; tail -n 20 "$f"; }; done; exit 1; }
log() { echo "-- $*"; }

"$py" "$ex/make_data.py" fmnist --out "$work/fm" --train 2000 --test 500 || fail "make_data fmnist"
"$py" "$ex/make_data.py" regression --out "$work/reg" --train 2000 --test 500 --features 8 || fail "make_data regression"
"$py" - "$work/img32" <<'PY' || fail "writing the 3x32x32 set"
import os, sys, numpy as np
rng = np.random.default_rng(1)
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for split, n in (("train", 256), ("test", 40)):
    y = rng.integers(0, 10, n)
    x = rng.normal(0, 0.5, (n, 3, 32, 32)).astype(np.float32)
    for i, c in enumerate(y):
        x[i, c % 3, 3 * c:3 * c + 4, :] += 1.5   # a class-specific stripe
    np.save(os.path.join(out, split + "_x.npy"), x)
    np.save(os.path.join(out, split + "_y.npy"), y.astype(np.int64))
PY
"$py" "$ex/make_model.py" --model cnn --dropout 0.2 --out "$work/cnn.pt" || fail "make_model cnn"
"$py" "$ex/make_model.py" --model mlp --features 8 --out "$work/mlp.pt" || fail "make_model mlp"

manifest() {  # NAME DATA MODEL_YAML EPOCHS [EXTRA]
  cat > "$work/$1.yaml" <<YAML
run: {name: $1, seed: 5, epochs: $4, final_gossip_rounds: 5, threads: 2}
agents: {count: 4}
topology: {graph: ring}
algorithm: {name: qg-gutm, lr: 0.05, momentum: 0.9, mu: 0.01}
data: {dataset: npy, path: $2, partition: ${6:-dirichlet}, alpha: 1.0, batch_size: 32, test_batch_size: 100}
model: $3
exchange: {deadline_s: 60}
${5:-}
YAML
}
manifest cnn "$work/fm" "{name: torchscript, path: $work/cnn.pt}" 2
manifest mlp "$work/reg" "{name: torchscript, path: $work/mlp.pt, loss: mse}" 2 "" iid
manifest zoo "$work/fm" "{name: lenet5}" 1
manifest resnet "$work/img32" "{name: resnet20, norm: evonorm}" 1 "" iid

for m in cnn mlp zoo resnet; do
  "$build/sim/gut-sim" --manifest "$work/$m.yaml" --out "$work/sim-$m" > "$work/sim-$m.log" 2>&1 ||
    { cat "$work/sim-$m.log"; fail "gut-sim $m"; }
  log "gut-sim $m: $(grep -o 'final (after.*' "$work/sim-$m.log" | cut -c1-90)"
done
grep -q '"metric": "rmse"' "$work/sim-mlp/summary.json" || fail "the regression's summary.json does not name its metric rmse"
head -1 "$work/sim-mlp/metrics.csv" | grep -q test_rmse_mean || fail "the regression's metrics.csv has no test_rmse columns"

log "4-agent loopback cluster (mutual TLS) on the CNN; the agents get the model from the coordinator"
GUT_BUILD_DIR="$build" "$src/deploy/local/run-cluster.sh" --manifest "$work/cnn.yaml" --out "$work/cluster-cnn" \
  > "$work/cluster.log" 2>&1 || { tail -n 30 "$work/cluster.log"; fail "the cluster run failed"; }
for r in 0 1 2 3; do
  d=$(printf 'rank-%02d' "$r")
  cmp "$work/cluster-cnn/agents/$d/params-final.f32" "$work/sim-cnn/agents/$d/params-final.f32" ||
    fail "rank $r: the cluster's params-final.f32 differs from gut-sim's"
  grep -q "received the run's model file from the coordinator" "$work/cluster-cnn/logs/agent-$(printf %02d "$r").log" ||
    fail "rank $r did not receive the model from the coordinator"
done
log "cluster == gut-sim, byte for byte, on all 4 agents"

check() {  # SUMMARY KEY MODEL_DIR LOSS [ZOO]
  local want got
  for r in 0 1 2 3; do
    want=$("$py" -c "import json,sys; print(json.load(open('$1'))['final']['$2'][$r])")
    got=$("$py" "$ex/evaluate.py" --model "$3/agents/$(printf 'rank-%02d' $r)/model-final.pt" --data "$4" \
          --loss "$5" ${6:+--zoo $6} | "$py" -c "import json,sys; print(json.load(sys.stdin)['value'])") ||
      fail "python could not load $3 rank $r's model-final.pt"
    "$py" -c "import sys; sys.exit(0 if abs($want - $got) <= 1e-6 else 1)" ||
      fail "$3 rank $r: gut reported $want, python measures $got"
  done
  log "python's scores of $3/agents/*/model-final.pt equal gut's ($2)"
}
check "$work/sim-cnn/summary.json" test_acc_per_agent "$work/sim-cnn" "$work/fm" cross_entropy
check "$work/cluster-cnn/summary.json" test_acc_per_agent "$work/cluster-cnn" "$work/fm" cross_entropy
check "$work/sim-mlp/summary.json" test_rmse_per_agent "$work/sim-mlp" "$work/reg" mse
check "$work/sim-zoo/summary.json" test_acc_per_agent "$work/sim-zoo" "$work/fm" cross_entropy lenet5
check "$work/sim-resnet/summary.json" test_acc_per_agent "$work/sim-resnet" "$work/img32" cross_entropy resnet20
for m in cnn mlp; do
  loss=cross_entropy data=fm
  [[ $m == mlp ]] && loss=mse data=reg
  "$py" "$ex/evaluate.py" --model "$work/sim-$m/model-average.pt" --data "$work/$data" --loss $loss > /dev/null ||
    fail "python could not load gut-sim's model-average.pt ($m)"
done
log "model-average.pt loads (cnn, mlp)"

log "an agent with another model file is refused"
mkdir -p "$work/wrong"
"$build/coordinator/gut-coordinator" --manifest "$work/cnn.yaml" --set agents.count=2 --set topology.graph=full \
  --set exchange.deadline_s=5 --out "$work/wrong/run" --listen 127.0.0.1:0 --port-file "$work/wrong/port" \
  --join-timeout-s 60 > "$work/wrong/coordinator.log" 2>&1 &
for _ in $(seq 200); do [[ -s "$work/wrong/port" ]] && break; sleep 0.1; done
[[ -s "$work/wrong/port" ]] || { cat "$work/wrong/coordinator.log"; fail "the coordinator did not start"; }
port=$(cat "$work/wrong/port")
timeout 120 "$build/agent/gut-agentd" --coordinator "127.0.0.1:$port" --rank 0 --model "$work/mlp.pt" \
  --join-timeout-s 60 --checkpoint-dir "$work/wrong/a0" > "$work/wrong/a0.log" 2>&1 &
a0=$!
timeout 120 "$build/agent/gut-agentd" --coordinator "127.0.0.1:$port" --rank 1 --model "$work/cnn.pt" \
  --join-timeout-s 60 --checkpoint-dir "$work/wrong/a1" > "$work/wrong/a1.log" 2>&1 &
wait $a0 && fail "the agent with another model file was not refused"
grep -q "is not the run's model: its SHA-256 is" "$work/wrong/a0.log" || { cat "$work/wrong/a0.log"; fail "no clear refusal"; }
grep -q "is the run's" "$work/wrong/a1.log" || { cat "$work/wrong/a1.log"; fail "the agent with the right copy did not use it"; }
log "PASS"
