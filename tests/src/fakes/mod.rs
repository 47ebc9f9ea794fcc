//! Local fake servers of the destination APIs (Salesforce, HubSpot, GA4, Resend, Meta, a webhook
//! receiver): small axum apps on 127.0.0.1:0 that check request shapes against each API's documented
//! format, keep what they were sent, and can be told to fail (503 / down) for fault tests.

pub mod ga4;
pub mod hubspot;
pub mod meta;
pub mod resend;
pub mod salesforce;
pub mod webhook;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One request a fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query parameters.
    pub query: HashMap<String, String>,
    /// Headers (lowercase names).
    pub headers: HashMap<String, String>,
    /// Body text.
    pub body: String,
    /// When.
    pub at: Instant,
}

impl Recorded {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Injected faults.
#[derive(Debug, Default)]
pub struct Faults {
    /// While true every request gets 503.
    pub down: bool,
    /// The next N requests get 503.
    pub fail_next: usize,
}

/// What every fake shares: the request log and the faults.
#[derive(Default)]
pub struct Common {
    /// Every request, in arrival order.
    pub requests: Vec<Recorded>,
    /// Faults to inject.
    pub faults: Faults,
}

/// Parses a query string or form body.
pub fn parse_form(s: &str) -> HashMap<String, String> {
    s.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

/// Percent-decodes (and `+` → space).
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?');
                out.push(h);
                i += 3;
                continue;
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A JSON response.
pub fn json(status: u16, body: serde_json::Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response()
}

/// The request parts a fake handler gets.
pub struct Incoming {
    /// Method.
    pub method: Method,
    /// Path.
    pub path: String,
    /// Query.
    pub query: HashMap<String, String>,
    /// Headers.
    pub headers: HeaderMap,
    /// Body text.
    pub body: String,
}

impl Incoming {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// The Bearer token, if any.
    pub fn bearer(&self) -> Option<String> {
        self.header("authorization")
            .and_then(|h| h.strip_prefix("Bearer ").map(str::to_owned))
    }

    /// The body as JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// A running fake: its base URL and state.
pub struct Fake<S> {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Shared state (the fake's records, request log, faults).
    pub state: Arc<Mutex<S>>,
    task: tokio::task::JoinHandle<()>,
}

impl<S> Drop for Fake<S> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Access to the shared part of a fake's state.
pub trait HasCommon {
    /// The shared part.
    fn common(&mut self) -> &mut Common;
}

impl<S: HasCommon + Send + 'static> Fake<S> {
    /// Requests received so far (optionally only those whose path contains `needle`).
    pub fn requests(&self, needle: &str) -> Vec<Recorded> {
        let mut s = self.state.lock().unwrap();
        s.common()
            .requests
            .iter()
            .filter(|r| r.path.contains(needle))
            .cloned()
            .collect()
    }

    /// Makes every request fail with 503 until `set_down(false)`.
    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().common().faults.down = down;
    }

    /// Makes the next `n` requests fail with 503.
    pub fn fail_next(&self, n: usize) {
        self.state.lock().unwrap().common().faults.fail_next = n;
    }

    /// Reads the state.
    pub fn with<R>(&self, f: impl FnOnce(&mut S) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }
}

/// Starts a fake: `handle` answers every request (after recording it and applying faults).
pub async fn start<S, F>(state: impl FnOnce(String) -> S, handle: F) -> Fake<S>
where
    S: HasCommon + Send + 'static,
    F: Fn(&mut S, &Incoming) -> Response + Send + Sync + Clone + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fake");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let state = Arc::new(Mutex::new(state(url.clone())));
    let shared = state.clone();
    let app = Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let shared = shared.clone();
            let handle = handle.clone();
            async move {
                let incoming = Incoming {
                    method: method.clone(),
                    path: uri.path().to_owned(),
                    query: parse_form(uri.query().unwrap_or("")),
                    headers: headers.clone(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                };
                let mut s = shared.lock().unwrap();
                let c = s.common();
                c.requests.push(Recorded {
                    method: method.to_string(),
                    path: incoming.path.clone(),
                    query: incoming.query.clone(),
                    headers: headers
                        .iter()
                        .filter_map(|(k, v)| {
                            Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))
                        })
                        .collect(),
                    body: incoming.body.clone(),
                    at: Instant::now(),
                });
                if c.faults.down {
                    return json(503, serde_json::json!({"message": "service unavailable"}));
                }
                if c.faults.fail_next > 0 {
                    c.faults.fail_next -= 1;
                    return json(503, serde_json::json!({"message": "service unavailable"}));
                }
                handle(&mut s, &incoming)
            }
        },
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Fake { url, state, task }
}

/// Lowercase 64-digit hex (a SHA-256).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
