//! The warehouse export: events, identities and audience transitions out of Touchpoint, for
//! "all other reporting" to draw on. Two targets, each a pipeline stage with its own cursors (so
//! retries, the quarantine and `/metrics` come from the runner):
//!
//! - Parquet files in a folder (`TOUCHPOINT_WAREHOUSE_DIR`), partitioned by day and event
//!   (`events/date=2026-12-01/event=trial_started/part-<first>-<last>.parquet`), with columns
//!   typed by the tracking plan and exactly-once commits ([`stage`]);
//! - a PostgreSQL warehouse (`TOUCHPOINT_WAREHOUSE_PG_URL`) in Segment's warehouse schema
//!   ([`postgres`]).
//!
//! Both carry identity tables (identifier → profile, profile → canonical profile after merges)
//! so analysts can stitch history themselves. Rows are decided by pure code ([`records`],
//! [`files`]); the stages only read, write and commit.

pub mod cli;
pub mod files;
pub mod folder;
pub mod postgres;
pub mod records;
pub mod stage;
pub mod store;

use crate::config::ConfigError;
use crate::pipeline::{Clock, Runner};
use crate::plan::PlanHandle;
use crate::storage::StorageError;
use crate::stores::Stores;
use secrecy::{ExposeSecret, SecretString};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
pub use store::{FilesSummary, Positions, WarehouseStore};
use tokio::sync::Notify;

/// Where and how to export.
#[derive(Clone, Debug)]
pub struct WarehouseConfig {
    /// Folder of the Parquet export (`TOUCHPOINT_WAREHOUSE_DIR`; unset: no Parquet export).
    pub dir: Option<PathBuf>,
    /// PostgreSQL warehouse in Segment's schema (`TOUCHPOINT_WAREHOUSE_PG_URL`; unset: none).
    pub pg_url: Option<SecretString>,
    /// Most log messages (and audience transitions) per step and per file set
    /// (`TOUCHPOINT_WAREHOUSE_BATCH`, default 20000).
    pub batch: i64,
    /// Longest a processed message waits for a Parquet file when fewer than a batch are pending
    /// (`TOUCHPOINT_WAREHOUSE_FLUSH_SECS`, default 60; 0 writes files as soon as messages are
    /// processed). Bigger files compress better and are faster to query.
    pub flush_after: Duration,
}

impl Default for WarehouseConfig {
    fn default() -> Self {
        WarehouseConfig {
            dir: None,
            pg_url: None,
            batch: 20_000,
            flush_after: Duration::from_secs(60),
        }
    }
}

impl WarehouseConfig {
    /// Reads the `TOUCHPOINT_WAREHOUSE_*` variables through `get`.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut c = WarehouseConfig {
            dir: get("TOUCHPOINT_WAREHOUSE_DIR")
                .filter(|v| !v.trim().is_empty())
                .map(PathBuf::from),
            pg_url: get("TOUCHPOINT_WAREHOUSE_PG_URL")
                .filter(|v| !v.trim().is_empty())
                .map(SecretString::from),
            ..Default::default()
        };
        if let Some(url) = &c.pg_url
            && !(url.expose_secret().starts_with("postgres:")
                || url.expose_secret().starts_with("postgresql:"))
        {
            return Err(ConfigError::new(
                "TOUCHPOINT_WAREHOUSE_PG_URL",
                "expected a postgres:// URL",
            ));
        }
        if let Some(v) = get("TOUCHPOINT_WAREHOUSE_BATCH") {
            c.batch =
                crate::config::number("TOUCHPOINT_WAREHOUSE_BATCH", &v)?.clamp(1, 1_000_000) as i64;
        }
        if let Some(v) = get("TOUCHPOINT_WAREHOUSE_FLUSH_SECS") {
            c.flush_after = Duration::from_secs(crate::config::number(
                "TOUCHPOINT_WAREHOUSE_FLUSH_SECS",
                &v,
            )?);
        }
        Ok(c)
    }

    fn settings(&self) -> Settings {
        Settings {
            batch: self.batch,
            flush_after: self.flush_after,
        }
    }
}

/// What the stages need of the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Most messages per step.
    pub batch: i64,
    /// Longest wait for a fuller Parquet file.
    pub flush_after: Duration,
}

/// Why an export step failed.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    /// Touchpoint's database.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The warehouse folder.
    #[error("warehouse folder {path}: {source}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Encoding Parquet.
    #[error("writing Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// The PostgreSQL warehouse.
    #[error("PostgreSQL warehouse: {0}")]
    Warehouse(sqlx::Error),
    /// A message that cannot become a row.
    #[error(transparent)]
    BadMessage(#[from] records::BadMessage),
    /// A background task died.
    #[error("warehouse task failed: {0}")]
    Task(String),
}

impl WarehouseError {
    fn io(path: &Path, source: std::io::Error) -> WarehouseError {
        WarehouseError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

impl From<WarehouseError> for StorageError {
    fn from(e: WarehouseError) -> StorageError {
        match e {
            WarehouseError::Storage(e) => e,
            other => StorageError::Stage(other.to_string()),
        }
    }
}

/// One target's progress, as `/metrics` shows it.
#[derive(Debug)]
pub struct TargetProgress {
    /// `parquet` or `postgres`.
    pub target: &'static str,
    /// Log position exported.
    pub cursor: AtomicI64,
    /// Audience-feed position exported.
    pub audiences_cursor: AtomicI64,
    /// Newest log position seen.
    pub head: AtomicI64,
    /// The profiles stage's cursor seen (what can be exported).
    pub processed: AtomicI64,
    /// Messages exported by this process.
    pub messages: AtomicU64,
    /// Rows written by this process.
    pub rows: AtomicU64,
    /// Files committed by this process.
    pub files: AtomicU64,
    /// Their bytes.
    pub bytes: AtomicU64,
    /// When the last commit happened (ms).
    pub last_commit_ms: AtomicI64,
}

impl TargetProgress {
    /// A target with nothing done yet.
    pub fn new(target: &'static str) -> TargetProgress {
        TargetProgress {
            target,
            cursor: AtomicI64::new(0),
            audiences_cursor: AtomicI64::new(0),
            head: AtomicI64::new(0),
            processed: AtomicI64::new(0),
            messages: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            last_commit_ms: AtomicI64::new(0),
        }
    }

    fn observe(&self, p: &Positions) {
        self.cursor.fetch_max(p.cursor, Ordering::Relaxed);
        self.audiences_cursor
            .fetch_max(p.audiences_cursor, Ordering::Relaxed);
        self.head.fetch_max(p.head, Ordering::Relaxed);
        self.processed.fetch_max(p.processed, Ordering::Relaxed);
    }

    fn committed(&self, cursor: i64, audiences: i64, r: &stage::StepReport, at: i64) {
        self.cursor.fetch_max(cursor, Ordering::Relaxed);
        self.audiences_cursor
            .fetch_max(audiences, Ordering::Relaxed);
        self.messages
            .fetch_add(r.messages as u64, Ordering::Relaxed);
        self.rows.fetch_add(r.rows as u64, Ordering::Relaxed);
        self.files.fetch_add(r.files as u64, Ordering::Relaxed);
        self.bytes.fetch_add(r.bytes, Ordering::Relaxed);
        self.last_commit_ms.store(at, Ordering::Relaxed);
    }
}

/// The enabled targets' progress.
#[derive(Debug, Default)]
pub struct Warehouse {
    /// One per enabled target.
    pub targets: Vec<Arc<TargetProgress>>,
}

/// A counter family: name, help, and how to read it from a target.
type CounterFamily = (&'static str, &'static str, fn(&TargetProgress) -> u64);

/// A gauge family: name, help, and how to read it from a target.
type GaugeFamily = (&'static str, &'static str, fn(&TargetProgress) -> i64);

impl Warehouse {
    /// Records the targets' progress into the current (per-scrape) recorder
    /// (`crate::exposition`); nothing when no target is enabled.
    pub fn record_metrics(&self) {
        let gauges: [GaugeFamily; 3] = [
            (
                "touchpoint_warehouse_cursor",
                "Log position the warehouse target has exported up to.",
                |t| t.cursor.load(Ordering::Relaxed),
            ),
            (
                "touchpoint_warehouse_lag_messages",
                "Log positions processed by the pipeline but not yet exported.",
                |t| (t.processed.load(Ordering::Relaxed) - t.cursor.load(Ordering::Relaxed)).max(0),
            ),
            (
                "touchpoint_warehouse_last_commit_timestamp_seconds",
                "When the target last committed (0: not in this process).",
                |t| t.last_commit_ms.load(Ordering::Relaxed) / 1000,
            ),
        ];
        let counters: [CounterFamily; 4] = [
            (
                "touchpoint_warehouse_messages_total",
                "Log messages exported by this process.",
                |t| t.messages.load(Ordering::Relaxed),
            ),
            (
                "touchpoint_warehouse_rows_total",
                "Rows written (messages, identity changes, audience transitions) by this process.",
                |t| t.rows.load(Ordering::Relaxed),
            ),
            (
                "touchpoint_warehouse_files_total",
                "Parquet files committed by this process.",
                |t| t.files.load(Ordering::Relaxed),
            ),
            (
                "touchpoint_warehouse_bytes_total",
                "Bytes of Parquet committed by this process.",
                |t| t.bytes.load(Ordering::Relaxed),
            ),
        ];
        if self.targets.is_empty() {
            return;
        }
        for (name, help, read) in gauges {
            metrics::describe_gauge!(name, help);
            for t in &self.targets {
                metrics::gauge!(name, "target" => t.target).set(read(t) as f64);
            }
        }
        for (name, help, read) in counters {
            metrics::describe_counter!(name, help);
            for t in &self.targets {
                metrics::counter!(name, "target" => t.target).absolute(read(t));
            }
        }
    }
}

/// Starts the enabled targets' stages under `runner` (when this process runs the pipeline) and
/// returns their progress for `/metrics`.
pub fn start(
    stores: &Stores,
    config: &crate::config::Config,
    plan: Arc<PlanHandle>,
    runner: &Runner,
    clock: Arc<dyn Clock>,
) -> Result<Arc<Warehouse>, WarehouseError> {
    let c = &config.warehouse;
    let mut warehouse = Warehouse::default();
    if let Some(dir) = &c.dir {
        let progress = Arc::new(TargetProgress::new("parquet"));
        warehouse.targets.push(progress.clone());
        if config.process {
            let stage = stage::ParquetStage::new(
                stores.warehouse.clone(),
                folder::Folder::new(dir.clone()),
                plan.clone(),
                c.settings(),
                clock.clone(),
                progress,
            );
            runner
                .clone()
                .spawn(stage, Arc::new(Notify::new()), Arc::new(Notify::new()));
            tracing::info!(dir = %dir.display(), "warehouse: Parquet export on");
        }
    }
    if let Some(url) = &c.pg_url {
        let progress = Arc::new(TargetProgress::new("postgres"));
        warehouse.targets.push(progress.clone());
        if config.process {
            let pool = postgres::connect_lazy(url.expose_secret())?;
            let stage = postgres::PostgresStage::new(
                stores.warehouse.clone(),
                pool,
                plan,
                c.settings(),
                clock,
                progress,
            );
            runner
                .clone()
                .spawn(stage, Arc::new(Notify::new()), Arc::new(Notify::new()));
            tracing::info!(
                url = %crate::startup::redact(url.expose_secret()),
                "warehouse: PostgreSQL export on"
            );
        }
    }
    Ok(Arc::new(warehouse))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warehouse_is_configured_from_the_environment() {
        let c = WarehouseConfig::from_lookup(&|k| match k {
            "TOUCHPOINT_WAREHOUSE_DIR" => Some("/srv/wh".into()),
            "TOUCHPOINT_WAREHOUSE_BATCH" => Some("500".into()),
            "TOUCHPOINT_WAREHOUSE_FLUSH_SECS" => Some("0".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.dir.as_deref(), Some(Path::new("/srv/wh")));
        assert_eq!((c.batch, c.flush_after), (500, Duration::ZERO));
        assert!(c.pg_url.is_none());
        let e = WarehouseConfig::from_lookup(&|k| {
            (k == "TOUCHPOINT_WAREHOUSE_PG_URL").then(|| "mysql://x".into())
        })
        .unwrap_err();
        assert!(e.to_string().contains("TOUCHPOINT_WAREHOUSE_PG_URL"), "{e}");
    }

    #[test]
    fn progress_is_rendered_per_target() {
        let t = Arc::new(TargetProgress::new("parquet"));
        t.processed.store(10, Ordering::Relaxed);
        t.cursor.store(4, Ordering::Relaxed);
        let w = Warehouse { targets: vec![t] };
        let out = crate::exposition::render(|| w.record_metrics());
        assert!(
            out.contains("touchpoint_warehouse_cursor{target=\"parquet\"} 4"),
            "{out}"
        );
        assert!(out.contains("touchpoint_warehouse_lag_messages{target=\"parquet\"} 6"));
        let none = crate::exposition::render(|| Warehouse::default().record_metrics());
        assert!(none.is_empty());
    }
}
