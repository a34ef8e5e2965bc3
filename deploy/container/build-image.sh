#!/usr/bin/env bash
# Builds gut's container image with podman, from Debian's archive only (no registry):
#
#   deploy/container/build-image.sh [--cache-dir DIR]
#
#   1. a Debian 12 minbase root (debootstrap, made once and cached in DIR: make-base.sh), imported
#      as localhost/bookworm-minbase (again only when the cached root changed);
#   2. podman build --network host -f deploy/container/Containerfile: localhost/gut:<version>
#      (the project version) and localhost/gut:latest;
#   3. prints the image's size.
#
# Idempotent: a second run with nothing changed reuses every layer (seconds); after a source change
# only the changed files are compiled again (the build stage keeps its build directory in a podman
# cache mount). DIR defaults to build/container of this checkout; podman runs with
# deploy/container/containers.conf unless CONTAINERS_CONF is set. Needs root, podman, runc and
# debootstrap (apt-get install --no-install-recommends podman runc catatonit debootstrap).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="$here/build/container"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cache-dir) cache="${2:?--cache-dir needs a directory}"; shift 2 ;;
    -h | --help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-image: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/deploy/container/containers.conf}"
for tool in podman debootstrap; do
  command -v "$tool" >/dev/null ||
    { echo "build-image: $tool not found (apt-get install --no-install-recommends podman runc catatonit debootstrap)" >&2; exit 2; }
done
version="$(sed -n 's/^project(gut VERSION \([0-9][0-9.]*\).*/\1/p' "$here/CMakeLists.txt")"
[[ -n "$version" ]] || { echo "build-image: no project version in CMakeLists.txt" >&2; exit 2; }

# 1. The base image, labelled with the checksum of the root it was imported from.
mkdir -p "$cache"
tarball="$("$here/deploy/container/make-base.sh" "$cache")"
if [[ ! -s "$tarball.sha256" || "$tarball.sha256" -ot "$tarball" ]]; then
  sha256sum <"$tarball" | cut -c1-64 >"$tarball.sha256"
fi
sum="$(cat "$tarball.sha256")"
have="$(podman image inspect --format '{{index .Labels "org.gut.base-sha256"}}' localhost/bookworm-minbase 2>/dev/null || true)"
if [[ "$have" != "$sum" ]]; then
  echo "build-image: importing $tarball as localhost/bookworm-minbase" >&2
  podman import --change "LABEL org.gut.base-sha256=$sum" --change 'CMD ["/bin/bash"]' \
    "$tarball" localhost/bookworm-minbase >/dev/null
fi

# 2. The build context: the checkout's files (tracked, and untracked but not ignored: no build
# trees, no run outputs) with their modification times, plus .git for the revision that
# `--version` prints.
ctx="$cache/context"
rm -rf "$ctx"
mkdir -p "$ctx"
if git -C "$here" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$here" && git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [[ -e "$f" || -L "$f" ]] && printf '%s\0' "$f"; done |
    tar --null -T - -cf -) | tar -C "$ctx" -xf -
  [[ -d "$here/.git" ]] && cp -a "$here/.git" "$ctx/.git"
else
  tar -C "$here" --exclude=./build --exclude='./build-*' --exclude=./out --exclude=./.deps -cf - . | tar -C "$ctx" -xf -
fi

# 3. The image.
start=$SECONDS
podman build --network host --layers -f "$here/deploy/container/Containerfile" \
  --build-arg "VERSION=$version" -t "localhost/gut:$version" -t localhost/gut:latest "$ctx"
rm -rf "$ctx"
size="$(podman image inspect --format '{{.Size}}' "localhost/gut:$version")"
echo "build-image: localhost/gut:$version (and :latest) built in $((SECONDS - start)) s; size $((size / 1000000)) MB ($size bytes)"
