//! Operating the service: plan reload without a restart, and safe defaults.

use serde_json::json;
use touchpoint_core::{Application, Config};
use touchpoint_tests::{
    ADMIN_TOKEN, Db, WEB_KEY, fresh_database, repo_root, spawn_app_with, test_config,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_is_reloaded_without_a_restart_and_a_broken_plan_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let plan_path = dir.path().join("TRACKING_PLAN.md");
    let original = std::fs::read_to_string(repo_root().join("TRACKING_PLAN.md")).unwrap();
    std::fs::write(&plan_path, &original).unwrap();
    let (url, tmp) = fresh_database(Db::Sqlite).await;
    let mut config = test_config(url);
    config.plan_path = plan_path.clone();
    let app = spawn_app_with(config, tmp).await;
    let (_, before) = app.admin_get("/admin/plan").await;

    // A new revision lets unplanned events through (flag instead of block).
    std::fs::write(
        &plan_path,
        original.replace("- Unplanned events: `block`", "- Unplanned events: `flag`"),
    )
    .unwrap();
    let reload = |app: &touchpoint_tests::TestApp| {
        app.client
            .post(format!("{}/admin/plan/reload", app.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
    };
    let r = reload(&app).await.unwrap();
    assert_eq!(r.status(), 200);
    let (_, after) = app.admin_get("/admin/plan").await;
    assert_ne!(before["version"], after["version"]);
    app.post(
        "/v1/track",
        WEB_KEY,
        &json!({"messageId": "reloaded", "userId": "u", "event": "brand_new_event"}),
    )
    .await;
    let stored = app.stored("reloaded").await;
    assert_eq!(stored[0]["status"], "flagged");
    assert_eq!(
        stored[0]["plan_version"], after["version"],
        "the version is recorded"
    );

    // A broken revision is refused with its line, and the last good plan stays in force.
    std::fs::write(&plan_path, original.replace("| integer |", "| integr |")).unwrap();
    let r = reload(&app).await.unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("TRACKING_PLAN.md:"));
    let (_, still) = app.admin_get("/admin/plan").await;
    assert_eq!(still["version"], after["version"]);
}

#[tokio::test]
async fn the_default_admin_token_is_refused_off_loopback() {
    let (url, _tmp) = fresh_database(Db::Sqlite).await;
    let config = Config {
        bind: "0.0.0.0:0".parse().unwrap(),
        database_url: url,
        plan_path: repo_root().join("TRACKING_PLAN.md"),
        ..Config::default()
    };
    let err = Application::build(config).await.err().expect("refused");
    assert!(err.to_string().contains("TOUCHPOINT_ADMIN_TOKEN"), "{err}");
}

#[tokio::test]
async fn a_bad_setting_stops_the_server_before_it_listens_and_names_the_variable() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tp-server"))
        .arg("serve")
        .env("TOUCHPOINT_BIND", "127.0.0.1:0")
        .env("TOUCHPOINT_QUEUE", "lots")
        .output()
        .await
        .expect("run the server");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: TOUCHPOINT_QUEUE: invalid value 'lots'"),
        "{stderr}"
    );
}
