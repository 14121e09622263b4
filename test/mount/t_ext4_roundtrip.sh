#!/bin/bash
# ext4 on a vshare image with a cache larger than the data: 200 files survive
# unmount and remount, and e2fsck -fn is clean.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ext4_roundtrip.sh"
begin ext4_roundtrip
ext4_roundtrip 128M no
finish
