//! Admin API of the destinations: status and counts, the delivery log with dead letters, replay.

use super::Destinations;
use super::store::{LogEntry, OutboxRow, OutboxStatus};
use crate::admin::{Admin, AdminError};
use crate::hardening::{Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::response::Html;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

/// The destination routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/destinations", get(list))
        .route("/admin/destinations/{name}/log", get(log))
        .route("/admin/destinations/{name}/replay", post(replay))
        .route("/destinations", get(|| async { Html(PAGE) }))
        .merge(super::meta::replace::routes())
}

/// The delivery-log page (per-destination outbox counts, every attempt, dead letters, replay);
/// data is rendered with `textContent`.
pub const PAGE: &str = include_str!("../../assets/destinations.html");

fn known(d: &Destinations, name: &str) -> Result<(), AdminError> {
    if super::ALL.contains(&name) || d.enabled.contains_key(name) {
        Ok(())
    } else {
        Err(AdminError::NotFound)
    }
}

/// Status of every destination: enabled or not, outbox counts by status, counters. No secrets.
pub async fn status(d: &Destinations) -> Result<Value, AdminError> {
    let counts = d.store.counts().await?;
    let mut out = Vec::new();
    for name in super::ALL {
        let mut by_status = json!({"pending": 0, "delivering": 0, "delivered": 0, "dead": 0});
        for (dest, status, n) in &counts {
            if dest == name {
                by_status[status.as_str()] = json!(n);
            }
        }
        let metrics = d.counters.get(name).map(|c| {
            json!({
                "delivered": c.delivered.load(Ordering::Relaxed),
                "failed": c.failed.load(Ordering::Relaxed),
                "dead": c.dead.load(Ordering::Relaxed),
                "retried": c.retried.load(Ordering::Relaxed),
                "consentSkipped": c.consent_skipped.load(Ordering::Relaxed),
            })
        });
        out.push(json!({
            "name": name,
            "enabled": d.enabled.contains_key(name),
            "outbox": by_status,
            "metrics": metrics,
            "consentCategories": d.consent.categories_of(name),
        }));
    }
    Ok(json!({"destinations": out}))
}

async fn list(_: Admin, State(state): State<AppState>) -> Result<Json<Value>, AdminError> {
    Ok(Json(status(&state.destinations).await?))
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<i64>,
}

async fn log(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<Limit>,
) -> Result<Json<Value>, AdminError> {
    let d = &state.destinations;
    known(d, &name)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let log: Vec<LogEntry> = d.store.log(&name, limit).await?;
    let dead: Vec<OutboxRow> = d.store.rows(&name, OutboxStatus::Dead, limit).await?;
    let pending: Vec<OutboxRow> = d.store.rows(&name, OutboxStatus::Pending, limit).await?;
    Ok(Json(
        json!({"name": name, "log": log, "dead": dead, "pending": pending}),
    ))
}

async fn replay(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let d = &state.destinations;
    known(d, &name)?;
    let n = d.store.replay(&name, d.clock.now_ms()).await?;
    tracing::info!(destination = %name, replayed = n, "dead letters replayed");
    d.wake.notify_one();
    Ok(Json(json!({"name": name, "replayed": n})))
}
