#!/usr/bin/env bash
# The interim demo (issue 5 builds the full one): a local 3-member cluster as
# child processes, worker processes that increment one shared counter with
# compare-exchange retry loops (no lock, no lost update), the leader killed
# with SIGKILL mid-run and restarted, and a verdict from the workers' own
# tallies. Leaves nothing running and removes its data.
set -euo pipefail
BIN=${BIN:-bin/cxkv}
WORKERS=${WORKERS:-4}
INCREMENTS=${INCREMENTS:-25}
BASE=${BASE_PORT:-7301}
DIR=$(mktemp -d)
ADDRS=("127.0.0.1:$BASE" "127.0.0.1:$((BASE+1))" "127.0.0.1:$((BASE+2))")
CLUSTER="1=${ADDRS[0]},2=${ADDRS[1]},3=${ADDRS[2]}"
export CXKV_ENDPOINTS="${ADDRS[0]},${ADDRS[1]},${ADDRS[2]}"
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT INT TERM

start() { # start member $1
  "$BIN" server --id "$1" --addr "${ADDRS[$1-1]}" --data-dir "$DIR/$1" --cluster "$CLUSTER" --tick 20ms \
    2> >(sed "s/^/[member $1] /" >&2) &
  PIDS[$1]=$!
}
echo "== starting members 1, 2, 3 (data in $DIR)"
for i in 1 2 3; do start $i; done
until "$BIN" status -o json 2>/dev/null | grep -q '"role": "leader"'; do sleep 0.1; done
"$BIN" status

"$BIN" put demo/counter 0 --index 0 >/dev/null
worker() { # increments demo/counter $INCREMENTS times by compare-exchange; prints its tally
  local done=0 retries=0
  while [ $done -lt "$INCREMENTS" ]; do
    read -r value index < <("$BIN" get demo/counter -o json 2>/dev/null | sed -n 's/.*"value": "\(.*\)",/\1/p; s/.*"index": \([0-9]*\),*/\1/p' | paste -sd' ') || true
    if [ -n "${index:-}" ] && "$BIN" put demo/counter $((value+1)) --index "$index" >/dev/null 2>&1; then
      done=$((done+1))
    else
      retries=$((retries+1))
    fi
  done
  echo "worker $1: $done increments, $retries compare failures retried"
}
echo "== $WORKERS workers, $INCREMENTS increments each, no lock: read, then put --index"
WPIDS=()
for w in $(seq 1 "$WORKERS"); do worker "$w" > "$DIR/worker$w.out" & WPIDS+=($!); done

sleep 1.5
LEADER=$("$BIN" status -o json | sed -n 's/.*"leader": \([0-9]*\).*/\1/p' | head -1)
echo "== kill -9 the leader (member $LEADER) while the workers run"
kill -9 "${PIDS[$LEADER]}"; wait "${PIDS[$LEADER]}" 2>/dev/null || true
sleep 1
echo "== restart member $LEADER from its data dir"
start "$LEADER"

for p in "${WPIDS[@]}"; do wait "$p"; done
cat "$DIR"/worker*.out
WANT=$((WORKERS*INCREMENTS))
GOT=$("$BIN" get demo/counter -o json | sed -n 's/.*"value": "\(.*\)",/\1/p')
"$BIN" status
if [ "$GOT" = "$WANT" ]; then
  echo "VERDICT: OK — counter is $GOT = $WORKERS workers x $INCREMENTS increments; no update lost through a leader crash"
else
  echo "VERDICT: BROKEN — counter is $GOT, the workers made $WANT increments"; exit 1
fi
