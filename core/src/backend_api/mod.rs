//! The API for backends: scoped API tokens (hashed, shown once, revocable, last-used times), a
//! versioned read API under `/v1` (profiles by any identifier, events, audiences, membership checks,
//! accounts) with ETags and per-token rate limits, Segment Profile API compatible routes, and the
//! OpenAPI document generated from these handlers (`GET /v1/openapi.json`, `touchpoint openapi`).

pub mod auth;
pub mod cli;
pub mod cursor;
pub mod openapi;
pub mod segment;
pub mod store;
pub mod tokens;
pub mod v1;

pub use store::{ApiStore, PgApiStore, SqliteApiStore};
pub use tokens::Scope;

use crate::admin::AdminError;
use crate::identity::{Identifier, ProfileId};
use crate::ingest::rate::{RateLimits, retry_after_secs};
use crate::state::AppState;
use crate::storage::StorageError;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;

/// The backend API's state: its repository and the per-token rate limits.
pub struct Api {
    /// Tokens and the read queries.
    pub store: Arc<dyn ApiStore>,
    /// Requests each token may make (GCRA, keyed by token id).
    pub limits: RateLimits,
}

impl Api {
    /// The API over a repository, with `per_second` requests a second per token (0 = no limit) and
    /// bursts of up to `burst` (0 = twice the rate).
    pub fn new(store: Arc<dyn ApiStore>, per_second: u32, burst: u32) -> Arc<Api> {
        Arc::new(Api {
            store,
            limits: RateLimits::new(per_second, burst),
        })
    }
}

/// Every route of the backend API.
pub fn routes() -> Router<AppState> {
    v1::routes()
        .merge(segment::routes())
        .merge(tokens::routes())
        .route("/v1/openapi.json", get(openapi::serve))
}

/// Errors of the backend API; answered as `{"error": "…"}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No token, or an unknown or revoked one.
    #[error("a valid API token is required (Authorization: Bearer tp_…)")]
    Unauthorized,
    /// The token lacks the scope.
    #[error("this token lacks the {} scope", .0.as_str())]
    Forbidden(Scope),
    /// The token's rate limit is spent; retry after the duration.
    #[error("rate limit exceeded for this token")]
    RateLimited(Duration),
    /// Nothing there (what was looked for).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Bad input.
    #[error("{0}")]
    BadRequest(String),
    /// Storage failed (details logged only).
    #[error("storage unavailable")]
    Storage(#[from] StorageError),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Adds the headers the status calls for (`WWW-Authenticate`, `Retry-After`) to a response.
    fn decorate(&self, mut response: Response) -> Response {
        let h = response.headers_mut();
        match self {
            ApiError::Unauthorized => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"touchpoint\""),
                );
            }
            ApiError::RateLimited(wait) => {
                h.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(*wait)),
                );
            }
            ApiError::Storage(e) => tracing::error!(error = %e, "backend api storage error"),
            _ => {}
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody {
            error: self.to_string(),
        });
        self.decorate((self.status(), body).into_response())
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> ApiError {
        match e {
            AdminError::Storage(s) => ApiError::Storage(s),
            AdminError::NotFound => ApiError::NotFound("profile"),
            other => ApiError::BadRequest(other.to_string()),
        }
    }
}

/// An error answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

/// Answers `body` as JSON with a strong ETag (a hash of the bytes), or 304 without a body when the
/// request's `If-None-Match` names it.
pub fn cached<T: Serialize>(request: &HeaderMap, body: &T) -> Response {
    let bytes = match serde_json::to_vec(body) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "serialising an API answer failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let tag = etag(&bytes);
    let headers = [
        (header::ETAG, tag.clone()),
        (header::CACHE_CONTROL, "private, no-cache".to_owned()),
    ];
    if request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| none_match(v, &tag))
    {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// The ETag of an answer: the first 128 bits of its SHA-256, quoted.
fn etag(bytes: &[u8]) -> String {
    format!("\"{}\"", hex::encode(&Sha256::digest(bytes)[..16]))
}

/// Whether an `If-None-Match` value matches the tag (weak comparison, as RFC 9110 asks for GET).
fn none_match(header_value: &str, tag: &str) -> bool {
    header_value.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == tag
    })
}

/// Reads an external id `kind:value` (e.g. `user_id:u-1`, `email:ada@example.com`), normalising
/// emails and phone numbers as resolution does.
pub fn parse_external_id(text: &str) -> Result<Identifier, ApiError> {
    let (kind, value) = text
        .split_once(':')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{text:?} is not an external id: expected kind:value, e.g. user_id:u-1"
            ))
        })?;
    let q = [
        ("kind".to_owned(), kind.to_owned()),
        ("value".to_owned(), value.to_owned()),
    ]
    .into();
    Ok(crate::profiles::api::identifier_from_query(&q)?)
}

/// The live profile an identifier belongs to (following merges), if any.
pub async fn resolve(state: &AppState, id: &Identifier) -> Result<Option<ProfileId>, ApiError> {
    let Some(mut current) = state.profiles.lookup(id).await? else {
        return Ok(None);
    };
    // A merge chain is never longer than the number of merges; bound it anyway.
    for _ in 0..64 {
        match state.profiles.profile(&current).await? {
            None => return Ok(None),
            Some((_, _, None)) => return Ok(Some(current)),
            Some((_, _, Some(next))) => current = next,
        }
    }
    Ok(None)
}

/// The profile an external id names, or 404.
pub async fn profile_of(state: &AppState, external_id: &str) -> Result<ProfileId, ApiError> {
    let id = parse_external_id(external_id)?;
    resolve(state, &id)
        .await?
        .ok_or(ApiError::NotFound("profile"))
}

/// Reads a time given as milliseconds since the Unix epoch, RFC 3339 (`2026-01-02T03:04:05Z`) or
/// a date (`2026-01-02`, midnight UTC).
pub fn parse_time(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Ok(ms) = t.parse::<i64>() {
        return Some(ms);
    }
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
        return Some(dt.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| dt.and_utc().timestamp_millis())
}

/// A time parameter, or 400 naming it.
pub fn time_param(name: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => parse_time(v).map(Some).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{name} must be milliseconds since the epoch, RFC 3339 or YYYY-MM-DD, got {v:?}"
            ))
        }),
    }
}

/// Splits a comma-separated list parameter (empty items dropped).
pub fn list_param(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Milliseconds as RFC 3339 UTC with milliseconds (`2026-01-02T03:04:05.678Z`).
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_ids_are_split_at_the_first_colon_and_normalised() {
        assert_eq!(
            parse_external_id("user_id:u:1").unwrap(),
            Identifier::new("user_id", "u:1")
        );
        assert_eq!(
            parse_external_id("email: Ada@Example.COM").unwrap(),
            Identifier::new("email", "ada@example.com")
        );
        assert!(parse_external_id("u-1").is_err());
        assert!(parse_external_id(":u-1").is_err());
        assert!(parse_external_id("email:not-an-email").is_err());
    }

    #[test]
    fn times_are_read_as_milliseconds_rfc3339_or_dates() {
        assert_eq!(parse_time("1700000000000"), Some(1_700_000_000_000));
        assert_eq!(parse_time("2018-01-02"), Some(1_514_851_200_000));
        assert_eq!(
            parse_time("2018-01-05T00:16:35.663Z"),
            Some(1_515_111_395_663)
        );
        assert_eq!(
            parse_time("2018-01-05T01:16:35.663+01:00"),
            Some(1_515_111_395_663)
        );
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(iso(1_515_111_395_663), "2018-01-05T00:16:35.663Z");
        assert!(time_param("start", Some("nope")).is_err());
        assert_eq!(time_param("start", Some(" ")).unwrap(), None);
    }

    #[test]
    fn etags_match_exact_weak_listed_and_star_validators() {
        let tag = etag(b"{}");
        assert!(tag.starts_with('"') && tag.ends_with('"') && tag.len() == 34);
        assert_ne!(tag, etag(b"{ }"));
        assert!(none_match(&tag, &tag));
        assert!(none_match(&format!("W/{tag}"), &tag));
        assert!(none_match(&format!("\"other\", {tag}"), &tag));
        assert!(none_match("*", &tag));
        assert!(!none_match("\"other\"", &tag));
    }

    #[test]
    fn list_parameters_drop_empty_items() {
        assert_eq!(list_param(Some("a, b,,c ")), vec!["a", "b", "c"]);
        assert!(list_param(None).is_empty());
    }
}
