//! The development webhook receiver: a fresh checkout sees real, signed deliveries with no accounts.

use serde_json::json;
use std::time::Duration;
use touchpoint_core::destinations::webhook::config::WebhookConfig;
use touchpoint_tests::{
    ADMIN_TOKEN, Db, WEB_KEY, free_port, fresh_database, spawn_app_with, test_config,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_sink_receives_signed_webhook_deliveries_and_refuses_unsigned_ones() {
    let (url, tmp) = fresh_database(Db::Sqlite).await;
    let port = free_port();
    let mut config = test_config(url);
    config.bind = format!("127.0.0.1:{port}").parse().unwrap();
    config.dev_sink = true;
    config.destinations.webhook = Some(WebhookConfig {
        url: format!("http://127.0.0.1:{port}/dev/webhook-sink"),
        secret: "sink-secret".into(),
    });
    let app = spawn_app_with(config, tmp).await;
    let r = app
        .post(
            "/v1/track",
            WEB_KEY,
            &json!({"messageId": "sink-1", "anonymousId": "a", "event": "feature_toggled",
            "properties": {"feature_name": "x", "new_status": true}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let mut got = serde_json::Value::Null;
    for _ in 0..200 {
        let (_, v) = app.admin_get("/dev/webhook-sink").await;
        if v.as_array().is_some_and(|a| !a.is_empty()) {
            got = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = got.to_string();
    assert!(text.contains("sink-1"), "delivered: {text}");
    let unsigned = app
        .client
        .post(format!("{}/dev/webhook-sink", app.address))
        .json(&json!({"forged": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let r = app
        .client
        .get(format!("{}/dev/webhook-sink", app.address))
        .bearer_auth(WEB_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "reading it needs the admin token, not {ADMIN_TOKEN:?}-less keys"
    );
}
