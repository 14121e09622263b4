#!/bin/bash
# Write modes on a leaf below a root, with no periodic write-back anywhere:
#  - sync: when a plain write (no fsync) returns, the root's image file on
#    disk already holds the bytes;
#  - async: it does not, until fsync, after which it does.
# And on a root alone, sync writes reach its image file before returning.
. "$(dirname "$0")/lib.sh"
begin write_modes

img=$WORK/backing.img
"$VSHARE" create "$img" --size 16M >/dev/null
start_node "$WORK/root" --export vol="$img" --listen 127.0.0.1:0 --flush-interval 0 || exit 1
port=$(stat_of "$WORK/root" tree.listen_port)
start_node "$WORK/sync" --parent "127.0.0.1:$port" --volume vol --write-mode sync --flush-interval 0 || exit 1
start_node "$WORK/async" --parent "127.0.0.1:$port" --volume vol --write-mode async --flush-interval 0 || exit 1
check "stats show the sync leaf's write mode" [ "$(stat_of "$WORK/sync" node.write_mode)" = sync ]
check "and the async one's" [ "$(stat_of "$WORK/async" node.write_mode)" = async ]

on_disk() {  # OFFSET FILE: the root's image file holds FILE at OFFSET
  cmp -s "$2" <(tail -c +$(($1 + 1)) "$img" | head -c "$(stat -c %s "$2")")
}
head -c 65536 /dev/urandom >"$WORK/s"
dd if="$WORK/s" of="$WORK/sync/vol.img" bs=64K seek=1 oflag=direct conv=notrunc status=none
check "sync: the root's image file has the bytes when the write returns" on_disk 65536 "$WORK/s"

head -c 65536 /dev/urandom >"$WORK/a"
dd if="$WORK/a" of="$WORK/async/vol.img" bs=64K seek=5 oflag=direct conv=notrunc status=none
check "async: it does not yet" bash -c "! cmp -s '$WORK/a' <(tail -c +$((5 * 65536 + 1)) '$img' | head -c 65536)"
check "async: the leaf holds them dirty" [ "$(stat_of "$WORK/async" volumes.vol.dirty_blocks)" = 16 ]
check "fsync on the async leaf" python3 -c "import os; fd = os.open('$WORK/async/vol.img', os.O_RDWR); os.fsync(fd)"
check "async: after fsync it does" on_disk $((5 * 65536)) "$WORK/a"
check "the sync leaf unmounts" stop_node "$WORK/sync"
check "the async leaf unmounts" stop_node "$WORK/async"
check "the root unmounts" stop_node "$WORK/root"

start_node "$WORK/solo" --export vol="$img" --write-mode sync --flush-interval 0 || exit 1
head -c 65536 /dev/urandom >"$WORK/r"
dd if="$WORK/r" of="$WORK/solo/vol.img" bs=64K seek=9 oflag=direct conv=notrunc status=none
check "a sync root alone: the image file has the bytes when the write returns" on_disk $((9 * 65536)) "$WORK/r"
check "it unmounts" stop_node "$WORK/solo"
expect_fail "semi-sync is refused, not faked" 2 "semi-sync is not implemented yet" "$VSHARE" mount "$WORK/x" --export v="$img" --write-mode semi-sync
finish
