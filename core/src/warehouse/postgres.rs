//! The PostgreSQL warehouse (`TOUCHPOINT_WAREHOUSE_PG_URL`) as a pipeline stage, in Segment's
//! warehouse schema so existing SQL and dbt models keep working: a schema per source holding
//! `tracks`, `identifies`, `pages`, `screens`, `groups`, `aliases`, `users` (latest traits per
//! user id) and one table per event named after it, with `received_at`, `sent_at`, `timestamp`,
//! `original_timestamp`, `uuid_ts` and flattened `context_*` columns. Tables and columns are
//! created as they first appear (the plan's types; `text` for what it does not declare). The
//! schema `touchpoint` holds what belongs to no source: `audience_entered` / `audience_exited`
//! (Engage's names) and the identity tables of Segment's Profiles Sync — `external_id_mapping_updates`
//! and `id_graph_updates` as they happened, `external_id_mapping` and `id_graph` as they are now.
//!
//! Exactly once: the warehouse keeps its own cursors (`touchpoint.sync_state`), moved in the same
//! warehouse transaction as the rows, which takes them `FOR UPDATE` so two processes never
//! interleave. Touchpoint's `warehouse_postgres` cursors follow afterwards (for `/metrics`, status
//! and the quarantine); a step starts from the further of the two.

use super::records::{self, Cell, Col, Collection, Kind, Rank, Record, schema_of};
use super::store::{Positions, WarehouseStore};
use super::{Settings, TargetProgress, WarehouseError};
use crate::pipeline::{Batch, Clock, Stage};
use crate::plan::PlanHandle;
use crate::storage::StorageError;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Executor, PgConnection, Postgres, QueryBuilder};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The log cursor in Touchpoint's database.
pub const CURSOR: &str = "warehouse_postgres";
/// The audience-feed cursor in Touchpoint's database.
pub const AUDIENCES: &str = "warehouse_postgres_audiences";
/// The warehouse schema of what belongs to no source.
pub const SCHEMA: &str = "touchpoint";
/// Most bind parameters in one statement (PostgreSQL allows 65535).
const MAX_PARAMS: usize = 30_000;

/// The tables every warehouse has, created on first use.
const SETUP: &str = "
CREATE SCHEMA IF NOT EXISTS touchpoint;
CREATE TABLE IF NOT EXISTS touchpoint.sync_state (
    name        text PRIMARY KEY,
    position    bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO touchpoint.sync_state (name, position) VALUES ('log', 0), ('audiences', 0)
    ON CONFLICT (name) DO NOTHING;
CREATE TABLE IF NOT EXISTS touchpoint.id_graph (
    profile_id            text PRIMARY KEY,
    canonical_profile_id  text NOT NULL,
    updated_at            timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS id_graph_canonical ON touchpoint.id_graph (canonical_profile_id);
CREATE TABLE IF NOT EXISTS touchpoint.external_id_mapping (
    external_id_type   text NOT NULL,
    external_id_value  text NOT NULL,
    profile_id         text NOT NULL,
    updated_at         timestamptz NOT NULL,
    PRIMARY KEY (external_id_type, external_id_value)
);
CREATE INDEX IF NOT EXISTS external_id_mapping_profile ON touchpoint.external_id_mapping (profile_id);
";

/// The PostgreSQL warehouse stage.
pub struct PostgresStage {
    store: Arc<dyn WarehouseStore>,
    warehouse: PgPool,
    plan: Arc<PlanHandle>,
    settings: Settings,
    clock: Arc<dyn Clock>,
    progress: Arc<TargetProgress>,
    /// Known tables and their column types, as created or found.
    tables: HashMap<(String, String), HashMap<String, Kind>>,
    ready: bool,
}

/// Connects to the warehouse lazily (a warehouse that is down delays the export, never start-up).
pub fn connect_lazy(url: &str) -> Result<PgPool, WarehouseError> {
    PgPoolOptions::new()
        .max_connections(2)
        .connect_lazy(url)
        .map_err(WarehouseError::Warehouse)
}

/// A table to write and the rows for it.
struct TableRows<'a> {
    schema: String,
    table: String,
    key: &'static [&'static str],
    rows: Vec<Vec<&'a Col>>,
}

impl PostgresStage {
    /// A stage writing to the warehouse behind `warehouse`.
    pub fn new(
        store: Arc<dyn WarehouseStore>,
        warehouse: PgPool,
        plan: Arc<PlanHandle>,
        settings: Settings,
        clock: Arc<dyn Clock>,
        progress: Arc<TargetProgress>,
    ) -> PostgresStage {
        PostgresStage {
            store,
            warehouse,
            plan,
            settings,
            clock,
            progress,
            tables: HashMap::new(),
            ready: false,
        }
    }

    /// The warehouse's own cursors (log, audiences).
    pub async fn warehouse_positions(&self) -> Result<(i64, i64), WarehouseError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT name, position FROM touchpoint.sync_state")
                .fetch_all(&self.warehouse)
                .await
                .map_err(WarehouseError::Warehouse)?;
        let get = |n: &str| rows.iter().find(|(k, _)| k == n).map_or(0, |(_, p)| *p);
        Ok((get("log"), get("audiences")))
    }

    /// One step: everything after the cursors, at most a batch.
    pub async fn export(
        &mut self,
        batch: Batch,
    ) -> Result<super::stage::StepReport, WarehouseError> {
        let result = self.export_inner(batch).await;
        if result.is_err() {
            // A rolled-back transaction may have created nothing we cached.
            self.tables.clear();
            self.ready = false;
        }
        result
    }

    async fn export_inner(
        &mut self,
        batch: Batch,
    ) -> Result<super::stage::StepReport, WarehouseError> {
        if !self.ready {
            (&self.warehouse)
                .execute(SETUP)
                .await
                .map_err(WarehouseError::Warehouse)?;
            self.ready = true;
        }
        let pos: Positions = self.store.positions(CURSOR, AUDIENCES).await?;
        self.progress.observe(&pos);
        let mut tx = self
            .warehouse
            .begin()
            .await
            .map_err(WarehouseError::Warehouse)?;
        let synced: Vec<(String, i64)> = sqlx::query_as(
            "SELECT name, position FROM touchpoint.sync_state ORDER BY name FOR UPDATE",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(WarehouseError::Warehouse)?;
        let synced_at = |n: &str| synced.iter().find(|(k, _)| k == n).map_or(0, |(_, p)| *p);
        let cursor = pos.cursor.max(synced_at("log"));
        let audiences_cursor = pos.audiences_cursor.max(synced_at("audiences"));
        let processed = pos.processed.max(cursor);
        let one = batch == Batch::One;
        let limit = if one { 1 } else { self.settings.batch.max(1) };
        if processed == cursor && pos.audiences_head <= audiences_cursor {
            drop(tx);
            self.catch_up(cursor, audiences_cursor).await?;
            return Ok(Default::default());
        }
        let rows = self.store.read_log(cursor, processed, limit).await?;
        let upto = match rows.last() {
            Some(last) if rows.len() as i64 == limit => last.seq,
            _ => processed,
        };
        let (identities, graph) = if upto > cursor {
            self.store.identity_changes(cursor, upto).await?
        } else {
            Default::default()
        };
        let audience_rows = if one {
            Vec::new()
        } else {
            self.store.audience_events(audiences_cursor, limit).await?
        };
        let audiences_upto = audience_rows.last().map_or(audiences_cursor, |a| a.id);
        let now = self.clock.now_ms();
        let plan = self.plan.current();
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

        let mut written = 0usize;
        for t in tables_of(&out) {
            let cols = columns_of(&t.rows);
            self.ensure_table(&mut tx, &t.schema, &t.table, &cols, t.key)
                .await?;
            written += self.insert(&mut tx, &t).await?;
        }
        self.upsert_users(&mut tx, &out).await?;
        let at = chrono::DateTime::from_timestamp_millis(now).unwrap_or_default();
        for r in &identities {
            sqlx::query(
                "INSERT INTO touchpoint.external_id_mapping (external_id_type, external_id_value, profile_id, updated_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (external_id_type, external_id_value) \
                 DO UPDATE SET profile_id = excluded.profile_id, updated_at = excluded.updated_at",
            )
            .bind(no_nul(&r.kind))
            .bind(no_nul(&r.value))
            .bind(&r.profile_id)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(WarehouseError::Warehouse)?;
        }
        for g in &graph {
            for sql in [
                "UPDATE touchpoint.external_id_mapping SET profile_id = $2, updated_at = $3 WHERE profile_id = $1",
                "UPDATE touchpoint.id_graph SET canonical_profile_id = $2, updated_at = $3 WHERE canonical_profile_id = $1",
                "INSERT INTO touchpoint.id_graph (profile_id, canonical_profile_id, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (profile_id) DO UPDATE SET canonical_profile_id = excluded.canonical_profile_id, \
                 updated_at = excluded.updated_at",
            ] {
                sqlx::query(sql)
                    .bind(&g.profile_id)
                    .bind(&g.canonical_profile_id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err(WarehouseError::Warehouse)?;
            }
        }
        for (name, position) in [("log", upto), ("audiences", audiences_upto)] {
            sqlx::query("UPDATE touchpoint.sync_state SET position = $2, updated_at = now() WHERE name = $1")
                .bind(name)
                .bind(position)
                .execute(&mut *tx)
                .await
                .map_err(WarehouseError::Warehouse)?;
        }
        tx.commit().await.map_err(WarehouseError::Warehouse)?;
        self.catch_up(upto, audiences_upto).await?;
        let report = super::stage::StepReport {
            messages: rows.len(),
            audience_events: audience_rows.len(),
            rows: written,
            files: 0,
            bytes: 0,
            moved: true,
        };
        self.progress
            .committed(upto, audiences_upto, &report, self.clock.now_ms());
        tracing::debug!(
            stage = CURSOR,
            from = cursor,
            to = upto,
            rows = written,
            "warehouse rows loaded"
        );
        Ok(report)
    }

    /// Moves Touchpoint's cursors up to the warehouse's.
    async fn catch_up(&self, log: i64, audiences: i64) -> Result<(), WarehouseError> {
        self.store
            .advance(&[(CURSOR, log), (AUDIENCES, audiences)])
            .await?;
        Ok(())
    }

    /// Creates the table, or the columns it lacks; learns the types of those it has.
    async fn ensure_table(
        &mut self,
        conn: &mut PgConnection,
        schema: &str,
        table: &str,
        cols: &[(String, Kind)],
        key: &[&str],
    ) -> Result<(), WarehouseError> {
        let id = (schema.to_owned(), table.to_owned());
        if !self.tables.contains_key(&id) {
            let found: Vec<(String, String)> = sqlx::query_as(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = $1 AND table_name = $2",
            )
            .bind(schema)
            .bind(table)
            .fetch_all(&mut *conn)
            .await
            .map_err(WarehouseError::Warehouse)?;
            if found.is_empty() {
                let mut ddl = format!(
                    "CREATE SCHEMA IF NOT EXISTS \"{schema}\"; CREATE TABLE IF NOT EXISTS \"{schema}\".\"{table}\" ("
                );
                for (i, (name, kind)) in cols.iter().enumerate() {
                    if i > 0 {
                        ddl.push_str(", ");
                    }
                    ddl.push_str(&format!("\"{name}\" {}", kind.sql()));
                }
                if !key.is_empty() {
                    let key: Vec<String> = key.iter().map(|k| format!("\"{k}\"")).collect();
                    ddl.push_str(&format!(", PRIMARY KEY ({})", key.join(", ")));
                }
                ddl.push(')');
                (&mut *conn)
                    .execute(ddl.as_str())
                    .await
                    .map_err(WarehouseError::Warehouse)?;
                tracing::info!(
                    schema,
                    table,
                    columns = cols.len(),
                    "warehouse table created"
                );
                self.tables
                    .insert(id.clone(), cols.iter().cloned().collect());
            } else {
                let known = found
                    .into_iter()
                    .map(|(name, ty)| (name, kind_of_sql(&ty)))
                    .collect();
                self.tables.insert(id.clone(), known);
            }
        }
        let known = self.tables.entry(id).or_default();
        for (name, kind) in cols {
            if known.contains_key(name) {
                continue;
            }
            let ddl = format!(
                "ALTER TABLE \"{schema}\".\"{table}\" ADD COLUMN IF NOT EXISTS \"{name}\" {}",
                kind.sql()
            );
            (&mut *conn)
                .execute(ddl.as_str())
                .await
                .map_err(WarehouseError::Warehouse)?;
            tracing::info!(schema, table, column = %name, "warehouse column added");
            known.insert(name.clone(), *kind);
        }
        Ok(())
    }

    /// Inserts the rows (what is already there by key stays); returns how many were sent.
    async fn insert(
        &self,
        conn: &mut PgConnection,
        t: &TableRows<'_>,
    ) -> Result<usize, WarehouseError> {
        let known = &self.tables[&(t.schema.clone(), t.table.clone())];
        let cols = columns_of(&t.rows);
        let kinds: Vec<Kind> = cols
            .iter()
            .map(|(n, k)| *known.get(n).unwrap_or(k))
            .collect();
        let per_statement = (MAX_PARAMS / cols.len().max(1)).max(1);
        for chunk in t.rows.chunks(per_statement) {
            let names: Vec<String> = cols.iter().map(|(n, _)| format!("\"{n}\"")).collect();
            let mut q = QueryBuilder::<Postgres>::new(format!(
                "INSERT INTO \"{}\".\"{}\" ({}) ",
                t.schema,
                t.table,
                names.join(", ")
            ));
            q.push_values(chunk, |mut b, row| {
                for ((name, _), kind) in cols.iter().zip(&kinds) {
                    let cell = row.iter().find(|c| &c.name == name).map(|c| &c.cell);
                    bind(&mut b, *kind, cell);
                }
            });
            if t.key.is_empty() {
                q.push("");
            } else {
                q.push(" ON CONFLICT DO NOTHING");
            }
            q.build()
                .execute(&mut *conn)
                .await
                .map_err(WarehouseError::Warehouse)?;
        }
        Ok(t.rows.len())
    }

    /// `users`: one row per user id with its latest traits. Identify calls are folded in log
    /// order (a later call's trait replaces an earlier one, an older one only fills gaps).
    async fn upsert_users(
        &mut self,
        conn: &mut PgConnection,
        out: &[Record],
    ) -> Result<(), WarehouseError> {
        let mut by_schema: BTreeMap<String, BTreeMap<String, (i64, Vec<Col>)>> = BTreeMap::new();
        for r in out
            .iter()
            .filter(|r| r.collection == Collection::Identifies)
        {
            let (Some(source), Some(Cell::Text(user))) = (&r.source, r.get("user_id")) else {
                continue;
            };
            let ts = match r.get("timestamp") {
                Some(Cell::Time(t)) => *t,
                _ => 0,
            };
            let mut cols: Vec<Col> = vec![Col {
                name: "id".into(),
                kind: Kind::Text,
                rank: Rank::Standard(0),
                cell: Cell::Text(user.clone()),
            }];
            for c in &r.cols {
                let keep = matches!(c.rank, Rank::Planned(_) | Rank::Unplanned)
                    || matches!(
                        c.name.as_str(),
                        "received_at" | "timestamp" | "uuid_ts" | "touchpoint_profile_id"
                    );
                if keep && c.cell != Cell::Null {
                    cols.push(c.clone());
                }
            }
            let users = by_schema.entry(records::schema_name(source)).or_default();
            match users.get_mut(user) {
                None => {
                    users.insert(user.clone(), (ts, cols));
                }
                Some((seen, existing)) => {
                    let newer = ts >= *seen;
                    for c in cols {
                        match existing.iter_mut().find(|e| e.name == c.name) {
                            Some(e) if newer => *e = c,
                            Some(_) => {}
                            None => existing.push(c),
                        }
                    }
                    *seen = (*seen).max(ts);
                }
            }
        }
        for (schema, users) in by_schema {
            let rows: Vec<Record> = users
                .into_values()
                .map(|(_, cols)| Record {
                    collection: Collection::Identifies,
                    source: None,
                    day: String::new(),
                    cols,
                })
                .collect();
            let cols = schema_of(&rows);
            self.ensure_table(&mut *conn, &schema, "users", &cols, &["id"])
                .await?;
            let known = &self.tables[&(schema.clone(), "users".to_owned())];
            for row in &rows {
                let names: Vec<String> =
                    row.cols.iter().map(|c| format!("\"{}\"", c.name)).collect();
                let mut q = QueryBuilder::<Postgres>::new(format!(
                    "INSERT INTO \"{schema}\".users ({}) VALUES (",
                    names.join(", ")
                ));
                {
                    let mut b = q.separated(", ");
                    for c in &row.cols {
                        bind(
                            &mut b,
                            *known.get(&c.name).unwrap_or(&c.kind),
                            Some(&c.cell),
                        );
                    }
                }
                q.push(") ON CONFLICT (id) DO UPDATE SET ");
                let newer = "(users.\"timestamp\" IS NULL OR excluded.\"timestamp\" >= users.\"timestamp\")";
                let sets: Vec<String> = row
                    .cols
                    .iter()
                    .filter(|c| c.name != "id")
                    .map(|c| {
                        let n = &c.name;
                        if n == "timestamp" {
                            "\"timestamp\" = GREATEST(users.\"timestamp\", excluded.\"timestamp\")".to_owned()
                        } else {
                            format!(
                                "\"{n}\" = CASE WHEN {newer} THEN COALESCE(excluded.\"{n}\", users.\"{n}\") \
                                 ELSE COALESCE(users.\"{n}\", excluded.\"{n}\") END"
                            )
                        }
                    })
                    .collect();
                if sets.is_empty() {
                    q.push("id = excluded.id");
                } else {
                    q.push(sets.join(", "));
                }
                q.build()
                    .execute(&mut *conn)
                    .await
                    .map_err(WarehouseError::Warehouse)?;
            }
        }
        Ok(())
    }
}

/// The rows per warehouse table: event rows to their source's schema (track calls to `tracks`,
/// without properties, and to the event's table), the rest to `touchpoint`.
fn tables_of<'a>(out: &'a [Record]) -> Vec<TableRows<'a>> {
    let mut tables: BTreeMap<(String, String), TableRows<'a>> = BTreeMap::new();
    let mut add =
        |schema: String, table: String, key: &'static [&'static str], cols: Vec<&'a Col>| {
            tables
                .entry((schema.clone(), table.clone()))
                .or_insert_with(|| TableRows {
                    schema,
                    table,
                    key,
                    rows: Vec::new(),
                })
                .rows
                .push(cols);
        };
    for r in out {
        let all: Vec<&Col> = r.cols.iter().collect();
        match (&r.collection, &r.source) {
            (Collection::ExternalIdMappingUpdates, _) => add(
                SCHEMA.into(),
                r.collection.table().into(),
                &["external_id_type", "external_id_value", "touchpoint_seq"],
                all,
            ),
            (Collection::IdGraphUpdates, _) => add(
                SCHEMA.into(),
                r.collection.table().into(),
                &["profile_id", "touchpoint_seq"],
                all,
            ),
            (Collection::AudienceEntered | Collection::AudienceExited, _) => {
                add(SCHEMA.into(), r.collection.table().into(), &["id"], all)
            }
            (collection, source) => {
                let schema = records::schema_name(source.as_deref().unwrap_or("source"));
                if let Collection::Track(_) = collection {
                    let standard: Vec<&Col> = r
                        .cols
                        .iter()
                        .filter(|c| matches!(c.rank, Rank::Standard(_) | Rank::Context))
                        .filter(|c| c.name != "touchpoint_invalid_properties")
                        .collect();
                    add(schema.clone(), "tracks".into(), &["id"], standard);
                }
                add(schema, collection.table().into(), &["id"], all);
            }
        }
    }
    tables.into_values().collect()
}

/// The columns of some rows, in rank order (see [`schema_of`]).
fn columns_of(rows: &[Vec<&Col>]) -> Vec<(String, Kind)> {
    let records: Vec<Record> = rows
        .iter()
        .map(|cols| Record {
            collection: Collection::Pages,
            source: None,
            day: String::new(),
            cols: cols
                .iter()
                .map(|c| Col {
                    cell: Cell::Null,
                    ..(*c).clone()
                })
                .collect(),
        })
        .collect();
    schema_of(&records)
}

/// The column kind of a PostgreSQL `data_type`.
fn kind_of_sql(ty: &str) -> Kind {
    match ty {
        "bigint" | "integer" | "smallint" => Kind::Int,
        "double precision" | "real" | "numeric" => Kind::Float,
        "boolean" => Kind::Bool,
        "timestamp with time zone" | "timestamp without time zone" => Kind::Time,
        _ => Kind::Text,
    }
}

/// Text PostgreSQL accepts (it refuses NUL characters).
fn no_nul(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_owned()
    }
}

/// Binds a cell as the column's type (converted, or a typed NULL).
fn bind(
    b: &mut sqlx::query_builder::Separated<'_, '_, Postgres, &'static str>,
    kind: Kind,
    cell: Option<&Cell>,
) {
    let cell = cell.map_or(Cell::Null, |c| c.to_kind(kind));
    match (kind, cell) {
        (Kind::Text, Cell::Text(s)) => b.push_bind(Some(no_nul(&s))),
        (Kind::Text, _) => b.push_bind(None::<String>),
        (Kind::Int, Cell::Int(i)) => b.push_bind(Some(i)),
        (Kind::Int, _) => b.push_bind(None::<i64>),
        (Kind::Float, Cell::Float(f)) => b.push_bind(Some(f)),
        (Kind::Float, _) => b.push_bind(None::<f64>),
        (Kind::Bool, Cell::Bool(v)) => b.push_bind(Some(v)),
        (Kind::Bool, _) => b.push_bind(None::<bool>),
        (Kind::Time, Cell::Time(t)) => b.push_bind(chrono::DateTime::from_timestamp_millis(t)),
        (Kind::Time, _) => b.push_bind(None::<chrono::DateTime<chrono::Utc>>),
    };
}

impl Stage for PostgresStage {
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
        let r = self.export(batch).await.map_err(StorageError::from)?;
        Ok(r.messages + r.audience_events + usize::from(r.moved && r.messages == 0))
    }

    /// Fails while the warehouse does not answer, so the runner keeps retrying instead of setting
    /// messages aside for an outage; otherwise the first message not yet loaded.
    async fn next_position(&mut self) -> Result<Option<i64>, StorageError> {
        let (log, _) = self
            .warehouse_positions()
            .await
            .map_err(StorageError::from)?;
        let pos = self.store.positions(CURSOR, AUDIENCES).await?;
        Ok(self
            .store
            .first_pending(pos.cursor.max(log), pos.processed)
            .await?
            .map(|(seq, _)| seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::warehouse::records::{LogRow, message_record};
    use serde_json::json;

    #[test]
    fn track_calls_go_to_tracks_and_to_their_event_table_in_the_source_schema() {
        let plan =
            touchpoint_tracking_plan::parse(include_str!("../../../TRACKING_PLAN.md")).unwrap();
        let row = LogRow {
            seq: 1,
            source: "reverse-etl".into(),
            message_id: "m1".into(),
            event_time: 0,
            received_at: 0,
            profile_id: None,
            body: json!({"type": "track", "userId": "u", "event": "trial_started",
                         "properties": {"plan_tier": "pro", "trial_days": 3, "x": 1},
                         "context": {"ip": "1.2.3.0"}})
            .to_string(),
        };
        let r = message_record(&row, &plan, 0).unwrap();
        let tables = tables_of(std::slice::from_ref(&r));
        let names: Vec<(&str, &str)> = tables
            .iter()
            .map(|t| (t.schema.as_str(), t.table.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![("reverse_etl", "tracks"), ("reverse_etl", "trial_started")]
        );
        let tracks = columns_of(&tables[0].rows);
        assert!(tracks.iter().any(|(n, _)| n == "context_ip"));
        assert!(!tracks.iter().any(|(n, _)| n == "trial_days"), "{tracks:?}");
        let event = columns_of(&tables[1].rows);
        assert!(event.contains(&("trial_days".to_owned(), Kind::Int)));
    }

    #[test]
    fn existing_column_types_are_read_back() {
        assert_eq!(kind_of_sql("timestamp with time zone"), Kind::Time);
        assert_eq!(kind_of_sql("character varying"), Kind::Text);
        assert_eq!(no_nul("a\0b"), "a\u{FFFD}b");
    }
}
