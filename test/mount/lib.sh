# Shared harness for vshare's mount-level tests. Source it, then call
# `begin NAME`; every node, FUSE mount and loop mount made through these
# helpers is undone by the EXIT trap, whatever path the test takes.
#
#   start_node MP ARGS...   vshare mount MP ARGS... in the foreground, in the
#                           background; waits (bounded) until it serves
#   stop_node MP            vshare umount MP, then wait for the process
#   loop_mount IMG DIR      mount -o loop, remembered for cleanup
#   hold_open FILE          opens FILE read-write in a helper process that
#                           keeps it open (HELD_PID) until let_go HELD_PID
#   make_netns NAME         a network namespace joined to ours by a veth
#                           pair (NETNS_HOST_IP here, NETNS_PEER_IP there),
#                           deleted on exit; NODE_NETNS=NAME start_node ...
#                           runs that node in it (its mount stays visible)
#   check DESC CMD...       runs CMD; counts a pass or a failure
#   finish                  prints "N passed, N failed"; exit status 0 iff none failed
set -u

: "${VSHARE:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build/vshare}"
[ -x "$VSHARE" ] || { echo "vshare binary not found at $VSHARE (set VSHARE)"; exit 1; }

PASSED=0
FAILED=0
declare -A NODE_PID=()   # mountpoint -> pid
LOOP_MOUNTS=()
HELPER_PIDS=()           # other processes of ours: hold_open's holders
NETNS_MADE=()            # network namespaces we created
NETNS_HOST_IP=""
NETNS_PEER_IP=""
WORK=""
WATCHDOG=""

begin() {
  TEST_NAME=$1
  [ "$(id -u)" = 0 ] || { echo "$TEST_NAME: must run as root (FUSE and loop mounts)"; exit 1; }
  [ -c /dev/fuse ] || { echo "$TEST_NAME: /dev/fuse is missing"; exit 1; }
  WORK=$(mktemp -d "/tmp/vshare-$TEST_NAME.XXXXXX")
  chmod 755 "$WORK"
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  # ctest kills a test that overruns with SIGKILL, which no trap sees. Stop
  # first, with SIGTERM to this shell and its children, so cleanup runs.
  local limit=${TEST_TIMEOUT:-240} me=$$
  # (Only a sleep that ran its course fires it: cleanup kills the sleep.)
  (
    sleep "$limit" && {
      echo "$TEST_NAME: timed out after ${limit}s, cleaning up" >&2
      kill -TERM "$me"
      for p in $(pgrep -P "$me"); do [ "$p" != "$BASHPID" ] && kill -TERM "$p"; done
    }
  ) &
  WATCHDOG=$!
  echo "== $TEST_NAME (work dir $WORK)"
}

# True when something is mounted on $1. Reads /proc/mounts rather than
# asking `mountpoint`, which cannot stat a dead FUSE mount (ENOTCONN) and
# then says "not a mountpoint".
is_mounted() {
  awk -v p="$1" '$2 == p {found = 1} END {exit !found}' /proc/mounts
}

cleanup() {
  local rc=$? mp pid i
  if [ -n "$WATCHDOG" ]; then
    # The sleep first (the watchdog then skips its timeout branch), else it
    # would outlive us holding ctest's output pipe open.
    pkill -P "$WATCHDOG" 2>/dev/null
    kill "$WATCHDOG" 2>/dev/null
  fi
  for pid in "${HELPER_PIDS[@]}"; do kill_pid "$pid"; done
  for ((i = ${#LOOP_MOUNTS[@]} - 1; i >= 0; i--)); do
    mp=${LOOP_MOUNTS[$i]}
    if is_mounted "$mp"; then umount "$mp" 2>/dev/null || umount -l "$mp"; fi
  done
  # Loop devices still attached to files under our mounts or work dir.
  losetup -a 2>/dev/null | grep -F "$WORK" | cut -d: -f1 | while read -r dev; do losetup -d "$dev"; done
  for mp in "${!NODE_PID[@]}"; do
    if is_mounted "$mp"; then umount "$mp" 2>/dev/null || umount -l "$mp"; fi
    pid=${NODE_PID[$mp]}
    kill_pid "$pid"
  done
  for ns in "${NETNS_MADE[@]}"; do ip netns del "$ns" 2>/dev/null; done  # takes its veth pair along
  # Any other mount left under the work dir (a node that died, say).
  if [ -n "$WORK" ]; then
    awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do umount -l "$m"; done
  fi
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ "$rc" != 0 ] || [ "$FAILED" != 0 ]; then
      for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "--- $f (last 20 lines)"; tail -n 20 "$f"; }; done
      [ -n "${KEEP_LOGS:-}" ] && cp "$WORK"/*.log "$KEEP_LOGS"/ 2>/dev/null
    fi
    rm -rf "$WORK"
  fi
  exit "$rc"
}

# Ends a process we started: TERM, then KILL after 10 s.
kill_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || true
}

# Waits up to $2 seconds (default 10) for command $1 to succeed. The limit
# is wall time, however long the command itself takes to run.
wait_for() {
  local cond=$1 limit=${2:-10}
  local until=$((SECONDS + limit))
  while :; do
    eval "$cond" && return 0
    [ "$SECONDS" -ge "$until" ] && return 1
    sleep 0.1
  done
}

start_node() {
  local mp=$1
  shift
  mkdir -p "$mp"
  local log="$WORK/node-$(basename "$mp").log"
  if [ -n "${NODE_NETNS:-}" ]; then
    # Only the network namespace changes: the FUSE mount stays in ours.
    nsenter --net="/var/run/netns/$NODE_NETNS" "$VSHARE" mount "$mp" "$@" -f --log-file "$log" &
  else
    "$VSHARE" mount "$mp" "$@" -f --log-file "$log" &
  fi
  local pid=$!
  NODE_PID[$mp]=$pid
  if ! wait_for "[ -f '$mp/.vshare/stats' ]" 10; then
    echo "node on $mp did not come up; log:"
    cat "$log"
    return 1
  fi
}

# Every thread's stack of a process that should have exited: with gdb when
# it is installed, else what /proc tells (each thread's name and wait channel).
dump_threads() {
  local pid=$1 t
  if command -v gdb >/dev/null 2>&1; then
    timeout 30 gdb -batch -p "$pid" -ex "thread apply all bt" 2>/dev/null | grep -E '^(Thread|#)' | head -300
  else
    for t in /proc/"$pid"/task/*; do
      echo "  thread ${t##*/} $(cat "$t/comm" 2>/dev/null): $(cat "$t/wchan" 2>/dev/null)"
    done
  fi
}

# Unmounts through vshare umount (which writes back first) and waits for the
# node's process to exit. Fails if either vshare umount or the node itself
# exits non-zero (a sanitizer report in the node ends it non-zero).
stop_node() {
  local mp=$1 rc node_rc=0
  "$VSHARE" umount "$mp"
  rc=$?
  local pid=${NODE_PID[$mp]:-}
  if [ -n "$pid" ]; then
    if ! wait_for "! kill -0 $pid 2>/dev/null" 30; then
      echo "node $pid did not exit; where its threads are:"
      dump_threads "$pid"
      kill -KILL "$pid" 2>/dev/null  # so that the wait below ends, and the test fails here
    fi
    wait "$pid" 2>/dev/null
    node_rc=$?
    unset "NODE_PID[$mp]"
    [ "$node_rc" = 0 ] || echo "node $pid exited with status $node_rc"
  fi
  [ "$rc" = 0 ] && [ "$node_rc" = 0 ]
}

loop_mount() {
  mkdir -p "$2"
  mount -o loop "$1" "$2" || return 1
  LOOP_MOUNTS+=("$2")
}

make_netns() {
  local ns=$1 n=$(( ($$ % 200) + 20 ))
  ip netns add "$ns" || return 1
  NETNS_MADE+=("$ns")
  NETNS_HOST_IP=10.$n.0.1
  NETNS_PEER_IP=10.$n.0.2
  ip link add "vh$n" type veth peer name "vp$n" &&
    ip link set "vp$n" netns "$ns" &&
    ip addr add "$NETNS_HOST_IP/24" dev "vh$n" && ip link set "vh$n" up &&
    ip -n "$ns" addr add "$NETNS_PEER_IP/24" dev "vp$n" && ip -n "$ns" link set "vp$n" up &&
    ip -n "$ns" link set lo up || return 1
  NETNS_VETH=vh$n
}

hold_open() {
  local file=$1 flag
  flag=$(mktemp "$WORK/held.XXXXXX")
  python3 -c '
import os, sys, time
try:
    fd = os.open(sys.argv[1], os.O_RDWR)
except OSError as e:
    open(sys.argv[2], "w").write("error: " + e.strerror)
    sys.exit(1)
open(sys.argv[2], "w").write("open")
time.sleep(600)' "$file" "$flag" &
  HELD_PID=$!
  HELPER_PIDS+=("$HELD_PID")
  wait_for "[ -s '$flag' ]" 20 || return 1
  [ "$(cat "$flag")" = open ] || { cat "$flag"; echo; return 1; }
}

let_go() {
  kill "$1" 2>/dev/null
  wait "$1" 2>/dev/null
  return 0
}

# The four workers of linearizability history H (test/lin/workload.py): on
# the root's mount once, leaf a's twice, leaf b's once, 12 operations each
# on two fresh blocks, recorded in $WORK/history.jsonl. start_history
# returns at once (HISTORY_PIDS); finish_history waits, false if any failed.
start_history() {
  local h=$1 blocks="$((100 + 2 * $1)),$((101 + 2 * $1))" p=1 mp
  local workload
  workload=$(cd "$(dirname "${BASH_SOURCE[0]}")/../lin" && pwd)/workload.py
  HISTORY_PIDS=()
  for mp in root a a b; do
    python3 "$workload" "$WORK/$mp/vol.img" "$WORK/history.jsonl" "$h" "$p" 12 "$blocks" "$((h * 10 + p))" &
    HISTORY_PIDS+=($!)
    p=$((p + 1))
  done
}

finish_history() {
  local pid ok=0
  for pid in "${HISTORY_PIDS[@]}"; do wait "$pid" || ok=1; done
  return $ok
}

loop_umount() {
  umount "$1"
}

# A counter from the stats JSON, by jq-like dotted path (volumes.vol.cache.misses).
free_ports() {  # N: N loopback ports free just now. The sockets are closed
  # before this returns (read it with $(...), which waits for the process):
  # a port still held when the node binds it is "already in use".
  python3 -c '
import socket, sys
s = [socket.socket() for _ in range(int(sys.argv[1]))]
for x in s: x.bind(("127.0.0.1", 0))
ports = [x.getsockname()[1] for x in s]
for x in s: x.close()
print(*ports)' "$1"
}

stat_of() {  # MOUNTPOINT PATH [DEFAULT]: one value of the stats, by dotted path
  local mp=$1 path=$2
  python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
try:
    for k in sys.argv[2].split("."):
        d = d[int(k)] if isinstance(d, list) else d[k]
except KeyError:
    if len(sys.argv) < 4:
        raise
    d = sys.argv[3]
print(d)' "$mp/.vshare/stats" "$path" "${@:3}"
}

check() {
  local desc=$1
  shift
  if "$@"; then
    PASSED=$((PASSED + 1))
    echo "ok - $desc"
  else
    FAILED=$((FAILED + 1))
    echo "FAIL - $desc"
  fi
}

# Runs CMD, expecting exit status $2 and stderr/stdout containing $3.
expect_fail() {
  local desc=$1 want_rc=$2 want_msg=$3
  shift 3
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" = "$want_rc" ] && grep -qF -- "$want_msg" <<<"$out"; then
    PASSED=$((PASSED + 1))
    echo "ok - $desc"
  else
    FAILED=$((FAILED + 1))
    echo "FAIL - $desc: exit $rc (want $want_rc), output: $out (want '$want_msg')"
  fi
}

finish() {
  if [ $((PASSED + FAILED)) = 0 ]; then
    FAILED=1
    echo "FAIL - $TEST_NAME made no checks at all"
  fi
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" = 0 ]
}
