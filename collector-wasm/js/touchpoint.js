// Touchpoint browser SDK glue (hand-written; no wasm-bindgen): instantiates touchpoint_bg.wasm with the
// `tp.*` imports src/web.rs declares and exposes the analytics.js-shaped API as ES module exports.
// It only touches browser APIs; every decision is made in Rust. Strings cross as UTF-8: Rust→JS as
// (ptr, len), JS→Rust pushed through tp_in/tp_push (export arguments tagged with their JS type).
let X, R, P;
const enc = new TextEncoder();
const dec = new TextDecoder();
const str = (p, n) => dec.decode(new Uint8Array(X.memory.buffer, p, n));
const raw = (s) => {
  const m = s.length * 3;
  const p = X.tp_in(m);
  X.tp_push(enc.encodeInto(s, new Uint8Array(X.memory.buffer, p, m)).written);
};
const json = (v) => {
  try {
    return "o" + (JSON.stringify(v) || "");
  } catch (e) {
    return "x";
  }
};
const put = (v) => {
  const t = typeof v;
  raw(
    t == "string" ? "s" + v
    : t == "number" ? "n" + JSON.stringify(v)
    : t == "boolean" ? (v ? "t" : "f")
    : v && t == "object" && !Array.isArray(v) ? json(v)
    : "u",
  );
};
const call = (f) => (...a) => {
  R = null;
  a.forEach((v) => put(v));
  X["tp_" + f]();
  return R;
};
// tp.get(i): the order of `Env` in src/web.rs.
const G = [
  () => location.pathname,
  () => document.referrer,
  () => location.search,
  () => document.title,
  () => location.href,
  () => location.protocol,
  () => navigator.userAgent,
  () => navigator.language,
  () => Intl.DateTimeFormat().resolvedOptions().timeZone,
  () => JSON.stringify(screen.width),
  () => JSON.stringify(screen.height),
  () => JSON.stringify(devicePixelRatio),
  () => document.cookie,
  () => new Date().toISOString(),
];
const tp = {
  get(i) {
    let v;
    try {
      v = G[i]();
    } catch (e) {}
    raw(v == null ? "" : "" + v);
  },
  store(o, k, kn, v, vn) {
    try {
      const S = localStorage;
      const key = str(k, kn);
      if (o == 0) {
        const r = S.getItem(key);
        if (r == null) return 0;
        raw(r);
      } else if (o == 1) S.setItem(key, str(v, vn));
      else if (o == 2) S.removeItem(key);
      else S.setItem("tp_probe", "1"), S.removeItem("tp_probe");
      return 1;
    } catch (e) {
      return 0;
    }
  },
  set_cookie(p, n) {
    document.cookie = str(p, n);
  },
  con(l, p, n) {
    const s = str(p, n);
    l == 1 ? console.log("touchpoint:", JSON.parse(s)) : l ? console.log(s) : console.warn(s);
  },
  now: () => Date.now(),
  random: () => Math.random(),
  timer: (ms) => setTimeout(() => X.tp_tick(), ms),
  untimer: (t) => clearTimeout(t),
  send(u, un, b, bn, k) {
    fetch(str(u, un), { method: "POST", body: str(b, bn), keepalive: !!k }).then(
      (r) => X.tp_sent(r.status),
      () => X.tp_sent(0),
    );
  },
  beacon(u, un, b, bn) {
    try {
      return navigator.sendBeacon(str(u, un), str(b, bn)) ? 1 : 0;
    } catch (e) {
      return 0;
    }
  },
  merge(a, an, b, bn) {
    let r = str(b, bn);
    try {
      r = JSON.stringify(Object.assign(JSON.parse(str(a, an)), JSON.parse(r)));
    } catch (e) {}
    raw(r);
  },
  out(p, n) {
    R = str(p, n);
  },
  fetch_plan(p, n) {
    fetch(str(p, n))
      .then((r) => r.text())
      .then((t) => {
        raw(t);
        X.tp_plan();
      }, () => {});
  },
};

/// Loads the wasm (next to this file) once; the snippet calls it before replaying queued calls.
export default () =>
  (P = P || fetch(new URL("touchpoint_bg.wasm", import.meta.url))
    .then((r) => r.arrayBuffer())
    .then((b) => WebAssembly.instantiate(b, { tp }))
    .then((m) => {
      X = m.instance.exports;
      addEventListener("pagehide", () => X.tp_hide());
      document.addEventListener("visibilitychange", () => document.visibilityState == "hidden" && X.tp_hide());
    }));

export const load = (k, o) => {
  o = o || {};
  call("load")(k, o.apiHost, o.path, o.cookieDomain, o.flushAt, o.flushInterval, !!o.waitForConsent, !!o.debug, o.devPlan, o.categoryPreferences);
};
export const page = call("page");
export const track = call("track");
export const identify = call("identify");
export const group = call("group");
export const alias = call("alias");
export const reset = call("reset");
export const debug = call("debug");
export const consent = call("consent");
export const setConsent = call("set_consent");
export const flush = call("flush");
export const anonymousId = call("anon");
export const userId = call("user");
export const traits = () => {
  const t = call("traits")();
  return t && JSON.parse(t);
};
export const ready = (f) => {
  try {
    f();
  } catch (e) {}
};
