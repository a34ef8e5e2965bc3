#!/usr/bin/env bash
# Builds gut's container image with podman, from Debian's archive only (no registry):
#
#   deploy/container/build-image.sh [--cache-dir DIR]
#
#   1. a Debian 12 minbase root (debootstrap, made once and cached in DIR: make-base.sh), imported
#      as localhost/bookworm-minbase (again only when the cached root changed);
#   2. podman build --network host -f deploy/container/Containerfile: localhost/gut:<version>
#      (the project version) and localhost/gut:latest, labelled with the checkout's git revision;
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
# trees, no run outputs), plus .git for the revision that `--version` prints. It is kept between
# runs and synchronised by content: a file is rewritten (modification time: now) only when it
# changed. podman's COPY keeps those times, so make, in the build stage's cached build directory,
# recompiles exactly what changed since the last image (a snapshot copied with the checkout's
# own times could look older than objects built from an earlier version of the same file).
ctx="$cache/context"
mkdir -p "$ctx"
declare -A keep=()
sync_file() {  # path relative to the checkout
  local src="$here/$1" dst="$ctx/$1"
  keep["$1"]=1
  if [[ -L "$src" ]]; then
    [[ -L "$dst" && "$(readlink "$src")" == "$(readlink "$dst")" ]] && return 0
    mkdir -p "$(dirname "$dst")"
    rm -rf "$dst"
    cp -P "$src" "$dst"
  elif [[ -f "$src" ]]; then
    if [[ ! -f "$dst" || -L "$dst" ]] || ! cmp -s "$src" "$dst"; then
      mkdir -p "$(dirname "$dst")"
      rm -rf "$dst"
      cp "$src" "$dst"
    fi
    [[ "$(stat -c %a "$src")" == "$(stat -c %a "$dst")" ]] || chmod "$(stat -c %a "$src")" "$dst"
  fi
}
if git -C "$here" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  while IFS= read -r -d '' f; do
    [[ -e "$here/$f" || -L "$here/$f" ]] && sync_file "$f"
  done < <(git -C "$here" ls-files -z --cached --others --exclude-standard)
else
  while IFS= read -r -d '' f; do
    sync_file "${f#./}"
  done < <(cd "$here" && find . \( -path ./.git -o -path ./build -o -path './build-*' -o -path ./out -o -path ./.deps \) -prune \
             -o \( -type f -o -type l \) -print0)
fi
# Files that left the checkout leave the context.
while IFS= read -r -d '' f; do
  f="${f#./}"
  [[ -n "${keep[$f]:-}" ]] || rm -f "$ctx/$f"
done < <(cd "$ctx" && find . -path ./.git -prune -o \( -type f -o -type l \) -print0)
find "$ctx" -mindepth 1 -type d -empty -delete
rm -rf "$ctx/.git"
[[ -d "$here/.git" ]] && cp -a "$here/.git" "$ctx/.git"

# 3. The image, labelled with the project version and the checkout's revision
# (org.opencontainers.image.revision): the commit, with "-dirty" when tracked files differ from it
# (the rule of cmake/version.cmake, whose short form the daemons' --version prints); "unknown"
# outside git. Read from the context (its files and its copy of .git), which is what the build
# stage compiles, so a commit made meanwhile in the checkout does not get into the label; without
# optional locks, so that the context's .git stays as copied. Passed as --label, not as a build
# argument that a LABEL line expands: buildah 1.28 takes such a LABEL step from its cache even when
# the argument changed (the image then names an older commit).
revision=unknown
if [[ -d "$ctx/.git" ]] && rev="$(git -C "$ctx" rev-parse --verify -q HEAD 2>/dev/null)" && [[ -n "$rev" ]]; then
  revision="$rev"
  [[ -z "$(git --no-optional-locks -C "$ctx" status --porcelain --untracked-files=no 2>/dev/null)" ]] ||
    revision="$rev-dirty"
fi
start=$SECONDS
podman build --network host --layers -f "$here/deploy/container/Containerfile" \
  --label "org.opencontainers.image.version=$version" --label "org.opencontainers.image.revision=$revision" \
  --build-arg "GUT_BUILD_KEY=$(printf '%s' "$here" | sha256sum | cut -c1-16)" \
  -t "localhost/gut:$version" -t localhost/gut:latest "$ctx"
size="$(podman image inspect --format '{{.Size}}' "localhost/gut:$version")"
echo "build-image: localhost/gut:$version (and :latest, revision $revision) built in $((SECONDS - start)) s; size $((size / 1000000)) MB ($size bytes)"
