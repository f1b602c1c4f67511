#!/usr/bin/env bash
# Scale figures for the data lifecycle, on one store: its size on disk, boot time to /readyz and
# RSS, durable initiate-call throughput and latency with wrk (64 connections) without and during
# a retention purge, the purge's duration, an online backup, and compaction.
#
#   benches/lifecycle.sh CALLS DAYS KEEP        e.g. benches/lifecycle.sh 50000000 200 160d
#
# seeds CALLS finished calls spread over the last DAYS days (`callmgr bench seed`), then purges
# those older than KEEP (160d of 200 days = the oldest fifth). Needs the release binary
# (cargo build --release), wrk and curl; the store, its backup and the archive go to a temporary
# folder under $TMPDIR (about 2.2 × CALLS × 300 bytes), removed at the end.
set -euo pipefail
CALLS=${1:?calls} DAYS=${2:?days} KEEP=${3:?retention, e.g. 160d}
BIN=$(realpath "${BIN:-target/release/callmgr}")
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=$(mktemp -d "${TMPDIR:-/tmp}/callmgr-lifecycle.XXXXXX")
TOKEN=bench-token-0123456789
PORT=${PORT:-18123}
URL=http://127.0.0.1:$PORT
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT

config() {  # $1: extra YAML
  printf 'listen: 127.0.0.1:%s\ndata_dir: %s/data\ntokens: [%s]\nprovider: {url: builtin-mock, mock: {delay: 1h}}\nretry_config: %s/retry.yaml\nlog: {level: warn}\n%s\n' \
    "$PORT" "$DIR" "$TOKEN" "$DIR" "$1" > "$DIR/callmgr.yaml"
}
start() {
  local t0; t0=$(date +%s.%N)
  "$BIN" serve --config "$DIR/callmgr.yaml" > "$DIR/serve.log" 2>&1 & PID=$!
  until curl -sf "$URL/readyz" > /dev/null; do sleep 0.01; done
  echo "boot to /readyz: $(echo "$(date +%s.%N) - $t0" | bc) s; RSS $(awk '/VmRSS/ {print $2/1024 " MiB"}' /proc/$PID/status)"
}
stop() { kill -TERM "$PID"; wait "$PID" || true; PID=; }
api() { curl -sf -H "X-Auth-Token: $TOKEN" -H 'Content-Type: application/json' "$@"; }
initiate_load() {  # $1: label
  CAMPAIGN=$CAMPAIGN TOKEN=$TOKEN wrk -t2 -c64 -d15s --latency -s "$HERE/initiate.lua" "$URL" > "$DIR/wrk.txt"
  echo "$1: $(awk '/Requests\/sec/ {print $2 " req/s"}' "$DIR/wrk.txt"), p50 $(awk '$1=="50%" {print $2}' "$DIR/wrk.txt"), p99 $(awk '$1=="99%" {print $2}' "$DIR/wrk.txt"), non-2xx: $(awk '/Non-2xx/ {print $5}' "$DIR/wrk.txt")"
}
retention() { api "$URL/api/v1/metrics/" | python3 -c 'import json,sys; r=json.load(sys.stdin)["retention"]; print(r["running"], r["purged_total"], r["last_run_at"] is not None)'; }

echo "defaults: {max_attempts: 3, retry_interval_minutes: 60}" > "$DIR/retry.yaml"
echo "== seed: $("$BIN" bench seed --data-dir "$DIR/data" --calls "$CALLS" --shape finished --days "$DAYS")"
echo "store on disk: $(stat -c %s "$DIR/data/callmgr.redb") bytes"

config ""
start
CAMPAIGN=$(api -X POST "$URL/api/v1/campaigns/" -d '{"name": "bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
api -X POST "$URL/api/v1/campaigns/$CAMPAIGN/pause/" > /dev/null
initiate_load "initiate, no purge"
stop

config "retention: {final_calls: $KEEP, archive_dir: archive, check_interval: 1s}"
T0=$(date +%s.%N)
start
# Measured once the purge is under way and the caches are warm, like the run after it.
sleep 20
initiate_load "initiate, during the purge"
until [ "$(retention | cut -d' ' -f1,3)" = "False True" ]; do sleep 1; done
echo "purge of $(retention | cut -d' ' -f2) calls (archived): $(echo "$(date +%s.%N) - $T0" | bc) s from start; archive $(du -sb "$DIR/archive" | cut -f1) bytes in $(ls "$DIR/archive" | wc -l) files"
initiate_load "initiate, after the purge"
echo "backup: $(api -X POST "$URL/api/v1/admin/backup/" -d '{}')"
stop
T1=$(date +%s.%N)
"$BIN" restore "$DIR"/data/backups/*.redb --data-dir "$DIR/restored" | head -1
echo "restore (verify + copy) took $(echo "$(date +%s.%N) - $T1" | bc) s"
rm -rf "$DIR"/data/backups "$DIR/restored"
echo "compact: $("$BIN" compact --data-dir "$DIR/data")"
start
stop
