//! Privacy admin API (admin token only): regulations — one per erasure request, created by
//! `DELETE /admin/profiles/{id}` — with their status per destination, and running the retention
//! purge now.

use crate::admin::{Admin, AdminError};
use crate::hardening::{Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

/// The privacy routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/regulations", get(list))
        .route("/admin/regulations/{id}", get(one))
        .route("/admin/retention/run", post(run_retention))
}

#[derive(Deserialize)]
struct Page {
    limit: Option<i64>,
}

async fn list(
    _: Admin,
    State(state): State<AppState>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, AdminError> {
    let limit = page.limit.unwrap_or(50).clamp(1, 500);
    let regulations = state.privacy.store.regulations(limit).await?;
    Ok(Json(json!({ "regulations": regulations })))
}

async fn one(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let regulation = state
        .privacy
        .store
        .regulation(&id)
        .await?
        .ok_or(AdminError::NotFound)?;
    Ok(Json(json!(regulation)))
}

async fn run_retention(_: Admin, State(state): State<AppState>) -> Result<Json<Value>, AdminError> {
    let policy = &state.privacy.retention;
    let now = chrono::Utc::now().timestamp_millis();
    match super::retention::run_once(state.privacy.store.as_ref(), policy, now).await? {
        Some(purged) => Ok(Json(
            json!({"retentionDays": policy.days, "purged": purged}),
        )),
        None => Err(AdminError::BadRequest(
            "retention is off: set TOUCHPOINT_RETENTION_DAYS to a number of days".into(),
        )),
    }
}
