// Edge worker benchmark in workerd (miniflare@4): latency of an accepted 10-message batch with an
// instant fake core, against the same round trip to a path the worker answers with a bare 404
// (routing only), and requests/s at a fixed concurrency. Node → workerd over loopback HTTP is
// included in every figure: these are wall-clock upper bounds on the worker's CPU time, not
// workerd's own CPU accounting (which miniflare does not expose).
// Usage: node bench.mjs [N=2000] [CONCURRENCY=16] [SECONDS=5]
import http from 'node:http';
import { startWorker, browserInit } from './harness.mjs';

const N = Number(process.argv[2] ?? 2000);
const CONC = Number(process.argv[3] ?? 16);
const SECS = Number(process.argv[4] ?? 5);

let delivered = 0;
const fakeCore = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    delivered++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"success":true}');
  });
});
await new Promise((r) => fakeCore.listen(0, '127.0.0.1', r));
const mf = await startWorker({
  CORE_URL: `http://127.0.0.1:${fakeCore.address().port}`,
  COLLECT_PATH: '/px',
  EDGE_SECRET: 'bench-secret',
  COOKIE_SECRET: 'bench-cookie',
}, { quiet: true });

const batch = (i) => ({
  writeKey: 'wk_bench',
  sentAt: new Date().toISOString(),
  batch: Array.from({ length: 10 }, (_, j) => ({
    type: 'track', event: 'feature_toggled', anonymousId: `a-${i}`, messageId: `b-${i}-${j}`,
    timestamp: new Date().toISOString(),
    properties: { feature_name: 'dark_mode', new_status: j % 2 === 0 },
    context: { page: { path: '/app', url: 'https://www.example.com/app' }, locale: 'en-GB' },
  })),
});
const bodyBytes = Buffer.byteLength(JSON.stringify(batch(0)));

async function timeEach(n, make) {
  const ms = [];
  for (let i = 0; i < n; i++) {
    const [url, init] = make(i);
    const t = process.hrtime.bigint();
    const r = await mf.dispatchFetch(url, init);
    await r.arrayBuffer();
    ms.push(Number(process.hrtime.bigint() - t) / 1e6);
    if (i === 0 && r.status >= 500) throw new Error(`worker answered ${r.status}`);
  }
  ms.sort((a, b) => a - b);
  const q = (p) => ms[Math.min(ms.length - 1, Math.floor(p * ms.length))];
  return { p50: q(0.5), p99: q(0.99), mean: ms.reduce((a, b) => a + b, 0) / ms.length };
}

const post = (i) => ['http://127.0.0.1/px/v1/batch', browserInit(batch(i))];
const miss = () => ['http://127.0.0.1/nothing-here', browserInit(undefined, { method: 'GET' })];
await timeEach(200, post); // warm-up (JIT, wasm instantiation)
await timeEach(200, miss);
const accepted = await timeEach(N, post);
const baseline = await timeEach(N, miss);

let done = 0;
const end = Date.now() + SECS * 1000;
await Promise.all(Array.from({ length: CONC }, async (_, w) => {
  for (let i = 0; Date.now() < end; i++) {
    const r = await mf.dispatchFetch(...post(w * 1e6 + i));
    await r.arrayBuffer();
    if (r.status === 200) done++;
  }
}));
const rps = done / SECS;
await mf.dispose();
fakeCore.close();
const f = (x) => x.toFixed(2);
console.log(JSON.stringify({ n: N, bodyBytes, messagesPerBatch: 10, accepted, baseline, concurrency: CONC, seconds: SECS, acceptedBatchesPerSec: rps, delivered }));
console.error(`accepted 10-msg batch (${bodyBytes} B): p50 ${f(accepted.p50)} ms, p99 ${f(accepted.p99)} ms; ` +
  `404 round trip: p50 ${f(baseline.p50)} ms, p99 ${f(baseline.p99)} ms; ` +
  `worker work ≈ p50 ${f(accepted.p50 - baseline.p50)} ms; ${rps.toFixed(0)} batches/s at concurrency ${CONC}`);
