//! Identity-resolution benchmark: (1) the pure resolver over an in-memory graph, (2) the whole
//! processing stage (read log → resolve → write profiles, one transaction per batch) on SQLite and,
//! when `TOUCHPOINT_BENCH_PG_URL` is set, PostgreSQL. Run: `scripts/bench-identity.sh`.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};
use touchpoint_core::identity::{self, Graph};
use touchpoint_core::plan::PlanHandle;
use touchpoint_core::profiles::Processor;
use touchpoint_core::storage::{NewMessage, Status};
use touchpoint_tests::synthetic_message;
use touchpoint_tracking_plan::Message;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn pure_resolver(n: usize) {
    let plan = touchpoint_tracking_plan::parse(include_str!("../../../TRACKING_PLAN.md"))
        .expect("plan parses");
    let rules = plan.identity();
    let messages: Vec<Message> = (0..n)
        .map(|i| {
            Message::from_value(synthetic_message(i), None)
                .unwrap()
                .message
        })
        .collect();
    let mut graph = Graph::new();
    let mut next = 0u64;
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for m in &messages {
        let t = Instant::now();
        let (ids, _) = identity::extract(m, rules);
        let res = graph.resolve(&ids, rules, || {
            next += 1;
            identity::ProfileId::from(format!("p{next}"))
        });
        std::hint::black_box(res);
        lat.push(t.elapsed());
    }
    let total = start.elapsed();
    lat.sort_unstable();
    println!(
        "| pure resolver (extract + resolve, in memory) | {n} | {:.0} | {:.2} µs | {:.2} µs |",
        n as f64 / total.as_secs_f64(),
        percentile(&lat, 0.50).as_secs_f64() * 1e6,
        percentile(&lat, 0.95).as_secs_f64() * 1e6,
    );
}

async fn pipeline(label: &str, url: &str, n: usize, batch: i64) {
    let stores = touchpoint_core::stores::connect(url)
        .await
        .expect("database");
    let source = stores
        .events
        .upsert_source("bench", "wk_bench")
        .await
        .expect("source");
    let version: Arc<str> = "bench".into();
    let now = chrono::Utc::now().timestamp_millis();
    for chunk in (0..n).collect::<Vec<_>>().chunks(2000) {
        let rows: Vec<NewMessage> = chunk
            .iter()
            .map(|&i| {
                let m = Message::from_value(synthetic_message(i), None)
                    .unwrap()
                    .message;
                NewMessage {
                    source_id: source.id,
                    message_id: format!("bench-{i}"),
                    kind: m.kind.as_str(),
                    event: m.event.clone(),
                    user_id: m.user_id.clone(),
                    anonymous_id: m.anonymous_id.clone(),
                    event_time_ms: now + i as i64,
                    received_at_ms: now,
                    plan_version: version.clone(),
                    status: Status::Accepted,
                    violations_json: "[]".into(),
                    body_json: serde_json::to_string(&m).unwrap(),
                }
            })
            .collect();
        stores.events.append(&rows, &[]).await.expect("append");
    }
    let plan = Arc::new(
        PlanHandle::load(&touchpoint_tests::repo_root().join("TRACKING_PLAN.md")).expect("plan"),
    );
    let mut processor = Processor::new(
        stores.profiles.clone(),
        plan,
        Arc::new(touchpoint_core::pipeline::SystemClock),
        batch,
    );
    let mut steps = Vec::new();
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        let t = Instant::now();
        let k = processor.step().await.expect("step");
        steps.push(t.elapsed());
        assert!(k > 0, "processor stalled at {done}");
        done += k;
    }
    let total = start.elapsed();
    steps.sort_unstable();
    let profiles = stores.profiles.count().await.expect("count");
    assert_eq!(profiles as usize, n.div_ceil(4), "one profile per person");
    println!(
        "| pipeline on {label} (batch {batch}: read log, resolve, write graph+profiles, commit) | {n} | {:.0} | {:.2} ms / batch | {:.2} ms / batch |",
        n as f64 / total.as_secs_f64(),
        percentile(&steps, 0.50).as_secs_f64() * 1e3,
        percentile(&steps, 0.95).as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    println!("| stage | messages | resolutions/s | p50 | p95 |");
    println!("|---|---|---|---|---|");
    pure_resolver(n);
    let dir = tempfile::tempdir().expect("tmp");
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    let pipeline_n = (n / 4).max(4);
    // The stage's batch as it ships (`Processor` in `startup.rs`); `BATCH` tries others.
    let batch: i64 = std::env::var("BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    pipeline("SQLite", &sqlite, pipeline_n, batch).await;
    if let Ok(pg) = std::env::var("TOUCHPOINT_BENCH_PG_URL") {
        pipeline("PostgreSQL", &pg, pipeline_n, batch).await;
    }
}
