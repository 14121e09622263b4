#!/bin/bash
# A `vshare serve` proxy whose parent is gone (review defects, issue 9 item 8):
#  1. The root is killed. The proxy keeps trying to join, backing off: it
#     uses next to no CPU while it waits.
#  2. The root's port now belongs to something else, a listener that takes
#     the connection and closes it at once: still no busy loop.
#     (The defect was 12-15% of a CPU; the bar is 1.2%, 0.06 s in 5 s.
#     Without the back-off between rounds, the stranger case costs 0.12 s.)
#  3. SIGTERM stops the proxy within a couple of seconds, not after
#     --io-timeout, and it does not claim lost dirty blocks it never held.
. "$(dirname "$0")/lib.sh"
begin serve_parent_gone

# CPU seconds (user + system) a process has used so far.
cpu_of() {
  awk '{printf "%.2f\n", ($14 + $15) / 100}' "/proc/$1/stat"
}

# check_idle PID WHAT: after 3 s (past the first quick retries), PID uses
# under 0.06 s of CPU in the next 5.
check_idle() {
  local before after used
  sleep 3
  before=$(cpu_of "$1")
  sleep 5
  after=$(cpu_of "$1")
  used=$(awk -v a="$after" -v b="$before" 'BEGIN {printf "%.2f", a - b}')
  echo "# proxy CPU over 5 s, $2: $used s"
  check "retrying, $2, costs under 0.06 s of CPU in 5 s ($used s)" awk -v u="$used" 'BEGIN {exit !(u < 0.06)}'
}

img=$WORK/backing.img
"$VSHARE" create "$img" --size 16M >/dev/null
start_node "$WORK/root" --export vol="$img" --listen 127.0.0.1:0 || exit 1
root_port=$(stat_of "$WORK/root" tree.listen_port)
root_pid=${NODE_PID[$WORK/root]}

"$VSHARE" serve --parent "127.0.0.1:$root_port" --volume vol --listen 127.0.0.1:0 -f --io-timeout 30 \
  --port-file "$WORK/proxy.port" --log-file "$WORK/node-proxy.log" &
proxy=$!
NODE_PID[serve:proxy]=$proxy
check "the proxy comes up" wait_for "[ -s '$WORK/proxy.port' ]" 10
check "the proxy has joined the root" wait_for "[ \"\$(stat_of '$WORK/root' tree.children)\" = 1 ]" 10

# 1. The root dies.
kill -KILL "$root_pid"
wait "$root_pid" 2>/dev/null
umount -l "$WORK/root" 2>/dev/null
unset "NODE_PID[$WORK/root]"
check "the proxy sees its parent gone" wait_for "grep -q 'lost' '$WORK/node-proxy.log'" 15
check_idle "$proxy" "its parent gone"

# 2. Something else takes the port: it accepts and closes at once.
python3 - "$root_port" <<'PY' &
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
s.settimeout(60)
try:
    while True:
        c, _ = s.accept()
        c.close()
except OSError:
    pass
PY
HELPER_PIDS+=($!)
check_idle "$proxy" "its parent's port taken by a stranger"

# 3. SIGTERM.
start=$(date +%s.%N)
kill -TERM "$proxy"
check "the proxy stops on SIGTERM within 3 s" wait_for "! kill -0 $proxy 2>/dev/null" 3
took=$(awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN {printf "%.2f", a - b}')
echo "# SIGTERM to exit: $took s (--io-timeout 30)"
wait "$proxy" 2>/dev/null
unset "NODE_PID[serve:proxy]"
check "it does not claim lost dirty blocks it never held" bash -c "! grep -q 'dirty blocks are lost' '$WORK/node-proxy.log'"
finish
