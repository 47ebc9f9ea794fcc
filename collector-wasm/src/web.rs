//! The browser bindings (wasm32 only): the analytics.js-shaped API exported through wasm-bindgen,
//! identity in a first-party cookie + localStorage, the persisted queue, sending and consent.

use crate::context::{campaign, cookie, read_cookie, uuid, valid_id};
use crate::json::{Obj, push_uint};
use crate::queue::{
    MAX_BATCH_BYTES, MAX_BATCH_ITEMS, MAX_MESSAGE_BYTES, MAX_QUEUE, Queue, backoff_ms, batch_body,
    is_retryable, lease_free, message_id,
};
use js_sys::{Date, Function, JSON, Math, Object, Reflect};
use std::cell::RefCell;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{RequestInit, Storage, console};

const ANON_KEY: &str = "tp_anon";
const USER_KEY: &str = "tp_user";
const TRAITS_KEY: &str = "tp_traits";
const QUEUE_KEY: &str = "tp_queue";
const LEASE_KEY: &str = "tp_lease";
const LEASE_MS: u64 = 15_000;
const COOKIE_MAX_AGE: u64 = 365 * 24 * 3600;
const KEEPALIVE_MAX: usize = 64 * 1024;

struct State {
    write_key: String,
    url: String,
    api_host: String,
    cookie_domain: Option<String>,
    flush_at: usize,
    flush_interval: u32,
    debug: bool,
    /// Storing and sending allowed (always, unless `waitForConsent` and no `consent(true)` yet).
    consent: bool,
    /// localStorage when allowed and working; `None` means memory only.
    storage: Option<Storage>,
    mem_queue: Queue,
    anon: String,
    user: Option<String>,
    traits: Object,
    /// The part of `context` that does not change while the page lives.
    static_context: String,
    tab: String,
    sending: bool,
    inflight: Vec<String>,
    attempt: u32,
    timer: Option<i32>,
    flush_cb: Function,
    #[cfg(feature = "dev-validate")]
    plan: Option<touchpoint_tracking_plan::TrackingPlan>,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

fn with<R>(f: impl FnOnce(&mut State) -> R) -> Option<R> {
    STATE.with(|s| s.borrow_mut().as_mut().map(f))
}

fn window() -> web_sys::Window {
    js_sys::global().unchecked_into()
}

fn get(o: &JsValue, k: &str) -> JsValue {
    Reflect::get(o, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED)
}

fn get_str(o: &JsValue, k: &str) -> String {
    get(o, k).as_string().unwrap_or_default()
}

fn call0(o: &JsValue, k: &str) -> JsValue {
    get(o, k)
        .dyn_into::<Function>()
        .ok()
        .and_then(|f| f.call0(o).ok())
        .unwrap_or(JsValue::UNDEFINED)
}

fn warn(msg: &str) {
    console::warn_1(&JsValue::from_str(msg));
}

fn now_ms() -> u64 {
    Date::now() as u64
}

fn now_iso() -> String {
    String::from(Date::new_0().to_iso_string())
}

fn new_id() -> String {
    let mut b = [0u8; 16];
    for x in &mut b {
        *x = (Math::random() * 256.0) as u8;
    }
    uuid(b)
}

/// JSON text of a plain object argument; empty for anything else (or a value JSON cannot hold).
fn object_json(v: &JsValue) -> String {
    if !v.is_object() || js_sys::Array::is_array(v) {
        return String::new();
    }
    match JSON::stringify(v) {
        Ok(s) => String::from(s),
        Err(_) => {
            warn("touchpoint: properties/traits are not JSON-serialisable; sent without them");
            String::new()
        }
    }
}

fn number_json(v: &JsValue) -> String {
    match v.as_f64() {
        Some(_) => JSON::stringify(v).map(String::from).unwrap_or_default(),
        None => String::new(),
    }
}

/// A string (or number) id argument.
fn id_arg(v: &JsValue) -> Option<String> {
    v.as_string()
        .or_else(|| v.as_f64().map(|_| number_json(v)))
        .filter(|s| !s.is_empty())
}

impl State {
    fn persistent(&self) -> Option<&Storage> {
        if self.consent { self.storage.as_ref() } else { None }
    }

    fn read(&self, k: &str) -> Option<String> {
        self.persistent()?.get_item(k).ok().flatten()
    }

    fn write(&self, k: &str, v: Option<&str>) {
        if let Some(s) = self.persistent() {
            let _ = match v {
                Some(v) => s.set_item(k, v),
                None => s.remove_item(k),
            };
        }
    }

    fn load_queue(&self) -> Queue {
        match self.persistent() {
            Some(_) => Queue::parse(&self.read(QUEUE_KEY).unwrap_or_default()),
            None => self.mem_queue.clone(),
        }
    }

    fn save_queue(&mut self, mut q: Queue) {
        let Some(s) = self.persistent().cloned() else {
            self.mem_queue = q;
            return;
        };
        while s.set_item(QUEUE_KEY, &q.to_json()).is_err() {
            if q.items.is_empty() {
                return;
            }
            // QuotaExceededError: give up the oldest tenth and try again.
            let n = q.items.len().div_ceil(10);
            q.items.drain(..n);
            warn("touchpoint: storage full, dropped the oldest queued messages");
        }
    }

    fn persist_identity(&self) {
        if !self.consent {
            return;
        }
        self.write(ANON_KEY, Some(&self.anon));
        self.write(USER_KEY, self.user.as_deref());
        let traits = object_json(&self.traits);
        self.write(TRAITS_KEY, (traits.len() > 2).then_some(traits.as_str()));
        let secure = get_str(&get(&window(), "location"), "protocol") == "https:";
        let c = cookie(ANON_KEY, &self.anon, self.cookie_domain.as_deref(), COOKIE_MAX_AGE, secure);
        let _ = Reflect::set(&window().document().into(), &"cookie".into(), &c.into());
    }

    /// Turns storage on (after consent): probes localStorage, restores or saves identity, and moves
    /// what waited in memory into the persisted queue.
    fn enable_storage(&mut self, fresh_anon: bool) {
        self.storage = window().local_storage().ok().flatten().filter(|s| {
            s.set_item("tp_probe", "1").is_ok() && s.remove_item("tp_probe").is_ok()
        });
        let cookies = get_str(&window().document().into(), "cookie");
        let stored = read_cookie(&cookies, ANON_KEY)
            .map(String::from)
            .or_else(|| self.read(ANON_KEY))
            .filter(|a| valid_id(a));
        if let (Some(a), false) = (stored, fresh_anon) {
            self.anon = a;
        }
        if self.user.is_none() {
            self.user = self.read(USER_KEY);
        }
        if let Some(t) = self.read(TRAITS_KEY).and_then(|t| JSON::parse(&t).ok()) {
            if t.is_object() {
                self.traits = Object::assign(&t.unchecked_into(), &self.traits);
            }
        }
        self.persist_identity();
        let mem = std::mem::take(&mut self.mem_queue);
        if !mem.items.is_empty() {
            let mut q = self.load_queue();
            for m in mem.items {
                q.push(m, MAX_QUEUE);
            }
            self.save_queue(q);
        }
    }

    fn page_context(&self) -> String {
        let w = window();
        let loc = get(&w, "location");
        let doc: JsValue = w.document().into();
        let search = get_str(&loc, "search");
        let mut s = String::with_capacity(self.static_context.len() + 256);
        s.push_str(&self.static_context);
        s.pop(); // reopen the static object
        s.push_str(",\"page\":");
        Obj::new(&mut s)
            .str("path", &get_str(&loc, "pathname"))
            .str("referrer", &get_str(&doc, "referrer"))
            .str("search", &search)
            .str("title", &get_str(&doc, "title"))
            .str("url", &get_str(&loc, "href"))
            .end();
        let c = campaign(&search);
        if !c.is_empty() {
            s.push_str(",\"campaign\":");
            s.push_str(&c);
        }
        s.push('}');
        s
    }

    /// Builds a message, applying `fill` for the type's own fields.
    fn message(&self, kind: &str, fill: impl for<'a> FnOnce(Obj<'a>) -> Obj<'a>) -> String {
        let mut s = String::with_capacity(768);
        let ctx = self.page_context();
        let o = Obj::new(&mut s)
            .str("type", kind)
            .str("messageId", &new_id())
            .str("anonymousId", &self.anon)
            .opt_str("userId", self.user.as_deref());
        fill(o)
            .raw("context", &ctx)
            .str("timestamp", &now_iso())
            .end();
        s
    }

    fn enqueue(&mut self, msg: String) {
        if msg.len() > MAX_MESSAGE_BYTES {
            warn("touchpoint: message over 32 KB dropped");
            return;
        }
        if self.debug {
            console::log_2(&"touchpoint:".into(), &JSON::parse(&msg).unwrap_or(JsValue::NULL));
        }
        #[cfg(feature = "dev-validate")]
        if let Some(plan) = &self.plan {
            crate::dev::warn_violations(plan, &msg);
        }
        let mut q = self.load_queue();
        if q.push(msg, MAX_QUEUE) > 0 {
            warn("touchpoint: queue full, dropped the oldest message");
        }
        let n = q.items.len();
        self.save_queue(q);
        if self.consent {
            if n >= self.flush_at {
                self.schedule(0, true);
            } else {
                self.schedule(self.flush_interval, false);
            }
        }
    }

    fn schedule(&mut self, ms: u32, replace: bool) {
        let w = window();
        if let Some(t) = self.timer {
            if !replace {
                return;
            }
            w.clear_timeout_with_handle(t);
        }
        self.timer = w
            .set_timeout_with_callback_and_timeout_and_arguments_0(&self.flush_cb, ms as i32)
            .ok();
    }

    fn take_lease(&self) -> bool {
        let now = now_ms();
        if !lease_free(self.read(LEASE_KEY).as_deref(), &self.tab, now) {
            return false;
        }
        let mut v = self.tab.clone();
        v.push('|');
        push_uint(&mut v, now + LEASE_MS);
        self.write(LEASE_KEY, Some(&v));
        // Another tab may have written between our read and write: the last writer wins.
        self.read(LEASE_KEY).is_none_or(|l| l == v)
    }

    fn release_lease(&self) {
        let mine = self
            .read(LEASE_KEY)
            .is_some_and(|l| l.split('|').next() == Some(self.tab.as_str()));
        if mine {
            self.write(LEASE_KEY, None);
        }
    }

    /// The next batch to send as (url, body), marking it in flight.
    fn next_batch(&mut self) -> Option<(String, String)> {
        if !self.consent || self.sending {
            return None;
        }
        let q = self.load_queue();
        if q.items.is_empty() {
            return None;
        }
        if !self.take_lease() {
            // Another tab is sending the shared queue; look again later.
            self.schedule(self.flush_interval.max(1000), false);
            return None;
        }
        let n = q.batch_len(MAX_BATCH_ITEMS, MAX_BATCH_BYTES);
        let batch = &q.items[..n];
        self.inflight = batch
            .iter()
            .filter_map(|m| message_id(m).map(String::from))
            .collect();
        self.sending = true;
        Some((self.url.clone(), batch_body(batch, &now_iso(), &self.write_key)))
    }

    fn sent(&mut self, status: u16) {
        self.sending = false;
        let ids = std::mem::take(&mut self.inflight);
        if self.debug {
            console::log_2(&"touchpoint: batch status".into(), &status.into());
        }
        if is_retryable(status) {
            self.attempt += 1;
            let delay = backoff_ms(self.attempt, Math::random());
            self.schedule(delay, true);
            return;
        }
        if !(200..300).contains(&status) {
            warn("touchpoint: the server refused a batch; its messages are dropped");
        }
        self.attempt = 0;
        let mut q = self.load_queue();
        q.remove_ids(&ids);
        let left = q.items.len();
        self.save_queue(q);
        if left == 0 {
            self.release_lease();
        } else if left >= self.flush_at {
            self.schedule(0, true);
        } else {
            self.schedule(self.flush_interval, false);
        }
    }

    /// Page is going away: hand everything not already in flight to `navigator.sendBeacon`.
    fn beacon(&mut self) {
        if !self.consent || !self.take_lease() {
            return;
        }
        let nav = window().navigator();
        let mut rest = self.load_queue();
        rest.items
            .retain(|m| !message_id(m).is_some_and(|id| self.inflight.iter().any(|x| x == id)));
        let mut sent = Vec::new();
        while !rest.items.is_empty() {
            let n = rest.batch_len(MAX_BATCH_ITEMS, MAX_BATCH_BYTES);
            let batch: Vec<String> = rest.items.drain(..n).collect();
            let body = batch_body(&batch, &now_iso(), &self.write_key);
            if !nav.send_beacon_with_opt_str(&self.url, Some(&body)).unwrap_or(false) {
                break;
            }
            sent.extend(batch.iter().filter_map(|m| message_id(m).map(String::from)));
        }
        let mut q = self.load_queue();
        q.remove_ids(&sent);
        self.save_queue(q);
        if self.inflight.is_empty() {
            self.release_lease();
        }
    }
}

fn flush_now() {
    let Some(Some((url, body))) = with(|s| {
        s.timer = None;
        s.next_batch()
    }) else {
        return;
    };
    let init = RequestInit::new();
    init.set_method("POST");
    // A string body goes as text/plain: a CORS "simple" request, no preflight.
    init.set_body(&JsValue::from_str(&body));
    init.set_keepalive(body.len() <= KEEPALIVE_MAX);
    let ok = Closure::once_into_js(|resp: JsValue| {
        let status = get(&resp, "status").as_f64().unwrap_or(0.0) as u16;
        with(|s| s.sent(status));
    });
    let err = Closure::once_into_js(|_: JsValue| {
        with(|s| s.sent(0));
    });
    let _ = window()
        .fetch_with_str_and_init(&url, &init)
        .then2(ok.unchecked_ref(), err.unchecked_ref());
}

fn static_context() -> String {
    let w = window();
    let nav = get(&w, "navigator");
    let scr = get(&w, "screen");
    let intl = get(&js_sys::global(), "Intl");
    let dtf = get(&intl, "DateTimeFormat")
        .dyn_into::<Function>()
        .ok()
        .and_then(|f| Reflect::construct(&f, &js_sys::Array::new()).ok())
        .unwrap_or(JsValue::UNDEFINED);
    let tz = get_str(&call0(&dtf, "resolvedOptions"), "timeZone");
    let mut screen = String::new();
    Obj::new(&mut screen)
        .raw("width", &number_json(&get(&scr, "width")))
        .raw("height", &number_json(&get(&scr, "height")))
        .raw("density", &number_json(&get(&w, "devicePixelRatio")))
        .end();
    let mut library = String::new();
    Obj::new(&mut library)
        .str("name", "touchpoint-collector")
        .str("version", env!("CARGO_PKG_VERSION"))
        .end();
    let mut s = String::with_capacity(512);
    Obj::new(&mut s)
        .raw("library", &library)
        .str("userAgent", &get_str(&nav, "userAgent"))
        .str("locale", &get_str(&nav, "language"))
        .str("timezone", &tz)
        .raw("screen", &screen)
        .end();
    s
}

fn on(target: &web_sys::EventTarget, event: &str, f: impl FnMut(JsValue) + 'static) {
    let cb = Closure::<dyn FnMut(JsValue)>::new(f).into_js_value();
    let _ = target.add_event_listener_with_callback(event, cb.unchecked_ref());
}

/// `touchpoint.load(writeKey, options)`: options `apiHost`, `path`, `cookieDomain`, `flushAt`,
/// `flushInterval` (ms), `waitForConsent`, `debug`, and in the dev build `devPlan`.
#[wasm_bindgen]
pub fn load(write_key: String, options: JsValue) {
    if with(|_| ()).is_some() {
        return;
    }
    let opt = |k: &str| get(&options, k);
    let api_host = get_str(&options, "apiHost").trim_end_matches('/').to_owned();
    let mut url = api_host.clone();
    match opt("path").as_string() {
        Some(p) => url.push_str(&p),
        None => url.push_str("/v1/batch"),
    }
    let consent = !opt("waitForConsent").is_truthy();
    let flush_cb = Closure::<dyn FnMut()>::new(flush_now)
        .into_js_value()
        .unchecked_into();
    let mut state = State {
        write_key,
        url,
        api_host,
        cookie_domain: opt("cookieDomain").as_string(),
        flush_at: opt("flushAt").as_f64().map_or(20, |n| n.max(1.0) as usize),
        flush_interval: opt("flushInterval").as_f64().map_or(5000, |n| n.max(0.0) as u32),
        debug: opt("debug").is_truthy(),
        consent,
        storage: None,
        mem_queue: Queue::default(),
        anon: new_id(),
        user: None,
        traits: Object::new(),
        static_context: static_context(),
        tab: new_id(),
        sending: false,
        inflight: Vec::new(),
        attempt: 0,
        timer: None,
        flush_cb,
        #[cfg(feature = "dev-validate")]
        plan: None,
    };
    if consent {
        state.enable_storage(false);
    }
    #[cfg(feature = "dev-validate")]
    crate::dev::load_plan(&mut state.plan, &opt("devPlan"), state.debug, &state.api_host);
    STATE.with(|s| *s.borrow_mut() = Some(state));
    let w = window();
    on(&w, "pagehide", |_| {
        with(State::beacon);
    });
    on(&w.document().into(), "visibilitychange", |_| {
        if get_str(&window().document().into(), "visibilityState") == "hidden" {
            with(State::beacon);
        }
    });
    // Whatever a previous page left in the persisted queue goes out now.
    with(|s| s.schedule(0, true));
}

/// `touchpoint.page([category], [name], [properties])`.
#[wasm_bindgen]
pub fn page(a: JsValue, b: JsValue, c: JsValue) {
    let (category, name, props) = match (a.as_string(), b.as_string()) {
        (Some(cat), Some(name)) => (Some(cat), Some(name), c),
        (Some(name), None) => (None, Some(name), b),
        _ => (None, None, a),
    };
    let mut props = object_json(&props);
    // Segment's page properties also carry the page fields.
    let w = window();
    let loc = get(&w, "location");
    let doc: JsValue = w.document().into();
    let mut base = String::new();
    Obj::new(&mut base)
        .str("path", &get_str(&loc, "pathname"))
        .str("referrer", &get_str(&doc, "referrer"))
        .str("search", &get_str(&loc, "search"))
        .str("title", &get_str(&doc, "title"))
        .str("url", &get_str(&loc, "href"))
        .end();
    if props.len() > 2 {
        base.pop();
        base.push(',');
        base.push_str(&props[1..]);
    }
    props = base;
    with(|s| {
        let m = s.message("page", |o| {
            o.opt_str("category", category.as_deref())
                .opt_str("name", name.as_deref())
                .raw("properties", &props)
        });
        s.enqueue(m);
    });
}

/// `touchpoint.track(event, [properties])`.
#[wasm_bindgen]
pub fn track(event: JsValue, properties: JsValue) {
    let Some(event) = event.as_string().filter(|e| !e.is_empty()) else {
        warn("touchpoint: track needs an event name");
        return;
    };
    let props = object_json(&properties);
    with(|s| {
        let m = s.message("track", |o| {
            o.str("event", &event).raw("properties", &props)
        });
        s.enqueue(m);
    });
}

/// `touchpoint.identify([userId], [traits])`: remembers both (traits merge into the stored ones).
#[wasm_bindgen]
pub fn identify(a: JsValue, b: JsValue) {
    let (user, traits) = match id_arg(&a) {
        Some(u) => (Some(u), b),
        None => (None, a),
    };
    with(|s| {
        if let Some(u) = user {
            if s.user.as_deref().is_some_and(|old| old != u) {
                s.traits = Object::new();
            }
            s.user = Some(u);
        }
        if traits.is_object() {
            s.traits = Object::assign(&s.traits, &traits.unchecked_into());
        }
        s.persist_identity();
        let t = object_json(&s.traits);
        let m = s.message("identify", |o| o.raw("traits", if t.len() > 2 { &t } else { "" }));
        s.enqueue(m);
    });
}

/// `touchpoint.group(groupId, [traits])`.
#[wasm_bindgen]
pub fn group(group_id: JsValue, traits: JsValue) {
    let Some(id) = id_arg(&group_id) else {
        warn("touchpoint: group needs a groupId");
        return;
    };
    let t = object_json(&traits);
    with(|s| {
        let m = s.message("group", |o| o.str("groupId", &id).raw("traits", &t));
        s.enqueue(m);
    });
}

/// `touchpoint.alias(userId, [previousId])`: previousId defaults to the current user or anonymous id.
#[wasm_bindgen]
pub fn alias(user_id: JsValue, previous_id: JsValue) {
    let Some(to) = id_arg(&user_id) else {
        warn("touchpoint: alias needs a userId");
        return;
    };
    with(|s| {
        let from = id_arg(&previous_id)
            .or_else(|| s.user.clone())
            .unwrap_or_else(|| s.anon.clone());
        let mut m = s.message("alias", |o| o.str("previousId", &from));
        // alias names the new id as userId.
        if let Some(i) = m.find(",\"userId\":") {
            let end = m[i + 10..].find("\",").map_or(i, |e| i + 10 + e + 1);
            m.replace_range(i..end, "");
        }
        m.insert_str(m.len() - 1, "");
        let mut uid = String::from(",\"userId\":");
        crate::json::push_str(&mut uid, &to);
        let at = m.find(",\"previousId\"").unwrap_or(m.len() - 1);
        m.insert_str(at, &uid);
        s.enqueue(m);
    });
}

/// `touchpoint.reset()`: forgets the user and traits and starts a new anonymous id.
#[wasm_bindgen]
pub fn reset() {
    with(|s| {
        s.user = None;
        s.traits = Object::new();
        s.anon = new_id();
        s.persist_identity();
    });
}

/// `touchpoint.user().anonymousId()`.
#[wasm_bindgen(js_name = anonymousId)]
pub fn anonymous_id() -> Option<String> {
    with(|s| s.anon.clone())
}

/// `touchpoint.user().id()`.
#[wasm_bindgen(js_name = userId)]
pub fn user_id() -> Option<String> {
    with(|s| s.user.clone()).flatten()
}

/// `touchpoint.user().traits()`.
#[wasm_bindgen]
pub fn traits() -> JsValue {
    with(|s| s.traits.clone().into()).unwrap_or(JsValue::NULL)
}

/// `touchpoint.ready(callback)`: calls back once loaded (at once when already loaded).
#[wasm_bindgen]
pub fn ready(cb: JsValue) {
    if let Ok(f) = cb.dyn_into::<Function>() {
        let _ = f.call0(&JsValue::NULL);
    }
}

/// `touchpoint.debug(on)`: logs every message and send result to the console.
#[wasm_bindgen]
pub fn debug(on: bool) {
    with(|s| s.debug = on);
}

/// `touchpoint.consent(granted)`: with `waitForConsent`, nothing is stored or sent before
/// `consent(true)`; `consent(false)` drops what waited and stops storing again.
#[wasm_bindgen]
pub fn consent(granted: bool) {
    with(|s| {
        if granted && !s.consent {
            s.consent = true;
            s.enable_storage(true);
            s.schedule(0, true);
        } else if !granted {
            s.consent = false;
            s.storage = None;
            s.mem_queue = Queue::default();
        }
    });
}

/// `touchpoint.flush()`: sends what is queued now.
#[wasm_bindgen]
pub fn flush() {
    with(|s| s.schedule(0, true));
}
