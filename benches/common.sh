# Helpers shared by the benchmark scripts (sourced, not run): where things run, how to
# wait for them, and stopping everything at exit.
#
# Expects `set -euo pipefail` and the working directory at the repository's root. Sets
# `work` (a temporary directory, removed at exit), `pids` (processes stopped at exit),
# `bin` (release binaries), `py` and `results` (an empty file for the runs' JSON lines).

bin="$PWD/target/release"
py=/usr/bin/python3
work="$(mktemp -d /tmp/zankv-bench.XXXXXX)"
results="$work/results.jsonl"
: > "$results"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
say() { echo "bench: $*" >&2; }

# The first of N consecutive loopback ports that are free, below the ephemeral range.
free_ports() {
  $py - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
for _ in range(1000):
    base = random.randrange(10000, 32000 - n)
    socks = []
    try:
        for p in range(base, base + n):
            s = socket.socket()
            s.bind(("127.0.0.1", p))
            socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks:
            s.close()
    print(base)
    break
else:
    sys.exit("no free ports")
PY
}
wait_for() { # what, then a command that succeeds once ready
  local what=$1; shift
  for _ in $(seq 600); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  say "$what did not become ready"; exit 1
}
http_ok() { $py -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1"; }

# Starts a redis-server in memory on a free port: sets mem_port and mem_pid.
start_redis_mem() {
  mem_port=$(free_ports 1)
  redis-server --port "$mem_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null &
  mem_pid=$!; pids+=("$mem_pid")
  wait_for redis redis-cli -p "$mem_port" ping
}

# Starts a redis-server with two replicas, every one appendfsync always (the writes of the
# runs against it are followed by WAIT 1): sets repl_port and repl_watch.
start_redis_repl() {
  repl_port=$(free_ports 3)
  repl_watch=()
  local i replica
  for i in 0 1 2; do
    mkdir -p "$work/repl$i"
    replica=()
    [ "$i" -eq 0 ] || replica=(--replicaof 127.0.0.1 "$repl_port")
    redis-server --port "$((repl_port + i))" --bind 127.0.0.1 --save "" --appendonly yes \
      --appendfsync always --dir "$work/repl$i" "${replica[@]}" >/dev/null &
    pids+=("$!"); repl_watch+=(--watch "redis-$((i + 1))=$!")
  done
  replicas_online() { [ "$(redis-cli -p "$repl_port" info replication | grep -c 'state=online')" -eq 2 ]; }
  wait_for "redis replicas" replicas_online
}

# Starts `zankv playground` (the README's first command) on free ports: sets zport (the
# proxy's), proxy_pid and zankv_watch.
start_zankv() {
  zport=$(free_ports 33)
  "$bin/zankv" playground --data-dir "$work/zankv" --port "$zport" > "$work/playground.out" 2>&1 &
  pids+=("$!")
  wait_for "zankv playground" grep -q "is up" "$work/playground.out"
  zankv_watch=(--watch "pd=$(zpid pd)" --watch "proxy=$(zpid proxy)")
  local i
  for i in 1 2 3; do zankv_watch+=(--watch "storage-$i=$(zpid "storage-$i")"); done
  proxy_pid=$(zpid proxy)
}
zpid() { pgrep -f -- "--config $work/zankv/conf/$1.toml"; }

rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
note() { # a JSON line of facts for the report (into $results)
  echo "$1" >> "$results"
}
# Expects clients, keys, secs, value and results set, and the systems named started.
# load LABEL SYSTEM [--clients N] [--keyspace N] [--seconds N] [zankv-load args...]: one
# run, its JSON line kept, and the command that ran it (without the --label and the
# --watch arguments, which only name the processes whose CPU time is counted).
load() {
  local label=$1 system=$2 c=$clients k=$keys t=$secs; shift 2
  while true; do
    case "${1:-}" in
      --clients) c=$2; shift 2 ;;
      --keyspace) k=$2; shift 2 ;;
      --seconds) t=$2; shift 2 ;;
      *) break ;;
    esac
  done
  local target=()
  case "$system" in
    redis-mem) target=(--addrs "127.0.0.1:$mem_port" --watch "redis=$mem_pid") ;;
    redis-fsync) target=(--addrs "127.0.0.1:$fsync_port" --watch "redis=$fsync_pid") ;;
    twemproxy) target=(--addrs "127.0.0.1:$tw_port" --watch "twemproxy=$tw_pid" --watch "redis=$mem_pid") ;;
    redis-repl) target=(--addrs "127.0.0.1:$repl_port" "${repl_watch[@]}") ;;
    etcd) target=(--protocol etcd --addrs "$etcd_addrs" "${etcd_watch[@]}") ;;
    zankv) target=(--addrs "127.0.0.1:$zport" "${zankv_watch[@]}") ;;
  esac
  say "$label on $system"
  local args=(--seconds "$t" --warmup 1 --clients "$c" --value-size "$value" --keyspace "$k")
  local shown=() i=0 all=("${target[@]}" "$@")
  while [ $i -lt ${#all[@]} ]; do
    if [ "${all[i]}" = --watch ]; then i=$((i + 2)); continue; fi
    shown+=("${all[i]}"); i=$((i + 1))
  done
  $py -c 'import json, sys; print(json.dumps({"label": sys.argv[1], "argv": sys.argv[2:]}))' \
    "command/$label/$system" zankv-load "${args[@]}" "${shown[@]}" >> "$results"
  "$bin/zankv-load" --label "$label/$system" "${args[@]}" "${target[@]}" "$@" >> "$results"
}


# Prints the run's facts as one JSON object: the date, commit, machine and tools' versions,
# and the fields of the JSON object $1 (the script's knobs and how long it took).
run_meta() {
  $py - "$1" <<'PY'
import json, platform, subprocess, sys
def cmd(*a):
    try:
        r = subprocess.run(a, capture_output=True, text=True)
        # nutcracker prints its version on stderr.
        return (r.stdout.strip() or r.stderr.strip()).splitlines()[0]
    except Exception:
        return "unknown"
mem = [l for l in open("/proc/meminfo") if l.startswith("MemTotal")][0].split()[1]
meta = {
    "date": cmd("date", "-u", "+%Y-%m-%d"),
    "commit": cmd("git", "rev-parse", "--short", "HEAD"),
    "cpus": cmd("nproc"),
    "mem_gib": round(int(mem) / 1024 / 1024),
    "kernel": platform.release(),
    "redis": cmd("redis-server", "--version"),
    "etcd": cmd("etcd", "--version"),
    "twemproxy": cmd("nutcracker", "--version"),
}
meta.update(json.loads(sys.argv[1]))
print(json.dumps(meta))
PY
}

# write_report NAME RENDERER META: keeps the raw results beside the scripts
# (benches/results/NAME.jsonl and NAME-meta.json, so the page can be rendered again without
# measuring again) and renders $out from them with the Python script RENDERER; META is a
# JSON object of the run's knobs for run_meta. Expects out and started_at set.
write_report() {
  run_meta "$3" > "$work/meta.json"
  mkdir -p benches/results
  cp "$results" "benches/results/$1.jsonl"
  cp "$work/meta.json" "benches/results/$1-meta.json"
  $py "$2" "$results" "$work/meta.json" > "$out.tmp"
  mv "$out.tmp" "$out"
  say "wrote $out in $(( $(date +%s) - started_at )) s"
}
