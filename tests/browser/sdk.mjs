// The browser SDK (collector-wasm) in headless Chromium against a real core serving /demo and /sdk/*:
// queued calls replay in order, anonymousId persists, a pending batch leaves on navigation, 503s are
// retried without duplicates, waitForConsent stores and sends nothing before consent, oversized
// messages are dropped with a warning, and setConsent's categories ride on every message.
//
// usage: node tests/browser/sdk.mjs BASE_URL WRITE_KEY ADMIN_TOKEN
// Exits 0 when every check passes, 1 (printing what failed) otherwise. Every wait is bounded.

import { launch } from "./chromium.mjs";
import { randomUUID } from "node:crypto";

const [BASE, WRITE_KEY, ADMIN_TOKEN] = process.argv.slice(2);
if (!BASE || !WRITE_KEY || !ADMIN_TOKEN) {
  console.error("usage: sdk.mjs BASE_URL WRITE_KEY ADMIN_TOKEN");
  process.exit(2);
}
const WAIT_MS = 15_000;
const watchdog = setTimeout(() => {
  console.error("FAIL: the SDK browser checks did not finish within 100 s");
  process.exit(1);
}, 100_000);

const failures = [];
const check = (ok, what) => {
  if (!ok) failures.push(what);
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function stored() {
  const r = await fetch(`${BASE}/admin/sources/web/messages?limit=1000`, {
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    signal: AbortSignal.timeout(WAIT_MS),
  });
  if (r.status !== 200) throw new Error(`admin messages answered ${r.status}`);
  return (await r.json())
    .map((row) => ({ ...(row.body ?? {}), seq: row.seq }))
    .sort((a, b) => a.seq - b.seq);
}

// Waits until every request the page issued before this call has been seen by the log: the page
// fetches a marker URL, and requests reach the log in the order the page makes them. This proves a
// request was NOT made without sleeping on the wall clock.
async function barrier(t) {
  const marker = `${BASE}/healthz?barrier=${randomUUID()}`;
  const seen = new Promise((resolve) => {
    const on = (r) => { if (r.url() === marker) { t.page.off("request", on); resolve(); } };
    t.page.on("request", on);
  });
  await t.page.evaluate((u) => fetch(u).catch(() => {}), marker);
  await Promise.race([seen, sleep(WAIT_MS).then(() => { throw new Error("the barrier request was never seen"); })]);
}

// Polls the stored messages until `pred(list)` holds (bounded); returns the last list.
async function waitStored(filter, pred, ms = WAIT_MS) {
  const end = Date.now() + ms;
  let list = [];
  while (Date.now() < end) {
    list = (await stored()).filter(filter);
    if (pred(list)) return list;
    await sleep(150);
  }
  return list;
}

const demo = (q) => `${BASE}/demo?writeKey=${encodeURIComponent(WRITE_KEY)}&${q}`;

async function fresh(browser, name) {
  const context = await browser.newContext();
  context.setDefaultTimeout(WAIT_MS);
  const page = await context.newPage();
  const log = { warnings: [], errors: [], batches: [] };
  page.on("pageerror", (e) => log.errors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "warning") log.warnings.push(m.text());
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) log.errors.push(m.text());
  });
  page.on("request", (r) => {
    if (r.url().includes("/v1/batch")) log.batches.push({ type: r.resourceType(), body: r.postData() || "" });
  });
  page.on("response", (r) => {
    if (r.url().includes("/v1/batch") && r.status() === 200) log.accepted = (log.accepted || 0) + 1;
  });
  const done = async () => {
    check(log.errors.length === 0, `${name}: no page errors (${log.errors.join(" | ")})`);
    await Promise.race([context.close(), sleep(5_000)]);
  };
  return { context, page, log, done };
}

async function ready(page) {
  await page.waitForFunction(() => document.body && document.body.dataset.ready === "1", null, { timeout: WAIT_MS });
  return page.evaluate(() => touchpoint.user().anonymousId());
}

const browser = await launch();

try {
  // (1) Calls made before the wasm arrives are queued by the stub and replayed in order.
  {
    const t = await fresh(browser, "replay");
    await t.page.route("**/sdk/touchpoint.js", async (route) => {
      await sleep(800);
      await route.continue();
    });
    await t.page.goto(demo("nopage=1&flushInterval=200"), { waitUntil: "domcontentloaded" });
    const queued = await t.page.evaluate(() => {
      const wasQueue = Array.isArray(window.touchpoint.q);
      for (const n of ["first", "second", "third"]) {
        touchpoint.track("feature_toggled", { feature_name: `order_${n}`, new_status: true });
      }
      touchpoint.identify("sdk-order-user", { email: "order@example.com" });
      touchpoint.track("report_generated", { report_type: "after_identify", row_count: 1 });
      return wasQueue;
    });
    check(queued, "calls made before the SDK loaded went to the stub's queue");
    const anon = await ready(t.page);
    check(typeof anon === "string" && anon.length >= 32, `the SDK loaded with anonymousId ${anon}`);
    const list = await waitStored((m) => m.anonymousId === anon, (l) => l.length >= 5);
    const names = list.map((m) => m.properties?.feature_name || m.properties?.report_type || m.type);
    check(
      JSON.stringify(names) ===
        JSON.stringify(["order_first", "order_second", "order_third", "identify", "after_identify"]),
      `the queued calls are stored in call order (${names})`,
    );
    const last = list[list.length - 1] || {};
    check(last.userId === "sdk-order-user", "the call after identify carries the userId");
    const ctx = last.context || {};
    check(
      ctx.library?.name === "touchpoint-collector" && !!ctx.userAgent && !!ctx.timezone && !!ctx.page?.url &&
        ctx.screen?.width > 0 && !!ctx.locale,
      `automatic context is filled in (${JSON.stringify(ctx).slice(0, 300)})`,
    );
    check(/^\d{4}-\d\d-\d\dT/.test(last.timestamp || "") && /^\d{4}-\d\d-\d\dT/.test(last.sentAt || ""),
      "timestamp and sentAt are ISO-8601");
    const types = new Set(t.log.batches.map((b) => b.type));
    check(t.log.batches.every((b) => b.body.includes(`"writeKey":"${WRITE_KEY}"`)),
      "batches carry the write key in the body");
    console.log(`batch request types: ${[...types]}`);
    await t.done();
  }

  // (2) The anonymousId survives a reload (cookie + localStorage); reset() starts a new one.
  {
    const t = await fresh(browser, "persist");
    await t.page.goto(demo("flushInterval=200"));
    const before = await ready(t.page);
    await t.page.reload();
    const after = await ready(t.page);
    check(before === after, `anonymousId persists across reload (${before} / ${after})`);
    const cookie = (await t.context.cookies()).find((c) => c.name === "tp_anon");
    check(cookie?.value === before && cookie?.sameSite === "Lax" && cookie.expires > Date.now() / 1000 + 300 * 86400,
      `tp_anon is a first-party, SameSite=Lax, ~1 year cookie (${JSON.stringify(cookie)})`);
    const ls = await t.page.evaluate(() => localStorage.getItem("tp_anon"));
    check(ls === before, "anonymousId is also in localStorage");
    const reset = await t.page.evaluate(() => { touchpoint.reset(); return touchpoint.user().anonymousId(); });
    check(reset !== before && reset.length >= 32, "reset() makes a new anonymousId");
    await t.done();
  }

  // (3) A pending batch leaves with sendBeacon/keepalive when the page goes away.
  {
    const t = await fresh(browser, "beacon");
    await t.page.goto(demo("nopage=1&flushInterval=60000"));
    const anon = await ready(t.page);
    const feature = `beacon_${randomUUID().slice(0, 8)}`;
    await t.page.evaluate((f) => touchpoint.track("feature_toggled", { feature_name: f, new_status: false }), feature);
    await barrier(t);
    const sentBefore = t.log.batches.filter((b) => b.body.includes(feature)).length;
    check(sentBefore === 0, "with a 60 s flush interval nothing was sent while the page stayed");
    await t.page.goto(`${BASE}/healthz`);
    const list = await waitStored((m) => m.anonymousId === anon, (l) => l.length >= 1, 10_000);
    check(list.length === 1 && list[0].properties?.feature_name === feature,
      `the pending event arrived after navigating away (${list.length})`);
    console.log(`navigation-away request types: ${t.log.batches.map((b) => b.type)}`);
    await t.done();
  }

  // (4) 503s are retried with backoff and every message arrives exactly once.
  {
    const t = await fresh(browser, "retry");
    let failed = 0;
    await t.page.route("**/v1/batch", async (route) => {
      if (failed < 2) {
        failed++;
        await route.fulfill({ status: 503, contentType: "application/json", headers: { "retry-after": "1" },
          body: '{"success":false,"error":"temporarily unable to accept messages; retry later"}' });
      } else {
        await route.continue();
      }
    });
    await t.page.goto(demo("nopage=1&flushInterval=100"));
    const anon = await ready(t.page);
    await t.page.evaluate(() => {
      touchpoint.track("feature_toggled", { feature_name: "retry_a", new_status: true });
      touchpoint.track("feature_toggled", { feature_name: "retry_b", new_status: true });
    });
    const list = await waitStored((m) => m.anonymousId === anon, (l) => l.length >= 2);
    // Once the persisted queue is empty nothing is left to send; the barrier then makes sure every
    // send made before that is in the log, so a duplicate send would be counted below.
    await t.page.waitForFunction(() => ["[]", null].includes(localStorage.getItem("tp_queue")), null, { timeout: WAIT_MS });
    await barrier(t);
    const again = (await stored()).filter((m) => m.anonymousId === anon);
    check(t.log.accepted === 1, `exactly one send was accepted, so none was repeated (${t.log.accepted})`);
    check(failed === 2, `the first two sends got 503 (${failed})`);
    check(t.log.batches.length >= 3, `the SDK retried (${t.log.batches.length} requests)`);
    check(list.length === 2 && again.length === 2, `both messages stored exactly once (${again.length})`);
    for (const m of again) {
      const r = await fetch(`${BASE}/admin/messages/${encodeURIComponent(m.messageId)}`, {
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      const rows = await r.json();
      check(Array.isArray(rows) && rows.length === 1, `messageId ${m.messageId} stored once`);
    }
    const q = await t.page.evaluate(() => localStorage.getItem("tp_queue"));
    check(q === "[]" || q === null, `the persisted queue is empty after delivery (${q})`);
    await t.done();
  }

  // (5) waitForConsent: no cookie, no localStorage, no request until consent(true).
  {
    const t = await fresh(browser, "consent");
    await t.page.goto(demo("consent=wait&flushInterval=100"));
    const anon = await ready(t.page);
    await t.page.evaluate(() => {
      touchpoint.track("feature_toggled", { feature_name: "consent_wait", new_status: true });
      touchpoint.flush();
    });
    await barrier(t);
    const keys = await t.page.evaluate(() => Object.keys(localStorage));
    const cookies = await t.context.cookies();
    check(t.log.batches.length === 0, `nothing sent before consent (${t.log.batches.length})`);
    check(keys.length === 0, `nothing in localStorage before consent (${keys})`);
    check(cookies.length === 0, `no cookie before consent (${cookies.map((c) => c.name)})`);
    check((await stored()).filter((m) => m.anonymousId === anon).length === 0, "nothing stored before consent");
    await t.page.click("#consent");
    const list = await waitStored((m) => m.anonymousId === anon, (l) => l.length >= 2);
    check(list.length === 2, `after consent the page view and the event arrive (${list.length})`);
    const cookie = (await t.context.cookies()).find((c) => c.name === "tp_anon");
    check(cookie?.value === anon, "after consent the anonymousId cookie is set");
    await t.done();
  }

  // (6) A message over 32 KB is dropped with a console warning; the next one still goes.
  {
    const t = await fresh(browser, "oversize");
    await t.page.goto(demo("nopage=1&flushInterval=100"));
    const anon = await ready(t.page);
    await t.page.evaluate(() => {
      touchpoint.track("report_generated", { report_type: "x".repeat(40 * 1024) });
      touchpoint.track("report_generated", { report_type: "small", row_count: 2 });
    });
    const list = await waitStored((m) => m.anonymousId === anon, (l) => l.length >= 1);
    // The warning was printed inside the evaluate that tracked the message, and Chromium reports
    // console calls before the evaluate's result, so it is in the log already.
    check(t.log.warnings.some((w) => w.includes("32 KB")), `a console warning names the 32 KB limit (${t.log.warnings})`);
    check(list.length === 1 && list[0].properties?.report_type === "small", "only the small message was stored");
    check(t.log.batches.every((b) => b.body.length < 32 * 1024), "the oversized message was never sent");
    await t.done();
  }

  // (7) setConsent: the categories go out as context.consent.categoryPreferences and are remembered.
  {
    const t = await fresh(browser, "categories");
    await t.page.goto(demo("nopage=1&flushInterval=100"));
    const anon = await ready(t.page);
    const prefs = { Advertising: false, Analytics: true };
    await t.page.evaluate((p) => {
      touchpoint.track("feature_toggled", { feature_name: "before_consent", new_status: true });
      touchpoint.setConsent(p);
      touchpoint.track("feature_toggled", { feature_name: "after_consent", new_status: true });
    }, prefs);
    let list = await waitStored((m) => m.anonymousId === anon, (l) => l.length >= 2);
    const by = (n) => list.find((m) => m.properties?.feature_name === n) || {};
    check(by("before_consent").context && by("before_consent").context.consent === undefined,
      "a message sent before setConsent carries no consent object");
    check(JSON.stringify(by("after_consent").context?.consent) === JSON.stringify({ categoryPreferences: prefs }),
      `a message after setConsent carries them (${JSON.stringify(by("after_consent").context?.consent)})`);
    await t.page.reload();
    await ready(t.page);
    await t.page.evaluate(() => touchpoint.track("feature_toggled", { feature_name: "after_reload", new_status: true }));
    list = await waitStored((m) => m.anonymousId === anon, (l) => l.length >= 3);
    check(JSON.stringify(by("after_reload").context?.consent?.categoryPreferences) === JSON.stringify(prefs),
      "the categories are remembered across a reload");
    await t.page.evaluate(() => {
      touchpoint.setConsent(null);
      touchpoint.track("feature_toggled", { feature_name: "after_clear", new_status: true });
    });
    list = await waitStored((m) => m.anonymousId === anon, (l) => l.length >= 4);
    const ls = await t.page.evaluate(() => localStorage.getItem("tp_consent"));
    check(by("after_clear").context && by("after_clear").context.consent === undefined && ls === null,
      `setConsent(null) forgets them (${ls})`);
    await t.done();
  }
} catch (e) {
  failures.push(`error: ${e && e.stack ? e.stack : e}`);
  console.error(`FAIL ${e && e.stack ? e.stack : e}`);
} finally {
  await Promise.race([browser.close(), sleep(5_000)]).catch(() => {});
}

clearTimeout(watchdog);
if (failures.length) {
  console.error(`\n${failures.length} check(s) failed:\n- ${failures.join("\n- ")}`);
  process.exit(1);
}
console.log("all SDK browser checks passed");
process.exit(0);
