#!/usr/bin/env python3
"""redis-py (5.x) in cluster mode and plain mode against one address (a Redis Cluster node,
or nearcache in front of a Redis Cluster).

    python redis_py_cluster.py HOST PORT [step ...]

Steps: cluster_client (RedisCluster: writes, reads, a cross-slot mget_nonatomic of 100 keys),
cluster_client_resp3 (the same with protocol=3), one_node (RedisCluster sees exactly one node,
at HOST:PORT, owning every slot), plain_client (Redis: 100 keys written and read, SCAN, DBSIZE,
MGET of one slot), plain_mget_cross_slot (Redis: a cross-slot MGET of 100 keys). Each prints `ok <step>` or `FAIL <step>: <reason>`; the exit code is 1 if any step
failed, 2 on bad usage. Keys are prefixed with a random run id.
"""

import os
import sys
import traceback

import redis
from redis.cluster import RedisCluster

IO_TIMEOUT = 5.0
STEPS = [
    "cluster_client",
    "cluster_client_resp3",
    "one_node",
    "plain_client",
    "plain_mget_cross_slot",
]


class Failure(Exception):
    pass


def check_eq(got, want, what):
    if got != want:
        raise Failure(f"{what}: got {got!r}, want {want!r}")


def keys_and_values(run, name, n=100):
    keys = [f"clients:pyc:{run}:{name}:{i}" for i in range(n)]
    return keys, [f"v{i}-{run}" for i in range(n)]


def cluster(host, port, **kw):
    return RedisCluster(
        host=host,
        port=port,
        decode_responses=True,
        socket_timeout=IO_TIMEOUT,
        socket_connect_timeout=IO_TIMEOUT,
        **kw,
    )


def cross_slot_mget(rc, run, name):
    keys, values = keys_and_values(run, name)
    slots = {rc.keyslot(k) for k in keys}
    if len(slots) < 50:
        raise Failure(f"the keys should spread over many slots ({len(slots)})")
    for k, v in zip(keys, values):
        check_eq(rc.set(k, v), True, f"SET {k}")
    check_eq(rc.get(keys[0]), values[0], "GET")
    check_eq(rc.mget_nonatomic(keys), values, "mget_nonatomic of 100 keys")
    # Again: now partly from the sidecar's L1.
    check_eq(rc.mget_nonatomic(keys), values, "mget_nonatomic of 100 keys, again")
    return f"{len(slots)} slots"


def step_cluster_client(host, port, run):
    rc = cluster(host, port)
    try:
        return cross_slot_mget(rc, run, "c2")
    finally:
        rc.close()


def step_cluster_client_resp3(host, port, run):
    rc = cluster(host, port, protocol=3)
    try:
        return cross_slot_mget(rc, run, "c3")
    finally:
        rc.close()


def step_one_node(host, port, run):
    rc = cluster(host, port)
    try:
        nodes = [(n.host, n.port, n.server_type) for n in rc.get_nodes()]
        check_eq(nodes, [(host, port, "primary")], "the nodes RedisCluster sees")
        for key in ["a", "b", f"{run}:x", "{user}.1"]:
            node = rc.get_node_from_key(key)
            check_eq((node.host, node.port), (host, port), f"the node of {key}")
        info = rc.cluster_info()
        check_eq(info.get("cluster_state"), "ok", "cluster_state")
        return f"node {host}:{port}"
    finally:
        rc.close()


def plain(host, port):
    return redis.Redis(
        host=host,
        port=port,
        decode_responses=True,
        socket_timeout=IO_TIMEOUT,
        socket_connect_timeout=IO_TIMEOUT,
    )


def step_plain_client(host, port, run):
    r = plain(host, port)
    try:
        keys, values = keys_and_values(run, "plain")
        pipe = r.pipeline(transaction=False)
        for k, v in zip(keys, values):
            pipe.set(k, v)
        check_eq(pipe.execute(), [True] * len(keys), "pipelined SETs")
        check_eq([r.get(k) for k in keys], values, "GET of each key")
        found = set(r.scan_iter(match=f"clients:pyc:{run}:plain:*", count=10))
        check_eq(found, set(keys), "SCAN over every primary")
        if r.dbsize() < len(keys):
            raise Failure(f"DBSIZE {r.dbsize()} < {len(keys)}")
        tagged = [f"{{clients:pyc:{run}}}:{i}" for i in range(10)]
        r.mset({k: k for k in tagged})
        check_eq(r.mget(tagged), tagged, "MGET of keys of one slot")
        return "100 keys"
    finally:
        r.close()


def step_plain_mget_cross_slot(host, port, run):
    r = plain(host, port)
    try:
        keys, values = keys_and_values(run, "plainx")
        pipe = r.pipeline(transaction=False)
        for k, v in zip(keys, values):
            pipe.set(k, v)
        check_eq(pipe.execute(), [True] * len(keys), "pipelined SETs")
        check_eq(r.mget(keys), values, "MGET of 100 keys across slots")
        check_eq(r.mget(keys), values, "MGET of 100 keys across slots, again")
        return "100 keys"
    finally:
        r.close()


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    host, port = argv[1], int(argv[2])
    steps = argv[3:] or STEPS
    run = os.urandom(4).hex()
    failed = False
    for name in steps:
        fn = globals().get(f"step_{name}")
        if fn is None:
            print(f"unknown step {name}", file=sys.stderr)
            return 2
        try:
            note = fn(host, port, run)
            print(f"ok {name} ({note})", flush=True)
        except Exception as e:  # noqa: BLE001 - every failure is reported as the step's
            failed = True
            print(f"FAIL {name}: {e!r}", flush=True)
            traceback.print_exc()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
