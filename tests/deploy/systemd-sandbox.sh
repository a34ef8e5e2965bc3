#!/usr/bin/env bash
# deploy.systemd_sandbox: the units' sandbox with LibTorch training under it. systemd 252 boots in a
# podman container made from localhost/gut:<version> (deploy/container/build-image.sh, cached) plus
# Debian's systemd and this tree's units; there a coordinator and two agents (two copies of
# gut-agentd.service, each with its own environment file) run the installed Fashion-MNIST example
# with 2 agents on a chain for 2 epochs, as the units start them. Checks: the agents run with
# NoNewPrivileges, a seccomp filter and no capabilities, as uid 10001, on a read-only /; a
# coordinator killed with SIGKILL mid-run is restarted by Restart=on-failure and carries on the
# run (coordinator-start adds --resume); every unit ends with exit 0 and summary.json says
# "finished"; no "Operation not permitted" in the journal.
#   tests/deploy/systemd-sandbox.sh BUILD_DIR    (exit 77: not root, podman missing, or systemd
#                                                 cannot boot in a container on this host)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="$(cd "${1:?usage: systemd-sandbox.sh BUILD_DIR}" && pwd)"
. "$here/tests/deploy/image-test-lib.sh"

work="$(mktemp -d)"
name="gut-systemd-sandbox-$$"
cleanup() {
  podman rm -f "$name" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
cp "$here"/deploy/systemd/gut-agentd.service "$here"/deploy/systemd/gut-coordinator.service \
  "$here"/deploy/systemd/coordinator-start "$work/"
cat >"$work/Containerfile" <<EOF
FROM localhost/gut:$version
USER root
RUN apt-get update -q && apt-get install -y -q --no-install-recommends systemd \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY gut-agentd.service gut-coordinator.service /usr/lib/systemd/system/
COPY coordinator-start /usr/libexec/gut/coordinator-start
CMD ["/lib/systemd/systemd"]
EOF
log "image localhost/gut-systemd-test:$version (the gut image + systemd + this tree's units)"
podman build --network host -q -t "localhost/gut-systemd-test:$version" "$work" >"$work/build.log" 2>&1 ||
  { cat "$work/build.log"; fail "podman build of the systemd test image"; }
podman run -d --name "$name" --network host --systemd=always --privileged \
  "localhost/gut-systemd-test:$version" >/dev/null || skip "podman cannot run systemd in a container here"
state=""
for _ in $(seq 60); do
  state="$(podman exec "$name" systemctl is-system-running 2>/dev/null || true)"
  [[ "$state" == running || "$state" == degraded ]] && break
  sleep 0.5
done
[[ "$state" == running || "$state" == degraded ]] ||
  { podman logs "$name" 2>&1 | tail -n 20; skip "systemd did not boot in the container (state '$state')"; }
log "systemd is $state in the container"

# Loopback, plaintext, a fixed coordinator port (so that its restart keeps it); each agent a copy
# of gut-agentd.service with its own EnvironmentFile, as one would run two agents on one machine.
port=$((20000 + $$ % 20000))
podman exec -i "$name" bash -s "$port" <<'EOF' || fail "configuring the units"
set -eu
port="$1"
cd /etc/gut
setvar() { grep -q "^$2=" "$1" || { echo "$1 has no $2=" >&2; exit 1; }; sed -i "s|^$2=.*|$2=\"$3\"|" "$1"; }
setvar coordinator.env GUT_MANIFEST "--manifest=/usr/share/gut/examples/fmnist-ring16-qggutm-quick.yaml"
setvar coordinator.env GUT_SET "--set=agents.count=2 --set=topology.graph=chain --set=run.epochs=2 --set=run.final_gossip_rounds=5"
setvar coordinator.env GUT_OUT "--out=/var/lib/gut/coordinator/sandbox-run"
setvar coordinator.env GUT_LISTEN "--listen=127.0.0.1:$port"
setvar coordinator.env GUT_TLS ""
setvar coordinator.env GUT_METRICS "--metrics=127.0.0.1:0"
for r in 0 1; do
  cp agentd.env "agentd-$r.env"
  setvar "agentd-$r.env" GUT_COORDINATOR "--coordinator=127.0.0.1:$port"
  setvar "agentd-$r.env" GUT_LISTEN "--listen=127.0.0.1:0"
  setvar "agentd-$r.env" GUT_ADVERTISE ""
  setvar "agentd-$r.env" GUT_TLS ""
  setvar "agentd-$r.env" GUT_CHECKPOINT "--checkpoint-dir=/var/lib/gut/agent/rank-$r"
  setvar "agentd-$r.env" GUT_METRICS "--metrics=127.0.0.1:0"
  setvar "agentd-$r.env" GUT_NAME "--name=agent-$r"
  setvar "agentd-$r.env" GUT_RANK "--rank=$r"
  sed "s|^EnvironmentFile=/etc/gut/agentd.env\$|EnvironmentFile=/etc/gut/agentd-$r.env|" \
    /usr/lib/systemd/system/gut-agentd.service >"/etc/systemd/system/gut-agentd-$r.service"
done
systemctl daemon-reload
systemctl start gut-coordinator gut-agentd-0 gut-agentd-1
EOF
log "started gut-coordinator, gut-agentd-0, gut-agentd-1 (coordinator on 127.0.0.1:$port)"

# The sandbox, seen from a training agent.
status=""
for _ in $(seq 120); do
  pid="$(podman exec "$name" systemctl show -p MainPID --value gut-agentd-0)"
  if [[ "$pid" != 0 ]] && podman exec "$name" journalctl -u gut-agentd-0 -q | grep -q 'training'; then
    status="$(podman exec "$name" grep -E '^(Uid|NoNewPrivs|Seccomp|CapEff|CapBnd):' "/proc/$pid/status")"
    rootfs="$(podman exec "$name" awk '$5 == "/" {print $6}' "/proc/$pid/mountinfo")"
    break
  fi
  sleep 0.5
done
[[ -n "$status" ]] || { podman exec "$name" journalctl -q -u gut-agentd-0 -u gut-coordinator | tail -n 30; fail "agent 0 did not start training"; }
echo "$status" | sed 's/^/   /'
grep -q '^NoNewPrivs:[[:space:]]*1' <<<"$status" || fail "agent without NoNewPrivileges"
grep -q '^Seccomp:[[:space:]]*2' <<<"$status" || fail "agent without a seccomp filter"
grep -q '^CapEff:[[:space:]]*0*$' <<<"$status" || fail "agent with capabilities"
grep -q '^CapBnd:[[:space:]]*0*$' <<<"$status" || fail "agent with a capability bounding set"
grep -q '^Uid:[[:space:]]*10001[[:space:]]' <<<"$status" || fail "agent not running as gut (10001)"
[[ "$rootfs" == ro,* ]] || fail "agent's / is '$rootfs', want read-only (ProtectSystem=strict)"
log "agent 0 trains as uid 10001 with NoNewPrivs, seccomp, no capabilities, / read-only"

# Kill the coordinator once the first epoch is in: Restart=on-failure, --resume.
for _ in $(seq 240); do
  podman exec "$name" journalctl -q -u gut-coordinator | grep -q 'epoch   1/2' && break
  sleep 0.5
done
podman exec "$name" systemctl kill -s KILL gut-coordinator
log "killed the coordinator (SIGKILL) after epoch 1"
deadline=$((SECONDS + 300))
while :; do
  states="$(podman exec "$name" systemctl is-active gut-coordinator gut-agentd-0 gut-agentd-1 || true)"
  grep -qvE '^(inactive|failed)$' <<<"$states" || break
  ((SECONDS < deadline)) || fail "the run did not end within 300 s ($(echo $states))"
  sleep 1
done
journal="$(podman exec "$name" journalctl -q -u gut-coordinator -u gut-agentd-0 -u gut-agentd-1)"
for u in gut-coordinator gut-agentd-0 gut-agentd-1; do
  result="$(podman exec "$name" systemctl show -p Result -p ExecMainStatus "$u" | tr '\n' ' ')"
  [[ "$result" == *"Result=success"* && "$result" == *"ExecMainStatus=0"* ]] ||
    { echo "$journal" | tail -n 40; fail "$u ended with $result"; }
done
grep -q 'carrying on the unfinished run' <<<"$journal" || { echo "$journal" | tail -n 30; fail "the coordinator was not resumed"; }
# systemd logs each automatic restart; NRestarts is not used because it reads 0 again once the
# restarted unit has exited successfully on this systemd (252).
restarts="$(grep -c 'gut-coordinator.service: Scheduled restart job' <<<"$(podman exec "$name" journalctl -q -u gut-coordinator)" || true)"
[[ "$restarts" == 1 ]] || fail "gut-coordinator was restarted by systemd $restarts times, want 1"
podman exec "$name" grep -q '"status": *"finished"' /var/lib/gut/coordinator/sandbox-run/summary.json ||
  fail "summary.json does not say finished"
! grep -qi 'operation not permitted' <<<"$journal" || { grep -i 'operation not permitted' <<<"$journal"; fail "EPERM in the journal"; }
grep -E 'epoch   2/2|finished:' <<<"$journal" | sed 's/^/   /'
log "PASS: restarted once with --resume; all three units exited 0; summary.json finished"
