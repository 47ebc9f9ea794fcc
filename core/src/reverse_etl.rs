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

/// A row's `cursor` column as text (a string or a number).
fn cursor_of(row: &Map<String, Value>) -> Option<String> {
    match row.get("cursor") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
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
    let cursor = cursor_of(&row).ok_or("missing cursor column")?;
    row.remove("cursor");
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

/// What a run makes of the rows its query returned.
#[derive(Debug, Default)]
pub struct ReadRows {
    /// Rows that became messages, with their position.
    pub messages: Vec<(usize, touchpoint_tracking_plan::message::Parsed)>,
    /// Rows left out, with their position and why (no `user_id`, not JSON, not a message).
    pub skipped: Vec<(usize, String)>,
    /// The last cursor any row carried, bad rows included, so one bad row does not hold the
    /// sync back forever; `None` when no row had one.
    pub cursor: Option<String>,
}

/// Turns the rows of one run into messages; a bad row is skipped and reported, never stops the run.
pub fn read_rows(sync: &str, rows: &[String]) -> ReadRows {
    let mut out = ReadRows::default();
    for (index, text) in rows.iter().enumerate() {
        let row: Map<String, Value> = match serde_json::from_str(text) {
            Ok(row) => row,
            Err(e) => {
                out.skipped.push((index, e.to_string()));
                continue;
            }
        };
        let cursor = cursor_of(&row);
        let parsed = row_to_identify(sync, row)
            .and_then(|(message, _)| Message::from_value(message, None).map_err(|e| e.to_string()));
        match parsed {
            Ok(p) => out.messages.push((index, p)),
            Err(reason) => out.skipped.push((index, reason)),
        }
        if cursor.is_some() {
            out.cursor = cursor;
        }
    }
    out
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
    let read = read_rows(name, &rows);
    for (index, reason) in &read.skipped {
        tracing::warn!(sync = %name, row = index, error = %reason, "reverse-ETL row skipped");
    }
    let parsed = read.messages;
    let Some(last_cursor) = read.cursor else {
        // No row said where it stands: nothing to move past (the next run reads them again).
        return Ok(0);
    };
    let n = rows.len();
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
    let rows = run_once(&state, &sync).await.map_err(|e| match e {
        SyncError::Storage(e) => AdminError::Storage(e),
        SyncError::NoSource(_) => AdminError::BadRequest(e.to_string()),
        // The replica or the intake failed: not the caller's request.
        SyncError::Query(_) | SyncError::Intake(_) | SyncError::Row { .. } => {
            AdminError::Upstream(e.to_string())
        }
    })?;
    Ok(Json(json!({"sync": sync.config.name, "rows": rows})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_row_is_skipped_and_the_cursor_still_moves_past_it() {
        let rows = vec![
            r#"{"user_id": "u-1", "cursor": "2026-11-01T00:00:00Z", "plan_tier": "pro"}"#
                .to_owned(),
            r#"{"user_id": null, "cursor": "2026-11-02T00:00:00Z"}"#.to_owned(),
            "not json".to_owned(),
            r#"{"user_id": "u-3", "cursor": "2026-11-03T00:00:00Z"}"#.to_owned(),
            r#"{"user_id": "u-4"}"#.to_owned(),
        ];
        let read = read_rows("crm", &rows);
        let kept: Vec<usize> = read.messages.iter().map(|(i, _)| *i).collect();
        assert_eq!(kept, vec![0, 3]);
        let skipped: Vec<usize> = read.skipped.iter().map(|(i, _)| *i).collect();
        assert_eq!(skipped, vec![1, 2, 4]);
        assert!(read.skipped[0].1.contains("user_id"), "{:?}", read.skipped);
        assert_eq!(read.cursor.as_deref(), Some("2026-11-03T00:00:00Z"));
        // Only a bad row, with its cursor: the run still moves past it.
        let read = read_rows("crm", &rows[1..2]);
        assert!(read.messages.is_empty());
        assert_eq!(read.cursor.as_deref(), Some("2026-11-02T00:00:00Z"));
    }

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
