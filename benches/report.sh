#!/usr/bin/env bash
# The side-by-side benchmark report: regenerates docs/benchmarks.md.
#
#   benches/report.sh
#
# In one run on this machine it starts redis-server in memory and with appendfsync always,
# two reference points (twemproxy, Debian's nutcracker, in front of the in-memory
# redis-server: one proxy hop and no replica; and a redis-server with two replicas, all
# appendfsync always, each SET followed by WAIT 1: a replicated durable write in redis),
# a 3-member etcd cluster (Debian's etcd-server) and a zankv local cluster (`zankv
# playground`: PD, three storage nodes, a proxy; the default namespace 8 partitions x 3
# replicas), drives each with the same load generator (benches/src, zankv-load: RESP, and
# etcd's gRPC API) at the same concurrency and value size, and writes ops/s, p50/p99, the
# ratios zankv/redis and zankv/etcd, the CPU seconds every server process spent per 100k
# operations, how zankv changes from 8 to 256 partitions per node and from 100k to 10M keys,
# and the proxy's memory. Unattended; about twenty minutes here after the build (three rounds).
#
# Knobs (environment): ZANKV_BENCH_SECONDS (measured seconds per run, 8),
# ZANKV_BENCH_CLIENTS (32), ZANKV_BENCH_VALUE (value bytes, 100), ZANKV_BENCH_KEYS (keys of
# the main runs, 100000), ZANKV_BENCH_BIG_KEYS (10000000), ZANKV_BENCH_IDLE (idle client
# connections held by the proxy, 10000), ZANKV_BENCH_SUSTAINED (seconds of the run during
# which the proxy's RSS is sampled, 30), ZANKV_BENCH_ROUNDS (interleaved rounds of the
# side-by-side runs, whose median the page shows, 3), ZANKV_BENCH_OUT (docs/benchmarks.md).
#
# Everything binds loopback on free ports, lives in a temporary directory and is stopped
# at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${ZANKV_BENCH_SECONDS:-8}"
clients="${ZANKV_BENCH_CLIENTS:-32}"
value="${ZANKV_BENCH_VALUE:-100}"
keys="${ZANKV_BENCH_KEYS:-100000}"
big_keys="${ZANKV_BENCH_BIG_KEYS:-10000000}"
idle="${ZANKV_BENCH_IDLE:-10000}"
sustained="${ZANKV_BENCH_SUSTAINED:-30}"
rounds="${ZANKV_BENCH_ROUNDS:-3}"
out="${ZANKV_BENCH_OUT:-docs/benchmarks.md}"
started_at=$(date +%s)

./scripts/setup.sh etcd-server nutcracker
cargo build --release --locked --bins >&2
# shellcheck source=benches/common.sh
. benches/common.sh

# redis-server, in memory and with every write fsynced.
start_redis_mem
fsync_port=$(free_ports 1); mkdir -p "$work/redis"
redis-server --port "$fsync_port" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync always --dir "$work/redis" >/dev/null &
fsync_pid=$!; pids+=("$fsync_pid")
wait_for redis redis-cli -p "$fsync_port" ping

# twemproxy in front of the in-memory redis-server (the same keys): what one proxy hop
# costs on this machine, with no replica and no durability.
tw_port=$(free_ports 2)
printf 'bench:\n  listen: 127.0.0.1:%s\n  redis: true\n  preconnect: true\n  servers:\n    - 127.0.0.1:%s:1\n' \
  "$tw_port" "$mem_port" > "$work/nutcracker.yml"
nutcracker -c "$work/nutcracker.yml" -s "$((tw_port + 1))" -a 127.0.0.1 \
  -o "$work/nutcracker.log" -p "$work/nutcracker.pid" &
tw_pid=$!; pids+=("$tw_pid")
wait_for twemproxy redis-cli -p "$tw_port" get probe

# redis-server with two replicas, every one appendfsync always; SETs are followed by
# WAIT 1 (the master and one replica hold the write: the shape of zankv's quorum, though
# WAIT does not wait for the replica's fsync).
start_redis_repl

# etcd, three members.
etcd_base=$(free_ports 6)
cluster=""
for i in 1 2 3; do cluster="${cluster:+$cluster,}m$i=http://127.0.0.1:$((etcd_base + 2 * i - 1))"; done
etcd_addrs=""; etcd_watch=()
for i in 1 2 3; do
  client=$((etcd_base + 2 * i - 2)); peer=$((etcd_base + 2 * i - 1))
  etcd --name "m$i" --data-dir "$work/etcd$i" --log-level error \
    --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "$cluster" --initial-cluster-state new 2>>"$work/etcd$i.log" &
  pids+=("$!"); etcd_watch+=(--watch "etcd-$i=$!")
  etcd_addrs="${etcd_addrs:+$etcd_addrs,}127.0.0.1:$client"
done
for i in 1 2 3; do wait_for etcd http_ok "http://127.0.0.1:$((etcd_base + 2 * i - 2))/health"; done

# zankv: the playground, the README's first command.
start_zankv
pd="127.0.0.1:$((zport + 2))"

note "{\"label\": \"memory/proxy-start\", \"rss_mb\": $(rss_mb "$proxy_pid")}"

# Every system holds the same keys before it is read (twemproxy's server is redis-mem's).
for s in redis-mem redis-fsync redis-repl etcd zankv; do load fill "$s" --op fill; done
# The replicated redis waits for a replica after each SET (or pipeline of SETs).
replica_wait() { if [ "$1/$2" = redis-repl/set ]; then echo --wait 1; fi; }
# This machine's speed drifts by a factor of two within minutes (other tenants), so the
# side-by-side runs go in interleaved rounds, every system once per round; the page shows
# each system's median round and lists all of them.
for _ in $(seq "$rounds"); do
  for op in set get; do
    for s in redis-mem redis-fsync twemproxy redis-repl etcd zankv; do
      # shellcheck disable=SC2046
      load "$op/1" "$s" --op "$op" $(replica_wait "$s" "$op")
    done
  done
  for op in set get; do
    for s in redis-mem redis-fsync twemproxy redis-repl zankv; do
      # shellcheck disable=SC2046
      load "$op/16" "$s" --op "$op" --pipeline 16 $(replica_wait "$s" "$op")
    done
  done
done
# The proxy's memory under sustained load: its RSS once a second through a longer SET run.
( while kill -0 "$proxy_pid" 2>/dev/null; do rss_mb "$proxy_pid"; echo; sleep 1; done ) \
  > "$work/proxy-rss" 2>/dev/null &
sampler=$!
load "sustained/set" zankv --seconds "$sustained" --op set
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
note "{\"label\": \"memory/proxy-sustained\", \"seconds\": $sustained, \"rss_mb\": [$(paste -sd, "$work/proxy-rss")]}"

# Keys: the default namespace grown from the main runs' keys to many more (before the
# partition runs below add namespaces whose leaders PD then balances).
load "keys/$keys/get" zankv --op get
load "fill-big" zankv --clients 64 --keyspace "$big_keys" --op fill --batch 200
load "keys/$big_keys/get" zankv --keyspace "$big_keys" --op get
load "keys/$big_keys/set" zankv --keyspace "$big_keys" --op set

# Partitions per node: each of the three nodes holds a replica of every partition.
for n in 8 64 256; do
  "$bin/zankv" --pd "$pd" namespace create "p$n" --partitions "$n" --replicas 3 >&2
done
routing_ready() {
  $py - "http://127.0.0.1:$((zport + 1))/routing" <<'PY'
import json, sys, urllib.request
d = json.load(urllib.request.urlopen(sys.argv[1], timeout=2))
names = {ns["namespace"]: ns for ns in d["namespaces"]}
ok = all(n in names and all(isinstance(l, str) for l in names[n]["leaders"]) and len(names[n]["leaders"]) == int(n[1:]) for n in ("p8", "p64", "p256"))
sys.exit(0 if ok else 1)
PY
}
wait_for "the p8, p64 and p256 namespaces" routing_ready
for n in 8 64 256; do load "fill-p$n" zankv --op fill --key-prefix "p$n:key:"; done
for op in set get; do
  for n in 8 64 256; do load "partitions/$n/$op" zankv --op "$op" --key-prefix "p$n:key:"; done
done
# The replication target: 128 clients on 64 partitions against redis fsync always with
# 128 clients, in interleaved rounds too, with the replicated redis at 128 clients for scale.
for _ in $(seq "$rounds"); do
  load "set/1/c128" redis-fsync --clients 128 --op set
  load "set/1/c128" redis-repl --clients 128 --op set --wait 1
  load "partitions/64/set/c128" zankv --clients 128 --op set --key-prefix "p64:key:"
done
for i in 1 2 3; do note "{\"label\": \"memory/storage-$i\", \"rss_mb\": $(rss_mb "$(zpid "storage-$i")")}"; done

note "{\"label\": \"memory/proxy-after-load\", \"rss_mb\": $(rss_mb "$proxy_pid")}"

# The proxy holding idle client connections.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
$py - "$zport" "$idle" "$proxy_pid" >> "$results" <<'PY'
import json, socket, sys, time
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
# Every hundredth answers a PING (so the proxy really holds them), then all stay idle.
for s in conns[:: max(1, n // 100)]:
    s.sendall(b"PING\r\n")
    assert s.recv(16) == b"+PONG\r\n"
time.sleep(2)
print(json.dumps({"label": "memory/proxy-idle", "connections": n, "rss_mb": rss()}))
PY

run_meta "{\"seconds\": $secs, \"clients\": $clients, \"value\": $value, \"keys\": $keys,
  \"big_keys\": $big_keys, \"idle\": $idle, \"rounds\": $rounds,
  \"elapsed_s\": $(( $(date +%s) - started_at ))}" > "$work/meta.json"
# The raw results stay beside the scripts, so the page can be rendered again without
# measuring again: python3 benches/report.py benches/results/results.jsonl benches/results/meta.json
mkdir -p benches/results
cp "$results" benches/results/results.jsonl
cp "$work/meta.json" benches/results/meta.json
$py benches/report.py "$results" "$work/meta.json" > "$out.tmp"
mv "$out.tmp" "$out"
say "wrote $out in $(( $(date +%s) - started_at )) s"
