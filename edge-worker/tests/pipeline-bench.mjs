// Load generator of the whole-pipeline benchmark (tests/src/bin/pipeline_bench.rs starts core and
// the webhook receiver, then runs this): the built worker (edge-worker/build) in workerd forwards to
// the real core. Sends BATCHES /px/v1/batch requests of SIZE conforming `feature_toggled` messages at
// CONCURRENCY. Each message's id is `pb-{sent_ms}-{batch}-{i}` with sent_ms = Date.now() just before
// dispatchFetch (the tracking plan would drop an unplanned `sent_ms` property, the messageId reaches
// the webhook untouched). First, the same load against a second worker whose core is an instant
// Node fake: the edge-alone baseline of the same run.
// Prints one JSON line, then keeps the worker alive (its retry queue may still hold 202s) until
// stdin closes or 300 s pass.
// Usage: node pipeline-bench.mjs CORE_URL EDGE_SECRET WRITE_KEY [BATCHES=200] [SIZE=20] [CONCURRENCY=8]
import http from 'node:http';
import { startWorker, browserInit } from './harness.mjs';

const [CORE, EDGE_SECRET, WRITE_KEY] = process.argv.slice(2, 5);
const BATCHES = Number(process.argv[5] ?? 200);
const SIZE = Number(process.argv[6] ?? 20);
const CONC = Number(process.argv[7] ?? 8);
const SEND_LIMIT_MS = 120_000; // bounded: stop sending after 2 minutes whatever happens

const vars = (core) => ({
  CORE_URL: core,
  COLLECT_PATH: '/px',
  EDGE_SECRET,
  COOKIE_SECRET: 'bench-cookie',
  RETRY_MIN_DELAY_SECONDS: '1',
});

function batch(prefix, i) {
  const sent = Date.now();
  return {
    writeKey: WRITE_KEY,
    sentAt: new Date(sent).toISOString(),
    batch: Array.from({ length: SIZE }, (_, j) => ({
      type: 'track', event: 'feature_toggled', anonymousId: `${prefix}-anon-${i}`,
      messageId: `${prefix}-${sent}-${i}-${j}`, timestamp: new Date(sent).toISOString(),
      properties: { feature_name: 'dark_mode', new_status: j % 2 === 0 },
      context: { page: { path: '/app', url: 'https://www.example.com/app' }, locale: 'en-GB' },
    })),
  };
}

/** BATCHES batches at CONCURRENCY; wall-clock of the run and per-batch response times. */
async function run(mf, prefix) {
  const statuses = {};
  const ms = [];
  let next = 0;
  let lastAck = 0;
  const first = Date.now();
  const stop = first + SEND_LIMIT_MS;
  await Promise.all(Array.from({ length: CONC }, async () => {
    while (next < BATCHES && Date.now() < stop) {
      const i = next++;
      const t = performance.now();
      const r = await mf.dispatchFetch('http://127.0.0.1/px/v1/batch', browserInit(batch(prefix, i)));
      await r.arrayBuffer();
      ms.push(performance.now() - t);
      lastAck = Date.now();
      statuses[r.status] = (statuses[r.status] ?? 0) + 1;
    }
  }));
  ms.sort((a, b) => a - b);
  const q = (p) => ms[Math.min(ms.length - 1, Math.floor(p * ms.length))];
  const accepted = ((statuses[200] ?? 0) + (statuses[202] ?? 0)) * SIZE;
  return {
    sent: ms.length * SIZE, accepted, statuses, firstSendMs: first, lastAckMs: lastAck,
    eventsPerSec: accepted / ((lastAck - first) / 1000),
    batchP50: q(0.5), batchP99: q(0.99),
  };
}

// 1. Baseline: the same load, the edge worker forwarding to an instant fake core.
const fake = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"success":true}'); });
});
await new Promise((r) => fake.listen(0, '127.0.0.1', r));
const base = await startWorker(vars(`http://127.0.0.1:${fake.address().port}`), { quiet: true });
await run(base, 'warm'); // JIT and wasm warm-up, not reported
const baseline = await run(base, 'base');
await base.dispose();
fake.close();

// 2. The pipeline: the worker forwarding to the real core.
const mf = await startWorker(vars(CORE), { quiet: true });
for (let i = 0; i < 3; i++) {
  // Warm the worker → core path (these reach the webhook too; the bench ignores the `pw-` ids).
  const r = await mf.dispatchFetch('http://127.0.0.1/px/v1/batch', browserInit(batch('pw', i)));
  await r.arrayBuffer();
}
const pipeline = await run(mf, 'pb');
console.log(JSON.stringify({ batches: BATCHES, size: SIZE, concurrency: CONC, baseline, pipeline }));

const done = () => mf.dispose().finally(() => process.exit(0));
process.stdin.on('end', done);
process.stdin.on('close', done);
process.stdin.resume();
setTimeout(done, 300_000);
