#!/usr/bin/env bash
# Durable initiate-call throughput and latency with wrk (64 connections by default) against a
# fresh `callmgr serve` whose campaign is paused (so only the accept-and-commit path is measured).
# Several binaries may be given: they run one after the other in the same session, so their
# figures compare (the box is noisy; compare within one run).
#
#   bash benches/wrk-initiate.sh [BINARY ...]         default: a release build of this tree
#
# Environment: CONNECTIONS (64), DURATION (15s), ROUNDS (1: each binary runs ROUNDS times,
# interleaved), DATA_DIR (a store to start from instead of an empty one: it is copied),
# EXTRA_YAML (appended to the config), RULES_YAML (the retry rules file; default: attempts and
# interval only, e.g. add calling hours), DNC (load this many do-not-call entries first, with
# `callmgr import --dnc`; binaries without a do-not-call list skip it and say so), PORT (18100),
# CARGO_TARGET_DIR (default /work/target-bench).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
port=${PORT:-18100}
token=bench-token-12345
connections=${CONNECTIONS:-64}
duration=${DURATION:-15s}
rounds=${ROUNDS:-1}

if [ $# -eq 0 ]; then
    target=${CARGO_TARGET_DIR:-/work/target-bench}
    (cd "$root" && CARGO_TARGET_DIR="$target" cargo build --release --quiet)
    set -- "$target/release/callmgr"
fi
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 2; }

work=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

run_one() {
    local bin=$1
    rm -rf "$work/data"
    if [ -n "${DATA_DIR:-}" ]; then cp -r "$DATA_DIR" "$work/data"; fi
    local rules='defaults: {max_attempts: 3, retry_interval_minutes: 60}'
    printf '%s\n' "${RULES_YAML:-$rules}" >"$work/retry.yaml"
    cat >"$work/callmgr.yaml" <<EOF
listen: 127.0.0.1:$port
data_dir: $work/data
tokens: [$token]
provider: {url: "http://127.0.0.1:9/unused"}
retry_config: $work/retry.yaml
duplicate_window: 1s
log: {level: warn}
${EXTRA_YAML:-}
EOF
    "$bin" serve --config "$work/callmgr.yaml" >"$work/serve.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 600); do
        curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
        kill -0 "$server_pid" 2>/dev/null || { echo "serve exited:"; cat "$work/serve.log"; exit 1; }
        sleep 0.1
    done
    local campaign
    campaign=$(curl -sf -H "X-Auth-Token: $token" -H 'Content-Type: application/json' \
        -d '{"name": "wrk", "is_active": false}' "http://127.0.0.1:$port/api/v1/campaigns/" | sed -E 's/.*"id":([0-9]+).*/\1/')
    local dnc_note="no do-not-call entries"
    if [ "${DNC:-0}" -gt 0 ]; then
        if "$bin" import --help 2>/dev/null | grep -q -- '--dnc'; then
            # UK mobile numbers: none of them is one wrk initiates (+1 2…), so every lookup misses,
            # as it does for almost every real call.
            [ -f "$work/dnc.csv" ] || awk -v n="$DNC" 'BEGIN { print "phone"; for (i = 0; i < n; i++) printf "+4477%08d\n", i }' >"$work/dnc.csv"
            local started=$SECONDS
            "$bin" import "$work/dnc.csv" --dnc --batch 10000 --url "http://127.0.0.1:$port" --token "$token" >"$work/import.log" 2>&1 \
                || { echo "import --dnc failed:"; tail -5 "$work/import.log"; exit 1; }
            dnc_note="$DNC do-not-call entries (loaded in $((SECONDS - started)) s)"
        else
            dnc_note="no do-not-call list in this binary"
        fi
    fi
    echo "== $bin (campaign $campaign, $connections connections, $duration, $dnc_note)"
    # The server's CPU time per request as well as the rate: on a shared, noisy box the rate
    # moves with the neighbours, the CPU each request costs much less.
    local ticks_before ticks_after output requests
    ticks_before=$(awk '{print $14 + $15}' "/proc/$server_pid/stat")
    output=$(CAMPAIGN=$campaign TOKEN=$token wrk -t2 -c"$connections" -d"$duration" --latency -s "$root/benches/initiate.lua" "http://127.0.0.1:$port")
    ticks_after=$(awk '{print $14 + $15}' "/proc/$server_pid/stat")
    grep -E "Requests/sec|Non-2xx|  50%|  99%|requests in" <<<"$output"
    requests=$(awk '/requests in/ {print $1}' <<<"$output")
    awk -v t=$((ticks_after - ticks_before)) -v hz="$(getconf CLK_TCK)" -v n="$requests" \
        'BEGIN { printf "  server CPU: %.1f s, %.1f µs per request\n", t / hz, t / hz * 1e6 / n }'
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

for _ in $(seq 1 "$rounds"); do
    for bin in "$@"; do
        run_one "$bin"
    done
done
