//! Reverse ETL from a real local PostgreSQL "production" database with a demo schema.

use secrecy::SecretString;
use std::time::Duration;
use touchpoint_core::reverse_etl::SyncConfig;
use touchpoint_tests::{ADMIN_TOKEN, Db, fresh_database, spawn_app_with, test_config};

const QUERY: &str = "SELECT u.id AS user_id, b.status AS current_subscription_status, \
    (SELECT COUNT(*) FROM projects p WHERE p.owner_id = u.id) AS total_projects_created, \
    u.last_api_call_at AS last_api_call_timestamp, u.updated_at AS cursor \
    FROM users u JOIN billing b ON b.user_id = u.id \
    WHERE u.updated_at > COALESCE($1::timestamptz, '-infinity') ORDER BY u.updated_at LIMIT 2";

async fn production_database() -> (String, sqlx::PgPool) {
    let (url, _) = fresh_database(Db::Postgres).await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    for sql in [
        "CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT, last_api_call_at TIMESTAMPTZ, updated_at TIMESTAMPTZ NOT NULL)",
        "CREATE TABLE billing (user_id TEXT PRIMARY KEY REFERENCES users(id), status TEXT NOT NULL)",
        "CREATE TABLE projects (id SERIAL PRIMARY KEY, owner_id TEXT REFERENCES users(id))",
        "INSERT INTO users VALUES ('u-1', 'a@x.io', '2026-11-24T09:00:00Z', '2026-11-24T10:00:00Z'), \
            ('u-2', 'b@x.io', NULL, '2026-11-24T10:01:00Z'), ('u-3', 'c@x.io', '2026-11-24T08:00:00Z', '2026-11-24T10:02:00Z')",
        "INSERT INTO billing VALUES ('u-1', 'active'), ('u-2', 'trialing'), ('u-3', 'past_due')",
        "INSERT INTO projects (owner_id) VALUES ('u-1'), ('u-1'), ('u-3')",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    (url, pool)
}

async fn run_now(app: &touchpoint_tests::TestApp) -> serde_json::Value {
    let r = app
        .client
        .post(format!("{}/admin/reverse-etl/run", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_rows_become_profile_traits_incrementally() {
    let (replica_url, production) = production_database().await;
    let (url, tmp) = fresh_database(Db::Sqlite).await;
    let mut config = test_config(url);
    config.reverse_etl = Some(SyncConfig {
        name: "production".into(),
        url: SecretString::from(replica_url),
        query: QUERY.into(),
        // The schedule is long: the test drives runs through the admin endpoint.
        interval: Duration::from_secs(3600),
        source: "reverse-etl".into(),
    });
    let app = spawn_app_with(config, tmp).await;
    // The scheduled first tick may already have run; drain with explicit runs (LIMIT 2 per run).
    for _ in 0..4 {
        if run_now(&app).await["rows"] == 0 {
            break;
        }
    }
    app.wait_processed().await;
    let u1 = app.profile("user_id", "u-1").await.expect("u-1 profile");
    assert_eq!(u1["traits"]["current_subscription_status"], "active");
    assert_eq!(u1["traits"]["total_projects_created"], 2);
    assert!(
        u1["traits"]["last_api_call_timestamp"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-24T09:00:00")
    );
    let u2 = app.profile("user_id", "u-2").await.expect("u-2 profile");
    assert!(
        u2["traits"].get("last_api_call_timestamp").is_none(),
        "NULL columns are not traits"
    );
    assert_eq!(
        app.profile("user_id", "u-3").await.unwrap()["traits"]["total_projects_created"],
        1
    );
    assert_eq!(
        run_now(&app).await["rows"],
        0,
        "nothing new after the cursor"
    );

    // A change in production is picked up alone, after the cursor.
    sqlx::query("UPDATE billing SET status = 'canceled' WHERE user_id = 'u-2'")
        .execute(&production)
        .await
        .unwrap();
    sqlx::query("UPDATE users SET updated_at = '2026-11-25T09:00:00Z' WHERE id = 'u-2'")
        .execute(&production)
        .await
        .unwrap();
    assert_eq!(run_now(&app).await["rows"], 1);
    app.wait_processed().await;
    let u2 = app.profile("user_id", "u-2").await.unwrap();
    assert_eq!(u2["traits"]["current_subscription_status"], "canceled");
    let (_, stored) = app
        .admin_get("/admin/sources/reverse-etl/messages?limit=100")
        .await;
    assert_eq!(
        stored.as_array().unwrap().len(),
        4,
        "three initial rows and one change, no repeats"
    );
    assert!(
        stored
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["status"] == "accepted"),
        "{stored}"
    );
}
