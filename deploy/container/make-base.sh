#!/usr/bin/env bash
# A Debian 12 (bookworm) minbase root file system, made once with debootstrap and cached as a
# tarball, for the container image's base (deploy/container/build-image.sh) and for the
# fresh-machine package test (tests/deploy/deb-fresh-root.sh):
#
#   deploy/container/make-base.sh [CACHE_DIR]     (default: build/container of this checkout)
#
# prints the path of CACHE_DIR/bookworm-minbase.tar. Nothing is made when the tarball exists
# (delete it to refresh the base). The mirror is the host's own (the first URIs of
# /etc/apt/sources.list.d/debian.sources, else /etc/apt/sources.list, else deb.debian.org), and
# the root gets the host's APT sources (bookworm, bookworm-updates, bookworm-security), so that
# what it installs matches what the host builds against. Needs root and debootstrap; the only
# network access is to Debian's archive.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="${1:-$here/build/container}"
tarball="$cache/bookworm-minbase.tar"
if [[ -s "$tarball" ]]; then
  if tar -tvf "$tarball" --no-recursion ./ 2>/dev/null | head -n 1 | grep -q '^drwxr-xr-x'; then
    echo "$tarball"
    exit 0
  fi
  echo "make-base: $tarball has a / that is not 0755 (made by an older make-base.sh); making it again" >&2
  rm -f "$tarball" "$tarball.sha256"
fi
[[ $(id -u) -eq 0 ]] || { echo "make-base: debootstrap needs root" >&2; exit 2; }
command -v debootstrap >/dev/null ||
  { echo "make-base: debootstrap not found (apt-get install debootstrap)" >&2; exit 2; }

mirror=""
if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
  mirror="$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)"
fi
if [[ -z "$mirror" && -f /etc/apt/sources.list ]]; then
  mirror="$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"

mkdir -p "$cache"
root="$(mktemp -d "$cache/minbase.XXXXXX")"
trap 'rm -rf "$root"' EXIT
echo "make-base: debootstrap --variant=minbase bookworm from $mirror (about a minute)" >&2
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
  { tail -20 "$cache/debootstrap.log" >&2; echo "make-base: debootstrap failed (log: $cache/debootstrap.log)" >&2; exit 1; }
# The host's sources (with the updates and security suites); debootstrap's list has only main.
if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
  cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/debian.sources"
  rm -f "$root/etc/apt/sources.list"
else
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
    "$mirror" "$mirror" >"$root/etc/apt/sources.list"
fi
# Small and reproducible: no package lists, no downloaded archives, no logs of the bootstrap.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
  "$root"/var/log/bootstrap.log "$root"/debootstrap
# mktemp made the root 0700: a root file system's / is 0755, or nothing but root can run in it.
chmod 0755 "$root"
tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
mv "$tarball.tmp" "$tarball"
echo "$tarball"
