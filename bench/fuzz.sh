#!/usr/bin/env bash
# libFuzzer with AddressSanitizer and UndefinedBehaviorSanitizer on every parser of untrusted
# input: peer frames and their reassembly (fuzz_frame), every codec's Decode and the encode/decode
# round trip (fuzz_codec), the run manifest (fuzz_manifest), the data readers (fuzz_data: IDX,
# CIFAR, JPEG image folders) and checkpoint files (fuzz_checkpoint). Harnesses: tests/fuzz/.
#
#   bench/fuzz.sh [--runs N] [--smoke] [--targets a,b,...] [--table FILE]
#
# Configures a separate clang tree (build-fuzz/, -DGUT_FUZZ=ON, clang-14 and libclang-rt-14-dev from
# Debian), builds the targets, and runs each from the committed seed corpus (tests/fuzz/corpus/) for
# N executions (default 1000000; --smoke: 20000, what the test suite runs). New inputs that add
# coverage land in build-fuzz/corpus/ (not committed); a crash writes its input there too and fails
# the script. --targets picks some of frame, codec, manifest, data, checkpoint (default: all).
# Prints a markdown table (and writes it to --table FILE).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs=1000000 table=""
targets=(frame codec manifest data checkpoint)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --smoke) runs=20000; shift ;;
    --table) table="$2"; shift 2 ;;
    --targets) IFS=, read -r -a targets <<<"$2"; shift 2 ;;
    *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
done
for tool in clang-14 clang++-14; do
  command -v "$tool" >/dev/null || { echo "fuzz: $tool not found (apt-get install clang-14 libclang-rt-14-dev)" >&2; exit 77; }
done
[[ -n "$(find /usr/lib/llvm-14 -name 'libclang_rt.fuzzer-x86_64.a' 2>/dev/null | head -1)" ]] ||
  { echo "fuzz: libFuzzer runtime not found (apt-get install libclang-rt-14-dev)" >&2; exit 77; }
tree="$here/build-fuzz"
if [[ ! -f "$tree/CMakeCache.txt" ]]; then
  CC=clang-14 CXX=clang++-14 cmake -S "$here" -B "$tree" -DGUT_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
fi
cmake --build "$tree" -j "$(nproc 2>/dev/null || echo 2)" --target "${targets[@]/#/fuzz_}" >"$tree/build.log" 2>&1 ||
  { tail -30 "$tree/build.log" >&2; exit 1; }
out="| target | executions | seconds | executions/s | coverage (edges) | corpus | result |\n|---|---|---|---|---|---|---|\n"
status=0
for t in "${targets[@]}"; do
  mkdir -p "$tree/corpus/$t" "$tree/crashes/$t"
  log="$tree/fuzz_${t}_${runs}.log"  # per run length: a smoke run beside a long one keeps its own log
  set +e
  (cd "$tree/crashes/$t" && "$tree/tests/fuzz/fuzz_$t" -runs="$runs" -max_len=16384 -rss_limit_mb=2048 \
      -print_final_stats=1 "$tree/corpus/$t" "$here/tests/fuzz/corpus/$t") >"$log" 2>&1
  rc=$?
  set -e
  done_line="$(grep -aE '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1 || true)"
  n="$(echo "$done_line" | awk '{print $2}')"
  s="$(echo "$done_line" | awk '{print $5}')"
  cov="$(grep -aoE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}' || true)"
  corpus="$(grep -aoE 'corp: [0-9]+' "$log" | tail -1 | awk '{print $2}' || true)"
  result="ok"
  if [[ $rc != 0 || -z "$n" ]]; then
    result="**FAILED** (exit $rc, see $log)"
    status=1
    grep -aE 'ERROR|SUMMARY|runtime error' "$log" | head -5 >&2 || true
  fi
  rate="$(awk -v n="${n:-0}" -v s="${s:-0}" 'BEGIN { if (s > 0) printf "%.0f", n / s; else print "-" }')"
  out+="| fuzz_$t | ${n:-0} | ${s:-?} | $rate | ${cov:-?} | ${corpus:-?} | $result |\n"
done
printf "%b" "$out"
[[ -n "$table" ]] && printf "%b" "$out" >"$table"
exit $status
