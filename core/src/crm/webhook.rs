//! HubSpot webhooks (`POST /v1/sources/hubspot/webhook`): near-realtime changes between polls.
//!
//! The v3 signature is checked first ([`verify`]): `X-HubSpot-Signature-v3` is the base64
//! HMAC-SHA256, keyed with the app's client secret, of method + URI + raw body + the
//! `X-HubSpot-Request-Timestamp` (ms), which must be at most five minutes old. The URI is the
//! webhook URL as configured in HubSpot (`TOUCHPOINT_HUBSPOT_WEBHOOK_URL`), with the characters
//! HubSpot decodes before signing decoded.
//!
//! An event names an object and what happened; the records named are read back in one batch per
//! object (so the message carries every mapped field and HubSpot's last-modified time) and go
//! through the same decision as a poll. Deletions clear the traits the record fed. Answers: 200
//! once accepted, 400 for a body that is not a list of events or a missing signature header, 401
//! for a bad or stale signature, 404 when HubSpot inbound sync is not configured, 503 when HubSpot
//! or storage failed (HubSpot retries).

use super::sync::Change;
use super::{Crm, SyncError};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::time::Duration;

/// Where HubSpot delivers.
pub const PATH: &str = "/v1/sources/hubspot/webhook";
/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-hubspot-signature-v3";
/// The timestamp header (ms).
pub const TIMESTAMP_HEADER: &str = "x-hubspot-request-timestamp";

/// Why a delivery's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A header is missing or not a number.
    #[error("missing or malformed {0} header")]
    Header(&'static str),
    /// Older (or further in the future) than the tolerance.
    #[error("the request timestamp is more than {0} s away from now")]
    Stale(u64),
    /// The HMAC does not match.
    #[error("the signature does not match")]
    Mismatch,
}

/// Decodes the characters HubSpot decodes in the URI before signing.
pub fn decoded_uri(uri: &str) -> String {
    const PAIRS: [(&str, &str); 12] = [
        ("%3A", ":"),
        ("%2F", "/"),
        ("%3F", "?"),
        ("%40", "@"),
        ("%21", "!"),
        ("%24", "$"),
        ("%27", "'"),
        ("%28", "("),
        ("%29", ")"),
        ("%2A", "*"),
        ("%2C", ","),
        ("%3B", ";"),
    ];
    let mut out = uri.to_owned();
    for (enc, dec) in PAIRS {
        out = out
            .replace(enc, dec)
            .replace(&enc.to_ascii_lowercase(), dec);
    }
    out
}

/// The v3 signature of a request.
pub fn sign(secret: &[u8], method: &str, uri: &str, body: &[u8], timestamp: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(method.as_bytes());
    mac.update(decoded_uri(uri).as_bytes());
    mac.update(body);
    mac.update(timestamp.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks a delivery's v3 signature and age.
#[allow(clippy::too_many_arguments)]
pub fn verify(
    secret: &[u8],
    method: &str,
    uri: &str,
    body: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    now_ms: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let ts = timestamp.ok_or(SignatureError::Header(TIMESTAMP_HEADER))?;
    let at: i64 = ts
        .trim()
        .parse()
        .map_err(|_| SignatureError::Header(TIMESTAMP_HEADER))?;
    let given = signature.ok_or(SignatureError::Header(SIGNATURE_HEADER))?;
    if now_ms.abs_diff(at) > tolerance.as_millis() as u64 {
        return Err(SignatureError::Stale(tolerance.as_secs()));
    }
    let expected = sign(secret, method, uri, body, ts.trim());
    use subtle::ConstantTimeEq;
    if bool::from(expected.as_bytes().ct_eq(given.trim().as_bytes())) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The object an event is about: `contacts`, `companies` or `deals`, from `subscriptionType`
/// (`deal.propertyChange`) or the generic webhooks' `objectTypeId` (`0-3`); and whether it is a
/// deletion.
pub fn object_of(event: &Value) -> Option<(&'static str, bool)> {
    let kind = event["subscriptionType"].as_str().unwrap_or("");
    let (prefix, what) = kind.split_once('.').unwrap_or((kind, ""));
    let object = match (prefix, event["objectTypeId"].as_str()) {
        ("contact", _) | (_, Some("0-1")) => "contacts",
        ("company", _) | (_, Some("0-2")) => "companies",
        ("deal", _) | (_, Some("0-3")) => "deals",
        _ => return None,
    };
    if what == "privacyDeletion" {
        return None;
    }
    Some((object, what == "deletion"))
}

/// The webhook route.
pub fn routes() -> Router<AppState> {
    Router::new().route(PATH, post(deliver))
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, Json(json!({"success": false, "error": message}))).into_response()
}

/// The URL HubSpot signed: the configured one, else the request's own.
fn signed_url(configured: Option<&str>, headers: &HeaderMap, uri: &Uri) -> String {
    if let Some(u) = configured {
        return u.to_owned();
    }
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let proto = header("x-forwarded-proto").unwrap_or("http");
    let host = header("x-forwarded-host")
        .or_else(|| header("host"))
        .unwrap_or("localhost");
    let path = uri.path_and_query().map_or(PATH, |p| p.as_str());
    format!("{proto}://{host}{path}")
}

async fn deliver(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let Some(crm) = state.crm.clone() else {
        return refuse(
            StatusCode::NOT_FOUND,
            "HubSpot inbound sync is not configured".into(),
        );
    };
    let (Some(reader), Some(secret)) = (&crm.hubspot, &crm.config.hubspot_app_secret) else {
        return refuse(
            StatusCode::NOT_FOUND,
            "HubSpot inbound sync is not configured".into(),
        );
    };
    let text = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let url = signed_url(crm.config.hubspot_webhook_url.as_deref(), &headers, &uri);
    if let Err(e) = verify(
        secret.expose_secret().as_bytes(),
        "POST",
        &url,
        &body,
        text(TIMESTAMP_HEADER),
        text(SIGNATURE_HEADER),
        state.clock.now_ms(),
        crm.config.webhook_tolerance,
    ) {
        tracing::info!(error = %e, "HubSpot webhook refused");
        let status = match e {
            SignatureError::Header(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNAUTHORIZED,
        };
        return refuse(status, e.to_string());
    }
    let Ok(Value::Array(events)) = serde_json::from_slice::<Value>(&body) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the body is not a list of events".into(),
        );
    };
    let mut wanted: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut deletions = Vec::new();
    for e in &events {
        let Some((object, deleted)) = object_of(e) else {
            continue;
        };
        let id = match &e["objectId"] {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            _ => continue,
        };
        if deleted {
            deletions.push(Change {
                object: object.into(),
                id,
                modified_at: e["occurredAt"]
                    .as_i64()
                    .unwrap_or_else(|| state.clock.now_ms()),
                deleted: true,
                ..Change::default()
            });
        } else {
            let ids = wanted.entry(object).or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    let result: Result<super::Report, SyncError> = async {
        let _one = crm.lock.lock().await;
        let before = reader.calls();
        let mut changes = Vec::new();
        for (object, ids) in &wanted {
            let inbound: Vec<_> = crm
                .mappings
                .object(Crm::HubSpot, object)
                .map(|m| m.inbound().collect())
                .unwrap_or_default();
            changes.extend(reader.read(object, ids, &inbound).await?);
        }
        changes.extend(deletions);
        let mut report = super::hubspot::apply(&state, &crm, reader, changes, Vec::new()).await?;
        report.calls = reader.calls() - before;
        super::account_for(&crm, Crm::HubSpot, &report);
        crm.counters(Crm::HubSpot)
            .steps
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(report)
    }
    .await;
    match result {
        Ok(report) => {
            Json(json!({"success": true, "events": events.len(), "messages": report.messages}))
                .into_response()
        }
        Err(e) => {
            crm.counters(Crm::HubSpot)
                .failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(error = %e, "HubSpot webhook could not be processed; HubSpot retries");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily unable to process the events; retry later".into(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://cdp.example.com/v1/sources/hubspot/webhook";

    #[test]
    fn a_fresh_correct_signature_passes_and_anything_else_is_refused() {
        let body = br#"[{"objectId":1,"subscriptionType":"deal.propertyChange"}]"#;
        let now = 1_790_000_000_000;
        let ts = (now - 1000).to_string();
        let sig = sign(b"app-secret", "POST", URL, body, &ts);
        let ok = |sig: &str, ts: &str, body: &[u8], secret: &[u8]| {
            verify(
                secret,
                "POST",
                URL,
                body,
                Some(ts),
                Some(sig),
                now,
                Duration::from_secs(300),
            )
        };
        assert_eq!(ok(&sig, &ts, body, b"app-secret"), Ok(()));
        assert_eq!(ok(&sig, &ts, body, b"other"), Err(SignatureError::Mismatch));
        assert_eq!(
            ok(&sig, &ts, b"[]", b"app-secret"),
            Err(SignatureError::Mismatch)
        );
        let old = (now - 301_000).to_string();
        let old_sig = sign(b"app-secret", "POST", URL, body, &old);
        assert_eq!(
            ok(&old_sig, &old, body, b"app-secret"),
            Err(SignatureError::Stale(300))
        );
        assert_eq!(
            verify(
                b"s",
                "POST",
                URL,
                body,
                None,
                Some(&sig),
                now,
                Duration::from_secs(300)
            ),
            Err(SignatureError::Header(TIMESTAMP_HEADER))
        );
    }

    #[test]
    fn a_timestamp_at_the_ends_of_i64_is_stale_not_an_overflow() {
        for ts in ["-9223372036854775808", "9223372036854775807"] {
            assert!(matches!(
                verify(
                    b"k",
                    "POST",
                    "https://x.test/a",
                    b"[]",
                    Some(ts),
                    Some("x"),
                    1_800_000_000_000,
                    Duration::from_secs(300)
                ),
                Err(SignatureError::Stale(_))
            ));
        }
    }

    #[test]
    fn hubspot_s_decoded_characters_are_decoded_before_signing() {
        assert_eq!(
            decoded_uri("https://x.test/hook%3Fa%3Db%2Cc%40d"),
            "https://x.test/hook?a%3Db,c@d",
            "only the characters HubSpot lists are decoded"
        );
        let body = b"[]";
        assert_eq!(
            sign(b"k", "POST", "https://x.test/a%3Ab", body, "1"),
            sign(b"k", "POST", "https://x.test/a:b", body, "1")
        );
    }

    #[test]
    fn events_name_their_object_whichever_webhook_flavour_sent_them() {
        assert_eq!(
            object_of(&json!({"subscriptionType": "deal.propertyChange"})),
            Some(("deals", false))
        );
        assert_eq!(
            object_of(&json!({"subscriptionType": "contact.deletion"})),
            Some(("contacts", true))
        );
        assert_eq!(
            object_of(&json!({"subscriptionType": "object.propertyChange", "objectTypeId": "0-2"})),
            Some(("companies", false))
        );
        assert_eq!(
            object_of(&json!({"subscriptionType": "contact.privacyDeletion"})),
            None
        );
        assert_eq!(
            object_of(&json!({"subscriptionType": "ticket.creation"})),
            None
        );
    }
}
