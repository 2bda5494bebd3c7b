#!/usr/bin/env bash
# Agent overhead, side by side with node_exporter 1.5 on this machine: both run for DURATION
# seconds (default 300) and are scraped by curl every INTERVAL seconds (default 10), as
# Prometheus would (gzip accepted); the agent runs in pull mode with no server. Reported per
# process: resident memory at its peak (VmHWM) and at the end (VmRSS), and CPU time
# (utime + stime of /proc/PID/stat, start-up included), then the agent's ratios against the
# targets in the design (RSS at most 0.5x node_exporter's, CPU time at most 1x).
#
# With TLS=1 the agent runs as it would against a secured server: in push mode to a local
# `ocelli server --tls-auto --auth` (not measured), enrolled with a join token and trusting the
# server's CA, pushing over https with its own credential, and serving its own endpoints over
# https with the server's certificate (curl scrapes them with the CA).
#
# Usage: cargo build --release -p ocelli && [TLS=1] bench/agent_overhead.sh
# Environment: DURATION, INTERVAL, OCELLI (default target/release/ocelli), NODE_EXPORTER
# (default /usr/bin/prometheus-node-exporter), AGENT_PORT (19101), NE_PORT (19100).
set -euo pipefail

DURATION=${DURATION:-300}
INTERVAL=${INTERVAL:-10}
OCELLI=${OCELLI:-target/release/ocelli}
NODE_EXPORTER=${NODE_EXPORTER:-/usr/bin/prometheus-node-exporter}
AGENT_PORT=${AGENT_PORT:-19101}
NE_PORT=${NE_PORT:-19100}

for bin in "$OCELLI" "$NODE_EXPORTER" curl; do
  command -v "$bin" >/dev/null || { echo "missing: $bin" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$NODE_EXPORTER" --web.listen-address="127.0.0.1:$NE_PORT" >"$work/node_exporter.log" 2>&1 &
ne_pid=$!
pids+=("$ne_pid")
agent_scheme=http
curl_tls=()
if [ "${TLS:-0}" = 1 ]; then
  SERVER_PORT=${SERVER_PORT:-19747}
  mkdir -p "$work/server"
  join=$("$OCELLI" token create --data-dir "$work/server" --namespace bench --join -o json \
    | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p')
  "$OCELLI" server --no-local-agent --listen "127.0.0.1:$SERVER_PORT" --data-dir "$work/server" \
    --tls-auto --auth >"$work/server.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 100); do [ -f "$work/server/tls/server.key" ] && break; sleep 0.1; done
  tls="$work/server/tls"
  for _ in $(seq 100); do
    curl -s -o /dev/null --cacert "$tls/ca.pem" "https://127.0.0.1:$SERVER_PORT/-/healthy" && break
    sleep 0.1
  done
  "$OCELLI" agent --mode push --server "https://127.0.0.1:$SERVER_PORT" --join-token "$join" \
    --ca-file "$tls/ca.pem" --tls-cert "$tls/server.pem" --tls-key "$tls/server.key" --ns bench \
    --listen "127.0.0.1:$AGENT_PORT" --interval "$INTERVAL" --data-dir "$work/agent" \
    >"$work/agent.log" 2>&1 &
  agent_scheme=https
  curl_tls=(--cacert "$tls/ca.pem")
else
  "$OCELLI" agent --mode pull --listen "127.0.0.1:$AGENT_PORT" --interval "$INTERVAL" \
    --data-dir "$work/agent" >"$work/agent.log" 2>&1 &
fi
agent_pid=$!
pids+=("$agent_pid")

wait_up() {
  for _ in $(seq 100); do
    curl -sf "${curl_tls[@]}" -o /dev/null "$1://127.0.0.1:$2/metrics" && return 0
    sleep 0.1
  done
  echo "nothing answers on port $2" >&2
  exit 1
}
wait_up http "$NE_PORT"
wait_up "$agent_scheme" "$AGENT_PORT"

# kB of a /proc/PID/status field
mem_kb() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
# CPU seconds (utime + stime) of a process; fields counted after the command name's ")"
cpu_s() {
  local hz
  hz=$(getconf CLK_TCK)
  sed 's/.*) //' "/proc/$1/stat" | awk -v hz="$hz" '{ printf "%.2f", ($12 + $13) / hz }'
}

rounds=$((DURATION / INTERVAL))
ne_bytes=0
agent_bytes=0
echo "running $rounds scrapes of each, every ${INTERVAL}s ..." >&2
for _ in $(seq "$rounds"); do
  t0=$(date +%s.%N)
  n=$(curl -sf -H 'Accept-Encoding: gzip' -o /dev/null -w '%{size_download}' "http://127.0.0.1:$NE_PORT/metrics")
  a=$(curl -sf "${curl_tls[@]}" -H 'Accept-Encoding: gzip' -o /dev/null -w '%{size_download}' "$agent_scheme://127.0.0.1:$AGENT_PORT/metrics")
  ne_bytes=$n
  agent_bytes=$a
  sleep "$(awk -v t0="$t0" -v i="$INTERVAL" -v now="$(date +%s.%N)" 'BEGIN { s = i - (now - t0); print (s > 0 ? s : 0) }')"
done

ne_hwm=$(mem_kb "$ne_pid" VmHWM)
ne_rss=$(mem_kb "$ne_pid" VmRSS)
ne_cpu=$(cpu_s "$ne_pid")
ag_hwm=$(mem_kb "$agent_pid" VmHWM)
ag_rss=$(mem_kb "$agent_pid" VmRSS)
ag_cpu=$(cpu_s "$agent_pid")

printf '%-15s %12s %12s %12s %14s\n' process "RSS max kB" "RSS end kB" "CPU s" "body gz bytes"
printf '%-15s %12s %12s %12s %14s\n' node_exporter "$ne_hwm" "$ne_rss" "$ne_cpu" "$ne_bytes"
printf '%-15s %12s %12s %12s %14s\n' ocelli-agent "$ag_hwm" "$ag_rss" "$ag_cpu" "$agent_bytes"
awk -v ah="$ag_hwm" -v nh="$ne_hwm" -v ar="$ag_rss" -v nr="$ne_rss" -v ac="$ag_cpu" -v nc="$ne_cpu" 'BEGIN {
  rh = ah / nh; rr = ar / nr; rc = (nc > 0 ? ac / nc : 0)
  printf "agent/node_exporter: RSS max %.2fx, RSS end %.2fx (target <= 0.5x: %s), CPU %.2fx (target <= 1x: %s)\n",
    rh, rr, (rh <= 0.5 && rr <= 0.5 ? "met" : "MISSED"), rc, (rc <= 1 ? "met" : "MISSED")
}'
