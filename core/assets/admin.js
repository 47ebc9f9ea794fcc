// Shared by the console pages (audiences, builder, profiles, plan, pipeline, deliveries): the admin
// token (asked once per browser session, kept in sessionStorage), the navigation, safe DOM building
// (text only, never HTML from data), formatting, and the admin API client.
"use strict";
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.hash.slice(1));
const TOKEN_KEY = "tp_admin_token";
if (params.has("token")) { // a link may carry it once: keep it out of the address bar and history
  sessionStorage.setItem(TOKEN_KEY, params.get("token").trim());
  params.delete("token");
  history.replaceState(null, "", location.pathname + location.search + (params.toString() ? "#" + params : ""));
}

/** The admin token of this browser session ("" when not entered yet). */
function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }
/** Kept for pages written before the session token: the token now lives in sessionStorage. */
function saveToken() {}

/**
 * Builds an element: `props` sets properties (`class`, `text`, `on:click`, `data-*`, `aria-*` and
 * any other attribute); children are nodes or strings (added as text). Never parses HTML.
 */
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = String(v);
    else if (k.startsWith("on:")) e.addEventListener(k.slice(3), v);
    else if (k === "value" || k === "checked" || k === "selected" || k === "disabled" || k === "hidden") e[k] = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) e.append(c instanceof Node ? c : String(c));
  return e;
}

/** An element holding `text` as text. */
function cell(tag, text, cls) { return el(tag, { class: cls, text: text ?? "" }); }

/** Formatting helpers. */
const fmt = {
  num: (n) => (n === null || n === undefined) ? "—" : Number(n).toLocaleString("en-US"),
  time: (ms) => ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "—",
  day: (ms) => new Date(ms).toISOString().slice(0, 10),
  ago(ms) {
    if (!ms) return "—";
    const s = Math.round((Date.now() - ms) / 1000);
    if (s < 5) return "just now";
    if (s < 90) return s + " s ago";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    if (s < 129600) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  },
  duration(ms) {
    if (ms === null || ms === undefined) return "—";
    if (ms < 1000) return ms + " ms";
    if (ms < 120000) return (ms / 1000).toFixed(1) + " s";
    if (ms < 7200000) return Math.round(ms / 60000) + " min";
    return Math.round(ms / 3600000) + " h";
  },
  /** A bucket width as a unit: "minute", "hour", "12 h". */
  per: (ms) => ({ 1000: "second", 60000: "minute", 3600000: "hour", 86400000: "day" })[ms] || fmt.duration(ms),
  pct: (n, of) => of ? (100 * n / of).toFixed(n / of < 0.1 ? 1 : 0) + "%" : "—",
  /** "Ada Lovelace <ada@acme.example>", falling back to the profile id. */
  person: (p) => p.name && p.email ? p.name + " <" + p.email + ">" : (p.name || p.email || p.id || p.profileId || p.profile_id || "—"),
};

const NAV = [["/audiences", "Audiences"], ["/audiences/builder", "Builder"], ["/profiles", "Profiles"],
  ["/plan", "Tracking plan"], ["/pipeline", "Pipeline"], ["/destinations", "Deliveries"], ["/handoffs", "Handoffs"], ["/debugger", "Debugger"]];

/** Fills the page's `<nav id="nav">` with the console's pages and a sign-out button. */
function renderNav() {
  const nav = $("nav");
  if (!nav) return;
  nav.setAttribute("aria-label", "Console pages");
  nav.replaceChildren(...NAV.map(([href, label]) =>
    el("a", { href, text: label, "aria-current": location.pathname === href ? "page" : null })),
  el("button", { type: "button", class: "link", text: "Forget token", title: "Forget the admin token of this browser session",
    "on:click": () => { sessionStorage.removeItem(TOKEN_KEY); askToken(); } }));
}

let onToken = [];
/** Asks for the admin token in a modal dialog; checks it against the API before keeping it. */
function askToken(message) {
  let dlg = $("token-dialog");
  if (!dlg) {
    const input = el("input", { id: "token-input", type: "password", autocomplete: "off", size: 32, required: true,
      "aria-describedby": "token-help" });
    const err = el("p", { id: "token-error", class: "error", role: "alert" });
    const form = el("form", { method: "dialog" },
      el("h2", { text: "Admin token" }),
      el("p", { id: "token-help", text: "Enter the admin token (TOUCHPOINT_ADMIN_TOKEN) once; this tab remembers it until it is closed." }),
      el("label", { for: "token-input", text: "Token" }), input, err,
      el("div", { class: "actions" }, el("button", { type: "submit", class: "primary", text: "Continue" })));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const t = input.value.trim();
      const r = await fetch("/admin/plan", { headers: { authorization: "Bearer " + t } }).catch(() => null);
      if (!r || !r.ok) { err.textContent = r && r.status === 401 ? "That token was refused." : "The server did not answer."; input.select(); return; }
      sessionStorage.setItem(TOKEN_KEY, t);
      dlg.close();
      const waiting = onToken; onToken = [];
      waiting.forEach((f) => f());
    });
    dlg = el("dialog", { id: "token-dialog", "aria-labelledby": "token-title" }, form);
    form.firstChild.id = "token-title";
    dlg.addEventListener("cancel", (e) => e.preventDefault()); // nothing works without it
    document.body.append(dlg);
  }
  $("token-error").textContent = message || "";
  if (!dlg.open) dlg.showModal();
  $("token-input").focus();
}

/** Runs `start` once the session has an admin token (asking for it first if needed). */
function whenReady(start) {
  renderNav();
  if (token()) start(); else { onToken.push(start); askToken(); }
}

/** Calls the admin API with the token; `body` is sent as JSON (POST unless `method` says). */
async function api(path, { method, body } = {}) {
  const init = { method: method || (body ? "POST" : "GET"), headers: { authorization: "Bearer " + token() } };
  if (body) { init.headers["content-type"] = "application/json"; init.body = JSON.stringify(body); }
  const r = await fetch(path, init);
  const data = await r.json().catch(() => ({}));
  if (r.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    askToken("The admin token was refused; enter it again.");
  }
  if (!r.ok) throw new Error(data.error || ("HTTP " + r.status));
  return data;
}

/** Shows an error in the page's `#error` region (or clears it). */
function showError(e) {
  const box = $("error");
  if (box) box.textContent = e ? (e.message || String(e)) : "";
  if (e) console.warn(e);
}

/** Calls `f` every `ms` while the tab is visible (and once now); returns a stop function. */
function every(ms, f) {
  let stopped = false, timer = null;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) { try { await f(); } catch (e) { showError(e); } }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}
