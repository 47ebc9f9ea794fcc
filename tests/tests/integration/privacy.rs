//! Erasing a person reaches the outbox: undelivered activations about them are cancelled, so a
//! destination that was down never receives their data after the deletion.

use serde_json::json;
use std::time::Duration;
use touchpoint_core::destinations::config::DeliveryConfig;
use touchpoint_core::destinations::webhook::config::WebhookConfig;
use touchpoint_tests::fakes;
use touchpoint_tests::{ADMIN_TOKEN, Db, WEB_KEY, fresh_database, spawn_app_with, test_config};

crate::on_both_stores!(deleting_a_profile_cancels_its_undelivered_activations);

async fn deleting_a_profile_cancels_its_undelivered_activations(db: Db) {
    let webhook = fakes::webhook::spawn().await;
    webhook.set_down(true);
    let (url, tmp) = fresh_database(db).await;
    let mut config = test_config(url);
    config.destinations.webhook = Some(WebhookConfig {
        url: format!("{}/hooks/touchpoint", webhook.url),
        secret: fakes::webhook::SECRET.into(),
    });
    config.destinations.delivery = DeliveryConfig {
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        poll: Duration::from_millis(50),
        ..DeliveryConfig::default()
    };
    let app = spawn_app_with(config, tmp).await;
    let r = app
        .post(
            "/v1/batch",
            WEB_KEY,
            &json!({"batch": [
                {"type": "identify", "userId": "erase-me", "traits": {"email": "erase@example.com"}},
                {"type": "identify", "userId": "keep-me", "traits": {"email": "keep@example.com"}},
            ]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    app.wait_processed().await;
    // Both activations are queued for the webhook, which is down.
    let mut queued = false;
    for _ in 0..200 {
        let (_, d) = app.admin_get("/admin/destinations/webhook/log").await;
        if d["pending"].as_array().is_some_and(|p| p.len() >= 2) {
            queued = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(queued, "both activations wait in the outbox");

    let id = app.profile("user_id", "erase-me").await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .client
        .delete(format!("{}/admin/profiles/{id}", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    webhook.set_down(false);
    let mut delivered = String::new();
    for _ in 0..200 {
        delivered = webhook.with(|s| serde_json::to_string(&s.events).unwrap());
        if delivered.contains("keep@example.com") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        delivered.contains("keep@example.com"),
        "the other person is delivered"
    );
    assert!(
        !delivered.contains("erase@example.com"),
        "the erased person's data never leaves: {delivered}"
    );
}
