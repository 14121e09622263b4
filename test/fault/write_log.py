#!/usr/bin/env python3
"""A verifying write workload for fault tests.

usage: write_log.py IMAGE LOG WRITES BLOCKS FSYNC_EVERY [PAUSE_MS]

Writes WRITES blocks of 4 KiB with O_DIRECT, round-robin over the first
BLOCKS blocks of IMAGE, each with content no other write has, in this run
or any other (a header naming the run, by LOG's path and the time, and the
write, then bytes derived from it). fsync()s after every
FSYNC_EVERY writes (0: never). Every completed write and fsync is appended
to LOG as one line ("write N BLOCK DIGEST" / "fsync N"), flushed at once, so
the log says exactly what was acknowledged even if this process is killed.
Any failed call ends the run with exit status 1.

With HOLD_AT=N in the environment it stops for HOLD_S seconds (default 3)
once write N is logged: a test can then act at a known point of the run.
"""
import hashlib
import mmap
import os
import sys
import time

BS = 4096


def content(run, n, block):
    head = f"{run} write {n} block {block} ".encode()
    body = hashlib.sha256(head).digest() * (BS // 32)
    return (head + body)[:BS]


def main():
    image, log_path, writes, blocks, fsync_every = sys.argv[1:6]
    writes, blocks, fsync_every = int(writes), int(blocks), int(fsync_every)
    pause = int(sys.argv[6]) / 1000 if len(sys.argv) > 6 else 0.0
    hold_at = int(os.environ.get("HOLD_AT", "-1"))
    hold_s = float(os.environ.get("HOLD_S", "3"))
    run = f"{os.path.abspath(log_path)} {time.time()}"
    buf = mmap.mmap(-1, BS)
    fd = os.open(image, os.O_RDWR | os.O_DIRECT)
    with open(log_path, "a") as log:
        for n in range(writes):
            block = n % blocks
            data = content(run, n, block)
            buf.seek(0)
            buf.write(data)
            try:
                if os.pwritev(fd, [buf], block * BS) != BS:
                    raise OSError("short write")
            except OSError as e:
                print(f"write {n} to block {block} failed: {e}", file=sys.stderr)
                return 1
            log.write(f"write {n} {block} {hashlib.sha256(data).hexdigest()}\n")
            log.flush()
            if fsync_every and (n + 1) % fsync_every == 0:
                try:
                    os.fsync(fd)
                except OSError as e:
                    print(f"fsync after write {n} failed: {e}", file=sys.stderr)
                    return 1
                log.write(f"fsync {n}\n")
                log.flush()
            if n == hold_at:
                time.sleep(hold_s)
            if pause:
                time.sleep(pause)
    os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
