#!/bin/bash
# By default vshare mount returns once the node serves, leaving a daemon that
# logs to --log-file; vshare umount refuses while the image is in use, and
# otherwise waits for the daemon to write back and exit.
. "$(dirname "$0")/lib.sh"
begin daemon

img=$WORK/backing.img
mp=$WORK/mnt
mkdir -p "$mp"
"$VSHARE" create "$img" --size 64M >/dev/null
check "vshare mount returns 0 in the background" timeout 20 "$VSHARE" mount "$mp" --export vol="$img" --log-file "$WORK/daemon.log"
check "the mount serves at once" [ -f "$mp/.vshare/stats" ]
pid=$(stat_of "$mp" node.pid)
NODE_PID[$mp]=$pid
check "stats name a running daemon (pid $pid)" kill -0 "$pid"
check "the daemon is not a child of this shell" bash -c "[ \"\$(ps -o ppid= -p $pid | tr -d ' ')\" != $$ ]"
check "the daemon logs to --log-file" grep -q "mounted $mp as root" "$WORK/daemon.log"

# PR_SET_IO_FLUSHER is inherited: every thread must carry it (PF_LOCAL_THROTTLE,
# 0x100000 in the flags field of /proc/PID/task/TID/stat) once the main thread
# does. Without CAP_SYS_RESOURCE no thread can; then there is nothing to check.
flags_of() { awk '{print $9}' "$1"; }
if (( $(flags_of "/proc/$pid/stat") & 0x100000 )); then
  missing=0
  for t in /proc/"$pid"/task/*/stat; do (( $(flags_of "$t") & 0x100000 )) || missing=$((missing + 1)); done
  check "every thread of the daemon runs as an I/O flusher ($missing without)" [ "$missing" = 0 ]
else
  echo "# PR_SET_IO_FLUSHER is unavailable here (no CAP_SYS_RESOURCE): its inheritance is not checked"
fi
check "mkfs.ext4 on the image" mkfs.ext4 -q -F "$mp/vol.img"
loop_mount "$mp/vol.img" "$WORK/dev-in-use" || { check "loop mount" false; finish; exit; }
echo data >"$WORK/dev-in-use/f"
expect_fail "umount refuses while the image is loop-mounted" 1 "is busy" "$VSHARE" umount "$mp"
check "the node still serves after the refusal" kill -0 "$pid"
check "unmount the loop device" loop_umount "$WORK/dev-in-use"
check "vshare umount succeeds" "$VSHARE" umount "$mp"
check "and the daemon has exited when it returns" bash -c "! kill -0 $pid 2>/dev/null || grep -q ' Z' /proc/$pid/stat"
check "the daemon logged its shutdown" grep -q "shutdown: all blocks written and synced" "$WORK/daemon.log"
check "the image is a clean ext4 file system" e2fsck -fn "$img"
unset "NODE_PID[$mp]"
finish
