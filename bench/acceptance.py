#!/usr/bin/env python3
"""The data path's acceptance figures, measured side by side in one run.

Everything runs on this machine: the image is a file on a tmpfs this script
mounts, filled from /dev/urandom; vshare's nodes talk over TCP on 127.0.0.1,
and so do nbdkit and nbdfuse, the off-the-shelf baseline. fio runs with
ioengine=libaio and direct=1 unless a figure says buffered. Each figure is
printed beside the baseline it is judged against, both measured in this run,
with the ratio and the bar (see bench/README.md for what each one means).

It is a benchmark, not a test: it exits non-zero only when something could
not be measured, never because a figure is low. Run it on a quiet machine.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def log(msg):
    print(f"[acceptance] {msg}", file=sys.stderr, flush=True)


class Runner:
    """Starts things and undoes all of them, whatever happens."""

    def __init__(self, vshare, work):
        self.vshare = vshare
        self.work = work
        self.mounts = []  # (kind, path): vshare or fuse mounts, newest last
        self.procs = []  # Popen objects we started
        self.tmpfs = None

    # ---- lifecycle ----
    def mount_tmpfs(self, path, mib):
        os.makedirs(path, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m,mode=0700", "vshare-acceptance", path], check=True)
        self.tmpfs = path

    def cleanup(self):
        self.cleanup_nodes()
        if self.tmpfs and is_mounted(self.tmpfs):
            subprocess.run(["umount", "-l", self.tmpfs], capture_output=True)
        self.tmpfs = None

    def cleanup_nodes(self):
        for kind, path in reversed(self.mounts):
            if not is_mounted(path):
                continue
            if kind == "vshare":
                subprocess.run([self.vshare, "umount", path, "--timeout", "60"], capture_output=True, timeout=90)
            if is_mounted(path):
                subprocess.run(["fusermount3", "-u", "-z", path], capture_output=True)
            if is_mounted(path):
                subprocess.run(["umount", "-l", path], capture_output=True)
        self.mounts.clear()
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
            stop(p)
        self.procs.clear()

    # ---- vshare nodes ----
    def node(self, name, args):
        """vshare mount in the foreground (so its PID is ours), ready when its stats open."""
        mp = os.path.join(self.work, name)
        os.makedirs(mp, exist_ok=True)
        logf = open(os.path.join(self.work, f"{name}.log"), "a")
        p = subprocess.Popen([self.vshare, "mount", mp, "-f", "--io-timeout", "60"] + args,
                             stdout=logf, stderr=logf)
        self.procs.append(p)
        self.mounts.append(("vshare", mp))
        wait_for(lambda: os.path.exists(os.path.join(mp, ".vshare", "stats")), 30, p, name)
        return mp, p

    def proxy(self, name, args):
        """vshare serve in the foreground; its port from --port-file."""
        pf = os.path.join(self.work, f"{name}.port")
        logf = open(os.path.join(self.work, f"{name}.log"), "a")
        p = subprocess.Popen([self.vshare, "serve", "-f", "--listen", "127.0.0.1:0", "--port-file", pf,
                              "--io-timeout", "60"] + args, stdout=logf, stderr=logf)
        self.procs.append(p)
        wait_for(lambda: os.path.exists(pf) and open(pf).read().strip(), 30, p, name)
        return int(open(pf).read()), p

    def unmount(self, mp, p):
        subprocess.run([self.vshare, "umount", mp, "--timeout", "120"], capture_output=True, timeout=180)
        stop(p)
        self.mounts = [m for m in self.mounts if m[1] != mp]
        self.procs = [q for q in self.procs if q is not p]

    def end(self, p):
        stop(p)
        self.procs = [q for q in self.procs if q is not p]

    def stats(self, mp):
        with open(os.path.join(mp, ".vshare", "stats")) as f:
            return json.load(f)

    def ctl(self, mp, *cmd):
        subprocess.run([self.vshare, "ctl", mp] + list(cmd), check=True, capture_output=True, timeout=300)

    # ---- nbdkit + nbdfuse over TCP ----
    def nbd(self, image, port):
        mp = os.path.join(self.work, "nbdfuse")
        os.makedirs(mp, exist_ok=True)
        logf = open(os.path.join(self.work, "nbd.log"), "a")
        kit = subprocess.Popen(["nbdkit", "--exit-with-parent", "-f", "-i", "127.0.0.1", "-p", str(port),
                                "file", f"file={image}"], stdout=logf, stderr=logf)
        self.procs.append(kit)
        time.sleep(0.5)
        fuse = subprocess.Popen(["nbdfuse", mp, "--tcp", "127.0.0.1", str(port)], stdout=logf, stderr=logf)
        self.procs.append(fuse)
        self.mounts.append(("fuse", mp))
        wait_for(lambda: os.path.exists(os.path.join(mp, "nbd")), 30, fuse, "nbdfuse")
        return os.path.join(mp, "nbd"), kit, fuse


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/mounts") as f:
        return any(line.split()[1] == path for line in f)


def stop(p, grace=20):
    if p.poll() is None:
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def wait_for(cond, seconds, proc, what):
    end = time.time() + seconds
    while time.time() < end:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited before it was ready (see its log)")
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after {seconds} s")


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


JOBS = {
    "randread": ["--rw=randread", "--bs=4k", "--iodepth=16"],
    "seqread": ["--rw=read", "--bs=1M", "--iodepth=4"],
    "seqwrite": ["--rw=write", "--bs=1M", "--iodepth=4"],
}


def fio(path, job, runtime=None, size=None, offset=0, direct=True, tag=""):
    """One fio job; returns IOPS (4k jobs) or MiB/s (1M jobs). runtime=None: one pass over `size`."""
    args = ["fio", "--name=" + job, "--filename=" + path, "--ioengine=libaio", f"--direct={1 if direct else 0}",
            "--group_reporting", "--output-format=json", "--fallocate=none", "--invalidate=0"] + JOBS[job]
    if size:
        args.append(f"--size={size}")
    if offset:
        args.append(f"--offset={offset}")
    if runtime:
        args += ["--time_based", f"--runtime={runtime}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"fio {job} on {path} failed: {out.stderr.strip()[-300:]}")
    j = json.loads(out.stdout[out.stdout.index("{"):])["jobs"][0]
    if j.get("error"):
        raise RuntimeError(f"fio {job} on {path}: error {j['error']}")
    side = j["write"] if job == "seqwrite" else j["read"]
    value = side["iops"] if job == "randread" else side["bw_bytes"] / 1048576
    log(f"  {tag or job}: {value:,.1f} {'IOPS' if job == 'randread' else 'MiB/s'}")
    return value


def warm(path, size):
    """Reads every block once, so that a node's cache holds them."""
    subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=1M", f"count={size >> 20}", "iflag=direct", "status=none"],
                   check=True, timeout=900)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vshare", default=os.path.join(REPO, "build", "vshare"))
    ap.add_argument("--size", default="1G", help="image size (at least 1G for the cold passes)")
    ap.add_argument("--runtime", type=int, default=10, help="seconds per time-based fio job")
    ap.add_argument("--port", type=int, default=27000, help="first of the loopback ports to use")
    ap.add_argument("--only", help="comma-separated sections to run (default: all)")
    a = ap.parse_args()
    size = parse_size(a.size)
    mib = size >> 20
    cache = f"{mib + mib // 8}M"  # room for the whole image
    R = a.runtime
    work = tempfile.mkdtemp(prefix="vshare-acceptance.")
    run = Runner(os.path.abspath(a.vshare), work)
    results = {}
    failures = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sys.exit(130))
    ctx = {"size": size, "mib": mib, "cache": cache, "R": R, "port": a.port}
    try:
        run.mount_tmpfs(os.path.join(work, "tmpfs"), mib + 128)
        image = os.path.join(work, "tmpfs", "disk.img")
        ctx["image"] = image
        log(f"a {mib} MiB image on tmpfs, filled from /dev/urandom")
        subprocess.run([run.vshare, "create", image, "--size", f"{mib}M"], check=True, capture_output=True)
        subprocess.run(["dd", "if=/dev/urandom", f"of={image}", "bs=1M", f"count={mib}", "conv=notrunc", "status=none"],
                       check=True)
        for name, section in SECTIONS:
            if a.only and name not in a.only.split(","):
                continue
            log(name)
            try:
                section(run, ctx, results)
            except Exception as e:  # noqa: BLE001 - reported, cleaned up, and the rest goes on
                log(f"  {name} failed: {e}")
                failures.append(name)
                run.cleanup_nodes()
    finally:
        run.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    print_table(results, mib)
    if failures:
        print(f"\nnot measured: {', '.join(failures)}")
        return 1
    return 0


def next_port(ctx):
    ctx["port"] += 1
    return ctx["port"] - 1


def tmpfs_section(run, ctx, r):
    image, R = ctx["image"], ctx["R"]
    fio(image, "seqread", R, direct=False, tag="buffered seqread (warming)")
    r["tmpfs_buffered_seqread"] = fio(image, "seqread", R, direct=False, tag="warm buffered seqread")


def root_alone_section(run, ctx, r):
    mp, p = run.node("root-alone", ["--export", f"vol={ctx['image']}", "--cache-size", ctx["cache"]])
    img = os.path.join(mp, "vol.img")
    warm(img, ctx["size"])
    r["root_randread"] = fio(img, "randread", ctx["R"], tag="warm randread")
    r["root_seqread"] = fio(img, "seqread", ctx["R"], tag="warm seqread")
    r["root_seqwrite"] = fio(img, "seqwrite", ctx["R"], tag="seqwrite")
    run.unmount(mp, p)


def root_child_section(run, ctx, r):
    rp = next_port(ctx)
    mp, p = run.node("root-child", ["--export", f"vol={ctx['image']}", "--cache-size", ctx["cache"],
                                    "--listen", f"127.0.0.1:{rp}"])
    lmp, lp = run.node("idle-leaf", ["--parent", f"127.0.0.1:{rp}", "--volume", "vol", "--cache-size", "64M"])
    img = os.path.join(mp, "vol.img")
    warm(img, ctx["size"])
    r["root_child_randread"] = fio(img, "randread", ctx["R"], tag="warm randread, one idle child")
    run.unmount(lmp, lp)
    run.unmount(mp, p)


def start_root(run, ctx):
    rp = next_port(ctx)
    mp, p = run.node("root", ["--export", f"vol={ctx['image']}", "--cache-size", ctx["cache"],
                              "--listen", f"127.0.0.1:{rp}"])
    return rp, mp, p


def leaf_section(run, ctx, r):
    size, R, cache = ctx["size"], ctx["R"], ctx["cache"]
    rp, rmp, rproc = start_root(run, ctx)
    leaf = ["--parent", f"127.0.0.1:{rp}", "--volume", "vol", "--cache-size", cache]
    lmp, lproc = run.node("leaf", leaf)
    img = os.path.join(lmp, "vol.img")
    r["leaf_cold_seqread"] = fio(img, "seqread", size=size, tag="cold seqread, one pass")
    run.unmount(lmp, lproc)
    run.ctl(rmp, "drop-cache")
    lmp, lproc = run.node("leaf", leaf)
    img = os.path.join(lmp, "vol.img")
    r["leaf_cold_randread"] = fio(img, "randread", size=size, tag="cold randread, one pass")
    warm(img, size)
    r["leaf_randread"] = fio(img, "randread", R, tag="warm randread")
    r["leaf_seqread"] = fio(img, "seqread", R, tag="warm seqread")
    r["hot_16m"] = fio(img, "randread", R, size=16 << 20, tag="warm randread, 16 MiB hot set")
    r["hot_all"] = fio(img, "randread", R, size=size, tag=f"warm randread, {ctx['mib']} MiB hot set")
    r["leaf_seqwrite"] = fio(img, "seqwrite", R, tag="seqwrite, async")
    run.unmount(lmp, lproc)
    lmp, lproc = run.node("leaf-sync", leaf + ["--write-mode", "sync"])
    r["leaf_sync_seqwrite"] = fio(os.path.join(lmp, "vol.img"), "seqwrite", R, tag="seqwrite, sync")
    run.unmount(lmp, lproc)
    run.unmount(rmp, rproc)


def memory_section(run, ctx, r):
    rp, rmp, rproc = start_root(run, ctx)
    pport, pproc = run.proxy("proxy", ["--parent", f"127.0.0.1:{rp}", "--volume", "vol", "--cache-size", "64M"])
    lmp, lproc = run.node("leaf-small", ["--parent", f"127.0.0.1:{pport}", "--volume", "vol", "--cache-size", "64M"])
    warm(os.path.join(lmp, "vol.img"), 256 << 20)
    r["leaf_rss"] = rss_bytes(lproc.pid)
    r["proxy_rss"] = rss_bytes(pproc.pid)
    log(f"  RSS: leaf {r['leaf_rss'] >> 20} MiB, proxy {r['proxy_rss'] >> 20} MiB")
    run.unmount(lmp, lproc)
    pproc.terminate()
    run.end(pproc)
    run.unmount(rmp, rproc)


def kernel_cache_section(run, ctx, r):
    rp, rmp, rproc = start_root(run, ctx)
    lmp, lproc = run.node("leaf-kc", ["--parent", f"127.0.0.1:{rp}", "--volume", "vol", "--cache-size", ctx["cache"],
                                      "--kernel-cache"])
    img = os.path.join(lmp, "vol.img")
    fio(img, "seqread", ctx["R"], direct=False, tag="buffered seqread (warming)")
    r["kc_buffered_seqread"] = fio(img, "seqread", ctx["R"], direct=False, tag="warm buffered seqread")
    run.unmount(lmp, lproc)
    run.unmount(rmp, rproc)


def nbd_section(run, ctx, r):
    nimg, kit, nf = run.nbd(ctx["image"], next_port(ctx))
    r["nbd_cold_seqread"] = fio(nimg, "seqread", size=ctx["size"], tag="seqread, one pass")
    r["nbd_cold_randread"] = fio(nimg, "randread", size=ctx["size"], tag="randread, one pass")
    r["nbd_seqwrite"] = fio(nimg, "seqwrite", ctx["R"], tag="seqwrite")
    run.cleanup_nodes()


SECTIONS = [
    ("tmpfs", tmpfs_section),
    ("root-alone", root_alone_section),
    ("root-with-child", root_child_section),
    ("leaf", leaf_section),
    ("memory", memory_section),
    ("kernel-cache", kernel_cache_section),
    ("nbd", nbd_section),
]


def parse_size(s):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    s = s.strip().upper().rstrip("B").rstrip("I")
    return int(float(s[:-1]) * units[s[-1]]) if s[-1] in units else int(s)


def print_table(r, mib):
    rows = []

    def add(figure, value, unit, base, base_name, bar):
        if value is None or base in (None, 0):
            rows.append([figure, "n/a", base_name, "n/a", f">= {bar:.1f}x", "n/a"])
            return
        ratio = value / base
        rows.append([figure, f"{value:,.0f} {unit}", f"{base:,.0f} {unit} ({base_name})", f"{ratio:.2f}x",
                     f">= {bar:.1f}x", "met" if ratio >= bar else "NOT MET"])

    g = r.get
    add("leaf warm, 4 KiB randread QD16", g("leaf_randread"), "IOPS", g("root_randread"), "root alone", 0.8)
    add("leaf warm, 1 MiB seq read QD4", g("leaf_seqread"), "MiB/s", g("root_seqread"), "root alone", 0.8)
    add("leaf cold, 1 MiB seq read QD4, one pass", g("leaf_cold_seqread"), "MiB/s", g("nbd_cold_seqread"),
        "nbdkit+nbdfuse", 1.0)
    add("leaf cold, 4 KiB randread QD16, one pass", g("leaf_cold_randread"), "IOPS", g("nbd_cold_randread"),
        "nbdkit+nbdfuse", 0.7)
    add("leaf 1 MiB seq write QD4, async", g("leaf_seqwrite"), "MiB/s", g("root_seqwrite"), "root alone", 0.8)
    add("leaf 1 MiB seq write QD4, sync", g("leaf_sync_seqwrite"), "MiB/s", g("nbd_seqwrite"), "nbdkit+nbdfuse", 0.5)
    add("root with one idle child, 4 KiB randread", g("root_child_randread"), "IOPS", g("root_randread"),
        "root alone", 0.9)
    add("--kernel-cache, warm buffered 1 MiB seq read", g("kc_buffered_seqread"), "MiB/s",
        g("tmpfs_buffered_seqread"), "tmpfs", 0.8)
    add(f"warm 4 KiB randread, {mib} MiB hot set", g("hot_all"), "IOPS", g("hot_16m"), "16 MiB hot set", 0.8)
    for who in ("leaf", "proxy"):
        rss = g(f"{who}_rss")
        if rss is None:
            rows.append([f"{who} RSS after reading 4x its cache", "n/a", "64 MiB cache", "", "<= cache + 64 MiB", "n/a"])
        else:
            rows.append([f"{who} RSS after reading 4x its cache", f"{rss >> 20} MiB", "64 MiB cache", "",
                         "<= 128 MiB", "met" if rss <= 128 << 20 else "NOT MET"])
    head = ["figure", "measured", "baseline (same run)", "ratio", "bar", ""]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    print()
    print(f"vshare data-path acceptance: {mib} MiB image on tmpfs, TCP on loopback, {os.cpu_count()} CPUs, "
          f"kernel {os.uname().release}")
    for line in [head, ["-" * w for w in widths]] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip())


if __name__ == "__main__":
    sys.exit(main())
