// The edge worker in the real Workers runtime (workerd via miniflare@4) against a real core.
// Usage: node edge.test.mjs CORE_URL EDGE_SECRET WRITE_KEY ADMIN_TOKEN
// Run by tests/tests/integration/edge.rs, which starts core and then checks what core stored.
// Talks only to 127.0.0.1; every wait is bounded. Prints one JSON line (RESULT …) for the Rust side.
import http from 'node:http';
import assert from 'node:assert/strict';
import { startWorker, browserInit } from './harness.mjs';

const [CORE, EDGE_SECRET, WRITE_KEY, ADMIN_TOKEN] = process.argv.slice(2);
if (!ADMIN_TOKEN) throw new Error('usage: edge.test.mjs CORE_URL EDGE_SECRET WRITE_KEY ADMIN_TOKEN');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.error('edge.test:', ...a);
const run = Math.random().toString(36).slice(2, 10);
const id = (name) => `edge-test-${run}-${name}`;

// A switchable stand-in for the network between the edge and core: forwards to the real core
// ("up"), refuses connections ("down": its port is closed) or answers too late ("slow": core gets
// the batch, but only after the worker's timeout).
const core = new URL(CORE);
let mode = 'up';
const proxy = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    if (mode === 'slow') await sleep(2500);
    const headers = { ...req.headers, host: core.host, connection: 'close' };
    const upstream = http.request(
      { host: core.hostname, port: core.port, path: req.url, method: req.method, headers },
      (up) => {
        res.writeHead(up.statusCode, { ...up.headers, connection: 'close' });
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    upstream.end(Buffer.concat(chunks));
  });
});
const listen = (port) => new Promise((r) => proxy.listen(port, '127.0.0.1', () => r(proxy.address().port)));
const close = () =>
  new Promise((r) => {
    proxy.close(() => r());
    proxy.closeAllConnections();
  });
const proxyPort = await listen(0);

const mf = await startWorker({
  CORE_URL: `http://127.0.0.1:${proxyPort}`,
  COLLECT_PATH: '/px',
  IP_PRIVACY: 'truncate',
  CORE_TIMEOUT_MS: '1000',
  RETRY_MIN_DELAY_SECONDS: '1',
  EDGE_SECRET,
  COOKIE_SECRET: 'test-cookie-secret',
  ALLOWED_ORIGINS: 'https://www.example.com, https://app.example.com',
});
const W = 'http://127.0.0.1/px';
const basic = 'Basic ' + Buffer.from(`${WRITE_KEY}:`).toString('base64');
const result = { run };
const timed = async (name, fn) => {
  const t = Date.now();
  await fn();
  log(`ok ${name} (${Date.now() - t} ms)`);
};

try {
  await timed('the collection path is neutral and nothing else is served', async () => {
    for (const listed of ['track', 'collect', 'analytics', 'beacon', 'segment', 't', 'i']) {
      assert.ok(!'/px'.split('/').includes(listed));
      const r = await mf.dispatchFetch(`http://127.0.0.1/${listed}/v1/batch`, browserInit({}));
      assert.equal(r.status, 404, `/${listed} is not served`);
      await r.arrayBuffer();
    }
  });

  let cookie;
  await timed('a batch is validated, enriched, forwarded to core and sets the cookie', async () => {
    const anon = `anon-${run}`;
    const sentAt = new Date(Date.now() + 10 * 60_000); // the browser clock is 10 minutes fast
    const ts = new Date(sentAt.getTime() - 60_000).toISOString();
    const body = {
      sentAt: sentAt.toISOString(),
      batch: [
        { type: 'track', event: 'workspace_created', anonymousId: anon, messageId: id('ok'),
          properties: { workspace_id: 'ws-1' }, timestamp: ts },
        { type: 'page', anonymousId: anon, messageId: id('page'), properties: { path: '/pricing' } },
        { type: 'track', event: 'invoice_paid', anonymousId: anon, messageId: id('blocked') },
      ],
    };
    const r = await mf.dispatchFetch(`${W}/v1/batch`, browserInit(body, { headers: { authorization: basic } }));
    const json = await r.json();
    assert.equal(r.status, 200, JSON.stringify(json));
    assert.equal(json.delivery, 'core');
    assert.equal(json.blocked, 1);
    const setCookie = r.headers.get('set-cookie');
    assert.match(setCookie, new RegExp(`^tp_sid=${anon}\\.[A-Za-z0-9_-]+;`));
    for (const attr of ['HttpOnly', 'Secure', 'SameSite=Lax', 'Path=/', 'Max-Age=31536000']) {
      assert.ok(setCookie.includes(attr), `${attr} in ${setCookie}`);
    }
    assert.equal(r.headers.get('x-touchpoint-cookie'), 'absent');
    assert.equal(r.headers.get('access-control-allow-origin'), 'https://www.example.com');
    cookie = setCookie.split(';')[0];
    result.anonymousId = anon;
    result.accepted = [id('ok'), id('page'), id('blocked')];
  });

  await timed('the cookie is verified on the next request and fills a missing anonymousId', async () => {
    const body = { writeKey: WRITE_KEY, messageId: id('cookie'), event: 'feature_toggled',
      properties: { feature_name: 'dark_mode', new_status: true } };
    const r = await mf.dispatchFetch(`${W}/v1/track`, browserInit(body, { headers: { cookie } }));
    const json = await r.json();
    assert.equal(r.status, 200, JSON.stringify(json));
    assert.equal(r.headers.get('x-touchpoint-cookie'), 'valid');
    assert.ok(r.headers.get('set-cookie').startsWith(cookie + ';'), 'the same cookie is refreshed');
    result.cookieFilled = id('cookie');
  });

  await timed('a forged cookie is detected, ignored and replaced', async () => {
    const forged = cookie.replace(`anon-${run}`, `anon-${run}x`);
    const body = { writeKey: WRITE_KEY, messageId: id('forged'), anonymousId: `fresh-${run}` };
    const r = await mf.dispatchFetch(`${W}/v1/page`, browserInit(body, { headers: { cookie: forged } }));
    assert.equal(r.status, 200, await r.text());
    assert.equal(r.headers.get('x-touchpoint-cookie'), 'forged');
    assert.match(r.headers.get('set-cookie'), new RegExp(`^tp_sid=fresh-${run}\\.`));
    const noId = { writeKey: WRITE_KEY, event: 'feature_toggled' };
    const r2 = await mf.dispatchFetch(`${W}/v1/track`, browserInit(noId, { headers: { cookie: forged } }));
    assert.equal(r2.status, 400, 'a forged cookie never supplies an anonymousId');
    await r2.arrayBuffer();
    result.forged = id('forged');
  });

  await timed('oversized and malformed input get clear 4xx JSON', async () => {
    const cases = [
      [`${W}/v1/track`, { writeKey: WRITE_KEY, anonymousId: 'a', event: 'x', properties: { pad: 'x'.repeat(40_000) } }, 413],
      [`${W}/v1/batch`, { writeKey: WRITE_KEY, batch: Array.from({ length: 30 }, () => ({ type: 'track', anonymousId: 'a', event: 'x', properties: { pad: 'x'.repeat(20_000) } })) }, 413],
      [`${W}/v1/batch`, '{"batch": [', 400],
      [`${W}/v1/batch`, { writeKey: WRITE_KEY, batch: [] }, 400],
      [`${W}/v1/batch`, { writeKey: WRITE_KEY, batch: [{ type: 'track' }] }, 400],
      [`${W}/v1/batch`, { batch: [{ type: 'page', anonymousId: 'a' }] }, 401],
    ];
    for (const [url, body, status] of cases) {
      const r = await mf.dispatchFetch(url, browserInit(body));
      const json = await r.json();
      assert.equal(r.status, status, JSON.stringify(json).slice(0, 300));
      assert.equal(json.success, false);
      assert.ok(json.error.length > 5, json.error);
    }
    const unknownKey = await mf.dispatchFetch(`${W}/v1/page`, browserInit({ writeKey: 'wk_nope', anonymousId: 'a' }));
    assert.equal(unknownKey.status, 401, 'core refuses an unknown write key and the browser is told');
    await unknownKey.arrayBuffer();
  });

  await timed('only the site itself and listed origins get CORS with credentials', async () => {
    const cors = async (origin, method) => {
      const init = method === 'OPTIONS'
        ? { method, headers: { origin, 'access-control-request-method': 'POST' } }
        : browserInit('not json', { headers: { origin } });
      const r = await mf.dispatchFetch(`${W}/v1/batch`, init);
      await r.arrayBuffer();
      return {
        status: r.status,
        allowOrigin: r.headers.get('access-control-allow-origin'),
        credentials: r.headers.get('access-control-allow-credentials'),
        vary: r.headers.get('vary') ?? '',
      };
    };
    for (const method of ['OPTIONS', 'POST']) {
      for (const origin of ['http://127.0.0.1', 'https://www.example.com', 'https://app.example.com']) {
        const a = await cors(origin, method);
        assert.equal(a.allowOrigin, origin, `${method} from ${origin}: ${JSON.stringify(a)}`);
        assert.equal(a.credentials, 'true', `${method} from ${origin}`);
      }
      for (const origin of ['https://evil.example', 'https://www.example.com.evil.example', 'null']) {
        const a = await cors(origin, method);
        assert.equal(a.allowOrigin, null, `${method} from ${origin}: ${JSON.stringify(a)}`);
        assert.equal(a.credentials, null, `${method} from ${origin}: no credentials`);
        assert.match(a.vary, /origin/i, 'the answer varies by Origin');
      }
    }
    result.corsChecked = true;
  });

  await timed('SDK files are proxied from core with a Cache-Control', async () => {
    const direct = await fetch(`${CORE}/sdk/plan.md`);
    const directBody = await direct.text();
    const r = await mf.dispatchFetch(`${W}/sdk/plan.md`, browserInit(undefined, { method: 'GET' }));
    const body = await r.text();
    assert.equal(r.status, direct.status);
    if (direct.status === 200) {
      assert.equal(body, directBody);
      assert.match(r.headers.get('cache-control'), /max-age=\d+/);
      assert.equal(r.headers.get('x-touchpoint-sdk'), 'core');
    }
    const escape = await mf.dispatchFetch(`${W}/sdk/../admin/sources`, browserInit(undefined, { method: 'GET' }));
    assert.equal(escape.status, 404);
    await escape.arrayBuffer();
    result.sdkStatus = direct.status;
  });

  await timed('core down: the browser still gets 2xx and the batch is queued', async () => {
    await close();
    mode = 'down';
    const body = { writeKey: WRITE_KEY, batch: [1, 2, 3].map((n) => ({
      type: 'track', event: 'feature_toggled', anonymousId: `anon-${run}`, messageId: id(`down-${n}`),
      properties: { feature_name: `f${n}`, new_status: true } })) };
    const r = await mf.dispatchFetch(`${W}/v1/batch`, browserInit(body));
    const json = await r.json();
    assert.equal(r.status, 202, JSON.stringify(json));
    assert.equal(json.delivery, 'queued');
    result.queuedDown = body.batch.map((m) => m.messageId);
  });

  await timed('core too slow: queued after the timeout, and the late copy is not a duplicate', async () => {
    await listen(proxyPort);
    mode = 'slow';
    const body = { writeKey: WRITE_KEY, batch: [{ type: 'track', event: 'feature_toggled',
      anonymousId: `anon-${run}`, messageId: id('slow'), properties: { feature_name: 'slow', new_status: false } }] };
    const t = Date.now();
    const r = await mf.dispatchFetch(`${W}/v1/batch`, browserInit(body));
    const json = await r.json();
    assert.equal(r.status, 202, JSON.stringify(json));
    assert.ok(Date.now() - t < 2500, 'answered at the timeout, not when core answered');
    result.queuedSlow = [id('slow')];
  });

  await timed('core back: the queue consumer delivers everything', async () => {
    await sleep(1500);
    mode = 'up';
    result.coreUpAt = Date.now();
    const want = [...result.queuedDown, ...result.queuedSlow];
    const deadline = Date.now() + 45_000;
    let missing = want;
    while (missing.length && Date.now() < deadline) {
      await sleep(500);
      const found = await Promise.all(missing.map((m) =>
        fetch(`${CORE}/admin/messages/${m}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
          .then((r) => r.status === 200)));
      missing = missing.filter((_, i) => !found[i]);
    }
    assert.deepEqual(missing, [], 'every queued message reached core within 45 s');
  });
  console.log('RESULT ' + JSON.stringify(result));
} finally {
  await mf.dispose();
  await close().catch(() => {});
}
