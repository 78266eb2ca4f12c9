#!/usr/bin/env bash
# tor crashes (SIGKILL) and restarts under `onionwatch watch` and
# `onionwatch probe` (with `launch_tor: false`), on a private Tor network
# (1 onion service) from the fault-tornet example of onionwatch-testnet.
#
#   cargo build --release -p onionwatch
#   cargo build --release -p onionwatch-testnet --example fault-tornet
#   flock /tmp/ow-tornet.lock scripts/fault-tor.sh [DOWN_SECONDS=5]
#
# Probe first: after hs0's restart the client may take minutes to find its
# new descriptor, which would be a figure about tor, not about probe.
# 1. watch scrapes hs0's MetricsPort and control port every second (timeout
#    1 s). hs0 is killed with SIGKILL, restarted DOWN_SECONDS later; the script
#    polls watch's /metrics every 0.25 s and prints the seconds from the kill
#    until each collector's onionwatch_scrape_up is 0, and from the restart
#    until it is 1 again.
# 2. probe (launch_tor: false, the network's client tor, 10 s between
#    rounds: tor takes NEWNYM at most every 10 s, and without it a new
#    round finds no HSDir left to ask) probes the onion service; the client tor is killed, restarted
#    DOWN_SECONDS later; the script polls probe's exporter and prints the
#    seconds until onion_service_reachable is 0, then 1 again.
# For both: the process is still running afterwards, and its open file
# descriptors before the kill and after the recovery (a stuck connection
# or a leak shows as a growing count). Everything is bounded: each wait
# gives up after 240 s. Everything listens on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
DOWN=${1:-5}
. scripts/fault-lib.sh
NETBIN=${NETBIN:-$CARGO_TARGET_DIR/release/examples/fault-tornet}
[ -x "$NETBIN" ] || { echo "build it: cargo build --release -p onionwatch-testnet --example fault-tornet" >&2; exit 1; }

mkfifo "$work/net.in"
"$NETBIN" 1 <"$work/net.in" >"$work/net.out" 2>"$work/net.err" & netpid=$!; pids+=($netpid)
exec 7>"$work/net.in"  # keeps the example's stdin open; closing it stops the network
t0=$SECONDS
until [ -s "$work/net.out" ]; do
  kill -0 "$netpid" 2>/dev/null || { cat "$work/net.err" >&2; exit 1; }
  [ $((SECONDS - t0)) -lt 300 ] || { echo "network not ready in 300 s" >&2; exit 1; }
  sleep 1
done
echo "network ready in $((SECONDS - t0)) s"
read -r METRICS CONTROL SOCKS CCONTROL ONION < <(python3 -c '
import json, sys
d = json.loads(open(sys.argv[1]).readline())
o = d["onions"][0]
print(o["metrics"], o["control"], d["client"]["socks"], d["client"]["control"], o["address"])' "$work/net.out")
lines_out=1
net() { # send a command to the example, wait for its answer
  echo "$1" >&7
  lines_out=$((lines_out + 1))
  until [ "$(wc -l <"$work/net.out")" -ge $lines_out ]; do sleep 0.05; done
  tail -1 "$work/net.out" | grep -qx ok || { echo "net $1: $(tail -1 "$work/net.out")" >&2; exit 1; }
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }
fds() { ls /proc/"$1"/fd | wc -l; }

# Wait (0.25 s steps, 240 s at most) until every line of GET $1 matching
# regex $2 ends in value $3 (and at least one matches).
wait_value() {
  local i
  for i in $(seq 960); do
    if curl -s --max-time 5 -o "$work/last-get" "$1" 2>/dev/null &&
      grep -E "$2" "$work/last-get" >"$work/match" && awk -v v="$3" '$NF != v {exit 1}' "$work/match"; then
      :
    else
      sleep 0.25; continue
    fi
    grep -q . "$work/match" && return 0
    sleep 0.25
  done
  echo "timeout waiting for $2 = $3 on $1" >&2
  return 1
}

echo
echo "== probe (launch_tor: false), client tor killed"
pport=$(free_port)
cat >"$work/probe.yaml" <<EOF
launch_tor: false
tor_address: 127.0.0.1
socks_port: ${SOCKS##*:}
control_port: ${CCONTROL##*:}
loop: true
interval: 0
sleep: 10
shuffle: false
randomize: false
new_circuit: true
descriptor_timeout: 30
http_connect_timeout: 30
http_read_timeout: 30
prometheus_exporter: true
prometheus_exporter_port: $pport
endpoints:
  site:
    address: '$ONION'
    protocol: http
    port: 80
    paths:
      - path: '/'
        allowed_statuses: [200]
EOF
"$OW" probe -c "$work/probe.yaml" --log_level warning 2>"$work/probe.err" >/dev/null & ppid=$!; pids+=($ppid)
P="http://127.0.0.1:$pport/metrics"
wait_value "$P" '^onion_service_reachable\{' 1
fd_before=$(fds "$ppid")
k=$(now); net "kill client"
wait_value "$P" '^onion_service_reachable\{' 0; down_p=$(since "$k")
sleep "$DOWN"
r=$(now); net "restart client"
wait_value "$P" '^onion_service_reachable\{' 1; up_p=$(since "$r")
sleep 3
kill -0 "$ppid" && alive=yes || alive=no
fd_after=$(fds "$ppid")
grep -v '^$' "$work/probe.err" | sed 's/^[^ ]* *//' | cut -c1-220 | sort | uniq -c | sort -rn | head -5 || true

echo
echo "== watch, hs0 killed"
listen=$(free_port)
RUST_LOG=warn "$OW" watch --metrics-port "p=$METRICS" --control-port "p=$CONTROL" \
  --listen "127.0.0.1:$listen" --interval 1 --timeout 1 2>"$work/watch.err" & wpid=$!; pids+=($wpid)
M="http://127.0.0.1:$listen/metrics"
wait_value "$M" '^onionwatch_scrape_up\{collector="tor_metrics"' 1
wait_value "$M" '^onionwatch_scrape_up\{collector="tor_control"' 1
fd_before=$(fds "$wpid")
k=$(now); net "kill hs0"
wait_value "$M" '^onionwatch_scrape_up\{collector="tor_metrics"' 0; down_m=$(since "$k")
wait_value "$M" '^onionwatch_scrape_up\{collector="tor_control"' 0; down_c=$(since "$k")
sleep "$DOWN"
r=$(now); net "restart hs0"
wait_value "$M" '^onionwatch_scrape_up\{collector="tor_metrics"' 1; up_m=$(since "$r")
wait_value "$M" '^onionwatch_scrape_up\{collector="tor_control"' 1; up_c=$(since "$r")
sleep 3
kill -0 "$wpid" && alive=yes || alive=no
fd_after=$(fds "$wpid")
watch_rows=("| watch | hs0 (MetricsPort) | $down_m | $up_m | $alive | $fd_before → $fd_after |"
  "| watch | hs0 (control port) | $down_c | $up_c | $alive | $fd_before → $fd_after |")
grep -E 'scrape (failed|works again)' "$work/watch.err" | sed 's/^[^ ]* *//' | cut -c1-220 || true

echo
echo "| monitor | tor killed | seconds from SIGKILL to 0 | seconds from restart to 1 | still running | open fds before → after |"
echo "| --- | --- | ---: | ---: | --- | --- |"
printf '%s\n' "${watch_rows[@]}"
echo "| probe | client (SOCKS + control) | $down_p | $up_p | $alive | $fd_before → $fd_after |"
exec 7>&-
wait "$netpid" || true
