//! Hostile and buggy input on both stores: limits checked on what is stored (after the batch
//! envelope merge), cached traits through the plan, identity limits, numbers and times that cannot
//! be represented, and the quarantine that keeps a failing message from stopping a stage.

use serde_json::{Value, json};
use std::time::Duration;
use touchpoint_core::pipeline::Policy;
use touchpoint_tests::{
    Db, SERVER_KEY, TestApp, WEB_KEY, fresh_database, spawn_app, spawn_app_with, test_config,
};

crate::on_both_stores!(
    an_envelope_context_merged_into_every_item_counts_against_the_stored_size,
    a_nul_in_the_envelope_is_refused_per_item_and_never_fails_the_commit,
    cached_context_traits_reach_the_profile_only_through_the_plan,
    identifiers_are_limited_in_length_number_and_identities_per_kind,
    an_overflowing_aggregate_never_stops_the_profiles_stage,
    absurd_timestamps_are_replaced_by_the_receive_time_and_reported,
    a_message_that_keeps_failing_is_quarantined_and_replayed_after_a_fix,
);

/// Sends one request that must be accepted (200).
async fn accepted(app: &TestApp, path: &str, key: &str, body: &Value) {
    let r = app.post(path, key, body).await;
    assert_eq!(r.status(), 200, "{path} {body}");
}

/// Bytes of JSON stored in the log and the reject table.
async fn stored_bytes(app: &TestApp) -> i64 {
    app.sql_number(
        "SELECT CAST(COALESCE(SUM(LENGTH(CAST(body AS TEXT)) + LENGTH(CAST(violations AS TEXT))), 0) AS BIGINT) FROM messages",
    )
    .await
        + app
            .sql_number(
                "SELECT CAST(COALESCE(SUM(LENGTH(body) + LENGTH(reason)), 0) AS BIGINT) FROM rejected_messages",
            )
            .await
}

async fn an_envelope_context_merged_into_every_item_counts_against_the_stored_size(db: Db) {
    let app = spawn_app(db).await;
    // 20 KB of shared context, merged into 300 tiny items, would store 6 MB from a 30 KB request.
    let items: Vec<Value> = (0..300)
        .map(|i| {
            json!({"type": "track", "event": "feature_toggled", "userId": format!("u{i}"),
            "properties": {"feature_name": "x", "new_status": true}})
        })
        .collect();
    let body = json!({"batch": items, "context": {"padding": "p".repeat(20_000)}});
    let request_bytes = body.to_string().len() as i64;
    let r = app.post("/v1/batch", SERVER_KEY, &body).await;
    assert_eq!(r.status(), 413);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["code"], "too_large");
    assert!(e["error"].as_str().unwrap().contains("envelope"));
    assert!(stored_bytes(&app).await <= request_bytes);

    // One item whose merged copy passes 32 KB is refused by index; the others are stored.
    let body = json!({"batch": [
        {"type": "track", "event": "feature_toggled", "userId": "a",
         "properties": {"feature_name": "x", "new_status": true}},
        {"type": "track", "event": "feature_toggled", "userId": "b",
         "properties": {"feature_name": "x", "new_status": true},
         "context": {"own": "o".repeat(20_000)}},
    ], "context": {"padding": "p".repeat(15_000)}});
    let r = app.post("/v1/batch", SERVER_KEY, &body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["stored"], 1);
    assert_eq!(v["rejected"][0]["index"], 1);
    assert_eq!(v["rejected"][0]["code"], "message_too_large");
    let largest = app
        .sql_number("SELECT CAST(MAX(LENGTH(CAST(body AS TEXT))) AS BIGINT) FROM messages")
        .await;
    assert!(largest <= 32 * 1024, "a stored message is {largest} bytes");
}

async fn a_nul_in_the_envelope_is_refused_per_item_and_never_fails_the_commit(db: Db) {
    let app = spawn_app(db).await;
    let body = json!({"batch": [
        {"type": "track", "event": "feature_toggled", "userId": "a",
         "properties": {"feature_name": "x", "new_status": true}},
    ], "context": {"page": {"title": "bad\u{0}title"}}, "integrations": {"x\u{0}": true}});
    let r = app.post("/v1/batch", SERVER_KEY, &body).await;
    assert_eq!(r.status(), 400, "a NUL is the client's error, not a 503");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "nothing_valid");
    assert_eq!(v["rejected"][0]["code"], "nul_character");
    // The store still works: the next clean request is stored.
    accepted(
        &app,
        "/v1/track",
        SERVER_KEY,
        &json!({"userId": "a", "event": "feature_toggled",
                "properties": {"feature_name": "x", "new_status": true}}),
    )
    .await;
    assert_eq!(app.sql_number("SELECT COUNT(*) FROM messages").await, 1);
}

async fn cached_context_traits_reach_the_profile_only_through_the_plan(db: Db) {
    let app = spawn_app(db).await;
    accepted(
        &app,
        "/v1/identify",
        WEB_KEY,
        &json!({"userId": "ct-1", "traits": {"name": "Ada"},
                "context": {"traits": {"plan_tier": "pro", "is_admin": true, "credit": 1e6}}}),
    )
    .await;
    app.wait_processed().await;
    let profile = app.profile("user_id", "ct-1").await.expect("profile");
    let traits = &profile["traits"];
    assert_eq!(traits["name"], "Ada");
    assert_eq!(traits["plan_tier"], "pro");
    assert!(traits.get("is_admin").is_none(), "{traits}");
    assert!(traits.get("credit").is_none(), "{traits}");
    // A cached trait of the wrong type blocks like any invalid trait.
    accepted(
        &app,
        "/v1/identify",
        WEB_KEY,
        &json!({"userId": "ct-2", "messageId": "ct-2-m",
                "context": {"traits": {"seats_provisioned": "lots"}}}),
    )
    .await;
    let stored = app.stored("ct-2-m").await;
    assert_eq!(stored[0]["status"], "blocked");
}

async fn identifiers_are_limited_in_length_number_and_identities_per_kind(db: Db) {
    let app = spawn_app(db).await;
    let long = "u".repeat(300);
    let r = app
        .post("/v1/identify", WEB_KEY, &json!({"userId": long}))
        .await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["code"], "identifier_too_long");

    let many: Vec<Value> = (0..30)
        .map(|i| json!({"type": format!("k{i}"), "id": "1", "collection": "users"}))
        .collect();
    let r = app
        .post(
            "/v1/track",
            WEB_KEY,
            &json!({"userId": "x", "event": "e", "context": {"externalIds": many}}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["code"], "too_many_external_ids");

    // Three messages, ten custom ids each: the profile keeps the first ten of that kind.
    for batch in 0..3 {
        let external: Vec<Value> = (0..10)
            .map(|i| json!({"type": "crm_id", "id": format!("c-{batch}-{i}")}))
            .collect();
        accepted(
            &app,
            "/v1/track",
            WEB_KEY,
            &json!({"userId": "ids-1", "event": "feature_toggled",
                "properties": {"feature_name": "x", "new_status": true},
                "context": {"externalIds": external}}),
        )
        .await;
    }
    // A long email trait is not an identifier (a 2.7 KB index row would break PostgreSQL).
    accepted(
        &app,
        "/v1/identify",
        WEB_KEY,
        &json!({"userId": "ids-1", "traits": {"name": "n"},
                "context": {"traits": {"email": format!("{}@example.com", "e".repeat(3000))}}}),
    )
    .await;
    app.wait_processed().await;
    let profile = app.profile("user_id", "ids-1").await.expect("profile");
    let identities = profile["identities"].as_array().unwrap();
    let crm = identities.iter().filter(|i| i["kind"] == "crm_id").count();
    assert_eq!(crm, 10, "{identities:?}");
    assert!(!identities.iter().any(|i| i["kind"] == "email"));
    let longest = app
        .sql_number("SELECT CAST(MAX(LENGTH(value)) AS BIGINT) FROM identities")
        .await;
    assert!(longest <= 256);
}

async fn an_overflowing_aggregate_never_stops_the_profiles_stage(db: Db) {
    let app = spawn_app(db).await;
    for i in 0..2 {
        accepted(
            &app,
            "/v1/track",
            WEB_KEY,
            &json!({"userId": "big-1", "event": "report_exported", "messageId": format!("big-{i}"),
                    "properties": {"row_count": 1e308, "format": "csv"}}),
        )
        .await;
    }
    accepted(
        &app,
        "/v1/identify",
        WEB_KEY,
        &json!({"userId": "after-1", "traits": {"name": "After"}}),
    )
    .await;
    app.wait_processed().await;
    assert!(app.profile("user_id", "after-1").await.is_some());
    let stored = app.stored("big-0").await;
    let findings = stored[0]["violations"].to_string();
    assert!(findings.contains("number_out_of_range"), "{findings}");
    let (_, q) = app.admin_get("/admin/quarantine").await;
    assert_eq!(q["entries"], json!([]), "nothing needed quarantine: {q}");
}

async fn absurd_timestamps_are_replaced_by_the_receive_time_and_reported(db: Db) {
    let app = spawn_app(db).await;
    accepted(
        &app,
        "/v1/track",
        WEB_KEY,
        &json!({"userId": "t-1", "event": "feature_toggled", "messageId": "t-far",
                "properties": {"feature_name": "x", "new_status": true},
                "timestamp": "9999-12-31T23:59:59Z", "sentAt": "0001-01-01T00:00:00Z"}),
    )
    .await;
    accepted(
        &app,
        "/v1/track",
        WEB_KEY,
        &json!({"userId": "t-1", "event": "feature_toggled", "messageId": "t-old",
                "properties": {"feature_name": "x", "new_status": true},
                "timestamp": "0001-01-01T00:00:00Z"}),
    )
    .await;
    for id in ["t-far", "t-old"] {
        let stored = app.stored(id).await;
        let body = &stored[0]["body"];
        let ts = body["timestamp"].as_str().unwrap();
        assert!(ts.starts_with("20"), "{id}: {ts}");
        assert_eq!(body["timestamp"], body["receivedAt"], "{id}");
        assert!(
            stored[0]["violations"]
                .to_string()
                .contains("bad_timestamp"),
            "{id}"
        );
    }
}

async fn a_message_that_keeps_failing_is_quarantined_and_replayed_after_a_fix(db: Db) {
    let (url, tmp) = fresh_database(db).await;
    let mut config = test_config(url);
    config.stage_retry = Policy {
        attempts: 2,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        isolate_span: 50,
    };
    let app = spawn_app_with(config, tmp).await;
    // A fault only this message meets: the identity insert for its user id fails in the database.
    let poison = if db == Db::Sqlite {
        "CREATE TRIGGER poison BEFORE INSERT ON identities WHEN NEW.value = 'poisoned-user' \
         BEGIN SELECT RAISE(ABORT, 'poisoned identity'); END;"
    } else {
        "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN \
         IF NEW.value = 'poisoned-user' THEN RAISE EXCEPTION 'poisoned identity'; END IF; \
         RETURN NEW; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER poison BEFORE INSERT ON identities FOR EACH ROW EXECUTE FUNCTION poison();"
    };
    app.sql(poison).await;
    let batch: Vec<Value> = ["before-user", "poisoned-user", "after-user"]
        .iter()
        .map(|u| json!({"type": "identify", "userId": u, "traits": {"name": u}}))
        .collect();
    let r = app
        .post("/v1/batch", SERVER_KEY, &json!({"batch": batch}))
        .await;
    assert_eq!(r.status(), 200);
    app.wait_processed().await;
    assert!(app.profile("user_id", "before-user").await.is_some());
    assert!(app.profile("user_id", "after-user").await.is_some());
    assert!(app.profile("user_id", "poisoned-user").await.is_none());

    let (_, q) = app.admin_get("/admin/quarantine").await;
    let entries = q["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{q}");
    // `profiles`, or `profiles/P` on a partitioned (PostgreSQL) log.
    let stage = entries[0]["stage"].as_str().unwrap().to_owned();
    assert!(stage == "profiles" || stage.starts_with("profiles/"), "{q}");
    assert!(
        entries[0]["error"]
            .as_str()
            .unwrap()
            .contains("poisoned identity")
    );
    assert_eq!(q["open"][&stage], 1);
    let (_, metrics) = app.get_text("/metrics").await;
    assert!(metrics.contains(&format!(
        "touchpoint_stage_quarantined_total{{stage=\"{stage}\"}} 1"
    )));
    let (ready, _) = app.get_text("/readyz").await;
    assert_eq!(ready, 200, "the stage moved on, so it is ready");

    // After the fix, the replay puts the message through every stage again.
    app.sql(if db == Db::Sqlite {
        "DROP TRIGGER poison;"
    } else {
        "DROP TRIGGER poison ON identities; DROP FUNCTION poison();"
    })
    .await;
    let id = entries[0]["id"].as_i64().unwrap();
    let (status, body) = app
        .admin_post(&format!("/admin/quarantine/{id}/replay"))
        .await;
    assert_eq!(status, 200, "{body}");
    app.wait_processed().await;
    assert!(app.profile("user_id", "poisoned-user").await.is_some());
    if db == Db::Postgres {
        // The copy stays in its key's partition, behind the same `profiles/P` stage (this user
        // id routes to partition 1 of the default 8, so a copy sent to partition 0 would fail).
        let partitions = app
            .sql_number(
                "SELECT COUNT(DISTINCT partition) FROM messages WHERE user_id = 'poisoned-user'",
            )
            .await;
        let copies = app
            .sql_number("SELECT COUNT(*) FROM messages WHERE user_id = 'poisoned-user'")
            .await;
        assert_eq!((copies, partitions), (2, 1));
    }
    let (_, q) = app.admin_get("/admin/quarantine").await;
    assert_eq!(q["entries"], json!([]));
    let (status, _) = app
        .admin_post(&format!("/admin/quarantine/{id}/replay"))
        .await;
    assert_eq!(status, 400, "an entry is replayed once");
}
