# Shared helpers of the scripts/fault-*.sh scripts (sourced, not run).
# Everything listens on 127.0.0.1; every process started is stopped by the
# EXIT trap of the script that sources this.

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
OW=${OW:-$CARGO_TARGET_DIR/release/onionwatch}
HOSTILE="python3 scripts/hostile.py"
[ -x "$OW" ] || { echo "no release binary at $OW: cargo build --release -p onionwatch" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  chmod -R u+rwX "$work" 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() { $HOSTILE free-port; }

# Wait (at most 20 s) until something listens on 127.0.0.1:$1; with a
# pid $2, give up as soon as it has exited (and show log file $3).
wait_port() {
  local i
  for i in $(seq 200); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    if [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null; then
      echo "process $2 exited before listening on 127.0.0.1:$1" >&2
      [ -n "${3:-}" ] && cat "$3" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1" >&2
  return 1
}

# Peak resident set (VmHWM) and current (VmRSS) of pid $1, in MiB.
hwm_mib() { awk '/^VmHWM/ {printf "%.1f", $2 / 1024}' /proc/"$1"/status; }
rss_mib() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' /proc/"$1"/status; }

# Seconds a GET of $1 takes (curl's time_total), or "fail".
get_time() {
  local t
  t=$(curl -s -o "$work/last-get" --max-time 10 -w '%{time_total}' "$1" 2>/dev/null) && echo "$t" || echo fail
}

# The value of the first sample of $1 matching regex $2 in the last GET.
sample() { grep -E "^$1(\{[^}]*$2[^}]*\})? " "$work/last-get" | head -1 | awk '{print $NF}'; }

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR] = $1} END {print (NR ? a[int((NR + 1) / 2)] : "-")}'; }
maxof() { tr ' ' '\n' | grep -v '^$' | sort -g | tail -1; }
