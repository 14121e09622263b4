#!/bin/bash
# The same ext4 round trip with a 2 MiB cache, far smaller than the ~25 MiB
# of files: blocks are evicted, dirty ones written back, and nothing is lost.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ext4_roundtrip.sh"
begin ext4_small_cache
ext4_roundtrip 2M yes
finish
