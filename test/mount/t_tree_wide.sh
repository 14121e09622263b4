#!/bin/bash
# Issue 3's tree: a root, two proxies (mounted, so their counters can be
# read) and four leaves, two under each proxy, as real processes.
#  1. Every leaf reads the whole volume: the root serves each block at most
#     once per direct child (2 proxies), each proxy at most once per child.
#  2. A leaf under proxy 1 writes a block all the others hold: every other
#     leaf then reads the new bytes, and the invalidation counters show the
#     cascade down both branches. Those reads are buffered (no O_DIRECT)
#     on leaves that read the old bytes before: no stale page may be kept
#     by the kernel either (issue 3, item 7).
#  3. Handoff through ext4 between leaves on different branches, and the
#     writer lease keeping the second leaf out meanwhile.
. "$(dirname "$0")/lib.sh"
begin tree_wide

img=$WORK/backing.img
"$VSHARE" create "$img" --size 32M >/dev/null  # 8192 blocks
blocks=8192
head -c $((32 << 20)) /dev/urandom >"$WORK/data"
cp "$WORK/data" "$img"
start_node "$WORK/root" --export vol="$img" --listen 127.0.0.1:0 || exit 1
rp=$(stat_of "$WORK/root" tree.listen_port)
for p in 1 2; do
  start_node "$WORK/p$p" --parent "127.0.0.1:$rp" --volume vol --listen 127.0.0.1:0 --io-timeout 10 || exit 1
done
for l in 1 2 3 4; do
  p=$(( (l + 1) / 2 ))
  pp=$(stat_of "$WORK/p$p" tree.listen_port)
  start_node "$WORK/l$l" --parent "127.0.0.1:$pp" --volume vol --io-timeout 10 || exit 1
done
check "proxies are proxies" [ "$(stat_of "$WORK/p1" node.role)" = proxy ]
check "the root has two children" [ "$(stat_of "$WORK/root" tree.children)" = 2 ]
check "proxy 1 has two children" [ "$(stat_of "$WORK/p1" tree.children)" = 2 ]
check "proxy 2 has two children" [ "$(stat_of "$WORK/p2" tree.children)" = 2 ]

# 1. Every leaf reads the whole volume, all at once.
pids=()
for l in 1 2 3 4; do
  cmp -s "$WORK/data" "$WORK/l$l/vol.img" && touch "$WORK/ok$l" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
for l in 1 2 3 4; do check "leaf $l read the whole volume correctly" [ -f "$WORK/ok$l" ]; done
rs=$(stat_of "$WORK/root" tree.traffic.served.GET 0)
rb=$(stat_of "$WORK/root" tree.traffic.bytes_to_children)
check "the root served at most once per direct child ($rs GETs <= $((2 * blocks)))" [ "$rs" -le $((2 * blocks)) ]
check "and sent each block's bytes at most twice ($rb bytes)" [ "$rb" -le $((2 * blocks * 4096)) ]
check "and nothing but GETs, CONNECTs and HEARTBEATs" [ "$(stat_of "$WORK/root" tree.traffic.served | python3 -c 'import ast,sys; d = ast.literal_eval(sys.stdin.read()); d.pop("HEARTBEAT", None); print(sorted(d.items()))')" = "[('CONNECT', 2), ('GET', $rs)]" ]
for p in 1 2; do
  ps=$(stat_of "$WORK/p$p" tree.traffic.served.GET 0)
  up=$(stat_of "$WORK/p$p" tree.traffic.sent.GET 0)
  pb=$(stat_of "$WORK/p$p" tree.traffic.bytes_from_parent)
  check "proxy $p served at most once per child ($ps <= $((2 * blocks)))" [ "$ps" -le $((2 * blocks)) ]
  check "proxy $p asked its parent for each block at most once ($up <= $blocks)" [ "$up" -le $blocks ]
  check "proxy $p got each block's bytes from the root once ($pb bytes)" [ "$pb" -eq $((blocks * 4096)) ]
  # What it queued for its children at most: the 16 MiB budget, plus one
  # answer (a range, 4 MiB at most) per child that crossed it.
  peak=$(stat_of "$WORK/p$p" tree.child_send_peak_bytes)
  check "proxy $p queued at most the budget for its children ($peak bytes)" \
    [ "$peak" -gt 0 -a "$peak" -le $(( (16 << 20) + 2 * (4 << 20) + 65536 )) ]
done

# 2. A write under proxy 1 to blocks everyone holds.
root_inv=$(stat_of "$WORK/root" tree.traffic.invalidations_sent)
p1_inv=$(stat_of "$WORK/p1" tree.traffic.invalidations_sent)
p2_inv=$(stat_of "$WORK/p2" tree.traffic.invalidations_sent)
head -c 65536 /dev/urandom >"$WORK/new"
dd if="$WORK/new" of="$WORK/l1/vol.img" bs=64K seek=3 conv=notrunc status=none
for l in 2 3 4; do
  check "leaf $l reads leaf 1's new bytes" cmp -s "$WORK/new" <(tail -c +$((3 * 65536 + 1)) "$WORK/l$l/vol.img" | head -c 65536)
done
check "the root invalidated the other branch" [ "$(stat_of "$WORK/root" tree.traffic.invalidations_sent)" -gt "$root_inv" ]
check "proxy 1 invalidated leaf 1's sibling" [ "$(stat_of "$WORK/p1" tree.traffic.invalidations_sent)" -gt "$p1_inv" ]
check "proxy 2 received the invalidations" [ "$(stat_of "$WORK/p2" tree.traffic.invalidations_received)" -ge 1 ]
check "proxy 2 passed them down to both its leaves" [ "$(stat_of "$WORK/p2" tree.traffic.invalidations_sent)" -ge $((p2_inv + 2)) ]
for l in 2 3 4; do
  check "leaf $l received invalidations" [ "$(stat_of "$WORK/l$l" tree.traffic.invalidations_received)" -ge 1 ]
done
check "leaf 1 asked for WRITE on blocks it held (LOCK)" [ "$(stat_of "$WORK/l1" tree.traffic.sent_blocks.LOCK 0)" -ge 16 ]
check "no node answered an error" bash -c 'for n in root p1 p2 l1 l2 l3 l4; do
  [ "$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[\"tree\"][\"traffic\"][\"errors_sent\"])" "'"$WORK"'/$n/.vshare/stats")" = "{}" ] || exit 1; done'

# 3. Handoff across branches through ext4. Leaf 3 (under proxy 2) reads the
#    file system once, so its cache holds blocks that leaf 1 (under proxy
#    1) then rewrites; leaf 3 must then see exactly leaf 1's files.
check "mkfs.ext4 on leaf 1" mkfs.ext4 -q -F "$WORK/l1/vol.img"
loop_mount "$WORK/l1/vol.img" "$WORK/fs1" || { check "loop mount on leaf 1" false; finish; exit; }
for i in $(seq 20); do head -c $((RANDOM * 2)) /dev/urandom >"$WORK/fs1/old$i"; done
check "unmount on leaf 1" loop_umount "$WORK/fs1"
loop_mount "$WORK/l3/vol.img" "$WORK/fs3" || { check "loop mount on leaf 3" false; finish; exit; }
check "leaf 3 sees the first 20 files" [ "$(ls "$WORK/fs3" | grep -c old)" = 20 ]
cat "$WORK"/fs3/old* >/dev/null
check "unmount on leaf 3" loop_umount "$WORK/fs3"
loop_mount "$WORK/l1/vol.img" "$WORK/fs1" || { check "loop mount on leaf 1 again" false; finish; exit; }
rm "$WORK"/fs1/old1*
for i in $(seq 30); do head -c $((RANDOM * 2)) /dev/urandom >"$WORK/fs1/new$i"; done
(cd "$WORK/fs1" && sha256sum old* new*) >"$WORK/sums"
check "while leaf 1 has it mounted, leaf 3 cannot open it for writing" \
  bash -c "! python3 -c 'import os; os.open(\"$WORK/l3/vol.img\", os.O_RDWR)' 2>/dev/null"
check "unmount on leaf 1 again" loop_umount "$WORK/fs1"
loop_mount "$WORK/l3/vol.img" "$WORK/fs3" || { check "loop mount on leaf 3 again" false; finish; exit; }
check "leaf 3 sees exactly leaf 1's files now" bash -c "cd '$WORK/fs3' && sha256sum --quiet -c '$WORK/sums' && [ \$(ls | grep -c -e old -e new) = \$(wc -l <'$WORK/sums') ]"
check "unmount on leaf 3 again" loop_umount "$WORK/fs3"
check "e2fsck -fn through leaf 3 is clean" e2fsck -fn "$WORK/l3/vol.img"

check "reset-stats zeroes the traffic counters" "$VSHARE" ctl "$WORK/root" reset-stats
check "the root's GET count is gone after it" [ "$(stat_of "$WORK/root" tree.traffic.served.GET 0)" = 0 ]

for l in 1 2 3 4; do check "leaf $l unmounts" stop_node "$WORK/l$l"; done
for p in 1 2; do check "proxy $p unmounts" stop_node "$WORK/p$p"; done
check "the root unmounts" stop_node "$WORK/root"
check "e2fsck -fn on the root's image is clean" e2fsck -fn "$img"
finish
