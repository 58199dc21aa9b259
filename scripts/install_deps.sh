#!/usr/bin/env bash
# Installs the Debian packages Tessera builds with; installs nothing when all are present.
#   scripts/install_deps.sh               everything: build, tests, benchmarks, fuzzing
#   scripts/install_deps.sh --build-only  what the `tessera` binary needs to build (the images)
set -euo pipefail
pkgs=(cmake g++ make ccache pkg-config git python3 python3-venv python3-pip
      libspdlog-dev libfmt-dev nlohmann-json3-dev
      libyaml-cpp-dev libcli11-dev libgloo-dev libpcre2-dev libopenblas-dev libboost-dev libssl-dev openssl
      libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc)
if [ "${1:-}" != "--build-only" ]; then
  pkgs+=(libgtest-dev libgmock-dev libbenchmark-dev
         clang libclang-rt-14-dev libomp-dev)  # the last three: make fuzz (libFuzzer, ASan, OpenMP)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
