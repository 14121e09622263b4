#!/bin/bash
# A tree of real processes on loopback: a root (mount --export --listen), a
# proxy without a mount (serve), and two leaves (mount --parent) under it.
#  1. Both leaves read the same 16 MiB: the root serves each block once, to
#     its only child, the proxy; the proxy serves both leaves.
#  2. A leaf writes blocks the others hold: everyone then reads the new bytes.
#  3. Handoff: leaf A puts ext4 on the volume and writes files; leaf B, whose
#     copies are of the old blocks, loop-mounts it and sees exactly A's files.
# Afterwards e2fsck -fn on the root's image file is clean.
. "$(dirname "$0")/lib.sh"
begin tree

img=$WORK/backing.img
"$VSHARE" create "$img" --size 64M >/dev/null
# No periodic write-back anywhere: data moves only as the protocol moves it.
start_node "$WORK/root" --export vol="$img" --listen 127.0.0.1:0 --flush-interval 0 || exit 1
root_port=$(stat_of "$WORK/root" tree.listen_port)
check "the root listens (port $root_port)" [ "$root_port" -gt 0 ]

"$VSHARE" serve --parent "127.0.0.1:$root_port" --volume vol --listen 127.0.0.1:0 -f --flush-interval 0 \
  --port-file "$WORK/proxy.port" --log-file "$WORK/node-proxy.log" &
NODE_PID[serve:proxy]=$!
check "the proxy comes up" wait_for "[ -s '$WORK/proxy.port' ]" 10
proxy_port=$(cat "$WORK/proxy.port")
start_node "$WORK/a" --parent "127.0.0.1:$proxy_port" --volume vol --io-timeout 10 --flush-interval 0 || exit 1
start_node "$WORK/b" --parent "127.0.0.1:$proxy_port" --volume vol --io-timeout 10 --flush-interval 0 || exit 1
check "the leaves see a 64 MiB vol.img" [ "$(stat -c %s "$WORK/a/vol.img")" = 67108864 ]
check "status on a leaf names its parent" bash -c "'$VSHARE' status '$WORK/a' | grep -q 'parent:   127.0.0.1:$proxy_port'"
check "status on the root lists its one child" bash -c "'$VSHARE' status '$WORK/root' | grep -qE 'children: 1 \(connected from 127.0.0.1:[0-9]+\)'"
check "status on the root says it is the root" bash -c "'$VSHARE' status '$WORK/root' | grep -q 'none (this is the root)'"
check "a leaf's role is leaf" [ "$(stat_of "$WORK/a" node.role)" = leaf ]

# 1. Fan-out.
head -c $((16 << 20)) /dev/urandom >"$WORK/data"
dd if="$WORK/data" of="$img" bs=1M conv=notrunc status=none  # before anyone cached it
"$VSHARE" ctl "$WORK/root" drop-cache
check "leaf a reads 16 MiB from the tree" cmp -s "$WORK/data" <(head -c $((16 << 20)) "$WORK/a/vol.img")
check "leaf b reads the same 16 MiB" cmp -s "$WORK/data" <(head -c $((16 << 20)) "$WORK/b/vol.img")
served=$(stat_of "$WORK/root" tree.requests_served)
check "the root served each of the 4096 blocks at most once ($served requests)" [ "$served" -le 4096 ]
check "the root has one child" [ "$(stat_of "$WORK/root" tree.children)" = 1 ]

# 2. Coherent writes: b and the root hold copies of block 0..15; a overwrites them.
head -c 65536 /dev/urandom >"$WORK/new"
dd if="$WORK/new" of="$WORK/a/vol.img" bs=64K conv=notrunc status=none
check "leaf b reads a's new bytes" cmp -s "$WORK/new" <(head -c 65536 "$WORK/b/vol.img")
check "the root reads a's new bytes" cmp -s "$WORK/new" <(head -c 65536 "$WORK/root/vol.img")
check "the root sent invalidations" [ "$(stat_of "$WORK/root" tree.calls_to_children)" -gt 0 ]

# fsync on a leaf after a sibling's read moved its dirty block into the
# proxy: the barrier still brings it to the root's image file.
head -c 4096 /dev/urandom >"$WORK/synced"
dd if="$WORK/synced" of="$WORK/a/vol.img" bs=4K seek=1000 conv=notrunc status=none
check "leaf b reads it (the proxy now holds it dirty)" cmp -s "$WORK/synced" <(tail -c +$((1000 * 4096 + 1)) "$WORK/b/vol.img" | head -c 4096)
check "before a's fsync the root's image does not have it" bash -c "! cmp -s '$WORK/synced' <(tail -c +$((1000 * 4096 + 1)) '$img' | head -c 4096)"
check "fsync on leaf a succeeds" python3 -c "import os; fd = os.open('$WORK/a/vol.img', os.O_RDWR); os.fsync(fd)"
check "after it the root's image file holds the block" cmp -s "$WORK/synced" <(tail -c +$((1000 * 4096 + 1)) "$img" | head -c 4096)

# 3. Handoff through ext4.
check "mkfs.ext4 on leaf a" mkfs.ext4 -q -F "$WORK/a/vol.img"
loop_mount "$WORK/a/vol.img" "$WORK/fs-a" || { check "loop mount on a" false; finish; exit; }
for i in $(seq 40); do head -c $((RANDOM * 2)) /dev/urandom >"$WORK/fs-a/file$i"; done
(cd "$WORK/fs-a" && sha256sum file*) >"$WORK/sums"
check "unmount the file system on a" loop_umount "$WORK/fs-a"
loop_mount "$WORK/b/vol.img" "$WORK/fs-b" || { check "loop mount on b" false; finish; exit; }
check "leaf b sees exactly a's 40 files" bash -c "cd '$WORK/fs-b' && sha256sum --quiet -c '$WORK/sums' && [ \$(ls | grep -c file) = 40 ]"
check "unmount the file system on b" loop_umount "$WORK/fs-b"

check "leaf a unmounts (writing back)" stop_node "$WORK/a"
check "leaf b unmounts" stop_node "$WORK/b"
kill -TERM "${NODE_PID[serve:proxy]}"
check "the proxy stops on SIGTERM" wait_for "! kill -0 ${NODE_PID[serve:proxy]} 2>/dev/null" 10
wait "${NODE_PID[serve:proxy]}"
check "the proxy exits 0" [ $? = 0 ]
unset "NODE_PID[serve:proxy]"
check "the root unmounts" stop_node "$WORK/root"
check "e2fsck -fn on the root's image is clean" e2fsck -fn "$img"
finish
