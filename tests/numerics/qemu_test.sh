#!/usr/bin/env bash
# run.numerics: the same run natively and as two other CPUs (QEMU's user-mode emulator, whose
# numerics match the real CPUs': -cpu Haswell, AVX2 + FMA; -cpu Nehalem, SSE4.2 only). In portable
# mode every agent's final parameters and the summary (accuracies, test losses at full precision)
# are identical across the three; in native mode they are not (so the test can fail). TCG has no
# AVX-512: the native run covers it on an AVX-512 machine. Skipped (77) without qemu-user.
# Usage: qemu_test.sh SOURCE_DIR BUILD_DIR
set -uo pipefail
src="$1" build="$2"
command -v qemu-x86_64 > /dev/null || { echo "SKIP: qemu-user is not installed (deploy/install-deps.sh --with-test-tools)"; exit 77; }
work="$(mktemp -d /tmp/gut-numerics-qemu.XXXXXX)"
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
for v in $(compgen -e); do [[ $v =~ ^(OPENBLAS_|ATEN_|ONEDNN_|GUT_NUMERICS) ]] && unset "$v"; done
sets=(--set run.numerics=portable)
source "$src/tests/numerics/run_small.sh"
# Under QEMU a restart would leave the emulator (exec runs the host CPU), so the emulated runs get
# the mode's environment from the start, as gut-sim prints it.
mapfile -t env_portable < <("$build/sim/gut-sim" --manifest "$work/small.yaml" --out "$work/x" "${sets[@]}" --print-numerics-environment)
summary() { grep -v -E '"(wall_s|train_s|ms_per_training_round|rounds_per_s|threads)"' "$work/$1/summary.json"; }
small_run portable
for cpu in Haswell Nehalem; do
  small_run "portable-$cpu" env "${env_portable[@]}" qemu-x86_64 -cpu "$cpu"
  grep -q restarting "$work/portable-$cpu.log" && fail "the emulated run restarted (and left QEMU)"
  [[ $(params_sha "portable-$cpu") == $(params_sha portable) ]] ||
    fail "portable: the parameters under -cpu $cpu differ from the native run's"
  diff <(summary portable) <(summary "portable-$cpu") > /dev/null || fail "portable: summary.json differs under -cpu $cpu"
  echo "portable: -cpu $cpu == native ($(params_sha portable | cut -c1-16))"
done
sets=()
small_run native
small_run native-Nehalem qemu-x86_64 -cpu Nehalem
[[ $(params_sha native) != $(params_sha native-Nehalem) ]] ||
  fail "native: -cpu Nehalem computed the same bits as this CPU; the test cannot tell portable from native here"
echo "native: -cpu Nehalem differs from this CPU, as expected"
echo PASS
