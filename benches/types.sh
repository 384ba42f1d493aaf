#!/usr/bin/env bash
# The HyperLogLog and geo benchmark: regenerates docs/benchmarks-types.md.
#
#   benches/types.sh
#
# Side by side, in interleaved rounds (each system's median round is shown): redis-server
# in memory, a redis-server with two replicas (every one appendfsync always, each write
# followed by WAIT 1) and a zankv local cluster (`zankv playground`) answer SET, PFADD,
# PFCOUNT, GEOADD and GEOSEARCH from the same load generator (zankv-load); the geo runs
# on 100 keys of up to 20 members.
#
# Knobs (environment): ZANKV_BENCH_SECONDS (measured seconds per run, 8),
# ZANKV_BENCH_CLIENTS (32), ZANKV_BENCH_ROUNDS (2), ZANKV_BENCH_COLLECTION_KEYS (keys,
# 10000), ZANKV_BENCH_OUT (docs/benchmarks-types.md). Everything binds loopback on free
# ports, lives in a temporary directory and is stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${ZANKV_BENCH_SECONDS:-8}"
clients="${ZANKV_BENCH_CLIENTS:-32}"
rounds="${ZANKV_BENCH_ROUNDS:-2}"
keys="${ZANKV_BENCH_COLLECTION_KEYS:-10000}"
out="${ZANKV_BENCH_OUT:-docs/benchmarks-types.md}"
value=100
started_at=$(date +%s)

./scripts/setup.sh
cargo build --release --locked --bins >&2
# shellcheck source=benches/common.sh
. benches/common.sh

start_redis_mem
start_redis_repl
start_zankv

prefix() {
  case "$1" in
    set) echo "t:str:" ;;
    pfadd | pfcount) echo "t:hll:" ;;
    *) echo "t:geo:" ;;
  esac
}
# The geo runs use 100 keys of at most 20 members, which GEOADD fills on every system
# before GEOSEARCH runs, so that each system searches the same sets.
sizes() {
  case "$1" in
    geoadd | geosearch) echo --keyspace 100 --members 20 ;;
  esac
}
replica_wait() {
  case "$1/$2" in
    redis-repl/set | redis-repl/pfadd | redis-repl/geoadd) echo --wait 1 ;;
  esac
}
for _ in $(seq "$rounds"); do
  for op in set pfadd pfcount geoadd geosearch; do
    for s in redis-mem redis-repl zankv; do
      # shellcheck disable=SC2046
      load "$op" "$s" $(sizes "$op") --op "$op" --key-prefix "$(prefix "$op")" $(replica_wait "$s" "$op")
    done
  done
done

write_report types benches/types_report.py "{\"seconds\": $secs, \"clients\": $clients, \"value\": $value, \"keys\": $keys,
  \"rounds\": $rounds, \"elapsed_s\": $(( $(date +%s) - started_at ))}"
