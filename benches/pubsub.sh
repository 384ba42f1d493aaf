#!/usr/bin/env bash
# The Pub/Sub benchmark: regenerates docs/benchmarks-pubsub.md.
#
#   benches/pubsub.sh
#
# PUBLISH fan-out, side by side in interleaved rounds (the page shows each system's median
# round): a redis-server in memory, a zankv local cluster (`zankv playground`) with the
# subscribers and publishers on its one proxy, and the same cluster with a second proxy,
# the subscribers spread over both and the publishers on the first (every message crosses
# from one proxy to the other). The same load generator (zankv-load --op publish) drives
# them: --clients publishers, each with one PUBLISH in flight, of a 100-byte message to one
# channel that --subscribers connections subscribe to. It reports publishes and deliveries
# per second, latency, and the CPU seconds every server process spent per 100k publishes.
# Then what keyspace notifications cost: SET throughput and CPU per write on redis-server
# and zankv with notify-keyspace-events off, and with KEA and one subscriber to every event.
#
# Knobs (environment): ZANKV_BENCH_SECONDS (measured seconds per run, 8),
# ZANKV_BENCH_CLIENTS (publishers, 8), ZANKV_BENCH_SUBSCRIBERS (100), ZANKV_BENCH_ROUNDS (3),
# ZANKV_BENCH_OUT (docs/benchmarks-pubsub.md). Everything binds loopback on free ports,
# lives in a temporary directory and is stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${ZANKV_BENCH_SECONDS:-8}"
clients="${ZANKV_BENCH_CLIENTS:-8}"
subscribers="${ZANKV_BENCH_SUBSCRIBERS:-100}"
rounds="${ZANKV_BENCH_ROUNDS:-3}"
out="${ZANKV_BENCH_OUT:-docs/benchmarks-pubsub.md}"
value=100
keys=1
started_at=$(date +%s)

./scripts/setup.sh
cargo build --release --locked --bins >&2
# shellcheck source=benches/common.sh
. benches/common.sh

start_redis_mem
start_zankv
# A second proxy of the same cluster, on loopback like the first.
p2_port=$(free_ports 2)
mkdir -p "$work/proxy2"
printf 'redis_addr = "127.0.0.1:%s"\nhttp_addr = "127.0.0.1:%s"\npd_addrs = ["127.0.0.1:%s"]\n' \
  "$p2_port" "$((p2_port + 1))" "$((zport + 2))" > "$work/proxy2/proxy.toml"
"$bin/zankv-proxy" --config "$work/proxy2/proxy.toml" > "$work/proxy2/log" 2>&1 &
p2_pid=$!; pids+=("$p2_pid")
wait_for "the second proxy" redis-cli -p "$p2_port" ping
# The proxies know each other once a PUBLISH through one counts a subscriber of the other.
meshed() {
  redis-cli -p "$p2_port" subscribe bench:probe >/dev/null & local sub=$!
  sleep 0.3
  local n; n=$(redis-cli -p "$zport" publish bench:probe x)
  kill "$sub" 2>/dev/null || true
  [ "$n" = 1 ]
}
wait_for "the proxies to find each other" meshed

for _ in $(seq "$rounds"); do
  load publish redis-mem --op publish --subscribers "$subscribers"
  load publish zankv --op publish --subscribers "$subscribers"
  load publish-2-proxies zankv --op publish --subscribers "$subscribers" \
    --subscriber-addrs "127.0.0.1:$zport,127.0.0.1:$p2_port" --watch "proxy-2=$p2_pid"
done

# Keyspace notifications: what they cost a write. SET of --value-size values over
# $event_keys keys with notify-keyspace-events off, then with KEA and one connection
# subscribed to every event (redis-cli psubscribe, its output thrown away; its CPU is not
# counted, as the load generator's is not).
event_keys=100000
events_on() { # PORT: KEA and a subscriber, whose pid is left in $listener
  redis-cli -p "$1" config set notify-keyspace-events KEA >/dev/null
  redis-cli -p "$1" psubscribe '__key*__:*' >/dev/null & listener=$!
  sleep 0.5
}
events_off() { # PORT
  kill "$listener" 2>/dev/null || true
  wait "$listener" 2>/dev/null || true
  redis-cli -p "$1" config set notify-keyspace-events "" >/dev/null
}
for _ in $(seq "$rounds"); do
  for system in redis-mem zankv; do
    port=$mem_port
    [ "$system" = zankv ] && port=$zport
    load set-events-off "$system" --keyspace "$event_keys" --op set
    events_on "$port"
    load set-events-kea "$system" --keyspace "$event_keys" --op set
    events_off "$port"
  done
done

write_report pubsub benches/pubsub_report.py "{\"seconds\": $secs, \"clients\": $clients, \"subscribers\": $subscribers,
  \"value\": $value, \"rounds\": $rounds,
  \"elapsed_s\": $(( $(date +%s) - started_at ))}"
