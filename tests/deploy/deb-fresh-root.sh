#!/usr/bin/env bash
# deploy.deb_fresh_root: the .debs on a fresh Debian 12 machine.
#   1. cpack -G DEB in BUILD_DIR: gut-agentd_*.deb and gut-coordinator_*.deb;
#   2. a fresh bookworm minbase root (deploy/container/make-base.sh's cached debootstrap);
#   3. apt-get install of the two .debs inside it, apt resolving their Depends from Debian's
#      archive; checks the user gut, /var/lib/gut, the conffiles and --version;
#   4. a coordinator and two agents from the installed packages, started the way their systemd
#      units start them (ExecStart with the variables of /etc/gut/*.env, as the user gut, in
#      /var/lib/gut), plaintext on loopback: the installed fmnist example manifest with 2 agents,
#      topology.graph=chain, run.epochs=1, on a tiny generated MNIST-layout data set; both agents
#      must finish and the coordinator must write summary.json;
#   5. dpkg --purge of gut-agentd keeps what gut-coordinator uses (/etc/gut/tls, /var/lib/gut);
#      then of gut-coordinator: binaries, conffiles, state and /etc/gut/tls are gone (/var/lib/gut,
#      the user gut's home, only when nothing else is in it).
# Everything happens in a temporary directory; mounts (proc, sys, the apt caches) live in a private
# mount namespace and go away with it. Downloaded .debs are kept in BUILD_DIR/container/apt-cache,
# so a second run downloads nothing.
#   tests/deploy/deb-fresh-root.sh BUILD_DIR     (exit 77: not root, or a tool missing)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

skip() { echo "SKIP: $*"; exit 77; }
t0=$SECONDS
log() { printf '[%4ds] %s\n' "$((SECONDS - t0))" "$*"; }

# ---- inside the private mount namespace (see the end of this file) ------------------------------
if [[ "${1:-}" == --inner ]]; then
  work="$2" cache="$3"
  root="$work/root"
  t0=$((SECONDS - ${GUT_TEST_ELAPSED:-0}))
  pids=()
  finish() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  }
  trap finish EXIT
  in_root() { chroot "$root" "$@"; }
  mount -t proc proc "$root/proc"
  mount -t sysfs -o ro sysfs "$root/sys" 2>/dev/null || mount --rbind /sys "$root/sys"
  mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
  mkdir -p "$cache/archives/partial" "$cache/lists/partial"
  mount --bind "$cache/archives" "$root/var/cache/apt/archives"
  mount --bind "$cache/lists" "$root/var/lib/apt/lists"
  cat /etc/resolv.conf >"$root/etc/resolv.conf"
  cp "$work"/debs/gut-*.deb "$root/tmp/"
  export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin

  log "apt-get update"
  in_root apt-get update -q >"$work/apt-update.log" 2>&1 || { cat "$work/apt-update.log"; exit 1; }
  log "apt-get install ./gut-agentd_*.deb ./gut-coordinator_*.deb (and libopenblas0-openmp, their Recommends)"
  in_root sh -c 'cd /tmp && apt-get install -y -q --no-install-recommends ./gut-agentd_*.deb ./gut-coordinator_*.deb libopenblas0-openmp' \
    >"$work/apt-install.log" 2>&1 || { tail -n 40 "$work/apt-install.log"; echo "FAIL: apt-get install"; exit 1; }
  log "installed: $(grep -c '^Setting up' "$work/apt-install.log") packages set up, $(in_root du -sm /usr | cut -f1) MB in /usr"

  fail() { echo "FAIL: $*"; exit 1; }
  for p in gut-agentd gut-coordinator; do
    in_root dpkg-query -W -f='${Status}\n' "$p" | grep -q 'install ok installed' || fail "$p is not installed"
  done
  in_root getent passwd gut >/dev/null || fail "postinst did not create the user gut"
  [[ "$(in_root stat -c '%U:%G %a' /var/lib/gut)" == "gut:gut 750" ]] ||
    fail "/var/lib/gut is $(in_root stat -c '%U:%G %a' /var/lib/gut), want gut:gut 750"
  in_root dpkg-query -W -f='${Conffiles}\n' gut-agentd | grep -q '/etc/gut/agentd.env' || fail "agentd.env is not a conffile"
  in_root dpkg-query -W -f='${Conffiles}\n' gut-coordinator | grep -q '/etc/gut/coordinator.env' ||
    fail "coordinator.env is not a conffile"
  for f in /usr/lib/systemd/system/gut-agentd.service /usr/lib/systemd/system/gut-coordinator.service \
    /usr/libexec/gut/coordinator-start /usr/share/gut/examples/fmnist-ring16-qggutm-quick.yaml; do
    in_root test -e "$f" || fail "$f missing"
  done
  log "$(in_root gut-agentd --version); $(in_root gut-coordinator --version)"

  # The data set, and one environment file per process, made from the installed templates.
  uid="$(in_root id -u gut)" gid="$(in_root id -g gut)"
  mkdir -p "$root/var/lib/gut/data"
  perl "$here/tests/deploy/make-idx-dataset.pl" "$root/var/lib/gut/data" 2000 500
  chown -R "$uid:$gid" "$root/var/lib/gut/data"
  setvar() {  # FILE NAME VALUE: replace NAME's assignment (it must be in the template)
    grep -q "^$2=" "$1" || fail "$(basename "$1") has no $2="
    local v="$3"
    v="${v//\\/\\\\}"
    v="${v//&/\\&}"
    v="${v//|/\\|}"
    sed -i "s|^$2=.*|$2=\"$v\"|" "$1"
  }
  run="/var/lib/gut/coordinator/deb-test"
  cenv="$root/etc/gut/coordinator.env"
  setvar "$cenv" GUT_MANIFEST "--manifest=/usr/share/gut/examples/fmnist-ring16-qggutm-quick.yaml"
  setvar "$cenv" GUT_SET "--set=agents.count=2 --set=topology.graph=chain --set=run.epochs=1 --set=data.path=/var/lib/gut/data --set=data.partition=iid --set=run.final_gossip_rounds=5"
  setvar "$cenv" GUT_OUT "--out=$run"
  setvar "$cenv" GUT_LISTEN "--listen=127.0.0.1:0"
  setvar "$cenv" GUT_TLS ""
  setvar "$cenv" GUT_METRICS "--metrics=127.0.0.1:0"
  setvar "$cenv" GUT_TIMEOUTS "--join-timeout-s=120 --run-timeout-s=300"
  setvar "$cenv" GUT_EXTRA_FLAGS "--port-file=$run/coordinator.port"
  for r in 0 1; do
    aenv="$root/etc/gut/agentd-$r.env"
    cp "$root/etc/gut/agentd.env" "$aenv"
    setvar "$aenv" GUT_LISTEN "--listen=127.0.0.1:0"
    setvar "$aenv" GUT_ADVERTISE ""
    setvar "$aenv" GUT_TLS ""
    setvar "$aenv" GUT_CHECKPOINT "--checkpoint-dir=/var/lib/gut/agent/rank-$r"
    setvar "$aenv" GUT_METRICS "--metrics=127.0.0.1:0"
    setvar "$aenv" GUT_NAME "--name=agent-$r"
    setvar "$aenv" GUT_RANK "--rank=$r"
    setvar "$aenv" GUT_TIMEOUTS "--join-timeout-s=120"
  done

  # ExecStart as systemd runs it: the EnvironmentFile's variables, each $VAR split at whitespace
  # (an empty one vanishes), as User=gut in WorkingDirectory=/var/lib/gut.
  start_unit() {  # UNIT ENVFILE LOG
    chroot --userspec="$uid:$gid" "$root" /bin/bash -c \
      'set -a; . "$2"; set +a; set -f; cd /var/lib/gut; eval "exec $(sed -n "s/^ExecStart=//p" "$1")"' \
      _ "/usr/lib/systemd/system/$1" "$2" >"$3" 2>&1 &
    pids+=("$!")
  }
  log "starting gut-coordinator (coordinator.env) and two gut-agentd (agentd.env with 2 ranks) as user gut"
  start_unit gut-coordinator.service /etc/gut/coordinator.env "$work/coordinator.log"
  coord="${pids[0]}"
  for _ in $(seq 300); do
    [[ -s "$root$run/coordinator.port" ]] && break
    kill -0 "$coord" 2>/dev/null || { cat "$work/coordinator.log"; fail "the coordinator exited"; }
    sleep 0.1
  done
  port="$(cat "$root$run/coordinator.port" 2>/dev/null)" || { cat "$work/coordinator.log"; fail "no coordinator port"; }
  for r in 0 1; do
    setvar "$root/etc/gut/agentd-$r.env" GUT_COORDINATOR "--coordinator=127.0.0.1:$port"
    start_unit gut-agentd.service "/etc/gut/agentd-$r.env" "$work/agent-$r.log"
  done
  declare -A rc=()
  deadline=$((SECONDS + 300))
  while ((${#rc[@]} < 3)); do
    for p in "${pids[@]}"; do
      [[ -n "${rc[$p]:-}" ]] && continue
      if ! kill -0 "$p" 2>/dev/null; then
        wait "$p" && rc[$p]=0 || rc[$p]=$?
      fi
    done
    if ((SECONDS > deadline)); then
      for l in coordinator agent-0 agent-1; do echo "--- $l.log"; tail -n 20 "$work/$l.log"; done
      fail "the run did not end within 300 s"
    fi
    sleep 0.5
  done
  names=(coordinator agent-0 agent-1)
  bad=0
  for i in 0 1 2; do
    code="${rc[${pids[$i]}]}"
    if [[ "$code" != 0 ]]; then
      echo "--- ${names[$i]} exited $code:"
      tail -n 30 "$work/${names[$i]}.log"
      bad=1
    fi
  done
  ((bad == 0)) || fail "a process of the run failed"
  grep -q '"status": *"finished"' "$root$run/summary.json" 2>/dev/null ||
    { tail -n 20 "$work/coordinator.log"; fail "no finished summary.json in $run"; }
  for r in 0 1; do
    for f in params-final.f32 metrics.csv; do
      [[ -s "$root/var/lib/gut/agent/rank-$r/$f" ]] || fail "agent $r wrote no $f"
    done
  done
  [[ "$(stat -c %u "$root$run/summary.json")" == "$uid" ]] || fail "summary.json is not the user gut's"
  acc="$(grep -o '"test_acc_mean": *[0-9.]*' "$root$run/summary.json" | head -n 1 || true)"
  log "run finished: summary.json written${acc:+ (final $acc)}; both agents wrote params-final.f32 and metrics.csv"
  grep -E 'epoch|wrote' "$work/coordinator.log" | tail -n 3 || true

  # Purging one package leaves what the other still uses (issue 21: /etc/gut/tls went with gut-agentd).
  log "dpkg --purge gut-agentd, then gut-coordinator"
  in_root dpkg --purge gut-agentd >"$work/purge.log" 2>&1 || { cat "$work/purge.log"; fail "dpkg --purge gut-agentd"; }
  for f in /etc/gut/tls /var/lib/gut /usr/bin/gut-coordinator /etc/gut/coordinator.env; do
    in_root test -e "$f" || fail "$f went with gut-agentd although gut-coordinator is still installed"
  done
  in_root dpkg --purge gut-coordinator >>"$work/purge.log" 2>&1 || { cat "$work/purge.log"; fail "dpkg --purge gut-coordinator"; }
  for f in /usr/bin/gut-agentd /usr/bin/gut-coordinator /etc/gut/agentd.env /etc/gut/coordinator.env \
    /var/lib/gut/agent /var/lib/gut/coordinator /etc/gut/tls; do
    in_root test ! -e "$f" || fail "$f is still there after purge"
  done
  log "PASS"
  exit 0
fi

# ---- outside: checks, the packages, the root ----------------------------------------------------
build="$(cd "${1:?usage: deb-fresh-root.sh BUILD_DIR}" && pwd)"
[[ $(id -u) -eq 0 ]] || skip "needs root (chroot, mounts, apt-get in the root)"
for tool in dpkg-deb cpack unshare chroot perl; do
  command -v "$tool" >/dev/null || skip "$tool not installed"
done
cache="$build/container"
if [[ ! -s "$cache/bookworm-minbase.tar" ]] && ! command -v debootstrap >/dev/null; then
  skip "debootstrap not installed (apt-get install debootstrap)"
fi
mkdir -p "$cache"
work="$(mktemp -d "$cache/deb-fresh-root.XXXXXX")"
# --one-file-system: never follow a mount that outlived its namespace.
trap 'rm -rf --one-file-system "$work"' EXIT

log "cpack -G DEB in $build"
(cd "$build" && cpack -G DEB -B "$work/debs") >"$work/cpack.log" 2>&1 || { tail -n 30 "$work/cpack.log"; echo "FAIL: cpack"; exit 1; }
for p in gut-agentd gut-coordinator; do
  deb="$(ls "$work/debs/${p}_"*.deb 2>/dev/null | head -n 1)"
  [[ -n "$deb" ]] || { echo "FAIL: cpack made no $p .deb"; exit 1; }
  log "$(basename "$deb"): $(stat -c %s "$deb") bytes; Depends: $(dpkg-deb -f "$deb" Depends)"
done

tarball="$("$here/deploy/container/make-base.sh" "$cache")"
mkdir "$work/root"
tar -C "$work/root" --numeric-owner -xf "$tarball"
log "fresh bookworm minbase root from $tarball"
GUT_TEST_ELAPSED=$((SECONDS - t0)) unshare --mount --propagation private -- \
  bash "${BASH_SOURCE[0]}" --inner "$work" "$cache/apt-cache"
