#!/bin/bash
# Configures and builds vshare into build/ (or the directory given as $1,
# with further arguments passed to cmake, e.g. -DVSHARE_SANITIZE=ON).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$dir" -j "$(nproc)"
