#!/usr/bin/env bash
# The collections benchmark: regenerates docs/benchmarks-collections.md.
#
#   benches/collections.sh
#
# Side by side, in interleaved rounds (the machine's speed drifts; the page shows each
# system's median round): redis-server in memory, a redis-server with two replicas (every
# one appendfsync always, each write followed by WAIT 1) and a zankv local cluster (`zankv
# playground`: three storage nodes, the default namespace 8 partitions x 3 replicas)
# answer SET, LPUSH, RPOP, LRANGE 0 9, SADD, SISMEMBER, HSET, ZADD, ZRANGE 0 9 and
# ZRANGEBYSCORE -inf +inf LIMIT 0 10 from the same load generator (zankv-load). Then zankv
# alone, with big keys and tombstones (benches/bigkeys.py): DEL, EXPIRE and RENAME of a
# 1M-member set, hash, list and sorted set; SET and GET latency while their space is
# reclaimed; the read throughput of a sorted set trimmed at one end and of a list used as a
# queue, before and after minutes of churn.
#
# Knobs (environment): ZANKV_BENCH_SECONDS (measured seconds per run, 8),
# ZANKV_BENCH_CLIENTS (32), ZANKV_BENCH_ROUNDS (2), ZANKV_BENCH_COLLECTION_KEYS (keys per
# type, 10000), ZANKV_BENCH_BIG_MEMBERS (1000000), ZANKV_BENCH_CHURN_SECONDS (300),
# ZANKV_BENCH_OUT (docs/benchmarks-collections.md). Everything binds loopback on free
# ports, lives in a temporary directory and is stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${ZANKV_BENCH_SECONDS:-8}"
clients="${ZANKV_BENCH_CLIENTS:-32}"
rounds="${ZANKV_BENCH_ROUNDS:-2}"
keys="${ZANKV_BENCH_COLLECTION_KEYS:-10000}"
big="${ZANKV_BENCH_BIG_MEMBERS:-1000000}"
churn="${ZANKV_BENCH_CHURN_SECONDS:-300}"
out="${ZANKV_BENCH_OUT:-docs/benchmarks-collections.md}"
value=100
started_at=$(date +%s)

./scripts/setup.sh
cargo build --release --locked --bins >&2
# shellcheck source=benches/common.sh
. benches/common.sh

start_redis_mem
start_redis_repl
start_zankv

# Each type's keys have a prefix of their own; reads run after the writes that fill them.
prefix() {
  case "$1" in
    set) echo "c:str:" ;;
    lpush | rpop | lrange) echo "c:list:" ;;
    sadd | sismember) echo "c:set:" ;;
    hset) echo "c:hash:" ;;
    *) echo "c:zset:" ;;
  esac
}
# The replicated redis waits for a replica after each write.
replica_wait() {
  case "$1/$2" in
    redis-repl/set | redis-repl/lpush | redis-repl/rpop | redis-repl/sadd | redis-repl/hset | redis-repl/zadd) echo --wait 1 ;;
  esac
}
for _ in $(seq "$rounds"); do
  for op in set lpush rpop lrange sadd sismember hset zadd zrange zrangebyscore; do
    for s in redis-mem redis-repl zankv; do
      # shellcheck disable=SC2046
      load "$op" "$s" --op "$op" --key-prefix "$(prefix "$op")" $(replica_wait "$s" "$op")
    done
  done
done

$py benches/bigkeys.py --port "$zport" --members "$big" --churn-seconds "$churn" \
  --load "$bin/zankv-load" --seconds "$secs" --clients "$clients" >> "$results"

write_report collections benches/collections_report.py "{\"seconds\": $secs, \"clients\": $clients, \"value\": $value, \"keys\": $keys,
  \"big_members\": $big, \"churn_seconds\": $churn, \"rounds\": $rounds,
  \"elapsed_s\": $(( $(date +%s) - started_at ))}"
