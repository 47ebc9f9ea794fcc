// The admin console in headless Chromium, on a server the Rust test seeded with demo data
// (tests/tests/integration/console.rs): the admin token is typed once into the console's dialog and
// kept for the tab; the audience builder round-trips text and blocks, the PQL is built with blocks
// (one dragged from the palette, one added with the keyboard) and saved; the audience page counts a
// new member live; the profile's identity graph and timeline filters, the tracking-plan health,
// pipeline health (with a quarantine replay) and the deliveries page all render. Every page is
// checked for console errors, page errors, CSP violations, an error banner and horizontal overflow
// at a laptop's 1366×768, and is screenshotted into OUT_DIR.
//
// Usage: node console.mjs CORE_URL ADMIN_TOKEN WRITE_KEY ADA_PROFILE_ID OUT_DIR
// Prints one JSON line {builtText, builtCount, liveCounter, …} on success; exits 1 with the reason.
import path from 'node:path';
import { launch } from './chromium.mjs';

const [CORE, ADMIN, WRITE_KEY, ADA, OUT] = process.argv.slice(2);
const WAIT = { timeout: 20_000 };
const deadline = setTimeout(() => fail('console.mjs took longer than 200 s'), 200_000);
const problems = [];
let browser, page, current = 'start';

function fail(msg) {
  console.error('console: ' + msg);
  process.exit(1);
}
const step = (s) => console.error('console: ' + s);

/** Opens a console page, checking it is served with a strict Content-Security-Policy. */
async function open(pathAndHash, name) {
  current = name;
  const r = await page.goto(CORE + pathAndHash);
  const csp = r.headers()['content-security-policy'] || '';
  if (!csp.includes("script-src 'self'") || csp.includes('unsafe-inline') || csp.includes('unsafe-eval')) {
    fail(`${name}: not served with the strict policy: ${csp}`);
  }
}

/** Fails on anything the page reported: console errors or warnings, page errors, CSP violations, an error banner, overflow. */
async function check(name) {
  const csp = await page.evaluate(() => window.__csp || []);
  if (csp.length) fail(`${name}: Content-Security-Policy violations: ${csp.join('; ')}`);
  const banner = await page.evaluate(() => (document.getElementById('error') || {}).textContent || '');
  if (banner.trim()) fail(`${name}: the page shows an error: ${banner}`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 1) fail(`${name}: ${overflow} px wider than a 1366 px laptop screen`);
  if (problems.length) fail(problems.join('\n'));
}

async function shot(file) {
  await page.waitForTimeout(400); // let charts and transitions settle
  await page.screenshot({ path: path.join(OUT, file), fullPage: true });
}

const text = (sel) => page.locator(sel).innerText();
const basic = 'Basic ' + Buffer.from(WRITE_KEY + ':').toString('base64');

/** Sends up to `batches` batches of page views, one every 400 ms, until `enough()` (live traffic for the throughput charts). */
async function traffic(batches, enough = () => false) {
  for (let i = 0; i < batches && !enough(); i++) {
    const batch = Array.from({ length: 30 }, (_, k) => ({ type: 'page', anonymousId: `visitor-${i}-${k % 7}`, name: 'pricing',
      properties: { path: '/pricing', title: 'Pricing' } }));
    const r = await fetch(CORE + '/v1/batch', { method: 'POST', headers: { 'content-type': 'application/json', authorization: basic }, body: JSON.stringify({ batch }) });
    if (!r.ok) fail('traffic refused: ' + r.status);
    await new Promise((res) => setTimeout(res, 400));
  }
}

try {
  browser = await launch();
  const ctx = await browser.newContext({ viewport: { width: 1366, height: 768 } });
  await ctx.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline')));
  });
  page = await ctx.newPage();
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`${current}: console ${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`${current}: page error: ${e.message}`));

  // 1. The token, typed once into the dialog; every later page in this tab has it.
  await open('/audiences', 'audiences');
  await page.waitForSelector('#token-dialog[open]', WAIT);
  await page.keyboard.type(ADMIN); // the dialog focused its input
  await page.keyboard.press('Enter');
  await page.waitForSelector('tr[data-id="product_qualified_lead"]', WAIT);
  await page.click('tr[data-id="product_qualified_lead"]');
  await page.waitForFunction(() => document.getElementById('which').textContent.includes('product_qualified_lead'), null, WAIT);
  await page.waitForSelector('#size-chart canvas', WAIT);
  await page.waitForFunction(() => document.querySelectorAll('#feed li.in').length >= 3, null, WAIT);
  await page.waitForSelector('#destinations tr[data-name="webhook"]', WAIT);
  if (!(await text('#members')).includes('Ada Lovelace')) fail('members are not shown by name: ' + await text('#members'));
  if (!(await text('#feed')).includes('@')) fail('the feed does not show emails');
  await check('audiences');
  await shot('audiences.png');
  step('audiences page');

  // 2. Text → blocks → text in the builder.
  await open('/audiences/builder', 'builder (text)');
  await page.waitForSelector('#canvas .block.group', WAIT);
  if (await page.locator('#token-dialog[open]').count()) fail('the token was asked for again in the same tab');
  await page.fill('#cond', "plan_tier = 'free' AND PERFORMED teammate_invited AT LEAST 2 TIMES AND NOT PERFORMED integration_connected EVER");
  await page.focus('#cond');
  await page.keyboard.press('Control+Enter');
  await page.waitForFunction(() => document.querySelectorAll('#canvas .block.performed').length === 2, null, WAIT);
  const negated = await page.locator('#canvas .block.performed.negated').count();
  const traitPath = await page.inputValue('#canvas .block.trait [data-f="path"]');
  const inviteCount = await page.inputValue('#canvas .block.performed >> nth=0 >> [data-f="n"]');
  if (negated !== 1 || traitPath !== 'plan_tier' || inviteCount !== '2') fail(`text → blocks: negated ${negated}, path ${traitPath}, n ${inviteCount}`);
  await page.waitForFunction(() => document.body.dataset.count !== undefined, null, WAIT);
  const inviters = Number(await page.evaluate(() => document.body.dataset.count));
  await page.fill('#canvas .block.trait [data-f="value"]', 'pro');
  await page.waitForFunction(() => document.getElementById('cond').value.startsWith("plan_tier = 'pro' AND"), null, WAIT);
  const roundTrip = await page.inputValue('#cond');
  await check('builder (text)');
  step('builder: text and blocks round-trip');

  // 3. The PQL with blocks: drag "Account trait" from the palette, add "Performed event" with the keyboard.
  await open('/audiences/builder?new', 'builder (PQL)');
  await page.waitForSelector('#canvas .block.group', WAIT);
  await page.locator('#palette [data-kind="account"]').dragTo(page.locator('#canvas > .block > .children'));
  await page.waitForSelector('#canvas .block.account', WAIT);
  await page.fill('#canvas .block.account [data-f="path"]', 'seats_provisioned');
  await page.selectOption('#canvas .block.account [data-f="op"]', '>');
  await page.fill('#canvas .block.account [data-f="value"]', '3');
  await page.focus('#palette [data-kind="performed"]');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#canvas .block.performed', WAIT);
  // The new block's first field has focus: type the event with the keyboard.
  const focused = await page.evaluate(() => document.activeElement.dataset.f);
  if (focused !== 'event') fail('the added block did not take focus: ' + focused);
  await page.keyboard.type('integration_connected');
  await page.waitForFunction(() => document.getElementById('cond').value.includes('PERFORMED integration_connected'), null, WAIT);
  await page.waitForFunction(() => document.body.dataset.count !== undefined, null, WAIT);
  const builtText = await page.inputValue('#cond');
  const builtCount = Number(await page.evaluate(() => document.body.dataset.count));
  const sample = await text('#sample');
  if (!sample.includes('Ada Lovelace') || !sample.includes('@')) fail('sample members without names or emails: ' + sample);
  await page.fill('#aid', 'pql_built_visually');
  await page.fill('#aname', 'PQL (built visually)');
  await page.fill('#adesc', 'More than three seats and an integration in the last 30 days, built with blocks');
  await check('builder (PQL)');
  await shot('audience-builder.png');
  await page.click('#save');
  await page.waitForSelector('#result[data-saved="pql_built_visually"]', WAIT);
  await check('builder (saved)');
  step('builder: PQL built and saved: ' + builtText);

  // 4. The new audience's page counts a member live when Alan's workspace grows past three seats.
  await open('/audiences#id=pql_built_visually', 'audience (live)');
  await page.waitForFunction((n) => document.getElementById('counter').textContent === String(n), builtCount, WAIT);
  const r = await fetch(CORE + '/v1/group', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: basic },
    body: JSON.stringify({ userId: 'u-alan', groupId: 'ws-bletchley', traits: { name: 'Bletchley', seats_provisioned: 7 } }),
  });
  if (!r.ok) fail('group call refused: ' + r.status);
  await page.waitForFunction((n) => document.getElementById('counter').textContent === String(n), builtCount + 1, { timeout: 30_000 })
    .catch(async () => fail('the counter did not move: ' + await text('#counter')));
  await page.waitForFunction(() => document.getElementById('feed').textContent.includes('Alan Turing'), null, WAIT);
  const liveCounter = Number(await text('#counter'));
  await check('audience (live)');
  step('audience page: live counter ' + liveCounter);

  // 5. Ada's profile: the identity graph with the merge, and the timeline's filters.
  await open('/profiles#id=' + encodeURIComponent(ADA), 'profile');
  await page.waitForFunction(() => document.querySelectorAll('#graph svg g.node').length >= 4, null, WAIT);
  await page.waitForSelector('#graph svg g.msg.merge', WAIT);
  await page.waitForFunction(() => document.querySelectorAll('#timeline li').length > 10, null, WAIT);
  if ((await text('#stage')).length < 3) fail('no journey stage');
  await page.selectOption('#f-type', 'identify');
  const kinds = await page.$$eval('#timeline li', (lis) => [...new Set(lis.map((li) => li.className))]);
  if (kinds.length !== 1 || kinds[0] !== 't-identify') fail('the type filter shows ' + kinds);
  await page.selectOption('#f-type', '');
  await page.fill('#f-text', 'slack');
  const slack = await page.$$eval('#timeline li', (lis) => lis.map((li) => li.textContent));
  if (!slack.length || !slack.every((t) => t.includes('slack'))) fail('the search filter shows ' + slack.length + ' items');
  await page.fill('#f-text', '');
  await check('profile');
  await shot('profile.png');
  step('profile page');

  // 6. Tracking-plan health.
  await open('/plan', 'plan');
  await page.waitForSelector('body[data-loaded="1"]', WAIT);
  await page.waitForSelector('#volume-chart canvas', WAIT);
  const kindsShown = await page.$$eval('#kinds tr code', (c) => c.map((x) => x.textContent));
  for (const k of ['unplanned_event', 'missing_required', 'not_in_enum', 'wrong_type']) {
    if (!kindsShown.includes(k)) fail('violations by kind lack ' + k + ': ' + kindsShown);
  }
  if (!(await text('#sources')).includes('server')) fail('no offending source');
  await page.click('tr[data-event="trial_started"] summary');
  if (!(await text('tr[data-event="trial_started"]')).includes('trial_days')) fail('the plan does not show trial_started\'s properties');
  await check('plan');
  await shot('tracking-plan.png');
  step('tracking-plan page');

  // 7. Pipeline health, then a quarantined message replayed (the trigger that broke it is gone).
  await open('/pipeline', 'pipeline');
  await page.waitForSelector('#stages tr[data-stage="profiles"]', WAIT);
  await page.waitForSelector('#rate-chart canvas', WAIT);
  let moved = false;
  const sending = traffic(15, () => moved);
  await page.waitForFunction(() => [...document.querySelectorAll('#stages tr[data-stage="profiles"] td')].some((td) => /^[1-9][0-9.]*\/s$/.test(td.textContent)),
    null, WAIT).catch(() => fail('the throughput column never moved'));
  moved = true;
  await sending;
  await page.waitForSelector('#deliveries .dest-chart[data-destination="webhook"] canvas', WAIT);
  await page.waitForFunction(() => document.getElementById('quarantine').textContent.includes('poisoned identity'), null, WAIT);
  await check('pipeline');
  await shot('pipeline.png');
  await page.click('#quarantine button');
  await page.waitForFunction(() => document.getElementById('quarantine').textContent.includes('Nothing is quarantined'), null, WAIT);
  await check('pipeline (replayed)');
  step('pipeline page');

  // 8. Deliveries.
  await open('/destinations', 'deliveries');
  await page.waitForFunction(() => [...document.querySelectorAll('#log tr')].some((r) => r.textContent.includes('success')), null, WAIT);
  await page.waitForSelector('#outcomes canvas', WAIT);
  await check('deliveries');
  await shot('deliveries.png');
  step('deliveries page');

  // 9. The live debugger shares the session's token.
  await open('/debugger', 'debugger');
  await page.waitForFunction(() => document.body.dataset.live === '1', null, WAIT);
  await page.waitForFunction(() => document.querySelectorAll('#events li').length > 10, null, WAIT);
  await page.click('#events li');
  await check('debugger');
  await shot('debugger.png');
  step('debugger page');

  console.log(JSON.stringify({ builtText, builtCount, liveCounter, inviters, roundTrip }));
  clearTimeout(deadline);
  await browser.close();
  process.exit(0);
} catch (e) {
  fail(`${current}: ${e.stack || e}${problems.length ? '\n' + problems.join('\n') : ''}`);
}
