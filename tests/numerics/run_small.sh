# Sourced by the numerics tests: makes a small data set and manifest in $work and defines
# `small_run OUT [PREFIX...]`, which runs gut-sim on them (PREFIX: e.g. env ... qemu-x86_64 -cpu X),
# and `params_sha OUT`, the SHA-256 of every agent's params-final.f32 in rank order.
# Needs: $src (source dir), $build (build dir), $work (a scratch directory), perl.
mkdir -p "$work/data"
perl "$src/tests/deploy/make-idx-dataset.pl" "$work/data" 320 100
cat > "$work/small.yaml" <<YAML
run: {name: numerics, seed: 12, epochs: 1, final_gossip_rounds: 3, threads: 1}
agents: {count: 4}
topology: {graph: ring}
algorithm: {name: qg-gutm, lr: 0.1, momentum: 0.9, mu: 0.01}
data: {path: $work/data, partition: dirichlet, alpha: 0.5, batch_size: 16, test_batch_size: 50}
model: {name: lenet5, init: gut}
checkpoint: {enabled: false}
YAML
small_run() {
  local out=$1
  shift
  "$@" "$build/sim/gut-sim" --manifest "$work/small.yaml" --out "$work/$out" "${sets[@]}" > "$work/$out.log" 2>&1 ||
    { tail -5 "$work/$out.log"; echo "FAIL: gut-sim ($out)"; exit 1; }
}
params_sha() {
  cat "$work/$1"/agents/rank-0{0,1,2,3}/params-final.f32 | sha256sum | cut -d' ' -f1
}
