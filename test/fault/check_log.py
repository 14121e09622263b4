#!/usr/bin/env python3
"""Checks an image against a write_log.py log.

usage: check_log.py IMAGE LOG all|fsynced

all: every block holds the last write the log says was acknowledged.
fsynced: every block whose last acknowledged write came before the last
acknowledged fsync holds that write, or a later acknowledged one.
Reads with O_DIRECT. Prints what it found; exit status 1 on any mismatch.
"""
import hashlib
import mmap
import os
import sys

BS = 4096


def main():
    image, log_path, mode = sys.argv[1:4]
    last = {}        # block -> (write number, digest)
    digests = {}     # block -> {digest: write number}
    last_fsync = -1
    for line in open(log_path):
        parts = line.split()
        if parts[0] == "write":
            n, block, digest = int(parts[1]), int(parts[2]), parts[3]
            last[block] = (n, digest)
            digests.setdefault(block, {})[digest] = n
        elif parts[0] == "fsync":
            last_fsync = int(parts[1])
    buf = mmap.mmap(-1, BS)
    fd = os.open(image, os.O_RDONLY | os.O_DIRECT)
    bad = checked = 0
    for block, (n, digest) in sorted(last.items()):
        os.preadv(fd, [buf], block * BS)
        got = hashlib.sha256(buf[:BS]).hexdigest()
        if mode == "all":
            checked += 1
            if got != digest:
                bad += 1
                print(f"block {block}: not its last acknowledged write ({n})")
        else:
            last_synced = max((m for m in digests[block].values() if m <= last_fsync), default=None)
            if last_synced is None:
                continue
            checked += 1
            if digests[block].get(got, -1) < last_synced:
                bad += 1
                print(f"block {block}: lost fsynced write {last_synced}")
    print(f"{checked} blocks checked, {bad} wrong")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
