#!/bin/bash
# Many readers of .vshare/stats at once, while the image is written: every
# read is one whole, valid JSON document, and the node survives. (Under the
# sanitizer build this is where a stats snapshot freed while its reply was
# still being sent showed up as a use-after-free.)
. "$(dirname "$0")/lib.sh"
begin stats_concurrent

img=$WORK/backing.img
mp=$WORK/mnt
"$VSHARE" create "$img" --size 64M >/dev/null
start_node "$mp" --export vol="$img" || exit 1
pid=${NODE_PID[$mp]}

dd if=/dev/urandom of="$mp/vol.img" bs=64K count=512 conv=notrunc status=none &
writer=$!
readers=()
for r in 1 2 3 4; do
  python3 - "$mp/.vshare/stats" >"$WORK/reader$r.out" 2>&1 <<'PY' &
import json, sys
bad = 0
for _ in range(300):
    with open(sys.argv[1]) as f:
        try:
            d = json.load(f)
            assert d["node"]["role"] == "root"
        except Exception as e:
            bad += 1
print(bad)
PY
  readers+=($!)
done
for p in "${readers[@]}"; do wait "$p"; done
wait "$writer"
bad=$(cat "$WORK"/reader*.out | awk '{s += $1} END {print s}')
check "1200 concurrent stats reads were all whole JSON documents (bad: $bad)" [ "$bad" = 0 ]
check "the node is still running" kill -0 "$pid"
check "its counters saw the writes" [ "$(stat_of "$mp" volumes.vol.bytes_written)" = 33554432 ]
check "vshare umount succeeds" stop_node "$mp"
finish
