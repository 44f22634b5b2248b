#!/usr/bin/env node
// ioredis (5.x) in cluster mode (`Redis.Cluster`) and plain mode against one address (a
// Redis Cluster node, or nearcache in front of a Redis Cluster).
//
//     RUN_ID=<hex> node ioredis_cluster.js HOST PORT [step ...]
//
// Steps:
//   cluster_client        Redis.Cluster seeded with HOST:PORT: 100 keys of many slots SET and
//                         read back one by one, then read with one MGET per slot (ioredis
//                         sends a multi-key command to the node of its first key and never
//                         splits it, so an application reads across slots by grouping its
//                         keys with `cluster-key-slot`, as here), twice; the 100 keys the
//                         test seeded straight on the cluster (`seed:<i>` = `d<i>-<run>`)
//                         read the same way; a pipeline of keys of one slot.
//   one_node              Redis.Cluster sees exactly one node, HOST:PORT, owning every slot.
//   cluster_cross_slot    Redis.Cluster, what only a single node owning every slot allows:
//                         pipelines of SETs and of GETs of keys of many slots (ioredis
//                         refuses one whose slots are on different nodes) and one `mget` of
//                         100 keys of many slots (a real cluster answers CROSSSLOT), of
//                         keys just written (misses) and again.
//   plain_mget_cross_slot plain `new Redis(HOST, PORT)`: pipelined SETs of 100 keys of many
//                         slots, one MGET of all of them, twice.
// Keys are `clients:ioc:<run>:<step>:<i>` with values `v<i>-<run>` (the test reads them
// straight from the cluster afterwards); RUN_ID names the run (random when unset). Each
// step prints `ok <step> (...)` or `FAIL <step>: <reason>`; the exit code is 1 if any step
// failed, 2 on bad usage. The library is found through NODE_PATH.
"use strict";

const crypto = require("crypto");
const assert = require("assert/strict");
const Redis = require("ioredis");
const calculateSlot = require("cluster-key-slot");

// Bound on one command and on connecting: a hung reply fails the step instead of the run.
const IO_TIMEOUT_MS = 3000;
// Bound on one whole step.
const STEP_TIMEOUT_MS = 15000;
// Keys per step.
const N = 100;

const host = process.argv[2];
const port = Number(process.argv[3]);
const run = process.env.RUN_ID || crypto.randomBytes(4).toString("hex");

// Every client a step opens, closed when the step ends.
let open = [];

function eq(got, want, what) {
  assert.deepStrictEqual(got, want, what);
}

function keysAndValues(name) {
  const keys = [];
  const values = [];
  for (let i = 0; i < N; i++) {
    keys.push(`clients:ioc:${run}:${name}:${i}`);
    values.push(`v${i}-${run}`);
  }
  return [keys, values];
}

function spread(keys) {
  const slots = new Set(keys.map((k) => calculateSlot(k)));
  if (slots.size < 50) {
    throw new Error(`the keys should spread over many slots (${slots.size})`);
  }
  return slots.size;
}

function cluster() {
  const c = new Redis.Cluster([{ host, port }], {
    clusterRetryStrategy: () => null, // no reconnects: a lost cluster fails the step
    redisOptions: {
      commandTimeout: IO_TIMEOUT_MS,
      connectTimeout: IO_TIMEOUT_MS,
      maxRetriesPerRequest: 0,
    },
  });
  c.on("error", () => {}); // errors reach the commands' promises
  open.push(() => c.disconnect());
  return c;
}

function plain() {
  const c = new Redis(port, host, {
    commandTimeout: IO_TIMEOUT_MS,
    connectTimeout: IO_TIMEOUT_MS,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  c.on("error", () => {});
  open.push(() => c.disconnect());
  return c;
}

function ready(c) {
  return new Promise((resolve, reject) => {
    if (c.status === "ready") return resolve();
    c.once("ready", resolve);
    c.once("end", () => reject(new Error(`not ready: ${c.status}`)));
  });
}

// `keys` read with one MGET per slot, in parallel, merged back in key order.
async function mgetPerSlot(c, keys) {
  const bySlot = new Map();
  keys.forEach((k, i) => {
    const slot = calculateSlot(k);
    if (!bySlot.has(slot)) bySlot.set(slot, []);
    bySlot.get(slot).push(i);
  });
  const out = new Array(keys.length);
  await Promise.all(
    [...bySlot.values()].map(async (idx) => {
      const values = await c.mget(idx.map((i) => keys[i]));
      idx.forEach((i, j) => (out[i] = values[j]));
    }),
  );
  return out;
}

async function clusterClient() {
  const c = cluster();
  await ready(c);
  const [keys, values] = keysAndValues("cluster");
  const slots = spread(keys);
  for (let i = 0; i < N; i++) eq(await c.set(keys[i], values[i]), "OK", `SET ${keys[i]}`);
  for (let i = 0; i < N; i++) eq(await c.get(keys[i]), values[i], `GET ${keys[i]}`);
  eq(await mgetPerSlot(c, keys), values, "MGET per slot of 100 keys");
  // Again: now partly from the sidecar's L1.
  eq(await mgetPerSlot(c, keys), values, "MGET per slot of 100 keys, again");
  // Keys the test wrote straight on the cluster, before this run.
  const seeded = [];
  const want = [];
  for (let i = 0; i < N; i++) {
    seeded.push(`clients:ioc:${run}:seed:${i}`);
    want.push(`d${i}-${run}`);
  }
  eq(await mgetPerSlot(c, seeded), want, "the seeded keys");
  eq(await c.get(seeded[0]), want[0], "GET of a seeded key");
  // A pipeline of one slot's keys: valid on any cluster.
  const tag = `{clients:ioc:${run}}`;
  const p = c.pipeline();
  for (let i = 0; i < 10; i++) p.set(`${tag}:${i}`, `t${i}`).get(`${tag}:${i}`);
  const results = await p.exec();
  eq(results.length, 20, "pipeline result count");
  results.forEach(([err, value], i) => {
    eq(err, null, `pipeline error ${i}`);
    eq(value, i % 2 ? `t${(i - 1) / 2}` : "OK", `pipeline result ${i}`);
  });
  return `${slots} slots, ${c.nodes("master").length} primaries`;
}

async function oneNode() {
  const c = cluster();
  await ready(c);
  const nodes = c.nodes("all").map((n) => `${n.options.host}:${n.options.port}`);
  eq(nodes, [`${host}:${port}`], "the nodes Redis.Cluster sees");
  eq(c.nodes("master").length, 1, "one primary");
  const owners = new Set(c.slots.map((s) => (s ? s.join(",") : "none")));
  eq([...owners], [`${host}:${port}`], "the owner of every slot");
  eq(c.slots.length, 16384, "slots known");
  const info = await c.cluster("INFO");
  if (!/cluster_state:ok/.test(info)) throw new Error(`CLUSTER INFO: ${info}`);
  return `node ${host}:${port}`;
}

async function clusterCrossSlot() {
  const c = cluster();
  await ready(c);
  const [keys, values] = keysAndValues("xslot");
  const slots = spread(keys);
  const sets = c.pipeline();
  keys.forEach((k, i) => sets.set(k, values[i]));
  eq(await sets.exec(), new Array(N).fill([null, "OK"]), "a pipeline of SETs across slots");
  // Every key a miss (the SETs evicted them): the sidecar splits the MGET by slot.
  eq(await c.mget(keys), values, "one MGET of 100 keys across slots");
  const gets = c.pipeline();
  keys.forEach((k) => gets.get(k));
  eq(
    await gets.exec(),
    values.map((v) => [null, v]),
    "a pipeline of GETs across slots",
  );
  eq(await c.mget(keys), values, "one MGET of 100 keys across slots, again");
  return `${slots} slots`;
}

async function plainMgetCrossSlot() {
  const c = plain();
  const [keys, values] = keysAndValues("plainx");
  const slots = spread(keys);
  const p = c.pipeline();
  keys.forEach((k, i) => p.set(k, values[i]));
  const results = await p.exec();
  eq(results, new Array(N).fill([null, "OK"]), "pipelined SETs");
  eq(await c.mget(keys), values, "MGET of 100 keys across slots");
  eq(await c.mget(keys), values, "MGET of 100 keys across slots, again");
  return `${slots} slots`;
}

const STEPS = [
  ["cluster_client", clusterClient],
  ["one_node", oneNode],
  ["cluster_cross_slot", clusterCrossSlot],
  ["plain_mget_cross_slot", plainMgetCrossSlot],
];

async function main() {
  const names = STEPS.map(([name]) => name);
  if (!host || !port) {
    console.error("usage: node ioredis_cluster.js HOST PORT [step ...]");
    console.error(`steps: ${names.join(" ")}`);
    return 2;
  }
  const wanted = new Set(process.argv.slice(4));
  const unknown = [...wanted].filter((s) => !names.includes(s));
  if (unknown.length) {
    console.error(`unknown steps: ${unknown.join(" ")}`);
    return 2;
  }
  console.log(`ioredis ${require("ioredis/package.json").version} against ${host}:${port}`);
  let failed = 0;
  for (const [name, fn] of STEPS) {
    if (wanted.size && !wanted.has(name)) continue;
    let timer;
    try {
      const timeout = new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`step did not finish within ${STEP_TIMEOUT_MS} ms`)),
          STEP_TIMEOUT_MS,
        );
      });
      console.log(`ok ${name} (${await Promise.race([fn(), timeout])})`);
    } catch (e) {
      failed++;
      const message = (e && e.message ? e.message : String(e)).replace(/\s*\n\s*/g, " ");
      console.log(`FAIL ${name}: ${message}`);
    } finally {
      clearTimeout(timer);
      for (const close of open) close();
      open = [];
    }
  }
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.log(`FAIL (script): ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  },
);
