//! Audience latency benchmark: time from an acknowledged message to its `audience_entered` event on
//! a single node (target p99 ≤ 50 ms). Core runs in-process (SQLite; also PostgreSQL when
//! `TOUCHPOINT_BENCH_PG_URL` is set). 2·`K` profiles first get `group` with seats_provisioned 5;
//! then `integration_connected` (which puts the profile into `product_qualified_lead`) is POSTed to
//! `/v1/track` for K profiles one at a time at `RATE`/s ("paced"), then for the other K at
//! `BURST_CONCURRENCY` concurrent connections ("burst"). Latency = the moment the
//! `audience_entered` row became visible to another connection − the moment the client got the
//! HTTP 200 (the ack, sent only after a durable commit). Visibility is seen by polling
//! `audience_events` every `POLL_US` µs (default 1000) on its own read-only connection in its own
//! thread; the stage's own `at` stamp (taken before its transaction commits) is reported beside it.
//! Bounded: every wait has a deadline. Talks only to 127.0.0.1. Run: `scripts/bench-audience-latency.sh`.
#![allow(clippy::print_stdout)]

use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use touchpoint_tests::{SERVER_KEY, TestApp, fresh_database, spawn_app_with, test_config};

const AUDIENCE: &str = "product_qualified_lead";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
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

/// When each profile's `audience_entered` row was first seen, and the row's `at`.
type Seen = Arc<Mutex<HashMap<String, (Instant, i64)>>>;

/// Polls `audience_events` from a dedicated thread (own runtime, own read-only connection), so the
/// observer is not scheduled behind the server's tasks.
fn spawn_poller(
    url: String,
    period: Duration,
    seen: Seen,
    stop: Arc<AtomicBool>,
    polls: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<anyhow::Result<()>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            sqlx::any::install_default_drivers();
            let url = if url.starts_with("sqlite:") {
                format!("{url}?mode=ro")
            } else {
                url
            };
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await?;
            let mut last: i64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let rows: Vec<(i64, String, i64)> = sqlx::query_as(&format!(
                    "SELECT id, profile_id, at FROM audience_events WHERE id > {last} \
                     AND kind = 'audience_entered' AND audience = '{AUDIENCE}' ORDER BY id"
                ))
                .fetch_all(&mut conn)
                .await?;
                let now = Instant::now();
                polls.fetch_add(1, Ordering::Relaxed);
                if !rows.is_empty() {
                    let mut s = seen.lock().expect("lock");
                    for (id, profile, at) in rows {
                        last = last.max(id);
                        s.entry(profile).or_insert((now, at));
                    }
                }
                std::thread::sleep(period);
            }
            Ok(())
        })
    })
}

/// Waits (at most 60 s) until the profiles and audience stages have processed the whole log.
async fn settle(app: &TestApp) -> anyhow::Result<()> {
    app.wait_processed().await;
    for _ in 0..1200 {
        let (_, p) = app.admin_get("/admin/pipeline").await;
        if p["audiencesCursor"].as_i64() >= p["profilesCursor"].as_i64() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the audience stage did not catch up within 60 s")
}

/// One acknowledged `integration_connected`: (user, ack instant, ack wall ms, send→ack ms).
type Ack = (String, Instant, f64, f64);

async fn connect(app: &TestApp, user: &str) -> anyhow::Result<Ack> {
    let sent = Instant::now();
    let r = app
        .post(
            "/v1/track",
            SERVER_KEY,
            &json!({"userId": user, "event": "integration_connected",
                "properties": {"integration_name": "slack"}}),
        )
        .await;
    let (ack, ack_wall) = (Instant::now(), wall_ms());
    anyhow::ensure!(r.status() == 200, "track for {user}: {}", r.status());
    Ok((
        user.to_owned(),
        ack,
        ack_wall,
        (ack - sent).as_secs_f64() * 1e3,
    ))
}

fn q(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((p * sorted.len() as f64) as usize).min(sorted.len() - 1)]
}

struct Variant {
    name: String,
    sent: usize,
    entered: usize,
    ack: Vec<f64>,
    seen: Vec<f64>,
    stamped: Vec<f64>,
}

/// The stages' runtime as `touchpoint serve` has it: threads at `TOUCHPOINT_BACKGROUND_NICE`
/// (10 unless set; 0 gives them the intake's priority). Kept for the whole process.
fn background() -> Option<tokio::runtime::Handle> {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let nice = std::env::var("TOUCHPOINT_BACKGROUND_NICE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(touchpoint_core::background::NICE);
    touchpoint_core::background::set_nice(nice);
    let rt = RUNTIME.get_or_init(|| {
        touchpoint_core::background::runtime(2).expect("the stages' runtime starts")
    });
    Some(rt.handle().clone())
}

async fn run(
    label: &str,
    url: String,
    tmp: Option<tempfile::TempDir>,
) -> anyhow::Result<Vec<Variant>> {
    let k = env_num("K", 300) as usize;
    let rate = env_num("RATE", 20).max(1);
    let burst_conc = env_num("BURST_CONCURRENCY", 16).max(1) as usize;
    let period = Duration::from_micros(env_num("POLL_US", 1000));
    let mut config = test_config(url.clone());
    config.background = background();
    // As `touchpoint serve` reads it (unset: chosen by the database): stages hold back while this
    // many requests share a commit.
    config.intake_busy_requests = match std::env::var("TOUCHPOINT_INTAKE_BUSY_REQUESTS") {
        Ok(v) => Some(
            v.parse()
                .map_err(|e| anyhow::anyhow!("TOUCHPOINT_INTAKE_BUSY_REQUESTS={v:?}: {e}"))?,
        ),
        Err(_) => None,
    };
    let app = Arc::new(spawn_app_with(config, tmp).await);

    // 2K profiles, each in an account with 5 seats (not yet in the audience: no integration).
    let users: Vec<String> = (0..2 * k).map(|i| format!("al-{i}")).collect();
    for chunk in users.chunks(200) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|u| {
                json!({"type": "group", "userId": u, "groupId": format!("acct-{u}"),
                "traits": {"name": "Acme", "seats_provisioned": 5}})
            })
            .collect();
        let r = app
            .post("/v1/batch", SERVER_KEY, &json!({"batch": batch}))
            .await;
        anyhow::ensure!(r.status() == 200, "seed batch: {}", r.status());
    }
    settle(&app).await?;
    let mut profile_of = HashMap::new();
    for u in &users {
        let p = app
            .profile("user_id", u)
            .await
            .ok_or_else(|| anyhow::anyhow!("no profile for {u}"))?;
        profile_of.insert(u.clone(), p["id"].as_str().unwrap_or("").to_owned());
    }

    let seen: Seen = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let polls = Arc::new(AtomicUsize::new(0));
    let poller = spawn_poller(url, period, seen.clone(), stop.clone(), polls.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    anyhow::ensure!(
        seen.lock().expect("lock").is_empty(),
        "profiles entered the audience before their integration_connected"
    );
    let poll_start = (Instant::now(), polls.load(Ordering::Relaxed));

    // Paced: one at a time, RATE a second (a late ack delays the next send; no catch-up burst).
    let mut paced = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = Instant::now() + Duration::from_secs(k as u64 / rate + 60);
    for u in &users[..k] {
        tick.tick().await;
        anyhow::ensure!(Instant::now() < deadline, "paced run over its deadline");
        paced.push(connect(&app, u).await?);
    }
    // Burst: the other K as fast as BURST_CONCURRENCY connections go.
    let next = Arc::new(AtomicUsize::new(0));
    let burst_users: Arc<Vec<String>> = Arc::new(users[k..].to_vec());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..burst_conc {
        let (app, next, burst_users) = (app.clone(), next.clone(), burst_users.clone());
        tasks.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(u) = burst_users.get(i) else {
                    return anyhow::Ok(out);
                };
                out.push(connect(&app, u).await?);
            }
        });
    }
    let mut burst = Vec::new();
    while let Some(r) = tasks.join_next().await {
        burst.extend(r??);
    }

    // Bounded wait for the last entries, then stop the observer.
    let end = Instant::now() + Duration::from_secs(30);
    while seen.lock().expect("lock").len() < 2 * k && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let poll_rate = (polls.load(Ordering::Relaxed) - poll_start.1) as f64
        / poll_start.0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    poller
        .join()
        .map_err(|_| anyhow::anyhow!("poller panicked"))??;
    println!(
        "{label}: observer polled audience_events {poll_rate:.0} times/s (target period {} µs)",
        period.as_micros()
    );

    let seen = seen.lock().expect("lock").clone();
    let variant = |name: String, acks: &[Ack]| {
        let mut v = Variant {
            name,
            sent: acks.len(),
            entered: 0,
            ack: acks.iter().map(|a| a.3).collect(),
            seen: Vec::new(),
            stamped: Vec::new(),
        };
        for (user, ack, ack_wall, _) in acks {
            if let Some((at, stamp)) = profile_of.get(user).and_then(|p| seen.get(p)) {
                v.entered += 1;
                // Signed: the entry can become visible before the 200 reaches the client.
                let ms = if at >= ack {
                    (*at - *ack).as_secs_f64() * 1e3
                } else {
                    -(*ack - *at).as_secs_f64() * 1e3
                };
                v.seen.push(ms);
                v.stamped.push(*stamp as f64 - ack_wall);
            }
        }
        for xs in [&mut v.ack, &mut v.seen, &mut v.stamped] {
            xs.sort_by(f64::total_cmp);
        }
        v
    };
    Ok(vec![
        variant(format!("{label}, paced {rate}/s, one at a time"), &paced),
        variant(format!("{label}, burst, {burst_conc} concurrent"), &burst),
    ])
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let (url, tmp) = fresh_database(touchpoint_tests::Db::Sqlite).await;
    rows.extend(run("SQLite", url, tmp).await?);
    if let Ok(admin) = std::env::var("TOUCHPOINT_BENCH_PG_URL")
        && !admin.is_empty()
    {
        let url = pg_database(&admin).await?;
        rows.extend(run("PostgreSQL (fsync=off)", url, None).await?);
    }
    println!();
    println!(
        "| run | sent | entered | send → ack p50 | ack → entered visible p50 | p95 | p99 | max | `at` stamp − ack p50 / p99 | p99 ≤ 50 ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for v in &rows {
        let p99 = q(&v.seen, 0.99);
        println!(
            "| {} | {} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} / {:.1} ms | {} |",
            v.name,
            v.sent,
            v.entered,
            q(&v.ack, 0.5),
            q(&v.seen, 0.5),
            q(&v.seen, 0.95),
            p99,
            q(&v.seen, 1.0),
            q(&v.stamped, 0.5),
            q(&v.stamped, 0.99),
            if v.entered < v.sent {
                "**missed** (entries missing)"
            } else if p99 <= 50.0 {
                "met"
            } else {
                "**missed**"
            },
        );
    }
    anyhow::ensure!(
        rows.iter().all(|v| v.entered == v.sent),
        "some profiles did not enter the audience within the wait"
    );
    Ok(())
}
