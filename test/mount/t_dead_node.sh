#!/bin/bash
# A node killed with SIGKILL leaves a dead FUSE mount behind. The tools say
# so plainly, vshare umount removes it, and a new node can then mount there
# and read what was fsynced before the kill.
. "$(dirname "$0")/lib.sh"
begin dead_node

img=$WORK/backing.img
mp=$WORK/mnt
"$VSHARE" create "$img" --size 32M >/dev/null
start_node "$mp" --export vol="$img" --flush-interval 0 || exit 1
head -c 65536 /dev/urandom >"$WORK/synced"
dd if="$WORK/synced" of="$mp/vol.img" bs=64K conv=notrunc,fsync status=none
pid=${NODE_PID[$mp]}
kill -KILL "$pid"
wait "$pid" 2>/dev/null
check "the node is gone" bash -c "! kill -0 $pid 2>/dev/null"
expect_fail "stats explain that the node died" 1 "has died" "$VSHARE" stats "$mp"
expect_fail "mount explains the dead mount" 1 "holds the mount of a node that died" "$VSHARE" mount "$mp" --export vol="$img"
expect_fail "vshare umount removes the dead mount" 0 "had died; removed its mount" "$VSHARE" umount "$mp"
check "no mount is left" bash -c "! mountpoint -q '$mp'"
unset "NODE_PID[$mp]"
start_node "$mp" --export vol="$img" || exit 1
check "a new node serves what was fsynced before the kill" cmp -s "$WORK/synced" <(head -c 65536 "$mp/vol.img")
check "vshare umount succeeds" stop_node "$mp"
finish
