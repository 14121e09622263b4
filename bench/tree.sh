#!/usr/bin/env bash
# Tree benchmark: what a vshare child costs and saves, all on loopback.
#
#   Part 1  one root (--listen) and one leaf: fio on LEAF/vol.img, first cold
#           (every block fetched from the root over TCP), then warm (the same
#           leaf again, answering from the copies it now holds), next to
#           nbdkit+nbdfuse on the same image.
#   Part 2  a fresh root with 1, 4 and 16 leaves that all read the same
#           region at once: how much the root had to serve, in total and per
#           leaf; optionally once more with a `vshare serve` proxy between
#           the root and the leaves.
#
# It prints figures, not verdicts. See bench/README.md.
#
# Environment:
#   VSHARE         vshare binary (default: <repo>/build/vshare)
#   BENCH_SIZE     image size, whole MiB (default: 256M)
#   BENCH_RUNTIME  seconds per time-based fio job (default: 5)
#   BENCH_CACHE    root's --cache-size (default: 128M)
#   BENCH_READ     what each leaf reads in part 2, whole MiB (default: 64M)
#   BENCH_LEAVES   leaf counts for part 2 (default: "1 4 16")
#   BENCH_PROXY    1: add the proxy run in part 2, 0: skip it (default: 1)
#   BENCH_OUT      if set, a directory to copy fio JSON, stats and logs into
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

VSHARE=${VSHARE:-$REPO_ROOT/build/vshare}
BENCH_SIZE=${BENCH_SIZE:-256M}
BENCH_RUNTIME=${BENCH_RUNTIME:-5}
BENCH_CACHE=${BENCH_CACHE:-128M}
BENCH_READ=${BENCH_READ:-64M}
BENCH_LEAVES=${BENCH_LEAVES:-1 4 16}
BENCH_PROXY=${BENCH_PROXY:-1}
BENCH_OUT=${BENCH_OUT:-}

READY_TIMEOUT=10   # seconds for one node, nbdkit or nbdfuse to come up
STOP_TIMEOUT=10    # seconds for a process to leave after its unmount
IO_TIMEOUT=20      # --io-timeout of every node: no read waits forever
JOB_SLACK=120      # seconds a fio or dd run may exceed its expected length

BENCH_TAG=tree
# shellcheck source=bench/lib.sh
. "$SCRIPT_DIR/lib.sh"

# ---------------------------------------------------------------- checks ---

[[ $EUID -eq 0 ]] || die "must run as root (it mounts a tmpfs and FUSE file systems, and may apt-get install)"
[[ -x $VSHARE ]] || die "vshare binary not found or not executable: $VSHARE (build it with 'cmake --build build', or set VSHARE=/path/to/vshare)"
VSHARE=$(cd "$(dirname "$VSHARE")" && pwd)/$(basename "$VSHARE")
[[ $BENCH_RUNTIME =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNTIME must be a whole number of seconds, got '$BENCH_RUNTIME'"
[[ $BENCH_PROXY =~ ^[01]$ ]] || die "BENCH_PROXY must be 0 or 1, got '$BENCH_PROXY'"
for n in $BENCH_LEAVES; do
  if ! [[ $n =~ ^[1-9][0-9]*$ ]] || ((n > 64)); then die "BENCH_LEAVES must list whole numbers from 1 to 64, got '$BENCH_LEAVES'"; fi
done
[[ -n ${BENCH_LEAVES// /} ]] || die "BENCH_LEAVES is empty"
[[ -e /dev/fuse ]] || die "/dev/fuse is missing: FUSE is not available here"

# ------------------------------------------------------------- packages ---

ensure_packages

# to_mib VAR VALUE MIN: parse a size into whole MiB, at least MIN.
to_mib() {
  local bytes
  bytes=$(numfmt --from=iec "${2%B}" 2>/dev/null) || die "cannot parse $1='$2' (use e.g. 64M, 1G)"
  ((bytes % 1048576 == 0 && bytes >= $3 * 1048576)) || die "$1 must be a whole number of MiB, at least ${3}M"
  echo $((bytes / 1048576))
}
SIZE_MIB=$(to_mib BENCH_SIZE "$BENCH_SIZE" 16)
READ_MIB=$(to_mib BENCH_READ "$BENCH_READ" 1)
((READ_MIB <= SIZE_MIB)) || die "BENCH_READ ($BENCH_READ) is larger than BENCH_SIZE ($BENCH_SIZE)"
SIZE_BYTES=$((SIZE_MIB * 1048576))
TMPFS_MIB=$((SIZE_MIB + 64))
BLOCK=4096   # vshare create's default block size; one IO_REQUEST moves one

# -------------------------------------------------------------- cleanup ---

WORK=""
TMPFS_DIR="" NBD_MNT="" NBD_SOCK=""
NBDKIT_PID="" NBDFUSE_PID=""
# The tree nodes running now, in start order (root first). A `vshare serve`
# proxy has an empty mountpoint.
NODE_NAMES=() NODE_MNTS=() NODE_PIDS=()
# Background dd readers of part 2, so an interrupted run can stop them.
READER_PIDS=()

# stop_nodes: take the tree down leaves first, the root last. Mounted nodes
# get `vshare umount` (lazy unmount if that fails); a proxy gets TERM.
stop_nodes() {
  local i name mnt pid
  for ((i = ${#NODE_PIDS[@]} - 1; i >= 0; i--)); do
    name=${NODE_NAMES[i]} mnt=${NODE_MNTS[i]} pid=${NODE_PIDS[i]}
    if [[ -n $mnt ]]; then
      if is_mounted "$mnt"; then
        timeout 60 "$VSHARE" umount "$mnt" --timeout 30 >>"$LOGS/umount.log" 2>&1 \
          || { log "vshare umount of $name failed; lazy-unmounting"; umount -l "$mnt" 2>/dev/null || true; }
      fi
    else
      kill -TERM "$pid" 2>/dev/null || true
    fi
    stop_pid "$pid" "$name"
    if [[ -n $mnt ]] && is_mounted "$mnt"; then
      umount -l "$mnt" 2>/dev/null || true
    fi
  done
  NODE_NAMES=() NODE_MNTS=() NODE_PIDS=()
}

stop_readers() {
  local pid
  for pid in "${READER_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${READER_PIDS[@]}"; do
    stop_pid "$pid" dd
  done
  READER_PIDS=()
}

cleanup() {
  local rc=$? left
  trap - EXIT INT TERM
  set +e
  stop_readers
  stop_nodes
  unmount_nbdfuse
  if is_mounted "$TMPFS_DIR"; then
    umount "$TMPFS_DIR" 2>/dev/null || umount -l "$TMPFS_DIR" 2>/dev/null
  fi
  if [[ -n $WORK && -d $WORK ]]; then
    left=$(findmnt -rn -o TARGET | grep -F "$WORK/" || true)
    if [[ -n $left ]]; then
      log "still mounted under $WORK, leaving it in place: ${left//$'\n'/ }"
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

WORK=$(mktemp -d /tmp/vshare-tree-bench.XXXXXX)
TMPFS_DIR=$WORK/tmpfs
NBD_MNT=$WORK/nbdfuse
NBD_SOCK=$WORK/nbdkit.sock
RESULTS=$WORK/results
LOGS=$WORK/logs
mkdir -p "$TMPFS_DIR" "$NBD_MNT" "$RESULTS" "$LOGS" "$WORK/mnt"

mount -t tmpfs -o "size=${TMPFS_MIB}m,mode=0700" vshare-tree-bench "$TMPFS_DIR" \
  || die "cannot mount a tmpfs on $TMPFS_DIR"
IMAGE=$TMPFS_DIR/disk.img

log "creating a ${SIZE_MIB} MiB image on tmpfs and filling it from /dev/urandom"
"$VSHARE" create "$IMAGE" --size "${SIZE_MIB}M" >"$LOGS/create.log" 2>&1 \
  || die "vshare create failed: $(cat "$LOGS/create.log")"
dd if=/dev/urandom of="$IMAGE" bs=1M count="$SIZE_MIB" conv=notrunc,fsync status=none

# stat_get MOUNTPOINT FIELD.PATH: one value from the node's stats JSON.
stat_get() {
  python3 - "$1/.vshare/stats" "$2" <<'PY'
import json, sys
value = json.load(open(sys.argv[1]))
for key in sys.argv[2].split("."):
    value = value[key]
print(value)
PY
}

# ------------------------------------------------------------ tree nodes ---

# launch_node NAME ARGS...: start `vshare mount $WORK/mnt/NAME ARGS...` in
# the foreground as a background job, remember it; does not wait.
launch_node() {
  local name=$1 mnt=$WORK/mnt/$1
  shift
  mkdir -p "$mnt"
  "$VSHARE" mount "$mnt" "$@" --io-timeout "$IO_TIMEOUT" \
    -f --log-file "$LOGS/$name.log" >"$LOGS/$name.out" 2>&1 &
  NODE_NAMES+=("$name") NODE_MNTS+=("$mnt") NODE_PIDS+=("$!")
}

# node_ready NAME: wait until the node last launched as NAME has mounted.
node_ready() {
  local i
  for ((i = ${#NODE_NAMES[@]} - 1; i >= 0; i--)); do
    if [[ ${NODE_NAMES[i]} == "$1" ]]; then
      wait_until "$READY_TIMEOUT" "${NODE_PIDS[i]}" "$1" test -e "${NODE_MNTS[i]}/.vshare/stats"
      return
    fi
  done
  return 1
}

# start_root NAME: a root exporting the image, listening on a loopback port
# the system picks; sets ROOT_MNT and ROOT_PORT.
start_root() {
  launch_node "$1" --export "vol=$IMAGE" --listen 127.0.0.1:0 --cache-size "$BENCH_CACHE"
  node_ready "$1" || return 1
  ROOT_MNT=$WORK/mnt/$1
  ROOT_PORT=$(stat_get "$ROOT_MNT" tree.listen_port)
  [[ $ROOT_PORT =~ ^[1-9][0-9]*$ ]] || { log "root reports no listen port ('$ROOT_PORT')"; return 1; }
}

# start_leaves PREFIX COUNT PORT: COUNT leaves below 127.0.0.1:PORT, started
# together, then waited for one by one; leaf k is mounted on
# $WORK/mnt/PREFIX-k.
start_leaves() {
  local prefix=$1 count=$2 port=$3 k
  for ((k = 1; k <= count; k++)); do
    launch_node "$prefix-$k" --parent "127.0.0.1:$port" --volume vol
  done
  for ((k = 1; k <= count; k++)); do
    node_ready "$prefix-$k" || return 1
  done
}

# start_proxy NAME PORT: `vshare serve` below 127.0.0.1:PORT; sets PROXY_PORT.
start_proxy() {
  local name=$1 port_file=$WORK/$1.port
  rm -f "$port_file"
  "$VSHARE" serve --parent "127.0.0.1:$2" --volume vol --listen 127.0.0.1:0 \
    --io-timeout "$IO_TIMEOUT" -f --port-file "$port_file" \
    --log-file "$LOGS/$name.log" >"$LOGS/$name.out" 2>&1 &
  NODE_NAMES+=("$name") NODE_MNTS+=("") NODE_PIDS+=("$!")
  wait_until "$READY_TIMEOUT" "$!" "$name" test -s "$port_file" || return 1
  PROXY_PORT=$(tr -d '[:space:]' <"$port_file")
  [[ $PROXY_PORT =~ ^[1-9][0-9]*$ ]] || { log "$name wrote a bad port ('$PROXY_PORT')"; return 1; }
}

FAILURES=()

# ------------------------------------------------------------ part 1: fio ---

# run_fio TAG JOB PASS FILE: PASS is "once" (one pass over the whole image,
# no time limit: each block is read exactly once, fio's random map makes
# sure of that for randread) or "timed" (BENCH_RUNTIME seconds, wrapping
# around). JSON goes to $RESULTS/TAG-JOB.json.
run_fio() {
  local tag=$1 job=$2 pass=$3 file=$4 args limit
  args=(--name="$job" --filename="$file" --size="$SIZE_BYTES"
        --ioengine=libaio --direct=1 --fallocate=none --group_reporting
        --output-format=json --output="$RESULTS/$tag-$job.json")
  case $job in
    randread) args+=(--rw=randread --bs=4k --iodepth=16) ;;
    seqread) args+=(--rw=read --bs=1M --iodepth=4) ;;
  esac
  if [[ $pass == timed ]]; then
    args+=(--time_based --runtime="$BENCH_RUNTIME")
    limit=$((BENCH_RUNTIME + JOB_SLACK))
    log "  $tag: $job, ${BENCH_RUNTIME} s"
  else
    limit=$JOB_SLACK
    log "  $tag: $job, one pass over ${SIZE_MIB} MiB"
  fi
  if ! timeout "$limit" fio "${args[@]}" >"$LOGS/fio-$tag-$job.log" 2>&1; then
    log "  fio failed or timed out for $tag/$job: $(tail -n 3 "$LOGS/fio-$tag-$job.log" | tr '\n' ' ')"
    rm -f "$RESULTS/$tag-$job.json"
    FAILURES+=("$tag/$job")
  fi
}

# leaf_job LEAF TAG JOB PASS: run_fio on a leaf's image, and record how many
# IO_REQUESTs the root received meanwhile (TAG-JOB.rootreq).
leaf_job() {
  local leaf=$1 tag=$2 job=$3 pass=$4 before after
  before=$(stat_get "$ROOT_MNT" tree.requests_served)
  run_fio "$tag" "$job" "$pass" "$leaf/vol.img"
  after=$(stat_get "$ROOT_MNT" tree.requests_served)
  echo $((after - before)) >"$RESULTS/$tag-$job.rootreq"
}

log "part 1: root + one leaf on loopback, cold then warm; then nbdkit+nbdfuse"
if start_root p1-root; then
  # A fresh leaf per job, so that its first pass really is cold. The root's
  # cache is emptied before each cold pass too, so the root reads from its
  # image rather than from what the previous leaf pulled in.
  for job in randread seqread; do
    echo '{"cmd":"drop-cache"}' >"$ROOT_MNT/.vshare/control" \
      || log "  drop-cache on the root failed"
    if start_leaves "p1-$job" 1 "$ROOT_PORT"; then
      leaf=$WORK/mnt/p1-$job-1
      leaf_job "$leaf" cold "$job" once
      leaf_job "$leaf" warm "$job" timed
      cp "$leaf/.vshare/stats" "$RESULTS/leaf-stats-$job.json" 2>/dev/null || true
    else
      FAILURES+=("leaf/$job")
    fi
  done
  cp "$ROOT_MNT/.vshare/stats" "$RESULTS/p1-root-stats.json" 2>/dev/null || true
else
  FAILURES+=("p1-root")
fi
stop_nodes

log "  nbdkit on $NBD_SOCK, nbdfuse on $NBD_MNT"
if mount_nbdfuse; then
  run_fio nbdfuse randread timed "$NBD_MNT/nbd"
  run_fio nbdfuse seqread timed "$NBD_MNT/nbd"
fi
unmount_nbdfuse

# ------------------------------------------------------ part 2: fan-out ---

# fanout LABEL N VIA: a fresh root, optionally a proxy (VIA=proxy), N leaves;
# every leaf reads the first READ_MIB MiB at the same time. One line goes to
# $RESULTS/fanout.tsv.
fanout() {
  local label=$1 count=$2 via=$3 port k pid failed=0 start end children served
  if [[ $via == proxy ]]; then
    log "  $label: $count leaves behind one proxy"
  else
    log "  $label: $count leaves"
  fi
  if ! start_root "$label-root"; then
    FAILURES+=("$label/root"); stop_nodes; return
  fi
  port=$ROOT_PORT
  if [[ $via == proxy ]]; then
    if ! start_proxy "$label-proxy" "$ROOT_PORT"; then
      FAILURES+=("$label/proxy"); stop_nodes; return
    fi
    port=$PROXY_PORT
  fi
  if ! start_leaves "$label-leaf" "$count" "$port"; then
    FAILURES+=("$label/leaves"); stop_nodes; return
  fi
  children=$(stat_get "$ROOT_MNT" tree.children)
  start=$(date +%s.%N)
  for ((k = 1; k <= count; k++)); do
    timeout "$JOB_SLACK" dd if="$WORK/mnt/$label-leaf-$k/vol.img" of=/dev/null \
      bs=1M count="$READ_MIB" iflag=direct status=none 2>>"$LOGS/$label-dd.log" &
    READER_PIDS+=("$!")
  done
  for pid in "${READER_PIDS[@]}"; do
    wait "$pid" || failed=$((failed + 1))
  done
  READER_PIDS=()
  end=$(date +%s.%N)
  served=$(stat_get "$ROOT_MNT" tree.requests_served)
  ((failed == 0)) || { log "  $failed of $count readers failed (see $label-dd.log)"; FAILURES+=("$label/dd"); }
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$count" "$via" "$children" "$served" \
    "$(python3 -c "print(f'{$end - $start:.3f}')")" "$failed" "$label" >>"$RESULTS/fanout.tsv"
  stop_nodes
}

log "part 2: one root, every leaf reads the same ${READ_MIB} MiB at once"
: >"$RESULTS/fanout.tsv"
max_leaves=0
for n in $BENCH_LEAVES; do
  fanout "p2-n$n" "$n" direct
  if ((n > max_leaves)); then max_leaves=$n; fi
done
if [[ $BENCH_PROXY == 1 ]]; then
  fanout "p2-proxy-n$max_leaves" "$max_leaves" proxy
fi

# --------------------------------------------------------------- report ---

if [[ -n $BENCH_OUT ]]; then
  mkdir -p "$BENCH_OUT"
  cp -r "$RESULTS" "$LOGS" "$BENCH_OUT"/
  log "raw results copied to $BENCH_OUT"
fi

echo
echo "vshare tree bench: image ${SIZE_MIB} MiB on tmpfs, root cache ${BENCH_CACHE}," \
  "${BENCH_RUNTIME} s per timed job, $(nproc) CPUs, kernel $(uname -r), all on 127.0.0.1"
echo
python3 - "$RESULTS" "$SIZE_MIB" "$READ_MIB" "$BLOCK" <<'PY'
import json, os, sys

results, size_mib, read_mib, block = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
MiB = 1048576

def table(header, body):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    line = lambda cells: "  ".join(
        (c.ljust(w) if i == 0 else c.rjust(w)) for i, (c, w) in enumerate(zip(cells, widths)))
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for b in body:
        print(line(b))

def load(tag, job):
    try:
        with open(os.path.join(results, f"{tag}-{job}.json")) as f:
            j = json.load(f)["jobs"][0]
    except (OSError, ValueError, KeyError, IndexError):
        return None
    r = j["read"]
    return {"iops": r["iops"], "mibs": r["bw_bytes"] / MiB, "lat_us": r["lat_ns"]["mean"] / 1000.0,
            "bytes": r["io_bytes"], "secs": j["job_runtime"] / 1000.0}

def rootreq(tag, job):
    try:
        with open(os.path.join(results, f"{tag}-{job}.rootreq")) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None

jobs = [("randread", "4k randread QD16", "IOPS"), ("seqread", "1M seqread QD4", "MiB/s")]
cols = [("cold", "leaf cold"), ("warm", "leaf warm"), ("nbdfuse", "nbdkit+nbdfuse")]

def fig(r, unit):
    return None if r is None else (r["iops"] if unit == "IOPS" else r["mibs"])

def fmt(v, unit):
    return "n/a" if v is None else (f"{v:,.0f}" if unit == "IOPS" else f"{v:,.1f}")

def ratio(a, b):
    return "n/a" if a is None or not b else f"{a / b:.2f}x"

rows, lat, passes = [], [], []
for job, label, unit in jobs:
    r = {t: load(t, job) for t, _ in cols}
    v = {t: fig(r[t], unit) for t, _ in cols}
    rows.append([label, unit] + [fmt(v[t], unit) for t, _ in cols]
                + [ratio(v["warm"], v["cold"]), ratio(v["cold"], v["nbdfuse"]),
                   ratio(v["warm"], v["nbdfuse"])])
    lat.append([label, "us"] + ["n/a" if r[t] is None else f"{r[t]['lat_us']:,.1f}" for t, _ in cols])
    for t in ("cold", "warm"):
        q = rootreq(t, job)
        if r[t] is None or q is None:
            passes.append([label, t, "n/a", "n/a", "n/a", "n/a"])
            continue
        read = r[t]["bytes"] / MiB
        passes.append([label, t, f"{read:,.0f}", f"{r[t]['secs']:.1f}", f"{q:,}",
                       f"{q * block / MiB:,.1f}"])

print(f"Part 1: one leaf below a root over loopback, {size_mib} MiB image")
print("Throughput (higher is better)")
table(["job", "unit"] + [c[1] for c in cols] + ["warm/cold", "cold/nbdfuse", "warm/nbdfuse"], rows)
print()
print("Mean completion latency (lower is better)")
table(["job", "unit"] + [c[1] for c in cols], lat)
print()
print("What each leaf pass pulled from the root (cold should be the whole image")
print("once, warm should be 0)")
table(["job", "pass", "leaf read MiB", "seconds", "root IO_REQUESTs", "root served MiB"], passes)

print()
rows = []
try:
    with open(os.path.join(results, "fanout.tsv")) as f:
        lines = [l.rstrip("\n").split("\t") for l in f if l.strip()]
except OSError:
    lines = []
for count, via, children, served, secs, failed, _ in lines:
    n, served, secs = int(count), int(served), float(secs)
    root_mib = served * block / MiB
    per_leaf = root_mib / n
    rows.append([count, "1 proxy" if via == "proxy" else "none", children, f"{served:,}",
                 f"{root_mib:,.1f}", f"{per_leaf:,.1f}", f"{per_leaf / read_mib:.2f}",
                 f"{root_mib / read_mib:.2f}", f"{secs:.2f}", f"{n * read_mib / secs:,.0f}",
                 failed])
print(f"Part 2: N leaves each read the same {read_mib} MiB at once (dd bs=1M iflag=direct)")
table(["leaves", "proxy", "root children", "root IO_REQUESTs", "root served MiB",
       "per leaf MiB", "per leaf / read", "total / read", "wall s", "leaves MiB/s",
       "failed readers"], rows)
PY

# Warnings and errors from every node, digits folded so that the same
# message from different leaves and ports is counted once.
if compgen -G "$LOGS/*.log" >/dev/null && grep -qiE 'error|warn' "$LOGS"/p[12]-*.log 2>/dev/null; then
  echo
  echo "node log warnings/errors (all nodes, counted):"
  grep -hiE 'error|warn' "$LOGS"/p[12]-*.log | sed -E 's/^[^ ]+ vshare\[[0-9]+\] //; s/[0-9]+/#/g' \
    | sort | uniq -c | sort -rn | head -n 12 | sed 's/^/  /'
fi

if ((${#FAILURES[@]})); then
  echo
  log "some measurements failed: ${FAILURES[*]} (set BENCH_OUT to keep the logs)"
  exit 1
fi
