#!/usr/bin/env bash
# Import benchmark (issue 8: 100,000 keys with usage in under 60 s with
# bounded memory). Loads scripts/gen-crs-redis.py's data set into a private
# redis-server on a free loopback port, runs the release binary's
# `import-redis` into a fresh data dir under /usr/bin/time -v, then runs it a
# second time (the idempotent rerun), and prints wall time and peak RSS of
# each run. Needs redis-server, redis-cli, python3 and GNU time.
#
#     cargo build --release && scripts/bench-import-redis.sh [keys]
set -euo pipefail
cd "$(dirname "$0")/.."

keys="${1:-100000}"
bin="${BIN:-target/release/claude-relay}"
[ -x "$bin" ] || { echo "build first: cargo build --release ($bin is missing)" >&2; exit 1; }

work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
redis-server --port "$port" --bind 127.0.0.1 --dir "$work" --save "" --appendonly no \
  >"$work/redis.log" 2>&1 &
redis_pid=$!
# Only the redis-server this script started is stopped.
trap 'kill "$redis_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do
  redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.1
done

echo "== generating and loading $keys CRS keys with usage"
start=$(date +%s)
python3 scripts/gen-crs-redis.py "$keys" | redis-cli -p "$port" --pipe | tail -1
echo "redis keys: $(redis-cli -p "$port" dbsize) (loaded in $(( $(date +%s) - start )) s)"

export RELAY_MASTER_KEY=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff
export RUST_LOG=warn
run() {
  /usr/bin/time -v "$bin" import-redis --redis-url "redis://127.0.0.1:$port/0" \
    --crs-encryption-key bench-encryption-key --data-dir "$work/data" \
    >"$work/report.txt" 2>"$work/time.txt"
  sed -n '1,/^$/p' "$work/report.txt" | head -20
  grep -E 'Elapsed \(wall clock\)|User time|System time|Maximum resident set size' "$work/time.txt"
}

echo "== first import"
run
echo "== second import (rerun: nothing new)"
run
echo "store size: $(du -sh "$work/data" | cut -f1); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
