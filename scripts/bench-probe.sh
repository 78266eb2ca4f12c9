#!/usr/bin/env bash
# One probing round of 20 onion services (one tor hosting 20), Onionprobe 1.4.1
# vs `onionwatch probe`, on the same private Tor network, same config
# (rounds: 1, interval: 0, sleep: 0, no randomize, no shuffle): wall time and
# peak RSS from /usr/bin/time -v. Needs: tor, python3 with onionprobe==1.4.1,
# GNU time (apt-get install time), and a release build:
#   cargo build --release -p onionwatch && scripts/bench-probe.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${ONIONWATCH:-${CARGO_TARGET_DIR:-target}/release/onionwatch}
work=$(mktemp -d /tmp/bench-probe.XXXXXX)
net_pid=""
cleanup() { [ -n "$net_pid" ] && kill "$net_pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

"$bin" testnet up --onions 20 --onions-per-tor 20 --format json >"$work/net.json" 2>"$work/net.log" &
net_pid=$!
for _ in $(seq 1 600); do
  [ -s "$work/net.json" ] && break
  kill -0 "$net_pid" 2>/dev/null || { cat "$work/net.log"; exit 1; }
  sleep 0.5
done
[ -s "$work/net.json" ] || { echo "network not ready"; exit 1; }

python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
net = json.load(open(f"{work}/net.json"))
socks = net["client"]["socks"].rsplit(":", 1)[1]
control = net["client"]["control"].rsplit(":", 1)[1]
lines = [
    "launch_tor: false", "tor_address: 127.0.0.1", f"socks_port: {socks}",
    f"control_port: {control}", "loop: true", "rounds: 1", "interval: 0",
    "sleep: 0", "randomize: false", "shuffle: false", "prometheus_exporter: false",
    "endpoints:",
]
for i, o in enumerate(net["onions"]):
    lines += [f"  site{i:02}:", f"    address: {o['address']}", "    protocol: http",
              "    port: 80", "    paths:", "      - path: /", "        allowed_statuses: [200]"]
open(f"{work}/bench.yaml", "w").write("\n".join(lines) + "\n")
PY

run() {
  local label=$1; shift
  /usr/bin/time -v "$@" >"$work/$label.out" 2>"$work/$label.time" || true
  local wall rss
  wall=$(grep 'Elapsed (wall clock)' "$work/$label.time" | awk '{print $NF}')
  rss=$(grep 'Maximum resident set size' "$work/$label.time" | awk '{print $NF}')
  echo "$label: wall $wall, peak RSS ${rss} KiB, exit $(grep 'Exit status' "$work/$label.time" | awk '{print $NF}')"
}
# Warm-up: the first fetches of a fresh network are slower for whoever goes first.
"$bin" probe -c "$work/bench.yaml" --format json >/dev/null 2>&1 || true
run onionprobe onionprobe -c "$work/bench.yaml"
run onionwatch "$bin" probe -c "$work/bench.yaml" --format json
run onionwatch-c8 "$bin" probe -c "$work/bench.yaml" --format json --concurrency 8
echo "onionwatch results passed: $(grep -c '"passed":true' "$work/onionwatch.out")/20, with --concurrency 8: $(grep -c '"passed":true' "$work/onionwatch-c8.out")/20"
grep -c 'Status code is 200' "$work/onionprobe.time" | sed 's/^/onionprobe 200 responses: /'
