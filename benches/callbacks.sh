#!/usr/bin/env bash
# Durable callback throughput with many calls in flight: a fresh `callmgr serve` (release build,
# provider = the built-in mock with a 1 h ring time, so no callback comes from it) dials CALLS
# calls (default 300,000, all in flight at once), then wrk sends one first outcome callback per
# call (PUT callback/, PICKED) on 64 connections for DURATION (default 15s).
#
#   bash benches/callbacks.sh [CALLS] [DURATION]
#
# Environment: CARGO_TARGET_DIR (default /work/target-carrier-bench), PORT (default 18100),
# CONNECTIONS (64), THREADS (4), CACHE_MB (storage.cache_size_mb, default 256), KEEP=1 keeps the
# temp dir. Prints the writer's commit statistics from the log when log level debug is asked
# (LOG=debug).
set -euo pipefail

calls=${1:-300000}
duration=${2:-15s}
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-/work/target-carrier-bench}
port=${PORT:-18100}
connections=${CONNECTIONS:-64}
threads=${THREADS:-4}
token=bench-token-12345
batch=10000

(cd "$root" && CARGO_TARGET_DIR="$target" cargo build --release --quiet)
bin="$target/release/callmgr"

work=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    if [ "${KEEP:-0}" != 1 ]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT

printf 'defaults: {max_attempts: 3, retry_interval_minutes: 60}\n' >"$work/retry.yaml"
cat >"$work/callmgr.yaml" <<CONF
listen: 127.0.0.1:$port
data_dir: $work/data
tokens: [$token]
max_concurrent_calls: $calls
max_calls_per_second: 1000000
duplicate_window: 0s
callback_timeout: 3h
provider: {url: builtin-mock, mock: {delay: 1h}}
workers: 64
retry_config: $work/retry.yaml
storage: {cache_size_mb: ${CACHE_MB:-256}}
limits: {writer_inbox_max: 65536, batch_max: $batch}
log: {level: "${LOG:-warn}", format: text}
CONF
"$bin" serve --config "$work/callmgr.yaml" >"$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
api() { curl -fsS -H "X-Auth-Token: $token" -H 'Content-Type: application/json' "$@"; }
campaign=$(api -d '{"name":"callback bench"}' "http://127.0.0.1:$port/api/v1/campaigns/" | sed -E 's/.*"id":([0-9]+).*/\1/')

# Accept the calls in bulk and keep their ids.
: >"$work/ids.txt"
for ((start = 0; start < calls; start += batch)); do
    n=$(( calls - start < batch ? calls - start : batch ))
    awk -v s="$start" -v n="$n" -v c="$campaign" 'BEGIN { printf "{\"campaign_id\":%d,\"phone_numbers\":[", c; for (i = 0; i < n; i++) printf "%s\"+1555%07d\"", (i ? "," : ""), s + i; print "]}" }' >"$work/batch.json"
    api --data-binary @"$work/batch.json" "http://127.0.0.1:$port/api/v1/bulk-initiate-calls/" | grep -o '"call_ids":\[[^]]*\]' | grep -oE '[0-9a-f-]{36}' >>"$work/ids.txt"
done
echo "accepted $(wc -l <"$work/ids.txt") calls"
started=$(date +%s)
while :; do
    in_flight=$(api "http://127.0.0.1:$port/api/v1/metrics/" | grep -oE '"current_concurrent_calls":[0-9]+' | cut -d: -f2)
    dialled_with_answer=$(api "http://127.0.0.1:$port/api/v1/metrics/" | grep -oE '"queue_depth":[0-9]+' | cut -d: -f2)
    [ "$in_flight" -ge "$calls" ] && [ "$dialled_with_answer" -eq 0 ] && break
    sleep 1
done
# Let the workers' last provider answers land before measuring.
sleep 5
echo "$calls calls in flight after $(( $(date +%s) - started )) s; store $(du -sh "$work/data" | cut -f1)"
shuf "$work/ids.txt" -o "$work/ids.txt" --random-source=<(yes)

server_cpu_before=$(ps -o times= -p "$server_pid")
IDS="$work/ids.txt" TOKEN="$token" THREADS="$threads" wrk -t"$threads" -c"$connections" -d"$duration" --latency -s "$root/benches/callbacks.lua" "http://127.0.0.1:$port" | tee "$work/wrk.txt"
echo "server: $(( $(ps -o times= -p "$server_pid") - server_cpu_before )) s CPU during the run, $(ps -o rss= -p "$server_pid") KiB RSS; store $(du -sh "$work/data" | cut -f1)"
api "http://127.0.0.1:$port/api/v1/metrics/" | grep -oE '"(current_concurrent_calls|writer_queue)":[0-9]+' | tr '\n' ' '; echo
