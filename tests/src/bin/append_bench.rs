//! Append throughput on PostgreSQL, one log partition against eight, same run: `WRITERS` concurrent
//! writers (as several ingest nodes' group commits would be) each append batches of `BATCH`
//! messages from many devices to a fresh database until `MESSAGES` are stored. With one partition
//! every append waits for the one before it to commit (as the global append lock did); with eight,
//! appends to different partitions commit together.
//! Run: `scripts/bench-append.sh` (PostgreSQL with fsync on, so commits are the limit).
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};
use touchpoint_core::storage::{EventStore, InsertOutcome, NewMessage, PgStore, Status};
use touchpoint_tests::fresh_postgres_database;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn message(source_id: i64, n: usize) -> NewMessage {
    let device = format!("device-{}", n % 997);
    NewMessage {
        source_id,
        message_id: format!("m-{n}"),
        kind: "track",
        event: Some("Viewed".into()),
        user_id: None,
        body_json: format!(
            r#"{{"type":"track","event":"Viewed","anonymousId":"{device}","messageId":"m-{n}"}}"#
        ),
        anonymous_id: Some(device),
        event_time_ms: 1,
        received_at_ms: 1,
        plan_version: "1".into(),
        status: Status::Accepted,
        violations_json: "[]".into(),
    }
}

/// Stores `total` messages into a fresh database of `partitions` partitions; returns the time.
async fn run(
    admin_url: &str,
    partitions: u16,
    total: usize,
    writers: usize,
    batch: usize,
) -> Duration {
    let url = fresh_postgres_database(admin_url).await;
    let store = Arc::new(
        PgStore::connect_with(&url, partitions)
            .await
            .expect("connect"),
    );
    let source = store.upsert_source("web", "wk").await.expect("source").id;
    let per_writer = total / writers;
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let first = w * per_writer;
                for start in (first..first + per_writer).step_by(batch) {
                    let end = (start + batch).min(first + per_writer);
                    let ms: Vec<NewMessage> = (start..end).map(|n| message(source, n)).collect();
                    let out = store.append(&ms, &[]).await.expect("append");
                    assert!(out.iter().all(|o| matches!(o, InsertOutcome::Stored(_))));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let url = std::env::var("TOUCHPOINT_BENCH_PG_URL").expect("TOUCHPOINT_BENCH_PG_URL");
    let total = env("MESSAGES", 40_000);
    let writers = env("WRITERS", 8);
    let batch = env("BATCH", 50);
    let rounds = env("ROUNDS", 3);
    println!("| round | partitions | writers x batch | messages | took | messages/s |");
    println!("|---:|---:|---|---:|---:|---:|");
    let mut rates = [Vec::new(), Vec::new()];
    for round in 1..=rounds {
        // Alternate the order so drift on a noisy machine hits both sides.
        let order: [u16; 2] = if round % 2 == 1 { [1, 8] } else { [8, 1] };
        for partitions in order {
            let took = run(&url, partitions, total, writers, batch).await;
            let rate = total as f64 / took.as_secs_f64();
            rates[usize::from(partitions == 8)].push(rate);
            println!(
                "| {round} | {partitions} | {writers} x {batch} | {total} | {:.2} s | {rate:.0} |",
                took.as_secs_f64()
            );
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (one, eight) = (mean(&rates[0]), mean(&rates[1]));
    println!(
        "\nmean: 1 partition {one:.0} messages/s, 8 partitions {eight:.0} messages/s, ratio {:.2}x",
        eight / one
    );
}
