# The ext4 round trip shared by t_ext4_roundtrip.sh and t_ext4_small_cache.sh:
# mkfs.ext4 on NAME.img, loop-mount it, write 200 files of random content,
# unmount everything, mount again and check every file and the file system.
# Usage: ext4_roundtrip CACHE_SIZE EXPECT_EVICTIONS(yes|no)

ext4_roundtrip() {
  local cache=$1 expect_evictions=$2
  local img=$WORK/backing.img mp=$WORK/mnt fs=$WORK/fs
  check "create a 256 MiB image" "$VSHARE" create "$img" --size 256M
  start_node "$mp" --export vol="$img" --cache-size "$cache" || return 1
  check "NAME.img has the volume's size" [ "$(stat -c %s "$mp/vol.img")" = 268435456 ]
  check "mkfs.ext4 on the image" mkfs.ext4 -q -F "$mp/vol.img"
  loop_mount "$mp/vol.img" "$fs" || { check "loop mount" false; return 1; }

  local i size
  for ((i = 1; i <= 200; i++)); do
    size=$(( (RANDOM % 256 + 1) * 1024 + RANDOM % 1024 ))
    head -c "$size" /dev/urandom >"$fs/file$i"
  done
  (cd "$fs" && sha256sum file*) >"$WORK/sums"
  check "200 files written" [ "$(wc -l <"$WORK/sums")" = 200 ]
  check "unmount the loop device" loop_umount "$fs"

  local misses evictions
  misses=$(stat_of "$mp" volumes.vol.cache.misses)
  evictions=$(stat_of "$mp" volumes.vol.cache.evictions)
  check "writing counted cache misses ($misses)" [ "$misses" -gt 0 ]
  if [ "$expect_evictions" = yes ]; then
    check "a cache smaller than the data evicted blocks ($evictions)" [ "$evictions" -gt 0 ]
    check "evicted dirty blocks were written to the store" [ "$(stat_of "$mp" volumes.vol.store_writes)" -gt 0 ]
  else
    # Set-associative: a set whose 8 ways are taken evicts even when the
    # cache as a whole has room (ext4 puts metadata at strides that share a
    # set now and then), so "nothing" is "next to nothing".
    check "a cache larger than the data evicted next to nothing ($evictions of $misses)" \
      [ $((evictions * 100)) -le "$misses" ]
  fi
  check "vshare umount succeeds" stop_node "$mp"
  check "the backing image passes e2fsck -fn after unmount" e2fsck -fn "$img"

  start_node "$mp" --export vol="$img" --cache-size "$cache" || return 1
  loop_mount "$mp/vol.img" "$fs" || { check "loop mount again" false; return 1; }
  check "every checksum matches after remounting" bash -c "cd '$fs' && sha256sum --quiet -c '$WORK/sums'"
  check "unmount the loop device again" loop_umount "$fs"
  check "e2fsck -fn through the mount is clean" e2fsck -fn "$mp/vol.img"
  misses=$(stat_of "$mp" volumes.vol.cache.misses)
  check "reading back counted misses ($misses)" [ "$misses" -gt 0 ]
  if [ "$expect_evictions" = yes ]; then
    check "reading back evicted blocks" [ "$(stat_of "$mp" volumes.vol.cache.evictions)" -gt 0 ]
  fi
  check "vshare umount succeeds again" stop_node "$mp"
}
