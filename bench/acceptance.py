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
    def node(self, name, args, nice=0):
        """vshare mount in the foreground (so its PID is ours), ready when its stats open."""
        mp = os.path.join(self.work, name)
        os.makedirs(mp, exist_ok=True)
        logf = open(os.path.join(self.work, f"{name}.log"), "a")
        prefix = ["nice", "-n", str(nice)] if nice else []  # nice execs: the PID stays vshare's
        p = subprocess.Popen(prefix + [self.vshare, "mount", mp, "-f", "--io-timeout", "60"] + args,
                             stdout=logf, stderr=logf)
        self.procs.append(p)
        self.mounts.append(("vshare", mp))
        wait_for(lambda: os.path.exists(os.path.join(mp, ".vshare", "stats")), 30, p, name)
        return mp, p

    def proxy(self, name, args):
        """vshare serve in the foreground; its port from --port-file."""
        pf = os.path.join(self.work, f"{name}.port")
        if os.path.exists(pf):
            os.unlink(pf)  # a stale port from an earlier run of the same name
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


def fio(path, job, runtime=None, size=None, offset=0, direct=True, tag="", depth=None):
    """One fio job; returns IOPS (4k jobs) or MiB/s (1M jobs). runtime=None: one pass over `size`."""
    args = ["fio", "--name=" + job, "--filename=" + path, "--ioengine=libaio", f"--direct={1 if direct else 0}",
            "--group_reporting", "--output-format=json", "--fallocate=none", "--invalidate=0"] + JOBS[job]
    if depth:
        args.append(f"--iodepth={depth}")  # the later of two --iodepth options wins
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
    ap.add_argument("--runtime", type=int, default=5, help="seconds per time-based fio job")
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds of the single-node sections; each figure is the median of its rounds")
    ap.add_argument("--port", type=int, default=27000, help="first of the loopback ports to use")
    ap.add_argument("--only", help="comma-separated sections to run (default: all)")
    a = ap.parse_args()
    size = parse_size(a.size)
    mib = size >> 20
    if a.repeat < 1 or a.runtime < 1:
        ap.error("--repeat and --runtime must be at least 1")
    cache = f"{mib + mib // 8}M"  # room for the whole image
    R = a.runtime
    work = tempfile.mkdtemp(prefix="vshare-acceptance.")
    run = Runner(os.path.abspath(a.vshare), work)
    results = {}
    failures = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sys.exit(130))
    ctx = {"size": size, "mib": mib, "cache": cache, "R": R, "port": a.port, "bin": os.path.dirname(run.vshare)}
    try:
        run.mount_tmpfs(os.path.join(work, "tmpfs"), mib + FANOUT_MIB + 128)
        image = os.path.join(work, "tmpfs", "disk.img")
        ctx["image"] = image
        log(f"a {mib} MiB image on tmpfs, filled from /dev/urandom")
        subprocess.run([run.vshare, "create", image, "--size", f"{mib}M"], check=True, capture_output=True)
        subprocess.run(["dd", "if=/dev/urandom", f"of={image}", "bs=1M", f"count={mib}", "conv=notrunc", "status=none"],
                       check=True)
        # Rounds alternate the sections, so that a noisy spell of the
        # machine lands on every figure rather than on one.
        for rnd in range(a.repeat):
            for name, section in SECTIONS:
                if (a.only and name not in a.only.split(",")) or name in failures:
                    continue
                if name in ONCE and rnd > 0:
                    continue
                log(f"{name}" + ("" if name in ONCE else f" (round {rnd + 1} of {a.repeat})"))
                got = {}
                try:
                    section(run, ctx, got)
                except Exception as e:  # noqa: BLE001 - reported, cleaned up, and the rest goes on
                    log(f"  {name} failed: {e}")
                    failures.append(name)
                    run.cleanup_nodes()
                    continue
                for k, v in got.items():
                    results.setdefault(k, []).append(v)
    finally:
        run.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    print_table({k: median(v) for k, v in results.items()}, mib, a.repeat)
    print_fanout(results.get("fanout", [None])[0])
    print_simulation(results.get("simulation", [None])[0])
    if failures:
        print(f"\nnot measured: {', '.join(failures)}")
        return 1
    return 0


def median(values):
    if not isinstance(values[0], (int, float)):
        return values[0]
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


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


FANOUT_MIB = 256  # what every leaf of the fan-out reads: a whole image of its own
FANOUT_LEAF_CACHE = "64M"
FANOUT_PROXY_CACHE = f"{FANOUT_MIB + 64}M"  # a proxy holds all of it: it asks the root once per block
# Each leaf stands for a host of its own. On one small machine, 64 of them
# and their readers would take from the root and the proxies the CPU they
# have to themselves on real hosts (the scheduler shares it per thread), so
# leaves and readers run at a lower priority; the lone leaf too.
FANOUT_LEAF_NICE = 5
TOPOLOGIES = [  # (label, proxies, leaves)
    ("16 leaves under the root", 0, 16),
    ("16 leaves behind one proxy", 1, 16),
    ("64 leaves under 4 proxies", 4, 64),
]


def read_all_at_once(run, images, what):
    """dd of every image at once; returns (wall seconds, per-reader seconds, failures)."""
    procs = []
    start = time.monotonic()
    for img in images:
        procs.append(subprocess.Popen(["nice", "-n", str(FANOUT_LEAF_NICE), "dd", f"if={img}", "of=/dev/null", "bs=1M", f"count={FANOUT_MIB}",
                                       "iflag=direct", "status=none"], stderr=subprocess.PIPE))
    took = [None] * len(procs)
    deadline = start + 900
    while any(t is None for t in took) and time.monotonic() < deadline:
        for i, p in enumerate(procs):
            if took[i] is None and p.poll() is not None:
                took[i] = time.monotonic() - start
        time.sleep(0.01)
    failed = 0
    for i, p in enumerate(procs):
        if took[i] is None:
            p.kill()
            p.wait()
            failed += 1
            log(f"  {what}: reader {i + 1} did not finish within 900 s")
        elif p.returncode != 0:
            failed += 1
            log(f"  {what}: reader {i + 1} failed: {p.stderr.read().decode().strip()[-200:]}")
        p.stderr.close()
    return time.monotonic() - start, [t for t in took if t is not None], failed


def fanout_tree(run, ctx, label, proxies, leaves):
    """A fresh root, `proxies` proxies under it (none: leaves join the root), and
    `leaves` leaves spread over them; all read the fan-out image at once."""
    rp = next_port(ctx)
    rmp, rproc = run.node("fan-root", ["--export", f"vol={ctx['fan_image']}", "--cache-size", FANOUT_PROXY_CACHE,
                                       "--listen", f"127.0.0.1:{rp}"])
    parents = [rp]
    if proxies:
        parents = [run.proxy(f"fan-proxy-{k}", ["--parent", f"127.0.0.1:{rp}", "--volume", "vol",
                                                "--cache-size", FANOUT_PROXY_CACHE])[0] for k in range(proxies)]
    mps = []
    for k in range(leaves):
        mp, _ = run.node(f"fan-leaf-{k}", ["--parent", f"127.0.0.1:{parents[k % len(parents)]}", "--volume", "vol",
                                          "--cache-size", FANOUT_LEAF_CACHE], nice=FANOUT_LEAF_NICE)
        mps.append(mp)
    children = run.stats(rmp)["tree"]["children"]
    wall, took, failed = read_all_at_once(run, [os.path.join(mp, "vol.img") for mp in mps], label)
    served = run.stats(rmp)["tree"]["traffic"]["bytes_to_children"]
    run.cleanup_nodes()
    return {"wall": wall, "slowest": max(took) if took else None, "failed": failed, "children": children,
            "served_mib": served / 1048576, "leaves": leaves}


def fanout_section(run, ctx, r):
    fan = os.path.join(os.path.dirname(ctx["image"]), "fanout.img")
    ctx["fan_image"] = fan
    subprocess.run([run.vshare, "create", fan, "--size", f"{FANOUT_MIB}M"], check=True, capture_output=True)
    subprocess.run(["dd", "if=/dev/urandom", f"of={fan}", "bs=1M", f"count={FANOUT_MIB}", "conv=notrunc",
                    "status=none"], check=True)
    log(f"  one lone leaf reads {FANOUT_MIB} MiB (the baseline)")
    out = {"lone": fanout_tree(run, ctx, "lone leaf", 0, 1), "trees": []}
    for label, proxies, leaves in TOPOLOGIES:
        log(f"  {label}, each reading the same {FANOUT_MIB} MiB at once")
        t = fanout_tree(run, ctx, label, proxies, leaves)
        t["label"] = label
        out["trees"].append(t)
    os.unlink(fan)
    r["fanout"] = out


def simulation_section(run, ctx, r):
    sim = os.path.join(ctx["bin"], "sim_tree")
    if not os.access(sim, os.X_OK):
        raise RuntimeError(f"{sim} not found (build the sim_tree target)")
    out = subprocess.run([sim, "--fanout", "10", "--levels", "4", "--read", str(4 << 20)], capture_output=True,
                         text=True, timeout=1800)
    r["simulation"] = {"ok": out.returncode == 0, "report": out.stdout.strip()}
    if out.returncode != 0:
        log(f"  the simulation's checks failed (exit {out.returncode})")


SECTIONS = [
    ("tmpfs", tmpfs_section),
    ("root-alone", root_alone_section),
    ("root-with-child", root_child_section),
    ("leaf", leaf_section),
    ("memory", memory_section),
    ("kernel-cache", kernel_cache_section),
    ("nbd", nbd_section),
    ("fanout", fanout_section),
    ("simulation", simulation_section),
]
ONCE = {"fanout", "simulation"}  # long, and judged against a baseline of their own run


def parse_size(s):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    s = s.strip().upper().rstrip("B").rstrip("I")
    return int(float(s[:-1]) * units[s[-1]]) if s[-1] in units else int(s)


def print_table(r, mib, rounds):
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
          f"kernel {os.uname().release}; each figure the median of {rounds} round(s)")
    for line in [head, ["-" * w for w in widths]] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip())


def print_fanout(f):
    if not f:
        return
    lone = f["lone"]
    lone_speed = FANOUT_MIB / lone["slowest"] if lone["slowest"] else None
    print()
    print(f"Fan-out: every leaf reads the same {FANOUT_MIB} MiB at once (dd bs=1M iflag=direct), real processes; "
          f"one lone leaf: {lone_speed or 0:,.0f} MiB/s")
    head = ["tree", "readers ok", "root sent / (direct children x image)", "total MiB/s", "slowest leaf MiB/s",
            "bar (lone / N)", ""]
    rows = []
    for t in f["trees"]:
        n = t["leaves"]
        per_child = t["served_mib"] / (t["children"] * FANOUT_MIB) if t["children"] else float("inf")
        slowest = FANOUT_MIB / t["slowest"] if t["slowest"] and not t["failed"] else 0
        bar = lone_speed / n if lone_speed else float("inf")
        ok = t["failed"] == 0 and per_child <= 1.0 and slowest >= bar
        rows.append([t["label"], f"{n - t['failed']}/{n}", f"{per_child:.2f} ({t['children']} children)",
                     f"{n * FANOUT_MIB / t['wall']:,.0f}", f"{slowest:,.1f}", f">= {bar:,.1f}",
                     "met" if ok else "NOT MET"])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for line in [head, ["-" * w for w in widths]] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip())


def print_simulation(sim):
    if not sim:
        return
    print()
    print("Simulation (sim_tree --fanout 10 --levels 4: the real engine in the in-process network): "
          + ("every check met" if sim["ok"] else "CHECKS FAILED"))
    for line in sim["report"].splitlines():
        print("  " + line)


if __name__ == "__main__":
    sys.exit(main())
