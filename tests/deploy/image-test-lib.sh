# Sourced by the tests that run the gut image under podman (container-image.sh, systemd-sandbox.sh):
# skips (exit 77, naming the tool) without root, podman, runc or a way to make the base image,
# defines log/fail, and builds or reuses the image (deploy/container/build-image.sh, cache in
# BUILD_DIR/container). Expects `here` (the checkout) and `build` (BUILD_DIR) to be set.
skip() { echo "SKIP: $*"; exit 77; }
[[ $(id -u) -eq 0 ]] || skip "needs root (podman as root, debootstrap)"
command -v podman >/dev/null || skip "podman not installed (apt-get install --no-install-recommends podman runc catatonit)"
command -v runc >/dev/null || skip "runc not installed (apt-get install --no-install-recommends runc)"
if [[ ! -s "$build/container/bookworm-minbase.tar" ]] && ! command -v debootstrap >/dev/null; then
  skip "debootstrap not installed (apt-get install debootstrap)"
fi
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/deploy/container/containers.conf}"
t0=$SECONDS
log() { printf '[%4ds] %s\n' "$((SECONDS - t0))" "$*"; }
fail() { echo "FAIL: $*"; exit 1; }
version="$(sed -n 's/^project(gut VERSION \([0-9][0-9.]*\).*/\1/p' "$here/CMakeLists.txt")"

log "deploy/container/build-image.sh --cache-dir $build/container"
mkdir -p "$build/container"
"$here/deploy/container/build-image.sh" --cache-dir "$build/container" >"$build/container/build-image.log" 2>&1 ||
  { tail -n 40 "$build/container/build-image.log"; fail "build-image.sh (log: $build/container/build-image.log)"; }
tail -n 1 "$build/container/build-image.log"
