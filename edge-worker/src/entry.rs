//! The Workers runtime glue (wasm32 only): the `fetch` handler (collection, SDK files, CORS) and the
//! `queue` handler (retries of batches core could not take). All decisions are made by the pure
//! modules; this file moves bytes between them and the runtime.

use crate::collect::{self, Geo, Incoming, Prepared};
use crate::config::EdgeConfig;
use crate::cookie::{self, CookieState};
use crate::cors::{self, CorsAnswer};
use crate::delivery::{self, Answer};
use crate::route::{self, Route};
use crate::sign;
use futures_util::future::{Either, select};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;
use wasm_bindgen::JsValue;
use worker::{
    AbortController, Context, Date, Delay, Env, Fetch, Headers, MessageBatch, MessageExt, Method,
    QueueRetryOptionsBuilder, Request, RequestInit, Response, Result, console_error, console_log,
    console_warn, event,
};

/// The Queue producer binding (`[[queues.producers]]` in wrangler.toml).
const QUEUE_BINDING: &str = "RETRY_QUEUE";
/// The KV namespace binding: SDK files (stale-if-error) and queued batches too big for a message.
const KV_BINDING: &str = "EDGE_KV";
/// Largest batch carried inside a Queue message (Queue messages are limited to 128 KB).
const INLINE_MAX: usize = 96 * 1024;
/// How long spilled batches and cached SDK files are kept in KV.
const SPILL_TTL_SECS: u64 = 4 * 24 * 60 * 60;
const SDK_TTL_SECS: u64 = 24 * 60 * 60;

/// A batch waiting in the Queue: its exact JSON (or the KV key holding it) and when it was first
/// queued. A plain struct: Queue bodies must not be `serde_json::Value` (maps arrive as `{}`).
#[derive(Debug, Serialize, Deserialize)]
struct RetryBatch {
    /// The batch JSON as first sent to core.
    #[serde(default)]
    body: Option<String>,
    /// The KV key of a batch too large to travel inline.
    #[serde(default)]
    kv_key: Option<String>,
    /// Unix milliseconds when it was first queued.
    first_queued_ms: f64,
    /// How many messages it holds (for logs).
    messages: u32,
}

fn now_ms() -> i64 {
    i64::try_from(Date::now().as_millis()).unwrap_or(i64::MAX)
}

fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|v| v.to_string())
}

fn secret(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .ok()
        .map(|s| s.to_string())
        .filter(|s| !s.is_empty())
}

fn json_response(status: u16, body: &Value) -> Result<Response> {
    Ok(Response::from_json(body)?.with_status(status))
}

fn error_response(status: u16, message: &str) -> Result<Response> {
    json_response(status, &json!({"success": false, "error": message}))
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let config = match EdgeConfig::from_vars(|n| var(&env, n)) {
        Ok(c) => c,
        Err(e) => {
            console_error!("edge.config_error error={e}");
            return error_response(500, &format!("edge worker misconfigured: {e}"));
        }
    };
    let origin = req.headers().get("origin")?;
    let own = req.url()?;
    let method = route::Method::parse(req.method().as_ref());
    let mut response = match route::route(&config.collect_path, method, &req.path()) {
        Route::Batch => collect_request(req, &env, &config, None).await?,
        Route::Single(kind) => collect_request(req, &env, &config, Some(kind)).await?,
        Route::Sdk(file) => serve_sdk(&env, &config, &file, method).await?,
        Route::Settings(key) => {
            serve_settings(
                &env,
                &config,
                &key,
                &own.origin().ascii_serialization(),
                method,
            )
            .await?
        }
        Route::Preflight => {
            let r = Response::empty()?.with_status(204);
            let h = r.headers();
            h.set("access-control-allow-methods", "GET, HEAD, POST, OPTIONS")?;
            h.set(
                "access-control-allow-headers",
                "content-type, authorization, content-encoding, x-retry-count",
            )?;
            h.set("access-control-max-age", "86400")?;
            r
        }
        Route::MethodNotAllowed => error_response(405, "method not allowed")?,
        Route::NotFound => error_response(404, "not found")?,
    };
    if let Some(origin) = origin {
        // The site itself and the listed origins (a sibling subdomain running the SDK) get their
        // origin echoed with credentials, so the cookie works; any other origin gets nothing.
        let h = response.headers_mut();
        h.append("vary", "Origin")?;
        let own_origin = own.origin().ascii_serialization();
        match cors::answer(&origin, &own_origin, &config.allowed_origins) {
            CorsAnswer::Allow(origin) => {
                h.set("access-control-allow-origin", &origin)?;
                h.set("access-control-allow-credentials", "true")?;
            }
            CorsAnswer::Deny => {
                console_log!("edge.cors_refused origin={origin}");
            }
        }
    }
    Ok(response)
}

/// `request.cf` geolocation, read defensively (absent in local runs without `cf`).
fn geo_of(req: &Request) -> Geo {
    let Ok(cf) = js_sys::Reflect::get(req.inner(), &JsValue::from_str("cf")) else {
        return Geo::default();
    };
    if !cf.is_object() {
        return Geo::default();
    }
    let field = |name: &str| {
        js_sys::Reflect::get(&cf, &JsValue::from_str(name))
            .ok()
            .and_then(|v| v.as_string())
            .filter(|s| !s.is_empty())
    };
    Geo {
        country: field("country"),
        region: field("region"),
        city: field("city"),
        timezone: field("timezone"),
    }
}

async fn collect_request(
    mut req: Request,
    env: &Env,
    config: &EdgeConfig,
    kind: Option<touchpoint_tracking_plan::MessageType>,
) -> Result<Response> {
    let limit = if kind.is_some() {
        collect::MAX_MESSAGE_BYTES
    } else {
        collect::MAX_BATCH_BYTES
    };
    let declared: Option<usize> = req
        .headers()
        .get("content-length")?
        .and_then(|v| v.trim().parse().ok());
    if let Some(size) = declared.filter(|s| *s > limit) {
        let e = collect::CollectError::TooLarge { size, limit };
        return json_response(e.status(), &e.body());
    }
    if req
        .headers()
        .get("content-encoding")?
        .is_some_and(|e| !e.trim().is_empty() && !e.eq_ignore_ascii_case("identity"))
    {
        return error_response(
            415,
            "send uncompressed JSON to the edge (Content-Encoding is not supported here)",
        );
    }
    let Some(edge_secret) = secret(env, "EDGE_SECRET") else {
        console_error!("edge.config_error error=EDGE_SECRET is not set");
        return error_response(500, "edge worker misconfigured: EDGE_SECRET is not set");
    };
    let cookie_secret = secret(env, "COOKIE_SECRET");
    let body = req.bytes().await?;
    let headers = req.headers();
    let cookie_state = match &cookie_secret {
        Some(s) => cookie::read(s.as_bytes(), headers.get("cookie")?.as_deref()),
        None => CookieState::Absent,
    };
    let authorization = headers.get("authorization")?;
    let client_ip = headers.get("cf-connecting-ip")?;
    let user_agent = headers.get("user-agent")?;
    let geo = geo_of(&req);
    let now = now_ms();
    let incoming = Incoming {
        body: &body,
        kind,
        authorization: authorization.as_deref(),
        cookie: &cookie_state,
        client_ip: client_ip.as_deref(),
        user_agent: user_agent.as_deref(),
        geo: &geo,
        ip_privacy: config.ip_privacy,
        now_ms: now,
    };
    let prepared = match collect::prepare(&incoming, &crate::PLAN) {
        Ok(p) => p,
        Err(e) => {
            console_log!("edge.rejected status={} error={e}", e.status());
            return json_response(e.status(), &e.body());
        }
    };
    console_log!(
        "edge.received messages={} accepted={} flagged={} blocked={} rejected={} bots={}",
        prepared.message_ids.len(),
        prepared.accepted,
        prepared.flagged,
        prepared.blocked,
        prepared.rejected.len(),
        prepared.bots
    );
    let mut response = match send_to_core(config, edge_secret.as_bytes(), &prepared.body).await {
        (Answer::Delivered, _, _) => {
            console_log!("edge.delivered messages={}", prepared.message_ids.len());
            json_response(200, &prepared.summary("core"))?
        }
        (Answer::Refused, status, text) => {
            console_warn!("edge.refused status={status:?} body={text}");
            let body = serde_json::from_str::<Value>(&text)
                .unwrap_or_else(|_| json!({"success": false, "error": text}));
            json_response(status.unwrap_or(400), &body)?
        }
        (Answer::Retry, status, why) => match enqueue(env, &prepared, now).await {
            Ok(()) => {
                console_warn!(
                    "edge.queued messages={} core_status={status:?} reason={why}",
                    prepared.message_ids.len()
                );
                json_response(202, &prepared.summary("queued"))?
            }
            Err(e) => {
                console_error!("edge.dropped core_status={status:?} reason={why} queue_error={e}");
                let r = error_response(503, "temporarily unable to accept messages; retry later")?;
                r.headers().set("retry-after", "5")?;
                r
            }
        },
    };
    set_cookie(
        &mut response,
        &cookie_state,
        cookie_secret.as_deref(),
        &prepared,
        config,
    )?;
    Ok(response)
}

fn set_cookie(
    response: &mut Response,
    state: &CookieState,
    secret: Option<&str>,
    prepared: &Prepared,
    config: &EdgeConfig,
) -> Result<()> {
    let h = response.headers_mut();
    let Some(secret) = secret else {
        return Ok(());
    };
    let label = match state {
        CookieState::Absent => "absent",
        CookieState::Valid(_) => "valid",
        CookieState::Forged => {
            console_warn!(
                "edge.cookie_forged replaced={}",
                prepared.anonymous_id.is_some()
            );
            "forged"
        }
    };
    h.set("x-touchpoint-cookie", label)?;
    if let Some(id) = &prepared.anonymous_id {
        h.append(
            "set-cookie",
            &cookie::set_cookie(secret.as_bytes(), id, config.cookie_domain.as_deref()),
        )?;
    }
    Ok(())
}

/// POSTs a signed batch to core within the configured timeout: the answer, core's status (if it
/// answered) and its body or the failure's reason.
async fn send_to_core(
    config: &EdgeConfig,
    secret: &[u8],
    body: &[u8],
) -> (Answer, Option<u16>, String) {
    match try_send(config, secret, body).await {
        Ok(Some((status, text))) => (delivery::classify(Some(status), &text), Some(status), text),
        Ok(None) => (
            Answer::Retry,
            None,
            format!("no answer within {} ms", config.core_timeout_ms),
        ),
        Err(e) => (Answer::Retry, None, e.to_string()),
    }
}

async fn try_send(
    config: &EdgeConfig,
    secret: &[u8],
    body: &[u8],
) -> Result<Option<(u16, String)>> {
    let ts = now_ms() / 1000;
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set(sign::TIMESTAMP_HEADER, &ts.to_string())?;
    headers.set(sign::SIGNATURE_HEADER, &sign::sign(secret, ts, body))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(js_sys::Uint8Array::from(body).into()));
    let request = Request::new_with_init(&config.edge_batch_url(), &init)?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let attempt = async {
        let mut resp = Fetch::Request(request).send_with_signal(&signal).await?;
        let status = resp.status_code();
        let text = resp.text().await.unwrap_or_default();
        Ok::<_, worker::Error>((status, text))
    };
    let timeout = Delay::from(Duration::from_millis(config.core_timeout_ms));
    match select(Box::pin(attempt), Box::pin(timeout)).await {
        Either::Left((answer, _)) => answer.map(Some),
        Either::Right(((), _)) => {
            controller.abort();
            Ok(None)
        }
    }
}

async fn enqueue(env: &Env, prepared: &Prepared, now: i64) -> Result<()> {
    let text = String::from_utf8(prepared.body.clone())
        .map_err(|e| worker::Error::RustError(e.to_string()))?;
    let messages = u32::try_from(prepared.message_ids.len()).unwrap_or(u32::MAX);
    #[allow(clippy::cast_precision_loss)]
    let first_queued_ms = now as f64;
    let batch = if text.len() <= INLINE_MAX {
        RetryBatch {
            body: Some(text),
            kv_key: None,
            first_queued_ms,
            messages,
        }
    } else {
        let key = format!(
            "retry/{}",
            &hex::encode(Sha256::digest(text.as_bytes()))[..32]
        );
        env.kv(KV_BINDING)?
            .put_bytes(&key, text.as_bytes())?
            .expiration_ttl(SPILL_TTL_SECS)
            .execute()
            .await
            .map_err(|e| worker::Error::RustError(e.to_string()))?;
        RetryBatch {
            body: None,
            kv_key: Some(key),
            first_queued_ms,
            messages,
        }
    };
    env.queue(QUEUE_BINDING)?.send(batch).await
}

#[event(queue)]
async fn queue(batch: MessageBatch<RetryBatch>, env: Env, _ctx: Context) -> Result<()> {
    let min_delay: u32 = var(&env, "RETRY_MIN_DELAY_SECONDS")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(10);
    let (config, secret) = match (
        EdgeConfig::from_vars(|n| var(&env, n)),
        secret(&env, "EDGE_SECRET"),
    ) {
        (Ok(c), Some(s)) => (c, s),
        _ => {
            console_error!("edge.config_error in the queue consumer; retrying the whole batch");
            batch.retry_all_with_options(
                &QueueRetryOptionsBuilder::new()
                    .with_delay_seconds(60)
                    .build(),
            );
            return Ok(());
        }
    };
    for message in batch.messages()? {
        let retry = message.body();
        let body = match (&retry.body, &retry.kv_key) {
            (Some(b), _) => b.clone().into_bytes(),
            (None, Some(key)) => match env.kv(KV_BINDING)?.get(key).bytes().await {
                Ok(Some(b)) => b,
                Ok(None) => {
                    console_error!("edge.dropped spilled batch {key} expired from KV");
                    message.ack();
                    continue;
                }
                Err(e) => {
                    console_warn!("edge.retry kv read failed: {e}");
                    message.retry_with_options(
                        &QueueRetryOptionsBuilder::new()
                            .with_delay_seconds(min_delay)
                            .build(),
                    );
                    continue;
                }
            },
            (None, None) => {
                console_error!("edge.dropped empty queue message");
                message.ack();
                continue;
            }
        };
        // Re-signed with a fresh timestamp on every attempt (core's replay window is 5 minutes).
        match send_to_core(&config, secret.as_bytes(), &body).await {
            (Answer::Delivered, _, _) => {
                console_log!("edge.delivered from_queue messages={}", retry.messages);
                if let Some(key) = &retry.kv_key
                    && let Ok(kv) = env.kv(KV_BINDING)
                {
                    let _ = kv.delete(key).await;
                }
                message.ack();
            }
            (Answer::Refused, status, text) => {
                console_error!("edge.refused from_queue status={status:?} body={text}");
                message.ack();
            }
            (Answer::Retry, status, why) => {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let age_secs = ((now_ms() as f64 - retry.first_queued_ms) / 1000.0).max(0.0) as u64;
                let delay = delivery::backoff_secs(age_secs, min_delay);
                console_warn!(
                    "edge.retry from_queue core_status={status:?} reason={why} delay_s={delay}"
                );
                message.retry_with_options(
                    &QueueRetryOptionsBuilder::new()
                        .with_delay_seconds(delay)
                        .build(),
                );
            }
        }
    }
    Ok(())
}

/// `GET {path}/v1/projects/{key}/settings`: core's Segment settings document pointed at this
/// worker's path; kept in KV so analytics.js still loads (stale) while core is unreachable.
async fn serve_settings(
    env: &Env,
    config: &EdgeConfig,
    key: &str,
    origin: &str,
    method: route::Method,
) -> Result<Response> {
    let kv_key = format!("settings/{key}");
    let kv = env.kv(KV_BINDING).ok();
    let from_core = async {
        let mut resp = Fetch::Url(config.settings_url(key).parse()?).send().await?;
        let status = resp.status_code();
        let bytes = resp.bytes().await?;
        Ok::<_, worker::Error>((status, bytes))
    };
    let timeout = Delay::from(Duration::from_millis(config.core_timeout_ms));
    let answer = match select(Box::pin(from_core), Box::pin(timeout)).await {
        Either::Left((Ok(a), _)) => Some(a),
        Either::Left((Err(e), _)) => {
            console_warn!("edge.settings core unreachable: {e}");
            None
        }
        Either::Right(_) => None,
    };
    let (core_doc, cache) = match answer {
        Some((200, bytes)) => {
            if let Some(kv) = &kv
                && let Ok(put) = kv.put_bytes(&kv_key, &bytes)
            {
                let _ = put.expiration_ttl(SDK_TTL_SECS).execute().await;
            }
            (bytes, "public, max-age=60")
        }
        Some((status, bytes)) if status < 500 => {
            let r = Response::from_bytes(bytes)?.with_status(status);
            r.headers().set("content-type", "application/json")?;
            r.headers().set("cache-control", "no-store")?;
            return Ok(r);
        }
        _ => match kv.as_ref().map(|kv| kv.get(&kv_key).bytes()) {
            Some(get) => match get.await {
                Ok(Some(bytes)) => (bytes, "public, max-age=30"),
                _ => return error_response(503, "settings are temporarily unavailable"),
            },
            None => return error_response(503, "settings are temporarily unavailable"),
        },
    };
    let body = match crate::settings::point_at_edge(&core_doc, origin, &config.collect_path) {
        Ok(b) => b,
        Err(e) => {
            console_error!("edge.settings_error error={e}");
            return error_response(502, "core's settings document could not be read");
        }
    };
    let body = if method == route::Method::Head {
        Vec::new()
    } else {
        body
    };
    let r = Response::from_bytes(body)?.with_status(200);
    let h = r.headers();
    h.set("content-type", "application/json")?;
    h.set("cache-control", cache)?;
    Ok(r)
}

/// `GET {path}/sdk/{file}`: proxied from core with a Cache-Control, kept in KV so the SDK still
/// loads (stale) while core is unreachable.
async fn serve_sdk(
    env: &Env,
    config: &EdgeConfig,
    file: &str,
    method: route::Method,
) -> Result<Response> {
    let key = format!("sdk/{file}");
    let kv = env.kv(KV_BINDING).ok();
    let from_core = async {
        let mut resp = Fetch::Url(config.sdk_url(file).parse()?).send().await?;
        let status = resp.status_code();
        let content_type = resp.headers().get("content-type")?;
        let bytes = resp.bytes().await?;
        Ok::<_, worker::Error>((status, content_type, bytes))
    };
    let timeout = Delay::from(Duration::from_millis(config.core_timeout_ms));
    let answer = match select(Box::pin(from_core), Box::pin(timeout)).await {
        Either::Left((Ok(a), _)) => Some(a),
        Either::Left((Err(e), _)) => {
            console_warn!("edge.sdk core unreachable: {e}");
            None
        }
        Either::Right(_) => None,
    };
    let (status, content_type, bytes, source, cache) = match answer {
        Some((200, content_type, bytes)) => {
            if let Some(kv) = &kv
                && let Ok(put) = kv.put_bytes(&key, &bytes)
            {
                let _ = put.expiration_ttl(SDK_TTL_SECS).execute().await;
            }
            let ct = content_type.unwrap_or_else(|| route::content_type_for(file).to_owned());
            (
                200,
                ct,
                bytes,
                "core",
                "public, max-age=300, stale-while-revalidate=86400",
            )
        }
        Some((status, content_type, bytes)) if status < 500 => {
            let ct = content_type.unwrap_or_else(|| "text/plain".to_owned());
            (status, ct, bytes, "core", "no-store")
        }
        _ => match kv.as_ref().map(|kv| kv.get(&key).bytes()) {
            Some(get) => match get.await {
                Ok(Some(bytes)) => (
                    200,
                    route::content_type_for(file).to_owned(),
                    bytes,
                    "kv",
                    "public, max-age=60",
                ),
                _ => return error_response(503, "the SDK is temporarily unavailable"),
            },
            None => return error_response(503, "the SDK is temporarily unavailable"),
        },
    };
    let body = if method == route::Method::Head {
        Vec::new()
    } else {
        bytes
    };
    let r = Response::from_bytes(body)?.with_status(status);
    let h = r.headers();
    h.set("content-type", &content_type)?;
    h.set("cache-control", cache)?;
    h.set("x-touchpoint-sdk", source)?;
    Ok(r)
}
