#!/bin/bash
# Issue 4: freeze a proxy with SIGSTOP for longer than its lease while
# another leaf writes the blocks it held, then SIGCONT it. A leaf below the
# proxy reads the blocks all along (O_DIRECT, timed): no read that began
# after the write completed may return the old bytes. Meanwhile the leaf,
# its HEARTBEATs unanswered, moves to the root. After SIGCONT, reads
# through the revived proxy return the new bytes.
#
#   root --- proxy (mounted) --- leaf
#     \----- writer
. "$(dirname "$0")/lib.sh"
begin freeze_proxy

img=$WORK/backing.img
"$VSHARE" create "$img" --size 16M >/dev/null
head -c $((16 << 20)) /dev/urandom >"$img.data"
dd if="$img.data" of="$img" bs=1M conv=notrunc status=none
lease=(--lease 2 --heartbeat 0.25)
start_node "$WORK/root" --export vol="$img" --listen 127.0.0.1:0 "${lease[@]}" || exit 1
rp=$(stat_of "$WORK/root" tree.listen_port)
start_node "$WORK/proxy" --parent "127.0.0.1:$rp" --volume vol --listen 127.0.0.1:0 "${lease[@]}" --io-timeout 5 || exit 1
pp=$(stat_of "$WORK/proxy" tree.listen_port)
start_node "$WORK/leaf" --parent "127.0.0.1:$pp" --volume vol "${lease[@]}" --io-timeout 3 || exit 1
start_node "$WORK/writer" --parent "127.0.0.1:$rp" --volume vol "${lease[@]}" --io-timeout 15 || exit 1

# The leaf (and so the proxy) caches blocks 0..15.
check "the leaf reads the old bytes" cmp -s <(head -c 65536 "$img.data") <(dd if="$WORK/leaf/vol.img" bs=64K count=1 iflag=direct status=none)
check "the leaf's lease is valid" [ "$(stat_of "$WORK/leaf" tree.lease.valid)" = True ]

# The leaf reads for 12 s, recording (start, end, digest) of each read.
python3 - "$WORK/leaf/vol.img" "$WORK/reads" <<'PY' &
import hashlib, mmap, os, sys, time
buf = mmap.mmap(-1, 65536)
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
out = open(sys.argv[2], "w")
end = time.monotonic() + 12
while time.monotonic() < end:
    t0 = time.monotonic()
    try:
        os.preadv(fd, [buf], 0)
        digest = hashlib.sha256(buf).hexdigest()
    except OSError as e:
        digest = "error " + e.strerror
    out.write(f"{t0} {time.monotonic()} {digest}\n")
    out.flush()
    time.sleep(0.1)
PY
reader=$!
HELPER_PIDS+=("$reader")
sleep 0.5
ppid=${NODE_PID[$WORK/proxy]}
kill -STOP "$ppid"
head -c 65536 /dev/urandom >"$WORK/new"
t_write_start=$(python3 -c 'import time; print(time.monotonic())')
check "the writer's write completes while the proxy is stopped" \
  dd if="$WORK/new" of="$WORK/writer/vol.img" bs=64K count=1 oflag=direct conv=notrunc status=none
t_written=$(python3 -c 'import time; print(time.monotonic())')
waited=$(python3 -c "print(round($t_written - $t_write_start, 1))")
check "it waited for the proxy's lease, not much longer ($waited s)" python3 -c "import sys; sys.exit(not (1.0 <= $waited <= 6))"
check "the root declared the proxy failed" [ "$(stat_of "$WORK/root" tree.failed_children)" -ge 1 ]
sleep 3
check "the leaf moved to the root meanwhile" [ "$(stat_of "$WORK/leaf" tree.parent)" = "127.0.0.1:$rp" ]
kill -CONT "$ppid"
wait "$reader"
old=$(head -c 65536 "$img.data" | sha256sum | cut -d' ' -f1)
new=$(sha256sum <"$WORK/new" | cut -d' ' -f1)
check "the leaf read something before the freeze" grep -q " $old\$" "$WORK/reads"
check "no read that began after the write returned the old bytes" \
  python3 -c "
import sys
bad = [l for l in open('$WORK/reads') if float(l.split()[0]) > $t_written and l.split()[2] == '$old']
print(len(bad), 'stale reads') if bad else None
sys.exit(1 if bad else 0)"
check "after SIGCONT, the leaf reads the new bytes" \
  wait_for "cmp -s '$WORK/new' <(dd if='$WORK/leaf/vol.img' bs=64K count=1 iflag=direct status=none 2>/dev/null)" 15
check "and so does the proxy itself" cmp -s "$WORK/new" <(dd if="$WORK/proxy/vol.img" bs=64K count=1 iflag=direct status=none)
check "the proxy joined the root again" [ "$(stat_of "$WORK/proxy" tree.rejoins)" -ge 1 ]
check "its log says what it dropped" grep -q "joined the parent again" "$WORK/node-proxy.log"
start_node "$WORK/leaf2" --parent "127.0.0.1:$pp" --volume vol "${lease[@]}" || exit 1
check "a new leaf below the revived proxy reads the new bytes" \
  cmp -s "$WORK/new" <(dd if="$WORK/leaf2/vol.img" bs=64K count=1 iflag=direct status=none)

for n in leaf leaf2 writer proxy root; do check "$n unmounts" stop_node "$WORK/$n"; done
check "the root's image holds the new bytes" cmp -s "$WORK/new" <(head -c 65536 "$img")
finish
