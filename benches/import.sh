#!/usr/bin/env bash
# Import throughput: `callmgr import` of a generated CSV (default 1,000,000 rows) into a fresh
# `callmgr serve` (release build), timed end to end. Target: 1M rows in under 30 s.
#
#   bash benches/import.sh [ROWS] [extra import flags, e.g. --batch 5000]
#
# Environment: CARGO_TARGET_DIR (default /work/target-bench, so that a release build does not
# block debug builds in target/), PORT (default 18000), KEEP=1 keeps the temp dir.
set -euo pipefail

rows=${1:-1000000}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-/work/target-bench}
port=${PORT:-18000}
token=bench-token-12345

(cd "$root" && CARGO_TARGET_DIR="$target" cargo build --release --quiet)
bin="$target/release/callmgr"

work=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    if [ "${KEEP:-0}" != 1 ]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT

# Numbers +1555NNNNNNN with a header and a timezone on every other row (a realistic file).
awk -v n="$rows" 'BEGIN { print "name,phone,timezone"; for (i = 0; i < n; i++) printf "row%d,+1555%07d,%s\n", i, i, (i % 2 ? "" : "America/New_York") }' >"$work/numbers.csv"
echo "generated $rows rows: $(du -h "$work/numbers.csv" | cut -f1)"

printf 'defaults: {max_attempts: 3, retry_interval_minutes: 60}\n' >"$work/retry.yaml"
cat >"$work/callmgr.yaml" <<EOF
listen: 127.0.0.1:$port
data_dir: $work/data
tokens: [$token]
provider: {url: builtin-mock}
retry_config: $work/retry.yaml
log: {level: warn, format: text}
EOF
"$bin" serve --config "$work/callmgr.yaml" >"$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
campaign=$(curl -fsS -H "X-Auth-Token: $token" -H 'Content-Type: application/json' -d '{"name":"import bench"}' "http://127.0.0.1:$port/api/v1/campaigns/" | sed -E 's/.*"id":([0-9]+).*/\1/')

server_cpu_before=$(ps -o times= -p "$server_pid")
start=$(date +%s%N)
TIMEFORMAT="import process: %R s wall, %U s user, %S s sys"
time "$bin" import "$work/numbers.csv" --campaign "$campaign" --url "http://127.0.0.1:$port" --token "$token" "$@"
end=$(date +%s%N)
ms=$(( (end - start) / 1000000 ))
echo "import wall time: $((ms / 1000)).$(printf %03d $((ms % 1000))) s for $rows rows"
echo "server: $(( $(ps -o times= -p "$server_pid") - server_cpu_before )) s CPU during the import, $(ps -o rss= -p "$server_pid") KiB RSS; store $(du -sh "$work/data" | cut -f1)"
