//! Webhook sources: Stripe (`POST /v1/sources/stripe/{name}/webhook`) and Resend email engagement
//! (`POST /v1/sources/resend/{name}/webhook`). Each verifies its provider's signature, maps the
//! event to Segment messages with a pure function ([`stripe::map_event`], [`resend::map_event`])
//! and hands them to the normal durable intake ([`crate::ingest::accept`]), so the tracking plan,
//! limits, messageId deduplication, the debugger and the pipeline all apply. Each configured
//! webhook is a source of its own (created at start with a key nobody is given).
//!
//! Idempotency: message ids derive from the provider's event (Stripe event id, Svix message id),
//! and a delivery whose first message is already in the log for that source is acknowledged
//! without storing anything, for as long as raw messages are kept (`TOUCHPOINT_RETENTION_DAYS`);
//! concurrent duplicate deliveries are caught by the 24-hour messageId deduplication.
//!
//! Responses: 200 once stored (or for an event type that is not mapped, so the provider stops
//! retrying), 400 for a missing or malformed signature header or a body that is not an event,
//! 401 for a signature that does not match or is outside the timestamp tolerance, 404 for a
//! webhook that is not configured, 503 when storage is unavailable (the provider retries).

pub mod resend;
pub mod stripe;
pub mod svix;

use crate::config::ConfigError;
use crate::ingest::prepare::{ItemError, Origin};
use crate::ingest::{self, IngestError};
use crate::sources::Source;
use crate::state::AppState;
use crate::storage::StorageError;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use touchpoint_tracking_plan::Message;

/// One configured webhook: the Touchpoint source its events are recorded under, and the signing
/// secret the provider shows for the endpoint.
#[derive(Clone, Debug)]
pub struct WebhookSource {
    /// Source name, also the last path segment before `/webhook`, e.g. `stripe`.
    pub name: String,
    /// The endpoint's signing secret (`whsec_…`).
    pub secret: SecretString,
}

/// Webhook sources, read from the environment.
#[derive(Clone, Debug)]
pub struct WebhooksConfig {
    /// Stripe endpoints: `TOUCHPOINT_STRIPE_WEBHOOK_SECRET` (a source named `stripe`) and/or
    /// `TOUCHPOINT_STRIPE_WEBHOOKS` as `name=whsec_…` pairs separated by commas (one per Stripe
    /// account). Default none.
    pub stripe: Vec<WebhookSource>,
    /// Resend endpoints: `TOUCHPOINT_RESEND_WEBHOOK_SECRET` (a source named `resend`) and/or
    /// `TOUCHPOINT_RESEND_WEBHOOKS` as `name=whsec_…` pairs. Default none.
    pub resend: Vec<WebhookSource>,
    /// Largest difference between a signature's timestamp and now, either way
    /// (`TOUCHPOINT_WEBHOOK_TOLERANCE_SECS`, default 300, Stripe's and Svix's own default).
    pub tolerance: Duration,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            stripe: Vec::new(),
            resend: Vec::new(),
            tolerance: Duration::from_secs(300),
        }
    }
}

impl WebhooksConfig {
    /// Reads the webhook variables through `get`. Error messages never quote a secret.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut c = WebhooksConfig {
            stripe: sources(
                get,
                "TOUCHPOINT_STRIPE_WEBHOOK_SECRET",
                "stripe",
                "TOUCHPOINT_STRIPE_WEBHOOKS",
            )?,
            resend: sources(
                get,
                "TOUCHPOINT_RESEND_WEBHOOK_SECRET",
                "resend",
                "TOUCHPOINT_RESEND_WEBHOOKS",
            )?,
            ..WebhooksConfig::default()
        };
        for s in &c.resend {
            svix::key(s.secret.expose_secret()).map_err(|e| {
                ConfigError::new(
                    "TOUCHPOINT_RESEND_WEBHOOKS",
                    format!("the secret of {:?}: {e}", s.name),
                )
            })?;
        }
        let mut names: Vec<&str> = c.source_names().collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(ConfigError::new(
                "TOUCHPOINT_STRIPE_WEBHOOKS",
                format!("webhook source {:?} is configured twice", w[0]),
            ));
        }
        if let Some(v) = get("TOUCHPOINT_WEBHOOK_TOLERANCE_SECS").filter(|v| !v.trim().is_empty()) {
            c.tolerance = Duration::from_secs(
                crate::config::number("TOUCHPOINT_WEBHOOK_TOLERANCE_SECS", &v)?.max(1),
            );
        }
        Ok(c)
    }

    /// The names of every webhook source.
    pub fn source_names(&self) -> impl Iterator<Item = &str> {
        self.stripe
            .iter()
            .chain(&self.resend)
            .map(|s| s.name.as_str())
    }
}

/// `single` (one secret for the source `default_name`) plus `list` (`name=secret` pairs).
fn sources(
    get: &impl Fn(&str) -> Option<String>,
    single: &'static str,
    default_name: &str,
    list: &'static str,
) -> Result<Vec<WebhookSource>, ConfigError> {
    let mut out = Vec::new();
    if let Some(secret) = get(single).filter(|s| !s.trim().is_empty()) {
        out.push(WebhookSource {
            name: default_name.to_owned(),
            secret: SecretString::from(secret.trim().to_owned()),
        });
    }
    for pair in get(list).unwrap_or_default().split(',') {
        if pair.trim().is_empty() {
            continue;
        }
        let (name, secret) = pair
            .split_once('=')
            .filter(|(_, s)| !s.trim().is_empty())
            .ok_or_else(|| {
                ConfigError::new(list, "expected name=whsec_… pairs separated by commas")
            })?;
        let name = name.trim();
        if !is_source_name(name) {
            return Err(ConfigError::new(
                list,
                format!("source name {name:?} must be 1–64 lower-case letters, digits, '-' or '_'"),
            ));
        }
        out.push(WebhookSource {
            name: name.to_owned(),
            secret: SecretString::from(secret.trim().to_owned()),
        });
    }
    Ok(out)
}

fn is_source_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The webhook secrets in force, by source name.
pub struct Webhooks {
    stripe: HashMap<String, SecretSlice<u8>>,
    resend: HashMap<String, SecretSlice<u8>>,
    tolerance: Duration,
}

impl Webhooks {
    /// Prepares the configured webhooks (Svix secrets are decoded once here).
    pub fn new(config: &WebhooksConfig) -> Result<Webhooks, svix::BadSecret> {
        let stripe = config
            .stripe
            .iter()
            .map(|s| {
                let key = s.secret.expose_secret().as_bytes().to_vec();
                (s.name.clone(), SecretSlice::from(key))
            })
            .collect();
        let resend = config
            .resend
            .iter()
            .map(|s| {
                Ok((
                    s.name.clone(),
                    SecretSlice::from(svix::key(s.secret.expose_secret())?),
                ))
            })
            .collect::<Result<_, _>>()?;
        Ok(Webhooks {
            stripe,
            resend,
            tolerance: config.tolerance,
        })
    }
}

/// Why a signature header was refused (shared by the Stripe and Svix schemes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A required header is absent.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// A header cannot be read.
    #[error("{0}")]
    Malformed(&'static str),
    /// No signature matches the body and the endpoint's secret.
    #[error("no signature matches the payload and the endpoint's signing secret")]
    Mismatch,
    /// Signed too long ago or in the future: a possible replay, or a clock off.
    #[error("signature timestamp outside the tolerance")]
    Stale,
}

/// Why a webhook delivery was not acknowledged. Messages are safe to return: no internals.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// No webhook of this provider has this name.
    #[error("no {0} webhook source named {1:?} is configured")]
    UnknownSource(&'static str, String),
    /// The signature headers were missing, malformed, wrong or stale.
    #[error("webhook signature refused: {0}")]
    Signature(#[from] SignatureError),
    /// The body is not JSON, or not an event of the provider.
    #[error("{0}")]
    Body(String),
    /// Reading the log failed.
    #[error("storage unavailable")]
    Storage(#[from] StorageError),
    /// The intake refused the messages (e.g. overloaded: retry later).
    #[error(transparent)]
    Intake(#[from] IngestError),
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            WebhookError::UnknownSource(..) => (StatusCode::NOT_FOUND, "unknown_webhook"),
            WebhookError::Signature(SignatureError::Missing(_) | SignatureError::Malformed(_)) => {
                (StatusCode::BAD_REQUEST, "bad_signature_header")
            }
            WebhookError::Signature(_) => (StatusCode::UNAUTHORIZED, "bad_signature"),
            WebhookError::Body(_) => (StatusCode::BAD_REQUEST, "not_an_event"),
            WebhookError::Storage(e) => {
                tracing::warn!(error = %e, "webhook idempotency lookup failed");
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            WebhookError::Intake(_) => {
                let WebhookError::Intake(e) = self else {
                    unreachable!("matched above")
                };
                return e.into_response();
            }
        };
        let body = json!({"success": false, "error": self.to_string(), "code": code});
        (status, Json(body)).into_response()
    }
}

/// The webhook routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/sources/stripe/{name}/webhook", post(stripe_named))
        .route(
            "/v1/sources/stripe/webhook",
            post(|state: State<AppState>, headers: HeaderMap, body: Bytes| {
                stripe_webhook(state, "stripe".to_owned(), headers, body)
            }),
        )
        .route("/v1/sources/resend/{name}/webhook", post(resend_named))
        .route(
            "/v1/sources/resend/webhook",
            post(|state: State<AppState>, headers: HeaderMap, body: Bytes| {
                resend_webhook(state, "resend".to_owned(), headers, body)
            }),
        )
}

async fn stripe_named(
    state: State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, WebhookError> {
    stripe_webhook(state, name, headers, body).await
}

async fn resend_named(
    state: State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, WebhookError> {
    resend_webhook(state, name, headers, body).await
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn now_secs(state: &AppState) -> i64 {
    state.clock.now_ms().div_euclid(1000)
}

/// The registered source of a configured webhook.
fn source(
    state: &AppState,
    provider: &'static str,
    name: &str,
) -> Result<Arc<Source>, WebhookError> {
    state
        .sources
        .by_name(name)
        .ok_or_else(|| WebhookError::UnknownSource(provider, name.to_owned()))
}

async fn stripe_webhook(
    State(state): State<AppState>,
    name: String,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, WebhookError> {
    let secret = state
        .webhooks
        .stripe
        .get(&name)
        .ok_or_else(|| WebhookError::UnknownSource("Stripe", name.clone()))?;
    if let Err(e) = stripe::verify(
        secret.expose_secret(),
        header(&headers, stripe::SIGNATURE_HEADER),
        &body,
        now_secs(&state),
        state.webhooks.tolerance,
    ) {
        tracing::warn!(source = %name, reason = %e, "stripe webhook refused");
        return Err(e.into());
    }
    let source = source(&state, "Stripe", &name)?;
    let event: Value = serde_json::from_slice(&body)
        .map_err(|e| WebhookError::Body(format!("malformed JSON: {e}")))?;
    let event_id = event["id"].as_str().unwrap_or("?");
    let kind = event["type"].as_str().unwrap_or("?");
    match stripe::map_event(&event).map_err(|e| WebhookError::Body(e.to_string()))? {
        stripe::Mapped::Ignored(reason) => {
            tracing::info!(source = %name, event_id, kind, reason, "stripe event ignored");
            Ok(Json(json!({"success": true, "ignored": reason})))
        }
        stripe::Mapped::Messages(messages) => {
            let out = record(&state, &source, messages).await?;
            tracing::info!(source = %name, event_id, kind, stored = out["stored"].as_u64(), "stripe event received");
            Ok(Json(out))
        }
    }
}

async fn resend_webhook(
    State(state): State<AppState>,
    name: String,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, WebhookError> {
    let key = state
        .webhooks
        .resend
        .get(&name)
        .ok_or_else(|| WebhookError::UnknownSource("Resend", name.clone()))?;
    // Svix's unbranded header names are the same scheme.
    let pick =
        |branded: &str, plain: &str| header(&headers, branded).or_else(|| header(&headers, plain));
    let signed = svix::Headers {
        id: pick(svix::ID_HEADER, "webhook-id"),
        timestamp: pick(svix::TIMESTAMP_HEADER, "webhook-timestamp"),
        signature: pick(svix::SIGNATURE_HEADER, "webhook-signature"),
    };
    let delivery = match svix::verify(
        key.expose_secret(),
        signed,
        &body,
        now_secs(&state),
        state.webhooks.tolerance,
    ) {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(source = %name, reason = %e, "resend webhook refused");
            return Err(e.into());
        }
    };
    if delivery.len() > 128 || !delivery.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SignatureError::Malformed("svix-id is not a message id").into());
    }
    let source = source(&state, "Resend", &name)?;
    let event: Value = serde_json::from_slice(&body)
        .map_err(|e| WebhookError::Body(format!("malformed JSON: {e}")))?;
    let kind = event["type"].as_str().unwrap_or("?");
    match resend::map_event(delivery, &event).map_err(|e| WebhookError::Body(e.to_string()))? {
        resend::Mapped::Ignored(reason) => {
            tracing::info!(source = %name, delivery, kind, reason, "resend event ignored");
            Ok(Json(json!({"success": true, "ignored": reason})))
        }
        resend::Mapped::Messages(messages) => {
            let out = record(&state, &source, messages).await?;
            tracing::info!(source = %name, delivery, kind, stored = out["stored"].as_u64(), "resend event received");
            Ok(Json(out))
        }
    }
}

/// Stores a delivery's messages through the intake, unless its first message is already in the
/// log for this source (a redelivery).
async fn record(
    state: &AppState,
    source: &Arc<Source>,
    messages: Vec<Value>,
) -> Result<Value, WebhookError> {
    if let Some(first) = messages.first().and_then(|m| m["messageId"].as_str()) {
        let stored = state.store.messages_by_id(first).await?;
        if stored.iter().any(|m| m.source_id == source.id) {
            return Ok(json!({"success": true, "stored": 0, "duplicates": messages.len()}));
        }
    }
    let mut parsed = Vec::with_capacity(messages.len());
    let mut errors = Vec::new();
    for (index, message) in messages.into_iter().enumerate() {
        let raw = message.to_string();
        match Message::from_value(message, None) {
            Ok(p) => parsed.push((index, p)),
            Err(e) => errors.push(ItemError {
                index,
                error: e.to_string(),
                code: ingest::prepare::message_error_code(&e),
                raw,
            }),
        }
    }
    let summary = ingest::accept(state, source, Origin::Direct, parsed, errors).await?;
    for r in &summary.rejected {
        tracing::warn!(source = %source.name, index = r.index, code = r.code, error = %r.error, "webhook message refused");
    }
    Ok(json!({
        "success": true,
        "stored": summary.stored,
        "duplicates": summary.duplicates,
        "rejected": summary.rejected,
    }))
}

/// A JSON string's trimmed text, when it has any.
pub(crate) fn text(v: &Value) -> Option<&str> {
    v.as_str().map(str::trim).filter(|s| !s.is_empty())
}

/// A JSON string that is an email address, trimmed (identity resolution normalises it further).
pub(crate) fn clean_email(v: &Value) -> Option<String> {
    let e = text(v)?;
    crate::identity::normalise_email(e).map(|_| e.to_owned())
}

/// The `anonymousId` of someone a provider knows only by email: `email-` and 32 hex characters of
/// SHA-256 of the normalised address, the same for every provider and delivery, so all of a
/// person's email events share it (and it reveals the address to no one who does not have it).
pub fn anonymous_id_for_email(email: &str) -> String {
    let normalised =
        crate::identity::normalise_email(email).unwrap_or_else(|| email.trim().to_lowercase());
    let digest = Sha256::digest(normalised.as_bytes());
    format!("email-{}", &hex::encode(digest)[..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn webhook_sources_come_from_a_single_secret_or_named_pairs() {
        let c = WebhooksConfig::from_lookup(&lookup(&[
            ("TOUCHPOINT_STRIPE_WEBHOOK_SECRET", "whsec_abc"),
            (
                "TOUCHPOINT_STRIPE_WEBHOOKS",
                "stripe-eu=whsec_def, stripe-us = whsec_ghi",
            ),
            ("TOUCHPOINT_RESEND_WEBHOOKS", "resend=whsec_c2VjcmV0MQ=="),
            ("TOUCHPOINT_WEBHOOK_TOLERANCE_SECS", "600"),
        ]))
        .unwrap();
        let names: Vec<&str> = c.source_names().collect();
        assert_eq!(names, ["stripe", "stripe-eu", "stripe-us", "resend"]);
        assert_eq!(c.stripe[2].secret.expose_secret(), "whsec_ghi");
        assert_eq!(c.resend[0].secret.expose_secret(), "whsec_c2VjcmV0MQ==");
        assert_eq!(c.tolerance, Duration::from_secs(600));
        assert!(Webhooks::new(&c).is_ok());
        assert!(
            WebhooksConfig::from_lookup(&lookup(&[]))
                .unwrap()
                .source_names()
                .next()
                .is_none()
        );
    }

    #[test]
    fn bad_webhook_settings_are_refused_without_quoting_secrets() {
        for vars in [
            [("TOUCHPOINT_STRIPE_WEBHOOKS", "whsec_supersecret")],
            [("TOUCHPOINT_STRIPE_WEBHOOKS", "Bad Name=whsec_supersecret")],
            [("TOUCHPOINT_RESEND_WEBHOOKS", "resend=whsec_supersecret!!")],
            [(
                "TOUCHPOINT_STRIPE_WEBHOOKS",
                "a=whsec_supersecret,a=whsec_supersecret",
            )],
        ] {
            let err = WebhooksConfig::from_lookup(&lookup(&vars))
                .unwrap_err()
                .to_string();
            assert!(!err.contains("supersecret"), "{err}");
        }
        let c = WebhooksConfig::from_lookup(&lookup(&[(
            "TOUCHPOINT_STRIPE_WEBHOOK_SECRET",
            "whsec_supersecret",
        )]))
        .unwrap();
        assert!(!format!("{c:?}").contains("supersecret"));
    }

    #[test]
    fn an_email_gives_the_same_anonymous_id_however_it_is_written() {
        let a = anonymous_id_for_email("Ada@Example.com ");
        assert_eq!(a, anonymous_id_for_email("ada@example.com"));
        assert!(a.starts_with("email-") && a.len() == 38, "{a}");
        assert_ne!(a, anonymous_id_for_email("bob@example.com"));
    }

    #[test]
    fn signature_failures_are_400_when_malformed_and_401_when_wrong() {
        let status = |e: SignatureError| WebhookError::from(e).into_response().status();
        assert_eq!(
            status(SignatureError::Missing("stripe-signature")),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(SignatureError::Malformed("x")),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(status(SignatureError::Mismatch), StatusCode::UNAUTHORIZED);
        assert_eq!(status(SignatureError::Stale), StatusCode::UNAUTHORIZED);
        assert_eq!(
            WebhookError::UnknownSource("Stripe", "x".into())
                .into_response()
                .status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            WebhookError::Intake(IngestError::Unavailable)
                .into_response()
                .status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
