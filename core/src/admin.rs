//! Admin API (bearer admin token, never the write key): sources, stored messages, plan reload, and
//! the live debugger page and stream.

use crate::debugger::{self, DebugEvent};
use crate::domain::WriteKey;
use crate::hardening::{JsonBody, Path, Query};
use crate::state::AppState;
use crate::storage::StorageError;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use subtle::ConstantTimeEq;
use tokio_stream::wrappers::BroadcastStream;

/// Errors of the admin API.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No or wrong admin token.
    #[error("admin token required")]
    Unauthorized,
    /// Bad input.
    #[error("{0}")]
    BadRequest(String),
    /// Nothing there.
    #[error("not found")]
    NotFound,
    /// The plan file failed to load; the old plan stays in force.
    #[error("{0}")]
    Plan(String),
    /// Storage failed (details logged only).
    #[error("storage unavailable")]
    Storage(#[from] StorageError),
    /// A system Touchpoint reads from failed (a reverse-ETL replica): 502.
    #[error("{0}")]
    Upstream(String),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            AdminError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AdminError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            AdminError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            AdminError::Plan(_) => (StatusCode::UNPROCESSABLE_ENTITY, "plan_invalid"),
            AdminError::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream_failed"),
            AdminError::Storage(e) => {
                tracing::error!(error = %e, "admin storage error");
                (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
            }
        };
        (
            status,
            Json(json!({"error": self.to_string(), "code": code})),
        )
            .into_response()
    }
}

/// The shortest admin token the server starts with: anything shorter is guessable.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Why an admin token cannot be used; checked once at start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenProblem {
    /// Empty or shorter than [`MIN_TOKEN_CHARS`].
    #[error(
        "the admin token (TOUCHPOINT_ADMIN_TOKEN) has {0} characters; at least {MIN_TOKEN_CHARS} are required: set a long random value"
    )]
    TooShort(usize),
}

/// Refuses an empty or short admin token (surrounding whitespace does not count).
pub fn check_token(token: &str) -> Result<(), TokenProblem> {
    let chars = token.trim().chars().count();
    if chars < MIN_TOKEN_CHARS {
        return Err(TokenProblem::TooShort(chars));
    }
    Ok(())
}

/// Proof that the request carried the admin token in `Authorization: Bearer …`. A token in the
/// query string is refused here: URLs end up in logs, history and `Referer` headers.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AdminError> {
        let given = bearer(parts).ok_or(AdminError::Unauthorized)?;
        verify(&given, state).map(|()| Admin)
    }
}

/// Proof of the admin token for the SSE debugger stream only: the header, or `?token=` because
/// `EventSource` cannot set headers. No other route accepts a token in the URL.
pub struct AdminStream;

impl FromRequestParts<AppState> for AdminStream {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AdminError> {
        #[derive(Deserialize)]
        struct TokenQuery {
            token: Option<String>,
        }
        let given = match bearer(parts) {
            Some(t) => t,
            None => axum::extract::Query::<TokenQuery>::try_from_uri(&parts.uri)
                .ok()
                .and_then(|axum::extract::Query(q)| q.token)
                .ok_or(AdminError::Unauthorized)?,
        };
        verify(&given, state).map(|()| AdminStream)
    }
}

fn bearer(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::to_owned)
}

fn verify(given: &str, state: &AppState) -> Result<(), AdminError> {
    let expected = state.admin_token.expose_secret().as_bytes();
    if bool::from(given.as_bytes().ct_eq(expected)) {
        Ok(())
    } else {
        Err(AdminError::Unauthorized)
    }
}

/// Script shared by the admin pages (token, text-only DOM helpers, API client).
const ADMIN_JS: &str = include_str!("../assets/admin.js");
/// Styles shared by the admin pages.
const ADMIN_CSS: &str = include_str!("../assets/admin.css");

/// The debugger's live stream: kept apart because it is open for as long as the page is, so
/// the request timeout must not apply to it.
pub fn stream_routes() -> Router<AppState> {
    Router::new().route("/debugger/stream", get(stream_debugger))
}

/// The admin and debugger routes (but the stream, see [`stream_routes`]).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/sources", get(list_sources).post(create_source))
        .route("/admin/sources/{name}/messages", get(source_messages))
        .route("/admin/messages/{message_id}", get(message))
        .route("/admin/plan", get(plan_info))
        .route("/admin/plan/reload", post(reload_plan))
        .route("/debugger", get(|| async { Html(debugger::PAGE) }))
        .route(
            "/assets/admin.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    ADMIN_JS,
                )
            }),
        )
        .route(
            "/assets/admin.css",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
                    ADMIN_CSS,
                )
            }),
        )
}

async fn list_sources(_: Admin, State(state): State<AppState>) -> Result<Json<Value>, AdminError> {
    let rows = state.store.sources().await?;
    Ok(Json(json!(
        rows.iter()
            .map(|r| json!({"id": r.id, "name": r.name, "writeKey": r.write_key}))
            .collect::<Vec<_>>()
    )))
}

#[derive(Deserialize)]
struct NewSource {
    name: String,
}

async fn create_source(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(input): JsonBody<NewSource>,
) -> Result<(StatusCode, Json<Value>), AdminError> {
    let name = input.name.trim();
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(AdminError::BadRequest(
            "name must be 1-64 characters of letters, digits, '-' or '_'".into(),
        ));
    }
    if state.sources.by_name(name).is_some() {
        return Err(AdminError::BadRequest(format!("source {name:?} exists")));
    }
    let key = WriteKey::generate();
    let row = state.store.upsert_source(name, key.as_ref()).await?;
    state.sources.insert(row.clone());
    tracing::info!(source = %row.name, "source created");
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": row.id, "name": row.name, "writeKey": row.write_key})),
    ))
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<i64>,
}

async fn source_messages(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<Limit>,
) -> Result<Json<Value>, AdminError> {
    let source = state.sources.by_name(&name).ok_or(AdminError::NotFound)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let rows = state.store.recent_messages(source.id, limit).await?;
    Ok(Json(json!(rows)))
}

async fn message(
    _: Admin,
    State(state): State<AppState>,
    Path(message_id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let rows = state.store.messages_by_id(&message_id).await?;
    if rows.is_empty() {
        return Err(AdminError::NotFound);
    }
    Ok(Json(json!(rows)))
}

async fn plan_info(_: Admin, State(state): State<AppState>) -> Json<Value> {
    Json(json!({"version": &*state.plan.current().version}))
}

async fn reload_plan(_: Admin, State(state): State<AppState>) -> Result<Json<Value>, AdminError> {
    let loaded = state
        .plan
        .reload()
        .map_err(|e| AdminError::Plan(e.to_string()))?;
    Ok(Json(json!({"version": &*loaded.version})))
}

#[derive(Deserialize)]
struct StreamQuery {
    source: Option<String>,
}

async fn stream_debugger(
    _: AdminStream,
    State(state): State<AppState>,
    Query(q): Query<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AdminError> {
    let live = BroadcastStream::new(state.debugger.subscribe());
    let wanted = q.source.filter(|s| !s.is_empty());
    // Recent history first, oldest to newest, so a newly opened debugger is not empty.
    let mut backlog = Vec::new();
    for source in state.sources.all() {
        if wanted.as_deref().is_some_and(|w| w != source.name) {
            continue;
        }
        for m in state.store.recent_messages(source.id, 50).await? {
            backlog.push((m.seq, debugger::stored_line(&source.name, &m, false)));
        }
    }
    backlog.sort_by_key(|(seq, _)| *seq);
    let history = stream::iter(
        backlog
            .into_iter()
            .map(|(_, line)| Ok(Event::default().data(line.to_string()))),
    );
    let live = live.filter_map(move |item| {
        let keep = match &item {
            Ok(DebugEvent { source, .. }) => wanted.as_deref().is_none_or(|w| w == &**source),
            Err(_) => false,
        };
        async move {
            match item {
                Ok(e) if keep => Some(Ok(Event::default().data(&*e.json))),
                _ => None,
            }
        }
    });
    Ok(Sse::new(history.chain(live)).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::{MIN_TOKEN_CHARS, TokenProblem, check_token};

    #[test]
    fn empty_and_short_admin_tokens_are_refused() {
        assert_eq!(check_token(""), Err(TokenProblem::TooShort(0)));
        assert_eq!(check_token("   "), Err(TokenProblem::TooShort(0)));
        assert_eq!(
            check_token("dev-admin-token"),
            Err(TokenProblem::TooShort(15))
        );
        assert!(
            check_token("  short-token  ")
                .unwrap_err()
                .to_string()
                .contains("TOUCHPOINT_ADMIN_TOKEN")
        );
    }

    #[test]
    fn tokens_of_sixteen_characters_or_more_are_accepted() {
        assert_eq!(check_token(&"x".repeat(MIN_TOKEN_CHARS)), Ok(()));
        assert_eq!(check_token("test-admin-token"), Ok(()));
        assert_eq!(check_token("dev-admin-token-local"), Ok(()));
    }
}
