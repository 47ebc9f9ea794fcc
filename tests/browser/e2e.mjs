// End to end, seed 000: a real site on 127.0.0.1 whose first-party /px/* path is the edge worker in
// workerd (miniflare 4); headless Chromium browses it anonymously, signs up, creates a workspace,
// invites two teammates; the live debugger is watched; screenshots are taken of the debugger,
// profile and audience pages. Core, its database and the fake APIs are started by the Rust test.
//
// Usage: node e2e.mjs CORE_URL EDGE_SECRET WRITE_KEY ADMIN_TOKEN USER_ID OUT_DIR
// Prints one JSON line {"anonymousId": …} on success; exits 1 with the reason otherwise.
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { launch } from './chromium.mjs';
import { startWorker } from '../../edge-worker/tests/harness.mjs';

const [CORE, EDGE_SECRET, WRITE_KEY, ADMIN, USER_ID, OUT] = process.argv.slice(2);
const deadline = setTimeout(() => fail('e2e took longer than 150 s'), 150_000);
let browser, mf, site;
function fail(msg) {
  console.error('e2e: ' + msg);
  process.exit(1);
}
const step = (s) => console.error('e2e: ' + s);

async function admin(p) {
  const r = await fetch(CORE + p, { headers: { authorization: 'Bearer ' + ADMIN } });
  return { status: r.status, body: await r.json().catch(() => null) };
}

/** Polls `check` every 100 ms until it returns a truthy value (bounded). */
async function until(what, check, ms = 20_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await check();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  fail('timed out waiting for ' + what);
}

const snippet = await (await fetch(CORE + '/sdk/snippet.js')).text();
if (!snippet.includes('touchpoint')) fail('core does not serve /sdk/snippet.js (run scripts/build-sdk.sh)');

function sitePage(title) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${title} · Acme Analytics</title>
<script>${snippet}</script>
<script>
  touchpoint.load(${JSON.stringify(WRITE_KEY)}, { apiHost: location.origin + "/px", flushAt: 1, flushInterval: 100 });
  touchpoint.page();
</script></head>
<body><h1>${title}</h1><p>Acme Analytics — the product under test.</p>
<a id="pricing" href="/pricing?utm_source=newsletter&utm_campaign=launch">Pricing</a></body></html>`;
}

// The worker, then the site in front of it: /px/* goes to the worker as on a real zone route.
mf = await startWorker(
  {
    CORE_URL: CORE,
    COLLECT_PATH: '/px',
    IP_PRIVACY: 'truncate',
    CORE_TIMEOUT_MS: '3000',
    RETRY_MIN_DELAY_SECONDS: '1',
    EDGE_SECRET,
    COOKIE_SECRET: 'e2e-cookie-secret',
  },
  { quiet: true },
);
site = http.createServer(async (req, res) => {
  try {
    if (req.url.startsWith('/px/')) {
      const chunks = [];
      for await (const c of req) chunks.push(c);
      const headers = { ...req.headers, 'cf-connecting-ip': '198.51.100.23' };
      delete headers['content-length'];
      const r = await mf.dispatchFetch('http://127.0.0.1' + req.url, {
        method: req.method,
        headers,
        body: ['GET', 'HEAD'].includes(req.method) ? undefined : Buffer.concat(chunks),
      });
      const out = {};
      r.headers.forEach((v, k) => { if (k !== 'set-cookie' && k !== 'content-encoding' && k !== 'content-length') out[k] = v; });
      const cookies = r.headers.getSetCookie ? r.headers.getSetCookie() : [];
      if (cookies.length) out['set-cookie'] = cookies;
      res.writeHead(r.status, out);
      res.end(Buffer.from(await r.arrayBuffer()));
      return;
    }
    const title = { '/': 'Home', '/pricing': 'Pricing', '/signup': 'Sign up', '/app': 'Workspace' }[req.url.split('?')[0]];
    if (!title) { res.writeHead(404); res.end('not found'); return; }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(sitePage(title));
  } catch (e) {
    res.writeHead(502); res.end(String(e));
  }
});
await new Promise((r) => site.listen(0, '127.0.0.1', r));
const SITE = `http://127.0.0.1:${site.address().port}`;
step('site ' + SITE + ' with the worker at /px');

browser = await launch();
const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const visitor = await ctx.newPage();
visitor.on('pageerror', (e) => fail('page error on the site: ' + e.message));

// The debugger is open before anything happens, like in seed 000's step 4.
const dbg = await ctx.newPage();
await dbg.goto(`${CORE}/debugger#token=${encodeURIComponent(ADMIN)}&source=web`);
await dbg.waitForFunction(() => document.body.dataset.live === '1', null, { timeout: 15_000 });

// 1. Anonymous visits.
await visitor.goto(SITE + '/');
const anonymousId = await visitor.evaluate(
  () => new Promise((r) => touchpoint.ready(() => r(touchpoint.user().anonymousId()))),
);
if (!anonymousId) fail('no anonymousId');
await visitor.click('#pricing');
await visitor.waitForURL(/pricing/);
step('anonymous visitor ' + anonymousId);
// The first batch through the edge sets its signed, HttpOnly first-party cookie.
await until('the edge cookie', async () =>
  (await ctx.cookies(SITE)).some((c) => c.name === 'tp_sid' && c.httpOnly && c.sameSite === 'Lax'), 10_000);

// 2. Sign up: identify + trial_started.
await visitor.goto(SITE + '/signup');
await visitor.evaluate(([uid]) => {
  touchpoint.identify(uid, { email: 'ada@acme.example', name: 'Ada Lovelace', plan_tier: 'free', user_role: 'admin' });
  touchpoint.track('trial_started', { plan_tier: 'pro', trial_days: 14 });
}, [USER_ID]);

// 3. In the product: a workspace and two invitations.
await visitor.goto(SITE + '/app');
await visitor.evaluate(() => {
  touchpoint.group('ws-acme', { name: 'Acme', seats_provisioned: 2 });
  touchpoint.track('workspace_created', { workspace_id: 'ws-acme', workspace_name: 'Acme' });
  touchpoint.track('teammate_invited', { workspace_id: 'ws-acme', invitee_role: 'member', invite_method: 'email' });
  touchpoint.track('teammate_invited', { workspace_id: 'ws-acme', invitee_role: 'admin', invite_method: 'email' });
});

// 4. The debugger shows them live under the new userId.
await dbg.waitForFunction(
  (uid) => [...document.querySelectorAll('#events li')].filter((li) => li.textContent.includes('userId ' + uid)).length >= 5,
  USER_ID,
  { timeout: 20_000 },
).catch(() => fail('the debugger did not show the signed-up events under ' + USER_ID));
await dbg.screenshot({ path: path.join(OUT, 'debugger.png') });
step('debugger shows the events live');

// 5. The profile is stitched and the destinations fed (checked in detail by the Rust test).
await until('the stitched profile', async () => {
  const p = await admin(`/admin/profiles?kind=anonymous_id&value=${encodeURIComponent(anonymousId)}`);
  return p.status === 200 && p.body.identities.some((i) => i.kind === 'user_id' && i.value === USER_ID)
    && p.body.computed.events.teammate_invited?.total === 2;
});

// 6. More seats and an integration: the PQL.
await visitor.evaluate(() => {
  touchpoint.group('ws-acme', { name: 'Acme', seats_provisioned: 5 });
  touchpoint.track('integration_connected', { integration_name: 'slack', workspace_id: 'ws-acme' });
});
await until('PQL membership', async () => {
  const p = await admin(`/admin/profiles?kind=user_id&value=${encodeURIComponent(USER_ID)}`);
  return p.status === 200 && p.body.audiences.some((a) => a.audience === 'product_qualified_lead' && !a.exited_at);
});
step('entered the PQL audience');

// Screenshots of the profile and audience pages.
const prof = await ctx.newPage();
await prof.goto(`${CORE}/profiles#token=${encodeURIComponent(ADMIN)}&kind=user_id&value=${encodeURIComponent(USER_ID)}`);
await prof.waitForFunction(() => document.getElementById('stage').textContent.length > 1, null, { timeout: 10_000 });
await prof.waitForFunction(() => document.querySelectorAll('#timeline li').length > 0, null, { timeout: 10_000 });
await prof.screenshot({ path: path.join(OUT, 'profile.png'), fullPage: true });
const aud = await ctx.newPage();
await aud.goto(`${CORE}/audiences#token=${encodeURIComponent(ADMIN)}`);
await aud.waitForSelector('tr[data-id="product_qualified_lead"]', { timeout: 10_000 });
await aud.click('tr[data-id="product_qualified_lead"]');
await aud.waitForFunction(() => document.querySelectorAll('#members tr a').length > 0, null, { timeout: 10_000 });
await aud.waitForSelector('#size-chart canvas', { timeout: 10_000 });
await aud.screenshot({ path: path.join(OUT, 'audiences.png'), fullPage: true });
const del = await ctx.newPage();
await del.goto(`${CORE}/destinations#token=${encodeURIComponent(ADMIN)}`);
await del.waitForSelector('tr[data-name="salesforce"]', { timeout: 10_000 });
await del.click('tr[data-name="salesforce"]');
await del.waitForFunction(() => [...document.querySelectorAll('#log tr')].some((r) => r.textContent.includes('success')),
  null, { timeout: 15_000 }).catch(() => fail('the delivery-log page shows no successful Salesforce call'));
await del.screenshot({ path: path.join(OUT, 'deliveries.png'), fullPage: true });
step('screenshots saved in ' + OUT);

console.log(JSON.stringify({ anonymousId }));
clearTimeout(deadline);
await browser.close();
await mf.dispose();
site.close();
process.exit(0);
