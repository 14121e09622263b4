#!/bin/bash
# Issue 4: two roots of one image, the second started with --standby. A
# leaf has an ext4 file system loop-mounted on its image and writes files;
# the active root is SIGKILLed. The standby takes over only once the dead
# root's lease is over, the leaf moves to it (its second --parent) and
# claims back what it held; files written before and after the failover
# are all there, byte for byte, and e2fsck -fn is clean. The dead root,
# started again as it was first started, learns from its peer that it lost
# its role: it refuses write-opens and children, and the image does not
# change through it. When it then unmounts on purpose, the active root
# serves on without it.
. "$(dirname "$0")/lib.sh"
begin standby_root

img=$WORK/backing.img
"$VSHARE" create "$img" --size 32M >/dev/null
timing=(--lease 4 --heartbeat 0.5)
read -r AP SP <<<"$(free_ports 2)"
active=127.0.0.1:$AP standby=127.0.0.1:$SP
role_of() { stat_of "$1" tree.root_peer.role none; }

start_node "$WORK/s" --export vol="$img" --listen "$standby" --peer "$active" --standby "${timing[@]}" || exit 1
check "a standby alone serves nothing" [ "$(role_of "$WORK/s")" = "standby (the active root has not called)" ]
start_node "$WORK/a" --export vol="$img" --listen "$active" --peer "$standby" "${timing[@]}" || exit 1
check "the other root becomes active" wait_for "[ \"\$(role_of '$WORK/a')\" = active ]" 10
check "under a root lease from the standby" [ "$(stat_of "$WORK/a" tree.root_peer.lease_ms_left)" -gt 0 ]
check "which is now called" [ "$(role_of "$WORK/s")" = standby ]
mkdir -p "$WORK/x"
expect_fail "a standby takes no children" 1 "IN_RECOVERY" \
  "$VSHARE" mount "$WORK/x" --parent "$standby" --volume vol --io-timeout 3
expect_fail "a standby's own image refuses a write-open" 1 "Device or resource busy" \
  dd if=/dev/zero of="$WORK/s/vol.img" bs=4K count=1 conv=notrunc status=none

start_node "$WORK/leaf" --parent "$active" --parent "$standby" --volume vol --flush-interval 0 "${timing[@]}" || exit 1
# Inode tables written by mkfs itself: else ext4's lazy init thread zeroes
# them after the mount and flushes the device when it is done, at a moment
# of its own (later under the sanitizers), syncing the leaf's dirty blocks.
check "mkfs.ext4 through the leaf" mkfs.ext4 -q -F -E lazy_itable_init=0 "$WORK/leaf/vol.img"
loop_mount "$WORK/leaf/vol.img" "$WORK/fs" || { check "loop mount on the leaf" false; finish; exit; }
# No periodic journal commit: its flush would sync the leaf, at a moment of
# its own, and take away the dirty blocks the failover below is about.
mount -o remount,commit=600 "$WORK/fs"
mkdir -p "$WORK/fs/before" "$WORK/fs/after"
for i in $(seq 1 8); do head -c $((100000 + i * 7919)) /dev/urandom >"$WORK/fs/before/f$i"; done
head -c $((256 << 10)) /dev/urandom >"$WORK/fs/before/direct"
check "the first files are synced" sync -f "$WORK/fs/before/f1"
# O_DIRECT file data goes past the page caches into the leaf, which holds
# it dirty (no flush interval): only the leaf has it when the root dies.
# It overwrites blocks the file already has, so ext4 has no metadata to
# commit (a commit would flush the loop device, and the leaf with it).
dd if=/dev/urandom of="$WORK/fs/before/direct" bs=64K count=4 oflag=direct conv=notrunc status=none
check "the leaf holds writes no root has" [ "$(stat_of "$WORK/leaf" volumes.vol.dirty_blocks)" -gt 0 ]

apid=${NODE_PID[$WORK/a]}
kill -KILL "$apid"
wait "$apid" 2>/dev/null
check "the active root is dead" bash -c "! kill -0 $apid 2>/dev/null"
umount -l "$WORK/a"  # its FUSE mount died with it
killed_at=$(date +%s.%N)
# Written while no root serves: they wait in the page cache and the leaf.
for i in $(seq 1 8); do head -c $((50000 + i * 4099)) /dev/urandom >"$WORK/fs/after/g$i"; done
check "the files written across the failover are synced" sync -f "$WORK/fs/after/g1"
synced_at=$(date +%s.%N)
check "the standby took over" [ "$(role_of "$WORK/s")" = "active (no standby)" ]
check "not before the dead root's lease (4 s) was over" \
  grep -q "root peer silent for [4-9][0-9][0-9][0-9] ms" "$WORK/node-s.log"
check "the leaf moved to it" [ "$(stat_of "$WORK/leaf" tree.parent)" = "$standby" ]
check "the leaf counts one reparent" [ "$(stat_of "$WORK/leaf" tree.reparents)" = 1 ]
check "the leaf claimed them back from the new root" [ "$(stat_of "$WORK/leaf" tree.recovered)" -gt 0 ]
check "which took the claims" [ "$(stat_of "$WORK/s" tree.claims_served)" -gt 0 ]
check "no write was lost" [ "$(stat_of "$WORK/leaf" tree.recovery_lost)" = 0 ]
echo "# failover stall seen by sync: $(python3 -c "print(round($synced_at - $killed_at, 1))") s"
(cd "$WORK/fs" && find before after -type f | sort | xargs sha256sum) >"$WORK/sums"
check "17 files written" [ "$(wc -l <"$WORK/sums")" = 17 ]
loop_umount "$WORK/fs"
loop_mount "$WORK/leaf/vol.img" "$WORK/fs" || { check "loop mount again" false; finish; exit; }
check "read back after a fresh mount, every file matches" bash -c "cd '$WORK/fs' && sha256sum -c --quiet '$WORK/sums'"
loop_umount "$WORK/fs"

# The dead root comes back, started as before: it must not serve.
start_node "$WORK/a" --export vol="$img" --listen "$active" --peer "$standby" "${timing[@]}" || exit 1
check "the returning root learns it lost its role" wait_for "[ \"\$(role_of '$WORK/a')\" = standby ]" 10
check "its log says so" grep -q "root peer is active: this root stays as the standby" "$WORK/node-a.log"
check "the new root now serves under its lease" wait_for "[ \"\$(role_of '$WORK/s')\" = active ]" 10
before=$(sha256sum <"$img")
expect_fail "the returning root refuses a write-open" 1 "Device or resource busy" \
  dd if=/dev/zero of="$WORK/a/vol.img" bs=4K count=1 conv=notrunc status=none
expect_fail "and children" 1 "IN_RECOVERY" \
  "$VSHARE" mount "$WORK/x" --parent "$active" --volume vol --io-timeout 3
check "the image did not change through it" [ "$(sha256sum <"$img")" = "$before" ]
check "the leaf writes on through the new root" \
  dd if=/dev/urandom of="$WORK/leaf/vol.img" bs=4K count=1 seek=8000 conv=notrunc,fsync status=none

# The standby unmounts on purpose: the active root serves on alone.
check "the standby unmounts" stop_node "$WORK/a"
check "the active root is told, and serves on without a root lease" \
  [ "$(role_of "$WORK/s")" = "active (no standby)" ]
sleep 5  # longer than the lease it held
check "past that lease the leaf still writes through it" \
  dd if=/dev/urandom of="$WORK/leaf/vol.img" bs=4K count=1 seek=8001 conv=notrunc,fsync status=none
check "the leaf unmounts" stop_node "$WORK/leaf"
check "the root unmounts" stop_node "$WORK/s"
check "e2fsck -fn on the image is clean" e2fsck -fn "$img"
loop_mount "$img" "$WORK/fs" || { check "loop mount of the image" false; finish; exit; }
check "the image holds every file" bash -c "cd '$WORK/fs' && sha256sum -c --quiet '$WORK/sums'"
loop_umount "$WORK/fs"
finish
