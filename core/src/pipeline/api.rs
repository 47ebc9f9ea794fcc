//! Admin routes of the quarantine: list what the stages set aside, and replay an entry after a fix.

use super::Entry;
use crate::admin::{Admin, AdminError};
use crate::hardening::{Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

/// The quarantine routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/quarantine", get(list))
        .route("/admin/quarantine/{id}/replay", post(replay))
        .route("/admin/pipeline/leases", get(leases))
}

/// Which processing node runs which stage (empty on SQLite, where one process runs them all).
async fn leases(_: Admin, State(state): State<AppState>) -> Result<Json<Value>, AdminError> {
    let Some(leases) = &state.leases else {
        return Ok(Json(json!({"node": null, "leases": []})));
    };
    Ok(Json(json!({
        "node": leases.node,
        "held": leases.held(),
        "liveNodes": leases.live_nodes(),
        "leases": leases.all().await?,
    })))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    /// Include replayed entries too.
    #[serde(default)]
    all: bool,
    #[serde(default)]
    limit: Option<i64>,
}

async fn list(
    _: Admin,
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, AdminError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let entries = state.quarantine.list(!q.all, limit).await?;
    let open: serde_json::Map<String, Value> = state
        .quarantine
        .open_counts()
        .await?
        .into_iter()
        .map(|(stage, n)| (stage, json!(n)))
        .collect();
    Ok(Json(json!({"open": open, "entries": entries})))
}

/// How a replay went.
enum Replay {
    /// Done; for the profiles stage, the message's new log position.
    Done(Option<i64>),
    /// Could not be done (the reason is recorded on the entry).
    Failed(String),
}

async fn replay(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, AdminError> {
    let entry = state
        .quarantine
        .get(id)
        .await?
        .ok_or(AdminError::NotFound)?;
    if entry.replayed_at.is_some() {
        return Err(AdminError::BadRequest(format!(
            "quarantine entry {id} was already replayed"
        )));
    }
    let now = state.clock.now_ms();
    let outcome = replay_entry(&state, &entry, now).await;
    match outcome {
        Replay::Done(position) => {
            state.quarantine.replayed(id, now, None).await?;
            state.pipeline_wake.notify_one();
            tracing::info!(id, stage = %entry.stage, position = entry.position, "quarantined message replayed");
            Ok(Json(
                json!({"replayed": true, "stage": entry.stage, "newPosition": position}),
            ))
        }
        Replay::Failed(why) => {
            state.quarantine.replayed(id, now, Some(&why)).await?;
            Err(AdminError::BadRequest(format!("replay failed: {why}")))
        }
    }
}

/// Replays one entry the way its stage needs: the profiles stage gets the message again at the
/// head of the log (so every later stage sees it in order); the audience stage re-evaluates the
/// message's profiles now; the activation stage re-runs that one position (activations are keyed,
/// so nothing is sent twice).
async fn replay_entry(state: &AppState, entry: &Entry, now: i64) -> Replay {
    let result = match entry.stage.as_str() {
        // `profiles`, or `profiles/P` (one profiles stage per log partition).
        stage if stage == "profiles" || stage.starts_with("profiles/") => {
            match state.quarantine.reappend(entry.position).await {
                Ok(Some(seq)) => Ok(Some(seq)),
                Ok(None) => return Replay::Failed("the message is no longer in the log".into()),
                Err(e) => Err(e),
            }
        }
        "audiences" => state
            .audience_stage
            .reevaluate_position(entry.position, now)
            .await
            .map(|_| None),
        _ => match state
            .destinations
            .replay_position(&entry.cursor, entry.position)
            .await
        {
            Some(r) => r.map(|_| None),
            None => {
                return Replay::Failed(format!(
                    "stage {:?} does not run in this process",
                    entry.stage
                ));
            }
        },
    };
    match result {
        Ok(p) => Replay::Done(p),
        Err(e) => Replay::Failed(e.to_string()),
    }
}
