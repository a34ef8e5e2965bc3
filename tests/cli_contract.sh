#!/usr/bin/env bash
# The command-line contract every gut binary keeps (docs/operations/edge.md): --version prints
# "<name> <project version> (revision ...)" and exits 0, --help exits 0, an unknown flag exits 2
# naming it, a missing required flag exits 2 naming it.
#   tests/cli_contract.sh VERSION BINARY...
set -uo pipefail
version="$1"; shift
fail=0
check() {  # description, want exit code, want regex, command...
  local what="$1" want="$2" re="$3"; shift 3
  local out rc
  out="$("$@" 2>&1)"; rc=$?
  if [[ $rc != "$want" ]] || ! grep -qE -- "$re" <<<"$out"; then
    echo "FAIL: $what: exit $rc (want $want), output: $(head -c 300 <<<"$out")"
    fail=1
  else
    echo "ok: $what"
  fi
}
for bin in "$@"; do
  name="$(basename "$bin")"
  check "$name --version" 0 "^$name $version \\(revision [0-9a-f]+(-dirty)?\\)$|^$name $version \\(revision unknown\\)$" "$bin" --version
  check "$name --help" 0 "Usage:" "$bin" --help
  check "$name --definitely-not-a-flag" 2 "unknown flag --definitely-not-a-flag" "$bin" --definitely-not-a-flag
  check "$name with no flags" 2 "is required \\(--help lists the flags\\)" "$bin"
done
exit $fail
