#!/bin/bash
# Every wait on the network has a deadline. With the root frozen (SIGSTOP),
# a leaf's read of a block it does not hold fails with EIO within
# --io-timeout and a margin, instead of hanging; after SIGCONT the same read
# succeeds, and nothing is left stuck.
. "$(dirname "$0")/lib.sh"
begin io_timeout

img=$WORK/backing.img
"$VSHARE" create "$img" --size 16M >/dev/null
start_node "$WORK/root" --export vol="$img" --listen 127.0.0.1:0 || exit 1
port=$(stat_of "$WORK/root" tree.listen_port)
start_node "$WORK/leaf" --parent "127.0.0.1:$port" --volume vol --io-timeout 2 || exit 1
root_pid=${NODE_PID[$WORK/root]}

check "a read through the tree works" dd if="$WORK/leaf/vol.img" of=/dev/null bs=4K count=1 iflag=direct status=none
kill -STOP "$root_pid"
start=$(date +%s.%N)
out=$(dd if="$WORK/leaf/vol.img" of=/dev/null bs=4K skip=100 count=1 iflag=direct status=none 2>&1)
rc=$?
took=$(echo "$(date +%s.%N) - $start" | bc)
kill -CONT "$root_pid"
check "the read fails while the root is frozen" [ "$rc" != 0 ]
check "with EIO ($out)" grep -q "Input/output error" <<<"$out"
check "within the 2 s timeout and a margin (took ${took}s)" [ "$(echo "$took < 6" | bc)" = 1 ]
check "after SIGCONT the same read works" dd if="$WORK/leaf/vol.img" of=/dev/null bs=4K skip=100 count=1 iflag=direct status=none
check "the leaf unmounts" stop_node "$WORK/leaf"
check "the root unmounts" stop_node "$WORK/root"
finish
