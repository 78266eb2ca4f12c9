#!/usr/bin/env bash
# onionwatch's access-log parser + analytics against mtail on the same
# synthetic combined log with circuit-id addresses, both pinned to one core.
# Prints each run (wall time, CPU time, peak RSS), then a table of medians and
# checks that both counted the same requests by status.
#
# Usage: scripts/bench-logs.sh [LINES] [RUNS]      (defaults: 2000000 3)
# Needs: target/release/onionwatch (or BIN=...), mtail and /usr/bin/time
#   (apt-get install -y mtail time), python3. The log is generated under /tmp
#   and deleted afterwards unless KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-2000000}
runs=${2:-3}
bin=${BIN:-target/release/onionwatch}
core=${CORE:-1}
work=$(mktemp -d /tmp/onionwatch-bench-logs.XXXXXX)
log=$work/access.log
cleanup() { if [ "${KEEP:-0}" = 1 ]; then echo "kept $log"; else rm -rf "$work"; fi; }
trap cleanup EXIT

for tool in "$bin" mtail /usr/bin/time taskset python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (see the usage comment)" >&2; exit 1; }
done

echo "generating $lines lines: scripts/gen-access-log.py $lines > $log"
python3 scripts/gen-access-log.py "$lines" > "$log"
echo "$(du -m "$log" | cut -f1) MiB; mtail $(mtail --version | head -1 | awk '{print $3}'); $(nproc) cores, pinned to core $core"
cat "$log" > /dev/null # page cache

ow_cmd=(taskset -c "$core" "$bin" logs --once --format json "$log")
mt_cmd=(taskset -c "$core" mtail --one_shot --one_shot_format prometheus
        --progs scripts/bench-logs --logs "$log" --logtostderr=false)

# run NAME OUT CMD...: one timed run; prints "wall cpu rss_kib".
run() {
  local out=$1; shift
  /usr/bin/time -v -o "$work/time" "$@" > "$out" 2> "$work/stderr" || {
    echo "failed: $*" >&2; cat "$work/stderr" >&2; exit 1; }
  awk -F': ' '
    /Elapsed \(wall clock\)/ { n = split($2, p, ":"); w = 0; for (i = 1; i <= n; i++) w = w * 60 + p[i] }
    /User time/ { u = $2 } /System time/ { s = $2 }
    /Maximum resident set size/ { r = $2 }
    END { printf "%.2f %.2f %d\n", w, u + s, r }' "$work/time"
}

declare -A wall cpu rss
for name in onionwatch mtail; do
  for i in $(seq "$runs"); do
    if [ "$name" = onionwatch ]; then
      read -r w c r < <(run "$work/$name.out" "${ow_cmd[@]}")
    else
      read -r w c r < <(run "$work/$name.out" "${mt_cmd[@]}")
    fi
    echo "$name run $i: wall ${w}s cpu ${c}s peak RSS $((r / 1024)) MiB"
    wall[$name]+="$w "; cpu[$name]+="$c "; rss[$name]+="$r "
  done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

# Both must have counted the same requests by status.
python3 - "$work/onionwatch.out" "$work/mtail.out" <<'PY'
import json, re, sys
ow = json.load(open(sys.argv[1]))["requests_by_status"]
mt = {m[1]: int(float(m[2])) for m in re.finditer(r'requests_total\{[^}]*status="(\d+)"\} (\S+)', open(sys.argv[2]).read())}
if ow != mt:
    sys.exit(f"counts differ:\nonionwatch {ow}\nmtail      {mt}")
print(f"same requests by status from both ({sum(ow.values())} requests)")
PY

echo
echo "| tool | lines | wall (s, median of $runs) | CPU (s) | lines/s | peak RSS (MiB) |"
echo "| --- | --- | --- | --- | --- | --- |"
for name in onionwatch mtail; do
  w=$(echo "${wall[$name]}" | median); c=$(echo "${cpu[$name]}" | median)
  r=$(echo "${rss[$name]}" | tr ' ' '\n' | grep . | sort -n | tail -1)
  lps=$(awk -v l="$lines" -v w="$w" 'BEGIN {printf "%.0f", l / w}')
  echo "| $name | $lines | $w | $c | $lps | $((r / 1024)) |"
  eval "lps_$name=$lps"
done
# shellcheck disable=SC2154
awk -v a="$lps_onionwatch" -v b="$lps_mtail" 'BEGIN {printf "\nonionwatch / mtail lines per second: %.1fx\n", a / b}'
