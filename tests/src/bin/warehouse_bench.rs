//! Warehouse export benchmark: rows/s written and bytes per event of the Parquet export against
//! the raw JSON it comes from, in one run: (1) the stored JSON as NDJSON files (the baseline:
//! same batches, same fsync-and-rename), (2) the Parquet path alone (rows typed by the plan,
//! encoded, written durably), (3) the whole Parquet stage on SQLite (read the log, encode, write,
//! commit files and cursor), and (4) when `TOUCHPOINT_BENCH_PG_URL` names an empty database, the
//! PostgreSQL warehouse stage loading the same log. Run: `scripts/bench-warehouse.sh`.
#![allow(clippy::print_stdout)]

use serde_json::json;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;
use touchpoint_core::pipeline::{Batch, SystemClock};
use touchpoint_core::plan::PlanHandle;
use touchpoint_core::storage::{NewMessage, Status};
use touchpoint_core::warehouse::files::plan_files;
use touchpoint_core::warehouse::folder::Folder;
use touchpoint_core::warehouse::postgres::{self, PostgresStage};
use touchpoint_core::warehouse::records::{LogRow, message_record};
use touchpoint_core::warehouse::stage::ParquetStage;
use touchpoint_core::warehouse::{Settings, TargetProgress};

/// A small deterministic generator (no dependency for a benchmark's data).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const DAY_MS: i64 = 86_400_000;

/// One stored message as analytics.js and the server SDKs send it, after ingestion stamped it:
/// 40 % page views, 45 % tracks of the plan's events, 10 % identifies, 5 % groups, over one day.
fn message(i: usize, rng: &mut Rng, day0: i64) -> (String, &'static str, Option<String>, i64) {
    let person = i / 5;
    let anon = format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        rng.next() as u32,
        person % 65536,
        i % 4096,
        person % 4096,
        person
    );
    let user = format!("user-{person}");
    let at = day0 + rng.below(DAY_MS as u64) as i64;
    let ts = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let sources = ["google", "newsletter", "linkedin", "bing"];
    let path = ["/", "/pricing", "/docs", "/blog/launch", "/signup"][rng.below(5) as usize];
    let mut context = json!({
        "library": {"name": "analytics.js", "version": "npm:next-1.70.0"},
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36",
        "locale": "en-GB", "timezone": "Europe/London", "ip": "198.51.100.0",
        "page": {"path": path, "url": format!("https://example.com{path}"), "title": "Example", "referrer": "https://www.google.com/"},
    });
    if rng.below(3) == 0 {
        context["campaign"] =
            json!({"source": sources[rng.below(4) as usize], "medium": "cpc", "name": "launch"});
    }
    let kind = match rng.below(20) {
        0..=7 => "page",
        8..=16 => "track",
        17 | 18 => "identify",
        _ => "group",
    };
    let mut body = json!({
        "type": kind, "messageId": format!("ajs-next-{:032x}", (rng.next() as u128) << 64 | i as u128),
        "anonymousId": anon, "context": context, "integrations": {},
        "timestamp": ts(at), "originalTimestamp": ts(at - 3), "sentAt": ts(at + 40), "receivedAt": ts(at + 52),
    });
    let event = match kind {
        "page" => {
            body["name"] = json!("Example");
            body["properties"] = json!({"path": path, "url": format!("https://example.com{path}"),
                                        "title": "Example", "referrer": "https://www.google.com/"});
            None
        }
        "identify" => {
            body["userId"] = json!(user);
            body["traits"] = json!({"email": format!("p{person}@bench.example"), "plan_tier": "pro",
                                    "user_role": "admin", "name": format!("Person {person}")});
            None
        }
        "group" => {
            body["userId"] = json!(user);
            body["groupId"] = json!(format!("ws-{}", person / 3));
            body["traits"] = json!({"seats_provisioned": rng.below(20), "company": "Acme"});
            None
        }
        _ => {
            body["userId"] = json!(user);
            let (event, props) = match rng.below(6) {
                0 => (
                    "trial_started",
                    json!({"plan_tier": "pro", "trial_days": 14}),
                ),
                1 => (
                    "workspace_created",
                    json!({"workspace_id": format!("ws-{}", person / 3), "workspace_name": "Acme"}),
                ),
                2 => (
                    "teammate_invited",
                    json!({"workspace_id": format!("ws-{}", person / 3), "invitee_role": "member", "invite_method": "email"}),
                ),
                3 => (
                    "integration_connected",
                    json!({"integration_name": "slack", "workspace_id": format!("ws-{}", person / 3)}),
                ),
                4 => (
                    "feature_toggled",
                    json!({"feature_name": "dark_mode", "new_status": rng.below(2) == 0}),
                ),
                _ => (
                    "report_generated",
                    json!({"report_type": "usage", "row_count": rng.below(10_000)}),
                ),
            };
            body["event"] = json!(event);
            body["properties"] = props;
            Some(event.to_owned())
        }
    };
    (body.to_string(), kind, event, at)
}

fn ndjson_baseline(bodies: &[String], batch: usize, dir: &std::path::Path) -> (f64, u64, u64) {
    std::fs::create_dir_all(dir).unwrap();
    let start = Instant::now();
    let mut bytes = 0u64;
    let mut gzip = 0u64;
    for (n, chunk) in bodies.chunks(batch).enumerate() {
        let mut text = chunk.join("\n");
        text.push('\n');
        let tmp = dir.join(format!(".part-{n}.ndjson.tmp"));
        let mut f = std::fs::File::create(&tmp).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f.sync_all().unwrap();
        std::fs::rename(&tmp, dir.join(format!("part-{n}.ndjson"))).unwrap();
        std::fs::File::open(dir).unwrap().sync_all().unwrap();
        bytes += text.len() as u64;
    }
    let rate = bodies.len() as f64 / start.elapsed().as_secs_f64();
    for chunk in bodies.chunks(batch) {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        for b in chunk {
            enc.write_all(b.as_bytes()).unwrap();
            enc.write_all(b"\n").unwrap();
        }
        gzip += enc.finish().unwrap().len() as u64;
    }
    (rate, bytes, gzip)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let batch: usize = std::env::var("BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let plan_path = root.join("TRACKING_PLAN.md");
    let plan =
        touchpoint_tracking_plan::parse(&std::fs::read_to_string(&plan_path).unwrap()).unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let day0 = 1_796_083_200_000; // 2026-12-01
    let generated: Vec<(String, &'static str, Option<String>, i64)> =
        (0..n).map(|i| message(i, &mut rng, day0)).collect();
    let bodies: Vec<String> = generated.iter().map(|g| g.0.clone()).collect();
    let json_bytes: u64 = bodies.iter().map(|b| b.len() as u64).sum();
    let tmp = tempfile::tempdir().unwrap();
    println!(
        "N = {n} messages, batch {batch}; raw JSON {:.0} bytes/event",
        json_bytes as f64 / n as f64
    );
    println!();
    println!("| path | rows/s | bytes/event | vs raw JSON |");
    println!("|---|---:|---:|---:|");

    // (1) Baseline: the JSON as NDJSON, same batches and durability.
    let (ndjson_rate, ndjson_bytes, gzip_bytes) =
        ndjson_baseline(&bodies, batch, &tmp.path().join("ndjson"));
    println!(
        "| NDJSON files, fsync + rename (baseline) | {:.0} | {:.0} | 1.00× |",
        ndjson_rate,
        ndjson_bytes as f64 / n as f64
    );
    println!(
        "| NDJSON gzip -6 (size only) | – | {:.0} | {:.2}× |",
        gzip_bytes as f64 / n as f64,
        gzip_bytes as f64 / json_bytes as f64
    );

    // (2) The Parquet path alone: type rows by the plan, encode, write durably.
    let rows: Vec<LogRow> = generated
        .iter()
        .enumerate()
        .map(|(i, (body, _, _, at))| LogRow {
            seq: i as i64 + 1,
            source: "web".into(),
            message_id: format!("m{i}"),
            event_time: *at,
            received_at: at + 52,
            profile_id: None,
            body: body.clone(),
        })
        .collect();
    let folder = Folder::new(tmp.path().join("parquet-direct"));
    let start = Instant::now();
    let mut parquet_bytes = 0u64;
    let mut files = 0usize;
    let (mut typing, mut encoding, mut writing) = (0.0, 0.0, 0.0);
    for chunk in rows.chunks(batch) {
        let t = Instant::now();
        let records: Vec<_> = chunk
            .iter()
            .map(|r| message_record(r, &plan, 0).unwrap())
            .collect();
        typing += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let first = chunk[0].seq;
        let last = chunk[chunk.len() - 1].seq;
        let planned = plan_files(&records, (first, last), (0, 0)).unwrap();
        encoding += t.elapsed().as_secs_f64();
        parquet_bytes += planned.iter().map(|f| f.bytes.len() as u64).sum::<u64>();
        files += planned.len();
        let t = Instant::now();
        folder.write(planned).await.unwrap();
        writing += t.elapsed().as_secs_f64();
    }
    let direct_rate = n as f64 / start.elapsed().as_secs_f64();
    eprintln!(
        "parquet path split: typing rows {:.0} µs/row, encoding {:.0} µs/row, writing {:.0} µs/row",
        typing * 1e6 / n as f64,
        encoding * 1e6 / n as f64,
        writing * 1e6 / n as f64
    );
    println!(
        "| Parquet (zstd) typed by the plan, fsync + rename | {:.0} | {:.0} | {:.2}× |",
        direct_rate,
        parquet_bytes as f64 / n as f64,
        parquet_bytes as f64 / json_bytes as f64
    );

    // (3) The whole Parquet stage on SQLite.
    let url = format!("sqlite://{}", tmp.path().join("core.db").display());
    let stores = touchpoint_core::stores::connect(&url).await.unwrap();
    let source = stores
        .events
        .upsert_source("web", "wk_bench")
        .await
        .unwrap();
    let version: Arc<str> = Arc::from(plan.version());
    for (c, chunk) in generated.chunks(1000).enumerate() {
        let messages: Vec<NewMessage> = chunk
            .iter()
            .enumerate()
            .map(|(i, (body, kind, event, at))| NewMessage {
                source_id: source.id,
                message_id: format!("m{}", c * 1000 + i),
                kind,
                event: event.clone(),
                user_id: None,
                anonymous_id: None,
                event_time_ms: *at,
                received_at_ms: at + 52,
                plan_version: version.clone(),
                status: Status::Accepted,
                violations_json: "[]".into(),
                body_json: body.clone(),
            })
            .collect();
        stores.events.append(&messages, &[]).await.unwrap();
    }
    // The profiles stage is not the subject here: mark the whole log processed.
    let log = touchpoint_core::storage::sqlite_log_file(&tmp.path().join("core.db"));
    let log = sqlx::SqlitePool::connect(&format!("sqlite://{}", log.display()))
        .await
        .unwrap();
    let last: i64 = sqlx::query_scalar("SELECT MAX(seq) FROM messages")
        .fetch_one(&log)
        .await
        .unwrap();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("UPDATE pipeline_cursors SET seq = $1 WHERE name = 'profiles'")
        .bind(last)
        .execute(&pool)
        .await
        .unwrap();
    let plan_handle = Arc::new(PlanHandle::load(&plan_path).unwrap());
    let settings = Settings {
        batch: batch as i64,
        flush_after: std::time::Duration::ZERO,
    };
    let mut stage = ParquetStage::new(
        stores.warehouse.clone(),
        Folder::new(tmp.path().join("parquet-stage")),
        plan_handle.clone(),
        settings,
        Arc::new(SystemClock),
        Arc::new(TargetProgress::new("parquet")),
    );
    let start = Instant::now();
    let (mut exported, mut stage_bytes, mut stage_files) = (0usize, 0u64, 0usize);
    loop {
        let r = stage.export(Batch::Full, true).await.unwrap();
        if !r.moved {
            break;
        }
        exported += r.messages;
        stage_bytes += r.bytes;
        stage_files += r.files;
    }
    let stage_rate = exported as f64 / start.elapsed().as_secs_f64();
    assert_eq!(exported, n);
    println!(
        "| Parquet stage on SQLite (read log, encode, write, commit) | {:.0} | {:.0} | {:.2}× |",
        stage_rate,
        stage_bytes as f64 / n as f64,
        stage_bytes as f64 / json_bytes as f64
    );

    // (4) The PostgreSQL warehouse stage, when a database is given.
    if let Ok(pg) = std::env::var("TOUCHPOINT_BENCH_PG_URL") {
        let mut stage = PostgresStage::new(
            stores.warehouse.clone(),
            postgres::connect_lazy(&pg).unwrap(),
            plan_handle,
            Settings {
                batch: 5_000,
                flush_after: std::time::Duration::ZERO,
            },
            Arc::new(SystemClock),
            Arc::new(TargetProgress::new("postgres")),
        );
        let start = Instant::now();
        let mut loaded = 0usize;
        loop {
            let r = stage.export(Batch::Full).await.unwrap();
            if !r.moved {
                break;
            }
            loaded += r.messages;
        }
        let rate = loaded as f64 / start.elapsed().as_secs_f64();
        let wh = sqlx::PgPool::connect(&pg).await.unwrap();
        let size: i64 = sqlx::query_scalar(
            "SELECT CAST(SUM(pg_total_relation_size(format('%I.%I', table_schema, table_name)::regclass)) AS BIGINT) \
             FROM information_schema.tables WHERE table_schema = 'web'",
        )
        .fetch_one(&wh)
        .await
        .unwrap();
        println!(
            "| PostgreSQL warehouse stage (Segment schema, tables + tracks + indexes) | {:.0} | {:.0} | {:.2}× |",
            rate,
            size as f64 / n as f64,
            size as f64 / json_bytes as f64
        );
    }
    println!();
    println!(
        "Parquet: {files} files direct, {stage_files} files by the stage; throughput {:.2}× (direct) and {:.2}× (stage) the NDJSON baseline.",
        direct_rate / ndjson_rate,
        stage_rate / ndjson_rate
    );
}
