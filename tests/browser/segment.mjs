// Segment's browser library, unchanged, against Touchpoint: the real npm package
// @segment/analytics-next (bundled for the page with esbuild, as a site's build would) and its
// standalone build behind the standard snippet (rendered by Segment's own @segment/snippet), in
// headless Chromium. Each scenario runs in a fresh browser context, takes its settings from
// Touchpoint (core's /v1/projects/{key}/settings, or the edge worker's /px/v1/projects/{key}/settings)
// and sends page, identify and track in the default delivery strategy (/v1/p, /v1/i, /v1/t) or in
// the batching one (/v1/b). Every request that would leave 127.0.0.1 is blocked and reported. The
// script waits until core has stored every messageId, then prints one JSON line for the Rust test.
//
// Usage: node segment.mjs CORE_URL EDGE_SECRET WRITE_KEY ADMIN_TOKEN
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import snippet from '@segment/snippet';
import { launch } from './chromium.mjs';
import { startWorker } from '../../edge-worker/tests/harness.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const [CORE, EDGE_SECRET, WRITE_KEY, ADMIN] = process.argv.slice(2);
const deadline = setTimeout(() => fail('segment.mjs took longer than 150 s'), 150_000);
let browser, mf, site;
function fail(msg) {
  console.error('segment.mjs: ' + msg);
  process.exit(1);
}
const step = (s) => console.error('segment.mjs: ' + s);

// The npm package, bundled the way a site's build would (dynamic imports inlined: no lazy chunks).
const bundle = await esbuild.build({
  stdin: {
    contents: "import { AnalyticsBrowser } from '@segment/analytics-next'; window.AnalyticsBrowser = AnalyticsBrowser;",
    resolveDir: ROOT,
    loader: 'js',
  },
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: 'chrome120',
  define: { 'process.env.NODE_ENV': '"production"' },
  write: false,
  logLevel: 'silent',
});
const NPM_BUNDLE = bundle.outputFiles[0].contents;
// The standalone build the snippet loads (what cdn.segment.com serves as analytics.min.js).
const UMD = path.join(ROOT, 'node_modules/@segment/analytics-next/dist/umd');
const STANDALONE = fs.readFileSync(path.join(UMD, 'standalone.js'));

// The edge worker in workerd, in front of core.
mf = await startWorker(
  { CORE_URL: CORE, COLLECT_PATH: '/px', IP_PRIVACY: 'truncate', CORE_TIMEOUT_MS: '3000', EDGE_SECRET },
  { quiet: true },
);

let SITE;
function page(body) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>Acme · Pricing</title>${body}</head>
<body><h1>Pricing</h1></body></html>`;
}

/** The standard snippet, rendered by Segment's own package; only the hosts differ from Segment's. */
function snippetPage() {
  const host = SITE.replace(/^http:\/\//, '');
  let text = snippet.max({ apiKey: WRITE_KEY, host, page: false, load: true });
  // The snippet always writes https://; this site is plain HTTP on 127.0.0.1.
  text = text.replaceAll('https://' + host, SITE);
  // The one line a site leaving Segment adds: settings (and any lazy bundle) from Touchpoint.
  text = text.replace('analytics._writeKey', `analytics._cdn=${JSON.stringify(CORE)};analytics._writeKey`);
  if (!text.includes('analytics._cdn=')) fail('the snippet changed shape: no analytics._writeKey to anchor _cdn');
  return page(`<script>${text}</script>`);
}

site = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, SITE);
    if (url.pathname.startsWith('/px/')) {
      const chunks = [];
      for await (const c of req) chunks.push(c);
      const headers = { ...req.headers, 'cf-connecting-ip': '198.51.100.23' };
      delete headers['content-length'];
      // The worker sees the site's own URL, as on a zone route.
      const r = await mf.dispatchFetch(SITE + req.url, {
        method: req.method,
        headers,
        body: ['GET', 'HEAD'].includes(req.method) ? undefined : Buffer.concat(chunks),
      });
      const out = {};
      r.headers.forEach((v, k) => {
        if (!['set-cookie', 'content-encoding', 'content-length'].includes(k)) out[k] = v;
      });
      res.writeHead(r.status, out);
      res.end(Buffer.from(await r.arrayBuffer()));
      return;
    }
    if (url.pathname === '/ajs-npm.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(NPM_BUNDLE);
      return;
    }
    if (url.pathname === `/analytics.js/v1/${WRITE_KEY}/analytics.min.js`) {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(STANDALONE);
      return;
    }
    if (url.pathname === '/npm') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(page('<script src="/ajs-npm.js"></script>'));
      return;
    }
    if (url.pathname === '/snippet') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(snippetPage());
      return;
    }
    res.writeHead(404);
    res.end('not found');
  } catch (e) {
    res.writeHead(502);
    res.end(String(e));
  }
});
await new Promise((r) => site.listen(0, '127.0.0.1', r));
SITE = `http://127.0.0.1:${site.address().port}`;
step('site ' + SITE + ', edge worker at /px, core ' + CORE);

browser = await launch();
const blocked = [];

/** The calls every scenario makes; returns [{type, messageId}] from analytics.js's own contexts. */
async function story(p, userId) {
  return p.evaluate(async (uid) => {
    const a = window.__analytics;
    const done = [];
    const keep = (ctx) => done.push({ type: ctx.event.type, messageId: ctx.event.messageId, event: ctx.event.event ?? null });
    keep(await a.page('Pricing'));
    keep(await a.identify(uid, { email: uid + '@acme.example', name: 'Ada Lovelace', plan_tier: 'free', user_role: 'admin' }));
    keep(await a.track('trial_started', { plan_tier: 'pro', trial_days: 14 }));
    return done;
  }, userId);
}

async function scenario(name, { loader, cdnURL, batching }) {
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  const requests = [];
  const errors = [];
  p.on('pageerror', (e) => errors.push(e.message));
  p.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  // Nothing may leave 127.0.0.1: Segment's CDN, api.segment.io, polyfills are all refused.
  await p.route('**/*', (route) => {
    const u = new URL(route.request().url());
    if (u.hostname === '127.0.0.1') return route.continue();
    blocked.push({ scenario: name, url: u.href });
    return route.abort();
  });
  p.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname.includes('/v1/')) {
      const h = r.headers();
      requests.push({
        method: r.method(),
        origin: u.origin,
        path: u.pathname,
        contentType: h['content-type'] ?? null,
        authorization: h['authorization'] ?? null,
        body: r.postData() ?? null,
      });
    }
  });
  const userId = `${name}-${Math.random().toString(36).slice(2, 10)}`;
  if (loader === 'npm') {
    await p.goto(SITE + '/npm');
    await p.evaluate(async ([writeKey, cdnURL, batching]) => {
      const options = batching
        ? { integrations: { 'Segment.io': { deliveryStrategy: { strategy: 'batching', config: { size: 3, timeout: 500 } } } } }
        : {};
      const [analytics] = await window.AnalyticsBrowser.load({ writeKey, cdnURL }, options);
      window.__analytics = analytics;
    }, [WRITE_KEY, cdnURL, batching]);
  } else {
    await p.goto(SITE + '/snippet');
    await p.waitForFunction(() => window.analytics && window.analytics.initialized === true, null, { timeout: 15_000 })
      .catch(() => fail(`${name}: the snippet never loaded analytics.js: ${errors.join(' | ')}`));
    await p.evaluate(() => { window.__analytics = window.analytics; });
  }
  const events = await story(p, userId);
  if (events.length !== 3 || events.some((e) => !e.messageId)) fail(`${name}: no messageIds: ${JSON.stringify(events)}`);
  // Stored by core: polled through the admin API until every messageId is there.
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
result.scenarios.npmDefault = await scenario('npm-default', { loader: 'npm', cdnURL: CORE, batching: false });
result.scenarios.npmBatching = await scenario('npm-batching', { loader: 'npm', cdnURL: CORE, batching: true });
result.scenarios.snippet = await scenario('snippet', { loader: 'snippet' });
result.scenarios.edgeDefault = await scenario('edge-default', { loader: 'npm', cdnURL: SITE + '/px', batching: false });
result.scenarios.edgeBatching = await scenario('edge-batching', { loader: 'npm', cdnURL: SITE + '/px', batching: true });

console.log(JSON.stringify(result));
clearTimeout(deadline);
await browser.close();
await mf.dispose();
site.close();
process.exit(0);
