#!/bin/bash
# Installs what is needed, builds vshare twice (plain, and with AddressSanitizer
# and UndefinedBehaviorSanitizer), and runs the test suite on both: unit tests
# and mount tests (real FUSE and loop mounts; needs root). Then fuzzes the wire
# decoder with libFuzzer for a short while.
#
# To keep CI short (under 20 minutes on 2 cores): the sanitizer build compiles
# at the lowest priority while the plain build's tests run (they mostly wait
# on leases and sockets, and take the CPU first when they need it); and the
# sanitizer run leaves out the
# linearizability histories, which the plain run covers and which only take
# longer under the sanitizers (set ALL_UNDER_SANITIZERS=1 to run them too).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
configure() { cmake -S . -B "$1" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${@:2}" >/dev/null; }

status=0
configure build -DVSHARE_SANITIZE=OFF
cmake --build build -j "$(nproc)"
configure build-sanitize -DVSHARE_SANITIZE=ON
nice -n 19 cmake --build build-sanitize -j "$(nproc)" >build-sanitize.log 2>&1 &
sanitize_build=$!

echo "=== tests: plain build (build)"
(cd build && ctest --output-on-failure --timeout 600) || status=1

echo "=== building with the sanitizers (build-sanitize)"
if ! wait "$sanitize_build"; then
  tail -n 40 build-sanitize.log
  echo "the sanitizer build failed"
  exit 1
fi
echo "=== tests: sanitize build (build-sanitize)"
skip=(-E 'linearizable')
[ "${ALL_UNDER_SANITIZERS:-0}" = 1 ] && skip=()
(cd build-sanitize && ctest --output-on-failure --timeout 600 "${skip[@]}") || status=1

# The wire decoder under libFuzzer (clang), for FUZZ_SECONDS (default 30).
echo "=== tests: fuzzing (build-fuzz)"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVSHARE_FUZZ=ON >/dev/null
cmake --build build-fuzz --target wire_fuzz -j "$(nproc)" >/dev/null
(cd build-fuzz && ctest --output-on-failure -R '^fuzz/') || status=1
exit $status
