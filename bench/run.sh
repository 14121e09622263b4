#!/usr/bin/env bash
# Throughput benchmark: vshare against the raw tmpfs file (the ceiling) and
# against nbdkit+nbdfuse (another FUSE-exposed image). See bench/README.md.
#
# Environment:
#   VSHARE         vshare binary (default: <repo>/build/vshare)
#   BENCH_SIZE     image size, whole MiB (default: 256M)
#   BENCH_RUNTIME  seconds per fio job (default: 10)
#   BENCH_CACHE    vshare --cache-size (default: 128M)
#   BENCH_OUT      if set, a directory to copy fio JSON, logs and stats into
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

VSHARE=${VSHARE:-$REPO_ROOT/build/vshare}
BENCH_SIZE=${BENCH_SIZE:-256M}
BENCH_RUNTIME=${BENCH_RUNTIME:-10}
BENCH_CACHE=${BENCH_CACHE:-128M}
BENCH_OUT=${BENCH_OUT:-}

READY_TIMEOUT=10   # seconds to wait for a mount or a server to come up
STOP_TIMEOUT=10    # seconds to wait for a process to leave after unmount

JOBS=(randread seqread seqwrite)

BENCH_TAG=bench
# shellcheck source=bench/lib.sh
. "$SCRIPT_DIR/lib.sh"

# ---------------------------------------------------------------- checks ---

[[ $EUID -eq 0 ]] || die "must run as root (it mounts a tmpfs and FUSE file systems, and may apt-get install)"
[[ -x $VSHARE ]] || die "vshare binary not found or not executable: $VSHARE (build it with 'cmake --build build', or set VSHARE=/path/to/vshare)"
VSHARE=$(cd "$(dirname "$VSHARE")" && pwd)/$(basename "$VSHARE")
[[ $BENCH_RUNTIME =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNTIME must be a whole number of seconds, got '$BENCH_RUNTIME'"
[[ -e /dev/fuse ]] || die "/dev/fuse is missing: FUSE is not available here"

# ------------------------------------------------------------- packages ---

ensure_packages

SIZE_BYTES=$(numfmt --from=iec "${BENCH_SIZE%B}" 2>/dev/null) || die "cannot parse BENCH_SIZE='$BENCH_SIZE' (use e.g. 256M, 1G)"
((SIZE_BYTES % 1048576 == 0 && SIZE_BYTES >= 16 * 1048576)) || die "BENCH_SIZE must be a whole number of MiB, at least 16M"
SIZE_MIB=$((SIZE_BYTES / 1048576))
TMPFS_MIB=$((SIZE_MIB + 64))

# -------------------------------------------------------------- cleanup ---

WORK=""
TMPFS_DIR="" VS_MNT="" NBD_MNT="" NBD_SOCK=""
VSHARE_PID="" NBDKIT_PID="" NBDFUSE_PID=""

unmount_vshare() {
  if is_mounted "$VS_MNT"; then
    timeout 90 "$VSHARE" umount "$VS_MNT" --timeout 60 >>"$LOGS/vshare-umount.log" 2>&1 \
      || { log "vshare umount failed; lazy-unmounting $VS_MNT"; umount -l "$VS_MNT" 2>/dev/null || true; }
  fi
  stop_pid "$VSHARE_PID" vshare
  VSHARE_PID=""
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  unmount_vshare
  unmount_nbdfuse
  if is_mounted "$TMPFS_DIR"; then
    umount "$TMPFS_DIR" 2>/dev/null || umount -l "$TMPFS_DIR" 2>/dev/null
  fi
  if [[ -n $WORK && -d $WORK ]]; then
    if is_mounted "$VS_MNT" || is_mounted "$NBD_MNT" || is_mounted "$TMPFS_DIR"; then
      log "something is still mounted under $WORK; leaving it in place"
    else
      rm -rf -- "$WORK"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- setup ---

WORK=$(mktemp -d /tmp/vshare-bench.XXXXXX)
TMPFS_DIR=$WORK/tmpfs
VS_MNT=$WORK/vshare
NBD_MNT=$WORK/nbdfuse
NBD_SOCK=$WORK/nbdkit.sock
RESULTS=$WORK/results
LOGS=$WORK/logs
mkdir -p "$TMPFS_DIR" "$VS_MNT" "$NBD_MNT" "$RESULTS" "$LOGS"

mount -t tmpfs -o "size=${TMPFS_MIB}m,mode=0700" vshare-bench "$TMPFS_DIR" \
  || die "cannot mount a tmpfs on $TMPFS_DIR"
IMAGE=$TMPFS_DIR/disk.img

log "creating a ${SIZE_MIB} MiB image on tmpfs and filling it from /dev/urandom"
"$VSHARE" create "$IMAGE" --size "${SIZE_MIB}M" >"$LOGS/create.log" 2>&1 \
  || die "vshare create failed: $(cat "$LOGS/create.log")"
dd if=/dev/urandom of="$IMAGE" bs=1M count="$SIZE_MIB" conv=notrunc,fsync status=none

# -------------------------------------------------------------- fio jobs ---

# run_fio TARGET JOB FILE: one time-based fio job, JSON to $RESULTS.
run_fio() {
  local target=$1 job=$2 file=$3 args
  args=(--name="$job" --filename="$file" --size="$SIZE_BYTES"
        --ioengine=libaio --direct=1 --time_based --runtime="$BENCH_RUNTIME"
        --fallocate=none --group_reporting
        --output-format=json --output="$RESULTS/$target-$job.json")
  case $job in
    randread) args+=(--rw=randread --bs=4k --iodepth=16) ;;
    seqread) args+=(--rw=read --bs=1M --iodepth=4) ;;
    seqwrite) args+=(--rw=write --bs=1M --iodepth=4) ;;
  esac
  log "  $target: $job (${BENCH_RUNTIME} s)"
  if ! fio "${args[@]}" >"$LOGS/fio-$target-$job.log" 2>&1; then
    log "  fio failed for $target/$job: $(tail -n 3 "$LOGS/fio-$target-$job.log" | tr '\n' ' ')"
    rm -f "$RESULTS/$target-$job.json"
    FAILURES+=("$target/$job")
  fi
}

run_all_jobs() {
  local target=$1 file=$2 job
  for job in "${JOBS[@]}"; do
    if [[ $target == vshare ]]; then
      # per-job counters: zero them before, save them after
      "$VSHARE" ctl "$VS_MNT" reset-stats >>"$LOGS/vshare-ctl.log" 2>&1 \
        || log "  vshare ctl reset-stats failed (see vshare-ctl.log)"
    fi
    run_fio "$target" "$job" "$file"
    if [[ $target == vshare ]]; then
      "$VSHARE" stats "$VS_MNT" --json >"$RESULTS/vshare-stats-$job.json" 2>>"$LOGS/vshare-ctl.log" \
        || log "  vshare stats failed after $job (see vshare-ctl.log)"
    fi
  done
}

FAILURES=()

# a. the raw file on tmpfs, no FUSE in the way.
log "target tmpfs: $IMAGE"
run_all_jobs tmpfs "$IMAGE"

# b. vshare serving the same file.
log "target vshare: mounting $VS_MNT"
"$VSHARE" mount "$VS_MNT" --export "vol=$IMAGE" --cache-size "$BENCH_CACHE" \
  -f --log-file "$LOGS/vshare.log" >"$LOGS/vshare.out" 2>&1 &
VSHARE_PID=$!
if wait_until "$READY_TIMEOUT" "$VSHARE_PID" vshare test -e "$VS_MNT/.vshare/stats"; then
  run_all_jobs vshare "$VS_MNT/vol.img"
  start=$(date +%s.%N)
  unmount_vshare
  end=$(date +%s.%N)
  UMOUNT_SECONDS=$(python3 -c "print(f'{$end - $start:.2f}')")
else
  FAILURES+=("vshare/mount")
  unmount_vshare
fi

# c. nbdkit's file plugin on a unix socket, exposed by nbdfuse.
log "target nbdfuse: nbdkit on $NBD_SOCK, nbdfuse on $NBD_MNT"
if mount_nbdfuse; then
  run_all_jobs nbdfuse "$NBD_MNT/nbd"
fi
unmount_nbdfuse

# --------------------------------------------------------------- report ---

if [[ -n $BENCH_OUT ]]; then
  mkdir -p "$BENCH_OUT"
  cp -r "$RESULTS" "$LOGS" "$BENCH_OUT"/
  log "raw results copied to $BENCH_OUT"
fi

echo
echo "vshare bench: image ${SIZE_MIB} MiB on tmpfs, ${BENCH_RUNTIME} s per job," \
  "vshare cache ${BENCH_CACHE}, $(nproc) CPUs, kernel $(uname -r)"
echo
python3 - "$RESULTS" "${UMOUNT_SECONDS:-}" <<'PY'
import json, os, sys

results, umount_s = sys.argv[1], sys.argv[2]
targets = [("tmpfs", "tmpfs (no FUSE)"), ("vshare", "vshare"),
           ("nbdfuse", "nbdkit+nbdfuse")]
jobs = [("randread", "4k randread QD16", "IOPS"),
        ("seqread", "1M seqread QD4", "MiB/s"),
        ("seqwrite", "1M seqwrite QD4", "MiB/s")]

def load(target, job):
    path = os.path.join(results, f"{target}-{job}.json")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    j = data["jobs"][0]
    side = j["write"] if job == "seqwrite" else j["read"]
    return {"iops": side["iops"], "mibs": side["bw_bytes"] / 1048576,
            "lat_us": side["lat_ns"]["mean"] / 1000.0, "err": j.get("error", 0)}

def figure(r, unit):
    if r is None:
        return None
    return r["iops"] if unit == "IOPS" else r["mibs"]

def fmt(v, unit):
    if v is None:
        return "n/a"
    return f"{v:,.0f}" if unit == "IOPS" else f"{v:,.1f}"

def ratio(a, b):
    return "n/a" if a is None or not b else f"{a / b:.2f}x"

hdr = ["job", "unit"] + [t[1] for t in targets] + ["vshare/tmpfs", "vshare/nbdfuse"]
rows, lat_rows = [], []
for job, label, unit in jobs:
    r = {t: load(t, job) for t, _ in targets}
    v = {t: figure(r[t], unit) for t, _ in targets}
    rows.append([label, unit] + [fmt(v[t], unit) for t, _ in targets]
                + [ratio(v["vshare"], v["tmpfs"]), ratio(v["vshare"], v["nbdfuse"])])
    lat_rows.append([label, "us"] + [("n/a" if r[t] is None else f"{r[t]['lat_us']:,.1f}")
                                     for t, _ in targets])

def table(header, body):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    line = lambda cells: "  ".join(
        (c.ljust(w) if i == 0 else c.rjust(w)) for i, (c, w) in enumerate(zip(cells, widths)))
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for b in body:
        print(line(b))

print("Throughput (higher is better)")
table(hdr, rows)
print()
print("Mean completion latency (lower is better)")
table(["job", "unit"] + [t[1] for t in targets], lat_rows)

print()
print("vshare counters per job (reset before each job)")
crow = []
last = None
for job, label, _ in jobs:
    try:
        with open(os.path.join(results, f"vshare-stats-{job}.json")) as f:
            st = json.load(f)
    except (OSError, ValueError):
        crow.append([label] + ["n/a"] * 7)
        continue
    last = st
    for name, vol in st.get("volumes", {}).items():
        c = vol.get("cache", {})
        hits, misses = c.get("hits", 0), c.get("misses", 0)
        pct = f"{100.0 * hits / (hits + misses):.1f}%" if hits + misses else "n/a"
        crow.append([label, f"{hits:,}", f"{misses:,}", pct, f"{c.get('evictions', 0):,}",
                     f"{vol.get('store_reads', 0):,}", f"{vol.get('store_writes', 0):,}",
                     f"{vol.get('errors', 0)}"])
table(["job", "cache hits", "misses", "hit rate", "evictions", "store reads",
       "store writes", "errors"], crow)
if last is not None:
    dirty = sum(v.get("dirty_blocks", 0) for v in last.get("volumes", {}).values())
    print(f"dirty blocks after the last job: {dirty:,}")
    if last.get("last_error"):
        print(f"vshare last_error: {last['last_error']}")
if umount_s:
    print(f"vshare umount (final write-back) took {umount_s} s")
PY

if [[ -s $LOGS/vshare.log ]] && grep -qiE 'error|warn' "$LOGS/vshare.log"; then
  echo
  echo "vshare log warnings/errors:"
  # drop the timestamp/pid prefix so repeated messages collapse
  grep -iE 'error|warn' "$LOGS/vshare.log" | sed -E 's/^[^ ]+ vshare\[[0-9]+\] //' \
    | sort | uniq -c | sort -rn | head -n 10 | sed 's/^/  /'
fi

if ((${#FAILURES[@]})); then
  echo
  log "some measurements failed: ${FAILURES[*]} (logs were in $LOGS; set BENCH_OUT to keep them)"
  exit 1
fi
