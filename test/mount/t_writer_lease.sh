#!/bin/bash
# The writer lease (issue 3, item 8): opening NAME.img for writing takes a
# volume-wide lease through the tree.
#  - A second host's write-open fails with EBUSY and a clear log line, the
#    root's own included; read-only opens elsewhere work.
#  - Closing gives the lease back; so does a holder that dies.
#  - With --shared-writers on every writer, write-opens coexist; a writer
#    without it is still refused while they hold it.
. "$(dirname "$0")/lib.sh"
begin writer_lease

img=$WORK/backing.img
"$VSHARE" create "$img" --size 16M >/dev/null
# A short lease: a dead holder's lease is released once it is over.
start_node "$WORK/root" --export vol="$img" --listen 127.0.0.1:0 --lease 2 || exit 1
port=$(stat_of "$WORK/root" tree.listen_port)
start_node "$WORK/p" --parent "127.0.0.1:$port" --volume vol --listen 127.0.0.1:0 || exit 1
pport=$(stat_of "$WORK/p" tree.listen_port)
for n in a b; do start_node "$WORK/$n" --parent "127.0.0.1:$pport" --volume vol || exit 1; done
start_node "$WORK/c" --parent "127.0.0.1:$port" --volume vol || exit 1

open_rw() {  # FILE: open it for writing, write a byte, close
  python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.pwrite(fd, b"x", 0)
os.close(fd)' "$1"
}

check "nobody holds the lease at first" [ "$(stat_of "$WORK/a" tree.writer_lease)" = none ]
check "leaf a opens the image for writing" hold_open "$WORK/a/vol.img"
a_holder=$HELD_PID
check "a holds the exclusive lease" [ "$(stat_of "$WORK/a" tree.writer_lease)" = exclusive ]
check "status says so" bash -c "'$VSHARE' status '$WORK/a' | grep -q 'writer:   exclusive (the image is open for writing here)'"
check "the root saw one LEASE request, through the proxy" [ "$(stat_of "$WORK/root" tree.traffic.served.LEASE 0)" = 1 ]
expect_fail "its sibling's write-open gets EBUSY" 1 "Device or resource busy" open_rw "$WORK/b/vol.img"
expect_fail "so does a leaf on another branch" 1 "Device or resource busy" open_rw "$WORK/c/vol.img"
expect_fail "and the root's own" 1 "Device or resource busy" open_rw "$WORK/root/vol.img"
check "the refused node says why in its log" grep -q "write-open refused: another node holds the writer lease of volume vol" "$WORK/node-c.log"
check "read-only opens elsewhere work" dd if="$WORK/c/vol.img" of=/dev/null bs=64K count=4 status=none
check "and on the root" dd if="$WORK/root/vol.img" of=/dev/null bs=64K count=4 status=none
check "a's own second write-open works (same host)" open_rw "$WORK/a/vol.img"

let_go "$a_holder"
check "after a closes, c may write" open_rw "$WORK/c/vol.img"
check "and a's lease is gone" [ "$(stat_of "$WORK/a" tree.writer_lease)" = none ]

check "b opens the image for writing" hold_open "$WORK/b/vol.img"
b_holder=$HELD_PID
expect_fail "c is refused while b holds it" 1 "Device or resource busy" open_rw "$WORK/c/vol.img"
# b dies holding the lease: its link closes, and once b's lease (2 s, from
# the root) is over, the writer lease goes too.
bpid=${NODE_PID[$WORK/b]}
kill -KILL "$bpid"
wait "$bpid" 2>/dev/null
let_go "$b_holder"
"$VSHARE" umount "$WORK/b" >/dev/null 2>&1
unset "NODE_PID[$WORK/b]"
check "after b dies, c may write" wait_for "open_rw '$WORK/c/vol.img' 2>/dev/null" 10

for n in a c; do check "leaf $n unmounts" stop_node "$WORK/$n"; done

# Shared writers: every writer says --shared-writers.
for n in s1 s2; do start_node "$WORK/$n" --parent "127.0.0.1:$pport" --volume vol --shared-writers || exit 1; done
start_node "$WORK/s3" --parent "127.0.0.1:$port" --volume vol --shared-writers || exit 1
check "shared writer 1 opens for writing" hold_open "$WORK/s1/vol.img"
s1_holder=$HELD_PID
check "it holds the lease shared" [ "$(stat_of "$WORK/s1" tree.writer_lease)" = shared ]
check "shared writer 2, beside it, opens for writing too" hold_open "$WORK/s2/vol.img"
s2_holder=$HELD_PID
check "and shared writer 3, on the other branch" open_rw "$WORK/s3/vol.img"
start_node "$WORK/x" --parent "127.0.0.1:$port" --volume vol || exit 1
expect_fail "a writer without --shared-writers is still refused" 1 "Device or resource busy" open_rw "$WORK/x/vol.img"
let_go "$s1_holder"
let_go "$s2_holder"
check "once the shared writers close, it may write" wait_for "open_rw '$WORK/x/vol.img' 2>/dev/null" 10

for n in s1 s2 s3 x p; do check "node $n unmounts" stop_node "$WORK/$n"; done
check "the root unmounts" stop_node "$WORK/root"
finish
