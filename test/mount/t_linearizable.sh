#!/bin/bash
# Concurrent O_DIRECT reads and writes through three nodes' real mounts (the
# root, and two leaves below a proxy), in 50 short histories on fresh blocks.
# The nodes run with --shared-writers (this is an O_DIRECT application), so
# the writers' opens coexist instead of queueing for the writer lease.
# Every write has a value no one else writes; the recorded histories must be
# linearizable, block by block, against a single-register model. Then one
# read in the recorded file is made stale, and the checker must say so.
# With KERNEL_CACHE=1 (t_linearizable_kernel_cache.sh) every mount has
# --kernel-cache and the workers read through the page cache (buffered).
. "$(dirname "$0")/lib.sh"
extra=()
if [ "${KERNEL_CACHE:-0}" = 1 ]; then
  begin linearizable_kernel_cache
  extra=(--kernel-cache ${LIN_EXTRA:-})
  export LIN_BUFFERED_READS=1
else
  begin linearizable
fi
HISTORIES=${HISTORIES:-50}
: "${LINCHECK:=$(dirname "$VSHARE")/lincheck}"
[ -x "$LINCHECK" ] || { echo "lincheck not found at $LINCHECK"; exit 1; }

img=$WORK/backing.img
"$VSHARE" create "$img" --size 64M >/dev/null
start_node "$WORK/root" --export vol="$img" --listen 127.0.0.1:0 --shared-writers "${extra[@]}" || exit 1
root_port=$(stat_of "$WORK/root" tree.listen_port)
"$VSHARE" serve --parent "127.0.0.1:$root_port" --volume vol --listen 127.0.0.1:0 -f \
  --port-file "$WORK/proxy.port" --log-file "$WORK/node-proxy.log" &
NODE_PID[serve:proxy]=$!
wait_for "[ -s '$WORK/proxy.port' ]" 10 || { check "proxy up" false; finish; exit; }
start_node "$WORK/a" --parent "127.0.0.1:$(cat "$WORK/proxy.port")" --volume vol --io-timeout 10 --shared-writers "${extra[@]}" || exit 1
start_node "$WORK/b" --parent "127.0.0.1:$(cat "$WORK/proxy.port")" --volume vol --io-timeout 10 --shared-writers "${extra[@]}" || exit 1

history=$WORK/history.jsonl  # written by start_history
for h in $(seq 1 "$HISTORIES"); do
  start_history "$h"
  finish_history || { check "history $h: every worker finished" false; break; }
done
check "no write-open waited for the lease or was refused" bash -c "! grep -h 'writer lease' '$WORK'/node-*.log"
ops=$((HISTORIES * 48))
check "$ops operations were recorded" [ "$(wc -l <"$history")" = "$ops" ]
out=$("$LINCHECK" "$history")
rc=$?
echo "lincheck: $out" | tail -3
check "$HISTORIES histories, 0 violations" bash -c "[ $rc = 0 ] && grep -q '^$HISTORIES histories, $((HISTORIES * 2)) registers, $ops operations, 0 violations$' <<<'$out'"

# A stale read planted in a real history must be caught.
python3 - "$history" "$WORK/broken.jsonl" <<'PY'
import json, sys
ops = [json.loads(l) for l in open(sys.argv[1])]
for r in ops:
    if r["type"] != "read":
        continue
    same = [w for w in ops if w["type"] == "write" and w["history"] == r["history"] and w["block"] == r["block"]]
    done_before = [w for w in same if w["complete"] < r["invoke"] and w["value"] != r["value"]]
    if done_before:
        r["value"] = ""  # the initial value: overwritten before this read began
        break
else:
    sys.exit("no read to corrupt")
open(sys.argv[2], "w").write("".join(json.dumps(o) + "\n" for o in ops))
PY
"$LINCHECK" "$WORK/broken.jsonl" >"$WORK/broken.out"
check "the planted stale read is flagged" bash -c "[ $? = 1 ] && grep -q ' 1 violations$' '$WORK/broken.out'"

check "leaf a unmounts" stop_node "$WORK/a"
check "leaf b unmounts" stop_node "$WORK/b"
kill -TERM "${NODE_PID[serve:proxy]}"
wait "${NODE_PID[serve:proxy]}"
check "the proxy exits 0" [ $? = 0 ]
unset "NODE_PID[serve:proxy]"
check "the root unmounts" stop_node "$WORK/root"
finish
