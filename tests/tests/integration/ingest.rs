//! The Segment-compatible intake, end to end over HTTP, on both stores.

use serde_json::{Value, json};
use std::time::Duration;
use touchpoint_tests::{ADMIN_TOKEN, Db, EDGE_SECRET, SERVER_KEY, WEB_KEY, spawn_app};

crate::on_both_stores!(
    a_tracked_event_is_stored_intact_with_plan_version_and_server_times,
    a_batch_is_acknowledged_after_every_message_is_stored,
    a_repeated_message_id_is_stored_once,
    bad_or_missing_write_keys_are_refused_with_401,
    malformed_input_is_answered_400_with_the_reason_and_kept_as_rejected,
    oversized_messages_and_batches_are_answered_413,
    an_unplanned_event_is_stored_with_its_violations_not_lost,
    a_signed_edge_batch_is_accepted_and_a_forged_one_refused,
    metrics_count_received_accepted_rejected_and_deduplicated,
    the_debugger_stream_shows_new_messages_with_their_validation_result,
    the_admin_api_refuses_the_write_key,
    the_write_key_may_be_sent_in_the_body,
    a_nul_character_is_refused_and_does_not_fail_other_requests,
);

fn mid() -> String {
    format!("m-{}", uuid::Uuid::new_v4())
}

async fn a_tracked_event_is_stored_intact_with_plan_version_and_server_times(db: Db) {
    let app = spawn_app(db).await;
    let id = mid();
    let sent = json!({
        "messageId": id, "userId": 42, "event": "workspace_created",
        "properties": {"workspace_id": "ws_1", "workspace_name": "Acme"},
        "context": {"library": {"name": "analytics.js", "version": "1"}, "locale": "en-GB"},
        "timestamp": "2026-11-25T10:00:00.000Z", "sentAt": "2026-11-25T10:00:01.000Z",
        "_metadata": {"bundled": ["Segment.io"]}
    });
    let r = app.post("/v1/track", SERVER_KEY, &sent).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["success"], true);

    let rows = app.stored(&id).await;
    assert_eq!(rows.len(), 1);
    let body = &rows[0]["body"];
    assert_eq!(body["type"], "track");
    assert_eq!(
        body["userId"], "42",
        "numeric ids are normalised to strings"
    );
    assert_eq!(body["properties"], sent["properties"]);
    assert_eq!(body["context"], sent["context"]);
    assert_eq!(
        body["_metadata"], sent["_metadata"],
        "unknown fields are kept"
    );
    assert_eq!(body["originalTimestamp"], "2026-11-25T10:00:00.000Z");
    assert!(body["receivedAt"].as_str().is_some());
    assert!(
        rows[0]["plan_version"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    let findings = rows[0]["violations"].as_array().unwrap();
    assert!(
        findings.iter().any(|f| f["field"] == "userId"),
        "the number-to-string normalisation is reported: {findings:?}"
    );
}

async fn a_batch_is_acknowledged_after_every_message_is_stored(db: Db) {
    let app = spawn_app(db).await;
    let ids: Vec<String> = (0..20).map(|_| mid()).collect();
    let batch: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| match i % 3 {
            0 => json!({"type": "page", "messageId": id, "anonymousId": "anon-1", "name": "Home",
                        "properties": {"path": "/", "url": "https://example.com/", "title": "Home"}}),
            1 => json!({"type": "identify", "messageId": id, "userId": "u-1", "anonymousId": "anon-1",
                        "traits": {"email": "ada@example.com", "plan_tier": "free"}}),
            _ => json!({"type": "track", "messageId": id, "userId": "u-1", "event": "teammate_invited",
                        "properties": {"workspace_id": "ws_1", "invitee_role": "member"}}),
        })
        .collect();
    let r = app
        .post(
            "/v1/batch",
            WEB_KEY,
            &json!({"batch": batch, "sentAt": "2026-11-25T10:00:00Z"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["stored"], 20, "{body}");
    for id in &ids {
        assert_eq!(app.stored(id).await.len(), 1, "message {id} stored");
    }
}

async fn a_repeated_message_id_is_stored_once(db: Db) {
    let app = spawn_app(db).await;
    let id = mid();
    let msg = json!({"messageId": id, "anonymousId": "a1", "event": "feature_toggled",
                     "properties": {"feature_name": "dark_mode", "new_status": true}});
    for _ in 0..3 {
        assert_eq!(app.post("/v1/track", WEB_KEY, &msg).await.status(), 200);
    }
    let twice = json!({"batch": [
        {"type": "track", "messageId": id, "anonymousId": "a1", "event": "feature_toggled",
         "properties": {"feature_name": "dark_mode", "new_status": true}}]});
    let r: Value = app
        .post("/v1/batch", WEB_KEY, &twice)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["duplicates"], 1);
    assert_eq!(app.stored(&id).await.len(), 1);
}

async fn bad_or_missing_write_keys_are_refused_with_401(db: Db) {
    let app = spawn_app(db).await;
    let msg = json!({"userId": "u", "event": "trial_started"});
    let r = app.post("/v1/track", "wk_nope", &msg).await;
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unknown write key")
    );
    assert_eq!(
        body["code"], "unknown_write_key",
        "a stable code clients can branch on"
    );
    let r = app
        .client
        .post(format!("{}/v1/track", app.address))
        .json(&msg)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("missing write key"));
}

async fn malformed_input_is_answered_400_with_the_reason_and_kept_as_rejected(db: Db) {
    let app = spawn_app(db).await;
    let r = app
        .client
        .post(format!("{}/v1/track", app.address))
        .basic_auth(WEB_KEY, Some(""))
        .header("content-type", "application/json")
        .body("{\"event\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("malformed JSON"));

    let r = app
        .post("/v1/track", WEB_KEY, &json!({"event": "trial_started"}))
        .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("userId or anonymousId"));

    let r = app
        .post(
            "/v1/batch",
            WEB_KEY,
            &json!({"batch": [{"type": "purchase", "userId": "u"}]}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .contains("purchase")
    );

    // One bad item does not sink the good ones.
    let good = mid();
    let r: Value = app
        .post(
            "/v1/batch",
            WEB_KEY,
            &json!({"batch": [{"type": "nope", "userId": "u"},
                              {"type": "identify", "userId": "u", "messageId": good}]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["stored"], 1);
    assert_eq!(r["rejected"][0]["index"], 0);
    assert_eq!(app.stored(&good).await.len(), 1);

    let (_, metrics) = app.get_text("/metrics").await;
    assert!(metric(&metrics, "touchpoint_messages_rejected_total", "web") >= 3.0);
}

async fn oversized_messages_and_batches_are_answered_413(db: Db) {
    let app = spawn_app(db).await;
    let big = "x".repeat(33 * 1024);
    let r = app
        .post(
            "/v1/track",
            WEB_KEY,
            &json!({"userId": "u", "event": "trial_started", "properties": {"p": big}}),
        )
        .await;
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("exceeds"));
    // A batch declared over 500 KB is refused from its header, before any of it is read (a client
    // sending it with reqwest could see the closed connection before the answer).
    let head = format!(
        "POST /v1/batch HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         authorization: Basic {}\r\ncontent-length: {}\r\n\r\n",
        touchpoint_tests::basic_credentials(WEB_KEY),
        600 * 1024
    );
    let (status, body) = app.unfinished_request(head, Vec::new()).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("too_large"), "{body}");
}

async fn an_unplanned_event_is_stored_with_its_violations_not_lost(db: Db) {
    let app = spawn_app(db).await;
    let id = mid();
    let r = app
        .post(
            "/v1/track",
            WEB_KEY,
            &json!({"messageId": id, "userId": "u", "event": "Feature Toggled"}),
        )
        .await;
    assert_eq!(
        r.status(),
        200,
        "acknowledged: the client must not retry forever"
    );
    let rows = app.stored(&id).await;
    assert_eq!(rows.len(), 1);
    assert_ne!(rows[0]["status"], "accepted");
    let kinds: Vec<&str> = rows[0]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"bad_event_name"), "{kinds:?}");
}

async fn a_signed_edge_batch_is_accepted_and_a_forged_one_refused(db: Db) {
    use touchpoint_core::ingest::edge;
    let app = spawn_app(db).await;
    let id = mid();
    let body = json!({"writeKey": WEB_KEY, "batch": [{"type": "page", "messageId": id, "anonymousId": "a-edge",
        "receivedAt": "2026-11-25T09:00:00.000Z", "timestamp": "2026-11-25T08:59:59.000Z",
        "properties": {"path": "/pricing", "url": "https://example.com/pricing", "title": "Pricing"}}]})
    .to_string();
    let now = chrono::Utc::now().timestamp();
    let send = |sig: String, ts: i64| {
        app.client
            .post(format!("{}/v1/edge/batch", app.address))
            .header("content-type", "application/json")
            .header(edge::TIMESTAMP_HEADER, ts.to_string())
            .header(edge::SIGNATURE_HEADER, sig)
            .body(body.clone())
            .send()
    };
    let forged = edge::sign(b"wrong-secret", now, body.as_bytes());
    assert_eq!(send(forged, now).await.unwrap().status(), 401);
    let stale = edge::sign(EDGE_SECRET.as_bytes(), now - 3600, body.as_bytes());
    assert_eq!(send(stale, now - 3600).await.unwrap().status(), 401);
    assert!(app.stored(&id).await.is_empty());

    let good = edge::sign(EDGE_SECRET.as_bytes(), now, body.as_bytes());
    assert_eq!(send(good, now).await.unwrap().status(), 200);
    let rows = app.stored(&id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0]["body"]["receivedAt"], "2026-11-25T09:00:00.000Z",
        "the edge's receive time is kept"
    );
}

fn metric(text: &str, name: &str, source: &str) -> f64 {
    let prefix = format!("{name}{{source=\"{source}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {prefix} missing in\n{text}"))
}

async fn metrics_count_received_accepted_rejected_and_deduplicated(db: Db) {
    let app = spawn_app(db).await;
    let id = mid();
    let msg = json!({"messageId": id, "userId": "u", "event": "trial_started", "properties": {"plan_tier": "pro"}});
    app.post("/v1/track", SERVER_KEY, &msg).await;
    app.post("/v1/track", SERVER_KEY, &msg).await;
    app.post("/v1/track", SERVER_KEY, &json!({"event": "x"}))
        .await;
    let (status, text) = app.get_text("/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        metric(&text, "touchpoint_messages_received_total", "server"),
        3.0
    );
    assert_eq!(
        metric(&text, "touchpoint_messages_accepted_total", "server"),
        1.0
    );
    assert_eq!(
        metric(&text, "touchpoint_messages_deduplicated_total", "server"),
        1.0
    );
    assert_eq!(
        metric(&text, "touchpoint_messages_rejected_total", "server"),
        1.0
    );
    let health = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

async fn the_debugger_stream_shows_new_messages_with_their_validation_result(db: Db) {
    let app = spawn_app(db).await;
    let mut stream = app
        .client
        .get(format!(
            "{}/debugger/stream?source=web&token={ADMIN_TOKEN}",
            app.address
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let id = mid();
    app.post(
        "/v1/track",
        WEB_KEY,
        &json!({"messageId": id, "userId": "dbg-user", "event": "trial_started", "properties": {"plan_tier": "Enterprise V2"}}),
    )
    .await;
    // Another source's message must not appear in the web stream.
    app.post(
        "/v1/track",
        SERVER_KEY,
        &json!({"userId": "other", "event": "trial_started"}),
    )
    .await;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(&id) && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), stream.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            _ => break,
        }
    }
    let line = seen
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["messageId"] == id.as_str())
        .unwrap_or_else(|| panic!("message not streamed; got {seen}"));
    assert_eq!(line["message"]["userId"], "dbg-user");
    assert!(
        line["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "not_in_enum"),
        "{line}"
    );
    assert!(
        !seen.contains("\"other\""),
        "the stream is filtered by source"
    );
}

async fn the_admin_api_refuses_the_write_key(db: Db) {
    let app = spawn_app(db).await;
    let r = app
        .client
        .get(format!("{}/admin/sources", app.address))
        .bearer_auth(WEB_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (status, sources) = app.admin_get("/admin/sources").await;
    assert_eq!(status, 200);
    assert_eq!(sources.as_array().unwrap().len(), 2);
    let r = app
        .client
        .post(format!("{}/admin/sources", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "ios-app"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let key = created["writeKey"].as_str().unwrap();
    let r = app.post("/v1/identify", key, &json!({"userId": "u"})).await;
    assert_eq!(r.status(), 200, "a new source's key works at once");
}

async fn the_write_key_may_be_sent_in_the_body(db: Db) {
    let app = spawn_app(db).await;
    let id = mid();
    let r = app
        .client
        .post(format!("{}/v1/page", app.address))
        .json(&json!({"writeKey": WEB_KEY, "messageId": id, "anonymousId": "a", "name": "Home"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rows = app.stored(&id).await;
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0]["body"].get("writeKey").is_none(),
        "the key is not stored"
    );
}

async fn a_nul_character_is_refused_and_does_not_fail_other_requests(db: Db) {
    let app = spawn_app(db).await;
    let bad = app
        .post(
            "/v1/track",
            WEB_KEY,
            &json!({"userId": "u\u{0}x", "event": "trial_started"}),
        )
        .await;
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["code"], "nul_character");
    let id = mid();
    let good = app
        .post(
            "/v1/identify",
            WEB_KEY,
            &json!({"messageId": id, "userId": "fine"}),
        )
        .await;
    assert_eq!(good.status(), 200);
    assert_eq!(app.stored(&id).await.len(), 1);
}
