#!/usr/bin/env bash
# The scripting benchmark: regenerates docs/benchmarks-scripts.md.
#
#   benches/script.sh
#
# EVALSHA of two small Lua scripts, side by side in interleaved rounds (the page shows each
# system's median round): a redis-server in memory, a redis-server with two replicas (every
# one appendfsync always, as the main report's replicated reference) and a zankv local
# cluster (`zankv playground`: three storage nodes, the default namespace 8 partitions x 3
# replicas) through its one proxy. The scripts:
#   incr  a rate limiter: INCR of KEYS[1], PEXPIRE of ARGV[1] ms when the count is 1, the
#         count returned (it writes; keys rl:<12 digits>);
#   get   GET of KEYS[1] (it reads; keys key:<12 digits>, every one written beforehand).
# zankv-load has no EVALSHA operation, so redis-benchmark drives every system, with the
# same clients and keys: `redis-benchmark -n N -c CLIENTS -r KEYS --csv EVALSHA <sha> 1
# <prefix>__rand_int__ [ttl]`. No WAIT follows the replicated redis's scripts (the main
# report's `--wait 1`): redis-benchmark sends one command per request and WAIT cannot run
# inside a script. Each script is loaded with SCRIPT LOAD (through the proxy for zankv,
# which sends it to every partition) and run once with redis-cli, whose reply must be the
# expected one, before anything is timed. A run's N is sized from warm-up runs (N x 4 until
# one lasts a second) so that it lasts about ZANKV_BENCH_SECONDS; the page reports ops/s,
# p50/p99, the ratios zankv/redis and the CPU seconds every server process spent per 100k
# scripts (read from /proc before and after each redis-benchmark run).
#
# Knobs (environment): ZANKV_BENCH_SECONDS (seconds per run, 4), ZANKV_BENCH_CLIENTS (32),
# ZANKV_BENCH_KEYS (keys drawn from, 100000), ZANKV_BENCH_REQUESTS (scripts per run, the
# same for every system; default: sized to the seconds), ZANKV_BENCH_TTL_MS (the rate
# limiter's window, 100: short beside the time between two calls on one key, keys / rate,
# so that nearly every call creates its key, sets its expiry and the key later expires, on
# the fastest system as on the slowest), ZANKV_BENCH_ROUNDS (3), ZANKV_BENCH_OUT
# (docs/benchmarks-scripts.md). With the defaults the measuring takes about a minute and a
# half (18 runs of about 4 s, the warm-ups and the writing of the keys), on top of the
# build and the cluster's start.
# Everything binds loopback on free ports, lives in a temporary directory and is stopped
# at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${ZANKV_BENCH_SECONDS:-4}"
clients="${ZANKV_BENCH_CLIENTS:-32}"
keys="${ZANKV_BENCH_KEYS:-100000}"
requests="${ZANKV_BENCH_REQUESTS:-}"
ttl_ms="${ZANKV_BENCH_TTL_MS:-100}"
rounds="${ZANKV_BENCH_ROUNDS:-3}"
out="${ZANKV_BENCH_OUT:-docs/benchmarks-scripts.md}"
value=100
started_at=$(date +%s)

./scripts/setup.sh
cargo build --release --locked --bins >&2
# shellcheck source=benches/common.sh
. benches/common.sh

systems=(redis-mem redis-repl zankv)
scripts=(incr get)
incr_body="local n = redis.call('INCR', KEYS[1]); if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end; return n"
get_body="return redis.call('GET', KEYS[1])"
body() { case "$1" in incr) echo "$incr_body" ;; get) echo "$get_body" ;; esac; }
# EVALSHA's arguments after the SHA1 (no spaces in any of them).
evalsha_args() {
  case "$1" in
    incr) echo "1 rl:__rand_int__ $ttl_ms" ;;
    get) echo "1 key:__rand_int__" ;;
  esac
}

start_redis_mem
start_redis_repl
start_zankv

port_of() {
  case "$1" in
    redis-mem) echo "$mem_port" ;;
    redis-repl) echo "$repl_port" ;;
    zankv) echo "$zport" ;;
  esac
}

# The GET script's keys, key:000000000000 .. (as redis-benchmark's __rand_int__ spells
# them), each with a value of $value bytes, written with MSETs of 500 keys.
fill() {
  $py - "$1" "$keys" "$value" <<'PY'
import socket, sys
port, n, size = (int(a) for a in sys.argv[1:4])
value = b"x" * size
s = socket.create_connection(("127.0.0.1", port), timeout=60)
f = s.makefile("rb")
for start in range(0, n, 500):
    parts = [b"MSET"]
    for i in range(start, min(n, start + 500)):
        parts += [b"key:%012d" % i, value]
    s.sendall(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
    line = f.readline()
    if not line.startswith(b"+OK"):
        sys.exit(f"bench: MSET on port {port} answered {line!r}")
PY
}

# One redis-benchmark run, its JSON line (in the shape of zankv-load's: ops, ops_per_sec,
# p50_ms, p99_ms, max_ms, cpu_s of each watched process) on stdout:
#   run_rb TIMEOUT LABEL REQUESTS [--watch NAME=PID ...] -- REDIS-BENCHMARK-ARGV...
# Fails (exit 1) if redis-benchmark fails, which redis-benchmark 7 does at the first error
# reply, or outlasts TIMEOUT seconds (it is then killed).
run_rb() {
  $py - "$@" <<'PY'
import csv, json, os, subprocess, sys
timeout, label, requests = float(sys.argv[1]), sys.argv[2], int(sys.argv[3])
rest, watch = sys.argv[4:], []
while rest and rest[0] == "--watch":
    name, pid = rest[1].split("=", 1)
    watch.append((name, int(pid)))
    rest = rest[2:]
assert rest[:1] == ["--"], rest
argv = rest[1:]
tick = os.sysconf("SC_CLK_TCK")

def cpu(pid):
    """CPU seconds (user + system, every thread) `pid` has used, None if unreadable."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: count from after its parenthesis.
    fields = stat[stat.rfind(")") + 1:].split()
    return (int(fields[11]) + int(fields[12])) / tick

before = [cpu(pid) for _, pid in watch]
try:
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout)
except subprocess.TimeoutExpired:
    sys.exit(f"bench: {label}: redis-benchmark did not finish within {timeout:.0f} s")
after = [cpu(pid) for _, pid in watch]
rows = [line for line in r.stdout.splitlines() if line.startswith('"')]
if r.returncode != 0 or len(rows) < 2:
    sys.exit(f"bench: {label}: redis-benchmark failed (exit {r.returncode}): "
             f"{(r.stderr.strip() + ' ' + r.stdout.strip()).strip()}")
row = dict(zip(next(csv.reader([rows[0]])), next(csv.reader([rows[1]]))))
rps = float(row["rps"])
used = {}
for (name, _), b, a in zip(watch, before, after):
    used[name] = None if b is None or a is None else round(a - b, 3)
print(json.dumps({
    "label": label, "tool": "redis-benchmark", "op": "evalsha",
    "clients": int(argv[argv.index("-c") + 1]), "pipeline": 1, "ops": requests,
    "seconds": round(requests / rps, 3) if rps > 0 else None, "ops_per_sec": round(rps),
    "avg_ms": float(row["avg_latency_ms"]), "p50_ms": float(row["p50_latency_ms"]),
    "p99_ms": float(row["p99_latency_ms"]), "max_ms": float(row["max_latency_ms"]),
    "errors": 0, "cpu_s": used,
}))
PY
}

# bench LABEL SYSTEM SCRIPT REQUESTS [TIMEOUT]: one run of EVALSHA of SCRIPT on SYSTEM,
# given up after TIMEOUT seconds (60); its JSON line kept in $results and in bench_line,
# and, unless LABEL is a warm-up, the command that ran it (without the --watch arguments,
# which only name the processes whose CPU time is counted).
bench() {
  local label=$1 system=$2 script=$3 n=$4 timeout=${5:-60} watch=() words=()
  case "$system" in
    redis-mem) watch=(--watch "redis=$mem_pid") ;;
    redis-repl) watch=("${repl_watch[@]}") ;;
    zankv) watch=("${zankv_watch[@]}") ;;
  esac
  read -ra words <<< "$(evalsha_args "$script")"
  local argv=(redis-benchmark -h 127.0.0.1 -p "$(port_of "$system")" -n "$n" -c "$clients"
    -r "$keys" --csv "$(verb_of "$script")" "$(sha_of "$script")" "${words[@]}")
  say "$label on $system ($n scripts)"
  case "$label" in
    warmup/*) ;;
    *) $py -c 'import json, sys; print(json.dumps({"label": sys.argv[1], "argv": sys.argv[2:]}))' \
         "command/$label/$system" "${argv[@]}" >> "$results" ;;
  esac
  bench_line=$(run_rb "$timeout" "$label/$system" "$n" "${watch[@]}" -- "${argv[@]}") || exit 1
  echo "$bench_line" >> "$results"
}

# The command that runs each script: the read runs as a read-only script (EVALSHA_RO), as
# an application that only reads would send it.
verb_of() { case "$1" in get) echo EVALSHA_RO ;; *) echo EVALSHA ;; esac; }

# The expected SHA1 of each body, which SCRIPT LOAD must answer on every system.
sha_of() { printf '%s' "$(body "$1")" | sha1sum | cut -d' ' -f1; }

value_text=$(printf "%${value}s" "" | tr ' ' x)
for s in "${systems[@]}"; do
  port=$(port_of "$s")
  say "writing $keys keys on $s"
  fill "$port"
  for script in "${scripts[@]}"; do
    sha=$(sha_of "$script")
    loaded=$(timeout 30 redis-cli -p "$port" script load "$(body "$script")" 2>&1) || true
    if [ "$loaded" != "$sha" ]; then
      say "SCRIPT LOAD of $script on $s answered: $loaded (expected $sha)"; exit 1
    fi
    # One EVALSHA by hand: an error reply (NOSCRIPT, a script error) stops the run here.
    case "$script" in
      incr) reply=$(timeout 30 redis-cli -p "$port" evalsha "$sha" 1 "rl:probe:$s" "$ttl_ms" 2>&1) || true
            [[ "$reply" =~ ^[0-9]+$ ]] || { say "EVALSHA of $script on $s answered: $reply"; exit 1; } ;;
      get) reply=$(timeout 30 redis-cli -p "$port" evalsha_ro "$sha" 1 key:000000000000 2>&1) || true
           [ "$reply" = "$value_text" ] || { say "EVALSHA of $script on $s answered: $reply"; exit 1; } ;;
    esac
  done
done
for script in "${scripts[@]}"; do
  # shellcheck disable=SC2046
  $py -c 'import json, sys; print(json.dumps({"label": "script/" + sys.argv[1], "verb": sys.argv[2], "body": sys.argv[3], "sha": sys.argv[4], "argv": sys.argv[5:]}))' \
    "$script" "$(verb_of "$script")" "$(body "$script")" "$(sha_of "$script")" $(evalsha_args "$script") >> "$results"
done

# Warm-up, and each run's size: 1000 scripts, then four times as many until a run lasts a
# second; a run then holds as many as the last warm-up's rate gives in $secs seconds (or
# ZANKV_BENCH_REQUESTS), and is given up after ten times as long as that rate gives it (at
# least a minute). Warm-up runs are kept in the results but not shown.
declare -A size limit
for script in "${scripts[@]}"; do
  for s in "${systems[@]}"; do
    n=1000
    while :; do
      bench "warmup/$script" "$s" "$script" "$n"
      rate=$($py -c 'import json, sys; print(json.loads(sys.argv[1])["ops_per_sec"])' "$bench_line")
      if awk -v n="$n" -v r="$rate" 'BEGIN { exit !(r > 0 && n / r < 1) }' && [ "$n" -lt 4096000 ]; then
        n=$((n * 4))
      else
        break
      fi
    done
    size[$script/$s]=${requests:-$(awk -v r="$rate" -v t="$secs" 'BEGIN { n = int(r * t); print (n < 1000 ? 1000 : n) }')}
    limit[$script/$s]=$(awk -v n="${size[$script/$s]}" -v r="$rate" \
      'BEGIN { t = r > 0 ? int(10 * n / r) + 1 : 60; print (t < 60 ? 60 : t) }')
  done
done

for _ in $(seq "$rounds"); do
  for script in "${scripts[@]}"; do
    for s in "${systems[@]}"; do
      bench "$script" "$s" "$script" "${size[$script/$s]}" "${limit[$script/$s]}"
    done
  done
done

write_report scripts benches/script_report.py "{\"seconds\": $secs, \"clients\": $clients, \"keys\": $keys,
  \"value\": $value, \"ttl_ms\": $ttl_ms, \"rounds\": $rounds, \"requests\": \"${requests:-sized}\",
  \"redis_benchmark\": \"$(redis-benchmark --version | head -1)\",
  \"elapsed_s\": $(( $(date +%s) - started_at ))}"
