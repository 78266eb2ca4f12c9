#!/usr/bin/env bash
# Consecutive cold starts of the private Tor network: RUNS times
# `onionwatch testnet up --onions ONIONS --onions-per-tor PER_TOR --format json`,
# each alone under `flock /tmp/ow-tornet.lock` (other users of the lock run
# between two starts), timed from launch until its JSON line (every onion
# service reachable), then stopped with SIGINT.
#
#   cargo build --release -p onionwatch
#   scripts/testnet-starts.sh [RUNS=50] [ONIONS=20] [PER_TOR=20]
#
# BIN= another binary (e.g. target/debug/onionwatch); TOR= the tor binary;
# OUT= where the runs' directories go (default a new temporary directory).
# A ready run's directory is removed once it stopped (KEEP=1 keeps it); a
# failed run keeps its directory (every tor's notice.log) and onionwatch's
# stderr, and the script goes on.
# Every tor a run started is gone before the next run starts (checked by
# the pid files; a survivor is killed and reported). Prints one line per run,
# then "READY/STARTED ready; seconds min/median/max".
set -uo pipefail
self=$(realpath "$0")
cd "$(dirname "$self")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN=${BIN:-$CARGO_TARGET_DIR/release/onionwatch}
LOCK=/tmp/ow-tornet.lock

# One start, run under the lock: prints "ready SECONDS" or "failed SECONDS".
if [ "${1:-}" = --one ]; then
  dir=$2 onions=$3 per_tor=$4
  start=$(date +%s.%N)
  coproc OW { exec "$BIN" testnet up --onions "$onions" --onions-per-tor "$per_tor" \
    --format json --dir "$dir" --tor "${TOR:-tor}" 2>"$dir.stderr"; }
  pid=$OW_PID
  # onionwatch gives up itself after its --timeout (240 s) and exits.
  if read -r -t 300 line <&"${OW[0]}" && [ "${line:0:1}" = "{" ]; then
    status=ready
  else
    status=failed
  fi
  end=$(date +%s.%N)
  kill -INT "$pid" 2>/dev/null
  # Bounded: onionwatch kills its tors at once on SIGINT.
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null && echo "onionwatch $pid needed SIGKILL" >&2
  wait "$pid" 2>/dev/null
  for f in "$dir"/*/pid; do
    [ -f "$f" ] || continue
    p=$(cat "$f")
    if [ -n "$p" ] && [ "$(cat /proc/"$p"/comm 2>/dev/null)" = tor ]; then
      echo "tor $p ($f) still ran after the stop: killed" >&2
      kill -KILL "$p"
    fi
  done
  awk -v s="$status" -v a="$start" -v b="$end" 'BEGIN {printf "%s %.1f\n", s, b - a}'
  exit 0
fi

runs=${1:-50} onions=${2:-20} per_tor=${3:-20}
[ -x "$BIN" ] || { echo "no binary at $BIN: cargo build --release -p onionwatch (or BIN=)" >&2; exit 1; }
OUT=${OUT:-$(mktemp -d /tmp/ow-testnet-starts.XXXXXX)}
mkdir -p "$OUT"
echo "runs in $OUT; $BIN testnet up --onions $onions --onions-per-tor $per_tor" >&2
ready=0 started=0 times=()
for i in $(seq "$runs"); do
  dir=$OUT/run-$i
  read -r status secs < <(flock "$LOCK" "$self" --one "$dir" "$onions" "$per_tor")
  started=$((started + 1))
  if [ "$status" = ready ]; then
    ready=$((ready + 1))
    times+=("$secs")
    [ -n "${KEEP:-}" ] || rm -rf "$dir" "$dir.stderr"
    echo "run $i: ready in ${secs}s"
  else
    echo "run $i: FAILED after ${secs}s; logs kept in $dir, stderr in $dir.stderr"
    tail -n 5 "$dir.stderr" | sed 's/^/    /'
  fi
done
stats=$(printf '%s\n' "${times[@]}" | grep -v '^$' | sort -g |
  awk '{a[NR] = $1} END {if (NR) printf "%s/%s/%s", a[1], a[int((NR + 1) / 2)], a[NR]; else print "-"}')
echo "$ready/$started ready; seconds min/median/max $stats"
