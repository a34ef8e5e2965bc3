#!/usr/bin/env bash
# Installs everything gut needs from Debian 12's archive: the toolchain, the libraries, the
# Fashion-MNIST data set and an OpenMP OpenBLAS build (Debian's libtorch otherwise runs GEMM on
# reference BLAS at half speed). Idempotent: when every package is present it does nothing.
# Also fetches promtool (from Debian's prometheus package, unpacked into .deps/bin without
# installing the server) so that the tests can lint every /metrics page; without network access
# that step only warns.
# Usage: deploy/install-deps.sh [--check] [--with-test-tools]
#   --check            exit 1 if anything is missing, install nothing
#   --with-test-tools  also the tools of the deployment, security and operator-view tests (each of
#                      those tests is skipped, naming the tool, where its tool is missing): podman,
#                      runc, catatonit, buildah, debootstrap (container image, Kubernetes-as-pods and
#                      .deb tests), openssl (certificates), prometheus and prometheus-alertmanager
#                      (rules and live scrape), chromium (status page), python3-grpcio,
#                      python3-grpc-tools and python3-yaml (the independent adversary client and the
#                      manifest checks), python3-torch and python3-numpy (your-model tests: Python
#                      scripts and loads models back), qemu-user (run.numerics: other CPU models),
#                      clang-14 and libclang-rt-14-dev (libFuzzer), systemd
#                      (systemd-analyze verify). kubectl is not in Debian 12 in a usable version
#                      (kubernetes-client is 1.20); the Kubernetes tests use one from PATH.
set -euo pipefail
check=0 test_tools=0
for arg in "$@"; do
  case "$arg" in
    --check) check=1 ;;
    --with-test-tools) test_tools=1 ;;
    *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

fetch_promtool() {
  [[ -x "$here/.deps/bin/promtool" ]] && return 0
  local tmp
  tmp="$(mktemp -d)"
  if (cd "$tmp" && apt-get download -q prometheus >/dev/null 2>&1) && dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root"; then
    mkdir -p "$here/.deps/bin"
    cp "$tmp/root/usr/bin/promtool" "$here/.deps/bin/promtool"
    echo "install-deps: promtool in .deps/bin" >&2
  else
    echo "install-deps: could not fetch promtool (no network?); /metrics lint tests will be skipped" >&2
  fi
  rm -rf "$tmp"
}

PACKAGES=(
  # toolchain
  g++ cmake make pkg-config ca-certificates git
  # libraries
  libtorch-dev libopenblas0-openmp
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libspdlog-dev libyaml-cpp-dev libzstd-dev zlib1g-dev libjpeg62-turbo-dev
  prometheus-cpp-dev libcli11-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev
  # data
  dataset-fashion-mnist
)
if [[ $test_tools == 1 ]]; then
  PACKAGES+=(podman runc catatonit buildah debootstrap openssl prometheus prometheus-alertmanager chromium
             python3-grpcio python3-grpc-tools python3-yaml python3-torch python3-numpy qemu-user clang-14 libclang-rt-14-dev
             systemd)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  [[ $check == 1 ]] || fetch_promtool
  exit 0
fi
if [[ $check == 1 ]]; then
  echo "missing packages: ${missing[*]}" >&2
  exit 1
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# The package lists may be absent on a fresh machine; refresh them once.
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fetch_promtool
