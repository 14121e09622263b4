#!/bin/bash
# Issue 4: freeze every node on the path to the root (SIGSTOP the proxy and
# the root). A read on the leaf that needs them fails with EIO within
# --io-timeout plus a small margin, never hangs; so does a write. Killing
# the leaf's vshare then leaves no process stuck in D state, and the dead
# mount is removed.
. "$(dirname "$0")/lib.sh"
begin frozen_path

img=$WORK/backing.img
"$VSHARE" create "$img" --size 16M >/dev/null
timing=(--lease 2 --heartbeat 0.5)
start_node "$WORK/root" --export vol="$img" --listen 127.0.0.1:0 "${timing[@]}" || exit 1
rp=$(stat_of "$WORK/root" tree.listen_port)
start_node "$WORK/proxy" --parent "127.0.0.1:$rp" --volume vol --listen 127.0.0.1:0 "${timing[@]}" || exit 1
pp=$(stat_of "$WORK/proxy" tree.listen_port)
start_node "$WORK/leaf" --parent "127.0.0.1:$pp" --volume vol --io-timeout 3 "${timing[@]}" || exit 1
check "the leaf reads before the freeze" dd if="$WORK/leaf/vol.img" of=/dev/null bs=4K count=1 iflag=direct status=none

kill -STOP "${NODE_PID[$WORK/proxy]}" "${NODE_PID[$WORK/root]}"
timed() {  # CMD...: runs it, prints "STATUS MILLISECONDS" (the shell's clock: nothing else timed)
  local t0 rc
  t0=$(date +%s%N)
  "$@" 2>/dev/null
  rc=$?
  echo "$rc $((($(date +%s%N) - t0) / 1000000))"
}
read -r rc ms < <(timed dd if="$WORK/leaf/vol.img" of=/dev/null bs=4K skip=100 count=1 iflag=direct status=none)
check "a read that needs the frozen path fails ($rc)" [ "$rc" != 0 ]
check "within io-timeout (3 s) plus a margin ($ms ms)" bash -c "[ $ms -ge 2500 ] && [ $ms -le 4500 ]"
check "with EIO" bash -c "dd if='$WORK/leaf/vol.img' of=/dev/null bs=4K skip=101 count=1 iflag=direct 2>&1 | grep -q 'Input/output error'"
read -r rc ms < <(timed dd if=/dev/zero of="$WORK/leaf/vol.img" bs=4K seek=200 count=1 oflag=direct conv=notrunc status=none)
# A write's open asks for the writer lease first: two bounded waits at most.
check "a write fails too ($rc), within two io-timeouts ($ms ms)" bash -c "[ $rc != 0 ] && [ $ms -le 7000 ]"

leaf=${NODE_PID[$WORK/leaf]}
kill -KILL "$leaf"
check "the leaf's process is gone at once, not stuck in D state" wait_for "! kill -0 $leaf 2>/dev/null" 3
wait "$leaf" 2>/dev/null
unset "NODE_PID[$WORK/leaf]"
expect_fail "vshare umount removes the dead mount" 0 "had died" "$VSHARE" umount "$WORK/leaf"
kill -CONT "${NODE_PID[$WORK/proxy]}" "${NODE_PID[$WORK/root]}"
check "once thawed, the proxy reads on" dd if="$WORK/proxy/vol.img" of=/dev/null bs=4K skip=100 count=1 iflag=direct status=none
for n in proxy root; do check "$n unmounts" stop_node "$WORK/$n"; done
finish
