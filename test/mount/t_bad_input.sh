#!/bin/bash
# Bad input gets one clear line and a non-zero exit, never a crash: CLI
# flags, images, mountpoints, cache sizes, control commands.
. "$(dirname "$0")/lib.sh"
begin bad_input

img=$WORK/a.img
mp=$WORK/mnt
mkdir -p "$mp"
"$VSHARE" create "$img" --size 16M >/dev/null

# create
expect_fail "create refuses an existing file" 1 "already exists (use --force" "$VSHARE" create "$img" --size 16M
check "create --force overwrites it" "$VSHARE" create "$img" --size 32M --force
check "the overwritten image has the new size" [ "$(stat -c %s "$img")" = 33554432 ]
expect_fail "create rejects a size that is not a number" 2 "bad size 'abc'" "$VSHARE" create "$WORK/b.img" --size abc
expect_fail "create rejects a zero size" 2 "must be greater than zero" "$VSHARE" create "$WORK/b.img" --size 0
expect_fail "create rejects a negative size" 2 "negative" "$VSHARE" create "$WORK/b.img" --size -5M
expect_fail "create rejects an unknown unit" 2 "unknown unit" "$VSHARE" create "$WORK/b.img" --size 10Q
expect_fail "create rejects a bad block size" 2 "must be a power of two" "$VSHARE" create "$WORK/b.img" --size 16M --block-size 1000
expect_fail "create rejects a size that is not whole blocks" 2 "not a multiple of the block size" "$VSHARE" create "$WORK/b.img" --size 10000
expect_fail "create without --size" 2 "missing --size" "$VSHARE" create "$WORK/b.img"
expect_fail "create in a missing directory" 1 "No such file or directory" "$VSHARE" create "$WORK/nodir/b.img" --size 16M
check "no file was left behind by failed creates" [ ! -e "$WORK/b.img" ]

# mount: images
expect_fail "mount with a missing image" 1 "image $WORK/missing.img: No such file or directory" "$VSHARE" mount "$mp" --export v="$WORK/missing.img"
chmod 000 "$img"
expect_fail "mount with an unreadable image" 1 "Permission denied" setpriv --reuid=65534 --regid=65534 --clear-groups "$VSHARE" mount "$mp" --export v="$img"
chmod 644 "$img"
expect_fail "mount with a directory as image" 1 "cannot open image $WORK: Is a directory" "$VSHARE" mount "$mp" --export v="$WORK"
expect_fail "mount with a duplicate export name" 2 "volume name 'v' is given twice" "$VSHARE" mount "$mp" --export v="$img" --export v="$img"
expect_fail "mount with one image exported twice" 2 "is exported twice" "$VSHARE" mount "$mp" --export v="$img" --export w="$img"
expect_fail "mount with a malformed export" 2 "expected NAME=IMAGE" "$VSHARE" mount "$mp" --export "$img"
expect_fail "mount with a bad volume name" 2 "volume name must be" "$VSHARE" mount "$mp" --export ".hidden=$img"
expect_fail "mount without exports" 2 "nothing to serve" "$VSHARE" mount "$mp"

# mount and serve: tree flags
expect_fail "--parent without --volume" 2 "--parent needs --volume NAME" "$VSHARE" mount "$mp" --parent 127.0.0.1:1
expect_fail "--export with --parent" 2 "exclude each other" "$VSHARE" mount "$mp" --export v="$img" --parent 127.0.0.1:1 --volume v
expect_fail "--volume without --parent" 2 "--volume goes with --parent" "$VSHARE" mount "$mp" --export v="$img" --volume v
expect_fail "--listen with two exports" 2 "one volume per node" "$VSHARE" mount "$mp" --export v="$img" --export w="$WORK/b.img" --listen 127.0.0.1:0
expect_fail "a zero --io-timeout" 2 "--io-timeout must be" "$VSHARE" mount "$mp" --parent 127.0.0.1:1 --volume v --io-timeout 0
expect_fail "a bad volume name to join" 2 "volume name must be" "$VSHARE" mount "$mp" --parent 127.0.0.1:1 --volume ../x
expect_fail "a parent nobody listens on" 1 "cannot connect to parent 127.0.0.1:1" "$VSHARE" mount "$mp" --parent 127.0.0.1:1 --volume v --io-timeout 3
check "and nothing stays mounted after it" bash -c "! awk -v p='$mp' '\$2 == p {f=1} END {exit !f}' /proc/mounts"
expect_fail "a malformed listen address" 1 "bad listen address 'nonsense'" "$VSHARE" mount "$mp" --export v="$img" --listen nonsense
expect_fail "serve without --listen" 2 "missing --listen" "$VSHARE" serve --parent 127.0.0.1:1 --volume v
expect_fail "serve with a bad volume name" 2 "volume name must be" "$VSHARE" serve --parent 127.0.0.1:1 --volume ../v --listen 127.0.0.1:0
expect_fail "serve below a parent nobody listens on" 1 "cannot connect to parent" "$VSHARE" serve --parent 127.0.0.1:1 --volume v --listen 127.0.0.1:0 --io-timeout 3

# mount: mountpoints
expect_fail "mount on a missing mountpoint" 1 "mountpoint $WORK/nowhere: No such file or directory" "$VSHARE" mount "$WORK/nowhere" --export v="$img"
expect_fail "mount on a file" 1 "is not a directory" "$VSHARE" mount "$img" --export v="$img"

# mount: cache and other flags
expect_fail "mount with a malformed cache size" 2 "--cache-size: bad size '12Q'" "$VSHARE" mount "$mp" --export v="$img" --cache-size 12Q
expect_fail "mount with a cache smaller than one set" 2 "smaller than one set" "$VSHARE" mount "$mp" --export v="$img" --cache-size 4K
expect_fail "mount with a cache larger than memory" 2 "does not fit in this machine's memory" "$VSHARE" mount "$mp" --export v="$img" --cache-size 1024P
expect_fail "mount with zero ways" 2 "--cache-ways must be" "$VSHARE" mount "$mp" --export v="$img" --cache-ways 0
expect_fail "mount with an unknown hash" 2 "unknown cache hash" "$VSHARE" mount "$mp" --export v="$img" --cache-hash crc
expect_fail "mount with an unknown flag" 2 "unrecognised option '--bogus'" "$VSHARE" mount "$mp" --export v="$img" --bogus
expect_fail "mount with a negative flush interval" 2 "--flush-interval must be" "$VSHARE" mount "$mp" --export v="$img" --flush-interval -1
expect_fail "an unknown command" 2 "unknown command 'frobnicate'" "$VSHARE" frobnicate

# an already mounted mountpoint, and control commands
start_node "$mp" --export v="$img" || exit 1
expect_fail "mount on a mounted mountpoint" 1 "is already mounted" "$VSHARE" mount "$mp" --export v="$img"
expect_fail "ctl with an unknown command" 1 "unknown command 'explode'" "$VSHARE" ctl "$mp" explode
check "the reason is in stats last_error" grep -q "unknown command 'explode'" "$mp/.vshare/stats"
check "and in the log" grep -q "unknown command 'explode'" "$WORK/node-mnt.log"
check "a raw bad command fails the write with EINVAL" bash -c "! echo '{\"cmd\":7}' >'$mp/.vshare/control' && echo '{\"cmd\":7}' 2>&1 >'$mp/.vshare/control' | grep -q 'Invalid argument'"
check "ctl reset-stats clears last_error" "$VSHARE" ctl "$mp" reset-stats
check "last_error is empty after reset" [ -z "$(stat_of "$mp" last_error)" ]
expect_fail "stats of a directory that is not a node" 1 "is not a mounted vshare node" "$VSHARE" stats "$WORK"
expect_fail "umount of a directory that is not a node" 1 "is not a mounted vshare node" "$VSHARE" umount "$WORK"
check "the node survived all of it" bash -c "\"$VSHARE\" stats '$mp' >/dev/null"
check "vshare umount succeeds" stop_node "$mp"
finish
