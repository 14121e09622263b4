#!/bin/bash
# Issue 4: {"cmd":"reparent","parent":"HOST:PORT"} moves a node on purpose,
# losing nothing: a leaf below a proxy, holding unflushed writes, moves to
# the root; its writes are in the root's image file when the command
# returns, and it goes on reading and writing there. What it had cached is
# revalidated by version, not fetched again. Bad requests are
# refused with a reason.
. "$(dirname "$0")/lib.sh"
begin reparent

img=$WORK/backing.img
"$VSHARE" create "$img" --size 16M >/dev/null
timing=(--lease 2 --heartbeat 0.5)
start_node "$WORK/root" --export vol="$img" --listen 127.0.0.1:0 --flush-interval 0 "${timing[@]}" || exit 1
rp=$(stat_of "$WORK/root" tree.listen_port)
start_node "$WORK/proxy" --parent "127.0.0.1:$rp" --volume vol --listen 127.0.0.1:0 --flush-interval 0 "${timing[@]}" || exit 1
pp=$(stat_of "$WORK/proxy" tree.listen_port)
start_node "$WORK/leaf" --parent "127.0.0.1:$pp" --volume vol --flush-interval 0 "${timing[@]}" || exit 1

head -c 65536 /dev/urandom >"$WORK/a"
dd if="$WORK/a" of="$WORK/leaf/vol.img" bs=64K seek=2 oflag=direct conv=notrunc status=none
check "the leaf holds its write dirty" [ "$(stat_of "$WORK/leaf" volumes.vol.dirty_blocks)" = 16 ]
# Blocks read before the move are kept; after it they are revalidated by
# version, not sent again.
head -c 65536 /dev/urandom >"$WORK/c"
dd if="$WORK/c" of="$img" bs=64K seek=5 conv=notrunc status=none  # before the root ever read them
dd if="$WORK/leaf/vol.img" of="$WORK/c.before" bs=64K skip=5 count=1 iflag=direct status=none
check "the leaf read a region before moving" cmp -s "$WORK/c" "$WORK/c.before"
check "reparent to the root" "$VSHARE" ctl "$WORK/leaf" "{\"cmd\":\"reparent\",\"parent\":\"127.0.0.1:$rp\"}"
check "the leaf's parent is the root now" [ "$(stat_of "$WORK/leaf" tree.parent)" = "127.0.0.1:$rp" ]
check "the root has two children" [ "$(stat_of "$WORK/root" tree.children)" = 2 ]
check "the proxy has none" wait_for "[ \"\$(stat_of '$WORK/proxy' tree.children)\" = 0 ]" 5
check "the write is in the root's image file already" \
  cmp -s "$WORK/a" <(tail -c +$((2 * 65536 + 1)) "$img" | head -c 65536)
check "the leaf reads it back" cmp -s "$WORK/a" <(dd if="$WORK/leaf/vol.img" bs=64K skip=2 count=1 iflag=direct status=none)
got=$(stat_of "$WORK/leaf" tree.traffic.bytes_from_parent)
check "the region read before the move reads the same" \
  cmp -s "$WORK/c" <(dd if="$WORK/leaf/vol.img" bs=64K skip=5 count=1 iflag=direct status=none)
check "its 16 blocks were revalidated by version" [ "$(stat_of "$WORK/leaf" tree.revalidated)" = 16 ]
check "and not sent again" [ "$(stat_of "$WORK/leaf" tree.traffic.bytes_from_parent)" = "$got" ]
head -c 65536 /dev/urandom >"$WORK/b"
check "and writes on, below the root" dd if="$WORK/b" of="$WORK/leaf/vol.img" bs=64K seek=3 oflag=direct conv=notrunc status=none
check "the proxy reads that write" cmp -s "$WORK/b" <(dd if="$WORK/proxy/vol.img" bs=64K skip=3 count=1 iflag=direct status=none)
check "the leaf's log says it moved" grep -q "joined 127.0.0.1:$rp" "$WORK/node-leaf.log"

expect_fail "a root cannot reparent" 1 "a root has no parent" "$VSHARE" ctl "$WORK/root" "{\"cmd\":\"reparent\",\"parent\":\"127.0.0.1:$pp\"}"
expect_fail "reparent needs a parent" 1 "reparent needs" "$VSHARE" ctl "$WORK/leaf" '{"cmd":"reparent"}'
expect_fail "a malformed address is refused" 1 "bad parent address" "$VSHARE" ctl "$WORK/leaf" '{"cmd":"reparent","parent":"nowhere"}'
check "the leaf is still below the root" [ "$(stat_of "$WORK/leaf" tree.parent)" = "127.0.0.1:$rp" ]

for n in leaf proxy root; do check "$n unmounts" stop_node "$WORK/$n"; done
check "the image holds both writes" bash -c "cmp -s '$WORK/a' <(tail -c +$((2 * 65536 + 1)) '$img' | head -c 65536) && cmp -s '$WORK/b' <(tail -c +$((3 * 65536 + 1)) '$img' | head -c 65536)"
finish
