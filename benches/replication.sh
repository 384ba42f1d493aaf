#!/usr/bin/env bash
# Replication benchmark: durable SET throughput of zankv partition groups of 1 and 3
# replicas, with 8 and 64 partitions per node, at 1, 16 and 128 concurrent clients, side by
# side with redis-server --appendonly yes --appendfsync always driven by the same load
# generator (zankv-load) in the same run. Prints one markdown table: ops/s, p50/p99
# latency, writes per fsync (acknowledged writes / raft-log fsyncs per node: the
# group-commit ratio), the ratio to redis at the same client count, and each run's peak
# RSS per node; then the idle RSS of a node hosting 256 partitions.
#
#   benches/replication.sh [SECONDS_PER_RUN]
#
# Everything binds loopback on free ports, lives in a temporary directory, and is stopped
# at exit. The nodes run on this one machine, so a 3-replica group pays for three nodes'
# CPU and fsyncs out of the same cores and disk.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-5}"
./scripts/setup.sh
cargo build --release --locked -p zankv-storage -p zankv-bench >&2

# shellcheck source=benches/common.sh
. benches/common.sh

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ping() { for _ in $(seq 200); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "server on $1 did not start" >&2; exit 1; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
rss_mb() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }

# All partitions have a leader every node agrees on.
wait_leaders() { # http ports...
  for _ in $(seq 400); do
    local ok=1
    for h in "$@"; do
      curl -sf "http://127.0.0.1:$h/status" | json "all(p['raft'] and p['raft']['leader'] for p in d['partitions'])" | grep -q True || ok=0
    done
    [ "$ok" = 1 ] && return 0
    sleep 0.05
  done
  echo "no leaders elected" >&2; exit 1
}

syncs() { # http ports... -> total raft-log fsyncs
  local total=0
  for h in "$@"; do
    local n; n=$(curl -sf "http://127.0.0.1:$h/metrics" | awk '/^zankv_storage_raft_log_sync_seconds_count/ {print $2}')
    total=$((total + ${n:-0}))
  done
  echo "$total"
}

declare -A redis_ops
row() { printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$@"; }
echo "| server | partitions/node | clients | ops/s | p50 ms | p99 ms | writes/fsync | vs redis fsync | peak RSS MB/node |"
echo "|---|---|---|---|---|---|---|---|---|"

redis_port=$(free_port); mkdir -p "$work/redis"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync always --dir "$work/redis" >/dev/null & pids+=($!)
redis_pid=$!
wait_ping "$redis_port"
for c in 1 16 128; do
  out=$($bin/zankv-load --addrs "127.0.0.1:$redis_port" --clients "$c" --seconds "$seconds")
  ops=$(echo "$out" | json "d['ops_per_sec']"); redis_ops[$c]=$ops
  row "redis appendfsync always" - "$c" "$ops" "$(echo "$out" | json "d['p50_ms']")" "$(echo "$out" | json "d['p99_ms']")" - 1.00 "$(rss_mb "$redis_pid")"
done
kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true

start_cluster() { # replicas partitions -> sets addrs http_ports node_pids
  local n=$1 parts=$2 dir="$work/c$1-$2"
  mkdir -p "$dir"
  local redis=() http=() raft=() i
  for i in $(seq "$n"); do redis+=("$(free_port)"); http+=("$(free_port)"); raft+=("$(free_port)"); done
  local ids; ids=$(seq -s, "$n")
  node_pids=(); addrs=""; http_ports=()
  for i in $(seq "$n"); do
    local conf="$dir/node$i.toml"
    {
      echo "data_dir = \"$dir/node$i\""
      echo "redis_addr = \"127.0.0.1:${redis[i-1]}\""
      echo "http_addr = \"127.0.0.1:${http[i-1]}\""
      echo "raft_addr = \"127.0.0.1:${raft[i-1]}\""
      echo "node_id = $i"
      echo "log_level = \"warn\""
      for j in $(seq "$n"); do
        printf '[[nodes]]\nid = %s\nraft_addr = "127.0.0.1:%s"\nredis_addr = "127.0.0.1:%s"\n' "$j" "${raft[j-1]}" "${redis[j-1]}"
      done
      printf '[[namespaces]]\nname = "default"\nid = 1\npartitions = %s\nreplicas = [%s]\n' "$parts" "$ids"
    } > "$conf"
    $bin/zankv-storage --config "$conf" 2>>"$dir/node$i.log" & pids+=($!); node_pids+=($!)
    addrs+="${addrs:+,}127.0.0.1:${redis[i-1]}"; http_ports+=("${http[i-1]}")
  done
  for i in $(seq "$n"); do wait_ping "${redis[i-1]}"; done
  wait_leaders "${http_ports[@]}"
}

stop_cluster() {
  for p in "${node_pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
}

for replicas in 1 3; do
  for parts in 8 64; do
    start_cluster "$replicas" "$parts"
    for c in 1 16 128; do
      before=$(syncs "${http_ports[@]}")
      out=$($bin/zankv-load --addrs "$addrs" --partitions "$parts" --clients "$c" --seconds "$seconds")
      after=$(syncs "${http_ports[@]}")
      ops=$(echo "$out" | json "d['ops_per_sec']")
      total=$(echo "$out" | json "d['all_ops']")
      per_fsync=$(awk -v w="$total" -v s="$((after - before))" -v n="$replicas" 'BEGIN{ if (s > 0) printf "%.1f", w * n / s; else print "-" }')
      rss=0; for p in "${node_pids[@]}"; do r=$(rss_mb "$p"); [ "$r" -gt "$rss" ] && rss=$r; done
      row "zankv ${replicas} replica(s)" "$parts" "$c" "$ops" "$(echo "$out" | json "d['p50_ms']")" "$(echo "$out" | json "d['p99_ms']")" \
        "$per_fsync" "$(awk -v a="$ops" -v b="${redis_ops[$c]}" 'BEGIN{printf "%.2f", a/b}')" "$rss"
    done
    stop_cluster
  done
done

# Idle memory of a node hosting 256 partitions.
dir="$work/idle"; mkdir -p "$dir"
port=$(free_port); hport=$(free_port); rport=$(free_port)
printf 'data_dir = "%s/data"\nredis_addr = "127.0.0.1:%s"\nhttp_addr = "127.0.0.1:%s"\nraft_addr = "127.0.0.1:%s"\nlog_level = "warn"\n[[namespaces]]\nname = "default"\nid = 1\npartitions = 256\nreplicas = [1]\n' \
  "$dir" "$port" "$hport" "$rport" > "$dir/node.toml"
$bin/zankv-storage --config "$dir/node.toml" 2>>"$dir/node.log" & pids+=($!); idle=$!
wait_ping "$port"; wait_leaders "$hport"; sleep 2
echo
echo "Idle node hosting 256 partitions: RSS $(awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$idle/status") MB"
