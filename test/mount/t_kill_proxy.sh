#!/bin/bash
# Issue 4: kill a proxy mid-workload. In each write mode a leaf below a
# proxy runs a verifying write workload (test/fault/write_log.py); the proxy
# gets SIGKILL partway through. The leaf moves to its grandparent (the
# root, named in the proxy's PARENT_LIST) within 3 heartbeats, claims back
# what it wrote (RECOVER), and the workload finishes without an error.
# Then nothing acknowledged in sync or semi-sync mode is lost, and in async
# mode what was fsynced survives: checked through the leaf, and in the
# root's image file once the leaf has unmounted.
. "$(dirname "$0")/lib.sh"
begin kill_proxy
fault=$(cd "$(dirname "$0")/../fault" && pwd)

img=$WORK/backing.img
"$VSHARE" create "$img" --size 16M >/dev/null
timing=(--lease 2 --heartbeat 0.5)
start_node "$WORK/root" --export vol="$img" --listen 127.0.0.1:0 "${timing[@]}" || exit 1
rp=$(stat_of "$WORK/root" tree.listen_port)

run_mode() {  # MODE FSYNC_EVERY CHECK: one proxy and one leaf, the proxy killed mid-run
  local mode=$1 fsync_every=$2 what=$3 leaf=$WORK/leaf-$1 log=$WORK/log-$1
  "$VSHARE" serve --parent "127.0.0.1:$rp" --volume vol --listen 127.0.0.1:0 -f "${timing[@]}" \
    --port-file "$WORK/proxy-$mode.port" --log-file "$WORK/node-proxy-$mode.log" &
  local proxy=$!
  NODE_PID[serve:$mode]=$proxy
  wait_for "[ -s '$WORK/proxy-$mode.port' ]" 10 || { check "$mode: the proxy starts" false; return; }
  start_node "$leaf" --parent "127.0.0.1:$(cat "$WORK/proxy-$mode.port")" --volume vol --write-mode "$mode" \
    --flush-interval 0 --io-timeout 20 "${timing[@]}" || return
  check "$mode: the leaf's parent is the proxy" [ "$(stat_of "$leaf" tree.upstream.0)" = "127.0.0.1:$rp" ]
  # Every write to a block of its own: a lost write cannot hide under a later one.
  # Async: the workload holds after write 110, between two fsyncs (25 writes
  # apart), and the proxy is killed then: some writes are surely dirty in the
  # leaf and none is in flight. Otherwise it is killed mid-run, from write 100.
  local hold=-1 upto=100
  [ "$mode" = async ] && hold=110 upto=111
  HOLD_AT=$hold python3 "$fault/write_log.py" "$leaf/vol.img" "$log" 400 400 "$fsync_every" 5 &
  local workload=$!
  HELPER_PIDS+=("$workload")
  wait_for "[ \"\$(grep -c '^write ' '$log' 2>/dev/null)\" -ge $upto ]" 30
  # Timed with the shell's clock and a grep of the stats file: a python3
  # start-up per poll would add its own second on a loaded machine.
  local killed_at moved_ms
  killed_at=$(date +%s%N)
  kill -KILL "$proxy"
  wait "$proxy" 2>/dev/null
  unset "NODE_PID[serve:$mode]"
  wait_for "grep -q '\"parent\": \"127.0.0.1:$rp\"' '$leaf/.vshare/stats'" 10
  moved_ms=$((($(date +%s%N) - killed_at) / 1000000))
  check "$mode: the leaf moved to the root within 3 heartbeats ($moved_ms ms)" [ "$moved_ms" -le 1500 ]
  wait "$workload"
  check "$mode: the workload finished without an error" [ $? = 0 ]
  check "$mode: it wrote all 400 blocks" [ "$(grep -c ^write "$log")" = 400 ]
  check "$mode: the leaf joined again once" [ "$(stat_of "$leaf" tree.rejoins)" = 1 ]
  check "$mode: below another parent" [ "$(stat_of "$leaf" tree.reparents)" = 1 ]
  check "$mode: no claimed block was lost" [ "$(stat_of "$leaf" tree.recovery_lost)" = 0 ]
  if [ "$mode" != sync ]; then  # sync writes are at the root already: nothing to claim
    check "$mode: it claimed blocks back ($(stat_of "$leaf" tree.recovered))" [ "$(stat_of "$leaf" tree.recovered)" -gt 0 ]
  fi
  check "$mode: the leaf reads what it should ($what)" python3 "$fault/check_log.py" "$leaf/vol.img" "$log" "$what"
  check "$mode: the leaf unmounts" stop_node "$leaf"
  # (Each run writes the same blocks: check the root's image before the next.)
  check "$mode: the root writes its cache back" "$VSHARE" ctl "$WORK/root" flush
  check "$mode: the root's image file holds them too ($what)" python3 "$fault/check_log.py" "$img" "$log" "$what"
}

run_mode sync 0 all
run_mode semi-sync 0 all
run_mode async 25 fsynced
check "the root unmounts" stop_node "$WORK/root"
finish
