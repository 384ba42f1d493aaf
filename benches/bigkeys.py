"""Big keys and tombstones on a zankv cluster (run by benches/collections.sh).

Prints JSON lines (the format of zankv-load's, plus `bigkey/...` facts):

- bigkey/build/<type>: how long writing a set, hash, list and sorted set of N members took;
- bigkey/<command>/<type>: the latency of RENAME, EXPIRE and DEL of each (ms), each on an
  established connection, with the time the key existed before and after checked;
- reclaim/idle/set, reclaim/busy/set (and get): zankv-load runs before the big keys are
  dropped and right after, while their elements are reclaimed in the background;
- churn/<start|end>/<zrange|lrange>: the read throughput of a sorted set trimmed at its low
  end (ZADD + ZREMRANGEBYRANK 0 -1001) and of a list used as a queue (LPUSH + RPOP), before
  and after --churn-seconds of that churn; churn/ops: how many writes the churn made.
"""

import argparse
import json
import subprocess
import threading
import time

import redis


def emit(**fields):
    print(json.dumps(fields), flush=True)


def build(r, kind, key, n, batch=1000):
    """Writes `n` members into `key`, `batch` per command, pipelined."""
    started = time.perf_counter()
    pipe = r.pipeline(transaction=False)
    pending = 0
    for start in range(0, n, batch):
        members = [f"m{i}" for i in range(start, min(n, start + batch))]
        if kind == "set":
            pipe.sadd(key, *members)
        elif kind == "hash":
            pipe.hset(key, mapping={m: "v" for m in members})
        elif kind == "list":
            pipe.rpush(key, *members)
        else:
            pipe.zadd(key, {m: i for i, m in enumerate(members, start)})
        pending += 1
        if pending == 20:
            pipe.execute()
            pending = 0
    pipe.execute()
    return time.perf_counter() - started


def timed(r, *args):
    started = time.perf_counter()
    reply = r.execute_command(*args)
    return (time.perf_counter() - started) * 1000, reply


def same_partition_name(r, key):
    """A new key name in `key`'s partition (RENAME's keys must share one): RENAMENX of a
    missing name onto `key` changes nothing and answers CROSSSLOT for a name elsewhere."""
    for i in range(10_000):
        candidate = f"{key}:renamed:{i}"
        try:
            r.execute_command("RENAMENX", candidate, key)
        except redis.ResponseError as e:
            if "CROSSSLOT" in str(e):
                continue
            return candidate
    raise SystemExit("no key name found in the partition of " + key)


def load(args, label, op, prefix, keyspace, seconds=None):
    out = subprocess.run(
        [args.load, "--addrs", f"127.0.0.1:{args.port}", "--op", op, "--clients",
         str(args.clients), "--seconds", str(seconds or args.seconds), "--warmup", "1",
         "--keyspace", str(keyspace), "--key-prefix", prefix, "--label", label],
        capture_output=True, text=True, check=True)
    print(out.stdout.strip(), flush=True)
    return json.loads(out.stdout)


def churn(r, stop, counts, what):
    n = 0
    pipe = r.pipeline(transaction=False)
    while not stop.is_set():
        for _ in range(100):
            n += 1
            if what == "zset":
                pipe.zadd("hot:z0", {f"n{n}": 1000 + n})
                pipe.zremrangebyrank("hot:z0", 0, -1001)
            else:
                pipe.lpush("hot:q0", f"n{n}")
                pipe.rpop("hot:q0")
        pipe.execute()
    counts[what] = n


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--members", type=int, default=1_000_000)
    p.add_argument("--churn-seconds", type=float, default=300)
    p.add_argument("--load", required=True)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--clients", type=int, default=32)
    args = p.parse_args()
    r = redis.Redis(port=args.port, socket_timeout=120)

    kinds = ["set", "hash", "list", "zset"]
    for kind in kinds:
        took = build(r, kind, f"big:{kind}", args.members)
        emit(label=f"bigkey/build/{kind}", seconds=round(took, 1), members=args.members)
    load(args, "reclaim/idle/set", "set", "c:str:", 10000)
    load(args, "reclaim/idle/get", "get", "c:str:", 10000)
    for kind in kinds:
        key = f"big:{kind}"
        dst = same_partition_name(r, key)
        ms, _ = timed(r, "RENAME", key, dst)
        emit(label=f"bigkey/rename/{kind}", ms=round(ms, 3))
        ms, _ = timed(r, "EXPIRE", dst, 3600)
        emit(label=f"bigkey/expire/{kind}", ms=round(ms, 3))
        ms, deleted = timed(r, "DEL", dst)
        assert deleted == 1, f"DEL {dst} answered {deleted}"
        emit(label=f"bigkey/del/{kind}", ms=round(ms, 3))
    # The elements of all four are reclaimed in the background from now on.
    load(args, "reclaim/busy/set", "set", "c:str:", 10000)
    load(args, "reclaim/busy/get", "get", "c:str:", 10000)

    r.delete("hot:z0", "hot:q0")
    build(r, "zset", "hot:z0", 1000)
    build(r, "list", "hot:q0", 1000)
    load(args, "churn/start/zrange", "zrange", "hot:z", 1)
    load(args, "churn/start/lrange", "lrange", "hot:q", 1)
    stop, counts = threading.Event(), {}
    workers = [threading.Thread(target=churn, args=(redis.Redis(port=args.port), stop, counts, w))
               for w in ("zset", "list")]
    for w in workers:
        w.start()
    time.sleep(args.churn_seconds)
    stop.set()
    for w in workers:
        w.join()
    emit(label="churn/ops", seconds=args.churn_seconds, zset_adds=counts.get("zset", 0),
         list_pops=counts.get("list", 0), zcard=r.zcard("hot:z0"), llen=r.llen("hot:q0"))
    load(args, "churn/end/zrange", "zrange", "hot:z", 1)
    load(args, "churn/end/lrange", "lrange", "hot:q", 1)


if __name__ == "__main__":
    main()
