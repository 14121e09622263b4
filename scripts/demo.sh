#!/bin/bash
# The live demo: installs what is needed, builds vshare, and on loopback
# runs a root node serving a disk image and a child node joined below it.
# On the child it puts ext4 on the shared image through a loop mount and
# writes files; the root then sees them, and both nodes' stats are shown.
# Everything it mounts or starts is undone on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh build >/dev/null
V=$PWD/build/vshare

work=$(mktemp -d /tmp/vshare-demo.XXXXXX)
cleanup() {
  set +e
  for m in "$work/fs-root" "$work/fs-child"; do
    awk -v p="$m" '$2 == p {f=1} END {exit !f}' /proc/mounts && umount "$m"
  done
  for m in "$work/child" "$work/root"; do
    if awk -v p="$m" '$2 == p {f=1} END {exit !f}' /proc/mounts; then
      "$V" umount "$m" >/dev/null 2>&1 || umount -l "$m"
    fi
  done
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/root" "$work/child" "$work/fs-child" "$work/fs-root"

# Commands in bold on a terminal; plain where the output goes to a file or CI.
if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
step() { printf '\n%s$ %s%s\n' "$bold" "$*" "$plain"; }
port_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tree"]["listen_port"])' "$1/.vshare/stats"; }

step vshare create "$work/disk.img" --size 256M
"$V" create "$work/disk.img" --size 256M

step "vshare mount $work/root --export demo=$work/disk.img --listen 127.0.0.1:0    # the root"
"$V" mount "$work/root" --export demo="$work/disk.img" --listen 127.0.0.1:0 --log-file "$work/root.log"
port=$(port_of "$work/root")
echo "root serving children on 127.0.0.1:$port"

step "vshare mount $work/child --parent 127.0.0.1:$port --volume demo    # a child on loopback"
"$V" mount "$work/child" --parent "127.0.0.1:$port" --volume demo --log-file "$work/child.log"
ls -l "$work/child"

step "mkfs.ext4 -q $work/child/demo.img && mount -o loop $work/child/demo.img $work/fs-child"
mkfs.ext4 -q -F "$work/child/demo.img"
mount -o loop "$work/child/demo.img" "$work/fs-child"
step "losetup --direct-io=on \$(findmnt -no SOURCE $work/fs-child)    # the loop device passes I/O straight on"
losetup --direct-io=on "$(findmnt -no SOURCE "$work/fs-child")"
losetup -l -O NAME,DIO,BACK-FILE "$(findmnt -no SOURCE "$work/fs-child")"

step "write 50 files of random data and a copy of /usr/share/common-licenses, on the child"
for i in $(seq 50); do head -c $((RANDOM * 4)) /dev/urandom >"$work/fs-child/random$i"; done
cp -r /usr/share/common-licenses "$work/fs-child/"
(cd "$work/fs-child" && find . -type f -exec sha256sum {} + | sort -k2) >"$work/sums"
df -h "$work/fs-child" | tail -1

step "open $work/root/demo.img for writing, on the root    # refused: the child holds the writer lease"
if python3 -c "import os, sys; os.open(sys.argv[1], os.O_RDWR)" "$work/root/demo.img" 2>"$work/refused"; then
  echo "UNEXPECTED: the root could open the image for writing"; exit 1
fi
tail -1 "$work/refused"
grep "writer lease" "$work/root.log" | tail -1

step "umount $work/fs-child    # the child's dirty blocks go up to the root"
umount "$work/fs-child"

step "vshare stats $work/child"
"$V" stats "$work/child"

step "mount -o loop,ro $work/root/demo.img $work/fs-root    # the root sees the child's files"
mount -o loop,ro "$work/root/demo.img" "$work/fs-root"
(cd "$work/fs-root" && find . -type f -exec sha256sum {} + | sort -k2) >"$work/sums-root"
if cmp -s "$work/sums" "$work/sums-root"; then
  echo "all $(wc -l <"$work/sums") files match, byte for byte"
else
  echo "MISMATCH between child and root"; exit 1
fi
umount "$work/fs-root"

step "vshare stats $work/root --json | (tree)"
"$V" stats --json "$work/root" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps({"role": d["node"]["role"], "tree": d["tree"]}, indent=2))'

step "vshare umount $work/child && vshare umount $work/root"
"$V" umount "$work/child"
"$V" umount "$work/root"

step "e2fsck -fn $work/disk.img    # the root's image file"
e2fsck -fn "$work/disk.img" | tail -1
