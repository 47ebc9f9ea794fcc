// RudderStack's JavaScript SDK v3, unchanged, against Touchpoint: the real npm package
// @rudderstack/analytics-js (its "bundled" build, with the delivery plugins compiled in, bundled for
// the page with esbuild) in headless Chromium, with dataPlaneUrl and configUrl both pointed at core.
// It fetches its source config from core's /sourceConfig/ and sends page, identify and track by
// XHR one at a time (/v1/page, /v1/identify, /v1/track), batched (/v1/batch) and by
// navigator.sendBeacon (/beacon/v1/batch?writeKey=…). Every request that would leave 127.0.0.1
// is blocked and reported. The script waits until core has stored every messageId, then prints one
// JSON line for the Rust test.
//
// Usage: node rudderstack.mjs CORE_URL WRITE_KEY ADMIN_TOKEN
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { launch } from './chromium.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const [CORE, WRITE_KEY, ADMIN] = process.argv.slice(2);
const deadline = setTimeout(() => fail('rudderstack.mjs took longer than 120 s'), 120_000);
let browser, site;
function fail(msg) {
  console.error('rudderstack.mjs: ' + msg);
  process.exit(1);
}
const step = (s) => console.error('rudderstack.mjs: ' + s);

const bundle = await esbuild.build({
  stdin: {
    contents: "import { RudderAnalytics } from '@rudderstack/analytics-js/bundled'; window.RudderAnalytics = RudderAnalytics;",
    resolveDir: ROOT,
    loader: 'js',
  },
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: 'chrome120',
  write: false,
  logLevel: 'silent',
});
const SDK = bundle.outputFiles[0].contents;

site = http.createServer((req, res) => {
  if (req.url === '/rudder.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    res.end(SDK);
  } else if (req.url === '/') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><html><head><meta charset="utf-8"><title>Acme · Pricing</title><script src="/rudder.js"></script></head><body><h1>Pricing</h1></body></html>');
  } else {
    res.writeHead(404);
    res.end('not found');
  }
});
await new Promise((r) => site.listen(0, '127.0.0.1', r));
const SITE = `http://127.0.0.1:${site.address().port}`;
step('site ' + SITE + ', core ' + CORE);

browser = await launch();
const blocked = [];

async function scenario(name, loadOptions) {
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  const requests = [];
  const errors = [];
  p.on('pageerror', (e) => errors.push(e.message));
  p.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await p.route('**/*', (route) => {
    const u = new URL(route.request().url());
    if (u.hostname === '127.0.0.1') return route.continue();
    blocked.push({ scenario: name, url: u.href });
    return route.abort();
  });
  p.on('request', (r) => {
    const u = new URL(r.url());
    if (u.origin === CORE) {
      const h = r.headers();
      requests.push({
        method: r.method(),
        path: u.pathname,
        query: u.search,
        contentType: h['content-type'] ?? null,
        authorization: h['authorization'] ?? null,
      });
    }
  });
  await p.goto(SITE + '/');
  const userId = `${name}-${Math.random().toString(36).slice(2, 10)}`;
  const events = await p.evaluate(
    async ([writeKey, core, options, uid]) => {
      const rudder = new window.RudderAnalytics();
      rudder.load(writeKey, core, { configUrl: core, logLevel: 'ERROR', ...options });
      await new Promise((resolve) => rudder.ready(resolve));
      const sent = (fn) => new Promise((resolve) => fn((e) => resolve({ type: e.type, messageId: e.messageId })));
      const out = [];
      out.push(await sent((cb) => rudder.page('Docs', 'Pricing', { title: 'Pricing' }, cb)));
      out.push(await sent((cb) => rudder.identify(uid, { email: uid + '@acme.example', plan_tier: 'free' }, cb)));
      out.push(await sent((cb) => rudder.track('trial_started', { plan_tier: 'pro', trial_days: 14 }, cb)));
      return out;
    },
    [WRITE_KEY, CORE, loadOptions, userId],
  ).catch((e) => fail(`${name}: ${e.message}; errors ${errors.join(' | ')}`));
  const end = Date.now() + 20_000;
  for (const e of events) {
    for (;;) {
      const r = await fetch(`${CORE}/admin/messages/${encodeURIComponent(e.messageId)}`, {
        headers: { authorization: 'Bearer ' + ADMIN },
      });
      const rows = r.status === 200 ? await r.json() : [];
      if (Array.isArray(rows) && rows.length > 0) break;
      if (Date.now() > end) {
        fail(`${name}: ${e.type} ${e.messageId} never stored; requests ${JSON.stringify(requests.map((q) => q.method + ' ' + q.path))}; errors ${errors.join(' | ')}`);
      }
      await new Promise((res) => setTimeout(res, 100));
    }
  }
  await ctx.close();
  step(`${name}: ${requests.map((q) => q.method + ' ' + q.path).join(', ')}`);
  return { userId, events, requests, errors };
}

const result = { site: SITE, scenarios: {}, blocked };
result.scenarios.xhr = await scenario('xhr', {});
result.scenarios.batch = await scenario('batch', { queueOptions: { batch: { enabled: true, maxItems: 3, flushInterval: 300 } } });
result.scenarios.beacon = await scenario('beacon', { useBeacon: true, beaconQueueOptions: { maxItems: 3, flushQueueInterval: 300 } });

console.log(JSON.stringify(result));
clearTimeout(deadline);
await browser.close();
site.close();
process.exit(0);
