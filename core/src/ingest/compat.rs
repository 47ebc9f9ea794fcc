//! Segment's and RudderStack's client libraries, unchanged: the short paths analytics.js 2.0 posts
//! to (`/v1/t|p|i|g|a|s`, `/v1/b` when batching), the settings document its snippet and Segment's
//! mobile libraries fetch (`/v1/projects/{writeKey}/settings`), RudderStack's JavaScript SDK's
//! `/sourceConfig` and beacon batch (`/beacon/v1/batch?writeKey=…`), and a sink for the libraries'
//! own telemetry (`/v1/m`). Bodies go through the ordinary intake ([`super::single`],
//! [`super::batch`]): any content type (analytics.js sends `text/plain` to avoid a CORS
//! preflight), the write key from Basic auth or the body.

use super::{IngestError, single};
use crate::domain::WriteKey;
use crate::sources::Source;
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::HashMap;
use touchpoint_tracking_plan::MessageType;

/// analytics.js 2.0 posts each call to `{apiHost}/{first letter of its type}`.
pub const SHORT_PATHS: [(&str, MessageType); 6] = [
    ("t", MessageType::Track),
    ("p", MessageType::Page),
    ("i", MessageType::Identify),
    ("g", MessageType::Group),
    ("a", MessageType::Alias),
    ("s", MessageType::Screen),
];

/// Largest telemetry body read (and dropped) at `/v1/m`.
const MAX_METRICS_BYTES: usize = 64 * 1024;

/// The routes; merged into [`super::routes`] so they share its CORS layer.
pub fn routes() -> Router<AppState> {
    let mut router = Router::new()
        .route("/v1/b", post(super::batch))
        .route("/v1/m", post(metrics))
        .route("/v1/projects/{write_key}/settings", get(segment_settings))
        .route("/sourceConfig", get(rudderstack_source_config))
        .route("/sourceConfig/", get(rudderstack_source_config))
        .route("/beacon/v1/batch", post(beacon_batch));
    for (path, kind) in SHORT_PATHS {
        router = router.route(
            &format!("/v1/{path}"),
            post(
                move |state: State<AppState>, headers: HeaderMap, body: Body| {
                    single(state, kind, headers, body)
                },
            ),
        );
    }
    router
}

/// Where clients reach this server: `http` or `https`, and `host[:port][/path]` without a trailing
/// slash — the form Segment's settings use for `apiHost` (`api.segment.io/v1` less its `/v1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicBase {
    /// `http` or `https`.
    pub protocol: &'static str,
    /// `host[:port][/path]`.
    pub host: String,
}

impl PublicBase {
    /// Reads a configured public URL such as `https://cdp.example.com` or
    /// `https://www.example.com/cdp`; `None` unless it is an http(s) URL with a plain host.
    pub fn parse_url(url: &str) -> Option<PublicBase> {
        let url = url.trim().trim_end_matches('/');
        let (protocol, rest) = if let Some(rest) = url.strip_prefix("https://") {
            ("https", rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            ("http", rest)
        } else {
            return None;
        };
        is_plain_host(rest).then(|| PublicBase {
            protocol,
            host: rest.to_owned(),
        })
    }

    /// From the request: `X-Forwarded-Host` and `X-Forwarded-Proto` (set by a reverse proxy in
    /// front of core), else `Host` over plain HTTP. `None` when no usable host was sent.
    pub fn from_headers(headers: &HeaderMap) -> Option<PublicBase> {
        let first = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(|v| v.trim().to_ascii_lowercase())
                .filter(|v| !v.is_empty())
        };
        let host = first("x-forwarded-host").or_else(|| first(header::HOST.as_str()))?;
        let protocol = match first("x-forwarded-proto").as_deref() {
            Some("https") => "https",
            _ => "http",
        };
        is_plain_host(&host).then_some(PublicBase { protocol, host })
    }

    /// Segment's `apiHost`: this base plus `/v1`.
    pub fn api_host(&self) -> String {
        format!("{}/v1", self.host)
    }
}

/// `host[:port][/path]` as Segment's React Native library accepts it for `apiHost`
/// (`^[a-zA-Z0-9][a-zA-Z0-9._-]*(:\d{2,5})?(/[a-zA-Z0-9._\-/]*)?$`): no scheme, credentials,
/// query, fragment or spaces, so it cannot redirect uploads once a library prefixes `https://`.
pub fn is_plain_host(s: &str) -> bool {
    let (authority, path) = match s.find('/') {
        Some(i) => (&s[..i], Some(&s[i..])),
        None => (s, None),
    };
    let (name, port) = match authority.split_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (authority, None),
    };
    let name_ok = name.len() <= 253
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    let port_ok =
        port.is_none_or(|p| (2..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    let path_ok = path.is_none_or(|p| {
        p.len() <= 200
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
    });
    name_ok && port_ok && path_ok
}

/// Segment's settings document for a write key, as `cdn-settings.segment.com` serves it, with
/// the `Segment.io` integration pointed at `base`. Only what Touchpoint does is switched on: no
/// device-mode destinations, middleware or remote plugins, and the libraries' own telemetry off.
pub fn segment_settings_document(write_key: &str, base: &PublicBase) -> Value {
    let api_host = base.api_host();
    json!({
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": api_host,
                "protocol": base.protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": true,
                "maybeBundledConfigIds": {},
                "versionSettings": {"componentTypes": ["browser", "ios", "android", "server"]},
            }
        },
        "plan": {
            "track": {"__default": {"enabled": true, "integrations": {}}},
            "identify": {"__default": {"enabled": true}},
            "group": {"__default": {"enabled": true}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": true,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0, "host": api_host},
        "legacyVideoPluginsEnabled": false,
        "remotePlugins": [],
        "consentSettings": {"allCategories": []},
    })
}

/// RudderStack's `sourceConfig` answer for a source: enabled, no device-mode destinations, the
/// SDK's error and metrics reporting off (they would post to `{dataPlaneUrl}/rsaMetrics`).
pub fn rudderstack_source_config_document(write_key: &str, source: &Source) -> Value {
    json!({
        "isHosted": false,
        "source": {
            "id": format!("touchpoint-source-{}", source.id),
            "name": source.name,
            "writeKey": write_key,
            "workspaceId": "touchpoint",
            "enabled": true,
            "config": {
                "statsCollection": {
                    "errors": {"enabled": false},
                    "metrics": {"enabled": false},
                },
            },
            "destinations": [],
        }
    })
}

fn not_found(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"success": false, "error": what, "code": "unknown_write_key"}).to_string(),
    )
        .into_response()
}

/// Who may keep a settings document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shared {
    /// Any cache: the document is the same whoever asks.
    Yes,
    /// Only the client: the document names the host the request named, and a shared cache in
    /// front (whose key may leave out `X-Forwarded-Host`) must not hand one client's answer to
    /// another, or a forged header would send every client's events elsewhere.
    No,
}

fn settings_response(body: Value, shared: Shared) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            // Short: a new or removed source shows within a minute.
            (
                header::CACHE_CONTROL,
                match shared {
                    Shared::Yes => "public, max-age=60",
                    Shared::No => "private, max-age=60",
                },
            ),
            // The document names the host it was asked on (unless TOUCHPOINT_PUBLIC_URL is set).
            (
                header::VARY,
                "Host, X-Forwarded-Host, X-Forwarded-Proto, Authorization",
            ),
        ],
        body.to_string(),
    )
        .into_response()
}

/// The base clients are told to use: `TOUCHPOINT_PUBLIC_URL` when set, else the request's host.
fn public_base(state: &AppState, headers: &HeaderMap) -> Option<PublicBase> {
    match state.public_url.as_deref() {
        Some(url) => PublicBase::parse_url(url),
        None => PublicBase::from_headers(headers),
    }
}

fn known_source(state: &AppState, key: &str) -> Option<(WriteKey, std::sync::Arc<Source>)> {
    let key = WriteKey::parse(key).ok()?;
    let source = state.sources.get(&key)?;
    Some((key, source))
}

/// `GET /v1/projects/{writeKey}/settings`: analytics.js (`cdnURL`, or the snippet's `_cdn`),
/// analytics-swift and analytics-kotlin (`cdnHost`), analytics-react-native (`cdnProxy`).
async fn segment_settings(
    State(state): State<AppState>,
    Path(write_key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some((key, source)) = known_source(&state, &write_key) else {
        return not_found("unknown write key");
    };
    let Some(base) = public_base(&state, &headers) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "success": false,
                "code": "unknown_public_host",
                "error": "cannot tell this server's public host from the request: set TOUCHPOINT_PUBLIC_URL",
            })),
        )
            .into_response();
    };
    tracing::debug!(source = %source.name, api_host = %base.api_host(), "segment settings served");
    let shared = if state.public_url.is_some() {
        Shared::Yes
    } else {
        Shared::No
    };
    settings_response(segment_settings_document(key.as_ref(), &base), shared)
}

/// `GET /sourceConfig/?writeKey=…` (and Basic auth): RudderStack's JavaScript SDK with
/// `configUrl` set to this server.
async fn rudderstack_source_config(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let from_auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| WriteKey::from_basic_auth(h).ok());
    let key = match (from_auth, query.get("writeKey")) {
        (Some(k), _) => k.as_ref().to_owned(),
        (None, Some(k)) => k.clone(),
        (None, None) => return not_found("missing write key"),
    };
    let Some((key, source)) = known_source(&state, &key) else {
        return not_found("unknown write key");
    };
    settings_response(
        rudderstack_source_config_document(key.as_ref(), &source),
        Shared::Yes,
    )
}

/// `POST /beacon/v1/batch?writeKey=…`: RudderStack's `useBeacon` delivery (`navigator.sendBeacon`
/// cannot set headers, so the key travels in the query).
async fn beacon_batch(
    state: State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    mut headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, IngestError> {
    if !headers.contains_key(header::AUTHORIZATION)
        && let Some(key) = query.get("writeKey")
    {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{key}:"));
        if let Ok(value) = HeaderValue::from_str(&format!("Basic {basic}")) {
            headers.insert(header::AUTHORIZATION, value);
        }
    }
    super::batch(state, headers, body).await
}

/// `POST /v1/m`: analytics.js's and the mobile libraries' own telemetry (counters about the
/// library, no customer data). Read within a limit and dropped.
async fn metrics(body: Body) -> Response {
    match axum::body::to_bytes(body, MAX_METRICS_BYTES).await {
        Ok(bytes) => {
            tracing::debug!(bytes = bytes.len(), "library telemetry dropped");
            (StatusCode::OK, Json(json!({"success": true}))).into_response()
        }
        Err(_) => IngestError::TooLarge(MAX_METRICS_BYTES).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_public_url_becomes_protocol_and_host() {
        assert_eq!(
            PublicBase::parse_url("https://cdp.example.com/"),
            Some(PublicBase {
                protocol: "https",
                host: "cdp.example.com".into()
            })
        );
        let with_path = PublicBase::parse_url("http://127.0.0.1:8080/tp").unwrap();
        assert_eq!(with_path.protocol, "http");
        assert_eq!(with_path.api_host(), "127.0.0.1:8080/tp/v1");
        assert_eq!(PublicBase::parse_url("cdp.example.com"), None);
        assert_eq!(
            PublicBase::parse_url("https://user:pw@cdp.example.com"),
            None
        );
        assert_eq!(PublicBase::parse_url("https://cdp.example.com/?a=b"), None);
    }

    #[test]
    fn the_request_host_is_used_and_forwarded_headers_win() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:9000"));
        let direct = PublicBase::from_headers(&h).unwrap();
        assert_eq!(
            (direct.protocol, direct.api_host().as_str()),
            ("http", "127.0.0.1:9000/v1")
        );
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("CDP.example.com, proxy.internal"),
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let proxied = PublicBase::from_headers(&h).unwrap();
        assert_eq!(
            (proxied.protocol, proxied.host.as_str()),
            ("https", "cdp.example.com")
        );
        let mut hostile = HeaderMap::new();
        hostile.insert(header::HOST, HeaderValue::from_static("evil.example@x"));
        assert_eq!(PublicBase::from_headers(&hostile), None);
    }

    #[test]
    fn api_hosts_are_what_segments_libraries_accept() {
        for ok in [
            "api.segment.io/v1",
            "127.0.0.1:8080/v1",
            "cdp.example.com",
            "a-b_c.d/x/y",
        ] {
            assert!(is_plain_host(ok), "{ok}");
        }
        for bad in [
            "",
            "https://x",
            "x y",
            "-x.com",
            "x.com:1",
            "x.com:123456",
            "x.com/?q",
            "x.com/#f",
            "u@x.com",
            "[::1]:80",
        ] {
            assert!(!is_plain_host(bad), "{bad}");
        }
    }

    #[test]
    fn the_settings_document_points_segment_io_at_touchpoint() {
        let base = PublicBase::parse_url("https://cdp.example.com").unwrap();
        let doc = segment_settings_document("wk_1", &base);
        let seg = &doc["integrations"]["Segment.io"];
        assert_eq!(seg["apiKey"], "wk_1");
        assert_eq!(seg["apiHost"], "cdp.example.com/v1");
        assert_eq!(seg["protocol"], "https");
        assert_eq!(doc["integrations"].as_object().unwrap().len(), 1);
        assert_eq!(doc["plan"]["track"]["__default"]["enabled"], true);
        assert_eq!(doc["metrics"]["sampleRate"], 0);
    }

    #[test]
    fn short_paths_are_each_types_first_letter() {
        for (path, kind) in SHORT_PATHS {
            assert_eq!(&kind.as_str()[..1], path);
        }
        assert_eq!(SHORT_PATHS.len(), MessageType::ALL.len());
    }
}
