//! Admin API (bearer admin token, never the write key): sources, stored messages, plan reload, and
//! the live debugger page and stream.

use crate::debugger::{self, DebugEvent};
use crate::domain::WriteKey;
use crate::state::AppState;
use crate::storage::StorageError;
use axum::extract::{FromRequestParts, Path, Query, State};
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
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match &self {
            AdminError::Unauthorized => StatusCode::UNAUTHORIZED,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::NotFound => StatusCode::NOT_FOUND,
            AdminError::Plan(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AdminError::Storage(e) => {
                tracing::error!(error = %e, "admin storage error");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        (status, Json(json!({"error": self.to_string()}))).into_response()
    }
}

/// Proof that the request carried the admin token (`Authorization: Bearer …` or `?token=` for
/// EventSource, which cannot set headers).
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AdminError> {
        let from_header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::to_owned);
        let from_query = || {
            parts.uri.query().and_then(|q| {
                q.split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .find(|(k, _)| *k == "token")
                    .map(|(_, v)| percent_decode(v))
            })
        };
        let given = from_header
            .or_else(from_query)
            .ok_or(AdminError::Unauthorized)?;
        let expected = state.admin_token.expose_secret().as_bytes();
        if bool::from(given.as_bytes().ct_eq(expected)) {
            Ok(Admin)
        } else {
            Err(AdminError::Unauthorized)
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Script shared by the admin pages (token, text-only DOM helpers, API client).
const ADMIN_JS: &str = include_str!("../assets/admin.js");
/// Styles shared by the admin pages.
const ADMIN_CSS: &str = include_str!("../assets/admin.css");

/// The admin and debugger routes.
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
        .route("/debugger/stream", get(stream_debugger))
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
    Json(input): Json<NewSource>,
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
    _: Admin,
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
    use super::percent_decode;

    #[test]
    fn query_tokens_are_percent_decoded() {
        assert_eq!(percent_decode("a%2Bb%20c+d"), "a+b c d");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
