#!/bin/bash
# Two proxies started at once, each naming the other as its parent: the
# chain is a cycle with no root. Both must fail to join, cleanly and within
# their --io-timeout, and exit non-zero: no spinning, no hang.
. "$(dirname "$0")/lib.sh"
begin parent_cycle

read -r pa pb <<<"$(free_ports 2)"
start=$(date +%s.%N)
"$VSHARE" serve --parent "127.0.0.1:$pb" --listen "127.0.0.1:$pa" --volume vol -f --io-timeout 2 \
  --log-file "$WORK/node-a.log" >"$WORK/a.out" 2>&1 &
NODE_PID[serve:a]=$!
"$VSHARE" serve --parent "127.0.0.1:$pa" --listen "127.0.0.1:$pb" --volume vol -f --io-timeout 2 \
  --log-file "$WORK/node-b.log" >"$WORK/b.out" 2>&1 &
NODE_PID[serve:b]=$!
wait "${NODE_PID[serve:a]}"; ra=$?
wait "${NODE_PID[serve:b]}"; rb=$?
took=$(echo "$(date +%s.%N) - $start" | bc)
unset "NODE_PID[serve:a]" "NODE_PID[serve:b]"
check "proxy a fails (exit $ra): $(cat "$WORK/a.out")" [ "$ra" = 1 ]
check "proxy b fails (exit $rb): $(cat "$WORK/b.out")" [ "$rb" = 1 ]
check "both said why" bash -c "grep -qE 'cannot join|no answer|cannot connect' '$WORK/a.out' && grep -qE 'cannot join|no answer|cannot connect' '$WORK/b.out'"
check "within their timeouts and a margin (${took}s)" [ "$(echo "$took < 8" | bc)" = 1 ]
finish
