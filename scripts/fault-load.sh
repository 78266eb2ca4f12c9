#!/usr/bin/env bash
# Load: LINES distinct circuit ids through `onionwatch logs`, once and
# following, and the `watch` endpoint under CLIENTS slow clients.
#
#   cargo build --release -p onionwatch
#   scripts/fault-load.sh [LINES=1000000] [CLIENTS=100] [SECONDS=30] [NOFILE]
#
# 1. An access log of LINES `combined` lines, each from a different circuit
#    (fc00:dead:beef:4dad::HI:LO, ids 1..LINES) and all in the same minute
#    of log time, so every circuit falls into one per-circuit window: the
#    worst case for the per-circuit map. `logs --once` reads it (peak RSS
#    from GNU time); `logs` in follow mode starts on an empty file, the lines
#    are appended, and the script polls /metrics until
#    onionwatch_log_requests_total reaches LINES (peak RSS from /proc).
# 2. `watch` (one MetricsPort serving a real tor page) while CLIENTS
#    connections each send a request head one byte per second for SECONDS,
#    each one the server closes opened again (CLIENTS stay open as long as
#    watch lets them); a /metrics GET (a new connection) is timed every second
#    meanwhile, and before, as a baseline.
#    With NOFILE, watch runs under `ulimit -n NOFILE` (systemd's default soft
#    limit is 1024).
# Everything listens on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${1:-1000000}
CLIENTS=${2:-100}
DURATION=${3:-30}
NOFILE=${4:-}
. scripts/fault-lib.sh
command -v /usr/bin/time >/dev/null || { echo "GNU time is missing: apt-get install -y time" >&2; exit 1; }

gen() {
  python3 - "$1" <<'PY'
import sys
n = int(sys.argv[1])
out = sys.stdout.buffer
buf = []
for c in range(1, n + 1):
    buf.append(b'fc00:dead:beef:4dad::%x:%x - - [11/Jan/2024:00:00:%02d +0000] "GET /p/%d HTTP/1.1" 200 %d "-" "Mozilla/5.0"\n'
               % (c >> 16, c & 0xFFFF, c * 60 // (n + 1), c, 100 + c % 5000))
    if len(buf) == 10000:
        out.write(b"".join(buf)); buf.clear()
out.write(b"".join(buf))
PY
}

gen "$LINES" >"$work/access.log"
size=$(du -m "$work/access.log" | cut -f1)
echo "== $LINES lines, $LINES distinct circuits, ${size} MiB"

echo
echo "-- logs --once"
/usr/bin/time -f '%e %M' -o "$work/time" "$OW" logs --once --format json "$work/access.log" >"$work/once.json"
read -r wall kib <"$work/time"
python3 - "$work/once.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
w = d.get("circuit_window", {})
print("requests", d["requests"], "parse_errors", d["parse_errors"], "unique_circuits (HLL)", d["unique_circuits"],
      "circuit_window:", {k: v for k, v in w.items() if not isinstance(v, (list, dict))})
PY
once_row="| logs --once | $LINES | $wall | $((kib / 1024)) |"

echo
echo "-- logs (follow)"
: >"$work/follow.log"
port=$(free_port)
RUST_LOG=warn "$OW" logs --listen "127.0.0.1:$port" "$work/follow.log" 2>"$work/follow.err" & fpid=$!; pids+=($fpid)
wait_port "$port"
base=$(hwm_mib "$fpid")
start=$(date +%s.%N)
cat "$work/access.log" >>"$work/follow.log"
count=0 peak_now=0
for i in $(seq 1200); do
  curl -s --max-time 10 -o "$work/last-get" "http://127.0.0.1:$port/metrics" || true
  count=$(awk '/^onionwatch_log_requests_total[{ ]/ {s += $NF} END {printf "%d", s}' "$work/last-get")
  [ "$count" -ge "$LINES" ] && break
  sleep 0.5
done
done_at=$(date +%s.%N)
follow_hwm=$(hwm_mib "$fpid")
echo "counted $count requests; RSS at start $base MiB; $(grep -E '^onionwatch_log_unique_circuits' "$work/last-get" | tr '\n' ' ')"
follow_row="| logs (follow) | $count | $(awk -v a="$start" -v b="$done_at" 'BEGIN {printf "%.2f", b - a}') | $follow_hwm |"
kill "$fpid"; wait "$fpid" 2>/dev/null || true

echo
echo "| command | requests counted | seconds | peak RSS (MiB) |"
echo "| --- | ---: | ---: | ---: |"
echo "$once_row"
echo "$follow_row"

echo
echo "-- watch /metrics under $CLIENTS slow clients"
fixture=crates/onionwatch-test-support/fixtures/tor-0.4.9-metricsport-2onions.txt
mport=$(free_port)
mkdir -p "$work/www"
cp "$fixture" "$work/www/metrics"
(cd "$work/www" && exec python3 -m http.server --bind 127.0.0.1 "$mport") >/dev/null 2>&1 & pids+=($!)
wait_port "$mport"
listen=$(free_port)
( [ -z "$NOFILE" ] || ulimit -n "$NOFILE"; RUST_LOG=warn exec "$OW" watch --metrics-port "p=127.0.0.1:$mport" --listen "127.0.0.1:$listen" \
  --interval 2 --timeout 2 2>"$work/watch.err" ) & wpid=$!; pids+=($wpid)
wait_port "$listen" "$wpid" "$work/watch.err"
sleep 3 # one scrape done, so /metrics carries the tor page
base=()
for i in $(seq 10); do base+=("$(get_time "http://127.0.0.1:$listen/metrics")"); sleep 0.2; done
bytes=$(wc -c <"$work/last-get")
$HOSTILE slow-clients "$CLIENTS" "127.0.0.1:$listen" "$DURATION" reconnect >"$work/slow.json" & spid=$!
sleep 2
under=() fails=0 maxfd=0
while kill -0 "$spid" 2>/dev/null; do
  fd=$(ls /proc/"$wpid"/fd | wc -l); [ "$fd" -gt "$maxfd" ] && maxfd=$fd
  t=$(get_time "http://127.0.0.1:$listen/metrics")
  if [ "$t" = fail ]; then fails=$((fails + 1)); else under+=("$t"); fi
  sleep 1
done
wait "$spid"
echo "slow clients: $(cat "$work/slow.json"); most open fds of watch meanwhile: $maxfd, fd limit ${NOFILE:-$(ulimit -n)}"
echo "scrape_up at the end: $(curl -s --max-time 10 "http://127.0.0.1:$listen/metrics" | grep '^onionwatch_scrape_up' || echo 'no answer')"
grep -v ' INFO ' "$work/watch.err" | sed 's/^[^ ]* *//' | cut -c1-200 | sort | uniq -c | sort -rn | head -5 || true
echo
echo "| /metrics GET ($bytes bytes) | GETs | failed | median (s) | max (s) | watch peak RSS (MiB) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
echo "| alone | ${#base[@]} | 0 | $(echo "${base[*]}" | median) | $(echo "${base[*]}" | maxof) | |"
echo "| with $CLIENTS slow clients | ${#under[@]} | $fails | $(echo "${under[*]}" | median) | $(echo "${under[*]}" | maxof) | $(hwm_mib "$wpid") |"
