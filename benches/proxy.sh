#!/usr/bin/env bash
# Proxy benchmark: GET and SET through zankv-proxy to 3-replica partitions (PD + three
# storage nodes on this machine), side by side in the same run with redis-server in memory
# and redis-server --appendonly yes --appendfsync always, all driven by redis-benchmark with
# the same options, without and with pipelining (-P 16). Prints one markdown table with
# ops/s and the ratios the targets name, then the proxy's RSS holding idle client
# connections and its RSS after the load.
#
#   benches/proxy.sh [REQUESTS] [CLIENTS] [IDLE_CONNECTIONS]
#
# Everything binds loopback on free ports, lives in a temporary directory, and is stopped
# at exit. The three storage nodes, PD, the proxy and the load tool share this machine's
# cores, so the 3-replica numbers pay for all of them.
set -euo pipefail
cd "$(dirname "$0")/.."
requests="${1:-100000}"
clients="${2:-50}"
idle="${3:-10000}"
./scripts/setup.sh
cargo build --release --locked -p zankv-storage -p zankv-pd -p zankv-proxy >&2
# shellcheck source=benches/common.sh
. benches/common.sh

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ping() { for _ in $(seq 400); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "server on $1 did not start" >&2; exit 1; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# ops/s of one redis-benchmark test: port test pipeline
bench() {
  redis-benchmark -p "$1" -t "$2" -n "$requests" -c "$clients" -P "$3" -r 1000000 -d 64 --csv -q 2>/dev/null \
    | awk -F'","' 'NR > 1 { gsub(/"/, "", $2); print $2; exit }'
}

# The two reference servers.
mem_port=$(free_port)
redis-server --port "$mem_port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null & pids+=($!)
fsync_port=$(free_port); mkdir -p "$work/redis"
redis-server --port "$fsync_port" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync always --dir "$work/redis" >/dev/null & pids+=($!)
wait_ping "$mem_port"; wait_ping "$fsync_port"

# PD, three storage nodes, a namespace of 8 partitions × 3 replicas, the proxy.
pd_port=$(free_port)
printf 'data_dir = "%s/pd"\nhttp_addr = "127.0.0.1:%s"\nlog_level = "warn"\ncheck_interval_ms = 200\n' "$work" "$pd_port" > "$work/pd.toml"
$bin/zankv-pd --config "$work/pd.toml" 2>>"$work/pd.log" & pids+=($!)
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$pd_port/ping" >/dev/null && break; sleep 0.05; done
node_ports=()
for i in 1 2 3; do
  r=$(free_port); h=$(free_port); f=$(free_port)
  printf 'data_dir = "%s/node%s"\nnode_id = %s\nredis_addr = "127.0.0.1:%s"\nhttp_addr = "127.0.0.1:%s"\nraft_addr = "127.0.0.1:%s"\npd_addrs = ["127.0.0.1:%s"]\nheartbeat_ms = 200\nlog_level = "warn"\n' \
    "$work" "$i" "$i" "$r" "$h" "$f" "$pd_port" > "$work/node$i.toml"
  $bin/zankv-storage --config "$work/node$i.toml" 2>>"$work/node$i.log" & pids+=($!)
  node_ports+=("$r")
done
for p in "${node_ports[@]}"; do wait_ping "$p"; done
for _ in $(seq 400); do
  [ "$(curl -sf "http://127.0.0.1:$pd_port/datanodes" | json "sum(1 for n in d['nodes'] if n['alive'])")" = 3 ] && break
  sleep 0.05
done
curl -sf -X POST "http://127.0.0.1:$pd_port/cluster/namespace/create?namespace=default&partition_num=8&replicator=3" >/dev/null
# A one-partition namespace, to compare the proxy with its storage leader reached directly.
curl -sf -X POST "http://127.0.0.1:$pd_port/cluster/namespace/create?namespace=single&partition_num=1&replicator=3" >/dev/null
proxy_port=$(free_port); proxy_http=$(free_port)
$bin/zankv-proxy --redis-addr "127.0.0.1:$proxy_port" --http-addr "127.0.0.1:$proxy_http" \
  --pd "127.0.0.1:$pd_port" --log-level warn 2>>"$work/proxy.log" & pids+=($!)
proxy_pid=$!
wait_ping "$proxy_port"
for _ in $(seq 600); do
  [ "$(curl -sf "http://127.0.0.1:$proxy_http/routing" | json "all(l for ns in d['namespaces'] for l in ns['leaders']) and len(d['namespaces']) == 2")" = True ] && break
  sleep 0.1
done

echo "redis-benchmark -n $requests -c $clients -r 1000000 -d 64, same options for every server"
echo
echo "| test | pipeline | redis in memory ops/s | redis appendfsync always ops/s | zankv proxy, 3 replicas ops/s | proxy / redis in memory | proxy / redis fsync always |"
echo "|---|---|---|---|---|---|---|"
for test in get set; do
  for p in 1 16; do
    # Fill the keyspace before GETs so they read real values.
    if [ "$test" = get ] && [ "$p" = 1 ]; then
      for port in "$mem_port" "$fsync_port" "$proxy_port"; do bench "$port" set 16 >/dev/null; done
    fi
    m=$(bench "$mem_port" "$test" "$p"); f=$(bench "$fsync_port" "$test" "$p"); z=$(bench "$proxy_port" "$test" "$p")
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$test" "$p" "$m" "$f" "$z" \
      "$(awk -v a="$z" -v b="$m" 'BEGIN{printf "%.2f", a/b}')" "$(awk -v a="$z" -v b="$f" 'BEGIN{printf "%.2f", a/b}')"
  done
done

# The same through the proxy and straight to the storage node leading the one partition of
# "single": what the proxy's hop costs, apart from the storage node's own work.
leader=$(curl -sf "http://127.0.0.1:$proxy_http/routing" | json "[ns for ns in d['namespaces'] if ns['namespace'] == 'single'][0]['leaders'][0]")
leader_port=${leader##*:}
value=$(printf 'v%.0s' $(seq 64))
custom() { # port pipeline command...
  local port=$1 p=$2; shift 2
  redis-benchmark -p "$port" -n "$requests" -c "$clients" -P "$p" -r 1000000 --csv -q "$@" 2>/dev/null \
    | awk -F'","' 'NR > 1 { gsub(/"/, "", $2); print $2; exit }'
}
echo
echo "One partition of 3 replicas (keys single:key:N): straight to its leader vs through the proxy"
echo
echo "| test | pipeline | storage leader ops/s | zankv proxy ops/s | proxy / leader |"
echo "|---|---|---|---|---|"
for test in set get; do
  for p in 1 16; do
    if [ "$test" = set ]; then args=(SET "single:key:__rand_int__" "$value"); else args=(GET "single:key:__rand_int__"); fi
    d=$(custom "$leader_port" "$p" "${args[@]}"); z=$(custom "$proxy_port" "$p" "${args[@]}")
    printf '| %s | %s | %s | %s | %s |\n' "$test" "$p" "$d" "$z" "$(awk -v a="$z" -v b="$d" 'BEGIN{printf "%.2f", a/b}')"
  done
done
echo
echo "Proxy RSS after the load: $(rss_mb "$proxy_pid") MB"

# Idle client connections held by the proxy.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
python3 - "$proxy_port" "$idle" "$proxy_pid" <<'PY'
import socket, sys, time
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
before = rss()
conns = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    conns.append(s)
# Every connection answers (so the proxy really holds it), then stays idle.
for s in conns[:: max(1, n // 100)]:
    s.sendall(b"PING\r\n")
    assert s.recv(16) == b"+PONG\r\n"
time.sleep(2)
print(f"Proxy RSS with {n} idle client connections: {rss()} MB (before them: {before} MB)")
PY
