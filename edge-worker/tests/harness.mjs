// Shared by edge.test.mjs and bench.mjs: starts the built worker (edge-worker/build) in workerd via
// miniflare@4, with a KV namespace, the retry Queue (producer + consumer) and the given vars.
import { Miniflare } from 'miniflare';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const BUILD = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../build');
export const GEO = { country: 'DE', region: 'Berlin', city: 'Berlin', timezone: 'Europe/Berlin' };

export async function startWorker(vars, { quiet = false } = {}) {
  const mf = new Miniflare({
    modules: true,
    modulesRoot: BUILD,
    scriptPath: path.join(BUILD, 'index.js'),
    modulesRules: [{ type: 'CompiledWasm', include: ['**/*.wasm'] }],
    compatibilityDate: '2026-07-01',
    cf: false,
    host: '127.0.0.1',
    bindings: vars,
    kvNamespaces: ['EDGE_KV'],
    queueProducers: { RETRY_QUEUE: { queueName: 'touchpoint-edge-retry' } },
    queueConsumers: {
      'touchpoint-edge-retry': { maxBatchSize: 10, maxBatchTimeout: 1, maxRetries: 50 },
    },
    // The worker's console lines (edge.received, edge.queued, …): kept for tests, muted for benches.
    ...(quiet ? { handleRuntimeStdio: (out, err) => { out.resume(); err.resume(); } } : {}),
  });
  await mf.ready;
  return mf;
}

/** A request to the worker as a browser on the site would send it (real client address and geo). */
export function browserInit(body, { headers = {}, method = 'POST' } = {}) {
  return {
    method,
    headers: {
      'content-type': 'application/json',
      'user-agent':
        'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
      'cf-connecting-ip': '203.0.113.77',
      origin: 'https://www.example.com',
      ...headers,
    },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    cf: GEO,
  };
}
