#!/usr/bin/env node
// Realistic ioredis (5.x) usage, plus node-redis (5.x) for RESP3, run against a Redis URL
// (a redis-server or nearcache).
//
//     node ioredis_scenarios.js redis://127.0.0.1:6380 [step ...]
//
// The libraries are found through NODE_PATH (scripts/ensure-clients.sh installs them into
// target/clients/node/node_modules). Every scenario is a named step that prints
// `ok <step> (...)` or `FAIL <step>: <reason>`; the exit code is 1 if any step failed, 2 on
// bad usage. Steps run in order; a failing step does not stop the ones after it (each opens
// its own connections). Keys are prefixed with a random run id.
"use strict";

const crypto = require("crypto");
const assert = require("assert/strict");
const Redis = require("ioredis");

// Bound on one ordinary command: a hung reply fails the step instead of the run.
const IO_TIMEOUT_MS = 3000;
// Bound on one whole step.
const STEP_TIMEOUT_MS = 8000;

const url = process.argv[2];
const run = crypto.randomBytes(4).toString("hex");
const key = (name) => `clients:node:${run}:${name}`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Every connection a step opens, closed when the step ends.
let open = [];

function client(options = {}) {
  const c = new Redis(url, {
    commandTimeout: IO_TIMEOUT_MS,
    connectTimeout: IO_TIMEOUT_MS,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null, // no reconnects: a dropped connection fails the step
    ...options,
  });
  c.on("error", () => {}); // errors reach the commands' promises; no unhandled events
  open.push({ close: () => c.disconnect() });
  return c;
}

function eq(got, want, what) {
  assert.deepStrictEqual(got, want, what);
}

// ---- 1. pipelines ---------------------------------------------------------------------

async function pipeline() {
  const r = client();
  const counter = key("pipe:counter");
  const hkey = key("pipe:hash");
  const p = r.pipeline();
  const expected = [];
  let incrs = 0;
  for (let i = 0; i < 100; i++) {
    switch (i % 4) {
      case 0:
        p.set(key(`pipe:${i}`), `v${i}`);
        expected.push("OK");
        break;
      case 1:
        p.get(key(`pipe:${i - 1}`)); // set by the previous command
        expected.push(`v${i - 1}`);
        break;
      case 2:
        p.incr(counter);
        expected.push(++incrs);
        break;
      default:
        p.hset(hkey, `f${i}`, i);
        expected.push(1);
    }
  }
  const results = await p.exec();
  eq(results.length, 100, "pipeline result count");
  results.forEach(([err, value], i) => {
    eq(err, null, `pipeline error ${i}`);
    eq(value, expected[i], `pipeline result ${i}`);
  });
  eq(await r.get(counter), String(incrs), "counter after the pipeline");
  const wantHash = {};
  for (let i = 3; i < 100; i += 4) wantHash[`f${i}`] = String(i);
  eq(await r.hgetall(hkey), wantHash, "hash after the pipeline");
  const keys = [];
  const values = [];
  for (let i = 0; i < 100; i += 4) {
    keys.push(key(`pipe:${i}`));
    values.push(`v${i}`);
  }
  eq(await r.mget(keys), values, "MGET after the pipeline");
  return "100 mixed SET/GET/INCR/HSET";
}

// ---- 2. transactions ------------------------------------------------------------------

async function watchRetry() {
  const k = key("tx:counter");
  const workers = 4;
  const perWorker = 50;
  let retries = 0;
  await client().set(k, 0);
  const worker = async () => {
    const c = client();
    for (let n = 0; n < perWorker; n++) {
      for (;;) {
        await c.watch(k);
        const value = Number(await c.get(k));
        // EXEC answers null when a watched key changed: ioredis resolves to null.
        const res = await c.multi().set(k, value + 1).exec();
        if (res !== null) {
          eq(res, [[null, "OK"]], "EXEC result");
          break;
        }
        retries++;
      }
    }
  };
  await Promise.all(Array.from({ length: workers }, worker));
  eq(await client().get(k), String(workers * perWorker), "counter after WATCH/MULTI/EXEC");
  return `${workers} workers x ${perWorker} increments, ${retries} WATCH retries`;
}

async function multiExec() {
  const r = client();
  const k = key("multi:k");
  const h = key("multi:h");
  const res = await r
    .multi()
    .set(k, "1")
    .incrby(k, 41)
    .get(k)
    .hset(h, { a: "1", b: "2" })
    .hgetall(h)
    .exec();
  eq(
    res,
    [
      [null, "OK"],
      [null, 42],
      [null, "42"],
      [null, 2],
      [null, { a: "1", b: "2" }],
    ],
    "MULTI/EXEC results",
  );
  eq(await r.get(k), "42", "GET after EXEC");
  // WATCH on an untouched key: EXEC goes through.
  await r.watch(k);
  eq(await r.multi().incr(k).exec(), [[null, 43]], "EXEC after WATCH with no interference");
  // A watched key changed by another connection: EXEC is discarded (null).
  await r.watch(k);
  await client().set(k, "changed");
  eq(await r.multi().set(k, "mine").exec(), null, "EXEC after a watched key changed");
  eq(await r.get(k), "changed", "key after the discarded EXEC");
  return "multi().exec(), WATCH ok, WATCH conflict";
}

async function execAbort() {
  const r = client();
  const k = key("abort:k");
  const other = key("abort:other");
  let error = null;
  try {
    await r
      .multi()
      .set(k, "queued")
      .call("SET", k) // wrong number of arguments: queuing fails
      .incr(other)
      .exec();
  } catch (e) {
    error = e;
  }
  assert.ok(error, "a transaction with a queued syntax error did not reject");
  assert.match(error.message, /EXECABORT/, `error message: ${error.message}`);
  const previous = (error.previousErrors || []).map((e) => e.message).join("; ");
  assert.match(previous, /wrong number of arguments/i, `previousErrors: ${previous}`);
  eq(await r.get(k), null, "key of the aborted transaction");
  eq(await r.get(other), null, "other key of the aborted transaction");
  eq(await r.ping(), "PONG", "PING after EXECABORT");
  return "EXECABORT rejected with the queued error in previousErrors, nothing applied";
}

// ---- 3. job queue with blocking pops ---------------------------------------------------

async function jobQueue() {
  const queue = key("jobs");
  const processing = key("jobs:processing");
  const producers = 2;
  const perProducer = 50;
  const consumers = 3;
  const done = new Map();
  const poppedBy = { BRPOP: 0, BLMOVE: 0 };
  let producing = true;

  const producer = async (n) => {
    const c = client();
    for (let i = 0; i < perProducer; i++) {
      await c.lpush(queue, `job-${n}-${i}`);
      if (i % 10 === 0) await sleep(10); // let the consumers block now and then
    }
  };
  const consumer = async (n) => {
    const c = client({ commandTimeout: IO_TIMEOUT_MS + 2000 });
    const useBlmove = n === 0;
    for (;;) {
      let job = null;
      if (useBlmove) {
        job = await c.blmove(queue, processing, "RIGHT", "LEFT", 1);
        if (job !== null) eq(await c.lrem(processing, 1, job), 1, "LREM of a processed job");
      } else {
        const got = await c.brpop(queue, 1);
        if (got !== null) {
          eq(got[0], queue, "BRPOP key");
          job = got[1];
        }
      }
      if (job === null) {
        if (!producing) return;
        continue;
      }
      done.set(job, (done.get(job) || 0) + 1);
      poppedBy[useBlmove ? "BLMOVE" : "BRPOP"]++;
    }
  };
  const consuming = Promise.all(Array.from({ length: consumers }, (_, n) => consumer(n)));
  consuming.catch(() => {}); // handled below, after the producers

  try {
    await Promise.all(Array.from({ length: producers }, (_, n) => producer(n)));
  } finally {
    producing = false;
  }
  await consuming;
  const want = [];
  for (let n = 0; n < producers; n++)
    for (let i = 0; i < perProducer; i++) want.push(`job-${n}-${i}`);
  eq([...done.keys()].sort(), want.sort(), "jobs processed");
  const twice = [...done].filter(([, count]) => count !== 1).map(([job]) => job);
  eq(twice, [], "jobs processed more than once");
  const r = client();
  eq(await r.llen(queue), 0, "queue length at the end");
  eq(await r.llen(processing), 0, "processing list length at the end");
  return `${want.length} jobs exactly once (BRPOP ${poppedBy.BRPOP}, BLMOVE ${poppedBy.BLMOVE})`;
}

async function brpopTimeout() {
  const r = client();
  const started = process.hrtime.bigint();
  const got = await r.brpop(key("empty"), 0.2);
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  eq(got, null, "BRPOP on an empty list");
  assert.ok(elapsed >= 0.15 && elapsed <= 1.5, `BRPOP timeout 0.2 returned after ${elapsed} s`);
  eq(await r.ping(), "PONG", "PING after the BRPOP timeout");
  return `null after ${elapsed.toFixed(3)} s`;
}

// ---- 4. pub/sub -----------------------------------------------------------------------

// Resolves once `events` has `n` entries; rejects after `ms`.
function waitFor(events, n, ms, what) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = () => {
      if (events.length >= n) return resolve();
      if (Date.now() - started > ms)
        return reject(new Error(`${what}: ${events.length} of ${n} after ${ms} ms`));
      setTimeout(poll, 5);
    };
    poll();
  });
}

async function pubsub() {
  const n = 50;
  const sub = client();
  const pub = client();
  const chan = key("ps:chan");
  const pattern = key("ps:news.*");
  const pchan = key("ps:news.sport");
  const events = [];
  sub.on("message", (channel, message) => events.push(["message", channel, message]));
  sub.on("pmessage", (pat, channel, message) => events.push(["pmessage", pat, channel, message]));
  eq(await sub.subscribe(chan), 1, "SUBSCRIBE count");
  eq(await sub.psubscribe(pattern), 2, "PSUBSCRIBE count");
  const want = [];
  for (let i = 0; i < n; i++) {
    eq(await pub.publish(chan, `m${i}`), 1, `PUBLISH ${i} receivers`);
    eq(await pub.publish(pchan, `p${i}`), 1, `PUBLISH ${i} (pattern) receivers`);
    want.push(["message", chan, `m${i}`], ["pmessage", pattern, pchan, `p${i}`]);
  }
  await waitFor(events, want.length, 3000, "messages received");
  eq(events, want, "messages in order");
  // By name: both libraries wait forever on an argument-less UNSUBSCRIBE while patterns
  // are subscribed too (seen directly against redis-server).
  eq(await sub.unsubscribe(chan), 1, "UNSUBSCRIBE count left");
  eq(await sub.punsubscribe(pattern), 0, "PUNSUBSCRIBE count left");
  // Out of subscriber mode, the same connection takes ordinary commands.
  const k = key("ps:after");
  eq(await sub.set(k, "after-pubsub"), "OK", "SET on the connection after unsubscribing");
  eq(await sub.get(k), "after-pubsub", "GET on the connection after unsubscribing");
  eq(await pub.publish(chan, "late"), 0, "PUBLISH receivers after unsubscribing");
  return `${n} messages + ${n} pattern messages in order, unsubscribed, connection reused`;
}

// ---- 5. RESP3 with node-redis -----------------------------------------------------------

async function nodeRedisClient() {
  const { createClient } = require("redis");
  const c = createClient({
    url,
    RESP: 3,
    socket: { connectTimeout: IO_TIMEOUT_MS, reconnectStrategy: false },
  });
  c.on("error", () => {});
  open.push({ close: () => c.destroy() });
  await c.connect();
  return c;
}

async function resp3() {
  const r = await nodeRedisClient();
  const hello = await r.sendCommand(["HELLO", "3"]);
  const proto = hello instanceof Map ? hello.get("proto") : hello.proto;
  eq(proto, 3, "HELLO 3 proto field");
  const k = key("r3:k");
  const h = key("r3:h");
  const z = key("r3:z");
  eq(await r.set(k, "v3"), "OK", "SET");
  eq(await r.get(k), "v3", "GET");
  eq(await r.get(k), "v3", "GET again");
  eq(await r.get(key("r3:missing")), null, "GET of a missing key");
  await r.hSet(h, { a: "1", b: "2" });
  eq({ ...(await r.hGetAll(h)) }, { a: "1", b: "2" }, "HGETALL");
  eq(await r.zAdd(z, { score: 1.5, value: "m" }), 1, "ZADD");
  const score = await r.zScore(z, "m");
  eq(typeof score, "number", "ZSCORE type");
  eq(score, 1.5, "ZSCORE");
  eq(await r.mGet([k, key("r3:missing")]), ["v3", null], "MGET");
  return "node-redis RESP: 3: HELLO 3, GET/SET, HGETALL, ZSCORE number";
}

async function resp3Pubsub() {
  const n = 10;
  const sub = await nodeRedisClient();
  const pub = await nodeRedisClient();
  const chan = key("r3ps:chan");
  const pattern = key("r3ps:news.*");
  const pchan = key("r3ps:news.sport");
  const events = [];
  await sub.subscribe(chan, (message, channel) => events.push(["message", channel, message]));
  await sub.pSubscribe(pattern, (message, channel) =>
    events.push(["pmessage", pattern, channel, message]),
  );
  const want = [];
  for (let i = 0; i < n; i++) {
    eq(await pub.publish(chan, `m${i}`), 1, `PUBLISH ${i} receivers`);
    eq(await pub.publish(pchan, `p${i}`), 1, `PUBLISH ${i} (pattern) receivers`);
    want.push(["message", chan, `m${i}`], ["pmessage", pattern, pchan, `p${i}`]);
  }
  await waitFor(events, want.length, 3000, "messages received");
  eq(events, want, "messages in order");
  await sub.unsubscribe(chan);
  await sub.pUnsubscribe(pattern);
  const k = key("r3ps:after");
  // RESP3 allows ordinary commands on a subscribed connection too; here it is unsubscribed.
  eq(await sub.set(k, "after-pubsub"), "OK", "SET on the connection after unsubscribing");
  eq(await sub.get(k), "after-pubsub", "GET on the connection after unsubscribing");
  eq(await pub.publish(chan, "late"), 0, "PUBLISH receivers after unsubscribing");
  return `node-redis RESP3: ${n} messages + ${n} pattern messages as pushes, unsubscribed, connection reused`;
}

// ---- 6. read-your-writes --------------------------------------------------------------

async function readYourWrites() {
  const r = client();
  const other = client();
  const k = key("ryw");
  for (let i = 0; i < 200; i++) {
    eq(await r.set(k, `v${i}`), "OK", `SET ${i}`);
    eq(await r.get(k), `v${i}`, `GET after SET ${i}`);
    eq(await r.get(k), `v${i}`, `second GET after SET ${i}`);
    if (i % 10 === 0) {
      eq(await other.get(k), `v${i}`, `GET on another connection after SET ${i}`);
      eq(await other.mget(k), [`v${i}`], `MGET after SET ${i}`);
    }
  }
  for (let i = 0; i < 50; i++) {
    await other.set(k, `o${i}`);
    eq(await r.get(k), `o${i}`, `GET after another connection's SET ${i}`);
  }
  await other.del(k);
  eq(await r.get(k), null, "GET after DEL");
  await r.append(k, "x");
  await r.append(k, "y");
  eq(await r.get(k), "xy", "GET after APPEND");
  // Pipelined writes and reads on one connection keep their order.
  const res = await r.pipeline().set(k, "p1").get(k).set(k, "p2").get(k).exec();
  eq(res, [[null, "OK"], [null, "p1"], [null, "OK"], [null, "p2"]], "pipelined SET/GET");
  return "200 SET/GET/GET, 50 cross-connection writes, DEL, APPEND, pipelined SET/GET";
}

const STEPS = [
  ["pipeline", pipeline],
  ["read_your_writes", readYourWrites],
  ["watch_retry", watchRetry],
  ["multi_exec", multiExec],
  ["execabort", execAbort],
  ["job_queue", jobQueue],
  ["brpop_timeout", brpopTimeout],
  ["pubsub", pubsub],
  ["resp3", resp3],
  ["resp3_pubsub", resp3Pubsub],
];

async function main() {
  const names = STEPS.map(([name]) => name);
  if (!url || !url.startsWith("redis://")) {
    console.error(`usage: node ${process.argv[1]} redis://HOST:PORT [step ...]`);
    console.error(`steps: ${names.join(" ")}`);
    return 2;
  }
  const wanted = new Set(process.argv.slice(3));
  const unknown = [...wanted].filter((s) => !names.includes(s));
  if (unknown.length) {
    console.error(`unknown steps: ${unknown.join(" ")}`);
    return 2;
  }
  const versions = ["ioredis", "redis"]
    .map((m) => `${m} ${require(`${m}/package.json`).version}`)
    .join(", ");
  console.log(`${versions} against ${url}`);
  const failed = [];
  let ran = 0;
  for (const [name, fn] of STEPS) {
    if (wanted.size && !wanted.has(name)) continue;
    ran++;
    const started = Date.now();
    let timer;
    try {
      const timeout = new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`step did not finish within ${STEP_TIMEOUT_MS} ms`)),
          STEP_TIMEOUT_MS,
        );
      });
      const detail = await Promise.race([fn(), timeout]);
      console.log(`ok ${name} (${detail}; ${((Date.now() - started) / 1000).toFixed(2)} s)`);
    } catch (e) {
      failed.push(name);
      const message = (e && e.message ? e.message : String(e)).replace(/\s*\n\s*/g, " ");
      console.log(`FAIL ${name}: ${e && e.name ? e.name + ": " : ""}${message}`);
    } finally {
      clearTimeout(timer);
      for (const c of open) {
        try {
          await c.close();
        } catch {
          // already closed
        }
      }
      open = [];
    }
  }
  console.log(
    failed.length
      ? `node: ${failed.length} of ${ran} steps failed: ${failed.join(" ")}`
      : `node: all ${ran} steps ok`,
  );
  return failed.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.log(`FAIL (script): ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  },
);
