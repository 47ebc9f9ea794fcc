//! Destinations end to end: the real server on both stores delivering to local fake servers of
//! Salesforce, HubSpot, GA4, Resend, Meta and a webhook receiver.

use serde_json::{Value, json};
use std::time::Duration;
use touchpoint_core::Config;
use touchpoint_core::destinations::config::DeliveryConfig;
use touchpoint_core::destinations::ga4::config::Ga4Config;
use touchpoint_core::destinations::hubspot::config::HubSpotConfig;
use touchpoint_core::destinations::meta::config::MetaConfig;
use touchpoint_core::destinations::resend::config::ResendConfig;
use touchpoint_core::destinations::salesforce::config::SalesforceConfig;
use touchpoint_core::destinations::webhook::config::WebhookConfig;
use touchpoint_tests::fakes::{self, Fake};
use touchpoint_tests::{
    ADMIN_TOKEN, Db, SERVER_KEY, TestApp, WEB_KEY, eventually, fresh_database, spawn_app_with,
    test_config,
};

crate::on_both_stores!(
    the_seed_story_reaches_salesforce_and_a_pql_gets_a_task_for_the_account_owner,
    entering_the_pql_audience_creates_one_task_describing_the_signals,
    an_outage_is_retried_until_every_message_arrives_exactly_once,
    a_picklist_error_is_dead_lettered_with_salesforce_s_message_and_replayed_after_the_fix,
    ga4_gets_page_views_and_events_in_requests_of_at_most_25_and_never_invalid_names,
    hubspot_resend_meta_and_the_webhook_receive_well_formed_requests,
    every_destination_worker_wakes_on_new_activations_without_waiting_for_its_poll,
);

/// Every fake API.
struct Fakes {
    salesforce: Fake<fakes::salesforce::State>,
    hubspot: Fake<fakes::hubspot::State>,
    ga4: Fake<fakes::ga4::State>,
    resend: Fake<fakes::resend::State>,
    meta: Fake<fakes::meta::State>,
    webhook: Fake<fakes::webhook::State>,
}

async fn all_fakes() -> Fakes {
    Fakes {
        salesforce: fakes::salesforce::spawn().await,
        hubspot: fakes::hubspot::spawn().await,
        ga4: fakes::ga4::spawn().await,
        resend: fakes::resend::spawn().await,
        meta: fakes::meta::spawn().await,
        webhook: fakes::webhook::spawn().await,
    }
}

/// A test config delivering to the fakes, with fast retries.
fn config(url: String, f: &Fakes) -> Config {
    let mut c = test_config(url);
    let d = &mut c.destinations;
    d.salesforce = Some(SalesforceConfig::new(
        &f.salesforce.url,
        fakes::salesforce::CLIENT_ID,
        fakes::salesforce::CLIENT_SECRET,
    ));
    d.hubspot = Some(HubSpotConfig::oauth(
        &f.hubspot.url,
        fakes::hubspot::CLIENT_ID,
        fakes::hubspot::CLIENT_SECRET,
        fakes::hubspot::REFRESH_TOKEN,
    ));
    d.ga4 = Some(Ga4Config::new(
        &f.ga4.url,
        fakes::ga4::MEASUREMENT_ID,
        fakes::ga4::API_SECRET,
    ));
    d.resend = Some(ResendConfig {
        url: f.resend.url.clone(),
        api_key: fakes::resend::API_KEY.into(),
        audiences: [("trial_users".to_owned(), "aud-trial".to_owned())]
            .into_iter()
            .collect(),
        requests_per_sec: 2,
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
        max_attempts: 50,
        poll: Duration::from_millis(50),
        ..DeliveryConfig::default()
    };
    c
}

async fn spawn(db: Db, f: &Fakes) -> TestApp {
    let (url, tmp) = fresh_database(db).await;
    spawn_app_with(config(url, f), tmp).await
}

/// A server whose plan flags unplanned events and keeps unplanned properties (e.g. `phone`), so
/// data the default plan would stop reaches the destinations.
async fn spawn_lenient(db: Db, f: &Fakes) -> (tempfile::TempDir, TestApp) {
    let dir = tempfile::tempdir().unwrap();
    let plan = std::fs::read_to_string(touchpoint_tests::repo_root().join("TRACKING_PLAN.md"))
        .unwrap()
        .replace("- Unplanned events: `block`", "- Unplanned events: `flag`")
        .replace(
            "- Unplanned properties: `drop`",
            "- Unplanned properties: `allow`",
        );
    let plan_path = dir.path().join("TRACKING_PLAN.md");
    std::fs::write(&plan_path, plan).unwrap();
    let (url, tmp) = fresh_database(db).await;
    let mut c = config(url, f);
    c.plan_path = plan_path;
    (dir, spawn_app_with(c, tmp).await)
}

fn now_iso(offset_secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(offset_secs)).to_rfc3339()
}

/// Outbox counts of a destination from `GET /admin/destinations`.
async fn outbox(app: &TestApp, name: &str) -> Value {
    let (status, body) = app.admin_get("/admin/destinations").await;
    assert_eq!(status, 200);
    body["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap()["outbox"]
        .clone()
}

/// Waits until a destination has nothing pending or in flight (and at least `min_done` rows done).
async fn settled(app: &TestApp, name: &str, min_done: i64) {
    app.wait_processed().await;
    for _ in 0..600 {
        let o = outbox(app, name).await;
        if o["pending"] == 0
            && o["delivering"] == 0
            && o["delivered"].as_i64().unwrap_or(0) + o["dead"].as_i64().unwrap_or(0) >= min_done
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, log) = app
        .admin_get(&format!("/admin/destinations/{name}/log?limit=5"))
        .await;
    panic!(
        "{name} did not settle with {min_done} rows done: {}\n{log:#}",
        outbox(app, name).await
    );
}

async fn profile_id(app: &TestApp, user: &str) -> String {
    app.profile("user_id", user).await.expect("profile")["id"]
        .as_str()
        .unwrap()
        .to_owned()
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

/// Seed 000 up to the invitations: anonymous page, identify, trial, group (2 seats), workspace, two
/// invitations and a feature toggle.
async fn seed_story(app: &TestApp, user: &str, anon: &str, group: &str) {
    app.send_batch(WEB_KEY, vec![json!({"type": "page", "anonymousId": anon, "name": "Pricing",
        "properties": {"path": "/pricing", "url": "https://example.com/pricing", "title": "Pricing"},
        "timestamp": now_iso(-600)})]).await;
    app.send_batch(WEB_KEY, vec![
        json!({"type": "identify", "anonymousId": anon, "userId": user,
               "traits": {"email": format!("{user}@Example.com"), "name": "Ada Lovelace", "user_role": "admin", "plan_tier": "free"},
               "timestamp": now_iso(-500)}),
        json!({"type": "track", "userId": user, "event": "trial_started",
               "properties": {"plan_tier": "pro", "trial_days": 14}, "timestamp": now_iso(-499)}),
    ]).await;
    app.send_batch(SERVER_KEY, vec![
        json!({"type": "group", "userId": user, "groupId": group,
               "traits": {"name": "Acme Inc", "seats_provisioned": 2}, "timestamp": now_iso(-450)}),
        json!({"type": "track", "userId": user, "event": "workspace_created",
               "properties": {"workspace_id": "ws-1", "workspace_name": "Acme"}, "timestamp": now_iso(-400)}),
        json!({"type": "track", "userId": user, "event": "teammate_invited",
               "properties": {"workspace_id": "ws-1", "invitee_role": "member"}, "timestamp": now_iso(-300)}),
        json!({"type": "track", "userId": user, "event": "teammate_invited",
               "properties": {"workspace_id": "ws-1", "invitee_role": "admin"}, "timestamp": now_iso(-200)}),
        json!({"type": "track", "userId": user, "event": "feature_toggled",
               "properties": {"feature_name": "dark_mode", "new_status": true}, "timestamp": now_iso(-100)}),
    ]).await;
}

async fn the_seed_story_reaches_salesforce_and_a_pql_gets_a_task_for_the_account_owner(db: Db) {
    let f = all_fakes().await;
    let app = spawn(db, &f).await;
    seed_story(&app, "user-1001", "anon-1001", "acme").await;
    settled(&app, "salesforce", 7).await;

    let (account, contact, usage) = f.salesforce.with(|s| {
        (
            s.get("Account", "acme"),
            s.get("Contact", "user-1001"),
            s.get("Product_Usage__c", "acme"),
        )
    });
    let account = account.expect("the Account exists");
    assert_eq!(account["Name"], "Acme Inc");
    assert_eq!(account["Seats_Provisioned__c"], 2);
    let contact = contact.expect("the Contact exists");
    assert_eq!(contact["Email"], "user-1001@example.com");
    assert_eq!(contact["LastName"], "Lovelace");
    assert_eq!(contact["AccountId"], account["Id"], "the Contact is linked");
    let usage = usage.expect("Product_Usage__c exists");
    assert_eq!(usage["Account__c"], account["Id"]);
    assert_eq!(usage["Active_Users_Last_7_Days__c"], 1);
    assert_eq!(usage["Key_Features_Used__c"], "dark_mode");
    assert_eq!(usage["Journey_Stage__c"], "Expansion");
    assert_eq!(usage["PQL_Status__c"], "Not PQL");
    // The integration user's token was used and every call checked out.
    f.salesforce.with(|s| {
        assert_eq!(s.tokens.len(), 1);
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert!(s.objects("Task").is_empty());
    });

    // Seats grow past 3 and an integration is connected: the profile enters the PQL audience.
    app.send_batch(SERVER_KEY, vec![
        json!({"type": "group", "userId": "user-1001", "groupId": "acme",
               "traits": {"name": "Acme Inc", "seats_provisioned": 5}, "timestamp": now_iso(-50)}),
        json!({"type": "track", "userId": "user-1001", "event": "integration_connected",
               "properties": {"integration_name": "slack", "workspace_id": "ws-1"}, "timestamp": now_iso(-10)}),
    ]).await;
    eventually(30, "the PQL Task exists", async || {
        !f.salesforce.with(|s| s.objects("Task")).is_empty()
    })
    .await;
    settled(&app, "salesforce", 9).await;
    let tasks = f.salesforce.with(|s| s.objects("Task"));
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let task = &tasks[0];
    assert_eq!(task["OwnerId"], fakes::salesforce::OWNER_ID);
    assert_eq!(task["WhatId"], account["Id"]);
    let description = task["Description"].as_str().unwrap();
    assert!(
        description.contains("seats_provisioned = 5"),
        "{description}"
    );
    assert!(
        description.contains("integration_connected in the last 30 days: slack"),
        "{description}"
    );
    assert!(
        description.contains("teammates invited: 2"),
        "{description}"
    );
    let usage = f
        .salesforce
        .with(|s| s.get("Product_Usage__c", "acme"))
        .unwrap();
    assert_eq!(usage["PQL_Status__c"], "PQL");
    assert_eq!(usage["Key_Features_Used__c"], "dark_mode;integration:slack");
}

async fn entering_the_pql_audience_creates_one_task_describing_the_signals(db: Db) {
    let f = all_fakes().await;
    let app = spawn(db, &f).await;
    seed_story(&app, "user-7", "anon-7", "globex").await;
    settled(&app, "salesforce", 7).await;
    let profile = profile_id(&app, "user-7").await;
    audience_event(&app, "product_qualified_lead", &profile, "audience_entered").await;
    eventually(30, "the Task exists", async || {
        !f.salesforce.with(|s| s.objects("Task")).is_empty()
    })
    .await;
    settled(&app, "salesforce", 8).await;
    let (tasks, account) = f
        .salesforce
        .with(|s| (s.objects("Task"), s.get("Account", "globex").unwrap()));
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["WhatId"], account["Id"]);
    assert_eq!(tasks[0]["OwnerId"], fakes::salesforce::OWNER_ID);
    assert_eq!(tasks[0]["Subject"], "Product-qualified lead: Acme Inc");
    let d = tasks[0]["Description"].as_str().unwrap();
    assert!(d.contains("user-7@example.com"), "{d}");
    assert!(d.contains("seats_provisioned = 2"), "{d}");
    assert!(d.contains("teammates invited: 2"), "{d}");
    // One composite call did the owner lookup and the Task.
    assert_eq!(
        f.salesforce.requests("/composite").len()
            - f.salesforce.requests("/composite/sobjects").len(),
        1
    );
    // PQL_Status__c follows real membership (see the seed-story test); this event was injected.
}

async fn every_destination_worker_wakes_on_new_activations_without_waiting_for_its_poll(db: Db) {
    let f = all_fakes().await;
    let (url, tmp) = fresh_database(db).await;
    let mut c = config(url, &f);
    // A ten-minute poll: only the wake-up from the activation stage can start these deliveries
    // within the test, and it must reach every destination's worker, not just one of them.
    c.destinations.delivery.poll = Duration::from_secs(600);
    let app = spawn_app_with(c, tmp).await;
    app.send_batch(
        SERVER_KEY,
        vec![json!({"type": "identify", "userId": "wake-1",
            "traits": {"email": "wake@example.com", "name": "Wake Up"}})],
    )
    .await;
    eventually(
        20,
        "Salesforce, HubSpot and the webhook all got the identify",
        async || {
            !f.salesforce.with(|s| s.objects("Contact")).is_empty()
                && !f.hubspot.requests("/crm/v3/objects/contacts").is_empty()
                && f.webhook.with(|s| !s.events.is_empty())
        },
    )
    .await;
}

async fn an_outage_is_retried_until_every_message_arrives_exactly_once(db: Db) {
    let f = all_fakes().await;
    f.salesforce.set_down(true);
    f.webhook.set_down(true);
    let app = spawn(db, &f).await;
    let mut batch = Vec::new();
    for i in 0..20 {
        batch.push(json!({"type": "identify", "userId": format!("u-{i}"),
            "traits": {"email": format!("u{i}@example.com"), "name": format!("User {i}")}}));
        batch.push(
            json!({"type": "group", "userId": format!("u-{i}"), "groupId": format!("g-{}", i % 4),
            "traits": {"name": format!("Group {}", i % 4)}}),
        );
    }
    app.send_batch(SERVER_KEY, batch).await;
    app.wait_processed().await;
    eventually(20, "retries happen during the outage", async || {
        f.salesforce.requests("").len() >= 4 && f.webhook.requests("").len() >= 3
    })
    .await;
    let (_, log) = app.admin_get("/admin/destinations/salesforce/log").await;
    assert!(
        log["log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["outcome"] == "retry"),
        "{log}"
    );
    assert!(f.salesforce.with(|s| s.objects("Contact")).is_empty());
    f.salesforce.set_down(false);
    f.webhook.set_down(false);
    settled(&app, "salesforce", 40).await;
    settled(&app, "webhook", 40).await;
    assert_eq!(outbox(&app, "salesforce").await["dead"], 0);
    let (contacts, accounts) = f
        .salesforce
        .with(|s| (s.objects("Contact"), s.objects("Account")));
    assert_eq!(contacts.len(), 20);
    assert_eq!(accounts.len(), 4);
    f.webhook.with(|s| {
        assert_eq!(s.events.len(), 40);
        assert!(
            s.deliveries.values().all(|n| *n == 1),
            "a webhook event was delivered twice: {:?}",
            s.deliveries
        );
        assert_eq!(s.bad_signatures, 0);
    });
    let metrics = app.metrics().await;
    assert!(metrics.contains("touchpoint_destination_retried_total{destination=\"salesforce\"}"));
    assert!(
        metrics.contains("touchpoint_destination_delivered_total{destination=\"webhook\"} 40"),
        "{metrics}"
    );
}

async fn a_picklist_error_is_dead_lettered_with_salesforce_s_message_and_replayed_after_the_fix(
    db: Db,
) {
    let f = all_fakes().await;
    f.salesforce.with(|s| {
        s.picklists.insert(
            "Plan_Tier__c".into(),
            ["free", "pro", "business"].map(String::from).into(),
        )
    });
    let app = spawn(db, &f).await;
    app.send_batch(SERVER_KEY, vec![
        json!({"type": "identify", "userId": "u-ent", "traits": {"email": "ent@example.com", "name": "Eve Ent"}}),
        json!({"type": "group", "userId": "u-ent", "groupId": "bigco",
               "traits": {"name": "BigCo", "plan_tier": "enterprise"}}),
    ]).await;
    settled(&app, "salesforce", 2).await;
    // The group call (and the identify, whose Contact needs that Account) are dead letters.
    let dead_count = outbox(&app, "salesforce").await["dead"].as_i64().unwrap();
    assert!(dead_count >= 1);
    let (_, log) = app.admin_get("/admin/destinations/salesforce/log").await;
    let dead = log["dead"].as_array().unwrap();
    assert_eq!(dead.len() as i64, dead_count);
    for d in dead {
        let error = d["lastError"].as_str().unwrap();
        assert!(error.contains("PICKLIST_INVALID_VALUE"), "{error}");
        assert!(
            error.contains("bad value for restricted picklist field: enterprise"),
            "{error}"
        );
    }
    assert!(log["log"].as_array().unwrap().iter().any(|e| {
        e["outcome"] == "partial"
            && e["statusCode"] == 200
            && e["error"]
                .as_str()
                .unwrap_or("")
                .contains("PICKLIST_INVALID_VALUE")
    }));
    // Not retried: a validation error is final — its rows are dead (above), and workers claim only
    // pending rows, so the one attempt made is the only one.
    let attempts = f
        .salesforce
        .with(|s| s.attempts[&("Account".to_owned(), "bigco".to_owned())]);
    assert_eq!(attempts, 1);
    // Secrets never appear in the admin API.
    let (_, all) = app.admin_get("/admin/destinations").await;
    assert!(!all.to_string().contains(fakes::salesforce::CLIENT_SECRET));

    // The admin adds the value to the picklist, then replays.
    f.salesforce.with(|s| {
        s.picklists
            .get_mut("Plan_Tier__c")
            .unwrap()
            .insert("enterprise".into());
    });
    let r = app
        .client
        .post(format!(
            "{}/admin/destinations/salesforce/replay",
            app.address
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["replayed"], dead_count);
    settled(&app, "salesforce", 2).await;
    assert_eq!(outbox(&app, "salesforce").await["dead"], 0);
    let (account, contact) = f.salesforce.with(|s| {
        (
            s.get("Account", "bigco").unwrap(),
            s.get("Contact", "u-ent").unwrap(),
        )
    });
    assert_eq!(account["Plan_Tier__c"], "enterprise");
    assert_eq!(contact["AccountId"], account["Id"]);
}

async fn ga4_gets_page_views_and_events_in_requests_of_at_most_25_and_never_invalid_names(db: Db) {
    let f = all_fakes().await;
    // A plan that lets unplanned events through, so a GA4-invalid name reaches the destination.
    let (_dir, app) = spawn_lenient(db, &f).await;

    let mut batch = vec![
        json!({"type": "page", "anonymousId": "anon-ga", "name": "Pricing",
        "properties": {"url": "https://example.com/pricing", "title": "Pricing", "referrer": "https://www.google.com/"}}),
    ];
    for i in 0..30 {
        batch.push(
            json!({"type": "track", "anonymousId": "anon-ga", "event": "feature_toggled",
            "properties": {"feature_name": format!("f{i}"), "new_status": true}}),
        );
    }
    batch.push(json!({"type": "track", "anonymousId": "anon-ga", "event": "report_downloaded_from_the_workspace_dashboard_page"}));
    app.send_batch(WEB_KEY, batch).await;
    settled(&app, "ga4", 32).await;

    f.ga4.with(|s| {
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert_eq!(s.events.len(), 31);
        assert!(s.events.iter().all(|(cid, _, _)| cid == "anon-ga"));
        let page = &s.events.iter().find(|(_, _, e)| e["name"] == "page_view").unwrap().2;
        assert_eq!(page["params"]["page_location"], "https://example.com/pricing");
        assert_eq!(page["params"]["page_title"], "Pricing");
        assert_eq!(page["params"]["page_referrer"], "https://www.google.com/");
        assert!(!s.events.iter().any(|(_, _, e)| e["name"] == "report_downloaded_from_the_workspace_dashboard_page"));
    });
    let calls = f.ga4.requests("/mp/collect");
    assert!(calls.len() >= 2);
    assert!(
        calls
            .iter()
            .all(|r| r.json()["events"].as_array().unwrap().len() <= 25)
    );
    assert!(
        calls
            .iter()
            .all(|r| r.query["api_secret"] == fakes::ga4::API_SECRET)
    );
    assert_eq!(outbox(&app, "ga4").await["dead"], 1);
    let (_, log) = app.admin_get("/admin/destinations/ga4/log").await;
    let reason = log["dead"][0]["lastError"].as_str().unwrap();
    assert!(reason.contains("at most 40 characters"), "{reason}");

    // `touchpoint destinations check ga4` prints the debug endpoint's verdict.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tp-server"))
        .args(["destinations", "check", "ga4"])
        .env("TOUCHPOINT_GA4_URL", &f.ga4.url)
        .env("TOUCHPOINT_GA4_MEASUREMENT_ID", fakes::ga4::MEASUREMENT_ID)
        .env("TOUCHPOINT_GA4_API_SECRET", fakes::ga4::API_SECRET)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("no validation messages"), "{stdout}");
    assert_eq!(f.ga4.requests("/debug/mp/collect").len(), 1);
}

async fn hubspot_resend_meta_and_the_webhook_receive_well_formed_requests(db: Db) {
    let f = all_fakes().await;
    f.hubspot.with(|s| s.rate_limit_next = 1);
    let (_dir, app) = spawn_lenient(db, &f).await;
    app.send_batch(WEB_KEY, vec![
        json!({"type": "identify", "userId": "u-hs", "anonymousId": "anon-hs",
               "traits": {"email": "Ada@Example.COM", "name": "Ada Lovelace", "phone": "+1 (555) 010-2000"}}),
        json!({"type": "group", "userId": "u-hs", "groupId": "initech",
               "traits": {"name": "Initech", "seats_provisioned": 4}}),
        json!({"type": "track", "userId": "u-hs", "messageId": "msg-trial-1", "event": "trial_started",
               "properties": {"plan_tier": "pro", "trial_days": 14},
               "context": {"ip": "203.0.113.7", "userAgent": "Mozilla/5.0"}}),
    ]).await;
    settled(&app, "hubspot", 2).await;
    settled(&app, "meta", 1).await;
    settled(&app, "webhook", 3).await;

    // HubSpot: OAuth refresh, one 429 waited out, contact by email and company by groupId.
    f.hubspot.with(|s| {
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert!(!s.tokens.is_empty());
        let contact = &s.objects["contacts"]["ada@example.com"];
        assert_eq!(contact["firstname"], "Ada");
        assert_eq!(contact["lastname"], "Lovelace");
        assert_eq!(contact["touchpoint_user_id"], "u-hs");
        let company = &s.objects["companies"]["initech"];
        assert_eq!(company["name"], "Initech");
        assert_eq!(company["touchpoint_account_id"], "initech");
    });
    assert!(
        f.hubspot.requests("/batch/upsert").len() >= 3,
        "the 429 was retried"
    );

    // Meta: hashed identifiers, event_id = messageId.
    f.meta.with(|s| {
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        let e = &s.events["msg-trial-1"];
        assert_eq!(e["event_name"], "StartTrial");
        assert_eq!(e["action_source"], "website");
        assert_eq!(
            e["user_data"]["em"][0],
            touchpoint_core::destinations::sha256_hex("ada@example.com")
        );
        let phone = e["user_data"]["ph"][0].as_str().unwrap();
        assert_eq!(
            phone,
            touchpoint_core::destinations::sha256_hex("15550102000")
        );
        assert_eq!(e["user_data"]["client_ip_address"], "203.0.113.7");
        assert_eq!(e["custom_data"]["plan_tier"], "pro");
    });
    assert!(
        f.meta
            .requests("")
            .iter()
            .all(|r| r.query["access_token"] == fakes::meta::ACCESS_TOKEN)
    );

    // Webhook: signed (the receiver verified every signature), one event per message.
    f.webhook.with(|s| {
        assert_eq!(s.bad_signatures, 0);
        assert_eq!(s.events.len(), 3);
        let track = s.events.values().find(|e| e["type"] == "track").unwrap();
        assert_eq!(track["messageId"], "msg-trial-1");
        assert_eq!(track["account"]["groupId"], "initech");
    });
    let hook = &f.webhook.requests("/hooks/touchpoint")[0];
    assert!(hook.headers["x-touchpoint-signature"].starts_with("v1="));

    // Resend: entering a synced audience adds the contact, exiting removes it.
    let profile = profile_id(&app, "u-hs").await;
    audience_event(&app, "trial_users", &profile, "audience_entered").await;
    eventually(20, "the Resend contact exists", async || {
        f.resend.with(|s| {
            s.audiences
                .get("aud-trial")
                .is_some_and(|a| a.contains_key("ada@example.com"))
        })
    })
    .await;
    let contact = f
        .resend
        .with(|s| s.audiences["aud-trial"]["ada@example.com"].clone());
    assert_eq!(contact["first_name"], "Ada");
    assert_eq!(contact["unsubscribed"], false);
    audience_event(&app, "trial_users", &profile, "audience_exited").await;
    eventually(20, "the Resend contact is removed", async || {
        f.resend.with(|s| s.audiences["aud-trial"].is_empty())
    })
    .await;
    assert!(
        f.resend
            .requests("")
            .iter()
            .all(|r| r.headers["authorization"] == format!("Bearer {}", fakes::resend::API_KEY))
    );
    assert!(f.resend.with(|s| s.problems.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_core_processes_sharing_one_postgresql_outbox_never_double_deliver() {
    let f = all_fakes().await;
    let (url, _) = fresh_database(Db::Postgres).await;
    let a = spawn_app_with(config(url.clone(), &f), None).await;
    let b = spawn_app_with(config(url, &f), None).await;
    for round in 0..6 {
        let mut batch = Vec::new();
        for i in 0..50 {
            let n = round * 50 + i;
            batch.push(json!({"type": "identify", "userId": format!("u-{n}"),
                "traits": {"email": format!("u{n}@example.com")}}));
        }
        let app = if round % 2 == 0 { &a } else { &b };
        app.send_batch(SERVER_KEY, batch).await;
    }
    settled(&a, "webhook", 300).await;
    settled(&a, "salesforce", 300).await;
    settled(&a, "hubspot", 300).await;
    f.webhook.with(|s| {
        assert_eq!(s.events.len(), 300);
        let twice: Vec<_> = s.deliveries.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    });
    let upserted: usize = f
        .salesforce
        .requests("/composite/sobjects/Contact")
        .iter()
        .map(|r| r.json()["records"].as_array().unwrap().len())
        .sum();
    assert_eq!(upserted, 300, "each Contact was sent exactly once");
    let hubspot_inputs: usize = f
        .hubspot
        .requests("/batch/upsert")
        .iter()
        .map(|r| r.json()["inputs"].as_array().unwrap().len())
        .sum();
    assert_eq!(hubspot_inputs, 300);
    // Both processes did some of the work.
    let (_, status_b) = b.admin_get("/admin/destinations").await;
    let (_, status_a) = a.admin_get("/admin/destinations").await;
    let delivered = |s: &Value| -> u64 {
        s["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["metrics"]["delivered"].as_u64())
            .sum()
    };
    assert!(delivered(&status_a) + delivered(&status_b) >= 900);
}
