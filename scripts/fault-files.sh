#!/usr/bin/env bash
# nginx stopped and started, its log directory made unreadable (across a
# rotation) and readable again, and watch's --log-state directory made
# read-only and writable again, under `onionwatch watch`; every step checks
# the exact number of requests watch counted against the number sent.
#
#   apt-get install -y nginx      # once
#   cargo build --release -p onionwatch
#   scripts/fault-files.sh [REQUESTS=1000]
#
# watch runs as `nobody` (setpriv), so that file modes bind it (root ignores
# them); nginx runs as root and keeps writing its log whatever the modes.
# Each phase sends REQUESTS requests (one curl, URL globbing) and waits
# (0.25 s steps, 60 s at most) until watch's onionwatch_log_requests_total
# equals what was sent (the table shows what it reached). nginx stopped
# and started: seconds until watch's nginx_up is 0, then 1 (1 s scrapes).
# The last phase restarts watch: with the positions it saved, the new
# process counts exactly the requests sent while it was down.
# Everything listens on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
command -v nginx >/dev/null || { echo "nginx is missing: apt-get install -y nginx" >&2; exit 1; }
. scripts/fault-lib.sh
chmod 755 "$work"
# nobody must reach the binary.
OWRUN=$work/onionwatch
cp "$OW" "$OWRUN"
chmod 755 "$OWRUN"
mkdir -p "$work/logs" "$work/state"
chown nobody: "$work/state"
NP=$(free_port)
cat >"$work/nginx.conf" <<EOF
daemon on;
# Workers as root: they reopen the log (SIGUSR1) whatever the directory's mode.
user root root;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 256; }
http {
  access_log $work/logs/access.log combined;
  server {
    listen 127.0.0.1:$NP;
    location = /nginx_status { stub_status; access_log off; }
    location / { return 200 "ok\n"; }
  }
}
EOF
nginx_start() { nginx -c "$work/nginx.conf"; wait_port "$NP"; }
nginx_stop() { kill -QUIT "$(cat "$work/nginx.pid")"; while [ -e "$work/nginx.pid" ]; do sleep 0.05; done; }
trap 'nginx_stop 2>/dev/null || true; cleanup' EXIT
nginx_start

listen=$(free_port)
M="http://127.0.0.1:$listen/metrics"
start_watch() {
  setpriv --reuid=nobody --regid=nogroup --clear-groups -- env RUST_LOG=warn "$OWRUN" watch \
    --nginx-status "p=http://127.0.0.1:$NP/nginx_status" --access-log "p=$work/logs/access.log" \
    --log-state "$work/state/log-state.json" --listen "127.0.0.1:$listen" --interval 1 --timeout 1 \
    2>>"$work/watch.err" & wpid=$!; pids+=($wpid)
  wait_port "$listen" "$wpid" "$work/watch.err"
}
metric() { # sum of the samples of $1 in the last GET
  awk -v m="$1" '$1 == m || index($1, m "{") == 1 {s += $NF} END {printf "%d", s}' "$work/last-get"
}
get() { curl -s --max-time 5 -o "$work/last-get" "$M" || : >"$work/last-get"; }
send() { curl -s -o /dev/null "http://127.0.0.1:$NP/r/[1-$1]"; }
counted() { get; metric onionwatch_log_requests_total; }
# Wait until watch counted $1 requests; print what it counted.
wait_count() {
  local i c=0
  for i in $(seq 240); do c=$(counted); [ "$c" -ge "$1" ] && break; sleep 0.25; done
  sleep 1; counted
}
wait_up() { # $1: 0 or 1; print seconds
  local t0 i v
  t0=$(date +%s.%N)
  for i in $(seq 960); do
    get; v=$(grep -E '^nginx_up\{' "$work/last-get" | awk '{print $NF}')
    [ "$v" = "$1" ] && break
    sleep 0.25
  done
  awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}'
}
rows=()
row() { rows+=("| $1 | $2 | $3 | $4 | $5 |"); }
errs() { get; echo "read errors $(metric onionwatch_log_tail_read_errors_total), state save errors $(metric onionwatch_log_tail_state_save_errors_total)"; }

start_watch
sent=0
send "$N"; sent=$((sent + N))
row "baseline" $sent "$(wait_count $sent)" "$(errs)" ""

# nginx stopped and started.
nginx_stop
down=$(wait_up 0)
nginx_start
up=$(wait_up 1)
send "$N"; sent=$((sent + N))
row "nginx stopped, started" $sent "$(wait_count $sent)" "$(errs)" "nginx_up 0 after ${down} s, 1 after ${up} s"

# The log directory unreadable, the log rotated meanwhile, readable again.
chmod 000 "$work/logs"
send "$N"; sent=$((sent + N))
mv "$work/logs/access.log" "$work/logs/access.log.1"
kill -USR1 "$(cat "$work/nginx.pid")" # reopen: a new access.log
sleep 1
send "$N"; sent=$((sent + N))
sleep 5
during=$(counted)
e_during=$(errs)
chmod 755 "$work/logs"
row "log dir unreadable (rotated meanwhile), readable" $sent "$(wait_count $sent)" "$(errs)" "counted while unreadable: $during ($e_during)"

# The --log-state directory read-only, writable again.
chmod 555 "$work/state"
send "$N"; sent=$((sent + N))
c=$(wait_count $sent)
sleep 2
e_ro=$(errs)
chmod 755 "$work/state"
send "$N"; sent=$((sent + N))
row "state dir read-only, writable" $sent "$(wait_count $sent)" "$(errs)" "while read-only: $c counted, $e_ro"

# Restart: watch resumes from the saved positions: nothing counted twice or lost.
sleep 2
kill -TERM "$wpid"; wait "$wpid" 2>/dev/null || true
send "$N"; sent=$((sent + N))
start_watch
row "watch restarted (SIGTERM), $N more requests" "$N (new process)" "$(wait_count $N)" "$(errs)" "lines in the logs: $(cat "$work/logs"/access.log* | wc -l)"
kill -TERM "$wpid"; wait "$wpid" 2>/dev/null || true

echo "warnings watch logged:"
sed 's/^[^ ]* *//' "$work/watch.err" | cut -c1-200 | sort | uniq -c | sort -rn | head -8
echo
echo "| phase | requests sent (total) | watch counted | error counters after | notes |"
echo "| --- | ---: | ---: | --- | --- |"
printf '%s\n' "${rows[@]}"
