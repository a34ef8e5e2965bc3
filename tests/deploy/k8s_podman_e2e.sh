#!/usr/bin/env bash
# End-to-end test of deploy/k8s without a cluster: the rendered ci-4 overlay (4 agents, one epoch
# of the quick Fashion-MNIST manifest) run as Pods by `podman kube play` on this machine, then
# every agent's params-final.f32 compared byte for byte with gut-sim's on the same manifest.
#
#   tests/deploy/k8s_podman_e2e.sh --source-dir DIR --build-dir DIR [--sim GUT_SIM]
#
# What stands in for the cluster (tests/deploy/k8s_pods.py): one Pod per StatefulSet ordinal with
# the downward API's values filled in, hostNetwork with pod IPs 127.0.0.9 (coordinator) and
# 127.0.0.(10+r) (agent r), an /etc/hosts with the Services' names, the ConfigMap and the Secret
# of deploy/k8s/make-tls-secret.sh written out as files, host directories for the PVCs. While the
# run goes, the health ports answer raw grpc.health.v1 calls as a kubelet's probes would
# (tests/deploy/k8s_health.py; skipped without python3-grpcio).
#
# Needs root, podman (with catatonit), kubectl, openssl, /usr/bin/python3 with python3-yaml, and
# the image localhost/gut:latest from deploy/container/build-image.sh (built here; set
# GUT_E2E_SKIP_IMAGE_BUILD=1 to use the one there is). Exit 0 pass, 1 fail, 77 skipped.
set -uo pipefail
SKIP=77
skip() { echo "skipped: $*"; exit $SKIP; }
fail() { echo "FAIL: $*"; exit 1; }

src="" build="" sim=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --source-dir) src="$2"; shift 2 ;;
    --build-dir) build="$2"; shift 2 ;;
    --sim) sim="$2"; shift 2 ;;
    *) echo "usage: $0 --source-dir DIR --build-dir DIR [--sim GUT_SIM]" >&2; exit 2 ;;
  esac
done
[[ -n "$src" && -n "$build" ]] || { echo "usage: $0 --source-dir DIR --build-dir DIR" >&2; exit 2; }
src="$(cd "$src" && pwd)" build="$(cd "$build" && pwd)"
py=/usr/bin/python3
sim="${sim:-$build/sim/gut-sim}"

[[ $(id -u) -eq 0 ]] || skip "podman kube play runs as root here (rootless podman is not set up)"
command -v podman >/dev/null || skip "podman is not installed (apt-get install podman)"
command -v catatonit >/dev/null || [[ -x /usr/libexec/podman/catatonit ]] ||
  skip "catatonit is not installed (apt-get install catatonit): podman kube play needs it for the pods' infra containers"
command -v kubectl >/dev/null || skip "kubectl is not installed (its built-in kustomize renders the manifests)"
command -v openssl >/dev/null || skip "openssl is not installed"
{ [[ -x $py ]] && $py -c 'import yaml' 2>/dev/null; } || skip "/usr/bin/python3 with python3-yaml is needed"
[[ -x "$sim" ]] || fail "$sim is not built"

# Debian's podman 4.3 as root without systemd: deploy/container/containers.conf.
if [[ -z "${CONTAINERS_CONF:-}" ]]; then
  if [[ -f "$src/deploy/container/containers.conf" ]]; then
    export CONTAINERS_CONF="$src/deploy/container/containers.conf"
  fi
fi

work="$build/k8s-e2e"
log() { echo "[$(date +%H:%M:%S)] $*"; }
started=0 agents=0
cleanup() {
  local rc=$?
  if [[ $started -eq 1 ]]; then
    if [[ $rc -ne 0 && $rc -ne $SKIP ]]; then
      for c in $(info coordinator.container 2>/dev/null) $(for ((r = 0; r < agents; r++)); do info agents.$r.container; done 2>/dev/null); do
        echo "---- last lines of $c"
        podman logs --tail 25 "$c" 2>&1 | cut -c1-400
      done
    fi
    podman kube down "$work/pods.yaml" >/dev/null 2>&1 || true
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. The image.
image_log="$build/k8s-e2e-image.log"
if [[ "${GUT_E2E_SKIP_IMAGE_BUILD:-0}" != 1 ]]; then
  [[ -x "$src/deploy/container/build-image.sh" ]] ||
    skip "deploy/container/build-image.sh is not there: no image to run"
  # With its layers cached (deploy.container_image runs first) this takes seconds; a first build
  # compiles the daemons in the image (about 20 minutes on 2 cores), more than this test's budget.
  log "building the image with deploy/container/build-image.sh (log: $image_log)"
  timeout "${GUT_E2E_IMAGE_TIMEOUT:-600}" "$src/deploy/container/build-image.sh" >"$image_log" 2>&1
  rc=$?
  if [[ $rc -eq 124 ]]; then
    skip "deploy/container/build-image.sh did not finish within ${GUT_E2E_IMAGE_TIMEOUT:-600} s (a first build: run it, or ctest -R deploy.container_image, once beforehand)"
  elif [[ $rc -ne 0 ]]; then
    tail -15 "$image_log"
    skip "the image could not be built (deploy/container/build-image.sh failed; log: $image_log)"
  fi
fi

# 2. The manifests: the ci-4 overlay, the Secret, and Pods made of them.
{ rm -rf "$work" && mkdir -p "$work"; } || fail "cannot create $work"
kubectl kustomize "$src/deploy/k8s/overlays/ci-4" >"$work/rendered.yaml" || fail "kubectl kustomize deploy/k8s/overlays/ci-4"
agents="$($py -c 'import sys, yaml
print(next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "StatefulSet")["spec"]["replicas"])' \
  "$work/rendered.yaml")" || fail "no StatefulSet in the rendering"
"$src/deploy/k8s/make-tls-secret.sh" --agents "$agents" --certs-dir "$work/ca" >"$work/gut-tls.yaml" ||
  fail "deploy/k8s/make-tls-secret.sh"
$py "$src/tests/deploy/k8s_pods.py" --rendered "$work/rendered.yaml" --secret "$work/gut-tls.yaml" --work "$work" ||
  fail "tests/deploy/k8s_pods.py could not turn the rendering into Pods"
info() { $py -c 'import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v[int(k)] if k.isdigit() else v[k]
print("\n".join(v) if isinstance(v, list) else v)' "$work/info.json" "$1"; }
image="$(info coordinator.image)"
podman image exists "$image" || skip "image $image is not there (deploy/container/build-image.sh makes it)"
log "image $image; $agents agents; pods: $work/pods.yaml"

# 3. Run them.
podman kube down "$work/pods.yaml" >/dev/null 2>&1 || true
started=1
podman kube play "$work/pods.yaml" >"$work/play.log" 2>&1 || { cat "$work/play.log"; fail "podman kube play"; }
log "pods started"
state() { podman inspect "$1" --format '{{.State.Status}} {{.State.ExitCode}}' 2>/dev/null || echo "missing -1"; }

# 4. The probes' view while it runs: alive ("") everywhere, ready (gut.v1.Peer) once each agent
#    has connected to its neighbours.
# serving ADDRESS SERVICE CONTAINER SECONDS: until the health service says SERVING; fails at once
# when the container has ended.
serving() {
  local until=$((SECONDS + $4)) s code
  while :; do
    $py "$src/tests/deploy/k8s_health.py" "$1" "$2" >"$work/probe.log" 2>&1 && { cat "$work/probe.log"; return 0; }
    read -r s code <<<"$(state "$3")"
    [[ $s == exited || $s == stopped || $s == missing ]] &&
      { cat "$work/probe.log"; echo "$3 is $s (exit status $code)"; return 1; }
    ((SECONDS < until)) || { cat "$work/probe.log"; return 1; }
    sleep 0.5
  done
}
health_checked=0
if $py -c 'import grpc' 2>/dev/null; then
  serving "$(info coordinator.health)" "" "$(info coordinator.container)" 60 || fail "the coordinator's health port"
  for ((r = 0; r < agents; r++)); do
    c="$(info agents.$r.container)"
    serving "$(info agents.$r.health)" "" "$c" 60 || fail "agent $r's liveness"
    serving "$(info agents.$r.health)" "$(info agents.$r.readiness_service)" "$c" 240 || fail "agent $r never became ready"
  done
  health_checked=1
else
  log "no python3-grpcio: the health ports are not probed"
fi

# 5. Wait for the coordinator to finish the run; an agent that fails ends the wait.
coordinator="$(info coordinator.container)"
deadline=$((SECONDS + 600))
while :; do
  read -r cstate ccode <<<"$(state "$coordinator")"
  [[ $cstate == exited || $cstate == missing ]] && break
  for ((r = 0; r < agents; r++)); do
    read -r s code <<<"$(state "$(info agents.$r.container)")"
    [[ $s == exited && $code -ne 0 ]] && fail "agent $r exited with $code before the run finished"
  done
  ((SECONDS < deadline)) || fail "the run did not finish within 600 s"
  sleep 2
done
[[ $cstate == exited && $ccode -eq 0 ]] || fail "the coordinator ended with '$cstate $ccode'"
out="$(info coordinator.out_dir)"
[[ -s "$out/summary.json" && -s "$out/coordinator-state.json" ]] ||
  fail "the coordinator's volume lacks summary.json or coordinator-state.json"
log "the coordinator finished: $($py -c 'import json, sys; s = json.load(open(sys.argv[1]))
print(", ".join(f"{k}: {s[k]}" for k in ("status", "final_accuracy_mean") if k in s))' "$out/summary.json" 2>/dev/null)"
for ((r = 0; r < agents; r++)); do
  c="$(info agents.$r.container)"
  for ((t = 0; t < 60; t++)); do
    read -r s code <<<"$(state "$c")"
    [[ $s == exited || $s == missing ]] && break
    sleep 1
  done
  [[ $s == exited && $code -eq 0 ]] || fail "agent $r ended with '$s $code'"
done

# 6. The same manifest in gut-sim: bit-identical final parameters. The overlay runs in
#    run.numerics: portable, so gut-sim needs none of the pods' settings (OpenMP, OpenBLAS) copied
#    or stripped: both pin every CPU-dependent kernel choice themselves.
sets=()
while read -r s; do [[ -n "$s" ]] && sets+=(--set "$s"); done <<<"$(info coordinator.sets)"
log "gut-sim --manifest $(info coordinator.manifest) ${sets[*]}"
"$sim" --manifest "$(info coordinator.manifest)" --out "$work/sim" "${sets[@]}" >"$work/sim.log" 2>&1 ||
  { tail -5 "$work/sim.log"; fail "gut-sim"; }
for ((r = 0; r < agents; r++)); do
  got="$(info agents.$r.checkpoint_dir)/params-final.f32"
  want="$work/sim/agents/$(printf 'rank-%02d' "$r")/params-final.f32"
  [[ -s "$got" ]] || fail "agent $r wrote no $got"
  cmp -s "$got" "$want" || fail "agent $r: $got differs from gut-sim's $want (the image built from other sources than $sim? image: $(podman run --rm "$image" gut-agentd --version 2>&1), here: $("$(dirname "$sim")/../agent/gut-agentd" --version 2>&1))"
done
log "PASS: $agents agents' params-final.f32 equal gut-sim's byte for byte$([[ $health_checked -eq 1 ]] && echo "; health ports answered")"
