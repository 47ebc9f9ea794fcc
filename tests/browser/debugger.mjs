// The live debugger page in headless Chromium: it goes live, shows a valid and a hostile message as
// they arrive, renders the hostile one as inert text, and reports the plan's verdict for each.
//
// usage: node tests/browser/debugger.mjs BASE_URL WRITE_KEY ADMIN_TOKEN SCREENSHOT_PATH
// Exits 0 when every check passes, 1 (printing what failed) otherwise. Every wait is bounded.

import { chromium } from "playwright-core";
import { CHROMIUM, CHROMIUM_ARGS } from "./chromium.mjs";
import { mkdtemp, mkdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { randomUUID } from "node:crypto";

const [BASE, WRITE_KEY, ADMIN_TOKEN, SCREENSHOT] = process.argv.slice(2);
if (!BASE || !WRITE_KEY || !ADMIN_TOKEN || !SCREENSHOT) {
  console.error("usage: debugger.mjs BASE_URL WRITE_KEY ADMIN_TOKEN SCREENSHOT_PATH");
  process.exit(2);
}

const WAIT_MS = 10_000;
const IMG = `<img src=x onerror="window.__pwned=1">`;
const SCRIPT = `</script><script>window.__pwned=2</script>`;
const HOSTILE_EVENT = `${IMG}${SCRIPT}`;

// A last-resort watchdog: whatever hangs, the script ends well inside the caller's timeout.
const watchdog = setTimeout(() => {
  console.error("FAIL: the browser check did not finish within 60 s");
  process.exit(1);
}, 60_000);

const failures = [];
const check = (ok, what) => {
  if (!ok) failures.push(what);
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
};

async function send(body) {
  const auth = "Basic " + Buffer.from(`${WRITE_KEY}:`).toString("base64");
  const r = await fetch(`${BASE}/v1/track`, {
    method: "POST",
    headers: { authorization: auth, "content-type": "application/json" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(WAIT_MS),
  });
  return { status: r.status, text: await r.text() };
}

const profile = await mkdtemp(join(tmpdir(), "tp-chromium-"));
let context;
const pageErrors = [];
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30_000,
    viewport: { width: 1280, height: 800 },
    args: CHROMIUM_ARGS,
  });
  context.setDefaultTimeout(WAIT_MS);
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("console", (m) => {
    // A missing favicon is a console error too; only script errors count.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) pageErrors.push(m.text());
  });

  await page.goto(`${BASE}/debugger#token=${encodeURIComponent(ADMIN_TOKEN)}`, { timeout: WAIT_MS });
  await page.waitForFunction(() => document.body.dataset.live === "1", null, { timeout: WAIT_MS });
  check(true, "the page went live (EventSource open)");
  check(!page.url().includes(ADMIN_TOKEN), "the admin token is removed from the address bar");

  const validId = `dbg-valid-${randomUUID()}`;
  const hostileId = `dbg-hostile-${randomUUID()}`;
  const valid = await send({
    messageId: validId,
    userId: "dbg-user-1",
    event: "feature_toggled",
    properties: { feature_name: "dark_mode", new_status: true },
  });
  check(valid.status === 200, `the valid event is acknowledged 200 (got ${valid.status} ${valid.text})`);
  const hostile = await send({
    messageId: hostileId,
    userId: "dbg-user-2",
    event: HOSTILE_EVENT,
    properties: { [IMG]: IMG, feature_name: SCRIPT, nested: { html: HOSTILE_EVENT } },
  });
  console.log(`hostile event answered ${hostile.status} ${hostile.text}`);

  const validRow = page.locator(`#events li[data-message-id="${validId}"]`);
  const hostileRow = page.locator(`#events li[data-message-id="${hostileId}"]`);
  await validRow.waitFor({ state: "visible", timeout: WAIT_MS });
  await hostileRow.waitFor({ state: "visible", timeout: WAIT_MS });
  check(true, "both rows appeared in #events");

  const validText = await validRow.textContent();
  const validBadge = (await validRow.locator(".badge").textContent())?.trim();
  check(validBadge === "accepted", `the valid row's status is accepted (got ${validBadge})`);
  check(validText.includes("dbg-user-1"), `the valid row shows userId dbg-user-1 (${validText})`);
  check(validText.includes("feature_toggled"), "the valid row shows its event name");

  const hostileText = await hostileRow.textContent();
  const hostileBadge = (await hostileRow.locator(".badge").textContent())?.trim();
  check(hostileText.includes(IMG), `the hostile event name is shown literally (${hostileText})`);
  check(hostileText.includes(SCRIPT), "the hostile </script> text is shown literally");
  check(
    !!hostileBadge && hostileBadge !== "accepted",
    `the hostile row is not accepted (got ${hostileBadge})`,
  );

  await hostileRow.click({ timeout: WAIT_MS });
  await page.waitForFunction(
    (id) => document.querySelector(`#events li[data-message-id="${id}"]`)?.classList.contains("selected"),
    hostileId,
    { timeout: WAIT_MS },
  );
  const detailText = await page.locator("#detail").textContent();
  check(detailText.includes(IMG) && detailText.includes(SCRIPT), "the detail shows the hostile payload as text");
  check(/status: (blocked|flagged|rejected)/.test(detailText), "the detail shows the non-accepted status");
  check((await page.locator("#findings li").count()) > 0, "the detail lists the plan's findings");
  // No <img> and no <script> element means no injected handler can ever run: the structure is the
  // proof, so there is nothing to wait for.
  const injected = await page.evaluate(() => ({
    img: document.querySelectorAll("#events img, #detail img").length,
    script: document.querySelectorAll("#events script, #detail script").length,
    pwned: typeof window.__pwned,
  }));
  check(injected.img === 0, `no <img> element in #events or #detail (found ${injected.img})`);
  check(injected.script === 0, `no <script> element in #events or #detail (found ${injected.script})`);
  check(injected.pwned === "undefined", `window.__pwned is undefined (${injected.pwned})`);

  await mkdir(dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true, timeout: WAIT_MS });
  console.log(`screenshot: ${SCREENSHOT}`);

  await validRow.click({ timeout: WAIT_MS });
  const validDetail = await page.locator("#detail").textContent();
  check(validDetail.includes("status: accepted"), "the valid row's detail says accepted");

  // Reconnecting replays recent history from storage: each message comes back exactly once,
  // with the same verdict.
  await page.locator("#connect").click({ timeout: WAIT_MS });
  await page.waitForFunction(
    ([a, b]) =>
      document.body.dataset.live === "1" &&
      document.querySelector(`#events li[data-message-id="${a}"]`) &&
      document.querySelector(`#events li[data-message-id="${b}"]`),
    [validId, hostileId],
    { timeout: WAIT_MS },
  );
  await page.waitForTimeout(300);
  check(
    (await validRow.count()) === 1 && (await hostileRow.count()) === 1,
    `after reconnecting each message is listed once (${await validRow.count()}, ${await hostileRow.count()})`,
  );
  check(
    (await validRow.getAttribute("data-status")) === "accepted" &&
      (await hostileRow.getAttribute("data-status")) === hostileBadge,
    "the replayed history keeps each message's status",
  );

  check(pageErrors.length === 0, `no page errors (${pageErrors.join(" | ")})`);
} catch (e) {
  failures.push(`error: ${e && e.stack ? e.stack : e}`);
  console.error(`FAIL ${e && e.stack ? e.stack : e}`);
} finally {
  try {
    await Promise.race([context?.close(), new Promise((r) => setTimeout(r, 5_000))]);
  } catch {
    // the browser is gone already
  }
  await rm(profile, { recursive: true, force: true }).catch(() => {});
}

clearTimeout(watchdog);
if (failures.length) {
  console.error(`\n${failures.length} check(s) failed:\n- ${failures.join("\n- ")}`);
  process.exit(1);
}
console.log("all debugger checks passed");
process.exit(0);
