//! Processing throughput on one PostgreSQL: one processing node with a one-partition log (the
//! profiles stage as one instance, the baseline), one node with eight partitions (eight profiles
//! stages at once), and two nodes with eight partitions. The processing nodes (real `touchpoint
//! serve` processes) start and settle their stage leases, then an ingest-only node fills the log as
//! fast as it takes it, and the clock runs from the first send until the profiles and audience
//! stages have drained the log; reports messages/s and ratios, same run.
//!
//! `DELAY_MS` puts the processing nodes behind a delayed link: a proxy on 127.0.0.1 that holds every
//! chunk it forwards, each way, for that long (so the database's round trips, not the CPU, are the
//! limit). Run: `scripts/bench-scale.sh` (PostgreSQL with fsync on).
#![allow(clippy::print_stdout)]

use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use touchpoint_tests::{
    WEB_KEY, admin_json, free_port, fresh_postgres_database, start_server_process_with,
    synthetic_message, wait_ready,
};

fn server_exe() -> PathBuf {
    std::env::current_exe()
        .expect("own path")
        .with_file_name("tp-server")
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Copies `from` to `to`, delivering each chunk `delay` after it arrived, in order.
async fn delayed_pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0
                || tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
            {
                break;
            }
        }
    };
    let write = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due.into()).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

/// A proxy on 127.0.0.1 to `port` that delays every chunk by `delay` each way; returns its port.
async fn delayed_link(port: u16, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let own = listener.local_addr().expect("proxy address").port();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", port)).await else {
                    return;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                tokio::join!(delayed_pipe(ri, wo, delay), delayed_pipe(ro, wi, delay));
            });
        }
    });
    own
}

/// `url` with its port replaced.
fn via_port(url: &str, port: u16) -> String {
    let (head, rest) = url.rsplit_once(':').expect("url with a port");
    let path = rest.split_once('/').map_or("", |(_, p)| p);
    format!("{head}:{port}/{path}")
}

/// One configuration: processing nodes, log partitions, and one profiles stage per partition or
/// one over the whole log.
#[derive(Clone, Copy)]
struct Setup {
    nodes: usize,
    partitions: u16,
    per_partition: bool,
}

/// Fills a fresh database with `n` messages, then times the processing nodes draining it.
async fn run(
    client: &reqwest::Client,
    admin_url: &str,
    n: usize,
    setup: Setup,
    link: Option<u16>,
) -> (Duration, Duration, i64) {
    let db_url = fresh_postgres_database(admin_url).await;
    let node_url = link.map_or_else(|| db_url.clone(), |port| via_port(&db_url, port));
    let exe = server_exe();
    let exe = exe.to_str().expect("utf-8 path");
    let partitions = setup.partitions.to_string();
    let port = free_port();
    let ingest_base = format!("http://127.0.0.1:{port}");
    // The ingest node creates the database, with the setup's partitions.
    let mut ingest = start_server_process_with(
        exe,
        &db_url,
        port,
        &[
            ("TOUCHPOINT_PROCESS", "false"),
            ("TOUCHPOINT_LOG_PARTITIONS", &partitions),
            (
                "TOUCHPOINT_PROFILES_PER_PARTITION",
                if setup.per_partition { "true" } else { "false" },
            ),
        ],
    );
    wait_ready(client, &ingest_base).await;
    let mut children = Vec::new();
    let mut bases = Vec::new();
    for _ in 0..setup.nodes {
        let port = free_port();
        children.push(start_server_process_with(
            exe,
            &node_url,
            port,
            &[(
                "RUST_LOG",
                std::env::var("NODE_LOG").as_deref().unwrap_or("error"),
            )],
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
            settled &= v["liveNodes"].as_u64() == Some(setup.nodes as u64);
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
    let verbose = std::env::var("VERBOSE").is_ok();
    let mut next_report = Instant::now();
    while Instant::now() < deadline {
        let v = admin_json(client, &bases[0], "/admin/pipeline").await;
        if verbose && Instant::now() >= next_report {
            next_report += Duration::from_secs(1);
            eprintln!(
                "{:>5.1} s: head {} profiles {} audiences {}",
                started.elapsed().as_secs_f64(),
                v["logHead"],
                v["profilesCursor"],
                v["audiencesCursor"]
            );
        }
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
    let n = env("MESSAGES", 20_000) as usize;
    let rounds = env("ROUNDS", 2) as usize;
    let delay = Duration::from_millis(env("DELAY_MS", 0));
    let link = if delay.is_zero() {
        None
    } else {
        let pg_port: u16 = url
            .rsplit_once(':')
            .and_then(|(_, rest)| rest.split('/').next())
            .and_then(|p| p.parse().ok())
            .expect("a port in TOUCHPOINT_BENCH_PG_URL");
        Some(delayed_link(pg_port, delay).await)
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    println!("link delay each way: {} ms", delay.as_millis());
    println!(
        "| round | processing nodes | partitions | profiles stages | messages | log filled in | drained in | messages/s | profiles |"
    );
    println!("|---:|---:|---:|---|---:|---:|---:|---:|---:|");
    let setup = |nodes, partitions, per_partition| Setup {
        nodes,
        partitions,
        per_partition,
    };
    let setups = [
        setup(1, 1, false),
        setup(1, 8, false),
        setup(2, 8, false),
        setup(1, 8, true),
        setup(2, 8, true),
    ];
    let mut rates = vec![Vec::new(); setups.len()];
    for round in 1..=rounds {
        // Rotate the order so drift on a noisy machine hits every setup.
        for k in 0..setups.len() {
            let i = (k + round - 1) % setups.len();
            if std::env::var("ONLY").is_ok_and(|only| only != i.to_string()) {
                continue;
            }
            let setup = setups[i];
            let (took, filled, profiles) = run(&client, &url, n, setup, link).await;
            let rate = n as f64 / took.as_secs_f64();
            rates[i].push(rate);
            println!(
                "| {round} | {} | {} | {} | {n} | {:.2} s | {:.2} s | {rate:.0} | {profiles} |",
                setup.nodes,
                setup.partitions,
                if setup.per_partition {
                    "one per partition"
                } else {
                    "one"
                },
                filled.as_secs_f64(),
                took.as_secs_f64()
            );
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let base = mean(&rates[0]);
    if std::env::var("ONLY").is_ok() {
        return;
    }
    println!("\nmeans (ratio to 1 node x 1 partition):");
    for (setup, rates) in setups.iter().zip(&rates) {
        let rate = mean(rates);
        println!(
            "- {} node(s), {} partition(s), {} profiles stage(s): {rate:.0} messages/s, {:.2}x",
            setup.nodes,
            setup.partitions,
            if setup.per_partition {
                "per-partition"
            } else {
                "one"
            },
            rate / base
        );
    }
}
