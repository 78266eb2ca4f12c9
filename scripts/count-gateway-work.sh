#!/usr/bin/env bash
# User-space instructions and system calls per request of `onionwatch
# gateway` (one worker) or of nginx (one worker) doing the same job, at one
# keep-alive connection: steady counts, unlike timings on a shared machine.
#
#   apt-get install -y valgrind strace nginx      # once
#   scripts/count-gateway-work.sh gateway|nginx [SECONDS=8]
#   OW=/path/to/onionwatch scripts/count-gateway-work.sh gateway   # another build
#
# Instructions: valgrind --tool=callgrind on the server for the whole run,
# divided by the requests it answered (start-up is included: under 2 M
# instructions for the gateway, 8 M for nginx). System calls: strace -c -f
# attached to the running server for a 3 s load, divided by its requests.
# Everything listens on 127.0.0.1; every load stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
WHAT=${1:?usage: $0 gateway|nginx [SECONDS]}
SECS=${2:-8}
for c in valgrind strace nginx; do
  command -v "$c" >/dev/null || { echo "$c is missing: apt-get install -y $c" >&2; exit 1; }
done

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet -p onionwatch --bin onionwatch
cargo build --release --quiet -p onionwatch-gateway --example gateway-bench
BENCH=$CARGO_TARGET_DIR/release/examples/gateway-bench
OW=${OW:-$CARGO_TARGET_DIR/release/onionwatch}

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

. scripts/gateway-nginx.conf.sh

UP=$($BENCH free-port)
$BENCH upstream --listen 127.0.0.1:$UP 2>/dev/null & pids+=($!)
$BENCH wait 127.0.0.1:$UP

# server [WRAPPER...]: start the server under test (in the background) on $PORT.
server() {
  PORT=$($BENCH free-port)
  case $WHAT in
    gateway)
      printf 'listen: 127.0.0.1:%s\nupstream: 127.0.0.1:%s\nworkers: 1\n' "$PORT" "$UP" >"$work/gateway.yaml"
      RUST_LOG=warn "$@" "$OW" gateway -c "$work/gateway.yaml" 2>"$work/server.err" &
      ;;
    nginx)
      gateway_nginx_conf "$work" "$UP" "$PORT" 1 >"$work/nginx.conf"
      # One process that is the worker, so valgrind and strace see it all.
      "$@" nginx -c "$work/nginx.conf" -g 'daemon off; master_process off;' 2>"$work/server.err" &
      ;;
    *) echo "usage: $0 gateway|nginx [SECONDS]" >&2; exit 2 ;;
  esac
  SERVER=$!
  pids+=("$SERVER")
  $BENCH wait 127.0.0.1:$PORT
}

# Stop the server under test and wait for it (valgrind writes its totals then).
stop() {
  case $WHAT in gateway) kill -INT "$SERVER" ;; nginx) kill -QUIT "$SERVER" ;; esac
  wait "$SERVER" || true
}

answered() { sed -n 's/.* answered=\([0-9]*\).*/\1/p'; }

# System calls: strace attached to the running server for a whole load run.
server
strace -f -c -p "$SERVER" -o "$work/strace" 2>"$work/strace.err" &
tracer=$!
for _ in $(seq 100); do grep -q attached "$work/strace.err" && break; sleep 0.1; done
grep -q attached "$work/strace.err" || { echo "strace did not attach" >&2; exit 1; }
n=$($BENCH load --target 127.0.0.1:$PORT --proxy --conns 1 --duration 3 --warmup 0 | answered)
kill -INT "$tracer"
wait "$tracer" || true
stop
calls=$(awk '$NF == "total" { print $(NF-2) }' "$work/strace")
echo "strace: $calls system calls for $n requests: $(awk -v c="$calls" -v n="$n" 'BEGIN { printf "%.2f", c / n }') per request"
grep -E '^ *[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+' "$work/strace" | awk '{ print "  " $NF ": " $4 }'

# Instructions: the whole run under callgrind.
server valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out"
out=$($BENCH load --target 127.0.0.1:$PORT --proxy --conns 1 --duration "$SECS" --warmup 0.5)
stop
total=$(sed -n 's/.*I *refs: *//p' "$work/server.err" | tr -d ,)
n=$(answered <<<"$out")
echo "callgrind: $total instructions for $n requests: $((total / n)) per request"
