//! Consent categories end to end, on both stores: Segment's `context.consent.categoryPreferences`
//! decides which destinations (fakes of Meta, GA4, Resend and a webhook receiver) receive a message
//! or an audience transition; refusals are counted on `/admin/destinations` and `/metrics`.

use serde_json::{Value, json};
use std::time::Duration;
use touchpoint_core::Config;
use touchpoint_core::destinations::config::DeliveryConfig;
use touchpoint_core::destinations::ga4::config::Ga4Config;
use touchpoint_core::destinations::meta::config::MetaConfig;
use touchpoint_core::destinations::resend::config::ResendConfig;
use touchpoint_core::destinations::webhook::config::WebhookConfig;
use touchpoint_tests::fakes::{self, Fake};
use touchpoint_tests::{Db, SERVER_KEY, TestApp, fresh_database, spawn_app_with, test_config};

crate::on_both_stores!(
    a_message_refusing_advertising_reaches_every_destination_except_the_advertising_one,
    with_consent_required_a_message_without_consent_reaches_only_uncategorised_destinations,
    an_audience_entry_of_a_profile_whose_latest_consent_refuses_is_not_delivered,
);

struct Fakes {
    ga4: Fake<fakes::ga4::State>,
    resend: Fake<fakes::resend::State>,
    meta: Fake<fakes::meta::State>,
    webhook: Fake<fakes::webhook::State>,
}

async fn fakes() -> Fakes {
    Fakes {
        ga4: fakes::ga4::spawn().await,
        resend: fakes::resend::spawn().await,
        meta: fakes::meta::spawn().await,
        webhook: fakes::webhook::spawn().await,
    }
}

/// GA4 (Analytics), Meta (Advertising), Resend and the webhook (Functional) — the default
/// categories — delivering to the fakes with fast retries.
fn config(url: String, f: &Fakes) -> Config {
    let mut c = test_config(url);
    let d = &mut c.destinations;
    d.ga4 = Some(Ga4Config::new(
        &f.ga4.url,
        fakes::ga4::MEASUREMENT_ID,
        fakes::ga4::API_SECRET,
    ));
    d.resend = Some(ResendConfig {
        url: f.resend.url.clone(),
        api_key: fakes::resend::API_KEY.into(),
        audiences: [("consent_test".to_owned(), "aud-consent".to_owned())]
            .into_iter()
            .collect(),
        requests_per_sec: 50,
    });
    d.meta = Some(MetaConfig::pixel(
        &f.meta.url,
        fakes::meta::PIXEL_ID,
        fakes::meta::ACCESS_TOKEN,
    ));
    d.webhook = Some(WebhookConfig {
        url: format!("{}/hooks/touchpoint", f.webhook.url),
        secret: fakes::webhook::SECRET.into(),
    });
    d.delivery = DeliveryConfig {
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(400),
        poll: Duration::from_millis(50),
        ..DeliveryConfig::default()
    };
    c
}

async fn spawn(db: Db, config: impl FnOnce(String) -> Config) -> TestApp {
    let (url, tmp) = fresh_database(db).await;
    spawn_app_with(config(url), tmp).await
}

fn at(offset_secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(offset_secs)).to_rfc3339()
}

/// A `trial_started` track of `user` with an optional consent object.
fn trial(user: &str, message_id: &str, consent: Option<Value>, offset_secs: i64) -> Value {
    let mut m = json!({"type": "track", "userId": user, "messageId": message_id,
        "event": "trial_started", "properties": {"plan_tier": "pro", "trial_days": 14},
        "timestamp": at(offset_secs)});
    if let Some(c) = consent {
        m["context"] = json!({"consent": {"categoryPreferences": c}});
    }
    m
}

/// One destination's entry of `GET /admin/destinations`.
async fn status(app: &TestApp, name: &str) -> Value {
    let (code, body) = app.admin_get("/admin/destinations").await;
    assert_eq!(code, 200);
    body["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap()
        .clone()
}

/// Waits until a destination has nothing pending or in flight and at least `min_done` rows done.
async fn settled(app: &TestApp, name: &str, min_done: i64) {
    app.wait_processed().await;
    for _ in 0..600 {
        let o = status(app, name).await["outbox"].clone();
        if o["pending"] == 0
            && o["delivering"] == 0
            && o["delivered"].as_i64().unwrap_or(0) + o["dead"].as_i64().unwrap_or(0) >= min_done
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{name} did not settle with {min_done} rows done: {}",
        status(app, name).await
    );
}

/// Rows a destination's outbox holds, in any status.
async fn rows(app: &TestApp, name: &str) -> i64 {
    let o = status(app, name).await["outbox"].clone();
    ["pending", "delivering", "delivered", "dead"]
        .iter()
        .map(|s| o[*s].as_i64().unwrap_or(0))
        .sum()
}

async fn consent_skipped(app: &TestApp, name: &str) -> u64 {
    status(app, name).await["metrics"]["consentSkipped"]
        .as_u64()
        .unwrap_or(0)
}

/// Inserts an audience transition straight into the feed (as the audience engine would).
async fn audience_event(app: &TestApp, audience: &str, profile: &str, kind: &str) {
    let sql = "INSERT INTO audience_events (audience, profile_id, kind, at, seq, reason) \
               VALUES ($1, $2, $3, $4, 0, 'message')";
    let at = chrono::Utc::now().timestamp_millis();
    if app.database_url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
        sqlx::query(sql)
            .bind(audience)
            .bind(profile)
            .bind(kind)
            .bind(at)
            .execute(&pool)
            .await
            .unwrap();
    } else {
        let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
        sqlx::query(sql)
            .bind(audience)
            .bind(profile)
            .bind(kind)
            .bind(at)
            .execute(&pool)
            .await
            .unwrap();
    }
}

async fn profile_id(app: &TestApp, user: &str) -> String {
    app.profile("user_id", user).await.expect("profile")["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn a_message_refusing_advertising_reaches_every_destination_except_the_advertising_one(
    db: Db,
) {
    let f = fakes().await;
    let app = spawn(db, |url| config(url, &f)).await;
    let refused = json!({"Advertising": false, "Analytics": true, "Functional": true});
    let granted = json!({"Advertising": true, "Analytics": true, "Functional": true});
    app.send_batch(
        SERVER_KEY,
        vec![
            trial("u-consent", "c-refused", Some(refused), -30),
            trial("u-consent", "c-granted", Some(granted), -20),
            // Segment's rule: a message without a consent object flows to every destination.
            trial("u-consent", "c-none", None, -10),
            // Categories match ignoring case; anything but `true` is a refusal.
            trial(
                "u-consent",
                "c-lowercase",
                Some(json!({"advertising": true, "analytics": "yes", "functional": true})),
                -5,
            ),
        ],
    )
    .await;
    settled(&app, "webhook", 4).await;
    settled(&app, "meta", 3).await;
    settled(&app, "ga4", 3).await;

    f.webhook.with(|s| {
        let mut ids: Vec<&str> = s
            .events
            .values()
            .filter_map(|e| e["messageId"].as_str())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, ["c-granted", "c-lowercase", "c-none", "c-refused"]);
    });
    f.meta.with(|s| {
        let mut ids: Vec<&str> = s.events.keys().map(String::as_str).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["c-granted", "c-lowercase", "c-none"]);
    });
    assert_eq!(rows(&app, "meta").await, 3, "no outbox row for the refusal");
    assert_eq!(rows(&app, "ga4").await, 3, "Analytics was not `true` once");
    assert_eq!(consent_skipped(&app, "meta").await, 1);
    assert_eq!(consent_skipped(&app, "ga4").await, 1);
    assert_eq!(consent_skipped(&app, "webhook").await, 0);
    let meta = status(&app, "meta").await;
    assert_eq!(meta["consentCategories"], json!(["Advertising"]));
    let text = app.metrics().await;
    assert!(
        text.contains("touchpoint_destination_consent_skipped_total{destination=\"meta\"} 1"),
        "{text}"
    );
}

async fn with_consent_required_a_message_without_consent_reaches_only_uncategorised_destinations(
    db: Db,
) {
    let f = fakes().await;
    let app = spawn(db, |url| {
        let mut c = config(url, &f);
        c.destinations.consent.require = true;
        c.destinations
            .consent
            .categories
            .insert("webhook", Vec::new());
        c
    })
    .await;
    let granted = json!({"Advertising": true, "Analytics": true});
    app.send_batch(
        SERVER_KEY,
        vec![
            trial("u-required", "r-none", None, -20),
            trial("u-required", "r-granted", Some(granted), -10),
        ],
    )
    .await;
    settled(&app, "webhook", 2).await;
    settled(&app, "meta", 1).await;

    f.webhook.with(|s| assert_eq!(s.events.len(), 2));
    f.meta.with(|s| {
        let ids: Vec<&str> = s.events.keys().map(String::as_str).collect();
        assert_eq!(ids, ["r-granted"]);
    });
    assert_eq!(rows(&app, "meta").await, 1);
    assert_eq!(rows(&app, "ga4").await, 1);
    assert_eq!(consent_skipped(&app, "meta").await, 1);
    assert_eq!(consent_skipped(&app, "webhook").await, 0);
    assert_eq!(
        status(&app, "webhook").await["consentCategories"],
        json!([])
    );
}

async fn an_audience_entry_of_a_profile_whose_latest_consent_refuses_is_not_delivered(db: Db) {
    let f = fakes().await;
    let app = spawn(db, |url| config(url, &f)).await;
    let identify = |user: &str, consent: Option<Value>, offset: i64| {
        let mut m = json!({"type": "identify", "userId": user,
            "traits": {"email": format!("{user}@example.com")}, "timestamp": at(offset)});
        if let Some(c) = consent {
            m["context"] = json!({"consent": {"categoryPreferences": c}});
        }
        m
    };
    // Revoked: the refusal is the newest by event time, though it arrives before an older grant.
    app.send_batch(
        SERVER_KEY,
        vec![trial(
            "u-revoked",
            "a-revoke",
            Some(json!({"Functional": false})),
            -10,
        )],
    )
    .await;
    app.send_batch(
        SERVER_KEY,
        vec![
            identify("u-revoked", Some(json!({"Functional": true})), -100),
            // Granted, then a later message without consent (which leaves the consent unchanged).
            identify("u-granted", Some(json!({"Functional": true})), -100),
            trial("u-granted", "a-later", None, -5),
            // Never collected: delivered, as consent is not required.
            identify("u-never", None, -100),
        ],
    )
    .await;
    app.wait_processed().await;
    let (revoked, granted, never) = (
        profile_id(&app, "u-revoked").await,
        profile_id(&app, "u-granted").await,
        profile_id(&app, "u-never").await,
    );
    audience_event(&app, "consent_test", &revoked, "audience_entered").await;
    audience_event(&app, "consent_test", &granted, "audience_entered").await;
    audience_event(&app, "consent_test", &never, "audience_entered").await;
    settled(&app, "resend", 2).await;

    f.resend.with(|s| {
        let audience = s.audiences.get("aud-consent").cloned().unwrap_or_default();
        let emails: Vec<&str> = audience.keys().map(String::as_str).collect();
        assert_eq!(emails, ["u-granted@example.com", "u-never@example.com"]);
        assert!(s.problems.is_empty(), "{:?}", s.problems);
    });
    assert_eq!(rows(&app, "resend").await, 2);
    assert_eq!(consent_skipped(&app, "resend").await, 1);
}
