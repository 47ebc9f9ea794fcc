//! The Parquet target as a pipeline stage (cursors `warehouse_parquet` over the log and
//! `warehouse_parquet_audiences` over the audience feed). A step: take the folder's lock, remove
//! leftovers of interrupted steps (files no commit recorded), read the next processed messages,
//! the identity changes they caused and new audience transitions, turn them into rows
//! ([`super::records`]) and files ([`super::files`]), write the files durably, then record them
//! and move both cursors in one transaction. A crash anywhere before that commit leaves only
//! unrecorded files, which the next step deletes and writes again under the same names.

use super::files::{PlannedFile, plan_files};
use super::folder::Folder;
use super::records::{self, Record};
use super::store::{Commit, FileRow, WarehouseStore};
use super::{Settings, TargetProgress, WarehouseError};
use crate::pipeline::{Batch, Clock, Stage};
use crate::plan::PlanHandle;
use crate::storage::StorageError;
use std::sync::Arc;

/// The log cursor.
pub const CURSOR: &str = "warehouse_parquet";
/// The audience-feed cursor.
pub const AUDIENCES: &str = "warehouse_parquet_audiences";

/// The Parquet export stage.
pub struct ParquetStage {
    store: Arc<dyn WarehouseStore>,
    folder: Folder,
    plan: Arc<PlanHandle>,
    settings: Settings,
    clock: Arc<dyn Clock>,
    progress: Arc<TargetProgress>,
    /// Leftovers were removed since the process started or a step last failed.
    clean: bool,
    /// Since when work has been waiting for a file (ms), to batch small trickles.
    waiting_since: Option<i64>,
}

/// What one step did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// Log messages exported.
    pub messages: usize,
    /// Audience transitions exported.
    pub audience_events: usize,
    /// Rows written (messages, identity changes, audience transitions).
    pub rows: usize,
    /// Files committed.
    pub files: usize,
    /// Their size.
    pub bytes: u64,
    /// Whether the cursors moved.
    pub moved: bool,
}

impl ParquetStage {
    /// A stage writing to `folder`.
    pub fn new(
        store: Arc<dyn WarehouseStore>,
        folder: Folder,
        plan: Arc<PlanHandle>,
        settings: Settings,
        clock: Arc<dyn Clock>,
        progress: Arc<TargetProgress>,
    ) -> ParquetStage {
        ParquetStage {
            store,
            folder,
            plan,
            settings,
            clock,
            progress,
            clean: false,
            waiting_since: None,
        }
    }

    /// One step. `force` writes whatever is pending now instead of waiting for a fuller file.
    pub async fn export(
        &mut self,
        batch: Batch,
        force: bool,
    ) -> Result<StepReport, WarehouseError> {
        let result = self.export_inner(batch, force).await;
        if result.is_err() {
            // Files of the failed step may be on disk without a record: remove them first next time.
            self.clean = false;
        }
        result
    }

    async fn export_inner(
        &mut self,
        batch: Batch,
        force: bool,
    ) -> Result<StepReport, WarehouseError> {
        let _lock = self
            .folder
            .lock()
            .await
            .map_err(|e| WarehouseError::io(self.folder.root(), e))?;
        if !self.clean {
            self.remove_leftovers().await?;
            self.clean = true;
        }
        let pos = self.store.positions(CURSOR, AUDIENCES).await?;
        self.progress.observe(&pos);
        let one = batch == Batch::One;
        let limit = if one { 1 } else { self.settings.batch.max(1) };
        let processed = pos.processed.max(pos.cursor);
        let pending = (processed - pos.cursor) + (pos.audiences_head - pos.audiences_cursor);
        if pending <= 0 {
            self.waiting_since = None;
            return Ok(StepReport::default());
        }
        let now = self.clock.now_ms();
        if !force && !one && pending < limit {
            let since = *self.waiting_since.get_or_insert(now);
            if now - since < self.settings.flush_after.as_millis() as i64 {
                return Ok(StepReport::default());
            }
        }
        let rows = self.store.read_log(pos.cursor, processed, limit).await?;
        let upto = match rows.last() {
            Some(last) if rows.len() as i64 == limit => last.seq,
            _ => processed,
        };
        let (identities, graph) = if upto > pos.cursor {
            self.store.identity_changes(pos.cursor, upto).await?
        } else {
            Default::default()
        };
        let audience_rows = if one {
            Vec::new()
        } else {
            self.store
                .audience_events(pos.audiences_cursor, limit)
                .await?
        };
        let audiences_upto = audience_rows.last().map_or(pos.audiences_cursor, |a| a.id);
        let plan = self.plan.clone();
        let (messages, audience_events) = (rows.len(), audience_rows.len());
        let log_range = (pos.cursor + 1, upto);
        let audience_range = (pos.audiences_cursor + 1, audiences_upto);
        // Typing rows and compressing columns is CPU work: keep it off the async workers.
        let files: Vec<PlannedFile> = tokio::task::spawn_blocking(move || {
            let plan = plan.current();
            let mut out: Vec<Record> = Vec::with_capacity(rows.len() + identities.len());
            for row in &rows {
                out.push(records::message_record(row, &plan.plan, now)?);
            }
            out.extend(identities.iter().map(|r| records::identity_record(r, now)));
            out.extend(graph.iter().map(|r| records::graph_record(r, now)));
            out.extend(
                audience_rows
                    .iter()
                    .map(|r| records::audience_record(r, now)),
            );
            Ok::<_, WarehouseError>(plan_files(&out, log_range, audience_range)?)
        })
        .await
        .map_err(|e| WarehouseError::Task(e.to_string()))??;
        let file_rows: Vec<FileRow> = files
            .iter()
            .map(|f| {
                let (first, last) = if f.collection == "audiences" {
                    audience_range
                } else {
                    log_range
                };
                FileRow {
                    path: f.path.clone(),
                    collection: f.collection.clone(),
                    first,
                    last,
                    rows: f.rows as i64,
                    bytes: f.bytes.len() as i64,
                }
            })
            .collect();
        let report = StepReport {
            messages,
            audience_events,
            rows: files.iter().map(|f| f.rows).sum(),
            files: files.len(),
            bytes: files.iter().map(|f| f.bytes.len() as u64).sum(),
            moved: true,
        };
        self.folder
            .write(files)
            .await
            .map_err(|e| WarehouseError::io(self.folder.root(), e))?;
        let commit = Commit {
            cursor: CURSOR,
            audiences_cursor: AUDIENCES,
            log: (pos.cursor, upto),
            audiences: (pos.audiences_cursor, audiences_upto),
            files: file_rows,
            at: self.clock.now_ms(),
        };
        if !self.store.commit(&commit).await? {
            // Someone else moved a cursor meanwhile (a quarantine, another process): our files
            // are not recorded; remove them and look again.
            tracing::warn!(
                stage = CURSOR,
                "warehouse cursor moved during the step; redoing it"
            );
            self.remove_unrecorded(commit.files.into_iter().map(|f| f.path).collect())
                .await?;
            return Ok(StepReport::default());
        }
        self.waiting_since = None;
        self.progress
            .committed(upto, audiences_upto, &report, commit.at);
        tracing::debug!(
            stage = CURSOR,
            from = pos.cursor,
            to = upto,
            messages,
            audience_events,
            files = report.files,
            bytes = report.bytes,
            "warehouse files committed"
        );
        Ok(report)
    }

    /// Deletes temporary files and part files no commit recorded (an interrupted step's).
    async fn remove_leftovers(&self) -> Result<(), WarehouseError> {
        let listing = self
            .folder
            .list()
            .await
            .map_err(|e| WarehouseError::io(self.folder.root(), e))?;
        let temps = listing.temps.len();
        self.folder
            .remove(listing.temps)
            .await
            .map_err(|e| WarehouseError::io(self.folder.root(), e))?;
        let removed = self.remove_unrecorded(listing.parts).await?;
        if removed + temps > 0 {
            tracing::info!(
                stage = CURSOR,
                removed,
                temporary = temps,
                "removed warehouse files of an interrupted step"
            );
        }
        Ok(())
    }

    /// Removes those of `paths` that are not recorded; returns how many.
    async fn remove_unrecorded(&self, paths: Vec<String>) -> Result<usize, WarehouseError> {
        let recorded = self.store.recorded(&paths).await?;
        let stray: Vec<String> = paths
            .into_iter()
            .filter(|p| !recorded.contains(p))
            .collect();
        let n = stray.len();
        self.folder
            .remove(stray)
            .await
            .map_err(|e| WarehouseError::io(self.folder.root(), e))?;
        Ok(n)
    }
}

impl Stage for ParquetStage {
    fn name(&self) -> &'static str {
        CURSOR
    }

    fn cursor_name(&self) -> &'static str {
        CURSOR
    }

    /// Encodes every message into warehouse rows.
    fn weight(&self) -> u32 {
        2
    }

    async fn step(&mut self, batch: Batch) -> Result<usize, StorageError> {
        let r = self
            .export(batch, false)
            .await
            .map_err(StorageError::from)?;
        Ok(r.messages + r.audience_events + usize::from(r.moved && r.messages == 0))
    }

    /// Fails while the folder cannot be written, so the runner keeps retrying instead of setting
    /// messages aside for an outage; otherwise the first message not yet exported.
    async fn next_position(&mut self) -> Result<Option<i64>, StorageError> {
        self.folder
            .probe()
            .await
            .map_err(|e| StorageError::from(WarehouseError::io(self.folder.root(), e)))?;
        let pos = self.store.positions(CURSOR, AUDIENCES).await?;
        Ok(self
            .store
            .first_pending(pos.cursor, pos.processed)
            .await?
            .map(|(seq, _)| seq))
    }
}
