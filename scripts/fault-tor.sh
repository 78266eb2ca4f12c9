#!/usr/bin/env bash
# tor crashes (SIGKILL) and restarts under `onionwatch probe` (an existing
# tor, and the tor probe launched itself) and `onionwatch watch`, on a
# private Tor network (1 onion service) from the fault-tornet example of
# onionwatch-testnet, each RUNS times.
#
#   cargo build --release -p onionwatch
#   cargo build --release -p onionwatch-testnet --example fault-tornet
#   flock /tmp/ow-tornet.lock scripts/fault-tor.sh [DOWN_SECONDS=5] [RUNS=5]
#
# (OW=… and NETBIN=… choose other builds of the two programs.)
# Probe first: after hs0's restart the client may take minutes to find its
# new descriptor, which would be a figure about tor, not about probe.
# 1. probe (launch_tor: false, the network's client tor, 10 s between
#    rounds: tor takes NEWNYM at most every 10 s, and without it a new
#    round finds no HSDir left to ask) probes the onion service; the client
#    tor is killed, restarted DOWN_SECONDS later; the script polls probe's
#    exporter and prints the seconds until onion_service_reachable is 0,
#    then 1 again.
# 2. probe (launch_tor: true, its tor joined to the private network with
#    the client's DirAuthority and Testing lines): its tor (the probe
#    process's child) is killed; seconds from the kill until a round after
#    the relaunch (onionwatch_probe_tor_reconnects_total{kind="launched_tor"}
#    counts it) reports onion_service_reachable 1.
# 3. watch scrapes hs0's MetricsPort and control port every second (timeout
#    1 s). hs0 is killed with SIGKILL, restarted DOWN_SECONDS later; the
#    script polls watch's /metrics every 0.25 s and prints the seconds from
#    the kill until each collector's onionwatch_scrape_up is 0, and from the
#    restart until it is 1 again.
# For each: min / median / max over the runs, whether the process still
# runs afterwards, and its open file descriptors before the first kill and
# after the last recovery (a stuck connection or a leak shows as a growing
# count). Everything is bounded: each wait gives up after 240 s.
# Everything listens on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
DOWN=${1:-5}
RUNS=${2:-5}
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
read -r METRICS CONTROL SOCKS CCONTROL ONION NETDIR < <(python3 -c '
import json, sys
d = json.loads(open(sys.argv[1]).readline())
o = d["onions"][0]
print(o["metrics"], o["control"], d["client"]["socks"], d["client"]["control"], o["address"], d["dir"])' "$work/net.out")
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

# The min / median / max of the numbers given.
stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {printf "%s / %s / %s", a[1], a[int((NR + 1) / 2)], a[NR]}'; }
# The most frequent warnings of log file $1 (durations and ids blurred).
warnings() { grep -v '^$' "$1" | sed 's/^[^ ]* *//; s/[0-9][0-9.]*m\?s\b/…/g' | cut -c1-200 | sort | uniq -c | sort -rn | head -6 || true; }

# probe.yaml for the network's onion service, through the tor lines $1.
probe_yaml() {
  cat <<EOF
$1
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
}
R='^onion_service_reachable\{'

echo
echo "== probe (launch_tor: false), client tor killed and restarted, $RUNS times"
pport=$(free_port)
probe_yaml "launch_tor: false
tor_address: 127.0.0.1
socks_port: ${SOCKS##*:}
control_port: ${CCONTROL##*:}" >"$work/probe.yaml"
"$OW" probe -c "$work/probe.yaml" --log_level warning 2>"$work/probe.err" >/dev/null & ppid=$!; pids+=($ppid)
P="http://127.0.0.1:$pport/metrics"
wait_value "$P" "$R" 1
fd_before=$(fds "$ppid")
downs=() ups=()
for i in $(seq "$RUNS"); do
  k=$(now); net "kill client"
  wait_value "$P" "$R" 0; downs+=("$(since "$k")")
  sleep "$DOWN"
  r=$(now); net "restart client"
  wait_value "$P" "$R" 1; ups+=("$(since "$r")")
  echo "run $i: unreachable after ${downs[-1]} s, reachable ${ups[-1]} s after the restart"
done
sleep 3
kill -0 "$ppid" && alive=yes || alive=no
fd_after=$(fds "$ppid")
reconnects=$(awk '/^onionwatch_probe_tor_reconnects_total\{kind="control_connection"/ {print $NF}' "$work/last-get")
probe_row="| probe | client (SOCKS + control), $RUNS× | $(stats "${downs[@]}") | $(stats "${ups[@]}") | $alive | $fd_before → $fd_after | control connection re-opened ${reconnects:-0}× |"
warnings "$work/probe.err"
kill "$ppid"; wait "$ppid" 2>/dev/null || true

echo
echo "== probe (launch_tor: true), its own tor killed, $RUNS times"
pport=$(free_port)
{
  echo "launch_tor: true"
  echo "tor_address: 127.0.0.1"
  echo "socks_port: $(free_port)"
  echo "control_port: $(free_port)"
  echo "tor_config:"
  # The lines joining a tor to the private network, from its client's torrc.
  grep -E '^(TestingTorNetwork|DirAuthority|Testing|AssumeReachable|PathsNeededToBuildCircuits|V3AuthNIntervalsValid)' "$NETDIR/client/torrc" |
    sed "s/.*/  - '&'/"
} >"$work/tor-lines"
probe_yaml "$(cat "$work/tor-lines")" >"$work/probe-launch.yaml"
"$OW" probe -c "$work/probe-launch.yaml" --log_level warning 2>"$work/probe-launch.err" >/dev/null & ppid=$!; pids+=($ppid)
P="http://127.0.0.1:$pport/metrics"
wait_value "$P" "$R" 1
fd_before=$(fds "$ppid")
ups=()
for i in $(seq "$RUNS"); do
  tpid=$(pgrep -P "$ppid" -x tor)
  k=$(now); kill -KILL "$tpid"
  # The round after the kill launches tor again, then probes: the onion
  # service may never be reported unreachable.
  wait_value "$P" '^onionwatch_probe_tor_reconnects_total\{kind="launched_tor"' "$i"
  wait_value "$P" "$R" 1; ups+=("$(since "$k")")
  echo "run $i: tor $tpid killed, reachable after a relaunch ${ups[-1]} s later (tor $(pgrep -P "$ppid" -x tor))"
done
sleep 3
kill -0 "$ppid" && alive=yes || alive=no
fd_after=$(fds "$ppid")
launch_row="| probe | its own launched tor, $RUNS× | – | $(stats "${ups[@]}") (from the SIGKILL) | $alive | $fd_before → $fd_after | tor launched again $RUNS× |"
warnings "$work/probe-launch.err"
kill "$ppid"; wait "$ppid" 2>/dev/null || true

echo
echo "== watch, hs0 killed and restarted, $RUNS times"
listen=$(free_port)
RUST_LOG=warn "$OW" watch --metrics-port "p=$METRICS" --control-port "p=$CONTROL" \
  --listen "127.0.0.1:$listen" --interval 1 --timeout 1 2>"$work/watch.err" & wpid=$!; pids+=($wpid)
M="http://127.0.0.1:$listen/metrics"
UM='^onionwatch_scrape_up\{collector="tor_metrics"'
UC='^onionwatch_scrape_up\{collector="tor_control"'
wait_value "$M" "$UM" 1
wait_value "$M" "$UC" 1
fd_before=$(fds "$wpid")
dm=() dc=() um=() uc=()
for i in $(seq "$RUNS"); do
  k=$(now); net "kill hs0"
  wait_value "$M" "$UM" 0; dm+=("$(since "$k")")
  wait_value "$M" "$UC" 0; dc+=("$(since "$k")")
  sleep "$DOWN"
  r=$(now); net "restart hs0"
  wait_value "$M" "$UM" 1; um+=("$(since "$r")")
  wait_value "$M" "$UC" 1; uc+=("$(since "$r")")
  echo "run $i: MetricsPort 0 after ${dm[-1]} s, 1 ${um[-1]} s after the restart; control port 0 after ${dc[-1]} s, 1 after ${uc[-1]} s"
done
sleep 3
kill -0 "$wpid" && alive=yes || alive=no
fd_after=$(fds "$wpid")
warnings "$work/watch.err"
# watch inherited fd 7: it goes first, or the example never sees its stdin close.
kill "$wpid"; wait "$wpid" 2>/dev/null || true

echo
echo "| monitor | tor killed (SIGKILL) | seconds from SIGKILL to 0, min / median / max | seconds from restart to 1, min / median / max | still running | open fds before → after | counters |"
echo "| --- | --- | ---: | ---: | --- | --- | --- |"
echo "| watch | hs0 (MetricsPort), $RUNS× | $(stats "${dm[@]}") | $(stats "${um[@]}") | $alive | $fd_before → $fd_after | |"
echo "| watch | hs0 (control port), $RUNS× | $(stats "${dc[@]}") | $(stats "${uc[@]}") | $alive | $fd_before → $fd_after | |"
echo "$probe_row"
echo "$launch_row"
exec 7>&-
wait "$netpid" || true
