//! Reverse ETL: a scheduled SQL query against a production PostgreSQL read replica with an
//! incremental cursor; each row becomes an `identify` (e.g. current_subscription_status,
//! total_projects_created, last_api_call_timestamp) that goes through the normal durable intake.
//!
//! The query must return a `user_id` column and a `cursor` column, take the last cursor as `$1`
//! (NULL on the first run) and order by the cursor, e.g.
//! `SELECT id AS user_id, status AS current_subscription_status, updated_at AS cursor FROM users
//!  WHERE updated_at > COALESCE($1::timestamptz, '-infinity') ORDER BY updated_at LIMIT 1000`.
//! Every other column becomes a trait. Message ids derive from (sync, user, cursor), so a crash
//! between the write and the cursor update re-sends rows that are then deduplicated.

use crate::admin::{Admin, AdminError};
use crate::ingest::{self, prepare::Origin};
use crate::state::AppState;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::sync::Arc;
use std::time::Duration;
use touchpoint_tracking_plan::Message;

/// One configured sync.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// Name (cursor key), e.g. `production`.
    pub name: String,
    /// Read-replica URL (holds a password: a secret).
    pub url: SecretString,
    /// The incremental query (see the module docs).
    pub query: String,
    /// Time between runs.
    pub interval: Duration,
    /// The source its identifies are recorded under.
    pub source: String,
}

/// Why a sync run failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The replica query failed.
    #[error("replica query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// Reading or writing the cursor failed.
    #[error("cursor storage failed: {0}")]
    Storage(#[from] crate::storage::StorageError),
    /// A row lacks a required column.
    #[error("row {index}: {reason}")]
    Row {
        /// Row position in the result.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The intake refused the batch (overload: retried next run).
    #[error("intake refused the rows: {0}")]
    Intake(String),
    /// The configured source does not exist.
    #[error("source {0:?} does not exist")]
    NoSource(String),
}

/// A running sync: its configuration and replica pool.
pub struct ReverseEtl {
    config: SyncConfig,
    pool: PgPool,
}

impl ReverseEtl {
    /// Prepares the sync (the replica is connected lazily).
    pub fn new(config: SyncConfig) -> Result<ReverseEtl, SyncError> {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy(config.url.expose_secret())?;
        Ok(ReverseEtl { config, pool })
    }

    /// The configuration.
    pub fn config(&self) -> &SyncConfig {
        &self.config
    }
}

/// Turns one result row into an identify message; `cursor` is the row's cursor as text.
pub fn row_to_identify(sync: &str, row: Map<String, Value>) -> Result<(Value, String), String> {
    let mut row = row;
    let user_id = match row.remove("user_id") {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err("missing user_id column (text or number)".into()),
    };
    let cursor = match row.remove("cursor") {
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err("missing cursor column".into()),
    };
    let digest = Sha256::digest(format!("{sync}\u{0}{user_id}\u{0}{cursor}"));
    let message_id = format!("retl-{}", &hex::encode(digest)[..32]);
    let timestamp = crate::ingest::prepare::parse_time(&cursor)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let traits: Map<String, Value> = row.into_iter().filter(|(_, v)| !v.is_null()).collect();
    let mut message = json!({
        "type": "identify",
        "messageId": message_id,
        "userId": user_id,
        "traits": traits,
        "context": {"library": {"name": "touchpoint-reverse-etl", "version": env!("CARGO_PKG_VERSION")},
                    "reverseEtl": {"sync": sync, "cursor": cursor}},
    });
    if let Some(ts) = timestamp {
        message["timestamp"] = Value::String(ts);
    }
    Ok((message, cursor))
}

/// Runs the sync once: query after the stored cursor, ingest durably, then move the cursor.
/// Returns the number of rows read.
pub async fn run_once(state: &AppState, sync: &ReverseEtl) -> Result<usize, SyncError> {
    let name = &sync.config.name;
    let source = state
        .sources
        .by_name(&sync.config.source)
        .ok_or_else(|| SyncError::NoSource(sync.config.source.clone()))?;
    let cursor = state.store.sync_cursor(name).await?;
    let sql = format!(
        "SELECT CAST(row_to_json(q) AS TEXT) FROM ({}) q",
        sync.config.query
    );
    let rows: Vec<String> = sqlx::query_scalar(&sql)
        .bind(cursor)
        .fetch_all(&sync.pool)
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut parsed = Vec::with_capacity(rows.len());
    let mut last_cursor = String::new();
    for (index, text) in rows.iter().enumerate() {
        let row: Map<String, Value> = serde_json::from_str(text).map_err(|e| SyncError::Row {
            index,
            reason: e.to_string(),
        })?;
        let (message, cursor) =
            row_to_identify(name, row).map_err(|reason| SyncError::Row { index, reason })?;
        let p = Message::from_value(message, None).map_err(|e| SyncError::Row {
            index,
            reason: e.to_string(),
        })?;
        parsed.push((index, p));
        last_cursor = cursor;
    }
    let n = parsed.len();
    // In request-sized chunks: intake measures what one request may store.
    let mut parsed = parsed.into_iter().peekable();
    while parsed.peek().is_some() {
        let chunk: Vec<_> = parsed.by_ref().take(200).collect();
        let summary = ingest::accept(state, &source, Origin::Direct, chunk, Vec::new())
            .await
            .map_err(|e| SyncError::Intake(e.to_string()))?;
        for r in &summary.rejected {
            tracing::warn!(sync = %name, row = r.index, code = r.code, error = %r.error, "reverse-ETL row refused");
        }
    }
    state.store.set_sync_cursor(name, &last_cursor).await?;
    tracing::info!(sync = %name, rows = n, cursor = %last_cursor, "reverse ETL rows ingested");
    Ok(n)
}

/// Runs the sync forever on its interval.
pub fn spawn(state: AppState, sync: Arc<ReverseEtl>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(sync.config.interval);
        loop {
            tick.tick().await;
            // Drain: keep going while a run returns rows (the query has a LIMIT).
            for _ in 0..1000 {
                match run_once(&state, &sync).await {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(sync = %sync.config.name, error = %e, "reverse ETL run failed");
                        break;
                    }
                }
            }
        }
    });
}

/// `POST /admin/reverse-etl/run`: runs the sync now.
pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/reverse-etl/run", post(run_now))
}

async fn run_now(_: Admin, State(state): State<AppState>) -> Result<Json<Value>, AdminError> {
    let sync = state
        .reverse_etl
        .clone()
        .ok_or_else(|| AdminError::BadRequest("no reverse ETL sync is configured".into()))?;
    let rows = run_once(&state, &sync)
        .await
        .map_err(|e| AdminError::BadRequest(e.to_string()))?;
    Ok(Json(json!({"sync": sync.config.name, "rows": rows})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_becomes_an_identify_with_a_stable_message_id() {
        let row = json!({"user_id": 17, "cursor": "2026-11-25T10:00:00+00:00",
                         "current_subscription_status": "active", "total_projects_created": 3, "gone": null});
        let (m, cursor) = row_to_identify("prod", row.as_object().unwrap().clone()).unwrap();
        assert_eq!(m["userId"], "17");
        assert_eq!(m["traits"]["total_projects_created"], 3);
        assert!(m["traits"].get("gone").is_none());
        assert_eq!(m["timestamp"], "2026-11-25T10:00:00.000Z");
        assert_eq!(cursor, "2026-11-25T10:00:00+00:00");
        let (again, _) = row_to_identify("prod", row.as_object().unwrap().clone()).unwrap();
        assert_eq!(m["messageId"], again["messageId"]);
    }

    #[test]
    fn a_row_without_user_id_is_refused() {
        let row = json!({"cursor": "1"});
        assert!(row_to_identify("prod", row.as_object().unwrap().clone()).is_err());
    }
}
