//! Profile lookups at 1M profiles (SQLite): `GET /v1/profiles/user_id:…` with a scoped API token
//! against the same lookup through the admin route (`GET /admin/profiles?kind=user_id&value=…`), in
//! the same run, alternating phases so both see the same machine. Profiles are bulk-inserted with
//! SQL (two identities and two traits each; no events). Run: `scripts/bench-api.sh`
//! (`PROFILES`, `SECONDS`, `CONCURRENCY` override the defaults 1,000,000, 20 and 16).
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use touchpoint_core::{Application, Config};

/// Builds the lookup request of one route for a profile number.
type Request = Arc<dyn Fn(&reqwest::Client, u64) -> reqwest::RequestBuilder + Send + Sync>;

const ADMIN: &str = "bench-admin-token-0123456789";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Inserts `n` profiles, each with `user_id` u-N and `email` uN@bench.example identities and two
/// traits, in one transaction.
async fn load(url: &str, n: u64) {
    let pool = sqlx::SqlitePool::connect(url).await.expect("connect");
    let rows = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) SELECT i FROM n"
    );
    let statements = [
        format!(
            "INSERT INTO profiles (id, created_at) SELECT printf('p-%08d', i), 1700000000000 FROM ({rows})"
        ),
        format!(
            "INSERT INTO identities (kind, value, profile_id, added_at, seq) \
                 SELECT 'user_id', 'u-' || i, printf('p-%08d', i), 1700000000000, 0 FROM ({rows})"
        ),
        format!(
            "INSERT INTO identities (kind, value, profile_id, added_at, seq) \
                 SELECT 'email', 'u' || i || '@bench.example', printf('p-%08d', i), 1700000000000, 0 FROM ({rows})"
        ),
        format!(
            "INSERT INTO profile_traits (profile_id, key, value, updated_at, seq) \
                 SELECT printf('p-%08d', i), 'plan_tier', '\"pro\"', 1700000000000, 0 FROM ({rows})"
        ),
        format!(
            "INSERT INTO profile_traits (profile_id, key, value, updated_at, seq) \
                 SELECT printf('p-%08d', i), 'email', '\"u' || i || '@bench.example\"', 1700000000000, 0 FROM ({rows})"
        ),
    ];
    let mut tx = pool.begin().await.expect("begin");
    for s in &statements {
        sqlx::query(s).execute(&mut *tx).await.expect("bulk insert");
    }
    tx.commit().await.expect("commit");
    sqlx::query("ANALYZE")
        .execute(&pool)
        .await
        .expect("analyze");
    pool.close().await;
}

/// Latencies and request count of one route over its phases.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    elapsed: Duration,
    failures: u64,
}

/// Runs `concurrency` clients against `url_of(random id)` for `seconds`.
async fn phase(
    client: &reqwest::Client,
    concurrency: u64,
    seconds: f64,
    n: u64,
    request: Request,
    tally: &mut Tally,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (client, stop, failures, request) = (
            client.clone(),
            stop.clone(),
            failures.clone(),
            request.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut seed =
                0x9E37_79B9_7F4A_7C15u64 ^ (worker + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let id = seed % n + 1;
                let t = Instant::now();
                match request(&client, id).send().await {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed());
                    }
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        tally.latencies.extend(t.await.expect("client task"));
    }
    tally.elapsed += start.elapsed();
    tally.failures += failures.load(Ordering::Relaxed);
}

fn report(name: &str, t: &mut Tally) -> (f64, Duration) {
    t.latencies.sort_unstable();
    let pct =
        |p: f64| t.latencies[((t.latencies.len() as f64 * p) as usize).min(t.latencies.len() - 1)];
    let rate = t.latencies.len() as f64 / t.elapsed.as_secs_f64();
    println!(
        "| {name} | {} | {:.0} | {:.2} ms | {:.2} ms | {} |",
        t.latencies.len(),
        rate,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        t.failures
    );
    (rate, pct(0.99))
}

#[tokio::main]
async fn main() {
    let n = env_number("PROFILES", 1_000_000);
    let seconds = env_number("SECONDS", 20) as f64;
    let concurrency = env_number("CONCURRENCY", 16);
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let mut config = Config {
        bind: "127.0.0.1:0".parse().expect("address"),
        database_url: url.clone(),
        plan_path: touchpoint_tests::repo_root().join("TRACKING_PLAN.md"),
        audiences_path: touchpoint_tests::repo_root().join("AUDIENCES.md"),
        admin_token: secrecy::SecretString::from(ADMIN),
        api_rate_limit_per_second: 0,
        ..Config::default()
    };
    config.process = false;
    // Migrate, then load.
    touchpoint_core::stores::connect(&url)
        .await
        .expect("migrate");
    let t = Instant::now();
    load(&url, n).await;
    println!("loaded {n} profiles in {:.1} s", t.elapsed().as_secs_f64());
    let app = Application::build(config).await.expect("build");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(async move {
        let _ = app.run().await;
    });
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency as usize)
        .build()
        .expect("client");
    let created: serde_json::Value = client
        .post(format!("{base}/admin/tokens"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"name": "bench", "scopes": ["profiles:read"]}))
        .send()
        .await
        .expect("create token")
        .json()
        .await
        .expect("token JSON");
    let token = created["token"].as_str().expect("token").to_owned();
    let api_base = base.clone();
    let api: Request = Arc::new(move |c, id| {
        c.get(format!("{api_base}/v1/profiles/user_id:u-{id}"))
            .bearer_auth(&token)
    });
    let admin: Request = Arc::new(move |c, id| {
        c.get(format!("{base}/admin/profiles?kind=user_id&value=u-{id}"))
            .bearer_auth(ADMIN)
    });
    // Warm both paths, then alternate four phases each.
    let (mut warm, mut a, mut b) = (Tally::default(), Tally::default(), Tally::default());
    phase(&client, concurrency, 2.0, n, api.clone(), &mut warm).await;
    phase(&client, concurrency, 2.0, n, admin.clone(), &mut warm).await;
    for _ in 0..4 {
        phase(&client, concurrency, seconds / 4.0, n, api.clone(), &mut a).await;
        phase(
            &client,
            concurrency,
            seconds / 4.0,
            n,
            admin.clone(),
            &mut b,
        )
        .await;
    }
    println!("\n{n} profiles, {concurrency} connections, {seconds} s per route\n");
    println!("| route | lookups | lookups/s | p50 | p99 | failed |");
    println!("|---|---|---|---|---|---|");
    let (api_rate, api_p99) = report("`GET /v1/profiles/user_id:…` (API token)", &mut a);
    let (admin_rate, admin_p99) = report(
        "`GET /admin/profiles?kind=user_id&value=…` (admin token)",
        &mut b,
    );
    println!(
        "\nratio API / admin: throughput {:.2}×, p99 {:.2}×",
        api_rate / admin_rate,
        api_p99.as_secs_f64() / admin_p99.as_secs_f64()
    );
}
