#!/usr/bin/env bash
# Durable callback throughput with many calls in flight: a fresh `callmgr serve` (release build,
# provider = the built-in mock with a 1 h ring time, so no callback comes from it) dials CALLS
# calls (default 300,000, all in flight at once), then wrk sends one first outcome callback per
# call (PUT callback/, PICKED) on 64 connections for DURATION (default 15s).
#
#   bash benches/callbacks.sh [CALLS] [DURATION]
#
# Environment: BIN (a callmgr binary to measure instead of building this tree),
# CARGO_TARGET_DIR (default /work/target-carrier-bench), PORT (default 18100),
# CONNECTIONS (64), THREADS (4), ORDER (random or dial, see below), CACHE_MB (storage.cache_size_mb, default 256), KEEP=1 keeps the
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

if [ -n "${BIN:-}" ]; then
    bin=$BIN
else
    (cd "$root" && CARGO_TARGET_DIR="$target" cargo build --release --quiet)
    bin="$target/release/callmgr"
fi

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
# Measure only once every dial request was sent and its answer committed: otherwise the workers
# and the writer are still busy with the dials during the run.
while :; do
    sent=$(api "http://127.0.0.1:$port/metrics" | grep -E '^callmgr_provider_request_duration_seconds_count' | awk '{print $2}')
    [ "${sent:-0}" -ge "$calls" ] && break
    sleep 1
done
until [ "$(api "http://127.0.0.1:$port/api/v1/metrics/" | grep -oE '"writer_queue":[0-9]+' | cut -d: -f2)" -eq 0 ]; do sleep 0.2; done
sleep 2
echo "$calls calls in flight, every dial answered, after $(( $(date +%s) - started )) s; store $(du -sh "$work/data" | cut -f1)"
# ORDER=random (default): callbacks in an order unrelated to the dials, the worst case for the
# store's indexes; ORDER=dial: in the order the calls were dialled, as a provider's callbacks
# mostly come (ring and talk times differ by seconds to minutes).
if [ "${ORDER:-random}" = random ]; then
    shuf "$work/ids.txt" -o "$work/ids.txt" --random-source=<(yes)
fi

server_cpu_before=$(ps -o times= -p "$server_pid")
IDS="$work/ids.txt" TOKEN="$token" THREADS="$threads" wrk -t"$threads" -c"$connections" -d"$duration" --latency -s "$root/benches/callbacks.lua" "http://127.0.0.1:$port" | tee "$work/wrk.txt"
echo "server: $(( $(ps -o times= -p "$server_pid") - server_cpu_before )) s CPU during the run, $(ps -o rss= -p "$server_pid") KiB RSS; store $(du -sh "$work/data" | cut -f1)"
api "http://127.0.0.1:$port/api/v1/metrics/" | grep -oE '"(current_concurrent_calls|writer_queue)":[0-9]+' | tr '\n' ' '; echo
