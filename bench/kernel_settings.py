#!/usr/bin/env python3
"""What two kernel-side settings give a vshare leaf, measured side by side.

1. --max-background: how many asynchronous requests (libaio, read-ahead) the
   kernel keeps in flight to vshare. libfuse leaves it at 12; vshare asks
   for 64. Measured on a leaf reading cold blocks at random with QD16, where
   every miss waits for a round trip to the root.
2. Direct I/O on the loop device that carries a file system on the image
   (`losetup --direct-io=on`). Without it the loop driver reads and writes
   the image through the page cache, one request at a time per worker; with
   it, requests go to vshare as asynchronous direct I/O, many at once.
   Measured with ext4 on the leaf's image, mounted with `mount -o loop`, and
   the same loop device switched with `losetup --direct-io=on|off`.

Everything runs on this machine (tmpfs image, nodes on 127.0.0.1). Rounds
alternate the settings; each figure is the median of its rounds. It is a
benchmark, not a test: it exits non-zero only when something could not be
measured.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import acceptance as A

IMAGE_MIB = 384   # the volume; the cold pass reads all of it once
FILE_MIB = 192    # the file inside ext4 that the loop figures read and write


def log(msg):
    print(f"[kernel-settings] {msg}", file=sys.stderr, flush=True)


def cold_randread(run, ctx, rmp, background, got):
    """One cold pass at QD16 (the acceptance figure) and one at QD64, each on a fresh leaf."""
    for depth in (16, 64):
        lmp, lp = run.node("leaf", ctx["leaf"] + ["--max-background", str(background)])
        iops = A.fio(os.path.join(lmp, "vol.img"), "randread", depth=depth,
                     tag=f"cold randread QD{depth}, --max-background {background}")
        got.setdefault(("cold", depth, background), []).append(iops)
        run.unmount(lmp, lp)
        run.ctl(rmp, "drop-cache")


def loop_device_of(mountpoint):
    out = subprocess.run(["findmnt", "-n", "-o", "SOURCE", mountpoint], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def loop_figures(run, ctx, fs, dio, got):
    dev = loop_device_of(fs)
    subprocess.run(["losetup", f"--direct-io={dio}", dev], check=True, capture_output=True)
    shown = subprocess.run(["losetup", "-n", "-O", "DIO", dev], capture_output=True, text=True).stdout.strip()
    if shown != ("1" if dio == "on" else "0"):
        raise RuntimeError(f"losetup --direct-io={dio} did not take on {dev} (DIO shows {shown!r})")
    f = os.path.join(fs, "file")
    for job in ("randread", "seqread", "seqwrite"):
        got.setdefault((job, dio), []).append(A.fio(f, job, ctx["R"], tag=f"ext4 on loop, direct-io={dio}, {job}"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vshare", default=os.path.join(A.REPO, "build", "vshare"))
    ap.add_argument("--runtime", type=int, default=4, help="seconds per time-based fio job")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; each figure is the median")
    ap.add_argument("--port", type=int, default=27800)
    a = ap.parse_args()
    if a.repeat < 1 or a.runtime < 1:
        ap.error("--repeat and --runtime must be at least 1")
    work = tempfile.mkdtemp(prefix="vshare-kernel-settings.")
    run = A.Runner(os.path.abspath(a.vshare), work)
    fs = os.path.join(work, "ext4")
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sys.exit(130))
    got = {}
    try:
        run.mount_tmpfs(os.path.join(work, "tmpfs"), IMAGE_MIB + 64)
        image = os.path.join(work, "tmpfs", "disk.img")
        subprocess.run([run.vshare, "create", image, "--size", f"{IMAGE_MIB}M"], check=True, capture_output=True)
        subprocess.run(["dd", "if=/dev/urandom", f"of={image}", "bs=1M", f"count={IMAGE_MIB}", "conv=notrunc",
                        "status=none"], check=True)
        ctx = {"image": image, "cache": f"{IMAGE_MIB + 64}M", "port": a.port, "R": a.runtime}
        rp, rmp, rproc = A.start_root(run, ctx)
        ctx["leaf"] = ["--parent", f"127.0.0.1:{rp}", "--volume", "vol", "--cache-size", ctx["cache"]]
        log("leaf cold randread, the kernel's background limit")
        for rnd in range(a.repeat):
            for background in (12, 64):
                cold_randread(run, ctx, rmp, background, got)
        log("ext4 on a loop device over the leaf's image")
        lmp, lp = run.node("leaf", ctx["leaf"])
        img = os.path.join(lmp, "vol.img")
        subprocess.run(["mkfs.ext4", "-q", "-F", img], check=True, capture_output=True)
        os.makedirs(fs, exist_ok=True)
        subprocess.run(["mount", "-o", "loop", img, fs], check=True, capture_output=True)
        run.mounts.append(("loop", fs))  # cleanup_nodes unmounts it first (newest first), which frees the loop device
        A.fio(os.path.join(fs, "file"), "seqwrite", size=f"{FILE_MIB}M", tag="laying out the file")
        for rnd in range(a.repeat):
            for dio in ("off", "on"):
                loop_figures(run, ctx, fs, dio, got)
        subprocess.run(["umount", fs], check=True, capture_output=True)
        run.mounts = [m for m in run.mounts if m[1] != fs]
        run.unmount(lmp, lp)
        run.unmount(rmp, rproc)
    finally:
        run.cleanup()
        shutil.rmtree(work, ignore_errors=True)

    def row(label, unit, before, after):
        b, f = A.median(got[before]), A.median(got[after])
        print(f"{label:<50}  {b:>12,.0f}  {f:>12,.0f}  {unit:<5}  {f / b:5.2f}x")

    print(f"\nkernel-side settings on a vshare leaf ({IMAGE_MIB} MiB image on tmpfs, root on 127.0.0.1); "
          f"medians of {a.repeat} rounds")
    print(f"{'figure':<50}  {'before':>12}  {'after':>12}  {'unit':<5}  ratio")
    row("cold 4 KiB randread QD16: --max-background 12 -> 64", "IOPS", ("cold", 16, 12), ("cold", 16, 64))
    row("cold 4 KiB randread QD64: --max-background 12 -> 64", "IOPS", ("cold", 64, 12), ("cold", 64, 64))
    row("ext4 on loop, 4 KiB randread QD16: direct-io off -> on", "IOPS", ("randread", "off"), ("randread", "on"))
    row("ext4 on loop, 1 MiB seq read QD4: direct-io off -> on", "MiB/s", ("seqread", "off"), ("seqread", "on"))
    row("ext4 on loop, 1 MiB seq write QD4: direct-io off -> on", "MiB/s", ("seqwrite", "off"), ("seqwrite", "on"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
