#!/bin/bash
# Issue 4: partition a child. The child runs in a network namespace of its
# own, joined to the root by a veth pair. It reads some blocks (holding READ
# copies), then its veth goes down; another node writes those blocks, and
# the partition heals. The child reads all along (O_DIRECT, timed): it never
# returns the old bytes once its lease has lapsed (nor once the write has
# completed), and after the heal it reads the new bytes.
. "$(dirname "$0")/lib.sh"
begin partition
command -v nsenter >/dev/null && command -v ip >/dev/null || { echo "needs nsenter and ip"; exit 1; }

make_netns "vshare-part-$$" || { check "set up a network namespace" false; finish; exit; }
ns=${NETNS_MADE[0]}
img=$WORK/backing.img
"$VSHARE" create "$img" --size 16M >/dev/null
head -c $((16 << 20)) /dev/urandom >"$img.data"
dd if="$img.data" of="$img" bs=1M conv=notrunc status=none
lease=2
timing=(--lease $lease --heartbeat 0.5)
start_node "$WORK/root" --export vol="$img" --listen 0.0.0.0:0 "${timing[@]}" || exit 1
rp=$(stat_of "$WORK/root" tree.listen_port)
NODE_NETNS=$ns start_node "$WORK/child" --parent "$NETNS_HOST_IP:$rp" --volume vol --io-timeout 2 "${timing[@]}" || exit 1
start_node "$WORK/writer" --parent "127.0.0.1:$rp" --volume vol --io-timeout 15 "${timing[@]}" || exit 1
check "the child reads the old bytes over the veth" \
  cmp -s <(head -c 65536 "$img.data") <(dd if="$WORK/child/vol.img" bs=64K count=1 iflag=direct status=none)

python3 - "$WORK/child/vol.img" "$WORK/reads" <<'PY' &
import hashlib, mmap, os, sys, time
buf = mmap.mmap(-1, 65536)
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
out = open(sys.argv[2], "w")
end = time.monotonic() + 14
while time.monotonic() < end:
    t0 = time.monotonic()
    try:
        os.preadv(fd, [buf], 0)
        digest = hashlib.sha256(buf).hexdigest()
    except OSError as e:
        digest = "error"
    out.write(f"{t0} {time.monotonic()} {digest}\n")
    out.flush()
    time.sleep(0.1)
PY
reader=$!
HELPER_PIDS+=("$reader")
sleep 0.5
ip link set "$NETNS_VETH" down
# Taken after the cut, not before: the child may renew its lease until the
# link is really down, so its lease ends by this time plus the lease (an
# earlier stamp, taken before python3 and ip had run, made a rare false
# failure).
t_cut=$(python3 -c 'import time; print(time.monotonic())')
head -c 65536 /dev/urandom >"$WORK/new"
check "the writer's write completes during the partition" \
  dd if="$WORK/new" of="$WORK/writer/vol.img" bs=64K count=1 oflag=direct conv=notrunc status=none
t_written=$(python3 -c 'import time; print(time.monotonic())')
sleep 4
ip link set "$NETNS_VETH" up
wait "$reader"
old=$(head -c 65536 "$img.data" | sha256sum | cut -d' ' -f1)
check "the child read the old bytes before the cut" grep -q " $old\$" "$WORK/reads"
check "no read that began after the child's lease lapsed returned them" \
  python3 -c "
import sys
bad = [l for l in open('$WORK/reads') if float(l.split()[0]) > $t_cut + $lease and l.split()[2] == '$old']
sys.exit(1 if bad else 0)"
check "nor any that began after the write completed" \
  python3 -c "
import sys
bad = [l for l in open('$WORK/reads') if float(l.split()[0]) > $t_written and l.split()[2] == '$old']
sys.exit(1 if bad else 0)"
check "after the heal the child reads the new bytes" \
  wait_for "cmp -s '$WORK/new' <(dd if='$WORK/child/vol.img' bs=64K count=1 iflag=direct status=none 2>/dev/null)" 15
check "the root counted the child as failed" [ "$(stat_of "$WORK/root" tree.failed_children)" -ge 1 ]
for n in child writer root; do check "$n unmounts" stop_node "$WORK/$n"; done
finish
