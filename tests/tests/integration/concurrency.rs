//! Several core processes on one PostgreSQL: ingestion and processing race, profiles never duplicate.

use serde_json::json;
use std::time::Duration;
use touchpoint_tests::{
    ADMIN_TOKEN, Db, WEB_KEY, admin_json, free_port, fresh_database, send_spread,
    start_server_process, start_server_process_with, wait_processed, wait_ready,
};

/// The race test's load: per person, four messages.
fn race_messages(i: usize) -> Vec<serde_json::Value> {
    let anon = format!("race-anon-{i}");
    let user = format!("race-user-{i}");
    vec![
        json!({"type": "page", "anonymousId": anon, "name": "Home"}),
        json!({"type": "identify", "anonymousId": anon, "userId": user, "traits": {"email": format!("p{i}@race.example")}}),
        json!({"type": "track", "userId": user, "event": "workspace_created", "properties": {"workspace_id": format!("w{i}")}}),
        json!({"type": "track", "anonymousId": anon, "event": "feature_toggled", "properties": {"feature_name": "x", "new_status": true}}),
    ]
}

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
    send_spread(&client, &bases, 0..PEOPLE, race_messages).await;
    for base in &bases {
        wait_processed(&client, base).await;
    }

    let pipeline = admin_json(&client, &bases[0], "/admin/pipeline").await;
    assert_eq!(
        pipeline["profiles"], PEOPLE as i64,
        "one profile per person: {pipeline}"
    );
    for i in 0..PEOPLE {
        let base = &bases[i % 2];
        let profile = async |kind: &str, value: String| {
            admin_json(
                &client,
                base,
                &format!("/admin/profiles?kind={kind}&value={value}"),
            )
            .await
        };
        let by_user = profile("user_id", format!("race-user-{i}")).await;
        let by_anon = profile("anonymous_id", format!("race-anon-{i}")).await;
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

/// The load of the kill test: per person, five messages spread over both ingest nodes.
fn person_messages(i: usize) -> Vec<serde_json::Value> {
    let (anon, user) = (format!("kill-anon-{i}"), format!("kill-user-{i}"));
    vec![
        json!({"type": "page", "anonymousId": anon, "name": "Home", "messageId": format!("kill-{i}-0")}),
        json!({"type": "identify", "anonymousId": anon, "userId": user, "messageId": format!("kill-{i}-1"),
            "traits": {"email": format!("k{i}@kill.example")}}),
        json!({"type": "track", "userId": user, "event": "workspace_created", "messageId": format!("kill-{i}-2"),
            "properties": {"workspace_id": format!("w{i}")}}),
        json!({"type": "track", "anonymousId": anon, "event": "report_generated", "messageId": format!("kill-{i}-3"),
            "properties": {"row_count": 1}}),
        json!({"type": "track", "userId": user, "event": "report_generated", "messageId": format!("kill-{i}-4"),
            "properties": {"row_count": 1}}),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_ingest_and_three_processing_nodes_a_processing_node_killed_mid_run_loses_and_doubles_nothing()
 {
    killed_mid_run_loses_and_doubles_nothing("false").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_profiles_stage_per_partition_a_processing_node_killed_mid_run_loses_and_doubles_nothing()
 {
    killed_mid_run_loses_and_doubles_nothing("true").await;
}

/// Two ingest-only and three processing nodes on one partitioned PostgreSQL log; one processing
/// node is killed mid-run. `per_partition`: the layout's `TOUCHPOINT_PROFILES_PER_PARTITION`.
async fn killed_mid_run_loses_and_doubles_nothing(per_partition: &str) {
    let (db_url, _) = fresh_database(Db::Postgres).await;
    let hook = touchpoint_tests::fakes::webhook::spawn().await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let exe = env!("CARGO_BIN_EXE_tp-server");
    let hook_url = format!("{}/hooks/kill", hook.url);
    let mut ingest = Vec::new();
    let mut processing = Vec::new();
    for role in ["ingest", "ingest", "processing", "processing", "processing"] {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let child = if role == "ingest" {
            start_server_process_with(
                exe,
                &db_url,
                port,
                &[
                    ("TOUCHPOINT_PROCESS", "false"),
                    ("TOUCHPOINT_PROFILES_PER_PARTITION", per_partition),
                ],
            )
        } else {
            // A short delivery lease, so rows the killed node had claimed are taken over quickly.
            start_server_process_with(
                exe,
                &db_url,
                port,
                &[
                    ("TOUCHPOINT_WEBHOOK_URL", hook_url.as_str()),
                    (
                        "TOUCHPOINT_WEBHOOK_SECRET",
                        touchpoint_tests::fakes::webhook::SECRET,
                    ),
                    ("TOUCHPOINT_DELIVERY_LEASE_SECS", "2"),
                    ("TOUCHPOINT_DELIVERY_POLL_MS", "100"),
                    ("TOUCHPOINT_LEASE_SECS", "2"),
                    ("TOUCHPOINT_PROFILES_PER_PARTITION", per_partition),
                ],
            )
        };
        wait_ready(&client, &base).await;
        if role == "ingest" {
            ingest.push((child, base));
        } else {
            processing.push((child, base));
        }
    }
    let ingest_bases: Vec<String> = ingest.iter().map(|(_, b)| b.clone()).collect();
    let survivor = processing[1].1.clone();

    // First half of the load; once processing is under way, kill -9 one processing node while the
    // second half arrives.
    const PEOPLE: usize = 60;
    send_spread(&client, &ingest_bases, 0..PEOPLE / 2, person_messages).await;
    touchpoint_tests::eventually(20, "processing is under way", async || {
        let v = admin_json(&client, &survivor, "/admin/pipeline").await;
        v["profiles"].as_i64().unwrap_or(0) >= 5
    })
    .await;
    // The stages are spread over the three processing nodes by their leases.
    let leases = async |base: &str| admin_json(&client, base, "/admin/pipeline/leases").await;
    let (mut victim, victim_base) = processing.remove(0);
    let victim_node = leases(&victim_base).await["node"].clone();
    assert!(victim_node.is_string());
    victim.start_kill().expect("kill -9 the processing node");
    let _ = victim.wait().await;
    send_spread(&client, &ingest_bases, PEOPLE / 2..PEOPLE, person_messages).await;
    wait_processed(&client, &survivor).await;

    // No duplicate profiles, and every message counted once (the sums would double otherwise).
    let get = async |path: String| admin_json(&client, &survivor, &path).await;
    let pipeline = get("/admin/pipeline".into()).await;
    assert_eq!(pipeline["profiles"], PEOPLE as i64, "{pipeline}");
    for i in 0..PEOPLE {
        let by_user = get(format!("/admin/profiles?kind=user_id&value=kill-user-{i}")).await;
        let by_anon = get(format!(
            "/admin/profiles?kind=anonymous_id&value=kill-anon-{i}"
        ))
        .await;
        assert_eq!(by_user["id"], by_anon["id"], "person {i}");
        assert_eq!(by_user["computed"]["messages_total"], 5, "{by_user}");
        let reports = by_user["aggregates"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["event"] == "report_generated" && a["property"] == "row_count")
            .cloned()
            .unwrap_or_default();
        assert_eq!(reports["count"], 2, "person {i}: {by_user}");
        assert_eq!(reports["sum"], 2.0, "person {i}: {by_user}");
    }

    // Within a few lease times every stage is held by a live node, none by the dead one.
    touchpoint_tests::eventually(20, "the survivors hold every stage", async || {
        let v = leases(&survivor).await;
        let now = chrono::Utc::now().timestamp_millis();
        let rows = v["leases"].as_array().cloned().unwrap_or_default();
        !rows.is_empty()
            && rows
                .iter()
                .all(|l| l["owner"] != victim_node && l["expiresAt"].as_i64().unwrap_or(0) > now)
    })
    .await;

    // Every message reaches the receiver under one stable event id. A call the killed node had in
    // flight may be repeated after its lease ends (at-least-once, idempotent by id): at most one
    // batch of them.
    let sent: std::collections::BTreeSet<String> = (0..PEOPLE)
        .flat_map(|i| (0..5).map(move |n| format!("kill-{i}-{n}")))
        .collect();
    touchpoint_tests::eventually(60, "every message was delivered", async || {
        hook.with(|s| {
            let delivered: std::collections::BTreeSet<String> = s
                .events
                .values()
                .filter_map(|e| e["messageId"].as_str().map(str::to_owned))
                .filter(|m| sent.contains(m))
                .collect();
            delivered.len() == sent.len()
        })
    })
    .await;
    hook.with(|s| {
        let ours: Vec<&serde_json::Value> = s
            .events
            .values()
            .filter(|e| e["messageId"].as_str().is_some_and(|m| sent.contains(m)))
            .collect();
        assert_eq!(ours.len(), sent.len(), "one event id per message");
        let repeated = s.deliveries.values().filter(|n| **n > 1).count();
        assert!(
            repeated <= touchpoint_core::destinations::webhook::encoder::MAX_EVENTS,
            "{repeated} events delivered more than once"
        );
        assert_eq!(s.bad_signatures, 0);
    });
    for (mut s, _) in ingest.into_iter().chain(processing) {
        let _ = s.start_kill();
    }
}
