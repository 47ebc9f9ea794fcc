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
//!
//! `NODE_CPU` (a fraction of one core, e.g. `0.4`) gives each processing node a CPU of its own: a
//! cgroup v1 `cpu` group per node with that quota, as separate machines would have. Without it,
//! every node shares the same two cores with PostgreSQL and one another, so a second node adds no
//! CPU; and since one node already runs every partition's stages at once, a slow database's round
//! trips are overlapped inside one node. Needs root and `/sys/fs/cgroup/cpu` (cgroup v1).
//!
//! `FILL_FIRST=1` times the processing alone: the processing nodes are stopped (`SIGSTOP`, with
//! 10-s leases, so a fill of a few seconds does not cost them their stages) while the ingest node
//! fills the log, and the clock runs from `SIGCONT` until the stages have drained it. Without it
//! the nodes process while the log fills, and a run can measure the intake's speed rather than the
//! processing's.
#![allow(clippy::print_stdout)]

use rustix::process::{Pid, Signal, kill_process};
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

/// A CPU of its own for one process: a cgroup v1 `cpu` group with a quota, removed on drop.
struct CpuQuota {
    dir: PathBuf,
}

impl CpuQuota {
    const PERIOD_US: u64 = 100_000;

    /// Puts process `pid` in a new group limited to `cores` of one core.
    fn new(name: &str, cores: f64, pid: u32) -> CpuQuota {
        let dir = PathBuf::from("/sys/fs/cgroup/cpu").join(name);
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "NODE_CPU needs a cgroup v1 cpu hierarchy and root: {}: {e}",
                dir.display()
            )
        });
        let quota = (cores * Self::PERIOD_US as f64).round() as u64;
        let write = |file: &str, value: String| {
            std::fs::write(dir.join(file), value)
                .unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()));
        };
        write("cpu.cfs_period_us", Self::PERIOD_US.to_string());
        write("cpu.cfs_quota_us", quota.to_string());
        write("cgroup.procs", pid.to_string());
        CpuQuota { dir }
    }

    /// How long the quota has held the group's processes back.
    fn throttled(&self) -> Duration {
        std::fs::read_to_string(self.dir.join("cpu.stat"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("throttled_time "))
            .and_then(|v| v.trim().parse().ok())
            .map_or(Duration::ZERO, Duration::from_nanos)
    }
}

/// The fields of `/proc/PID/stat` after the command name (which ends at the last ')'), so that
/// `fields[0]` is the state, `[1]` the parent's pid, `[11]` and `[12]` utime and stime.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// CPU time (user and system) process `pid` has used so far, from `/proc` (zero if gone); utime
/// and stime are in clock ticks of 1/100 s (USER_HZ on Linux).
fn cpu_time(pid: Option<u32>) -> Duration {
    let Some(fields) = pid.and_then(stat_fields) else {
        return Duration::ZERO;
    };
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        // The group can go only once its processes have; they were killed just before (bounded).
        for _ in 0..100 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// CPU time the database server has used so far: its postmaster and every process it started, found
/// from the postmaster's pid file (`TOUCHPOINT_BENCH_PG_PIDFILE`; zero without it). A backend that
/// exits between two readings takes its time with it; the nodes' pools keep theirs open.
fn database_cpu_time() -> Duration {
    let Some(postmaster) = std::env::var("TOUCHPOINT_BENCH_PG_PIDFILE")
        .ok()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
    else {
        return Duration::ZERO;
    };
    let parent = |pid: u32| stat_fields(pid)?.get(1)?.parse::<u32>().ok();
    let pids = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|&pid| pid == postmaster || parent(pid) == Some(postmaster))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    pids.into_iter().map(|pid| cpu_time(Some(pid))).sum()
}

/// Sends `signal` (stop or continue) to every child.
fn signal(children: &[tokio::process::Child], signal: Signal) {
    for pid in children.iter().filter_map(tokio::process::Child::id) {
        let target = i32::try_from(pid)
            .ok()
            .and_then(Pid::from_raw)
            .expect("a child's pid");
        kill_process(target, signal).unwrap_or_else(|e| panic!("signal {signal:?} to {pid}: {e}"));
    }
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
    node_cpu: Option<f64>,
    fill_first: bool,
) -> Drained {
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
    // Declared before the nodes, so that on a panic the nodes go first and their groups after.
    let mut quotas = Vec::new();
    let mut children = Vec::new();
    let mut bases = Vec::new();
    for k in 0..setup.nodes {
        let port = free_port();
        let child = start_server_process_with(
            exe,
            &node_url,
            port,
            &[
                (
                    "RUST_LOG",
                    std::env::var("NODE_LOG").as_deref().unwrap_or("error"),
                ),
                // Long enough that a node stopped for the fill keeps its leases.
                ("TOUCHPOINT_LEASE_SECS", if fill_first { "10" } else { "5" }),
            ],
        );
        if let Some(cores) = node_cpu {
            let pid = child.id().expect("a running node");
            quotas.push(CpuQuota::new(
                &format!("touchpoint-bench-node-{k}"),
                cores,
                pid,
            ));
        }
        children.push(child);
        bases.push(format!("http://127.0.0.1:{port}"));
    }
    for b in &bases {
        wait_ready(client, b).await;
    }
    // Let the nodes see each other and settle their leases before the clock starts (bounded):
    // every node live in every node's view, and every leased stage or job held by exactly one
    // node (a handover in progress shows as a lease row nobody holds), twice in a row a second
    // apart.
    let mut settled_twice = 0;
    for _ in 0..120 {
        let mut settled = true;
        let mut held = Vec::new();
        let mut leased = std::collections::BTreeSet::new();
        for b in &bases {
            let v = admin_json(client, b, "/admin/pipeline/leases").await;
            settled &= v["liveNodes"].as_u64() == Some(setup.nodes as u64);
            held.extend(
                v["held"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(str::to_owned)),
            );
            leased.extend(
                v["leases"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|l| l["stage"].as_str().map(str::to_owned)),
            );
        }
        let distinct: std::collections::BTreeSet<String> = held.iter().cloned().collect();
        settled &= distinct.len() == held.len() && distinct == leased;
        settled_twice = if settled { settled_twice + 1 } else { 0 };
        if settled_twice == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(
        settled_twice, 2,
        "the nodes' leases did not settle in 2 minutes"
    );
    let all: Vec<serde_json::Value> = (0..n).map(synthetic_message).collect();
    if fill_first {
        signal(&children, Signal::STOP);
    }
    let cpu_before: Duration = children.iter().map(|c| cpu_time(c.id())).sum();
    let mut overlong_fill = false;
    let throttled_before: Duration = quotas.iter().map(CpuQuota::throttled).sum();
    let mut database_before = database_cpu_time();
    let mut started = Instant::now();
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
    if fill_first {
        if filled > Duration::from_secs(6) {
            eprintln!(
                "warning: the fill took {filled:?}; stopped nodes may have lost leases (10 s)"
            );
            overlong_fill = true;
        }
        database_before = database_cpu_time();
        started = Instant::now();
        signal(&children, Signal::CONT);
    }
    // Bounded: at most 10 minutes.
    let deadline = started + Duration::from_secs(600);
    let mut profiles = 0;
    let verbose = std::env::var("VERBOSE").is_ok();
    let mut next_report = Instant::now();
    while Instant::now() < deadline {
        // Asked of the ingest node (same database), so the polling costs no processing node CPU.
        let v = admin_json(client, &ingest_base, "/admin/pipeline").await;
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    let node_cpu = children
        .iter()
        .map(|c| cpu_time(c.id()))
        .sum::<Duration>()
        .saturating_sub(cpu_before);
    let throttled = quotas
        .iter()
        .map(CpuQuota::throttled)
        .sum::<Duration>()
        .saturating_sub(throttled_before);
    let database_cpu = database_cpu_time().saturating_sub(database_before);
    for c in &mut children {
        let _ = c.start_kill();
        let _ = c.wait().await;
    }
    drop(quotas);
    let _ = ingest.start_kill();
    Drained {
        took,
        filled,
        profiles,
        node_cpu,
        throttled,
        database_cpu,
        overlong_fill,
    }
}

/// What one setup's run measured.
struct Drained {
    /// From the first send (with `FILL_FIRST`, from the end of the fill) until the profiles and
    /// audience stages reached the log's head.
    took: Duration,
    /// How long the ingest node took to take every message.
    filled: Duration,
    profiles: i64,
    /// CPU time the processing nodes used while the clock ran, all nodes together.
    node_cpu: Duration,
    /// How long their CPU quotas (`NODE_CPU`) held them back, all nodes together.
    throttled: Duration,
    /// CPU time PostgreSQL used meanwhile (the fill included, unless `FILL_FIRST`).
    database_cpu: Duration,
    /// With `FILL_FIRST`, the fill took so long that the stopped nodes may have lost leases.
    overlong_fill: bool,
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
    let node_cpu = std::env::var("NODE_CPU").ok().map(|v| {
        let cores: f64 = v
            .parse()
            .expect("NODE_CPU: a fraction of one core, e.g. 0.4");
        assert!(cores > 0.0, "NODE_CPU must be above 0");
        cores
    });
    let fill_first = std::env::var("FILL_FIRST").is_ok_and(|v| v == "1");
    println!("link delay each way: {} ms", delay.as_millis());
    println!(
        "clock: {}",
        if fill_first {
            "from the end of the fill (processing nodes stopped meanwhile) until drained"
        } else {
            "from the first send until drained (processing while the log fills)"
        }
    );
    match node_cpu {
        Some(cores) => println!("CPU per processing node: {cores} of one core (cgroup quota)"),
        None => println!("CPU per processing node: unlimited (all share the machine)"),
    }
    println!(
        "| round | processing nodes | partitions | profiles stages | messages | log filled in | drained in | messages/s | profiles | nodes' CPU | throttled | PostgreSQL's CPU |"
    );
    println!("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
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
            let d = run(&client, &url, n, setup, link, node_cpu, fill_first).await;
            let rate = n as f64 / d.took.as_secs_f64();
            rates[i].push(rate);
            println!(
                "| {round} | {} | {} | {} | {n} | {:.2} s{} | {:.2} s | {rate:.0} | {} | {:.2} s | {:.2} s | {:.2} s |",
                setup.nodes,
                setup.partitions,
                if setup.per_partition {
                    "one per partition"
                } else {
                    "one"
                },
                d.filled.as_secs_f64(),
                if d.overlong_fill {
                    " (too long: leases may have moved)"
                } else {
                    ""
                },
                d.took.as_secs_f64(),
                d.profiles,
                d.node_cpu.as_secs_f64(),
                d.throttled.as_secs_f64(),
                d.database_cpu.as_secs_f64()
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
