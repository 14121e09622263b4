#!/bin/bash
# Concurrent writers through the FUSE mount: 4 fio jobs, 8 writes in flight
# each, sizes from 512 bytes to 64 KiB on 512-byte boundaries (so blocks are
# partly rewritten by overlapping requests), through a cache far smaller than
# the data. After vshare umount, fio checks every block it wrote in the
# backing file itself, then again through a fresh mount.
. "$(dirname "$0")/lib.sh"
begin fio_verify
command -v fio >/dev/null || { echo "fio is not installed (scripts/install-deps.sh installs it)"; exit 1; }

img=$WORK/backing.img
mp=$WORK/mnt
"$VSHARE" create "$img" --size 64M >/dev/null
start_node "$mp" --export vol="$img" --cache-size 4M --cache-ways 4 --flush-interval 0 || exit 1

job() {
  (cd "$WORK" && fio --name=verify --filename="$1" --ioengine=libaio --direct=1 --iodepth=8 --numjobs=4 \
    --size=12M --offset_increment=16M --rw=randwrite --bsrange=512-64k --blockalign=512 \
    --verify=crc32c --verify_fatal=1 --verify_state_save=0 --randseed=4242 --group_reporting --output="$WORK/$2.fio.log" "${@:3}")
}
check "fio writes 48 MiB through the mount" job "$mp/vol.img" write --do_verify=0
check "the cache evicted under load" [ "$(stat_of "$mp" volumes.vol.cache.evictions)" -gt 1000 ]
dirty=$(stat_of "$mp" volumes.vol.dirty_blocks)
check "some written blocks are still only in the cache ($dirty dirty)" [ "$dirty" -gt 0 ]
check "no I/O errors were counted" [ "$(stat_of "$mp" volumes.vol.errors)" = 0 ]
check "vshare umount succeeds" stop_node "$mp"
check "the backing file holds exactly what fio wrote" job "$img" backing --verify_only
start_node "$mp" --export vol="$img" --cache-size 1M --cache-ways 4 || exit 1
check "fio verifies it all again through a fresh mount" job "$mp/vol.img" reread --verify_only
check "vshare umount succeeds again" stop_node "$mp"
# fio saves verify state in its working directory unless told not to.
check "fio left no verify state file behind" bash -c "! compgen -G '$WORK/*verify.state' >/dev/null"
finish
