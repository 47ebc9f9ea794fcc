//! Processing throughput with 1 and with 2 processing nodes on one PostgreSQL: the processing nodes
//! (real `touchpoint serve` processes) start and settle their stage leases, then an ingest-only node
//! fills the log as fast as it takes it, and the clock runs from the first send until the profiles
//! and audience stages have drained the log; reports messages/s and the ratio of 2 nodes to 1,
//! same run.
//! Run: `scripts/bench-scale.sh` (PostgreSQL with fsync on, so the database is the limit).
#![allow(clippy::print_stdout)]

use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use touchpoint_tests::{
    WEB_KEY, admin_json, free_port, fresh_postgres_database, start_server_process_with,
    synthetic_message, wait_ready,
};

fn server_exe() -> PathBuf {
    std::env::current_exe()
        .expect("own path")
        .with_file_name("tp-server")
}

/// Fills a fresh database with `n` messages, then times `nodes` processing nodes draining it.
async fn run(
    client: &reqwest::Client,
    admin_url: &str,
    n: usize,
    nodes: usize,
) -> (Duration, Duration, i64) {
    let db_url = fresh_postgres_database(admin_url).await;
    let exe = server_exe();
    let exe = exe.to_str().expect("utf-8 path");
    let port = free_port();
    let ingest_base = format!("http://127.0.0.1:{port}");
    let mut ingest =
        start_server_process_with(exe, &db_url, port, &[("TOUCHPOINT_PROCESS", "false")]);
    wait_ready(client, &ingest_base).await;
    let mut children = Vec::new();
    let mut bases = Vec::new();
    for _ in 0..nodes {
        let port = free_port();
        children.push(start_server_process_with(
            exe,
            &db_url,
            port,
            &[("RUST_LOG", "error")],
        ));
        bases.push(format!("http://127.0.0.1:{port}"));
    }
    for b in &bases {
        wait_ready(client, b).await;
    }
    // Let the nodes see each other and settle their leases before the clock starts (bounded).
    for _ in 0..300 {
        let mut settled = true;
        for b in &bases {
            let v = admin_json(client, b, "/admin/pipeline/leases").await;
            settled &= v["liveNodes"].as_u64() == Some(nodes as u64);
        }
        if settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all: Vec<serde_json::Value> = (0..n).map(synthetic_message).collect();
    let started = Instant::now();
    for chunk in all.chunks(250) {
        let r = client
            .post(format!("{ingest_base}/v1/batch"))
            .basic_auth(WEB_KEY, Some(""))
            .json(&json!({ "batch": chunk }))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
    }
    let filled = started.elapsed();
    // Bounded: at most 10 minutes.
    let deadline = started + Duration::from_secs(600);
    let mut profiles = 0;
    while Instant::now() < deadline {
        let v = admin_json(client, &bases[0], "/admin/pipeline").await;
        let head = v["logHead"].as_i64().unwrap_or(i64::MAX);
        if v["profilesCursor"].as_i64() >= Some(head) && v["audiencesCursor"].as_i64() >= Some(head)
        {
            profiles = v["profiles"].as_i64().unwrap_or(0);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    for mut c in children {
        let _ = c.start_kill();
    }
    let _ = ingest.start_kill();
    (took, filled, profiles)
}

#[tokio::main]
async fn main() {
    let url = std::env::var("TOUCHPOINT_BENCH_PG_URL").expect("TOUCHPOINT_BENCH_PG_URL");
    let n: usize = std::env::var("MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    println!(
        "| round | processing nodes | messages | log filled in | drained in | messages/s | profiles |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut rates = [Vec::new(), Vec::new()];
    for round in 1..=rounds {
        // Alternate the order so drift on a noisy machine hits both sides.
        let order: [usize; 2] = if round % 2 == 1 { [1, 2] } else { [2, 1] };
        for nodes in order {
            let (took, filled, profiles) = run(&client, &url, n, nodes).await;
            let rate = n as f64 / took.as_secs_f64();
            rates[nodes - 1].push(rate);
            println!(
                "| {round} | {nodes} | {n} | {:.2} s | {:.2} s | {rate:.0} | {profiles} |",
                filled.as_secs_f64(),
                took.as_secs_f64()
            );
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (one, two) = (mean(&rates[0]), mean(&rates[1]));
    println!(
        "\nmean: 1 node {one:.0} messages/s, 2 nodes {two:.0} messages/s, ratio 2:1 = {:.2}x",
        two / one
    );
}
