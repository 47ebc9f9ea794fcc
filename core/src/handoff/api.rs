//! The handoff log in the admin API (`GET /admin/handoffs`, a person's score at
//! `GET /admin/handoffs/scores/{profile}`, `POST /admin/handoffs/tick` to run the time-based part
//! now) and its console page (`/handoffs`).

use crate::admin::{Admin, AdminError};
use crate::hardening::{Path, Query};
use crate::identity::ProfileId;
use crate::state::AppState;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

/// The console page of the handoff log.
pub const PAGE: &str = include_str!("../../assets/handoffs.html");
/// Its script.
pub const SCRIPT: &str = include_str!("../../assets/handoffs.js");

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/handoffs", get(|| async { Html(PAGE) }))
        .route("/assets/handoff/handoffs.js", get(script))
        .route("/admin/handoffs", get(list))
        .route("/admin/handoffs/tick", post(tick))
        .route("/admin/handoffs/scores/{profile}", get(score))
}

async fn script() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/javascript; charset=utf-8",
        )],
        SCRIPT,
    )
        .into_response()
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    profile: Option<ProfileId>,
    limit: Option<i64>,
}

/// Every handoff with its rule, score, team, rep and state, newest first; the rules and reps.
async fn list(
    _: Admin,
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, AdminError> {
    let Some(h) = &state.handoff else {
        return Ok(Json(json!({"enabled": false, "handoffs": []})));
    };
    if let Some(s) = &q.state
        && !["pending", "open", "reminded", "completed", "failed"].contains(&s.as_str())
    {
        return Err(AdminError::BadRequest(
            "state must be pending, open, reminded, completed or failed".into(),
        ));
    }
    let rows = h
        .store
        .list(
            q.state.as_deref(),
            q.profile.as_ref(),
            q.limit.unwrap_or(100).clamp(1, 1000),
        )
        .await?;
    let m = h.model();
    let (cursor, profiles_cursor) = h.store.cursors().await?;
    Ok(Json(json!({
        "enabled": true,
        "now": h.clock.now_ms(),
        "cursor": cursor,
        "profilesCursor": profiles_cursor,
        "handoffs": rows,
        "rules": m.rules.iter().map(|r| json!({"id": r.id, "kind": r.trigger.kind(), "priority": r.priority.as_str()})).collect::<Vec<_>>(),
        "reps": m.reps.iter().map(|r| json!({"id": r.id, "team": r.team, "capacity": r.capacity,
            "salesforce": r.salesforce.is_some(), "hubspot": r.hubspot.is_some()})).collect::<Vec<_>>(),
    })))
}

/// Runs the time-based rules, pending deliveries and reminders now.
async fn tick(_: Admin, State(state): State<AppState>) -> Result<Json<Value>, AdminError> {
    let Some(h) = &state.handoff else {
        return Err(AdminError::NotFound);
    };
    match h.tick().await {
        Ok(r) => Ok(Json(json!(r))),
        Err(super::stage::HandoffError::Storage(e)) => Err(AdminError::Storage(e)),
        Err(e) => Err(AdminError::BadRequest(e.to_string())),
    }
}

/// A person's last recorded score and breakdown.
async fn score(
    _: Admin,
    State(state): State<AppState>,
    Path(profile): Path<ProfileId>,
) -> Result<Json<Value>, AdminError> {
    let Some(h) = &state.handoff else {
        return Err(AdminError::NotFound);
    };
    let Some((total, breakdown)) = h.store.score(&profile).await? else {
        return Err(AdminError::NotFound);
    };
    let breakdown: Value = serde_json::from_str(&breakdown).unwrap_or(Value::Null);
    Ok(Json(
        json!({"profile": profile, "score": total, "breakdown": breakdown}),
    ))
}
