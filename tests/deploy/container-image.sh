#!/usr/bin/env bash
# deploy.container_image: deploy/container/build-image.sh (cache: BUILD_DIR/container), then in
# localhost/gut:<version>: gut-agentd --version and gut-coordinator --version succeed, no -dev
# package and no compiler is installed, it runs as uid 10001 (gut), the example manifests and the
# Fashion-MNIST package are there; then a coordinator and two agents in one container run the
# installed Fashion-MNIST example for one epoch with 2 agents on a chain. Prints the image's size.
#   tests/deploy/container-image.sh BUILD_DIR     (exit 77: not root, or podman/debootstrap missing)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="$(cd "${1:?usage: container-image.sh BUILD_DIR}" && pwd)"
. "$here/tests/deploy/image-test-lib.sh"
image="localhost/gut:$version"
in_image() { podman run --rm --network host "$image" "$@"; }

for daemon in gut-agentd gut-coordinator; do
  out="$(in_image "$daemon" --version 2>&1)" || fail "$daemon --version: $out"
  [[ "$out" == "$daemon $version "* ]] || fail "$daemon --version printed '$out'"
  log "$out"
done
who="$(in_image sh -c 'echo "$(id -u) $(id -un) $(id -g)"')"
[[ "$who" == "10001 gut 10001" ]] || fail "the image runs as '$who', want uid 10001 (gut), gid 10001"
log "runs as uid 10001 (gut)"
dev="$(in_image sh -c 'dpkg -l | grep -- -dev' || true)"
[[ -z "$dev" ]] || fail "-dev packages in the image: $dev"
compilers="$(in_image sh -c 'for c in g++ gcc cc c++ cpp clang clang++ ld as; do command -v $c; done; ls /usr/bin/*-gcc-* /usr/bin/*-g++-* 2>/dev/null' || true)"
[[ -z "$compilers" ]] || fail "compilers in the image: $compilers"
log "no -dev package, no compiler, no linker"
in_image sh -c 'ls /usr/share/gut/examples/fmnist-ring16-qggutm-quick.yaml /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz >/dev/null' ||
  fail "example manifests or Fashion-MNIST missing"
log "$(in_image sh -c 'ls /usr/share/gut/examples | wc -l') example manifests, Fashion-MNIST, $(in_image sh -c 'dpkg -l | grep -c ^ii') packages"

# One epoch of the installed Fashion-MNIST example, 2 agents on a chain, inside one container
# (loopback, plaintext), as the user gut, writing to /var/lib/gut.
log "the Fashion-MNIST example in the image: 2 agents, chain, 1 epoch"
run_out="$(in_image bash -c '
  set -u
  m=/usr/share/gut/examples/fmnist-ring16-qggutm-quick.yaml
  sets="--set agents.count=2 --set topology.graph=chain --set run.epochs=1 --set run.final_gossip_rounds=5"
  gut-coordinator --manifest $m $sets --out run --listen 127.0.0.1:0 --port-file run.port >coordinator.log 2>&1 &
  c=$!
  for _ in $(seq 300); do [ -s run.port ] && break; sleep 0.1; done
  [ -s run.port ] || { cat coordinator.log; exit 1; }
  for r in 0 1; do
    gut-agentd --coordinator 127.0.0.1:$(cat run.port) --rank $r --name agent-$r --checkpoint-dir agent-$r >agent-$r.log 2>&1 &
  done
  rc=0
  for p in $(jobs -p); do wait $p || rc=1; done
  grep -h "epoch   1/1" coordinator.log
  [ $rc = 0 ] && grep -q "\"status\": *\"finished\"" run/summary.json && ls agent-0/params-final.f32 agent-1/params-final.f32 >/dev/null ||
    { tail -n 20 coordinator.log agent-0.log agent-1.log; exit 1; }
' 2>&1)" || { echo "$run_out"; fail "the example run in the image"; }
echo "$run_out"
log "run finished in the image: summary.json, params-final.f32 of both agents"

size="$(podman image inspect --format '{{.Size}}' "$image")"
log "PASS: $image is $((size / 1000000)) MB ($size bytes)"
