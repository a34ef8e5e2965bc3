#!/usr/bin/env bash
# Installs everything gut needs from Debian 12's archive: the toolchain, the libraries, the
# Fashion-MNIST data set and an OpenMP OpenBLAS build (Debian's libtorch otherwise runs GEMM on
# reference BLAS at half speed). Idempotent: when every package is present it does nothing.
# Usage: deploy/install-deps.sh [--check]   (--check: exit 1 if anything is missing, install nothing)
set -euo pipefail

PACKAGES=(
  # toolchain
  g++ cmake make pkg-config ca-certificates git
  # libraries
  libtorch-dev libopenblas0-openmp
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libspdlog-dev libyaml-cpp-dev libzstd-dev zlib1g-dev
  prometheus-cpp-dev libcli11-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev
  # data
  dataset-fashion-mnist
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
if [[ "${1:-}" == "--check" ]]; then
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
