#!/usr/bin/env python3
"""Realistic redis-py (5.x) usage, run against a Redis URL (a redis-server or nearcache).

    python redis_py_scenarios.py redis://127.0.0.1:6380 [step ...]

Every scenario is a named step that prints `ok <step> (...)` or `FAIL <step>: <reason>`;
the exit code is 1 if any step failed, 2 on bad usage. Steps run in order; a failing step
does not stop the ones after it (each opens its own clients). Keys are prefixed with a
random run id, so runs do not see each other's data.
"""

import collections
import logging
import os
import sys
import threading
import time
import traceback

import redis
from redis.exceptions import ResponseError, WatchError

# redis-py logs every RESP3 push (pub/sub message) at INFO on its "push_response" logger.
logging.getLogger("push_response").disabled = True

# Socket timeout for ordinary commands: a hung reply fails the step instead of the run.
IO_TIMEOUT = 3.0


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def check_eq(got, want, what):
    if got != want:
        raise Failure(f"{what}: got {got!r}, want {want!r}")


class Ctx:
    def __init__(self, url):
        self.url = url
        self.run = os.urandom(4).hex()

    def key(self, name):
        return f"clients:py:{self.run}:{name}"

    def client(self, **kw):
        kw.setdefault("decode_responses", True)
        kw.setdefault("socket_timeout", IO_TIMEOUT)
        kw.setdefault("socket_connect_timeout", IO_TIMEOUT)
        return redis.Redis.from_url(self.url, **kw)


def run_threads(target, args_list, timeout, what):
    """Runs target(*args) in one thread each; re-raises the first error; bounded by timeout."""
    errors = []

    def wrap(*args):
        try:
            target(*args)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=a, daemon=True) for a in args_list]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        raise Failure(f"{what}: threads still running after {timeout} s")
    if errors:
        raise errors[0]


# ---- 1. pipelines ---------------------------------------------------------------------


def step_pipeline(ctx):
    r = ctx.client()
    counter, hkey = ctx.key("pipe:counter"), ctx.key("pipe:hash")
    pipe = r.pipeline(transaction=False)
    expected = []
    incrs = 0
    for i in range(100):
        kind = i % 4
        if kind == 0:
            pipe.set(ctx.key(f"pipe:{i}"), f"v{i}")
            expected.append(True)
        elif kind == 1:
            pipe.get(ctx.key(f"pipe:{i - 1}"))  # set by the previous command
            expected.append(f"v{i - 1}")
        elif kind == 2:
            pipe.incr(counter)
            incrs += 1
            expected.append(incrs)
        else:
            pipe.hset(hkey, f"f{i}", i)
            expected.append(1)
    results = pipe.execute()
    check_eq(len(results), 100, "pipeline result count")
    for i, (got, want) in enumerate(zip(results, expected)):
        check_eq(got, want, f"pipeline result {i}")
    check_eq(r.get(counter), str(incrs), "counter after the pipeline")
    check_eq(
        r.hgetall(hkey),
        {f"f{i}": str(i) for i in range(3, 100, 4)},
        "hash after the pipeline",
    )
    # The cached reads of keys the pipeline wrote, one by one and as one MGET.
    keys = [ctx.key(f"pipe:{i}") for i in range(0, 100, 4)]
    check_eq(r.mget(keys), [f"v{i}" for i in range(0, 100, 4)], "MGET after the pipeline")
    return "100 mixed SET/GET/INCR/HSET"


# ---- 2. transactions ------------------------------------------------------------------


def step_watch_retry(ctx):
    key = ctx.key("tx:counter")
    workers, per_worker = 4, 50
    retries = collections.Counter()
    ctx.client().set(key, 0)

    def worker(n):
        r = ctx.client()
        with r.pipeline() as pipe:
            for _ in range(per_worker):
                while True:
                    try:
                        pipe.watch(key)
                        value = int(pipe.get(key))
                        pipe.multi()
                        pipe.set(key, value + 1)
                        pipe.execute()
                        break
                    except WatchError:
                        retries[n] += 1
        r.close()

    run_threads(worker, [(n,) for n in range(workers)], 8.0, "WATCH workers")
    check_eq(ctx.client().get(key), str(workers * per_worker), "counter after WATCH/MULTI/EXEC")
    return f"{workers} workers x {per_worker} increments, {sum(retries.values())} WatchError retries"


def step_multi_exec(ctx):
    r = ctx.client()
    k, h = ctx.key("multi:k"), ctx.key("multi:h")
    with r.pipeline(transaction=True) as pipe:
        pipe.set(k, "1").incrby(k, 41).get(k).hset(h, mapping={"a": "1", "b": "2"}).hgetall(h)
        results = pipe.execute()
    check_eq(results, [True, 42, "42", 2, {"a": "1", "b": "2"}], "MULTI/EXEC results")
    check_eq(r.get(k), "42", "GET after EXEC")
    # WATCH on an untouched key: EXEC goes through.
    with r.pipeline() as pipe:
        pipe.watch(k)
        pipe.multi()
        pipe.incr(k)
        check_eq(pipe.execute(), [43], "EXEC after WATCH with no interference")
    # A watched key changed by another connection: EXEC is discarded (WatchError).
    other = ctx.client()
    with r.pipeline() as pipe:
        pipe.watch(k)
        other.set(k, "changed")
        pipe.multi()
        pipe.set(k, "mine")
        try:
            pipe.execute()
            raise Failure("EXEC after a watched key changed did not raise WatchError")
        except WatchError:
            pass
    check_eq(r.get(k), "changed", "key after the discarded EXEC")
    return "pipeline(transaction=True), WATCH ok, WATCH conflict"


def step_execabort(ctx):
    r = ctx.client()
    k = ctx.key("abort:k")
    with r.pipeline(transaction=True) as pipe:
        pipe.set(k, "queued")
        pipe.execute_command("SET", k)  # wrong number of arguments: queuing fails
        pipe.incr(ctx.key("abort:other"))
        try:
            pipe.execute()
            raise Failure("a transaction with a queued syntax error did not raise")
        except ResponseError as e:
            msg = str(e)
            check("wrong number of arguments" in msg.lower(), f"unexpected error: {msg}")
    check_eq(r.get(k), None, "key of the aborted transaction")
    check_eq(r.get(ctx.key("abort:other")), None, "other key of the aborted transaction")
    check_eq(r.ping(), True, "PING after EXECABORT")
    return "queued syntax error raised ResponseError, nothing applied"


# ---- 3. job queue with blocking pops ---------------------------------------------------


def step_job_queue(ctx):
    queue, processing = ctx.key("jobs"), ctx.key("jobs:processing")
    producers, per_producer, consumers = 2, 50, 3
    done = collections.Counter()
    lock = threading.Lock()
    producing = threading.Event()
    producing.set()
    popped_by = collections.Counter()

    def producer(n):
        r = ctx.client()
        for i in range(per_producer):
            r.lpush(queue, f"job-{n}-{i}")
            if i % 10 == 0:
                time.sleep(0.01)  # let the consumers block now and then
        r.close()

    def consumer(n):
        r = ctx.client(socket_timeout=IO_TIMEOUT + 1)
        use_blmove = n == 0
        while True:
            if use_blmove:
                job = r.blmove(queue, processing, 1, "RIGHT", "LEFT")
                if job is not None:
                    check_eq(r.lrem(processing, 1, job), 1, "LREM of a processed job")
            else:
                got = r.brpop([queue], timeout=1)
                job = None if got is None else got[1]
                if got is not None:
                    check_eq(got[0], queue, "BRPOP key")
            if job is None:
                if not producing.is_set():
                    break
                continue
            with lock:
                done[job] += 1
                popped_by["BLMOVE" if use_blmove else "BRPOP"] += 1
        r.close()

    errors = []
    consumer_threads = []
    for n in range(consumers):

        def wrap(n=n):
            try:
                consumer(n)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        t = threading.Thread(target=wrap, daemon=True)
        t.start()
        consumer_threads.append(t)
    try:
        run_threads(producer, [(n,) for n in range(producers)], 5.0, "producers")
    finally:
        producing.clear()
    for t in consumer_threads:
        t.join(5.0)
    if errors:
        raise errors[0]
    check(not any(t.is_alive() for t in consumer_threads), "consumers still running")
    want = {f"job-{n}-{i}" for n in range(producers) for i in range(per_producer)}
    check_eq(set(done), want, "jobs processed")
    twice = [j for j, c in done.items() if c != 1]
    check(not twice, f"jobs processed more than once: {twice[:5]}")
    r = ctx.client()
    check_eq(r.llen(queue), 0, "queue length at the end")
    check_eq(r.llen(processing), 0, "processing list length at the end")
    return f"{len(want)} jobs exactly once ({dict(popped_by)})"


def step_brpop_timeout(ctx):
    r = ctx.client()
    started = time.monotonic()
    got = r.brpop([ctx.key("empty")], timeout=0.2)
    elapsed = time.monotonic() - started
    check_eq(got, None, "BRPOP on an empty list")
    check(0.15 <= elapsed <= 1.5, f"BRPOP timeout 0.2 returned after {elapsed:.3f} s")
    check_eq(r.ping(), True, "PING after the BRPOP timeout")
    return f"None after {elapsed:.3f} s"


# ---- 4. pub/sub -----------------------------------------------------------------------


def next_message(pubsub, what, timeout=2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
        if msg is not None:
            return msg
    raise Failure(f"no pub/sub message within {timeout} s ({what})")


def pubsub_round(ctx, r, publisher, tag, n):
    chan, pattern = ctx.key(f"{tag}:chan"), ctx.key(f"{tag}:news.*")
    pchan = ctx.key(f"{tag}:news.sport")
    p = r.pubsub()
    p.subscribe(chan)
    check_eq(next_message(p, "subscribe")["type"], "subscribe", "first confirmation")
    p.psubscribe(pattern)
    m = next_message(p, "psubscribe")
    check_eq((m["type"], m["channel"], m["data"]), ("psubscribe", pattern, 2), "psubscribe confirmation")
    for i in range(n):
        check_eq(publisher.publish(chan, f"m{i}"), 1, f"PUBLISH {i} receivers")
        check_eq(publisher.publish(pchan, f"p{i}"), 1, f"PUBLISH {i} (pattern) receivers")
    for i in range(n):
        m = next_message(p, f"message {i}")
        check_eq((m["type"], m["channel"], m["data"]), ("message", chan, f"m{i}"), f"message {i}")
        m = next_message(p, f"pmessage {i}")
        check_eq(
            (m["type"], m["pattern"], m["channel"], m["data"]),
            ("pmessage", pattern, pchan, f"p{i}"),
            f"pmessage {i}",
        )
    p.unsubscribe()
    p.punsubscribe()
    m1, m2 = next_message(p, "unsubscribe"), next_message(p, "punsubscribe")
    check_eq((m1["type"], m1["data"]), ("unsubscribe", 1), "unsubscribe confirmation")
    check_eq((m2["type"], m2["data"]), ("punsubscribe", 0), "punsubscribe confirmation")
    # Out of subscribed mode, the same connection takes ordinary commands.
    conn = p.connection
    k = ctx.key(f"{tag}:after")
    conn.send_command("SET", k, "after-pubsub")
    check_eq(conn.read_response(), "OK", "SET on the connection after unsubscribing")
    conn.send_command("GET", k)
    check_eq(conn.read_response(), "after-pubsub", "GET on the connection after unsubscribing")
    check_eq(publisher.publish(chan, "late"), 0, "PUBLISH receivers after unsubscribing")
    p.close()
    pool = r.connection_pool
    check(conn in pool._available_connections, "the pub/sub connection did not return to the pool")
    check_eq(r.get(k), "after-pubsub", "GET through the pool after pub/sub")


def step_pubsub(ctx):
    n = 50
    pubsub_round(ctx, ctx.client(), ctx.client(), "ps", n)
    return f"{n} messages + {n} pattern messages in order, unsubscribed, connection reused"


# ---- 5. RESP3 -------------------------------------------------------------------------


def step_resp3(ctx):
    r = ctx.client(protocol=3)
    hello = r.execute_command("HELLO", "3")
    check_eq(hello.get("proto"), 3, "HELLO 3 proto field")
    k, h, z = ctx.key("r3:k"), ctx.key("r3:h"), ctx.key("r3:z")
    check_eq(r.set(k, "v3"), True, "SET")
    check_eq(r.get(k), "v3", "GET")
    check_eq(r.get(k), "v3", "GET again")
    check_eq(r.get(ctx.key("r3:missing")), None, "GET of a missing key")
    r.hset(h, mapping={"a": "1", "b": "2"})
    got = r.hgetall(h)
    check(isinstance(got, dict), f"HGETALL returned {type(got).__name__}, not dict")
    check_eq(got, {"a": "1", "b": "2"}, "HGETALL")
    check_eq(r.zadd(z, {"m": 1.5}), 1, "ZADD")
    score = r.zscore(z, "m")
    check(isinstance(score, float), f"ZSCORE returned {type(score).__name__}, not float")
    check_eq(score, 1.5, "ZSCORE")
    check_eq(r.mget([k, ctx.key("r3:missing")]), ["v3", None], "MGET")
    return "HELLO 3, GET/SET, HGETALL dict, ZSCORE float"


def step_resp3_pubsub(ctx):
    pubsub_round(ctx, ctx.client(protocol=3), ctx.client(protocol=3), "r3ps", 10)
    return "10 messages + 10 pattern messages as RESP3 pushes, unsubscribed, connection reused"


# ---- 6. read-your-writes --------------------------------------------------------------


def step_read_your_writes(ctx):
    r, other = ctx.client(), ctx.client()
    k = ctx.key("ryw")
    for i in range(200):
        check_eq(r.set(k, f"v{i}"), True, f"SET {i}")
        check_eq(r.get(k), f"v{i}", f"GET after SET {i}")
        check_eq(r.get(k), f"v{i}", f"second GET after SET {i}")
        if i % 10 == 0:
            check_eq(other.get(k), f"v{i}", f"GET on another connection after SET {i}")
            check_eq(other.mget([k]), [f"v{i}"], f"MGET after SET {i}")
    # Writes from the other connection, read back on the first.
    for i in range(50):
        other.set(k, f"o{i}")
        check_eq(r.get(k), f"o{i}", f"GET after another connection's SET {i}")
    other.delete(k)
    check_eq(r.get(k), None, "GET after DEL")
    r.append(k, "x")
    r.append(k, "y")
    check_eq(r.get(k), "xy", "GET after APPEND")
    return "200 SET/GET/GET, 50 cross-connection writes, DEL, APPEND"


# ---- 7. INFO parses -------------------------------------------------------------------


def step_info(ctx):
    for protocol in (2, 3):
        r = ctx.client(protocol=protocol)
        everything = r.info()
        check("redis_version" in everything, f"INFO (RESP{protocol}) has redis_version")
        check_eq(type(r.info("server")).__name__, "dict", "INFO server parses")
        if "nearcache_version" not in everything:
            continue  # a plain Redis: nothing more to read
        ours = r.info("nearcache")
        for field in ("l1_hits", "l1_misses", "upstream_connections", "slow_commands"):
            check(isinstance(ours.get(field), int), f"INFO nearcache {field} is a number: {ours.get(field)!r}")
        check(isinstance(ours.get("l1_hit_rate"), float), "l1_hit_rate is a float")
        l1 = r.info("nearcache_l1")
        check("l1_entries" in l1 and "upstream_connections" not in l1, "INFO nearcache_l1 is one section")
    return "INFO, INFO server (and the sidecar's sections) parse in RESP2 and RESP3"


STEPS = [
    ("pipeline", step_pipeline),
    ("read_your_writes", step_read_your_writes),
    ("watch_retry", step_watch_retry),
    ("multi_exec", step_multi_exec),
    ("execabort", step_execabort),
    ("job_queue", step_job_queue),
    ("brpop_timeout", step_brpop_timeout),
    ("pubsub", step_pubsub),
    ("resp3", step_resp3),
    ("resp3_pubsub", step_resp3_pubsub),
    ("info", step_info),
]


def main(argv):
    if len(argv) < 2 or not argv[1].startswith("redis://"):
        print(f"usage: {argv[0]} redis://HOST:PORT [step ...]", file=sys.stderr)
        print("steps: " + " ".join(name for name, _ in STEPS), file=sys.stderr)
        return 2
    wanted = set(argv[2:])
    unknown = wanted - {name for name, _ in STEPS}
    if unknown:
        print(f"unknown steps: {sorted(unknown)}", file=sys.stderr)
        return 2
    ctx = Ctx(argv[1])
    print(f"redis-py {redis.__version__} against {ctx.url}", flush=True)
    failed = []
    for name, fn in STEPS:
        if wanted and name not in wanted:
            continue
        started = time.monotonic()
        try:
            detail = fn(ctx)
            print(f"ok {name} ({detail}; {time.monotonic() - started:.2f} s)", flush=True)
        except Failure as e:
            failed.append(name)
            print(f"FAIL {name}: {e}", flush=True)
        except Exception as e:  # noqa: BLE001 - any library error fails the step
            failed.append(name)
            # The script's own line that called into the library.
            frames = traceback.extract_tb(e.__traceback__)
            ours = [f for f in frames if f.filename == __file__] or frames
            print(
                f"FAIL {name}: {type(e).__name__}: {e} (line {ours[-1].lineno})",
                flush=True,
            )
    ran = len(wanted) if wanted else len(STEPS)
    if failed:
        print(f"redis-py: {len(failed)} of {ran} steps failed: {' '.join(failed)}", flush=True)
    else:
        print(f"redis-py: all {ran} steps ok", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
