#!/bin/bash
# Write modes on leaves below a proxy below a root, with no periodic
# write-back anywhere (issue 3, test 4):
#  - sync: when a plain write (no fsync) returns, the root's image file on
#    disk already holds the bytes;
#  - semi-sync: the parent (the proxy) holds them, the root's file does not;
#    fsync, or dropping the leaf's cache (FORWARD), takes them to the root;
#  - async: neither does, until fsync; then both have had them.
# And on a root alone, sync writes reach its image file before returning.
. "$(dirname "$0")/lib.sh"
begin write_modes

img=$WORK/backing.img
"$VSHARE" create "$img" --size 16M >/dev/null
start_node "$WORK/root" --export vol="$img" --listen 127.0.0.1:0 --flush-interval 0 || exit 1
port=$(stat_of "$WORK/root" tree.listen_port)
start_node "$WORK/proxy" --parent "127.0.0.1:$port" --volume vol --listen 127.0.0.1:0 --flush-interval 0 || exit 1
pport=$(stat_of "$WORK/proxy" tree.listen_port)
for m in sync semi-sync async; do
  start_node "$WORK/$m" --parent "127.0.0.1:$pport" --volume vol --write-mode $m --flush-interval 0 || exit 1
  check "stats show the $m leaf's write mode" [ "$(stat_of "$WORK/$m" node.write_mode)" = $m ]
done

on_disk() {  # OFFSET FILE: the root's image file holds FILE at OFFSET
  cmp -s "$2" <(tail -c +$(($1 + 1)) "$img" | head -c "$(stat -c %s "$2")")
}
write_at() {  # LEAF FILE SEEK64K
  dd if="$2" of="$WORK/$1/vol.img" bs=64K seek="$3" oflag=direct conv=notrunc status=none
}
proxy_dirty() { stat_of "$WORK/proxy" volumes.vol.dirty_blocks; }

head -c 65536 /dev/urandom >"$WORK/s"
write_at sync "$WORK/s" 1
check "sync: the root's image file has the bytes when the write returns" on_disk 65536 "$WORK/s"
check "sync: nothing is left dirty in the proxy" [ "$(proxy_dirty)" = 0 ]

head -c 65536 /dev/urandom >"$WORK/m"
write_at semi-sync "$WORK/m" 3
check "semi-sync: the proxy holds the 16 blocks (dirty) when the write returns" [ "$(proxy_dirty)" = 16 ]
check "semi-sync: they came as FORWARDs" [ "$(stat_of "$WORK/proxy" tree.traffic.served_blocks.FORWARD 0)" = 16 ]
check "semi-sync: the root's file does not have them" bash -c "! cmp -s '$WORK/m' <(tail -c +$((3 * 65536 + 1)) '$img' | head -c 65536)"
check "semi-sync: the leaf holds them clean" [ "$(stat_of "$WORK/semi-sync" volumes.vol.dirty_blocks)" = 0 ]
check "fsync on the semi-sync leaf" python3 -c "import os; fd = os.open('$WORK/semi-sync/vol.img', os.O_RDWR); os.fsync(fd)"
check "semi-sync: after fsync the root's file has them" on_disk $((3 * 65536)) "$WORK/m"
check "and the proxy holds nothing dirty" [ "$(proxy_dirty)" = 0 ]

head -c 65536 /dev/urandom >"$WORK/m2"
write_at semi-sync "$WORK/m2" 7
check "semi-sync: a second write sits in the proxy" [ "$(proxy_dirty)" = 16 ]
forwards=$(stat_of "$WORK/semi-sync" tree.traffic.sent_blocks.FORWARD)
root_in=$(stat_of "$WORK/root" tree.traffic.bytes_from_children)
check "the semi-sync leaf drops its cache" "$VSHARE" ctl "$WORK/semi-sync" drop-cache
check "which first sent 16 FORWARDs without data" [ "$(stat_of "$WORK/semi-sync" tree.traffic.sent_blocks.FORWARD)" = $((forwards + 16)) ]
check "so the proxy passed the blocks up to the root" [ "$(stat_of "$WORK/root" tree.traffic.bytes_from_children)" = $((root_in + 65536)) ]
check "and holds nothing dirty" [ "$(proxy_dirty)" = 0 ]
leaf_in=$(stat_of "$WORK/semi-sync" tree.traffic.bytes_from_parent)
check "a read on the leaf returns the bytes" cmp -s "$WORK/m2" <(dd if="$WORK/semi-sync/vol.img" bs=64K skip=7 count=1 iflag=direct status=none)
check "fetched again from the parent: the copies were dropped" [ "$(stat_of "$WORK/semi-sync" tree.traffic.bytes_from_parent)" = $((leaf_in + 65536)) ]

head -c 65536 /dev/urandom >"$WORK/a"
from_children=$(stat_of "$WORK/proxy" tree.traffic.bytes_from_children)
write_at async "$WORK/a" 5
check "async: the root's file does not have the bytes" bash -c "! cmp -s '$WORK/a' <(tail -c +$((5 * 65536 + 1)) '$img' | head -c 65536)"
check "async: nor does the proxy (no block bytes reached it)" [ "$(stat_of "$WORK/proxy" tree.traffic.bytes_from_children)" = "$from_children" ]
check "async: the leaf holds them dirty" [ "$(stat_of "$WORK/async" volumes.vol.dirty_blocks)" = 16 ]
check "fsync on the async leaf" python3 -c "import os; fd = os.open('$WORK/async/vol.img', os.O_RDWR); os.fsync(fd)"
check "async: after fsync the root's file has them" on_disk $((5 * 65536)) "$WORK/a"
check "and they went through the proxy" [ "$(stat_of "$WORK/proxy" tree.traffic.bytes_from_children)" = $((from_children + 65536)) ]

for m in sync semi-sync async; do check "the $m leaf unmounts" stop_node "$WORK/$m"; done
check "the proxy unmounts" stop_node "$WORK/proxy"
check "the root unmounts" stop_node "$WORK/root"
check "every write is in the image" bash -c "$(declare -f on_disk); img='$img'; on_disk 65536 '$WORK/s' && on_disk $((3 * 65536)) '$WORK/m' && on_disk $((7 * 65536)) '$WORK/m2' && on_disk $((5 * 65536)) '$WORK/a'"

start_node "$WORK/solo" --export vol="$img" --write-mode sync --flush-interval 0 || exit 1
head -c 65536 /dev/urandom >"$WORK/r"
dd if="$WORK/r" of="$WORK/solo/vol.img" bs=64K seek=9 oflag=direct conv=notrunc status=none
check "a sync root alone: the image file has the bytes when the write returns" on_disk $((9 * 65536)) "$WORK/r"
check "it unmounts" stop_node "$WORK/solo"
expect_fail "semi-sync on a root is refused: there is no parent" 2 "semi-sync needs a parent" "$VSHARE" mount "$WORK/x" --export v="$img" --write-mode semi-sync
expect_fail "an unknown mode is refused" 2 "must be sync, semi-sync or async" "$VSHARE" mount "$WORK/x" --export v="$img" --write-mode fast
finish
