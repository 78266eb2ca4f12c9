#!/usr/bin/env bash
# Load: CIRCUITS distinct circuit ids through `onionwatch gateway` (PROXY v1
# required, 10 requests/s per circuit, so every circuit gets a rate-limit
# bucket) in front of nginx: one connection and one request per circuit,
# from 2 client processes (scripts/hostile.py circuits), for at most SECONDS.
# Prints the gateway's RSS every 10 s and its peak RSS (VmHWM, /proc).
#
#   apt-get install -y nginx      # once
#   cargo build --release -p onionwatch
#   scripts/fault-gateway.sh [CIRCUITS=1000000] [SECONDS=300]
#
# Everything listens on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
CIRCUITS=${1:-1000000}
DURATION=${2:-300}
command -v nginx >/dev/null || { echo "nginx is missing: apt-get install -y nginx" >&2; exit 1; }
. scripts/fault-lib.sh
NP=$(free_port)
cat >"$work/nginx.conf" <<CONF
daemon on;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$NP; location / { return 200 "ok\n"; } } }
CONF
nginx -c "$work/nginx.conf"
trap '[ -f "$work/nginx.pid" ] && kill -QUIT "$(cat "$work/nginx.pid")"; cleanup' EXIT
GW=$(free_port)
RUST_LOG=warn "$OW" gateway --listen "127.0.0.1:$GW" --upstream "127.0.0.1:$NP" \
  --proxy-protocol require --rate 10 --burst 20 2>"$work/gw.err" & gpid=$!; pids+=($gpid)
wait_port "$GW" "$gpid" "$work/gw.err"
echo "gateway RSS at start: $(rss_mib "$gpid") MiB"
half=$((CIRCUITS / 2))
$HOSTILE circuits 1 "$half" "127.0.0.1:$GW" "$DURATION" >"$work/c1.json" & c1=$!
$HOSTILE circuits $((half + 1)) $((CIRCUITS - half)) "127.0.0.1:$GW" "$DURATION" >"$work/c2.json" & c2=$!
t0=$SECONDS
while kill -0 "$c1" 2>/dev/null || kill -0 "$c2" 2>/dev/null; do
  sleep 10
  echo "after $((SECONDS - t0)) s: gateway RSS $(rss_mib "$gpid") MiB"
done
wait "$c1" "$c2"
echo "clients: $(cat "$work/c1.json") $(cat "$work/c2.json")"
kill -0 "$gpid" && echo "gateway still running"
echo "| circuits (one connection each) | seconds | gateway peak RSS (MiB) | RSS at the end (MiB) |"
echo "| ---: | ---: | ---: | ---: |"
sent=$(cat "$work/c1.json" "$work/c2.json" | python3 -c 'import json,sys; print(sum(json.loads(l)["sent"] for l in sys.stdin))')
echo "| $sent | $((SECONDS - t0)) | $(hwm_mib "$gpid") | $(rss_mib "$gpid") |"
