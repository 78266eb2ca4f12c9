#!/usr/bin/env bash
# `onionwatch watch` against hostile sources: for each kind of hostile
# MetricsPort or control port (scripts/hostile.py serve MODE), one watch
# scrapes it every 2 s with a 2 s timeout for SECONDS, while this script
# GETs watch's /metrics once a second. Prints one Markdown row per source:
# watch's peak RSS (VmHWM from /proc), scrapes and failures, the last scrape
# duration and error (from /api/v1/targets), the /metrics GETs that
# answered and their median/max time, what the hostile server saw
# (connections, most open at once, bytes sent), and at the end the
# families watch dropped (onionwatch_scrape_dropped_families_total) and
# the tor_* samples it re-exports.
#
#   cargo build --release -p onionwatch
#   scripts/fault-hostile.sh [SECONDS=30] [MODE...]
#
# Everything listens on 127.0.0.1 and stops by itself after SECONDS per mode.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER=${1:-30}
shift || true
MODES=("$@")
[ ${#MODES[@]} -gt 0 ] || MODES=(big biglen series series50k series199k types badvalue duptype trickle silent silent-control)
. scripts/fault-lib.sh

echo "| source | watch peak RSS (MiB) | scrapes / failed | last scrape (s) | last error | /metrics answered | /metrics median / max (s) | /metrics bytes | server: connections / most open / MiB sent | families dropped / samples re-exported |"
echo "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- | --- |"
for mode in "${MODES[@]}"; do
  pids=()
  port=$(free_port)
  listen=$(free_port)
  smode=${mode%-control}
  $HOSTILE serve "$smode" "$port" "$work/$mode.stats" & pids+=($!)
  wait_port "$port"
  if [ "$mode" = silent-control ]; then
    target=(--control-port "hostile=127.0.0.1:$port")
  else
    target=(--metrics-port "hostile=127.0.0.1:$port")
  fi
  RUST_LOG=warn "$OW" watch "${target[@]}" --listen "127.0.0.1:$listen" \
    --interval 2 --timeout 2 2>"$work/$mode.log" & wpid=$!; pids+=($wpid)
  wait_port "$listen" "$wpid" "$work/$mode.log"
  times=() ok=0 n=0
  end=$((SECONDS + SECONDS_PER))
  while [ $SECONDS -lt $end ]; do
    kill -0 "$wpid" 2>/dev/null || { echo "watch died on $mode" >&2; cat "$work/$mode.log" >&2; exit 1; }
    t=$(get_time "http://127.0.0.1:$listen/metrics")
    n=$((n + 1))
    if [ "$t" != fail ]; then ok=$((ok + 1)); times+=("$t"); bytes=$(wc -c <"$work/last-get"); fi
    sleep 1
  done
  hwm=$(hwm_mib "$wpid")
  curl -s --max-time 10 -o "$work/last-get" "http://127.0.0.1:$listen/metrics" || true
  dropped=$(awk '/^onionwatch_scrape_dropped_families_total/ {s += $NF} END {printf "%d", s}' "$work/last-get")
  reexported=$(grep -c '^tor_' "$work/last-get" || true)
  curl -s --max-time 10 "http://127.0.0.1:$listen/api/v1/targets" >"$work/targets.json"
  read -r scrapes failures dur err < <(python3 - "$work/targets.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
t = d if isinstance(d, list) else d.get("targets", d)
t = t[0]
err = (t.get("last_error") or "-").replace("|", "/").replace("\n", " ")
print(t["scrapes"], t["failures"], "%.2f" % (t.get("last_duration_seconds") or 0), err)
PY
)
  kill "$wpid"; wait "$wpid" 2>/dev/null || true
  srv=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("%d / %d / %.1f" % (s["connections"], s["max_open"], s["bytes_sent"] / 2**20))' "$work/$mode.stats")
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "| $mode | $hwm | $scrapes / $failures | $dur | ${err:0:110} | $ok/$n | $(echo "${times[*]}" | median) / $(echo "${times[*]}" | maxof) | ${bytes:-0} | $srv | $dropped / $reexported |"
done
