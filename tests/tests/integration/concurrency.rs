//! Several core processes on one PostgreSQL: ingestion and processing race, profiles never duplicate.

use serde_json::json;
use std::time::Duration;
use touchpoint_tests::{
    ADMIN_TOKEN, Db, WEB_KEY, free_port, fresh_database, start_server_process, wait_processed,
    wait_ready,
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
