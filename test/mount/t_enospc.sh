#!/bin/bash
# Issue 9, item 8: a store write error at the root must never be answered
# OK. The root's 64 MiB sparse image sits on an 8 MiB tmpfs; an async leaf
# writes up to 16 MiB. fsync on the leaf fails, and neither node unmounts
# while bytes are unwritten. Once the tmpfs has room again, both unmount
# cleanly, and every byte the leaf acknowledged is in the image.
. "$(dirname "$0")/lib.sh"
begin enospc

small=$WORK/small
mkdir -p "$small"
mount -t tmpfs -o size=8m vshare-enospc "$small" || { check "mount an 8 MiB tmpfs" false; finish; exit; }
LOOP_MOUNTS+=("$small")  # unmounted by the cleanup, whatever happens
img=$small/backing.img
"$VSHARE" create "$img" --size 64M >/dev/null
start_node "$WORK/root" --export vol="$img" --listen 127.0.0.1:0 --cache-size 4M --flush-interval 0.5 || exit 1
rp=$(stat_of "$WORK/root" tree.listen_port)
start_node "$WORK/leaf" --parent "127.0.0.1:$rp" --volume vol --cache-size 32M --flush-interval 0 --io-timeout 10 || exit 1

head -c $((16 << 20)) /dev/urandom >"$WORK/data"
# Writes may fail too (the root, out of room, cannot take back grants to
# make room for more); what was acknowledged is what must not be lost.
acked=$(python3 - "$WORK/data" "$WORK/leaf/vol.img" <<'PY'
import mmap, os, sys
data = open(sys.argv[1], "rb").read()
fd = os.open(sys.argv[2], os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, 1 << 20)
done = 0
for off in range(0, len(data), 1 << 20):
    buf.seek(0)
    buf.write(data[off:off + (1 << 20)])
    try:
        os.pwritev(fd, [buf], off)
    except OSError:
        break
    done = off + (1 << 20)
print(done)
PY
)
check "the leaf acknowledged some of the writes ($((acked >> 20)) MiB)" [ "$acked" -gt 0 ]
fsync_rc=$(python3 -c "
import os
fd = os.open('$WORK/leaf/vol.img', os.O_RDWR)
try:
    os.fsync(fd)
    print(0)
except OSError as e:
    print(e.errno)")
check "fsync on the leaf reports the error (errno $fsync_rc)" [ "$fsync_rc" != 0 ]
check "the leaf refuses to unmount with unwritten bytes" bash -c "! '$VSHARE' umount '$WORK/leaf' --timeout 20 >/dev/null 2>&1"
check "and is still mounted" is_mounted "$WORK/leaf"
check "the root refuses too" bash -c "! '$VSHARE' umount '$WORK/root' --timeout 20 >/dev/null 2>&1"
check "and is still mounted" is_mounted "$WORK/root"

mount -o remount,size=128m "$small"
check "with room again, fsync on the leaf succeeds" \
  python3 -c "import os; fd = os.open('$WORK/leaf/vol.img', os.O_RDWR); os.fsync(fd)"
check "the leaf unmounts" stop_node "$WORK/leaf"
check "the root unmounts" stop_node "$WORK/root"
check "every acknowledged byte is in the image" cmp -s <(head -c "$acked" "$WORK/data") <(head -c "$acked" "$img")
finish
