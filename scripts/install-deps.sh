#!/bin/bash
# Installs the Debian packages vshare needs to build, test, demo and
# benchmark. Safe to run again: it installs only what is missing, and runs
# apt-get update only when something is.
set -euo pipefail

PACKAGES=(
  cmake g++ make pkg-config
  libfuse3-dev fuse3
  libboost1.81-dev libboost-program-options1.81-dev
  nlohmann-json3-dev doctest-dev libssl-dev
  e2fsprogs util-linux iproute2 python3 fio bc gdb
  clang libclang-rt-14-dev
)

missing=()
for p in "${PACKAGES[@]}" "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "install-deps: missing packages (${missing[*]}); run as root" >&2; exit 1; }
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
