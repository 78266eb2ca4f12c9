#!/usr/bin/env bash
# Cold-start time of the private Tor network: seconds from launching
# `onionwatch testnet up --onions N --format json` until its JSON line (every
# onion service reachable), over RUNS runs, then the median.
# Usage: scripts/bench-testnet-start.sh [RUNS] [ONIONS]   (needs the release binary in ${CARGO_TARGET_DIR:-target}/release, or BIN=)
set -euo pipefail
runs=${1:-3}
onions=${2:-3}
bin=${BIN:-${CARGO_TARGET_DIR:-target}/release/onionwatch}
times=()
for i in $(seq "$runs"); do
  start=$(date +%s.%N)
  coproc OW { exec "$bin" testnet up --onions "$onions" --format json 2>/dev/null; }
  read -r -t 180 line <&"${OW[0]}" || { echo "run $i: no JSON line" >&2; kill "$OW_PID"; exit 1; }
  end=$(date +%s.%N)
  kill -INT "$OW_PID"; wait "$OW_PID" || true
  t=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.1f", b - a}')
  echo "run $i: ${t}s"
  times+=("$t")
done
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print "median: " a[int((NR+1)/2)] "s over " NR " runs"}'
