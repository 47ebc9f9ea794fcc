//! Several core processes on one PostgreSQL: ingestion and processing race, profiles never duplicate.

use serde_json::json;
use std::time::Duration;
use touchpoint_tests::{
    ADMIN_TOKEN, Db, WEB_KEY, free_port, fresh_database, start_server_process,
    start_server_process_with, wait_processed, wait_ready,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_core_processes_on_one_postgres_never_create_duplicate_profiles() {
    let (db_url, _) = fresh_database(Db::Postgres).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut servers = Vec::new();
    let mut bases = Vec::new();
    for _ in 0..2 {
        let port = free_port();
        servers.push(start_server_process(
            env!("CARGO_BIN_EXE_tp-server"),
            &db_url,
            port,
        ));
        bases.push(format!("http://127.0.0.1:{port}"));
    }
    for base in &bases {
        wait_ready(&client, base).await;
    }

    // Each person's messages are spread over both processes, all people at once.
    const PEOPLE: usize = 40;
    let mut tasks = Vec::new();
    for i in 0..PEOPLE {
        let (client, bases) = (client.clone(), bases.clone());
        tasks.push(tokio::spawn(async move {
            let anon = format!("race-anon-{i}");
            let user = format!("race-user-{i}");
            let messages = [
                json!({"type": "page", "anonymousId": anon, "name": "Home"}),
                json!({"type": "identify", "anonymousId": anon, "userId": user, "traits": {"email": format!("p{i}@race.example")}}),
                json!({"type": "track", "userId": user, "event": "workspace_created", "properties": {"workspace_id": format!("w{i}")}}),
                json!({"type": "track", "anonymousId": anon, "event": "feature_toggled", "properties": {"feature_name": "x", "new_status": true}}),
            ];
            for (n, m) in messages.iter().enumerate() {
                let base = &bases[(i + n) % bases.len()];
                let r = client
                    .post(format!("{base}/v1/batch"))
                    .basic_auth(WEB_KEY, Some(""))
                    .json(&json!({"batch": [m]}))
                    .send()
                    .await
                    .expect("send");
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for base in &bases {
        wait_processed(&client, base).await;
    }

    let pipeline: serde_json::Value = client
        .get(format!("{}/admin/pipeline", bases[0]))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        pipeline["profiles"], PEOPLE as i64,
        "one profile per person: {pipeline}"
    );
    for i in 0..PEOPLE {
        let get = |kind: &'static str, value: String| {
            let (client, base) = (client.clone(), bases[i % 2].clone());
            async move {
                let v: serde_json::Value = client
                    .get(format!("{base}/admin/profiles?kind={kind}&value={value}"))
                    .bearer_auth(ADMIN_TOKEN)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                v
            }
        };
        let by_user = get("user_id", format!("race-user-{i}")).await;
        let by_anon = get("anonymous_id", format!("race-anon-{i}")).await;
        assert_eq!(by_user["id"], by_anon["id"]);
        assert_eq!(by_user["computed"]["messages_total"], 4, "{by_user}");
    }
    for mut s in servers {
        let _ = s.start_kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processing_node_wakes_on_another_nodes_append_without_waiting_for_its_poll() {
    let (db_url, _) = fresh_database(Db::Postgres).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let (ingest_port, processing_port) = (free_port(), free_port());
    let exe = env!("CARGO_BIN_EXE_tp-server");
    let ingest = start_server_process_with(
        exe,
        &db_url,
        ingest_port,
        &[("TOUCHPOINT_PROCESS", "false")],
    );
    // A ten-minute poll: only the append's NOTIFY can wake this node's stages within the test.
    let processing = start_server_process_with(
        exe,
        &db_url,
        processing_port,
        &[("TOUCHPOINT_STAGE_POLL_MS", "600000")],
    );
    let (ingest_base, processing_base) = (
        format!("http://127.0.0.1:{ingest_port}"),
        format!("http://127.0.0.1:{processing_port}"),
    );
    wait_ready(&client, &ingest_base).await;
    wait_ready(&client, &processing_base).await;
    // A first message through the processing node itself (woken in-process): once its profile
    // exists, the stage has looked at the log and is asleep on its ten-minute poll.
    let profile = |base: String, user: &'static str| {
        let client = client.clone();
        async move {
            // Bounded: 200 × 50 ms.
            for _ in 0..200 {
                let r = client
                    .get(format!("{base}/admin/profiles?kind=user_id&value={user}"))
                    .bearer_auth(ADMIN_TOKEN)
                    .send()
                    .await
                    .unwrap();
                if r.status() == 200 {
                    return r.json::<serde_json::Value>().await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            serde_json::Value::Null
        }
    };
    let r = client
        .post(format!("{processing_base}/v1/identify"))
        .basic_auth(WEB_KEY, Some(""))
        .json(&json!({"userId": "first-user"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        !profile(processing_base.clone(), "first-user")
            .await
            .is_null()
    );

    let r = client
        .post(format!("{ingest_base}/v1/identify"))
        .basic_auth(WEB_KEY, Some(""))
        .json(&json!({"userId": "woken-user", "traits": {"email": "woken@example.com"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The poll alone would take ten minutes.
    let found = profile(processing_base.clone(), "woken-user").await;
    assert_eq!(found["traits"]["email"], "woken@example.com", "{found}");
    for mut s in [ingest, processing] {
        let _ = s.start_kill();
    }
}
