#!/usr/bin/env bash
# Requests/s and latency through `onionwatch gateway` vs direct to the upstream
# vs Debian's nginx doing the same job (PROXY v1 in, X-Onion-CircuitID out).
#
#   apt-get install -y nginx      # once
#   scripts/bench-gateway.sh [DURATION_SECS=10] [CONNS=32]
#
# Everything listens on 127.0.0.1 and every load run stops by itself after
# 2 s of warm-up + DURATION_SECS. The same echo upstream (a small hyper
# server, 1 thread) answers all three; the load tool (1 thread) opens CONNS
# keep-alive connections, each with its own circuit id in its PROXY header.
# The gateway and nginx both get 2 workers (the machine's cores).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNS=${2:-32}
command -v nginx >/dev/null || { echo "nginx is missing: apt-get install -y nginx" >&2; exit 1; }

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet -p onionwatch --bin onionwatch
cargo build --release --quiet -p onionwatch-gateway --example gateway-bench
BENCH=$CARGO_TARGET_DIR/release/examples/gateway-bench
OW=$CARGO_TARGET_DIR/release/onionwatch

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

UP=$($BENCH free-port); GW=$($BENCH free-port); NG=$($BENCH free-port)

$BENCH upstream --listen 127.0.0.1:$UP & pids+=($!)
$BENCH wait 127.0.0.1:$UP
RUST_LOG=warn $OW gateway --listen 127.0.0.1:$GW --upstream 127.0.0.1:$UP & pids+=($!)
$BENCH wait 127.0.0.1:$GW

# nginx: the upstream id is $proxy_protocol_addr (nginx cannot turn hex into
# decimal without a scripting module); proxy_set_header replaces any header of
# that name the client sent. Keep-alive both sides, no request cap per
# connection, no access log (the gateway keeps no log either).
mkdir -p "$work/tmp"
cat >"$work/nginx.conf" <<EOF
worker_processes 2;
pid $work/nginx.pid;
error_log $work/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/tmp;
  proxy_temp_path $work/tmp;
  keepalive_requests 100000000;
  upstream echo {
    server 127.0.0.1:$UP;
    keepalive 128;
    keepalive_requests 100000000;
  }
  server {
    listen 127.0.0.1:$NG proxy_protocol;
    location / {
      proxy_pass http://echo;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Onion-CircuitID \$proxy_protocol_addr;
    }
  }
}
EOF
nginx -c "$work/nginx.conf"
$BENCH wait 127.0.0.1:$NG

echo "== what the upstream sees"
echo "-- gateway:"; $BENCH check --target 127.0.0.1:$GW --proxy | grep -i '^x-onion'
echo "-- nginx:";   $BENCH check --target 127.0.0.1:$NG --proxy | grep -i '^x-onion'

echo "== load: $CONNS connections, ${DURATION} s each (after 2 s warm-up)"
echo "-- direct to the upstream (no PROXY header):"
$BENCH load --target 127.0.0.1:$UP --conns "$CONNS" --duration "$DURATION"
echo "-- through onionwatch gateway:"
$BENCH load --target 127.0.0.1:$GW --proxy --conns "$CONNS" --duration "$DURATION"
echo "-- through nginx:"
$BENCH load --target 127.0.0.1:$NG --proxy --conns "$CONNS" --duration "$DURATION"
