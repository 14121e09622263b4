#!/bin/bash
# Issue 3's tree: a root, two proxies (mounted, so their counters can be
# read) and four leaves, two under each proxy, as real processes.
#  1. Every leaf reads the whole volume: the root serves each block at most
#     once per direct child (2 proxies), each proxy at most once per child.
#  2. A leaf under proxy 1 writes a block all the others hold: every other
#     leaf then reads the new bytes, and the invalidation counters show the
#     cascade down both branches.
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
rs=$(stat_of "$WORK/root" tree.requests_served)
check "the root served at most once per direct child ($rs <= $((2 * blocks)))" [ "$rs" -le $((2 * blocks)) ]
for p in 1 2; do
  ps=$(stat_of "$WORK/p$p" tree.requests_served)
  up=$(stat_of "$WORK/p$p" tree.calls_to_parent)
  check "proxy $p served at most once per child ($ps <= $((2 * blocks)))" [ "$ps" -le $((2 * blocks)) ]
  check "proxy $p asked its parent for each block at most once ($up <= $((blocks + 2)))" [ "$up" -le $((blocks + 2)) ]
done

# 2. A write under proxy 1 to blocks everyone holds.
root_inv=$(stat_of "$WORK/root" tree.calls_to_children)
p1_inv=$(stat_of "$WORK/p1" tree.calls_to_children)
p2_inv=$(stat_of "$WORK/p2" tree.calls_to_children)
head -c 65536 /dev/urandom >"$WORK/new"
dd if="$WORK/new" of="$WORK/l1/vol.img" bs=64K seek=3 conv=notrunc status=none
for l in 2 3 4; do
  check "leaf $l reads leaf 1's new bytes" cmp -s "$WORK/new" <(tail -c +$((3 * 65536 + 1)) "$WORK/l$l/vol.img" | head -c 65536)
done
check "the root invalidated the other branch" [ "$(stat_of "$WORK/root" tree.calls_to_children)" -gt "$root_inv" ]
check "proxy 1 invalidated leaf 1's sibling" [ "$(stat_of "$WORK/p1" tree.calls_to_children)" -gt "$p1_inv" ]
check "proxy 2 passed the invalidation down to both its leaves" [ "$(stat_of "$WORK/p2" tree.calls_to_children)" -ge $((p2_inv + 2)) ]

for l in 1 2 3 4; do check "leaf $l unmounts" stop_node "$WORK/l$l"; done
for p in 1 2; do check "proxy $p unmounts" stop_node "$WORK/p$p"; done
check "the root unmounts" stop_node "$WORK/root"
check "the root's image holds leaf 1's write" cmp -s "$WORK/new" <(tail -c +$((3 * 65536 + 1)) "$img" | head -c 65536)
finish
