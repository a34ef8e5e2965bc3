#!/usr/bin/env bash
# deploy/local/run-cluster.sh keeps the command-line contract of the binaries (issue 21): --help
# exits 0 with the usage on stdout, --version prints the binaries' version, an unknown argument
# exits 2 naming it, and a manifest the coordinator refuses exits 2 with the reason on stderr
# (it used to vanish into a command substitution).
#   tests/launcher_contract.sh VERSION BUILD_DIR
set -uo pipefail
version="$1"
export GUT_BUILD_DIR="$2"
launcher="$(dirname "$0")/../deploy/local/run-cluster.sh"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail=0
check() {  # description, want exit code, stream (out|err), want regex, command...
  local what="$1" want="$2" stream="$3" re="$4"; shift 4
  "$@" >"$work/out" 2>"$work/err"
  local rc=$?
  if [[ $rc != "$want" ]] || ! grep -qE -- "$re" "$work/$stream"; then
    echo "FAIL: $what: exit $rc (want $want), std$stream: $(head -c 300 "$work/$stream")"
    fail=1
  else
    echo "ok: $what"
  fi
}
check "--help" 0 out "--manifest FILE --out DIR" bash "$launcher" --help
check "--version" 0 out "^gut-coordinator $version " bash "$launcher" --version
check "unknown argument" 2 err "unknown argument '--frobnicate'" bash "$launcher" --frobnicate
check "no manifest" 2 err "--manifest and --out are required" bash "$launcher" --out "$work/run"
printf 'run: {name: bad, epochs: -3}\n' >"$work/bad.yaml"
check "bad manifest" 2 err "run.epochs must be in \[1, 100000\], got -3" bash "$launcher" --manifest "$work/bad.yaml" --out "$work/run"
exit $fail
