"""redis-py's cluster client (Debian's python3-redis RedisCluster) against two proxies.

Run by storage/tests/proxy.rs as: redis_py_cluster.py PORT PID. PORT is one proxy's
redis_addr (a startup node, as an app would configure it); PID is the other proxy's process,
which this script kills halfway to check that the client moves to the survivor. Exits
non-zero on the first unexpected reply; prints "ok" at the end.
"""

import os
import signal
import sys
import time

from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError


def main():
    port, other_pid = int(sys.argv[1]), int(sys.argv[2])
    rc = RedisCluster(host="127.0.0.1", port=port, decode_responses=True)

    # Both proxies share the slots; the client talks to each through its cluster address.
    nodes = rc.get_primaries()
    assert len(nodes) == 2, nodes
    assert all(n.port != port for n in nodes), "cluster addresses, not the startup one"

    # Writes and reads over every slot range.
    keys = {f"rc:{i}": str(i) for i in range(300)}
    for k, v in keys.items():
        assert rc.set(k, v) is True
    for k, v in keys.items():
        assert rc.get(k) == v, k
    # Keys sharing a hash tag share a slot: multi-key commands work on them.
    assert rc.mset({"{user42}:a": "1", "{user42}:b": "2"}) is True
    assert rc.mget("{user42}:a", "{user42}:b") == ["1", "2"]
    assert rc.mget_nonatomic(["rc:1", "rc:2", "rc:200"]) == ["1", "2", "200"]

    # A pipeline spread over both proxies: replies in order.
    pipe = rc.pipeline()
    for i in range(100):
        pipe.incr(f"rc:n:{i % 10}")
    replies = pipe.execute()
    assert replies[-1] == 10 and replies[0] == 1, replies

    # SCAN and DBSIZE over every proxy count each key once.
    total = len(keys) + 2 + 10
    scanned = list(rc.scan_iter(count=50))
    assert len(scanned) == total, (len(scanned), total)
    assert len(set(scanned)) == total
    # As on Redis Cluster, each node counts its own keys: summed over the primaries.
    assert rc.dbsize(target_nodes=RedisCluster.PRIMARIES) == total

    # One proxy dies: the client moves to the other within the proxies' 3 s expiry.
    os.kill(other_pid, signal.SIGKILL)
    deadline = time.time() + 60
    done = 0
    while done < 50:
        key = f"rc:after:{done}"
        try:
            if rc is None:
                rc = RedisCluster(host="127.0.0.1", port=port, decode_responses=True)
            assert rc.set(key, "x") is True
            assert rc.get(key) == "x"
            done += 1
        except (RedisError, RedisClusterException) as e:
            if time.time() > deadline:
                raise AssertionError(f"no proxy took {key}: {e!r}")
            time.sleep(0.2)
            # Debian's redis-py 4.3.4 cannot refresh its slot map after a node failure
            # (copying its connection settings fails: "cannot pickle '_thread.lock'"), so
            # do what an app does then: a new client from the same startup node.
            if isinstance(e, RedisClusterException):
                rc = None
    for k, v in keys.items():
        assert rc.get(k) == v, k
    assert len(rc.get_primaries()) == 1, rc.get_primaries()
    print("ok")


if __name__ == "__main__":
    main()
