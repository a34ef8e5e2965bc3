#!/usr/bin/env bash
# run.numerics: portable on any machine: a small committed run (tests/numerics/run_small.sh) must
# end with every agent's parameters hashing to the value recorded in golden.sha256, so a machine
# of another kind (another CPU generation, CI elsewhere) verifies the very bits this one computed.
# Also checks that gut-sim restarted itself into the mode (no environment set by the caller).
# Usage: golden_test.sh SOURCE_DIR BUILD_DIR
set -uo pipefail
src="$1" build="$2"
work="$(mktemp -d /tmp/gut-numerics-golden.XXXXXX)"
trap 'rm -rf "$work"' EXIT
sets=(--set run.numerics=portable)
source "$src/tests/numerics/run_small.sh"
for v in $(compgen -e); do [[ $v =~ ^(OPENBLAS_|ATEN_|ONEDNN_|GUT_NUMERICS) ]] && unset "$v"; done
small_run portable
grep -q "run.numerics: portable: restarting with" "$work/portable.log" || { cat "$work/portable.log"; echo "FAIL: no restart"; exit 1; }
got=$(params_sha portable)
want=$(cut -d' ' -f1 "$src/tests/numerics/golden.sha256")
echo "params SHA-256: $got (golden: $want)"
[[ "$got" == "$want" ]] || { echo "FAIL: run.numerics portable computed other bits than the golden run"; exit 1; }
echo PASS
