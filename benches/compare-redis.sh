#!/usr/bin/env bash
# Side-by-side throughput of a zankv storage node and redis-server on this machine, with
# redis-benchmark as the load generator. Prints ops/s for each and the zankv/redis ratio.
#
#   benches/compare-redis.sh [REQUESTS] [CLIENTS]
#
# Both servers bind loopback on free ports and are stopped at exit. redis-server runs twice:
# in memory only, and with appendfsync always (the durability zankv gives every write).
set -euo pipefail
cd "$(dirname "$0")/.."
requests="${1:-100000}"
clients="${2:-50}"
./scripts/setup.sh
cargo build --release --locked -p zankv-storage >&2

# shellcheck source=benches/common.sh
. benches/common.sh

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "server on $1 did not start" >&2; exit 1; }

redis_mem=$(free_port); redis-server --port "$redis_mem" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null & pids+=($!)
redis_fsync=$(free_port); mkdir -p "$work/fsync"; redis-server --port "$redis_fsync" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync always --dir "$work/fsync" >/dev/null & pids+=($!)
zankv=$(free_port); ./target/release/zankv-storage --data-dir "$work/zankv" --redis-addr "127.0.0.1:$zankv" --http-addr 127.0.0.1:0 --raft-addr 127.0.0.1:0 2>"$work/zankv.log" & pids+=($!)
for p in "$redis_mem" "$redis_fsync" "$zankv"; do wait_port "$p"; done

run() { # port pipeline -> "TEST ops" lines
  redis-benchmark -p "$1" -n "$requests" -c "$clients" -P "$2" -r 100000 -t set,get,incr,hset -q 2>/dev/null \
    | tr '\r' '\n' | grep 'requests per second' | sed -E 's/^ *([A-Z]+): ([0-9.]+) requests per second.*/\1 \2/'
}

printf '%-6s %-9s %14s %14s %14s %10s %10s\n' test pipeline redis-mem redis-fsync zankv zk/mem zk/fsync
for pipeline in 1 16; do
  declare -A mem fsync zk
  while read -r t v; do mem[$t]=$v; done < <(run "$redis_mem" "$pipeline")
  while read -r t v; do fsync[$t]=$v; done < <(run "$redis_fsync" "$pipeline")
  while read -r t v; do zk[$t]=$v; done < <(run "$zankv" "$pipeline")
  for t in SET GET INCR HSET; do
    printf '%-6s %-9s %14.0f %14.0f %14.0f %10.2f %10.2f\n' "$t" "$pipeline" "${mem[$t]}" "${fsync[$t]}" "${zk[$t]}" \
      "$(awk -v a="${zk[$t]}" -v b="${mem[$t]}" 'BEGIN{print a/b}')" "$(awk -v a="${zk[$t]}" -v b="${fsync[$t]}" 'BEGIN{print a/b}')"
  done
  unset mem fsync zk
done
