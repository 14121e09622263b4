#!/bin/bash
# The live demo: installs what is needed, builds vshare, creates an image,
# serves it from a root node, puts ext4 on it through a loop mount, writes
# files, and shows the node's stats. Everything it mounts or starts is undone
# on exit. (Children under the root arrive with the tree work; see README.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh build >/dev/null
V=$PWD/build/vshare

work=$(mktemp -d /tmp/vshare-demo.XXXXXX)
pid=""
cleanup() {
  set +e
  mountpoint -q "$work/fs" && umount "$work/fs"
  if mountpoint -q "$work/root"; then "$V" umount "$work/root" >/dev/null 2>&1 || umount -l "$work/root"; fi
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/root" "$work/fs"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step vshare create "$work/disk.img" --size 256M
"$V" create "$work/disk.img" --size 256M
step vshare mount "$work/root" --export demo="$work/disk.img" --cache-size 64M
"$V" mount "$work/root" --export demo="$work/disk.img" --cache-size 64M -f --log-file "$work/node.log" &
pid=$!
for _ in $(seq 100); do [ -f "$work/root/.vshare/stats" ] && break; sleep 0.1; done
ls -l "$work/root"
step mkfs.ext4 -q "$work/root/demo.img"
mkfs.ext4 -q -F "$work/root/demo.img"
step mount -o loop "$work/root/demo.img" "$work/fs"
mount -o loop "$work/root/demo.img" "$work/fs"
step "write 50 files of random data and a copy of /usr/share/common-licenses"
for i in $(seq 50); do head -c $((RANDOM * 4)) /dev/urandom >"$work/fs/random$i"; done
cp -r /usr/share/common-licenses "$work/fs/"
sync -f "$work/fs"
df -h "$work/fs" | tail -1
step umount "$work/fs"
umount "$work/fs"
step vshare stats "$work/root"
"$V" stats "$work/root"
step vshare umount "$work/root"
"$V" umount "$work/root"
wait "$pid" 2>/dev/null || true
pid=""
step e2fsck -fn "$work/disk.img"
e2fsck -fn "$work/disk.img" | tail -1
echo
echo "node log:"
cat "$work/node.log"
