#!/usr/bin/env bash
# Collects the shared libraries that gut's daemons need at run time, for the container image's
# runtime stage (deploy/container/Containerfile), which copies them instead of installing the
# .debs' Depends with apt:
#
#   deploy/container/collect-runtime.sh [--have FILE] DEST BINARY...
#
# writes DEST/<soname> for every library in the binaries' load closure (symlinks dereferenced:
# libblas.so.3 is the file the alternatives system points at, the OpenMP OpenBLAS) and
# DEST/libraries.txt, one line per library: "copy SONAME BYTES PATH", "stub SONAME", or "base
# SONAME" for a soname listed in FILE (one a line: what the target root already has, e.g. glibc,
# libstdc++, OpenSSL), which is not copied.
#
# Why stubs: Debian's libtorch_cpu.so is linked without --as-needed and names OpenCV (12 modules),
# FFmpeg, LevelDB, LMDB, Snappy and ZeroMQ as NEEDED although it imports no symbol from any of
# them; their own closures (Qt, GTK, Mesa, LLVM, GDAL, codecs, ...) are most of the 1 GB that an
# apt install brings. A library is copied only when some copied object (or a binary) imports a
# symbol that it defines, weak references included (computed to a fixed point: a library kept for
# one symbol brings its own imports). Every other NEEDED entry of a copied object gets an empty
# library with that soname (no symbols, no constructors): the loader finds it, and since nothing
# binds to it nothing changes. Should a stub ever be wrong, the image fails at once: libtorch is
# linked with BIND_NOW, so a missing symbol stops the loader before main (the Containerfile runs
# both --version); a version requirement on a stubbed library would fail the same way. Libraries
# opened with dlopen are not in the closure: tests/deploy/container-image.sh traces a real run.
#
# Needs binutils (nm, readelf), ldd and a C compiler (for the stubs): the build stage has them.
set -euo pipefail
have=/dev/null
if [[ "${1:-}" == --have ]]; then
  have="${2:?--have needs a file}"
  shift 2
fi
dest="${1:?usage: collect-runtime.sh [--have FILE] DEST BINARY...}"
shift
[[ $# -gt 0 ]] || { echo "collect-runtime: no binaries given" >&2; exit 2; }
mkdir -p "$dest"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
declare -A base=()
while read -r so; do [[ -n "$so" ]] && base[$so]=1; done <"$have"

# soname -> path, from the loader itself (ldd of every binary lists the whole closure).
declare -A path=()
for bin in "$@"; do
  while read -r so arrow p _; do
    [[ "$arrow" == "=>" && "$p" == /* ]] || continue
    path["$so"]="$p"
  done < <(ldd "$bin")
  if ldd "$bin" | grep 'not found' >&2; then
    echo "collect-runtime: $bin has unresolved libraries" >&2
    exit 1
  fi
done

# NEEDED entries and symbol names (without their versions; nm -D reads the dynamic symbol table),
# each read once per file into $work.
key() { printf '%s' "$1" | tr '/' '_'; }
needed() {
  local f="$work/needed$(key "$1")"
  [[ -f "$f" ]] || readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p' >"$f"
  cat "$f"
}
undefined() { nm -D --undefined-only "$1" | awk '{print $NF}' | sed 's/@.*//'; }
defined() {
  local f="$work/defined$(key "$1")"
  [[ -f "$f" ]] || nm -D --defined-only "$1" | awk '$2 != "A" {print $NF}' | sed 's/@.*//' | sort -u >"$f"
  echo "$f"
}

# The fixed point: U = the symbols that the kept objects import; a NEEDED library is kept when it
# defines one of them (each pass adds the imports of what it kept, until a pass keeps nothing).
# The dynamic loader itself is part of every process.
declare -A kept=()
objects=("$@")
for o in "${objects[@]}"; do undefined "$o"; done | sort -u >"$work/U"
changed=1
while [[ $changed -eq 1 ]]; do
  changed=0
  : >"$work/U.new"
  for o in "${objects[@]}"; do
    for so in $(needed "$o"); do
      [[ -n "${kept[$so]:-}" || "$so" == ld-linux* ]] && continue
      p="${path[$so]:-}"
      [[ -n "$p" ]] || { echo "collect-runtime: $o needs $so, which ldd did not resolve" >&2; exit 1; }
      # (comm into a file: a `comm | grep -q` would fail under pipefail when grep quits early)
      comm -12 "$work/U" "$(defined "$p")" >"$work/common"
      if [[ -s "$work/common" ]]; then
        kept[$so]="$p"
        objects+=("$p")
        undefined "$p" >>"$work/U.new"
        changed=1
      fi
    done
  done
  sort -u "$work/U" "$work/U.new" -o "$work/U"
done

# Every NEEDED entry of a kept object that is not kept itself becomes a stub.
declare -A stub=()
for o in "${objects[@]}"; do
  for so in $(needed "$o"); do
    [[ -z "${kept[$so]:-}" && "$so" != ld-linux* ]] && stub[$so]=1
  done
done

: >"$dest/libraries.txt"
for so in $(printf '%s\n' "${!kept[@]}" | sort); do
  if [[ -n "${base[$so]:-}" ]]; then
    echo "base $so" >>"$dest/libraries.txt"
    continue
  fi
  real="$(readlink -f "${kept[$so]}")"
  cp "$real" "$dest/$so"
  echo "copy $so $(stat -c %s "$real") $real" >>"$dest/libraries.txt"
done
for so in $(printf '%s\n' "${!stub[@]}" | sort); do
  if [[ -n "${base[$so]:-}" ]]; then
    echo "base $so" >>"$dest/libraries.txt"
    continue
  fi
  echo "__attribute__((used)) static const char gut_stub_note[] = \"gut image: empty stand-in for $so, from which nothing imports a symbol\";" >"$work/stub.c"
  cc -shared -nostdlib -fPIC -Wl,-soname,"$so" -o "$dest/$so" "$work/stub.c"
  echo "stub $so" >>"$dest/libraries.txt"
done
awk '$1 == "copy" {n++; b += $3} $1 == "stub" {s++} $1 == "base" {h++}
     END {printf "collect-runtime: %d libraries (%.1f MB), %d empty stand-ins; %d already in the target root\n", n, b / 1e6, s, h}' \
  "$dest/libraries.txt" >&2
