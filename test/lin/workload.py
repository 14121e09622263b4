#!/usr/bin/env python3
"""One worker of the mount-level linearizability test.

Runs OPS random O_DIRECT reads and writes of whole blocks among BLOCKS on
one node's image file, each write with a value no one else writes, and
appends one JSON line per operation (see lincheck_main.cc) to OUT. Times
are CLOCK_MONOTONIC, shared by every process on the machine.

usage: workload.py IMAGE OUT HISTORY PROCESS OPS BLOCK[,BLOCK...] SEED

With LIN_BUFFERED_READS=1 in the environment, reads go through the kernel's
page cache instead (for --kernel-cache mounts); writes stay O_DIRECT.
"""
import json
import mmap
import os
import random
import sys
import time

BS = 4096


def main():
    image, out, history, process, ops, blocks, seed = sys.argv[1:8]
    history, process, ops, seed = int(history), int(process), int(ops), int(seed)
    blocks = [int(b) for b in blocks.split(",")]
    rng = random.Random(seed)
    buf = mmap.mmap(-1, BS)  # page-aligned, as O_DIRECT wants
    fd = os.open(image, os.O_RDWR | os.O_DIRECT)
    rfd = os.open(image, os.O_RDONLY) if os.environ.get("LIN_BUFFERED_READS") == "1" else fd
    lines = []
    for i in range(ops):
        block = rng.choice(blocks)
        write = rng.random() < 0.5
        if write:
            value = f"h{history}p{process}n{i}"
            buf.seek(0)
            buf.write(value.encode().ljust(BS, b"\0"))
            t0 = time.monotonic()
            n = os.pwritev(fd, [buf], block * BS)
            t1 = time.monotonic()
            assert n == BS, n
        else:
            t0 = time.monotonic()
            n = os.preadv(rfd, [buf], block * BS)
            t1 = time.monotonic()
            assert n == BS, n
            value = bytes(buf[:BS]).split(b"\0", 1)[0].decode()
        lines.append(json.dumps({"history": history, "block": block, "process": process,
                                 "type": "write" if write else "read", "value": value,
                                 "invoke": t0, "complete": t1}))
    if rfd != fd:
        os.close(rfd)
    os.close(fd)
    with open(out, "a") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
