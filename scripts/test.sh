#!/bin/bash
# Installs what is needed, builds vshare twice (plain, and with AddressSanitizer
# and UndefinedBehaviorSanitizer), and runs the whole test suite on both:
# unit tests and mount tests (real FUSE and loop mounts; needs root). Then
# fuzzes the wire decoder with libFuzzer for a short while.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

status=0
for variant in plain sanitize; do
  if [ "$variant" = plain ]; then
    dir=build
    bash scripts/build.sh "$dir" -DVSHARE_SANITIZE=OFF
  else
    dir=build-sanitize
    bash scripts/build.sh "$dir" -DVSHARE_SANITIZE=ON
  fi
  echo "=== tests: $variant build ($dir)"
  (cd "$dir" && ctest --output-on-failure --timeout 600) || status=1
done

# The wire decoder under libFuzzer (clang), for FUZZ_SECONDS (default 30).
echo "=== tests: fuzzing (build-fuzz)"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVSHARE_FUZZ=ON >/dev/null
cmake --build build-fuzz --target wire_fuzz -j "$(nproc)" >/dev/null
(cd build-fuzz && ctest --output-on-failure -R '^fuzz/') || status=1
exit $status
