//! The warehouse export on both stores: the seed-000 story (four visitors, one signing up on two
//! devices, three becoming PQLs) exported as Parquet and into a PostgreSQL warehouse in
//! Segment's schema; DuckDB (from PyPI) reads the Parquet and a PostgreSQL query answers "PQLs
//! per week by first-touch UTM source", both matching the profiles API. Then an interrupted
//! export and a plan that gains a property: no duplicates, and the new column appears.

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;
use touchpoint_core::Config;
use touchpoint_tests::{
    Db, SERVER_KEY, TestApp, WEB_KEY, eventually, fresh_database, repo_root, spawn_app_with,
    test_config,
};

crate::on_both_stores!(
    the_seed_story_reads_the_same_in_duckdb_in_the_postgres_warehouse_and_in_the_profiles_api,
    an_interrupted_export_is_redone_once_and_a_new_plan_property_becomes_a_column,
    an_unwritable_folder_holds_the_export_back_without_quarantining_messages,
);

const PQL: &str = "product_qualified_lead";

fn days_ago(days: i64, minutes: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::days(days) + chrono::Duration::minutes(minutes))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A page view, with UTM parameters when `utm` names a source.
fn page(anon: &str, path: &str, utm: Option<&str>, at: String) -> Value {
    let mut context = json!({"page": {"path": path, "url": format!("https://example.com{path}")},
                             "userAgent": "Mozilla/5.0", "locale": "en-GB"});
    if let Some(source) = utm {
        context["campaign"] = json!({"source": source, "medium": "cpc", "name": "launch"});
    }
    json!({"type": "page", "anonymousId": anon, "name": "Home",
           "properties": {"path": path, "url": format!("https://example.com{path}")},
           "context": context, "timestamp": at})
}

fn identify(anon: &str, user: &str, email: &str, at: String) -> Value {
    json!({"type": "identify", "anonymousId": anon, "userId": user,
           "traits": {"email": email, "plan_tier": "free", "user_role": "admin"}, "timestamp": at})
}

fn track(user: &str, event: &str, properties: Value, at: String) -> Value {
    json!({"type": "track", "userId": user, "event": event, "properties": properties, "timestamp": at})
}

fn group(user: &str, workspace: &str, seats: i64, at: String) -> Value {
    json!({"type": "group", "userId": user, "groupId": workspace,
           "traits": {"seats_provisioned": seats, "company": workspace}, "timestamp": at})
}

/// Seed 000 for four people; returns their user ids. Ada browses from an ad (google), signs up,
/// creates a workspace, invites two colleagues, comes back on a second device (a merge) and
/// connects Slack; Bea first came from the newsletter; Cy first came direct; Dee's workspace has
/// two seats, so she is no PQL.
async fn load_story(app: &TestApp, tag: &str) -> Vec<String> {
    let users: Vec<String> = ["ada", "bea", "cy", "dee"]
        .iter()
        .map(|n| format!("{n}-{tag}"))
        .collect();
    let anon = |n: &str| format!("anon-{n}-{tag}");
    let (ada, bea, cy, dee) = (&users[0], &users[1], &users[2], &users[3]);
    app.send_batch(
        WEB_KEY,
        vec![
            page(&anon("ada"), "/", Some("google"), days_ago(10, 0)),
            page(&anon("ada"), "/pricing", None, days_ago(10, 1)),
            identify(
                &anon("ada"),
                ada,
                &format!("{ada}@acme.example"),
                days_ago(9, 0),
            ),
            track(
                ada,
                "trial_started",
                json!({"plan_tier": "pro", "trial_days": 14}),
                days_ago(9, 1),
            ),
            page(&anon("bea"), "/blog", Some("newsletter"), days_ago(8, 0)),
            page(&anon("bea"), "/", Some("google"), days_ago(7, 0)),
            identify(
                &anon("bea"),
                bea,
                &format!("{bea}@beta.example"),
                days_ago(7, 1),
            ),
            page(&anon("cy"), "/", None, days_ago(6, 0)),
            page(&anon("cy"), "/pricing", Some("google"), days_ago(5, 0)),
            identify(
                &anon("cy"),
                cy,
                &format!("{cy}@gamma.example"),
                days_ago(5, 1),
            ),
            page(&anon("dee"), "/", Some("google"), days_ago(4, 0)),
            identify(
                &anon("dee"),
                dee,
                &format!("{dee}@delta.example"),
                days_ago(4, 1),
            ),
        ],
    )
    .await;
    app.send_batch(
        SERVER_KEY,
        vec![
            group(ada, &format!("ws-acme-{tag}"), 5, days_ago(9, 2)),
            track(
                ada,
                "workspace_created",
                json!({"workspace_id": format!("ws-acme-{tag}"), "workspace_name": "Acme"}),
                days_ago(9, 3),
            ),
            track(
                ada,
                "teammate_invited",
                json!({"workspace_id": format!("ws-acme-{tag}"), "invitee_role": "member"}),
                days_ago(9, 4),
            ),
            track(
                ada,
                "teammate_invited",
                json!({"workspace_id": format!("ws-acme-{tag}"), "invitee_role": "admin"}),
                days_ago(9, 5),
            ),
            group(bea, &format!("ws-beta-{tag}"), 4, days_ago(7, 2)),
            group(cy, &format!("ws-gamma-{tag}"), 10, days_ago(5, 2)),
            group(dee, &format!("ws-delta-{tag}"), 2, days_ago(4, 2)),
        ],
    )
    .await;
    // Ada on a second device: an anonymous profile of its own, merged into hers on identify.
    app.send_batch(
        WEB_KEY,
        vec![page(&anon("ada2"), "/docs", None, days_ago(3, 0))],
    )
    .await;
    app.wait_processed().await;
    app.send_batch(
        WEB_KEY,
        vec![identify(
            &anon("ada2"),
            ada,
            &format!("{ada}@acme.example"),
            days_ago(3, 1),
        )],
    )
    .await;
    app.send_batch(
        SERVER_KEY,
        vec![
            track(
                ada,
                "integration_connected",
                json!({"integration_name": "slack"}),
                days_ago(2, 0),
            ),
            track(
                bea,
                "integration_connected",
                json!({"integration_name": "jira"}),
                days_ago(1, 0),
            ),
            track(
                cy,
                "integration_connected",
                json!({"integration_name": "github"}),
                days_ago(1, 1),
            ),
            track(
                dee,
                "integration_connected",
                json!({"integration_name": "slack"}),
                days_ago(1, 2),
            ),
        ],
    )
    .await;
    users
}

/// Waits (at most 30 s) until the profiles and audience stages and the given warehouse cursors
/// have caught up with the log and the audience feed.
async fn wait_exported(app: &TestApp, cursors: &[&str]) {
    app.wait_processed().await;
    for _ in 0..600 {
        let (_, p) = app.admin_get("/admin/pipeline").await;
        let processed = p["profilesCursor"].as_i64().unwrap_or(0);
        let mut done = p["audiencesCursor"].as_i64() >= Some(processed);
        let feed = app.sql_number("SELECT MAX(id) FROM audience_events").await;
        for c in cursors {
            let at = app
                .sql_number(&format!(
                    "SELECT seq FROM pipeline_cursors WHERE name = '{c}'"
                ))
                .await;
            let audiences = app
                .sql_number(&format!(
                    "SELECT seq FROM pipeline_cursors WHERE name = '{c}_audiences'"
                ))
                .await;
            done &= at >= processed && audiences >= feed;
        }
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the warehouse export did not catch up within 30 s");
}

/// Runs the DuckDB report over a Parquet warehouse folder.
async fn duckdb(dir: &Path) -> Value {
    let python = repo_root().join(".tools/venv/bin/python");
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(&python)
            .arg(repo_root().join("tests/warehouse/duckdb_report.py"))
            .arg(dir)
            .arg(PQL)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("DuckDB report within 2 minutes")
    .unwrap_or_else(|e| {
        panic!(
            "cannot run {} (scripts/setup.sh installs duckdb into .tools/venv): {e}",
            python.display()
        )
    });
    assert!(
        out.status.success(),
        "duckdb_report.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from duckdb_report.py")
}

/// What the profiles API says about a user.
struct Expected {
    profile: String,
    identities: BTreeSet<(String, String)>,
    events: BTreeMap<String, i64>,
    page_views: i64,
    first_touch: String,
    pql_entered_at: Option<i64>,
}

async fn from_profiles_api(app: &TestApp, user: &str) -> Expected {
    let p = app.profile("user_id", user).await.expect("profile");
    let id = p["id"].as_str().unwrap().to_owned();
    let identities = p["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap().to_owned(),
                i["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let events = p["computed"]["events"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(e, c)| (e.clone(), c["total"].as_i64().unwrap()))
        .filter(|(_, n)| *n > 0)
        .collect();
    let (_, timeline) = app
        .admin_get(&format!("/admin/profiles/{id}/timeline?limit=500"))
        .await;
    let first_page = timeline["items"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|i| i["message"]["type"] == "page")
        .expect("a page view");
    let first_touch = first_page["message"]["context"]["campaign"]["source"]
        .as_str()
        .unwrap_or("(direct)")
        .to_owned();
    let pql_entered_at = p["audiences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["audience"] == PQL && m["exited_at"].is_null())
        .and_then(|m| m["entered_at"].as_i64());
    Expected {
        profile: id,
        identities,
        events,
        page_views: p["computed"]["page_views"]["total"].as_i64().unwrap(),
        first_touch,
        pql_entered_at,
    }
}

/// The Monday of an instant's ISO week, `YYYY-MM-DD` (PostgreSQL's and DuckDB's `date_trunc('week')`).
fn week_of(ms: i64) -> String {
    use chrono::Datelike;
    let day = chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .date_naive();
    (day - chrono::Duration::days(i64::from(day.weekday().num_days_from_monday())))
        .format("%Y-%m-%d")
        .to_string()
}

/// The analyst's query on the PostgreSQL warehouse: first touch is the profile's earliest page
/// view (stitched through the identity tables), PQLs the first entry into the audience.
const PQLS_PER_WEEK: &str = "
WITH touches AS (
    SELECT m.profile_id, p.\"timestamp\", COALESCE(p.context_campaign_source, '(direct)') AS source
    FROM web.pages p
    JOIN touchpoint.external_id_mapping m
      ON (m.external_id_type = 'anonymous_id' AND m.external_id_value = p.anonymous_id)
      OR (p.anonymous_id IS NULL AND m.external_id_type = 'user_id' AND m.external_id_value = p.user_id)
),
first_touch AS (
    SELECT DISTINCT ON (profile_id) profile_id, source FROM touches ORDER BY profile_id, \"timestamp\"
),
pqls AS (
    SELECT COALESCE(g.canonical_profile_id, a.touchpoint_profile_id) AS profile_id,
           MIN(a.\"timestamp\") AS entered_at
    FROM touchpoint.audience_entered a
    LEFT JOIN touchpoint.id_graph g ON g.profile_id = a.touchpoint_profile_id
    WHERE a.audience_key = 'product_qualified_lead'
    GROUP BY 1
)
SELECT to_char(date_trunc('week', p.entered_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD') AS week,
       COALESCE(f.source, '(none)') AS utm_source, COUNT(*) AS pqls
FROM pqls p LEFT JOIN first_touch f USING (profile_id)
GROUP BY 1, 2 ORDER BY 1, 2";

async fn warehouse_pool(url: &str) -> sqlx::PgPool {
    sqlx::PgPool::connect(url)
        .await
        .expect("warehouse database")
}

async fn the_seed_story_reads_the_same_in_duckdb_in_the_postgres_warehouse_and_in_the_profiles_api(
    db: Db,
) {
    let (url, tmp) = fresh_database(db).await;
    let (warehouse_url, _) = fresh_database(Db::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(url);
    config.warehouse.dir = Some(dir.path().join("parquet"));
    config.warehouse.pg_url = Some(warehouse_url.clone().into());
    config.warehouse.flush_after = Duration::ZERO;
    config.warehouse.batch = 5; // several steps, several files per partition
    let app = spawn_app_with(config, tmp).await;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let users = load_story(&app, &tag).await;
    wait_exported(&app, &["warehouse_parquet", "warehouse_postgres"]).await;

    let mut expected = Vec::new();
    for u in &users {
        expected.push(from_profiles_api(&app, u).await);
    }
    let pqls = expected
        .iter()
        .filter(|e| e.pql_entered_at.is_some())
        .count();
    assert_eq!(pqls, 3, "Ada, Bea and Cy are PQLs, Dee is not");
    let mut weekly: BTreeMap<(String, String), i64> = BTreeMap::new();
    for e in &expected {
        if let Some(at) = e.pql_entered_at {
            *weekly
                .entry((week_of(at), e.first_touch.clone()))
                .or_default() += 1;
        }
    }
    let weekly: Vec<Value> = weekly
        .into_iter()
        .map(|((w, s), n)| json!([w, s, n]))
        .collect();
    assert_eq!(
        expected
            .iter()
            .map(|e| e.first_touch.as_str())
            .collect::<Vec<_>>(),
        vec!["google", "newsletter", "(direct)", "google"]
    );

    // DuckDB over the Parquet files.
    let report = duckdb(&dir.path().join("parquet")).await;
    for table in ["events", "pages", "identifies", "groups"] {
        let t = &report["tables"][table];
        assert_eq!(t["rows"], t["distinct_ids"], "{table}: no row twice: {t}");
    }
    assert_eq!(report["tables"]["events"]["rows"], 8);
    assert_eq!(report["tables"]["pages"]["rows"], 8);
    assert_eq!(report["tables"]["identifies"]["rows"], 5);
    assert_eq!(
        report["types"]["trial_days"], "BIGINT",
        "{}",
        report["types"]
    );
    assert_eq!(report["types"]["timestamp"], "TIMESTAMP WITH TIME ZONE");
    let trial = &report["trial_started"][0];
    assert_eq!(trial[1], "pro");
    assert_eq!(trial[2], 14);
    let mut events: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for r in report["events_per_profile"].as_array().unwrap() {
        events
            .entry(r[0].as_str().unwrap().to_owned())
            .or_default()
            .insert(r[1].as_str().unwrap().to_owned(), r[2].as_i64().unwrap());
    }
    let pages: BTreeMap<String, i64> = report["pages_per_profile"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_i64().unwrap()))
        .collect();
    let mut identities: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for r in report["identities"].as_array().unwrap() {
        identities
            .entry(r[2].as_str().unwrap().to_owned())
            .or_default()
            .insert((
                r[0].as_str().unwrap().to_owned(),
                r[1].as_str().unwrap().to_owned(),
            ));
    }
    for e in &expected {
        assert_eq!(
            events.get(&e.profile).cloned().unwrap_or_default(),
            e.events,
            "track events of {} in DuckDB",
            e.profile
        );
        assert_eq!(pages.get(&e.profile), Some(&e.page_views));
        assert_eq!(
            identities.get(&e.profile),
            Some(&e.identities),
            "identities stitched to {}",
            e.profile
        );
    }
    assert_eq!(
        expected[0]
            .identities
            .iter()
            .filter(|(k, _)| k == "anonymous_id")
            .count(),
        2,
        "Ada's second device was merged into her profile"
    );
    assert_eq!(
        report["pql_weekly"],
        json!(weekly),
        "DuckDB's PQLs per week"
    );

    // The PostgreSQL warehouse, in Segment's schema.
    let wh = warehouse_pool(&warehouse_url).await;
    let rows: Vec<(String, String, i64)> = sqlx::query_as(PQLS_PER_WEEK)
        .fetch_all(&wh)
        .await
        .expect("the PQL query");
    let from_pg: Vec<Value> = rows.into_iter().map(|(w, s, n)| json!([w, s, n])).collect();
    assert_eq!(from_pg, weekly, "PostgreSQL's PQLs per week");
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_schema::text, table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema IN ('web', 'server', 'touchpoint') ORDER BY 1, 2, 3",
    )
    .fetch_all(&wh)
    .await
    .unwrap();
    let has = |schema: &str, table: &str, column: &str| {
        columns
            .iter()
            .any(|(s, t, c)| s == schema && t == table && c == column)
    };
    for (schema, table, column) in [
        ("web", "pages", "context_campaign_source"),
        ("web", "identifies", "email"),
        ("web", "users", "plan_tier"),
        ("web", "tracks", "event"),
        ("web", "trial_started", "trial_days"),
        ("server", "tracks", "event_text"),
        ("server", "teammate_invited", "invitee_role"),
        ("server", "groups", "seats_provisioned"),
        ("server", "integration_connected", "original_timestamp"),
        ("server", "integration_connected", "uuid_ts"),
        ("touchpoint", "audience_entered", "audience_key"),
        ("touchpoint", "id_graph", "canonical_profile_id"),
        (
            "touchpoint",
            "external_id_mapping_updates",
            "external_id_value",
        ),
    ] {
        assert!(
            has(schema, table, column),
            "{schema}.{table}.{column} in {columns:?}"
        );
    }
    assert!(
        !has("server", "tracks", "invitee_role"),
        "tracks has no properties"
    );
    let trial_days: String = sqlx::query_scalar(
        "SELECT data_type::text FROM information_schema.columns \
         WHERE table_schema = 'web' AND table_name = 'trial_started' AND column_name = 'trial_days'",
    )
    .fetch_one(&wh)
    .await
    .unwrap();
    assert_eq!(trial_days, "bigint");
    let (invited, tracks): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM server.teammate_invited), (SELECT COUNT(*) FROM server.tracks)",
    )
    .fetch_one(&wh)
    .await
    .unwrap();
    assert_eq!((invited, tracks), (2, 7));
    let email: String = sqlx::query_scalar("SELECT email FROM web.users WHERE id = $1")
        .bind(&users[0])
        .fetch_one(&wh)
        .await
        .unwrap();
    assert_eq!(email, format!("{}@acme.example", users[0]));
    let stitched: Vec<(String, String)> = sqlx::query_as(
        "SELECT external_id_type, external_id_value FROM touchpoint.external_id_mapping \
         WHERE profile_id = $1 ORDER BY 1, 2",
    )
    .bind(&expected[0].profile)
    .fetch_all(&wh)
    .await
    .unwrap();
    assert_eq!(
        stitched.into_iter().collect::<BTreeSet<_>>(),
        expected[0].identities,
        "the warehouse's identity map matches the profile"
    );

    // Progress in /metrics.
    let metrics = app.metrics().await;
    for needle in [
        "touchpoint_warehouse_lag_messages{target=\"parquet\"} 0",
        "touchpoint_warehouse_lag_messages{target=\"postgres\"} 0",
        "touchpoint_stage_processed_total{stage=\"warehouse_parquet\"}",
        "touchpoint_stage_failing{stage=\"warehouse_postgres\"} 0",
        "touchpoint_warehouse_files_total{target=\"parquet\"}",
    ] {
        assert!(metrics.contains(needle), "{needle} in\n{metrics}");
    }
}

/// A copy of the repository's plan with one more optional property on `trial_started`.
fn plan_with_coupon(dir: &Path) -> std::path::PathBuf {
    let plan = std::fs::read_to_string(repo_root().join("TRACKING_PLAN.md")).unwrap();
    let row = "| `trial_days` | integer | yes | min 1, max 90 | Length of the trial in days |\n";
    assert!(plan.contains(row));
    let plan = plan.replacen(
        row,
        &format!("{row}| `coupon_code` | string | no | | Coupon used to start the trial |\n"),
        1,
    );
    let path = dir.join("TRACKING_PLAN.md");
    std::fs::write(&path, plan).unwrap();
    path
}

async fn an_interrupted_export_is_redone_once_and_a_new_plan_property_becomes_a_column(db: Db) {
    // 1. A server without any warehouse; `touchpoint warehouse sync` exports what it processed.
    let (url, tmp) = fresh_database(db).await;
    let (warehouse_url, _) = fresh_database(Db::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let parquet = dir.path().join("parquet");
    let config = test_config(url);
    let mut app = spawn_app_with(config.clone(), tmp).await;
    let trial = |user: &str, days: i64| {
        track(
            user,
            "trial_started",
            json!({"plan_tier": "pro", "trial_days": days}),
            days_ago(1, 0),
        )
    };
    app.send_batch(
        SERVER_KEY,
        (1..=6).map(|i| trial(&format!("u{i}"), i)).collect(),
    )
    .await;
    app.wait_processed().await;
    let mut with_warehouse: Config = config.clone();
    with_warehouse.warehouse.dir = Some(parquet.clone());
    with_warehouse.warehouse.pg_url = Some(warehouse_url.clone().into());
    with_warehouse.warehouse.flush_after = Duration::ZERO;
    with_warehouse.warehouse.batch = 4;
    let summary = touchpoint_core::warehouse::cli::sync(&with_warehouse)
        .await
        .unwrap();
    assert!(summary[0].contains("6 messages"), "{summary:?}");
    let status = touchpoint_core::warehouse::cli::status(&with_warehouse)
        .await
        .unwrap();
    assert_eq!(status["targets"][0]["lag"], 0, "{status}");
    assert_eq!(
        status["targets"][1]["warehouse"]["log"],
        status["targets"][1]["cursor"]
    );
    assert!(
        status["targets"][0]["files"]["files"].as_i64().unwrap() >= 2,
        "{status}"
    );

    // 2. A crash between writing files and recording them leaves unrecorded files behind.
    let tmp = app.tmp.take();
    drop(app);
    let stray = parquet.join(format!(
        "events/date={}/event=trial_started/part-000000000007-000000000999.parquet",
        &days_ago(1, 0)[..10]
    ));
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::write(&stray, b"half a batch").unwrap();
    let temp = stray.with_file_name(".part-000000000007-000000000999.parquet.tmp");
    std::fs::write(&temp, b"torn").unwrap();

    // 3. Restart with the warehouse on and a plan that declares `coupon_code`.
    let mut restarted = with_warehouse.clone();
    restarted.plan_path = plan_with_coupon(dir.path());
    app = spawn_app_with(restarted, tmp).await;
    app.send_batch(
        SERVER_KEY,
        vec![
            track(
                "u7",
                "trial_started",
                json!({"plan_tier": "pro", "trial_days": 7, "coupon_code": "LAUNCH"}),
                days_ago(1, 0),
            ),
            track(
                "u8",
                "trial_started",
                json!({"plan_tier": "free", "trial_days": 8}),
                days_ago(1, 0),
            ),
        ],
    )
    .await;
    wait_exported(&app, &["warehouse_parquet", "warehouse_postgres"]).await;
    assert!(!stray.exists(), "the unrecorded file was removed");
    assert!(!temp.exists(), "the temporary file was removed");

    let report = duckdb(&parquet).await;
    let events = &report["tables"]["events"];
    assert_eq!(events["rows"], 8, "{report}");
    assert_eq!(events["distinct_ids"], 8);
    let coupons: Vec<Value> = report["coupon_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[1].clone())
        .collect();
    assert_eq!(
        coupons,
        vec![
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            json!("LAUNCH"),
            Value::Null
        ],
        "old files lack the column; DuckDB's union_by_name reads both"
    );
    let wh = warehouse_pool(&warehouse_url).await;
    let (rows, coupon): (i64, Option<String>) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM server.trial_started), \
         (SELECT coupon_code FROM server.trial_started WHERE user_id = 'u7')",
    )
    .fetch_one(&wh)
    .await
    .unwrap();
    assert_eq!((rows, coupon.as_deref()), (8, Some("LAUNCH")));
}

async fn an_unwritable_folder_holds_the_export_back_without_quarantining_messages(db: Db) {
    let (url, tmp) = fresh_database(db).await;
    let dir = tempfile::tempdir().unwrap();
    // A file where the folder should be: nothing can be written below it.
    let blocker = dir.path().join("mnt");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let mut config = test_config(url);
    config.warehouse.dir = Some(blocker.join("warehouse"));
    config.warehouse.flush_after = Duration::ZERO;
    config.stage_retry = touchpoint_core::pipeline::Policy {
        attempts: 2,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        isolate_span: 10,
    };
    let app = spawn_app_with(config, tmp).await;
    app.send_batch(
        SERVER_KEY,
        (1..=3)
            .map(|i| {
                track(
                    &format!("o{i}"),
                    "trial_started",
                    json!({"plan_tier": "pro", "trial_days": i}),
                    days_ago(0, 0),
                )
            })
            .collect(),
    )
    .await;
    app.wait_processed().await;
    // Many retry rounds (each would have quarantined a message were the outage blamed on one): wait
    // until the stage has retried at least six times (two full rounds of narrowing at 2 attempts).
    let retries = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix("touchpoint_stage_retries_total{stage=\"warehouse_parquet\"} ")
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    eventually(20, "the warehouse stage retried six times", async || {
        let m = app.metrics().await;
        retries(&m) >= 6
    })
    .await;
    let quarantined = app
        .sql_number("SELECT COUNT(*) FROM quarantine WHERE stage = 'warehouse_parquet'")
        .await;
    assert_eq!(quarantined, 0, "an outage is not a message's fault");
    assert_eq!(
        app.sql_number("SELECT seq FROM pipeline_cursors WHERE name = 'warehouse_parquet'")
            .await,
        0
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("touchpoint_stage_failing{stage=\"warehouse_parquet\"} 1"),
        "{metrics}"
    );
    // The folder comes back: the export catches up with everything.
    std::fs::remove_file(&blocker).unwrap();
    wait_exported(&app, &["warehouse_parquet"]).await;
    let report = duckdb(&blocker.join("warehouse")).await;
    assert_eq!(report["tables"]["events"]["rows"], 3, "{report}");
}
