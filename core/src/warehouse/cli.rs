//! `touchpoint warehouse sync|status`: export now, or see where each target stands.
#![allow(clippy::print_stdout)]

use super::postgres::{self, PostgresStage};
use super::stage::{self, ParquetStage, StepReport};
use super::{TargetProgress, WarehouseConfig};
use crate::config::Config;
use crate::pipeline::{Batch, SystemClock};
use crate::plan::PlanHandle;
use anyhow::Context;
use clap::Subcommand;
use secrecy::ExposeSecret;
use std::process::ExitCode;
use std::sync::Arc;

/// The warehouse subcommands.
#[derive(Subcommand, Debug)]
pub enum WarehouseCommand {
    /// Exports everything the pipeline has processed to the configured targets
    /// (TOUCHPOINT_WAREHOUSE_DIR, TOUCHPOINT_WAREHOUSE_PG_URL), without waiting for fuller files,
    /// then exits.
    Sync,
    /// Shows each target's position, what is left to export, and the committed Parquet files.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a warehouse subcommand with the configuration from the environment.
pub async fn run(command: WarehouseCommand) -> anyhow::Result<ExitCode> {
    let config = Config::from_env().context("reading configuration")?;
    match command {
        WarehouseCommand::Sync => {
            for line in sync(&config).await? {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        WarehouseCommand::Status { json } => {
            let status = status(&config).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", render_status(&status));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Exports until every configured target has caught up with the pipeline; returns a summary.
pub async fn sync(config: &Config) -> anyhow::Result<Vec<String>> {
    let c: &WarehouseConfig = &config.warehouse;
    if c.dir.is_none() && c.pg_url.is_none() {
        anyhow::bail!(
            "no warehouse target: set TOUCHPOINT_WAREHOUSE_DIR (Parquet) and/or TOUCHPOINT_WAREHOUSE_PG_URL"
        );
    }
    let plan = Arc::new(PlanHandle::load(&config.plan_path).context("loading the tracking plan")?);
    let stores = crate::stores::connect(&config.database_url)
        .await
        .context("opening the database")?;
    let mut out = Vec::new();
    if let Some(dir) = &c.dir {
        let mut stage = ParquetStage::new(
            stores.warehouse.clone(),
            super::folder::Folder::new(dir.clone()),
            plan.clone(),
            c.settings(),
            Arc::new(SystemClock),
            Arc::new(TargetProgress::new("parquet")),
        );
        let mut total = StepReport::default();
        loop {
            let r = stage.export(Batch::Full, true).await?;
            if !r.moved {
                break;
            }
            add(&mut total, &r);
        }
        out.push(format!(
            "parquet ({}): {} messages, {} audience transitions, {} rows in {} files ({} bytes)",
            dir.display(),
            total.messages,
            total.audience_events,
            total.rows,
            total.files,
            total.bytes
        ));
    }
    if let Some(url) = &c.pg_url {
        let pool = postgres::connect_lazy(url.expose_secret())?;
        let mut stage = PostgresStage::new(
            stores.warehouse.clone(),
            pool,
            plan.clone(),
            c.settings(),
            Arc::new(SystemClock),
            Arc::new(TargetProgress::new("postgres")),
        );
        let mut total = StepReport::default();
        loop {
            let r = stage.export(Batch::Full).await?;
            if !r.moved {
                break;
            }
            add(&mut total, &r);
        }
        out.push(format!(
            "postgres ({}): {} messages, {} audience transitions, {} rows",
            crate::startup::redact(url.expose_secret()),
            total.messages,
            total.audience_events,
            total.rows
        ));
    }
    let pos = stores
        .warehouse
        .positions(stage::CURSOR, stage::AUDIENCES)
        .await?;
    if pos.processed < pos.head {
        out.push(format!(
            "{} newer messages are not processed by the pipeline yet (a running `touchpoint serve` processes them; sync again after)",
            pos.head - pos.processed
        ));
    }
    Ok(out)
}

fn add(total: &mut StepReport, r: &StepReport) {
    total.messages += r.messages;
    total.audience_events += r.audience_events;
    total.rows += r.rows;
    total.files += r.files;
    total.bytes += r.bytes;
    total.moved |= r.moved;
}

/// Where the targets stand.
pub async fn status(config: &Config) -> anyhow::Result<serde_json::Value> {
    let stores = crate::stores::connect(&config.database_url)
        .await
        .context("opening the database")?;
    let c = &config.warehouse;
    let parquet = stores
        .warehouse
        .positions(stage::CURSOR, stage::AUDIENCES)
        .await?;
    let files = stores.warehouse.files_summary().await?;
    let pg = stores
        .warehouse
        .positions(postgres::CURSOR, postgres::AUDIENCES)
        .await?;
    let mut pg_synced = serde_json::Value::Null;
    if let Some(url) = &c.pg_url {
        let pool = postgres::connect_lazy(url.expose_secret())?;
        let rows: Result<Vec<(String, i64)>, _> =
            sqlx::query_as("SELECT name, position FROM touchpoint.sync_state ORDER BY name")
                .fetch_all(&pool)
                .await;
        pg_synced = match rows {
            Ok(rows) => serde_json::Value::Object(
                rows.into_iter()
                    .map(|(name, position)| (name, serde_json::json!(position)))
                    .collect(),
            ),
            Err(e) => serde_json::json!({"error": e.to_string()}),
        };
    }
    let target = |name: &str, enabled: bool, p: &super::Positions| {
        serde_json::json!({
            "target": name,
            "enabled": enabled,
            "cursor": p.cursor,
            "processed": p.processed,
            "logHead": p.head,
            "lag": (p.processed - p.cursor).max(0),
            "audiencesCursor": p.audiences_cursor,
            "audiencesHead": p.audiences_head,
        })
    };
    let mut parquet_json = target("parquet", c.dir.is_some(), &parquet);
    parquet_json["dir"] = serde_json::json!(c.dir.as_ref().map(|d| d.display().to_string()));
    parquet_json["files"] = serde_json::json!(files);
    let mut pg_json = target("postgres", c.pg_url.is_some(), &pg);
    pg_json["warehouse"] = pg_synced;
    Ok(serde_json::json!({"targets": [parquet_json, pg_json]}))
}

/// The status as text.
pub fn render_status(status: &serde_json::Value) -> String {
    let mut out = String::new();
    for t in status["targets"].as_array().into_iter().flatten() {
        let enabled = if t["enabled"].as_bool() == Some(true) {
            "on"
        } else {
            "off"
        };
        out.push_str(&format!(
            "{} ({enabled}): exported up to {} of {} processed (log head {}), {} behind; audience feed {} of {}\n",
            t["target"].as_str().unwrap_or("?"),
            t["cursor"],
            t["processed"],
            t["logHead"],
            t["lag"],
            t["audiencesCursor"],
            t["audiencesHead"],
        ));
        if let Some(dir) = t["dir"].as_str() {
            let f = &t["files"];
            out.push_str(&format!(
                "  {dir}: {} files, {} rows, {} bytes, last commit {}\n",
                f["files"],
                f["rows"],
                f["bytes"],
                match f["last_commit_ms"].as_i64() {
                    Some(ms) if ms > 0 => super::records::rfc3339(ms),
                    _ => "never".into(),
                }
            ));
        }
        if !t["warehouse"].is_null() {
            out.push_str(&format!("  warehouse sync_state: {}\n", t["warehouse"]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_names_each_target_and_its_lag() {
        let s = serde_json::json!({"targets": [
            {"target": "parquet", "enabled": true, "cursor": 5, "processed": 9, "logHead": 10, "lag": 4,
             "audiencesCursor": 1, "audiencesHead": 1, "dir": "/wh",
             "files": {"files": 2, "rows": 5, "bytes": 900, "last_commit_ms": 0}},
            {"target": "postgres", "enabled": false, "cursor": 0, "processed": 9, "logHead": 10, "lag": 9,
             "audiencesCursor": 0, "audiencesHead": 1, "warehouse": null}]});
        let text = render_status(&s);
        assert!(
            text.contains("parquet (on): exported up to 5 of 9 processed (log head 10), 4 behind"),
            "{text}"
        );
        assert!(
            text.contains("/wh: 2 files, 5 rows, 900 bytes, last commit never"),
            "{text}"
        );
        assert!(text.contains("postgres (off)"), "{text}");
    }
}
