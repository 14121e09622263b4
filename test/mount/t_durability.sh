#!/bin/bash
# When written data reaches the backing file: not before a flush (writes are
# write-back), and always after fsync, the flush command, the background
# flusher, vshare umount, or SIGTERM. Checked by reading the backing file
# itself. Also covers unaligned, O_DIRECT and end-of-image I/O.
. "$(dirname "$0")/lib.sh"
begin durability

img=$WORK/backing.img
mp=$WORK/mnt
MiB=1048576

# in_backing OFFSET PATTERN: the backing file holds PATTERN at OFFSET.
in_backing() {
  cmp -s -n "$(stat -c %s "$2")" "$2" <(tail -c +$(($1 + 1)) "$img")
}
pattern() { head -c "${2:-$MiB}" /dev/urandom >"$WORK/$1"; echo "$WORK/$1"; }
put() { dd if="$2" of="$mp/vol.img" bs=64K seek="$1" oflag=seek_bytes conv=notrunc status=none; }

"$VSHARE" create "$img" --size 64M >/dev/null
start_node "$mp" --export vol="$img" --flush-interval 0 || exit 1

p1=$(pattern p1)
put $((4 * MiB)) "$p1"
check "a write without fsync stays in the cache (write-back)" bash -c "! cmp -s -n $MiB '$p1' <(tail -c +$((4 * MiB + 1)) '$img')"
check "stats count 256 dirty blocks" [ "$(stat_of "$mp" volumes.vol.dirty_blocks)" = 256 ]
check "fsync on the image succeeds" python3 -c "import os; fd = os.open('$mp/vol.img', os.O_RDWR); os.fsync(fd)"
check "after fsync the backing file holds the data" in_backing $((4 * MiB)) "$p1"
check "after fsync no block is dirty" [ "$(stat_of "$mp" volumes.vol.dirty_blocks)" = 0 ]

p2=$(pattern p2)
put $((8 * MiB)) "$p2"
check "vshare ctl flush succeeds" "$VSHARE" ctl "$mp" flush
check "after the flush command the backing file holds the data" in_backing $((8 * MiB)) "$p2"

p3=$(pattern p3)
put $((12 * MiB)) "$p3"
check "vshare umount succeeds" stop_node "$mp"
check "after vshare umount the backing file holds the data" in_backing $((12 * MiB)) "$p3"

start_node "$mp" --export vol="$img" --flush-interval 0 || exit 1
p4=$(pattern p4)
put $((16 * MiB)) "$p4"
pid=${NODE_PID[$mp]}
kill -TERM "$pid"
check "SIGTERM stops the node" wait_for "! kill -0 $pid 2>/dev/null" 20
wait "$pid" 2>/dev/null
check "SIGTERM unmounts" bash -c "! mountpoint -q '$mp'"
check "after SIGTERM the backing file holds the data" in_backing $((16 * MiB)) "$p4"
unset "NODE_PID[$mp]"

start_node "$mp" --export vol="$img" --flush-interval 0.5 || exit 1
p5=$(pattern p5)
put $((20 * MiB)) "$p5"
check "the background flusher writes back within a few intervals" wait_for "in_backing $((20 * MiB)) '$p5'" 10

# O_DIRECT, aligned to 4 KiB, then read back with O_DIRECT.
p6=$(pattern p6 $((64 * 1024)))
check "an O_DIRECT write succeeds" dd if="$p6" of="$mp/vol.img" bs=4K seek=300 oflag=direct conv=notrunc status=none
check "an O_DIRECT read returns it" cmp -s "$p6" <(dd if="$mp/vol.img" bs=4K skip=300 count=16 iflag=direct status=none)

# Unaligned and partial-block I/O, and the end of the image.
check "unaligned and partial-block I/O, short reads at EOF, ENOSPC past it, no resizing" python3 - "$mp/vol.img" <<'PY'
import errno, os, sys
path = sys.argv[1]
fd = os.open(path, os.O_RDWR)
size = os.fstat(fd).st_size
before = os.pread(fd, 9000, 12000)
data = os.urandom(1000)
assert os.pwrite(fd, data, 12345) == 1000
after = os.pread(fd, 9000, 12000)
assert after == before[:345] + data + before[1345:], "unaligned write changed the wrong bytes"
assert len(os.pread(fd, 4096, size - 100)) == 100, "read across EOF is not short"
assert os.pread(fd, 4096, size) == b"", "read at EOF returns data"
assert os.pwrite(fd, b"x" * 300, size - 100) == 100, "write across EOF is not cut short"
try:
    os.pwrite(fd, b"x", size)
    sys.exit("write at EOF succeeded")
except OSError as e:
    assert e.errno in (errno.ENOSPC, errno.EFBIG), e
try:
    os.ftruncate(fd, size * 2)
    sys.exit("the image could be resized")
except OSError as e:
    assert e.errno == errno.EPERM, e
assert os.fstat(fd).st_size == size
PY
check "vshare umount succeeds at the end" stop_node "$mp"
finish
