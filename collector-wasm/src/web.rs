//! The browser bindings (wasm32 only): the analytics.js-shaped API, identity in a first-party cookie +
//! localStorage, the persisted queue, sending and consent.
//!
//! No wasm-bindgen: `js/touchpoint.js` is a hand-written glue (~1 KB gzip) that instantiates this
//! module with a dozen small imports (`tp.*`, declared in `sys`) and calls the `tp_*` exports.
//! Strings go in both directions as UTF-8 in linear memory: JS→Rust through `tp_in`/`tp_push`
//! (pushed onto `ARGS`, arguments tagged with their JS type, see `Args`), Rust→JS as (ptr, len).
//! All decisions (overloads, queue, batching, retry, leases, identity, consent, context) stay here;
//! the glue only touches the browser APIs.

use crate::context::{campaign, cookie, read_cookie, uuid, valid_id};
use crate::json::{Obj, int_part, push_uint, replace_first};
use crate::queue::{
    MAX_BATCH_BYTES, MAX_BATCH_ITEMS, MAX_MESSAGE_BYTES, MAX_QUEUE, Queue, backoff_ms, batch_body,
    drop_front, is_retryable, lease_free, message_id,
};
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

const ANON_KEY: &str = "tp_anon";
const USER_KEY: &str = "tp_user";
const TRAITS_KEY: &str = "tp_traits";
const QUEUE_KEY: &str = "tp_queue";
const LEASE_KEY: &str = "tp_lease";
const CONSENT_KEY: &str = "tp_consent";
const LEASE_MS: u64 = 15_000;
const COOKIE_MAX_AGE: u64 = 365 * 24 * 3600;
const KEEPALIVE_MAX: usize = 64 * 1024;

/// What `tp.get(i)` reads (the order of the getters in js/touchpoint.js).
#[derive(Clone, Copy)]
#[repr(u32)]
enum Env {
    Path,
    Referrer,
    Search,
    Title,
    Href,
    Protocol,
    UserAgent,
    Language,
    TimeZone,
    ScreenWidth,
    ScreenHeight,
    PixelRatio,
    Cookies,
    IsoNow,
}

/// The imports and their safe wrappers.
#[allow(unsafe_code)]
mod sys {
    use super::{ARGS, Env, INBOX};
    use alloc::string::String;
    use alloc::vec::Vec;

    #[link(wasm_import_module = "tp")]
    unsafe extern "C" {
        /// Pushes the string an `Env` getter returns ("" for undefined/null or when it throws).
        fn get(what: u32);
        /// localStorage: op 0 get (pushes the value, 1 if found), 1 set, 2 remove, 3 probe;
        /// returns 0 when it threw (quota, disabled storage).
        fn store(op: u32, k: *const u8, kn: usize, v: *const u8, vn: usize) -> u32;
        fn set_cookie(p: *const u8, n: usize);
        /// 0 console.warn(text), 1 console.log("touchpoint:", JSON.parse(text)), 2 console.log(text).
        fn con(level: u32, p: *const u8, n: usize);
        fn now() -> f64;
        fn random() -> f64;
        /// setTimeout(tp_tick, ms); returns the handle.
        fn timer(ms: u32) -> i32;
        fn untimer(handle: i32);
        /// fetch POST; tp_sent(status) when it settles (0 for a network error).
        fn send(u: *const u8, un: usize, b: *const u8, bn: usize, keepalive: u32);
        fn beacon(u: *const u8, un: usize, b: *const u8, bn: usize) -> u32;
        /// Pushes JSON.stringify(Object.assign(JSON.parse(a), JSON.parse(b))) (b if that throws).
        fn merge(a: *const u8, an: usize, b: *const u8, bn: usize);
        /// Sets the string an export returns to JS.
        fn out(p: *const u8, n: usize);
        #[cfg(feature = "dev-validate")]
        /// fetch(url).text(), then tp_plan() with the text pushed.
        fn fetch_plan(p: *const u8, n: usize);
    }

    /// The last string JS pushed.
    pub fn pop() -> String {
        ARGS.with(Vec::pop).flatten().unwrap_or_default()
    }

    pub fn env(what: Env) -> String {
        unsafe { get(what as u32) };
        pop()
    }

    pub fn storage(op: u32, k: &str, v: &str) -> bool {
        unsafe { store(op, k.as_ptr(), k.len(), v.as_ptr(), v.len()) == 1 }
    }

    pub fn write_cookie(c: &str) {
        unsafe { set_cookie(c.as_ptr(), c.len()) }
    }

    pub fn console(level: u32, s: &str) {
        unsafe { con(level, s.as_ptr(), s.len()) }
    }

    pub fn now_ms() -> f64 {
        unsafe { now() }
    }

    pub fn rand() -> f64 {
        unsafe { random() }
    }

    pub fn set_timer(ms: u32) -> i32 {
        unsafe { timer(ms) }
    }

    pub fn clear_timer(h: i32) {
        unsafe { untimer(h) }
    }

    pub fn post(url: &str, body: &str, keepalive: bool) {
        unsafe {
            send(
                url.as_ptr(),
                url.len(),
                body.as_ptr(),
                body.len(),
                keepalive.into(),
            )
        }
    }

    pub fn send_beacon(url: &str, body: &str) -> bool {
        unsafe { beacon(url.as_ptr(), url.len(), body.as_ptr(), body.len()) == 1 }
    }

    pub fn merge_json(a: &str, b: &str) -> String {
        unsafe { merge(a.as_ptr(), a.len(), b.as_ptr(), b.len()) };
        pop()
    }

    pub fn ret(s: &str) {
        unsafe { out(s.as_ptr(), s.len()) }
    }

    #[cfg(feature = "dev-validate")]
    pub fn load_plan_from(url: &str) {
        unsafe { fetch_plan(url.as_ptr(), url.len()) }
    }

    /// JS asks for `n` bytes to write a UTF-8 string into, then calls `tp_push`.
    #[unsafe(no_mangle)]
    pub extern "C" fn tp_in(n: usize) -> *mut u8 {
        INBOX
            .with(|b| {
                *b = Vec::with_capacity(n);
                b.as_mut_ptr()
            })
            .unwrap_or(core::ptr::null_mut())
    }

    /// JS wrote `n` bytes (TextEncoder.encodeInto: valid UTF-8) at `tp_in`'s pointer.
    #[unsafe(no_mangle)]
    pub extern "C" fn tp_push(n: usize) {
        let mut b = INBOX.with(core::mem::take).unwrap_or_default();
        // SAFETY: JS initialised the first n <= capacity bytes with complete UTF-8 sequences.
        let s = unsafe {
            b.set_len(n.min(b.capacity()));
            String::from_utf8_unchecked(b)
        };
        ARGS.with(|a| a.push(s));
    }
}

/// A single-threaded global (wasm32-unknown-unknown without atomics has exactly one thread).
struct Global<T>(RefCell<T>);

// SAFETY: see above; there is no other thread to share it with.
#[allow(unsafe_code)]
unsafe impl<T> Sync for Global<T> {}

impl<T> Global<T> {
    /// Runs `f` on the value; `None` if it is already borrowed (a reentrant call), which a
    /// `borrow_mut` would turn into a panic.
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        self.0.try_borrow_mut().ok().map(|mut v| f(&mut v))
    }
}

/// Strings JS pushed: the arguments of the export being called, or an import's result.
static ARGS: Global<Vec<String>> = Global(RefCell::new(Vec::new()));
static INBOX: Global<Vec<u8>> = Global(RefCell::new(Vec::new()));
/// The SDK's state (`None` until `load`).
static STATE: Global<Option<State>> = Global(RefCell::new(None));

fn with<R>(f: impl FnOnce(&mut State) -> R) -> Option<R> {
    STATE.with(|s| s.as_mut().map(f)).flatten()
}

/// An export's arguments, each tagged by the glue with its JS type: `s` string, `n` number (as
/// JSON), `t`/`f` boolean, `o` plain object (as JSON), `x` an object JSON.stringify refused,
/// `u` anything else (undefined, null, arrays, functions).
struct Args(Vec<String>);

impl Args {
    fn take() -> Args {
        Args(ARGS.with(core::mem::take).unwrap_or_default())
    }

    fn tag(&self, i: usize) -> u8 {
        self.0
            .get(i)
            .and_then(|a| a.as_bytes().first().copied())
            .unwrap_or(b'u')
    }

    fn text(&self, i: usize) -> &str {
        self.0.get(i).and_then(|a| a.get(1..)).unwrap_or("")
    }

    fn string(&self, i: usize) -> Option<&str> {
        (self.tag(i) == b's').then(|| self.text(i))
    }

    fn number(&self, i: usize) -> Option<i64> {
        if self.tag(i) == b'n' {
            int_part(self.text(i))
        } else {
            None
        }
    }

    fn truthy(&self, i: usize) -> bool {
        self.tag(i) == b't'
    }

    /// A string (or number) id argument.
    fn id(&self, i: usize) -> Option<String> {
        matches!(self.tag(i), b's' | b'n')
            .then(|| self.text(i))
            .filter(|s| !s.is_empty())
            .map(String::from)
    }

    /// JSON text of a plain object argument; empty for anything else.
    fn object(&self, i: usize) -> String {
        match self.tag(i) {
            b'o' => String::from(self.text(i)),
            b'x' => {
                warn("touchpoint: properties/traits are not JSON-serialisable; sent without them");
                String::new()
            }
            _ => String::new(),
        }
    }
}

pub(crate) fn warn(msg: &str) {
    sys::console(0, msg);
}

fn now_ms() -> u64 {
    sys::now_ms() as u64
}

fn new_id() -> String {
    let mut b = [0u8; 16];
    for x in &mut b {
        *x = (sys::rand() * 256.0) as u8;
    }
    uuid(b)
}

fn quoted_anon(id: &str) -> String {
    let mut s = String::from("\"anonymousId\":");
    crate::json::push_str(&mut s, id);
    s
}

struct State {
    write_key: String,
    url: String,
    cookie_domain: Option<String>,
    flush_at: usize,
    flush_interval: u32,
    debug: bool,
    /// Storing and sending allowed (always, unless `waitForConsent` and no `consent(true)` yet).
    consent: bool,
    /// localStorage works (probed when storage is turned on); false means memory only.
    storage: bool,
    mem_queue: Queue,
    anon: String,
    user: Option<String>,
    /// The user's traits as a JSON object.
    traits: String,
    /// Consent per category (`setConsent`) as a JSON object, sent as
    /// `context.consent.categoryPreferences`; empty until set.
    prefs: String,
    /// The part of `context` that does not change while the page lives.
    static_context: String,
    tab: String,
    sending: bool,
    inflight: Vec<String>,
    attempt: u32,
    timer: Option<i32>,
    #[cfg(feature = "dev-validate")]
    plan: Option<touchpoint_tracking_plan::TrackingPlan>,
}

const NO_TRAITS: &str = "{}";

impl State {
    fn persistent(&self) -> bool {
        self.consent && self.storage
    }

    fn read(&self, k: &str) -> Option<String> {
        (self.persistent() && sys::storage(0, k, "")).then(sys::pop)
    }

    fn write(&self, k: &str, v: Option<&str>) -> bool {
        self.persistent()
            && match v {
                Some(v) => sys::storage(1, k, v),
                None => sys::storage(2, k, ""),
            }
    }

    fn load_queue(&self) -> Queue {
        if self.persistent() {
            Queue::parse(&self.read(QUEUE_KEY).unwrap_or_default())
        } else {
            self.mem_queue.clone()
        }
    }

    fn save_queue(&mut self, mut q: Queue) {
        if !self.persistent() {
            self.mem_queue = q;
            return;
        }
        while !self.write(QUEUE_KEY, Some(&q.to_json())) {
            if q.items.is_empty() {
                return;
            }
            // QuotaExceededError: give up the oldest tenth and try again.
            let n = q.items.len().div_ceil(10);
            drop_front(&mut q.items, n);
            warn("touchpoint: storage full, dropped the oldest queued messages");
        }
    }

    fn persist_identity(&self) {
        if !self.consent {
            return;
        }
        self.write(ANON_KEY, Some(&self.anon));
        self.write(USER_KEY, self.user.as_deref());
        let t = &self.traits;
        self.write(TRAITS_KEY, (t.len() > 2).then_some(t.as_str()));
        let secure = sys::env(Env::Protocol) == "https:";
        let c = cookie(
            ANON_KEY,
            &self.anon,
            self.cookie_domain.as_deref(),
            COOKIE_MAX_AGE,
            secure,
        );
        sys::write_cookie(&c);
    }

    /// Turns storage on (after consent): probes localStorage, restores or saves identity, and moves
    /// what waited in memory into the persisted queue.
    fn enable_storage(&mut self) {
        self.storage = sys::storage(3, "", "");
        let cookies = sys::env(Env::Cookies);
        let stored = read_cookie(&cookies, ANON_KEY)
            .map(String::from)
            .or_else(|| self.read(ANON_KEY))
            .filter(|a| valid_id(a));
        if let Some(a) = stored.filter(|a| *a != self.anon) {
            // A returning visitor: what waited for consent carries the remembered id too.
            let (old, new) = (quoted_anon(&self.anon), quoted_anon(&a));
            for m in &mut self.mem_queue.items {
                *m = replace_first(m, &old, &new);
            }
            self.anon = a;
        }
        if self.user.is_none() {
            self.user = self.read(USER_KEY);
        }
        if let Some(t) = self.read(TRAITS_KEY).filter(|t| t.starts_with('{')) {
            self.traits = sys::merge_json(&t, &self.traits);
        }
        if self.prefs.is_empty() {
            // Re-serialised, so whatever another script left there still makes valid JSON.
            let stored = self.read(CONSENT_KEY);
            self.prefs = stored.map_or_else(String::new, |p| sys::merge_json(&p, NO_TRAITS));
        } else {
            self.write(CONSENT_KEY, Some(&self.prefs));
        }
        self.persist_identity();
        let mem = core::mem::take(&mut self.mem_queue);
        if !mem.items.is_empty() {
            let mut q = self.load_queue();
            for m in mem.items {
                q.push(m, MAX_QUEUE);
            }
            self.save_queue(q);
        }
    }

    fn page_context(&self) -> String {
        let search = sys::env(Env::Search);
        let mut s = String::with_capacity(self.static_context.len() + 256);
        s.push_str(&self.static_context);
        s.pop(); // reopen the static object
        s.push_str(",\"page\":");
        page_fields(Obj::new(&mut s), &search).end();
        let c = campaign(&search);
        if !c.is_empty() {
            s.push_str(",\"campaign\":");
            s.push_str(&c);
        }
        if !self.prefs.is_empty() {
            s.push_str(",\"consent\":{\"categoryPreferences\":");
            s.push_str(&self.prefs);
            s.push('}');
        }
        s.push('}');
        s
    }

    /// Builds a message, applying `fill` for the type's own fields.
    fn message(&self, kind: &str, fill: impl for<'a> FnOnce(Obj<'a>) -> Obj<'a>) -> String {
        self.message_for(kind, self.user.as_deref(), fill)
    }

    fn message_for(
        &self,
        kind: &str,
        user: Option<&str>,
        fill: impl for<'a> FnOnce(Obj<'a>) -> Obj<'a>,
    ) -> String {
        let mut s = String::with_capacity(768);
        let ctx = self.page_context();
        let o = Obj::new(&mut s)
            .str("type", kind)
            .str("messageId", &new_id())
            .str("anonymousId", &self.anon)
            .opt_str("userId", user);
        fill(o)
            .raw("context", &ctx)
            .str("timestamp", &sys::env(Env::IsoNow))
            .end();
        s
    }

    fn enqueue(&mut self, msg: String) {
        if msg.len() > MAX_MESSAGE_BYTES {
            warn("touchpoint: message over 32 KB dropped");
            return;
        }
        if self.debug {
            sys::console(1, &msg);
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
        if let Some(t) = self.timer {
            if !replace {
                return;
            }
            sys::clear_timer(t);
        }
        self.timer = Some(sys::set_timer(ms));
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
        let mine = self.read(LEASE_KEY).is_some_and(|l| {
            l.strip_prefix(self.tab.as_str())
                .is_some_and(|r| r.is_empty() || r.starts_with('|'))
        });
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
        let batch = q.items.get(..n).unwrap_or_default();
        self.inflight = batch
            .iter()
            .filter_map(|m| message_id(m).map(String::from))
            .collect();
        self.sending = true;
        Some((
            self.url.clone(),
            batch_body(batch, &sys::env(Env::IsoNow), &self.write_key),
        ))
    }

    fn flush_now(&mut self) {
        self.timer = None;
        if let Some((url, body)) = self.next_batch() {
            // A string body goes as text/plain: a CORS "simple" request, no preflight.
            sys::post(&url, &body, body.len() <= KEEPALIVE_MAX);
        }
    }

    fn sent(&mut self, status: u16) {
        self.sending = false;
        let ids = core::mem::take(&mut self.inflight);
        if self.debug {
            let mut m = String::from("touchpoint: batch status ");
            push_uint(&mut m, status.into());
            sys::console(2, &m);
        }
        if is_retryable(status) {
            self.attempt += 1;
            let delay = backoff_ms(self.attempt, sys::rand());
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
        let mut rest = self.load_queue();
        rest.remove_ids(&self.inflight);
        let mut sent = Vec::new();
        while !rest.items.is_empty() {
            let n = rest.batch_len(MAX_BATCH_ITEMS, MAX_BATCH_BYTES);
            let batch = rest.items.get(..n).unwrap_or_default();
            let body = batch_body(batch, &sys::env(Env::IsoNow), &self.write_key);
            if !sys::send_beacon(&self.url, &body) {
                break;
            }
            sent.extend(batch.iter().filter_map(|m| message_id(m).map(String::from)));
            drop_front(&mut rest.items, n);
        }
        let mut q = self.load_queue();
        q.remove_ids(&sent);
        self.save_queue(q);
        if self.inflight.is_empty() {
            self.release_lease();
        }
    }
}

/// Segment's page fields: path, referrer, search, title, url.
fn page_fields<'a>(o: Obj<'a>, search: &str) -> Obj<'a> {
    o.str("path", &sys::env(Env::Path))
        .str("referrer", &sys::env(Env::Referrer))
        .str("search", search)
        .str("title", &sys::env(Env::Title))
        .str("url", &sys::env(Env::Href))
}

fn static_context() -> String {
    let mut screen = String::new();
    Obj::new(&mut screen)
        .raw("width", &sys::env(Env::ScreenWidth))
        .raw("height", &sys::env(Env::ScreenHeight))
        .raw("density", &sys::env(Env::PixelRatio))
        .end();
    let mut library = String::new();
    Obj::new(&mut library)
        .str("name", "touchpoint-collector")
        .str("version", env!("CARGO_PKG_VERSION"))
        .end();
    let mut s = String::with_capacity(512);
    Obj::new(&mut s)
        .raw("library", &library)
        .str("userAgent", &sys::env(Env::UserAgent))
        .str("locale", &sys::env(Env::Language))
        .str("timezone", &sys::env(Env::TimeZone))
        .raw("screen", &screen)
        .end();
    s
}

/// `touchpoint.load(writeKey, options)`: the glue passes the options `apiHost`, `path`,
/// `cookieDomain`, `flushAt`, `flushInterval` (ms), `waitForConsent`, `debug`, `devPlan` and
/// `categoryPreferences` (as `setConsent`).
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn tp_load() {
    let a = Args::take();
    if with(|_| ()).is_some() {
        return;
    }
    let api_host = a.string(1).unwrap_or("").trim_end_matches('/');
    let mut url = String::from(api_host);
    url.push_str(a.string(2).unwrap_or("/v1/batch"));
    let consent = !a.truthy(6);
    let mut state = State {
        write_key: String::from(a.string(0).unwrap_or("")),
        url,
        cookie_domain: a.string(3).map(String::from),
        flush_at: a.number(4).map_or(20, |n| n.max(1) as usize),
        flush_interval: a
            .number(5)
            .map_or(5000, |n| n.clamp(0, i64::from(u32::MAX)) as u32),
        debug: a.truthy(7),
        consent,
        storage: false,
        mem_queue: Queue::default(),
        anon: new_id(),
        user: None,
        traits: String::from(NO_TRAITS),
        prefs: a.object(9),
        static_context: static_context(),
        tab: new_id(),
        sending: false,
        inflight: Vec::new(),
        attempt: 0,
        timer: None,
        #[cfg(feature = "dev-validate")]
        plan: None,
    };
    if consent {
        state.enable_storage();
    }
    #[cfg(feature = "dev-validate")]
    crate::dev::load_plan(&mut state.plan, a.string(8), state.debug, api_host);
    STATE.with(|s| *s = Some(state));
    // Whatever a previous page left in the persisted queue goes out now.
    with(|s| s.schedule(0, true));
}

/// `touchpoint.page([category], [name], [properties])`.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn tp_page() {
    let a = Args::take();
    let (category, name, props) = match (a.string(0), a.string(1)) {
        (Some(cat), Some(name)) => (Some(cat), Some(name), 2),
        (Some(name), None) => (None, Some(name), 1),
        _ => (None, None, 0),
    };
    let props = a.object(props);
    // Segment's page properties also carry the page fields.
    let mut base = String::new();
    let o = Obj::new(&mut base)
        .opt_str("name", name)
        .opt_str("category", category);
    page_fields(o, &sys::env(Env::Search)).end();
    if props.len() > 2 {
        base.pop();
        base.push(',');
        base.push_str(props.get(1..).unwrap_or("}"));
    }
    with(|s| {
        let m = s.message("page", |o| {
            o.opt_str("category", category)
                .opt_str("name", name)
                .raw("properties", &base)
        });
        s.enqueue(m);
    });
}

/// `touchpoint.track(event, [properties])`.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn tp_track() {
    let a = Args::take();
    let Some(event) = a.string(0).filter(|e| !e.is_empty()) else {
        warn("touchpoint: track needs an event name");
        return;
    };
    let props = a.object(1);
    with(|s| {
        let m = s.message("track", |o| o.str("event", event).raw("properties", &props));
        s.enqueue(m);
    });
}

/// `touchpoint.identify([userId], [traits])`: remembers both (traits merge into the stored ones).
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn tp_identify() {
    let a = Args::take();
    let (user, traits) = match a.id(0) {
        Some(u) => (Some(u), 1),
        None => (None, 0),
    };
    let traits = a.object(traits);
    with(|s| {
        if let Some(u) = user {
            if s.user.as_deref().is_some_and(|old| old != u) {
                s.traits = String::from(NO_TRAITS);
            }
            s.user = Some(u);
        }
        if !traits.is_empty() {
            s.traits = sys::merge_json(&s.traits, &traits);
        }
        s.persist_identity();
        let t = &s.traits;
        let m = s.message("identify", |o| {
            o.raw("traits", if t.len() > 2 { t } else { "" })
        });
        s.enqueue(m);
    });
}

/// `touchpoint.group(groupId, [traits])`.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn tp_group() {
    let a = Args::take();
    let Some(id) = a.id(0) else {
        warn("touchpoint: group needs a groupId");
        return;
    };
    let t = a.object(1);
    with(|s| {
        let m = s.message("group", |o| o.str("groupId", &id).raw("traits", &t));
        s.enqueue(m);
    });
}

/// `touchpoint.alias(userId, [previousId])`: previousId defaults to the current user or anonymous id.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn tp_alias() {
    let a = Args::take();
    let Some(to) = a.id(0) else {
        warn("touchpoint: alias needs a userId");
        return;
    };
    with(|s| {
        let from = a
            .id(1)
            .or_else(|| s.user.clone())
            .unwrap_or_else(|| s.anon.clone());
        let m = s.message_for("alias", Some(&to), |o| o.str("previousId", &from));
        s.enqueue(m);
    });
}

/// `touchpoint.reset()`: forgets the user and traits and starts a new anonymous id.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn tp_reset() {
    Args::take();
    with(|s| {
        s.user = None;
        s.traits = String::from(NO_TRAITS);
        s.anon = new_id();
        s.persist_identity();
    });
}

/// `touchpoint.user().anonymousId()`.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn tp_anon() {
    Args::take();
    with(|s| sys::ret(&s.anon));
}

/// `touchpoint.user().id()`.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn tp_user() {
    Args::take();
    with(|s| s.user.as_deref().map(sys::ret));
}

/// `touchpoint.user().traits()` (JSON; the glue parses it).
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn tp_traits() {
    Args::take();
    with(|s| sys::ret(&s.traits));
}

/// `touchpoint.debug(on)`: logs every message and send result to the console.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn tp_debug() {
    let a = Args::take();
    with(|s| s.debug = a.truthy(0));
}

/// `touchpoint.consent(granted)`: with `waitForConsent`, nothing is stored or sent before
/// `consent(true)`; `consent(false)` drops what waited and stops storing again.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn tp_consent() {
    let granted = Args::take().truthy(0);
    with(|s| {
        if granted && !s.consent {
            s.consent = true;
            s.enable_storage();
            s.schedule(0, true);
        } else if !granted {
            s.consent = false;
            s.storage = false;
            s.mem_queue = Queue::default();
        }
    });
}

/// `touchpoint.setConsent({Advertising: true, Analytics: false, …})`: the consent per category
/// (Segment's `categoryPreferences`, from your CMP) sent with every later message and remembered;
/// a category left out counts as refused. Anything but an object forgets the preferences.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn tp_set_consent() {
    let prefs = Args::take().object(0);
    with(|s| {
        s.write(
            CONSENT_KEY,
            Some(&prefs).filter(|p| !p.is_empty()).map(String::as_str),
        );
        s.prefs = prefs;
    });
}

/// `touchpoint.flush()`: sends what is queued now.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn tp_flush() {
    Args::take();
    with(|s| s.schedule(0, true));
}

/// The flush timer fired.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn tp_tick() {
    with(State::flush_now);
}

/// A send settled with `status` (0: network error).
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn tp_sent(status: u32) {
    with(|s| s.sent(status.min(999) as u16));
}

/// `pagehide`, or `visibilitychange` to hidden.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn tp_hide() {
    with(State::beacon);
}

/// The tracking plan fetched after `load` arrived (dev build).
#[cfg(feature = "dev-validate")]
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn tp_plan() {
    let text = sys::pop();
    let plan = crate::dev::parse(&text);
    with(|s| s.plan = plan);
}

#[cfg(feature = "dev-validate")]
pub(crate) fn fetch_plan(url: &str) {
    sys::load_plan_from(url);
}
