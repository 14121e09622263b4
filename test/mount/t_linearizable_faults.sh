#!/bin/bash
# Issue 4: the linearizability check under faults. As in t_linearizable,
# the root and two leaves (below a proxy) run concurrent O_DIRECT reads and
# writes of fresh blocks in short histories, every write unique; here the
# proxy is killed (and started again) or frozen past its lease in the middle
# of most histories. The leaves, moved to the root by a failure, are put
# back below the proxy with the reparent command before each history. The
# recorded histories must show 0 violations (test/lin's checker).
#
# The leaves write in sync mode. In async (and semi-sync) mode an
# acknowledged write can be lost to a proxy failure, as that mode allows:
# when a sibling's request recalls the writer's dirty block, the bytes move
# into the proxy, and if the proxy then stays stopped past its lease and the
# grace period, nobody claims them back in time. A sanitizer CI run caught
# exactly that once (1 violation in 30 histories).
#
# (It was out of CI for a while: about one run in four ended with a
# worker's write failing with EIO during a fault. A claim whose bytes the
# parent already held was counted as lost; since that was fixed it has
# passed every run, plain and under the sanitizers.)
. "$(dirname "$0")/lib.sh"
begin linearizable_faults
: "${LINCHECK:=$(dirname "$VSHARE")/lincheck}"
[ -x "$LINCHECK" ] || { echo "lincheck not found at $LINCHECK"; exit 1; }
HISTORIES=${HISTORIES:-30}

img=$WORK/backing.img
"$VSHARE" create "$img" --size 64M >/dev/null
timing=(--lease 2 --heartbeat 0.5 --shared-writers --write-mode sync)
start_node "$WORK/root" --export vol="$img" --listen 127.0.0.1:0 "${timing[@]}" || exit 1
rp=$(stat_of "$WORK/root" tree.listen_port)
pport=""
start_proxy() {
  rm -f "$WORK/proxy.port"
  "$VSHARE" serve --parent "127.0.0.1:$rp" --volume vol --listen "127.0.0.1:${pport:-0}" -f --lease 2 --heartbeat 0.5 \
    --port-file "$WORK/proxy.port" --log-file "$WORK/node-proxy.log" &
  NODE_PID[serve:proxy]=$!
  wait_for "[ -s '$WORK/proxy.port' ]" 10 && pport=$(cat "$WORK/proxy.port")
}
start_proxy || { check "the proxy starts" false; finish; exit; }
for n in a b; do
  start_node "$WORK/$n" --parent "127.0.0.1:$pport" --volume vol --io-timeout 15 "${timing[@]}" || exit 1
done

history=$WORK/history.jsonl  # written by start_history
kills=0 freezes=0 moves=0
for h in $(seq 1 "$HISTORIES"); do
  for n in a b; do  # back below the proxy
    if [ "$(stat_of "$WORK/$n" tree.parent)" != "127.0.0.1:$pport" ]; then
      "$VSHARE" ctl "$WORK/$n" "{\"cmd\":\"reparent\",\"parent\":\"127.0.0.1:$pport\"}" >/dev/null && moves=$((moves + 1))
    fi
  done
  start_history "$h"
  sleep "0.$((RANDOM % 3))"
  proxy=${NODE_PID[serve:proxy]}
  case $((h % 3)) in
    0) kill -KILL "$proxy"; wait "$proxy" 2>/dev/null; kills=$((kills + 1)) ;;
    1) kill -STOP "$proxy"; sleep 2.5; kill -CONT "$proxy"; freezes=$((freezes + 1)) ;;
    *) ;;  # a quiet one
  esac
  finish_history || { check "history $h: every worker finished" false; break; }
  if ! kill -0 "${NODE_PID[serve:proxy]}" 2>/dev/null; then
    start_proxy || { check "history $h: the proxy starts again" false; break; }
  fi
done
echo "$kills kills, $freezes freezes, $moves moves back below the proxy"
check "faults happened ($kills kills, $freezes freezes)" [ "$kills" -ge $((HISTORIES / 3)) ] && [ "$freezes" -ge $((HISTORIES / 3)) ]
ops=$((HISTORIES * 48))
check "$ops operations were recorded" [ "$(wc -l <"$history")" = "$ops" ]
out=$("$LINCHECK" "$history")
rc=$?
echo "lincheck: $out" | tail -3
check "$HISTORIES histories, 0 violations" bash -c "[ $rc = 0 ] && grep -q '^$HISTORIES histories, $((HISTORIES * 2)) registers, $ops operations, 0 violations$' <<<'$out'"
check "leaf a unmounts" stop_node "$WORK/a"
check "leaf b unmounts" stop_node "$WORK/b"
kill -TERM "${NODE_PID[serve:proxy]}"
wait "${NODE_PID[serve:proxy]}"
unset "NODE_PID[serve:proxy]"
check "the root unmounts" stop_node "$WORK/root"
finish
