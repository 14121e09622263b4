#!/bin/bash
# One node serving two images: each appears as NAME.img with its own size and
# block size (recorded by create as an xattr), the cache budget is shared,
# and the data of each goes to its own backing file.
. "$(dirname "$0")/lib.sh"
begin multi_export

mp=$WORK/mnt
check "create a 32 MiB image with 512-byte blocks" "$VSHARE" create "$WORK/small.img" --size 32M --block-size 512
check "create a 64 MiB image with default blocks" "$VSHARE" create "$WORK/big.img" --size 64M
start_node "$mp" --export small="$WORK/small.img" --export big="$WORK/big.img" --cache-size 8M || exit 1

check "both images are listed" [ "$(ls "$mp" | sort | tr '\n' ' ')" = "big.img small.img " ]
check "small.img is 32 MiB" [ "$(stat -c %s "$mp/small.img")" = 33554432 ]
check "big.img is 64 MiB" [ "$(stat -c %s "$mp/big.img")" = 67108864 ]
check "stats --json is valid JSON" bash -c "'$VSHARE' stats --json '$mp' | python3 -c 'import json,sys; json.load(sys.stdin)'"
check "small uses the recorded 512-byte blocks" [ "$(stat_of "$mp" volumes.small.block_size)" = 512 ]
check "big uses 4096-byte blocks" [ "$(stat_of "$mp" volumes.big.block_size)" = 4096 ]
check "each volume gets half of the 8 MiB cache" [ "$(stat_of "$mp" volumes.small.cache.capacity_bytes)" = 4194304 ]
check "the role is root" [ "$(stat_of "$mp" node.role)" = root ]

head -c 1048576 /dev/urandom >"$WORK/a"
head -c 1048576 /dev/urandom >"$WORK/b"
dd if="$WORK/a" of="$mp/small.img" bs=64K seek=3 conv=notrunc status=none
dd if="$WORK/b" of="$mp/big.img" bs=64K seek=5 conv=notrunc status=none
check "writes are counted per volume" [ "$(stat_of "$mp" volumes.small.bytes_written)" = 1048576 ]
check "vshare umount succeeds" stop_node "$mp"
check "small's data is in small's backing file" cmp -s "$WORK/a" <(tail -c +$((3 * 65536 + 1)) "$WORK/small.img" | head -c 1048576)
check "big's data is in big's backing file" cmp -s "$WORK/b" <(tail -c +$((5 * 65536 + 1)) "$WORK/big.img" | head -c 1048576)
zeros_after() {  # FILE OFFSET: every byte from OFFSET to the end is zero
  [ -z "$(tail -c +$(($2 + 1)) "$1" | tr -d '\0' | head -c 1)" ]
}
check "the rest of small's backing file is untouched" zeros_after "$WORK/small.img" $((3 * 65536 + 1048576))
check "the rest of big's backing file is untouched" zeros_after "$WORK/big.img" $((5 * 65536 + 1048576))
check "big's backing file is untouched before its write" [ -z "$(head -c $((5 * 65536)) "$WORK/big.img" | tr -d '\0' | head -c 1)" ]
finish
