#!/bin/bash
# --kernel-cache: image pages stay in the kernel's page cache, and vshare has
# them dropped before their bytes can change elsewhere.
#  1. A leaf's buffered reads are cached by the kernel (fincore), and a second
#     read is served by the kernel (vshare serves at most its read-ahead).
#  2. A sibling writes (O_DIRECT and buffered): the leaf's buffered reads see
#     the new bytes, because its recall dropped the kernel's pages first.
#  3. The root's own kernel pages go when it grants a child WRITE.
#  4. A leaf with a small cache evicts blocks and tells its parent; their
#     pages go too, so a later write elsewhere (which no longer recalls them
#     from this leaf) is still seen.
#  5. The root frozen past half the lease: the leaf drops every page it has.
#  6. A block size other than the page size is refused with a reason.
. "$(dirname "$0")/lib.sh"
begin kernel_cache

img=$WORK/backing.img
"$VSHARE" create "$img" --size 64M >/dev/null
head -c $((16 << 20)) /dev/urandom >"$WORK/data"
dd if="$WORK/data" of="$img" bs=1M conv=notrunc status=none
lease=(--lease 2 --heartbeat 0.25)
start_node "$WORK/root" --export vol="$img" --listen 127.0.0.1:0 --kernel-cache "${lease[@]}" || exit 1
rp=$(stat_of "$WORK/root" tree.listen_port)
start_node "$WORK/a" --parent "127.0.0.1:$rp" --volume vol --kernel-cache "${lease[@]}" --io-timeout 5 || exit 1
start_node "$WORK/b" --parent "127.0.0.1:$rp" --volume vol "${lease[@]}" --io-timeout 5 || exit 1

cached_pages() {  # FILE: pages of it in the kernel's page cache
  fincore --bytes --noheadings --output PAGES "$1" | tr -d ' '
}
bytes_of() { stat_of "$1" volumes.vol.bytes_read; }
settled_bytes_of() {  # MOUNTPOINT: bytes_read once the kernel's read-ahead has landed
  local last now i
  last=$(bytes_of "$1")
  for i in $(seq 20); do
    sleep 0.2
    now=$(bytes_of "$1")
    [ "$now" = "$last" ] && break
    last=$now
  done
  echo "$last"
}

# 1. Cached in the kernel.
check "leaf a reads 16 MiB (buffered)" cmp -s "$WORK/data" <(head -c $((16 << 20)) "$WORK/a/vol.img")
pages=$(cached_pages "$WORK/a/vol.img")
check "the kernel caches a's pages ($pages pages)" [ "$pages" -ge 4096 ]
# The first read's asynchronous read-ahead may still be landing, and the
# second may start one more window past 16 MiB; neither is a page served
# twice, so up to 1 MiB of it is allowed. Anything more means the kernel
# did not keep the pages.
before=$(settled_bytes_of "$WORK/a")
check "a second read gives the same bytes" cmp -s "$WORK/data" <(head -c $((16 << 20)) "$WORK/a/vol.img")
after=$(settled_bytes_of "$WORK/a")
check "and vshare served at most read-ahead of it ($((after - before)) bytes)" [ $((after - before)) -le $((1 << 20)) ]

# 2. A sibling writes blocks a holds; a's buffered reads see them.
head -c 65536 /dev/urandom >"$WORK/new1"
dd if="$WORK/new1" of="$WORK/b/vol.img" bs=64K oflag=direct conv=notrunc status=none
check "a sees b's O_DIRECT write at once" cmp -s "$WORK/new1" <(head -c 65536 "$WORK/a/vol.img")
drops=$(stat_of "$WORK/a" tree.kernel_page_drops)
check "a dropped the kernel's pages of those 16 blocks ($drops)" [ "$drops" -ge 16 ]
head -c 8192 /dev/urandom >"$WORK/new2"
dd if="$WORK/new2" of="$WORK/b/vol.img" bs=8K seek=100 conv=notrunc status=none
check "a sees b's buffered write" cmp -s "$WORK/new2" <(tail -c +$((100 * 8192 + 1)) "$WORK/a/vol.img" | head -c 8192)
check "the rest of a's view is unchanged" cmp -s <(tail -c +$((2 << 20)) "$WORK/data" | head -c $((8 << 20))) \
  <(tail -c +$((2 << 20)) "$WORK/a/vol.img" | head -c $((8 << 20)))

# 3. The root reads (buffered), a child writes: the root sees the new bytes.
check "the root reads 1 MiB at 8 MiB" cmp -s <(tail -c +$((8 << 20 | 1)) "$WORK/data" | head -c $((1 << 20))) \
  <(tail -c +$((8 << 20 | 1)) "$WORK/root/vol.img" | head -c $((1 << 20)))
head -c 4096 /dev/urandom >"$WORK/new3"
dd if="$WORK/new3" of="$WORK/b/vol.img" bs=4K seek=2048 oflag=direct conv=notrunc status=none
check "the root sees the child's write" cmp -s "$WORK/new3" <(tail -c +$((2048 * 4096 + 1)) "$WORK/root/vol.img" | head -c 4096)
check "and so does leaf a" cmp -s "$WORK/new3" <(tail -c +$((2048 * 4096 + 1)) "$WORK/a/vol.img" | head -c 4096)

# 4. Eviction: leaf c holds 1 MiB of cache and reads 8 MiB.
start_node "$WORK/c" --parent "127.0.0.1:$rp" --volume vol --kernel-cache --cache-size 1M "${lease[@]}" --io-timeout 5 || exit 1
expect=$WORK/expect
head -c $((16 << 20)) "$WORK/b/vol.img" >"$expect"
check "leaf c reads 8 MiB through a 1 MiB cache" cmp -s <(head -c $((8 << 20)) "$expect") <(head -c $((8 << 20)) "$WORK/c/vol.img")
ev=$(stat_of "$WORK/c" volumes.vol.cache.evictions)
check "c evicted blocks ($ev)" [ "$ev" -gt 0 ]
pages=$(cached_pages "$WORK/c/vol.img")
check "the kernel keeps no more of c's pages than its cache holds ($pages)" [ "$pages" -le 256 ]
head -c 65536 /dev/urandom >"$WORK/new4"
dd if="$WORK/new4" of="$WORK/b/vol.img" bs=64K seek=1 oflag=direct conv=notrunc status=none
check "c sees b's write to blocks it evicted" cmp -s "$WORK/new4" <(tail -c +65537 "$WORK/c/vol.img" | head -c 65536)

# 5. The root stops answering: at half the lease a drops every cached page.
head -c $((4 << 20)) "$WORK/a/vol.img" >/dev/null
full=$(stat_of "$WORK/a" tree.kernel_full_drops)
kill -STOP "${NODE_PID[$WORK/root]}"
sleep 1.6
check "with the root frozen, a dropped its whole image" [ "$(stat_of "$WORK/a" tree.kernel_full_drops)" -gt "$full" ]
pages=$(cached_pages "$WORK/a/vol.img")
check "and the kernel holds none of its pages ($pages)" [ "$pages" = 0 ]
kill -CONT "${NODE_PID[$WORK/root]}"
check "after the root is back, a reads again" wait_for "cmp -s '$WORK/new1' <(head -c 65536 '$WORK/a/vol.img')" 10

# 6. Blocks that are not pages.
img8=$WORK/b8.img
"$VSHARE" create "$img8" --size 16M --block-size 8192 >/dev/null
mkdir -p "$WORK/m8"
out=$("$VSHARE" mount "$WORK/m8" --export v8="$img8" --kernel-cache -f 2>&1)
rc=$?
check "--kernel-cache with 8 KiB blocks is refused (exit $rc)" [ "$rc" != 0 ]
check "with a reason" grep -q "block size to be the page size" <<<"$out"
check "and nothing stays mounted" bash -c "! grep -q ' $WORK/m8 ' /proc/mounts"

for n in c b a root; do stop_node "$WORK/$n"; done
finish
