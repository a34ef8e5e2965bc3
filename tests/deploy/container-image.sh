#!/usr/bin/env bash
# deploy.container_image: deploy/container/build-image.sh (cache: BUILD_DIR/container), then in
# localhost/gut:<version>: gut-agentd --version and gut-coordinator --version succeed, the label
# org.opencontainers.image.revision names the checkout's commit (the one --version prints), no -dev
# package, no header, no static library and no compiler is installed, every library the daemons
# need resolves, it runs as uid 10001 (gut), the example manifests and the Fashion-MNIST package
# are there; then a coordinator and two agents in one container run the installed Fashion-MNIST
# example for one epoch with 2 agents on a chain, with the loader's trace on (LD_DEBUG=files): no
# library they open at run time (dlopen) is missing, but for known optional ones. The image is at
# most GUT_IMAGE_MAX_MB (default 450) MB.
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
# The revision label (build-image.sh: the checkout's commit, "-dirty" when tracked files differed
# from it, "unknown" outside git): a commit of this checkout (HEAD when built; others may have
# committed since), and the one whose short form the daemons print ("(revision <12 hex>[-dirty])").
label="$(podman image inspect --format '{{index .Labels "org.opencontainers.image.revision"}}' "$image")"
printed="$(sed -n 's/.*(revision \([^)]*\)).*/\1/p' <<<"$out")"
if git -C "$here" rev-parse --verify -q HEAD >/dev/null 2>&1; then
  [[ "$label" =~ ^[0-9a-f]{40}(-dirty)?$ ]] || fail "label org.opencontainers.image.revision is '$label', want a commit id"
  git -C "$here" cat-file -e "${label%-dirty}^{commit}" 2>/dev/null ||
    fail "label org.opencontainers.image.revision names ${label%-dirty}, which is no commit of $here"
  [[ "$printed" == "${label:0:12}${label:40}" ]] ||
    fail "label org.opencontainers.image.revision is '$label', but gut-coordinator --version prints revision '$printed'"
  [[ "${label%-dirty}" == "$(git -C "$here" rev-parse HEAD)" ]] ||
    log "note: the image was built at ${label:0:12}; HEAD is now $(git -C "$here" rev-parse --short=12 HEAD)"
else
  [[ "$label" == unknown && "$printed" == unknown ]] ||
    fail "outside git the label revision and --version should say unknown: '$label', '$printed'"
fi
log "label org.opencontainers.image.revision=$label (gut-coordinator --version: $printed)"
who="$(in_image sh -c 'echo "$(id -u) $(id -un) $(id -g)"')"
[[ "$who" == "10001 gut 10001" ]] || fail "the image runs as '$who', want uid 10001 (gut), gid 10001"
log "runs as uid 10001 (gut)"
dev="$(in_image sh -c 'dpkg -l | grep -- -dev' || true)"
[[ -z "$dev" ]] || fail "-dev packages in the image: $dev"
compilers="$(in_image sh -c 'for c in g++ gcc cc c++ cpp clang clang++ ld as; do command -v $c; done; ls /usr/bin/*-gcc-* /usr/bin/*-g++-* 2>/dev/null' || true)"
[[ -z "$compilers" ]] || fail "compilers in the image: $compilers"
devfiles="$(in_image sh -c 'find /usr/include /usr/lib /usr/local \( -name "*.h" -o -name "*.hpp" -o -name "*.a" \) -print 2>/dev/null | head -n 5' || true)"
[[ -z "$devfiles" ]] || fail "headers or static libraries in the image: $devfiles"
log "no -dev package, no header, no static library, no compiler, no linker"
# The daemons' libraries (deploy/container/collect-runtime.sh): all resolve; /usr/lib/gut holds
# versioned shared objects only (no linker names such as libfoo.so, which only -dev packages have).
unresolved="$(in_image sh -c 'ldd /usr/bin/gut-agentd /usr/bin/gut-coordinator | grep "not found"' || true)"
[[ -z "$unresolved" ]] || fail "libraries the daemons need are missing: $unresolved"
odd="$(in_image sh -c 'cd /usr/lib/gut && ls | grep -vx "libraries.txt" | grep -v "\.so\.[0-9]"' || true)"
[[ -z "$odd" ]] || fail "/usr/lib/gut holds other files than versioned shared objects: $odd"
log "$(in_image awk '$1 == "copy" {n++; b += $3} $1 == "stub" {s++} END {printf "/usr/lib/gut: %d libraries (%.0f MB), %d empty stand-ins; ldd resolves everything", n, b / 1e6, s}' /usr/lib/gut/libraries.txt)"
in_image sh -c 'ls /usr/share/gut/examples/fmnist-ring16-qggutm-quick.yaml /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz >/dev/null' ||
  fail "example manifests or Fashion-MNIST missing"
log "$(in_image sh -c 'ls /usr/share/gut/examples | wc -l') example manifests, Fashion-MNIST, $(in_image sh -c 'dpkg -l | grep -c ^ii') packages"

# One epoch of the installed Fashion-MNIST example, 2 agents on a chain, inside one container
# (loopback, plaintext), as the user gut, writing to /var/lib/gut. The coordinator and agent 0 run
# under the loader's trace (LD_DEBUG=files, into /var/lib/gut/ld.*): a library opened with dlopen
# that is not in the image shows as "dynamically loaded" without a "generating link map" after it.
# Known optional: libJitPI.so, Intel VTune's JIT profiling hook, which oneDNN (libdnnl) tries and
# goes without (it is not in Debian; the host and the apt-installed image lacked it as well).
log "the Fashion-MNIST example in the image: 2 agents, chain, 1 epoch, the loader traced"
run_out="$(in_image bash -c '
  set -u
  m=/usr/share/gut/examples/fmnist-ring16-qggutm-quick.yaml
  sets="--set agents.count=2 --set topology.graph=chain --set run.epochs=1 --set run.final_gossip_rounds=5"
  LD_DEBUG=files LD_DEBUG_OUTPUT=ld.coordinator \
    gut-coordinator --manifest $m $sets --out run --listen 127.0.0.1:0 --port-file run.port >coordinator.log 2>&1 &
  c=$!
  for _ in $(seq 300); do [ -s run.port ] && break; sleep 0.1; done
  [ -s run.port ] || { cat coordinator.log; exit 1; }
  for r in 0 1; do
    if [ $r = 0 ]; then export LD_DEBUG=files LD_DEBUG_OUTPUT=ld.agent-0; else unset LD_DEBUG LD_DEBUG_OUTPUT; fi
    gut-agentd --coordinator 127.0.0.1:$(cat run.port) --rank $r --name agent-$r --checkpoint-dir agent-$r >agent-$r.log 2>&1 &
  done
  unset LD_DEBUG LD_DEBUG_OUTPUT
  rc=0
  for p in $(jobs -p); do wait $p || rc=1; done
  grep -h "epoch   1/1" coordinator.log
  [ $rc = 0 ] && grep -q "\"status\": *\"finished\"" run/summary.json && ls agent-0/params-final.f32 agent-1/params-final.f32 >/dev/null ||
    { tail -n 20 coordinator.log agent-0.log agent-1.log; exit 1; }
  ls ld.coordinator.* ld.agent-0.* >/dev/null || { echo "no loader trace written"; exit 1; }
  opened=$(sed -n "s/.*file=\([^ ]*\) \[[0-9]*\];  dynamically loaded by .*/\1/p" ld.coordinator.* ld.agent-0.* | sort -u)
  for f in $opened; do
    grep -q "file=$f \[[0-9]*\];  generating link map" ld.coordinator.* ld.agent-0.* && echo "dlopen: $f (found)" && continue
    case "$f" in
      libJitPI.so) echo "dlopen: $f (absent, optional)" ;;
      *) echo "MISSING: $f, opened with dlopen by $(grep -h "file=$f " ld.coordinator.* ld.agent-0.* | head -n 1)"; exit 1 ;;
    esac
  done
' 2>&1)" || { echo "$run_out"; fail "the example run in the image"; }
echo "$run_out"
log "run finished in the image: summary.json, params-final.f32 of both agents; nothing dlopen-ed is missing"

# The size (MB = 10^6 bytes, as podman prints it): at most GUT_IMAGE_MAX_MB (450; 403 when the
# copied libraries came in, 1059 with the packages' apt dependencies). Over it, the largest files.
size="$(podman image inspect --format '{{.Size}}' "$image")"
max_mb="${GUT_IMAGE_MAX_MB:-450}"
if ((size > max_mb * 1000000)); then
  in_image sh -c 'awk '"'"'$1 == "copy" {printf "%6.1f MB  %s\n", $3 / 1e6, $2}'"'"' /usr/lib/gut/libraries.txt | sort -rn | head -n 12;
                  du -sh /usr/share/* /usr/lib/x86_64-linux-gnu 2>/dev/null | sort -rh | head -n 8' || true
  fail "$image is $((size / 1000000)) MB, more than $max_mb MB (a library that pulls in more? /usr/lib/gut/libraries.txt)"
fi
log "PASS: $image is $((size / 1000000)) MB ($size bytes; at most $max_mb MB)"
