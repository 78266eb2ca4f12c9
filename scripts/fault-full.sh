#!/usr/bin/env bash
# The state directory full under `onionwatch logs --state` and `onionwatch
# watch --log-state --state-dir`: both keep their state on a small tmpfs,
# which is filled (dd until "No space left on device") while lines arrive,
# then emptied again; every phase checks the exact number of lines counted
# against the number written.
#
#   cargo build --release -p onionwatch
#   sudo scripts/fault-full.sh [LINES=1000]     # root: it mounts a tmpfs
#
# Phases: baseline; state dir full (LINES more lines in eight batches 5 s
# apart, watch sampling its dashboard history every second); space back (LINES
# more); both processes stopped (SIGTERM), LINES more written, started
# again: with the positions saved after the space came back, the new
# processes count exactly the lines written while they were down. The
# table shows what each counted, the state save error counters, whether
# it still ran, and watch's dashboard-history warnings. Everything listens
# on 127.0.0.1; the tmpfs is unmounted at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
[ "$(id -u)" = 0 ] || { echo "run as root (mount -t tmpfs)" >&2; exit 1; }
. scripts/fault-lib.sh
S=$work/state
mkdir -p "$S" "$work/logs"
mount -t tmpfs -o size=16m tmpfs "$S"
trap 'cleanup_full' EXIT
cleanup_full() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  umount "$S" 2>/dev/null || true
  cleanup
}
LOG=$work/logs/access.log
: >"$LOG"
written=0
write() { # append $1 combined lines with status $2 (200)
  awk -v n="$1" -v s="$written" -v st="${2:-200}" 'BEGIN { for (i = 0; i < n; i++)
    printf "127.0.0.1 - - [02/Dec/2026:01:00:00 +0000] \"GET /r/%d HTTP/1.1\" %d 3 \"-\" \"curl\"\n", s + i, st }' >>"$LOG"
  written=$((written + $1))
}
wl=$(free_port) ll=$(free_port)
start() {
  RUST_LOG=warn "$OW" watch --access-log "p=$LOG" --log-state "$S/watch-log-state.json" \
    --state-dir "$S/dashboard" --listen "127.0.0.1:$wl" --interval 1 --timeout 1 \
    2>>"$work/watch.err" & wpid=$!; pids+=($wpid)
  RUST_LOG=warn "$OW" logs --project p --state "$S/logs-state.json" --listen "127.0.0.1:$ll" "$LOG" \
    2>>"$work/logs.err" & lpid=$!; pids+=($lpid)
  wait_port "$wl" "$wpid" "$work/watch.err"
  wait_port "$ll" "$lpid" "$work/logs.err"
}
stop() { kill -TERM "$wpid" "$lpid"; wait "$wpid" "$lpid" 2>/dev/null || true; }
metric() { # sum of the samples of $2 at port $1
  curl -s --max-time 5 "http://127.0.0.1:$1/metrics" |
    awk -v m="$2" '$1 == m || index($1, m "{") == 1 {s += $NF} END {printf "%d", s}'
}
# Wait (0.25 s steps, 60 s at most) until both counted $1 requests.
wait_count() {
  local i
  for i in $(seq 240); do
    [ "$(metric "$wl" onionwatch_log_requests_total)" -ge "$1" ] &&
      [ "$(metric "$ll" onionwatch_log_requests_total)" -ge "$1" ] && break
    sleep 0.25
  done
  sleep 2
}
alive() { kill -0 "$1" 2>/dev/null && echo yes || echo no; }
history_warnings() {
  echo "not saved $(grep -c 'dashboard history not saved' "$work/watch.err"), saved again $(grep -c 'dashboard history saved again' "$work/watch.err")"
}
rows=()
row() { # phase, expected
  rows+=("| $1 | $2 | $(metric "$wl" onionwatch_log_requests_total) | $(metric "$wl" onionwatch_log_tail_state_save_errors_total) | $(alive "$wpid") | $(history_warnings) | $(metric "$ll" onionwatch_log_requests_total) | $(metric "$ll" onionwatch_log_tail_state_save_errors_total) | $(alive "$lpid") |")
}

start
write "$N"; wait_count "$written"
row "baseline" "$written"

# Fill the state directory.
dd if=/dev/zero of="$S/fill" bs=64k 2>/dev/null || true
df -h "$S" | tail -1
# Eight batches 5 s apart: a state save after each, dashboard samples meanwhile.
# New status classes make new dashboard series: its store has to grow.
for st in 301 404 500 200 301 404 500 200; do write $((N / 8)) "$st"; sleep 5; done
write $((N - N / 8 * 8)); wait_count "$written"
row "state dir full (40 s, 8 batches)" "$written"

# Space back.
rm "$S/fill"
write "$N"; wait_count "$written"
sleep 3
row "space back" "$written"

# Restart both: they resume from the positions saved since.
stop
before=$written
write "$N"
start
wait_count "$N"
rows+=("| both restarted (SIGTERM), $N more lines | $N (new processes) | $(metric "$wl" onionwatch_log_requests_total) | $(metric "$wl" onionwatch_log_tail_state_save_errors_total) | $(alive "$wpid") | $(history_warnings) | $(metric "$ll" onionwatch_log_requests_total) | $(metric "$ll" onionwatch_log_tail_state_save_errors_total) | $(alive "$lpid") |")
stop
echo "lines in the log: $(wc -l <"$LOG") (written before the restart: $before)"

echo "watch warnings:"
sed 's/^[^ ]* *//' "$work/watch.err" | cut -c1-220 | sort | uniq -c | sort -rn | head -6
echo "logs warnings:"
sed 's/^[^ ]* *//' "$work/logs.err" | cut -c1-220 | sort | uniq -c | sort -rn | head -6
echo
echo "| phase | lines written (total) | watch counted | watch state save errors | watch running | dashboard history warnings (watch) | logs counted | logs state save errors | logs running |"
echo "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |"
printf '%s\n' "${rows[@]}"
