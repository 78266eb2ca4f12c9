#!/usr/bin/env bash
# Requests/s and latency through `onionwatch gateway` vs direct to the upstream
# vs Debian's nginx doing the same job (PROXY v1 in, X-Onion-CircuitID out).
#
#   apt-get install -y nginx      # once
#   scripts/bench-gateway.sh [DURATION_SECS=10] [CONNS=32] [ROUNDS=1]
#
# Everything listens on 127.0.0.1 and every load run stops by itself after
# 2 s of warm-up + DURATION_SECS. The same echo upstream (a small hyper
# server, 1 thread) answers all three; the load tool (1 thread) opens CONNS
# keep-alive connections, each with its own circuit id in its PROXY header.
# The gateway and nginx both get 2 workers (the machine's cores).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNS=${2:-32}
ROUNDS=${3:-1}
command -v nginx >/dev/null || { echo "nginx is missing: apt-get install -y nginx" >&2; exit 1; }

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet -p onionwatch --bin onionwatch
cargo build --release --quiet -p onionwatch-gateway --example gateway-bench
BENCH=$CARGO_TARGET_DIR/release/examples/gateway-bench
OW=$CARGO_TARGET_DIR/release/onionwatch

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

UP=$($BENCH free-port); GW=$($BENCH free-port); NG=$($BENCH free-port)

$BENCH upstream --listen 127.0.0.1:$UP & pids+=($!)
$BENCH wait 127.0.0.1:$UP
RUST_LOG=warn $OW gateway --listen 127.0.0.1:$GW --upstream 127.0.0.1:$UP & pids+=($!)
$BENCH wait 127.0.0.1:$GW

. scripts/gateway-nginx.conf.sh
gateway_nginx_conf "$work" "$UP" "$NG" 2 >"$work/nginx.conf"
nginx -c "$work/nginx.conf"
$BENCH wait 127.0.0.1:$NG

echo "== what the upstream sees"
echo "-- gateway:"; $BENCH check --target 127.0.0.1:$GW --proxy | grep -i '^x-onion'
echo "-- nginx:";   $BENCH check --target 127.0.0.1:$NG --proxy | grep -i '^x-onion'

# CPU time (user + system, in clock ticks) of processes and all their threads:
# the servers' CPU per request is steadier than wall-clock figures on a
# shared machine.
ticks() {
  local t=0 p f
  for p in "$@"; do
    for f in /proc/"$p"/task/*/stat; do
      # Fields after the ")" that ends the command name: utime is the 12th, stime the 13th.
      set -- $(sed 's/.*) //' "$f")
      t=$((t + ${12} + ${13}))
    done
  done
  echo "$t"
}
HZ=$(getconf CLK_TCK)
GW_PID=${pids[1]}
NG_PIDS=$(cat "$work/nginx.pid"; pgrep -P "$(cat "$work/nginx.pid")")

# load NAME TARGET [--proxy] -- SERVER_PIDS...: one load run, then the
# servers' CPU time per answered request, warm-up included on both sides
# (the echo upstream's share is the same in every run).
load() {
  local name=$1 target=$2 proxy=$3; shift 4
  local before out after answered
  before=$(ticks "$@")
  out=$($BENCH load --target "$target" $proxy --conns "$CONNS" --duration "$DURATION")
  after=$(ticks "$@")
  answered=$(sed -n 's/.* answered=\([0-9]*\).*/\1/p' <<<"$out")
  echo "$name $out cpu_per_request=$(( (after - before) * 1000000 / HZ / (answered > 0 ? answered : 1) ))us" | tee -a "$work/runs"
}

echo "== load: $CONNS connections, ${DURATION} s each (after 2 s warm-up), $ROUNDS round(s)"
for round in $(seq "$ROUNDS"); do
  echo "-- round $round"
  # The upstream is the "server" of the direct run.
  load direct 127.0.0.1:$UP "" -- "${pids[0]}"
  load gateway 127.0.0.1:$GW --proxy -- "$GW_PID"
  load nginx 127.0.0.1:$NG --proxy -- $NG_PIDS
done

# Medians over the rounds (rounds interleave the three, so a slow spell on
# a shared machine hits all of them), and the issue's two comparisons.
echo "== medians of $ROUNDS round(s), $CONNS connection(s)"
awk '
  function field(k,   i) { for (i = 2; i <= NF; i++) if (index($i, k "=") == 1) { v = substr($i, length(k) + 2); sub(/us$/, "", v); return v + 0 } }
  function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
    return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
  }
  { n[$1]++; rps[$1, n[$1]] = field("rps"); p50[$1, n[$1]] = field("p50"); p99[$1, n[$1]] = field("p99"); cpu[$1, n[$1]] = field("cpu_per_request") }
  END {
    split("direct gateway nginx", names, " ")
    for (k = 1; k <= 3; k++) {
      t = names[k]
      for (i = 1; i <= n[t]; i++) { a[i] = rps[t, i] }; m_rps[t] = median(a, n[t])
      for (i = 1; i <= n[t]; i++) { a[i] = p50[t, i] }; m_p50[t] = median(a, n[t])
      for (i = 1; i <= n[t]; i++) { a[i] = p99[t, i] }; m_p99[t] = median(a, n[t])
      for (i = 1; i <= n[t]; i++) { a[i] = cpu[t, i] }; m_cpu[t] = median(a, n[t])
      printf "%-8s rps=%d p50=%dus p99=%dus cpu_per_request=%dus\n", t, m_rps[t], m_p50[t], m_p99[t], m_cpu[t]
    }
    printf "gateway vs nginx requests/s: %+.1f%%\n", (m_rps["gateway"] / m_rps["nginx"] - 1) * 100
    printf "p99 overhead vs direct: gateway %.2f ms, nginx %.2f ms\n", (m_p99["gateway"] - m_p99["direct"]) / 1000, (m_p99["nginx"] - m_p99["direct"]) / 1000
  }' "$work/runs"
