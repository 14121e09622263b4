#!/bin/bash
# Runs a libFuzzer target for FUZZ_SECONDS (default 30) from a copy of its
# seed corpus, so what it discovers never lands in the source tree. Fails on
# any crash, leak, sanitizer report or timeout the fuzzer reports.
set -u
fuzzer=${1:?usage: run_fuzz.sh FUZZER SEED_DIR}
seeds=${2:?usage: run_fuzz.sh FUZZER SEED_DIR}
work=$(mktemp -d /tmp/vshare-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r "$seeds" "$work/corpus"
"$fuzzer" -max_total_time="${FUZZ_SECONDS:-30}" -rss_limit_mb=2048 -timeout=10 \
  -artifact_prefix="$work/" -print_final_stats=1 "$work/corpus" >"$work/log" 2>&1
rc=$?
grep -E "^Done|stat::number_of_executed_units|ERROR|SUMMARY" "$work/log"
if [ $rc != 0 ]; then
  tail -n 40 "$work/log"
  for a in "$work"/crash-* "$work"/leak-* "$work"/timeout-*; do [ -f "$a" ] && { echo "reproducer ($a):"; od -A d -t x1 "$a" | head -20; }; done
fi
exit $rc
