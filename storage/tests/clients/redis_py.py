"""A mainstream client library (redis-py, Debian's python3-redis) against the proxy.

Run by storage/tests/proxy.rs as: redis_py.py PORT PASSWORD. Exits non-zero on the first
reply that differs from what Redis gives; prints "ok" at the end.
"""

import sys

import redis


def main():
    port, password = int(sys.argv[1]), sys.argv[2]

    # Without the password the proxy refuses, as Redis with requirepass does.
    anonymous = redis.Redis(host="127.0.0.1", port=port)
    try:
        anonymous.get("x")
        raise AssertionError("a command before AUTH was answered")
    except redis.exceptions.AuthenticationError:
        pass

    r = redis.Redis(host="127.0.0.1", port=port, password=password, decode_responses=True)
    assert r.ping() is True

    # MSET/MGET over keys of every partition.
    mapping = {f"py:{i}": str(i * i) for i in range(200)}
    assert r.mset(mapping) is True
    keys = list(mapping)
    keys.reverse()
    assert r.mget(keys + ["py:missing"]) == [mapping[k] for k in keys] + [None]
    assert r.exists(*keys[:50], "py:missing") == 50

    # A pipeline (no MULTI) of many commands for many partitions: replies in order.
    pipe = r.pipeline(transaction=False)
    for i in range(300):
        pipe.incr(f"py:counter:{i % 37}")
        pipe.get(f"py:{i % 200}")
        pipe.hset(f"py:hash:{i % 11}", f"f{i}", i)
    replies = pipe.execute()
    counts = {}
    for i in range(300):
        counter = f"py:counter:{i % 37}"
        counts[counter] = counts.get(counter, 0) + 1
        assert replies[3 * i] == counts[counter], (i, replies[3 * i])
        assert replies[3 * i + 1] == mapping[f"py:{i % 200}"]
        assert replies[3 * i + 2] == 1
    assert r.hlen("py:hash:0") == len(range(0, 300, 11))

    # A pipeline of cross-partition multi-key commands and errors.
    pipe = r.pipeline(transaction=False)
    pipe.mset({"py:a": "1", "py:b": "2", "py:c": "3"})
    pipe.mget("py:c", "py:b", "py:a")
    pipe.delete("py:a", "py:b", "py:nope")
    pipe.incr("py:c")
    pipe.hget("py:c", "f")
    replies = pipe.execute(raise_on_error=False)
    assert replies[:4] == [True, ["3", "2", "1"], 2, 4], replies
    assert isinstance(replies[4], redis.exceptions.ResponseError)
    assert str(replies[4]).startswith("WRONGTYPE"), replies[4]

    # A command whose keys need one partition, across partitions: a clear error.
    try:
        r.rename("py:c", "py:counter:1")
        raise AssertionError("RENAME across partitions was answered")
    except redis.exceptions.ResponseError as e:
        assert str(e).startswith("CROSSSLOT"), e

    # Expiry, and SCAN over the whole cluster through the library's iterator.
    assert r.set("py:ttl", "v", ex=100) is True
    assert 0 < r.ttl("py:ttl") <= 100
    scanned = set(r.scan_iter(match="py:*", count=50))
    assert scanned == set(r.keys("py:*")), "SCAN and KEYS disagree"
    assert len(scanned) == r.dbsize()
    assert r.info("keyspace")["db0"]["keys"] == len(scanned)
    assert r.info("keyspace")["db0"]["expires"] == 1

    print("ok")


if __name__ == "__main__":
    main()
