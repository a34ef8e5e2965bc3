#!/usr/bin/env bash
# deploy.systemd_verify: `systemd-analyze verify` of deploy/systemd/gut-agentd.service and
# gut-coordinator.service, against a staged install (cmake --install BUILD --prefix /usr into a
# temporary root, plus the host's own systemd units for the targets they refer to), so that
# ExecStart's /usr/bin/gut-agentd and /usr/libexec/gut/coordinator-start resolve. Any warning fails.
# Also: every $GUT_* variable ExecStart names is set in the environment file and the other way
# round, and the installed units are the source tree's. Prints systemd-analyze security's score.
#   tests/deploy/systemd-verify.sh BUILD_DIR       (exit 77: systemd-analyze missing)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="$(cd "${1:?usage: systemd-verify.sh BUILD_DIR}" && pwd)"
command -v systemd-analyze >/dev/null ||
  { echo "SKIP: systemd-analyze not installed (apt-get install systemd)"; exit 77; }
units=(gut-agentd.service gut-coordinator.service)
systemd_units=""
for d in /usr/lib/systemd/system /lib/systemd/system; do
  [[ -f "$d/sysinit.target" ]] && { systemd_units="$d"; break; }
done
[[ -n "$systemd_units" ]] || { echo "SKIP: systemd's own units (sysinit.target) not installed"; exit 77; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/root"
DESTDIR="$root" cmake --install "$build" --prefix /usr >"$work/install.log" ||
  { cat "$work/install.log"; echo "FAIL: cmake --install (build the daemons first)"; exit 1; }
# The targets and slices the units are ordered after (network-online.target, sysinit.target, ...).
mkdir -p "$root/usr/lib/systemd/system"
cp -an "$systemd_units/." "$root/usr/lib/systemd/system/"
unitdir="$root/lib/systemd/system"
[[ -d "$unitdir" ]] || unitdir="$root/usr/lib/systemd/system"

fail=0
for u in "${units[@]}"; do
  [[ -f "$unitdir/$u" ]] || { echo "FAIL: $u not installed in $unitdir"; fail=1; continue; }
  cmp -s "$unitdir/$u" "$here/deploy/systemd/$u" || { echo "FAIL: installed $u differs from deploy/systemd/$u"; fail=1; }
  out="$(systemd-analyze verify --root="$root" "$u" 2>&1)" && rc=0 || rc=$?
  if [[ $rc -ne 0 || -n "$out" ]]; then
    echo "FAIL: systemd-analyze verify $u (exit $rc):"
    echo "$out"
    fail=1
  else
    echo "ok: systemd-analyze verify $u"
  fi
  # ExecStart's $VARIABLES against the EnvironmentFile's assignments.
  envfile="$(sed -n 's/^EnvironmentFile=-\{0,1\}//p' "$unitdir/$u")"
  [[ -f "$root$envfile" ]] || { echo "FAIL: $u: EnvironmentFile $envfile not installed"; fail=1; continue; }
  used="$(sed -n 's/^ExecStart=//p' "$unitdir/$u" | grep -o '\$[A-Z_]*' | tr -d '$' | sort)"
  set_vars="$(sed -n 's/^\([A-Z_][A-Z0-9_]*\)=.*/\1/p' "$root$envfile" | sort)"
  if [[ "$used" != "$set_vars" ]]; then
    echo "FAIL: $u: ExecStart's variables and $envfile's differ:"
    diff <(echo "$used") <(echo "$set_vars") || true
    fail=1
  else
    echo "ok: $u: ExecStart's $(echo "$used" | wc -l) variables are those of $envfile"
  fi
  # systemd-analyze security (information; 'OK' or better is expected).
  score="$(systemd-analyze security --offline=true --root="$root" "$u" 2>&1 | grep 'Overall exposure' || true)"
  echo "   ${score:-systemd-analyze security: no score}"
  case "$score" in *UNSAFE* | *EXPOSED* | *MEDIUM*) echo "FAIL: $u: sandbox too weak"; fail=1 ;; esac
done
exit "$fail"
