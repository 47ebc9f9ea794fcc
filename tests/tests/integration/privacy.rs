//! Erasure and retention end to end: erasing a person leaves no copy of their identifiers in any
//! table (found by scanning every column of every table, so new tables are covered without
//! changing this test), suppressions hold only hashes, each destination's deletion API is called and
//! the regulation shows the outcome per destination; retention purges old raw data.

use serde_json::{Value, json};
use std::time::Duration;
use touchpoint_core::Config;
use touchpoint_core::destinations::config::DeliveryConfig;
use touchpoint_core::destinations::ga4::config::{Ga4Config, Ga4Deletion};
use touchpoint_core::destinations::hubspot::config::HubSpotConfig;
use touchpoint_core::destinations::meta::config::MetaConfig;
use touchpoint_core::destinations::resend::config::ResendConfig;
use touchpoint_core::destinations::salesforce::config::{ErasureMode, SalesforceConfig};
use touchpoint_core::destinations::webhook::config::WebhookConfig;
use touchpoint_core::privacy::retention::{self, Policy};
use touchpoint_tests::fakes;
use touchpoint_tests::{
    ADMIN_TOKEN, Db, TestApp, WEB_KEY, fresh_database, spawn_app_with, test_config,
};

crate::on_both_stores!(
    deleting_a_profile_cancels_its_undelivered_activations,
    erasing_a_person_leaves_no_copy_of_their_identifiers_in_any_table,
    every_destination_gets_the_erasure_and_the_regulation_shows_each_outcome,
    a_destination_that_stays_down_is_retried_then_failed_with_its_error,
    salesforce_can_blank_the_contact_instead_of_deleting_it,
    retention_purges_old_raw_data_but_never_what_a_stage_has_not_processed,
    a_blocked_message_from_an_erased_person_is_dropped_too,
    erasure_finds_identifiers_that_json_escapes_or_that_are_written_in_another_case,
);

const EMAIL: &str = "erase.me@example.com";
const USER: &str = "erase-me";
const DEVICE: &str = "erase-device-1";
/// What must not survive an erasure anywhere (compared lowercase).
const NEEDLES: [&str; 4] = [EMAIL, USER, DEVICE, "erin rase"];

fn fast_delivery(max_attempts: i64) -> DeliveryConfig {
    DeliveryConfig {
        retry_base: Duration::from_millis(20),
        retry_max: Duration::from_millis(100),
        max_attempts,
        poll: Duration::from_millis(25),
        ..DeliveryConfig::default()
    }
}

fn webhook_config(fake: &fakes::Fake<fakes::webhook::State>) -> WebhookConfig {
    WebhookConfig {
        url: format!("{}/hooks/touchpoint", fake.url),
        secret: fakes::webhook::SECRET.into(),
    }
}

async fn spawn(db: Db, configure: impl FnOnce(&mut Config)) -> TestApp {
    let (url, tmp) = fresh_database(db).await;
    let mut config = test_config(url);
    configure(&mut config);
    spawn_app_with(config, tmp).await
}

/// Polls `check` every 25 ms for at most 20 s.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..800 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn batch(app: &TestApp, items: Value) {
    let r = app
        .post("/v1/batch", WEB_KEY, &json!({ "batch": items }))
        .await;
    assert!(r.status().as_u16() < 500, "batch answered {}", r.status());
}

async fn profile_id(app: &TestApp, user: &str) -> String {
    app.profile("user_id", user).await.expect("profile")["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// Erases a profile; returns the regulation id.
async fn erase(app: &TestApp, profile: &str) -> String {
    let r = app
        .client
        .delete(format!("{}/admin/profiles/{profile}", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.expect("json");
    body["regulationId"]
        .as_str()
        .expect("regulationId")
        .to_owned()
}

/// Waits until the regulation has settled; returns it.
async fn settled(app: &TestApp, regulation: &str) -> Value {
    let mut last = Value::Null;
    eventually("the regulation settles", async || {
        let (status, r) = app
            .admin_get(&format!("/admin/regulations/{regulation}"))
            .await;
        assert_eq!(status, 200);
        last = r;
        last["status"] != "running"
    })
    .await;
    last
}

fn destination<'a>(regulation: &'a Value, name: &str) -> &'a Value {
    regulation["destinations"]
        .as_array()
        .and_then(|d| d.iter().find(|x| x["destination"] == name))
        .unwrap_or_else(|| panic!("{name} is not in {regulation}"))
}

/// Every (table, column, value) of the database whose text contains one of `needles`
/// (lowercase), whatever the table: the catalogue says which tables and columns there are.
async fn scan(database_url: &str, needles: &[&str]) -> Vec<String> {
    use sqlx::Row;
    let pool = touchpoint_tests::any_pool(database_url).await;
    let sqlite = database_url.starts_with("sqlite:");
    let tables: Vec<String> = sqlx::query(if sqlite {
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         UNION ALL SELECT name FROM log.sqlite_master \
         WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'"
    } else {
        "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
    })
    .fetch_all(&pool)
    .await
    .expect("tables")
    .iter()
    .map(|r| r.get::<String, _>(0))
    .filter(|t| t != "_sqlx_migrations")
    .collect();
    assert!(
        tables.iter().any(|t| t == "messages") && tables.len() > 15,
        "the catalogue lists the tables: {tables:?}"
    );
    let mut found = Vec::new();
    for table in &tables {
        let columns: Vec<String> = sqlx::query(&if sqlite {
            format!("SELECT name FROM pragma_table_info('{table}')")
        } else {
            format!(
                "SELECT CAST(column_name AS TEXT) FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = '{table}'"
            )
        })
        .fetch_all(&pool)
        .await
        .expect("columns")
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
        for column in &columns {
            let values = sqlx::query(&format!(
                "SELECT CAST(\"{column}\" AS TEXT) FROM \"{table}\""
            ))
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("reading {table}.{column}: {e}"));
            for row in values {
                let Some(text) = row.get::<Option<String>, _>(0) else {
                    continue;
                };
                let lower = text.to_lowercase();
                if needles.iter().any(|n| lower.contains(n)) {
                    found.push(format!("{table}.{column}: {text}"));
                }
            }
        }
    }
    pool.close().await;
    found
}

async fn deleting_a_profile_cancels_its_undelivered_activations(db: Db) {
    let webhook = fakes::webhook::spawn().await;
    webhook.set_down(true);
    let app = spawn(db, |c| {
        c.destinations.webhook = Some(webhook_config(&webhook));
        c.destinations.delivery = fast_delivery(1000);
    })
    .await;
    batch(
        &app,
        json!([
            {"type": "identify", "userId": "erase-me", "traits": {"email": "erase@example.com"}},
            {"type": "identify", "userId": "keep-me", "traits": {"email": "keep@example.com"}},
        ]),
    )
    .await;
    app.wait_processed().await;
    // Both activations are queued for the webhook, which is down.
    eventually("both activations wait in the outbox", async || {
        let (_, d) = app.admin_get("/admin/destinations/webhook/log").await;
        d["pending"].as_array().is_some_and(|p| p.len() >= 2)
    })
    .await;

    let id = profile_id(&app, "erase-me").await;
    erase(&app, &id).await;

    webhook.set_down(false);
    eventually("the other person is delivered", async || {
        webhook.with(|s| {
            serde_json::to_string(&s.events)
                .unwrap()
                .contains("keep@example.com")
        })
    })
    .await;
    let activations: Vec<Value> = webhook.with(|s| {
        s.events
            .values()
            .filter(|e| e["type"] != "delete")
            .cloned()
            .collect()
    });
    let text = serde_json::to_string(&activations).unwrap();
    assert!(
        !text.contains("erase@example.com"),
        "the erased person's data never leaves (only the delete event names them): {text}"
    );
}

async fn erasing_a_person_leaves_no_copy_of_their_identifiers_in_any_table(db: Db) {
    let webhook = fakes::webhook::spawn().await;
    // The receiver refuses every batch quoting it back: the outbox and the delivery log then hold
    // the API's error messages, which name people.
    webhook.with(|s| s.reject = true);
    let app = spawn(db, |c| {
        c.destinations.webhook = Some(webhook_config(&webhook));
        c.destinations.delivery = fast_delivery(1000);
    })
    .await;
    batch(
        &app,
        json!([
            // The person: a profile, a planned event, a blocked (unplanned) event, a rejected item.
            {"type": "identify", "messageId": "own-1", "userId": USER, "anonymousId": DEVICE,
             "traits": {"email": "Erase.Me@Example.com", "name": "Erin Rase"}},
            {"type": "track", "messageId": "own-2", "userId": USER, "event": "workspace_created",
             "properties": {"workspace_id": "ws-e"}},
            {"type": "track", "messageId": "own-3", "userId": USER, "event": "erase_unplanned",
             "properties": {"note": "Erin Rase was here"}},
            {"type": "nope", "userId": USER, "traits": {"email": EMAIL}},
            // Someone else who mentions them, and who used their device (a refused merge).
            {"type": "identify", "messageId": "bob-1", "userId": "bob-keeps",
             "traits": {"email": "bob@example.com", "company": EMAIL}},
            {"type": "track", "messageId": "bob-2", "userId": "bob-keeps", "event": "workspace_created",
             "properties": {"workspace_id": "ws-b", "workspace_name": "shared with Erase.Me@Example.com"}},
            {"type": "track", "messageId": "bob-3", "userId": "bob-keeps", "event": "contact_shared",
             "properties": {"with": EMAIL}},
            {"type": "track", "messageId": "bob-4", "userId": "bob-keeps", "anonymousId": DEVICE,
             "event": "feature_toggled", "properties": {"feature_name": "x", "new_status": true}},
        ]),
    )
    .await;
    app.wait_processed().await;
    eventually(
        "every activation is dead-lettered with the receiver's message",
        async || {
            let (_, d) = app.admin_get("/admin/destinations/webhook/log").await;
            d["dead"].as_array().is_some_and(|x| x.len() >= 5)
        },
    )
    .await;
    let before = scan(&app.database_url, &NEEDLES).await;
    for table in [
        "messages",
        "rejected_messages",
        "identity_reports",
        "outbox",
        "delivery_log",
    ] {
        assert!(
            before.iter().any(|f| f.starts_with(&format!("{table}."))),
            "the scenario puts the person in {table}: {before:#?}"
        );
    }

    webhook.with(|s| s.reject = false);
    let id = profile_id(&app, USER).await;
    let regulation = erase(&app, &id).await;
    let r = settled(&app, &regulation).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(destination(&r, "webhook")["status"], "succeeded");

    let left = scan(&app.database_url, &NEEDLES).await;
    assert!(left.is_empty(), "copies survived the erasure: {left:#?}");

    // Suppressions hold hashes only, one per identifier.
    let hashes = scan_suppressions(&app.database_url).await;
    assert_eq!(hashes.len(), 3, "{hashes:?}");
    assert!(hashes.iter().all(|h| fakes::is_sha256_hex(h)), "{hashes:?}");
    assert_eq!(r["subjectHashes"].as_array().map(Vec::len), Some(3));

    // The other person keeps their data, with the mentions pseudonymised.
    let bob = app
        .profile("user_id", "bob-keeps")
        .await
        .expect("bob stays");
    assert_eq!(bob["traits"]["company"], "[erased]");
    assert_eq!(bob["traits"]["email"], "bob@example.com");
    let blocked = &app.stored("bob-3").await[0];
    assert_eq!(blocked["body"]["properties"]["with"], "[erased]");
    let named = &app.stored("bob-2").await[0];
    assert_eq!(
        named["body"]["properties"]["workspace_name"],
        "shared with [erased]"
    );
    assert!(app.stored("bob-4").await[0]["body"]["anonymousId"] == "[erased]");
    for own in ["own-1", "own-2", "own-3"] {
        assert!(app.stored(own).await.is_empty(), "{own} is deleted");
    }

    // Data carrying an erased identifier again is dropped.
    batch(
        &app,
        json!([{"type": "identify", "messageId": "again", "anonymousId": "fresh-device",
                "traits": {"email": EMAIL}}]),
    )
    .await;
    app.wait_processed().await;
    assert!(app.stored("again").await.is_empty());
    assert!(app.profile("email", EMAIL).await.is_none());
}

/// The values of the suppression table.
async fn scan_suppressions(database_url: &str) -> Vec<String> {
    use sqlx::Row;
    let pool = touchpoint_tests::any_pool(database_url).await;
    let rows = sqlx::query("SELECT hash FROM suppression_hashes")
        .fetch_all(&pool)
        .await
        .expect("suppressions");
    pool.close().await;
    rows.iter().map(|r| r.get::<String, _>(0)).collect()
}

async fn every_destination_gets_the_erasure_and_the_regulation_shows_each_outcome(db: Db) {
    let salesforce = fakes::salesforce::spawn().await;
    let hubspot = fakes::hubspot::spawn().await;
    let ga4 = fakes::ga4::spawn().await;
    let resend = fakes::resend::spawn().await;
    let meta = fakes::meta::spawn().await;
    let webhook = fakes::webhook::spawn().await;
    let app = spawn(db, |c| {
        let d = &mut c.destinations;
        d.salesforce = Some(SalesforceConfig::new(
            &salesforce.url,
            fakes::salesforce::CLIENT_ID,
            fakes::salesforce::CLIENT_SECRET,
        ));
        d.hubspot = Some(HubSpotConfig::oauth(
            &hubspot.url,
            fakes::hubspot::CLIENT_ID,
            fakes::hubspot::CLIENT_SECRET,
            fakes::hubspot::REFRESH_TOKEN,
        ));
        let mut g = Ga4Config::new(&ga4.url, fakes::ga4::MEASUREMENT_ID, fakes::ga4::API_SECRET);
        g.deletion = Some(Ga4Deletion {
            admin_url: ga4.url.clone(),
            token_url: format!("{}/token", ga4.url),
            property_id: fakes::ga4::PROPERTY_ID.into(),
            client_id: fakes::ga4::CLIENT_ID.into(),
            client_secret: fakes::ga4::CLIENT_SECRET.into(),
            refresh_token: fakes::ga4::REFRESH_TOKEN.into(),
        });
        d.ga4 = Some(g);
        d.resend = Some(ResendConfig {
            url: resend.url.clone(),
            api_key: fakes::resend::API_KEY.into(),
            audiences: [("trial_users".to_owned(), "aud-trial".to_owned())].into(),
            requests_per_sec: 50,
        });
        d.meta = Some(MetaConfig::pixel(
            &meta.url,
            fakes::meta::PIXEL_ID,
            fakes::meta::ACCESS_TOKEN,
        ));
        d.webhook = Some(webhook_config(&webhook));
        d.delivery = fast_delivery(1000);
    })
    .await;
    batch(
        &app,
        json!([
            {"type": "identify", "userId": USER, "anonymousId": DEVICE,
             "traits": {"email": EMAIL, "name": "Erin Rase"}},
            {"type": "page", "userId": USER, "anonymousId": DEVICE, "name": "Pricing",
             "properties": {"path": "/pricing"}},
        ]),
    )
    .await;
    app.wait_processed().await;
    eventually("the CRMs hold the contact", async || {
        salesforce.with(|s| s.get("Contact", USER).is_some())
            && hubspot.with(|s| {
                s.objects
                    .get("contacts")
                    .is_some_and(|c| c.contains_key(EMAIL))
            })
    })
    .await;

    let id = profile_id(&app, USER).await;
    let regulation = erase(&app, &id).await;
    let r = settled(&app, &regulation).await;
    assert_eq!(r["status"], "succeeded", "{r:#}");
    for name in ["salesforce", "hubspot", "ga4", "resend", "webhook"] {
        let d = destination(&r, name);
        assert_eq!(d["status"], "succeeded", "{name}: {d}");
        assert_eq!(d["attempts"], 1, "{name}: {d}");
    }
    let m = destination(&r, "meta");
    assert_eq!(m["status"], "not_supported");
    assert!(m["detail"].as_str().unwrap().contains("Conversions API"));

    // Each API got its documented deletion call.
    assert_eq!(
        hubspot.with(|s| s.gdpr_deletes.clone()),
        [(Some("email".to_owned()), EMAIL.to_owned())]
    );
    assert!(hubspot.with(|s| !s.objects["contacts"].contains_key(EMAIL)));
    assert_eq!(
        salesforce.with(|s| s.deleted.clone()),
        [("Contact".to_owned(), USER.to_owned())]
    );
    let deletions = ga4.with(|s| s.deletions.clone());
    assert!(
        deletions.contains(&("userId".into(), USER.into())),
        "{deletions:?}"
    );
    assert!(
        deletions.contains(&("clientId".into(), DEVICE.into())),
        "{deletions:?}"
    );
    assert_eq!(
        resend.with(|s| s.removals.clone()),
        [("aud-trial".to_owned(), EMAIL.to_owned())]
    );
    let event = webhook
        .with(|s| s.events.get(&format!("erase:{regulation}")).cloned())
        .expect("the webhook got a delete event");
    assert_eq!(event["type"], "delete");
    assert_eq!(event["emails"], json!([EMAIL]));
    assert_eq!(event["userIds"], json!([USER]));
    assert_eq!(webhook.with(|s| s.bad_signatures), 0);
    for problems in [
        salesforce.with(|s| s.problems.clone()),
        hubspot.with(|s| s.problems.clone()),
        ga4.with(|s| s.problems.clone()),
        resend.with(|s| s.problems.clone()),
    ] {
        assert!(problems.is_empty(), "{problems:?}");
    }

    // Settled, the regulation keeps hashes only.
    let text = r.to_string().to_lowercase();
    assert!(NEEDLES.iter().all(|n| !text.contains(n)), "{text}");
    let (_, all) = app.admin_get("/admin/regulations").await;
    assert_eq!(all["regulations"][0]["id"], regulation.as_str());
    let left = scan(&app.database_url, &NEEDLES).await;
    assert!(left.is_empty(), "copies survived the erasure: {left:#?}");
}

async fn a_destination_that_stays_down_is_retried_then_failed_with_its_error(db: Db) {
    let hubspot = fakes::hubspot::spawn().await;
    hubspot.set_down(true);
    let app = spawn(db, |c| {
        c.destinations.hubspot = Some(HubSpotConfig::oauth(
            &hubspot.url,
            fakes::hubspot::CLIENT_ID,
            fakes::hubspot::CLIENT_SECRET,
            fakes::hubspot::REFRESH_TOKEN,
        ));
        c.destinations.delivery = fast_delivery(3);
    })
    .await;
    batch(
        &app,
        json!([{"type": "identify", "userId": USER, "traits": {"email": EMAIL}}]),
    )
    .await;
    app.wait_processed().await;
    let id = profile_id(&app, USER).await;
    let regulation = erase(&app, &id).await;
    let r = settled(&app, &regulation).await;
    assert_eq!(r["status"], "failed", "{r:#}");
    let h = destination(&r, "hubspot");
    assert_eq!(h["status"], "failed");
    assert_eq!(h["attempts"], 3);
    let error = h["lastError"].as_str().expect("the error is kept");
    assert!(
        error.contains("gave up after 3 attempts") && error.contains("503"),
        "{error}"
    );
    assert!(
        hubspot.requests("").len() >= 3,
        "each attempt called HubSpot"
    );
    // Failed is final: the identifiers are gone from the regulation too.
    let left = scan(&app.database_url, &NEEDLES).await;
    assert!(left.is_empty(), "{left:#?}");
}

async fn salesforce_can_blank_the_contact_instead_of_deleting_it(db: Db) {
    let salesforce = fakes::salesforce::spawn().await;
    let app = spawn(db, |c| {
        let mut s = SalesforceConfig::new(
            &salesforce.url,
            fakes::salesforce::CLIENT_ID,
            fakes::salesforce::CLIENT_SECRET,
        );
        s.erasure = ErasureMode::Blank;
        c.destinations.salesforce = Some(s);
        c.destinations.delivery = fast_delivery(1000);
    })
    .await;
    batch(
        &app,
        json!([{"type": "identify", "userId": USER,
                "traits": {"email": EMAIL, "name": "Erin Rase", "user_role": "admin"}}]),
    )
    .await;
    app.wait_processed().await;
    eventually("Salesforce holds the contact", async || {
        salesforce.with(|s| s.get("Contact", USER).is_some())
    })
    .await;
    let id = profile_id(&app, USER).await;
    let regulation = erase(&app, &id).await;
    let r = settled(&app, &regulation).await;
    assert_eq!(destination(&r, "salesforce")["status"], "succeeded", "{r}");
    let contact = salesforce
        .with(|s| s.get("Contact", USER))
        .expect("the contact is kept");
    assert_eq!(contact["LastName"], "[erased]");
    for field in ["Email", "FirstName", "Title", "Touchpoint_User_Id__c"] {
        assert!(
            !contact.contains_key(field),
            "{field} is blanked: {contact:?}"
        );
    }
    assert!(salesforce.with(|s| s.deleted.is_empty() && s.problems.is_empty()));
}

async fn retention_purges_old_raw_data_but_never_what_a_stage_has_not_processed(db: Db) {
    const DAY: i64 = 86_400_000;
    let webhook = fakes::webhook::spawn().await;
    let app = spawn(db, |c| {
        c.retention_days = 30;
        c.destinations.webhook = Some(webhook_config(&webhook));
        c.destinations.delivery = fast_delivery(1000);
    })
    .await;
    batch(
        &app,
        json!([
            {"type": "identify", "messageId": "r-1", "userId": "kept-user", "traits": {"name": "Kay"}},
            {"type": "track", "messageId": "r-2", "userId": "kept-user", "event": "workspace_created",
             "properties": {"workspace_id": "ws-1"}},
            {"type": "nope", "userId": "kept-user"},
        ]),
    )
    .await;
    app.wait_processed().await;
    eventually(
        "every stage has read the log and the webhook got both",
        async || {
            let (_, p) = app.admin_get("/admin/pipeline").await;
            p["audiencesCursor"].as_i64() >= p["logHead"].as_i64()
                && webhook.with(|s| s.events.len()) >= 2
        },
    )
    .await;
    let mut delivered = 0;
    eventually("the outbox rows are settled", async || {
        let (_, d) = app.admin_get("/admin/destinations").await;
        let w = d["destinations"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == "webhook").cloned())
            .unwrap_or_default();
        delivered = w["outbox"]["delivered"].as_u64().unwrap_or(0);
        delivered >= 2 && w["outbox"]["pending"] == 0 && w["outbox"]["delivering"] == 0
    })
    .await;

    // Nothing is 30 days old yet.
    let r = app
        .client
        .post(format!("{}/admin/retention/run", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["purged"]["messages"], 0, "{body}");

    // Moving the clock: 29 days later nothing goes; 31 days later the raw data does.
    let stores = touchpoint_core::stores::connect(&app.database_url)
        .await
        .unwrap();
    let policy = Policy::new(30, true);
    let now = chrono::Utc::now().timestamp_millis();
    let early = retention::run_once(stores.privacy.as_ref(), &policy, now + 29 * DAY)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(early, Default::default());
    let late = retention::run_once(stores.privacy.as_ref(), &policy, now + 31 * DAY)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (late.messages, late.rejected, late.outbox),
        (2, 1, delivered),
        "{late:?}"
    );
    assert!(late.delivery_log >= 1);
    assert!(app.stored("r-1").await.is_empty() && app.stored("r-2").await.is_empty());
    let p = app
        .profile("user_id", "kept-user")
        .await
        .expect("the profile stays");
    assert_eq!(p["traits"]["name"], "Kay");

    // An ingest-only process: no stage has read its messages, so they stay.
    let (url, tmp) = fresh_database(db).await;
    let mut config = test_config(url);
    config.process = false;
    let ingest_only = spawn_app_with(config, tmp).await;
    batch(
        &ingest_only,
        json!([{"type": "identify", "messageId": "u-1", "userId": "someone"},
               {"type": "nope", "userId": "someone"}]),
    )
    .await;
    let r = ingest_only
        .client
        .post(format!("{}/admin/retention/run", ingest_only.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "retention is off by default");
    let stores = touchpoint_core::stores::connect(&ingest_only.database_url)
        .await
        .unwrap();
    let purged = retention::run_once(
        stores.privacy.as_ref(),
        &Policy::new(30, false),
        now + 31 * DAY,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!((purged.messages, purged.rejected), (0, 1), "{purged:?}");
    assert_eq!(ingest_only.stored("u-1").await.len(), 1);
}

async fn a_blocked_message_from_an_erased_person_is_dropped_too(db: Db) {
    let app = spawn(db, |_| {}).await;
    batch(
        &app,
        json!([{"type": "identify", "userId": USER, "traits": {"email": EMAIL}}]),
    )
    .await;
    app.wait_processed().await;
    let id = profile_id(&app, USER).await;
    erase(&app, &id).await;
    // An unplanned event is blocked by the plan; it still carries the erased user id.
    batch(
        &app,
        json!([
            {"type": "track", "userId": USER, "event": "Mystery Thing", "messageId": "after-erase-blocked"},
            {"type": "track", "anonymousId": "someone-else", "event": "Mystery Thing", "messageId": "other-blocked"},
        ]),
    )
    .await;
    app.wait_processed().await;
    assert!(app.stored("after-erase-blocked").await.is_empty());
    let other = app.stored("other-blocked").await;
    assert_eq!(
        other[0]["status"], "blocked",
        "other people's blocked messages stay"
    );
}

async fn erasure_finds_identifiers_that_json_escapes_or_that_are_written_in_another_case(db: Db) {
    let app = spawn(db, |_| {}).await;
    let user = r"CORP\jsmith-9";
    batch(
        &app,
        json!([
            {"type": "identify", "messageId": "esc-own", "userId": user,
             "traits": {"email": "ÅSA.Lind@Example.com"}},
            {"type": "nope", "userId": user},
            {"type": "identify", "messageId": "esc-bob", "userId": "bob-escapes",
             "traits": {"company": "ÅSA.LIND@EXAMPLE.COM"}},
            {"type": "track", "messageId": "esc-bob-2", "userId": "bob-escapes",
             "event": "contact_shared", "properties": {"with": user, "cc": "åsa.lind@example.com"}},
        ]),
    )
    .await;
    app.wait_processed().await;
    // As the database holds them: case-folded, and JSON text with the backslash escaped.
    let needles = [r"corp\jsmith-9", r"corp\\jsmith-9", "åsa.lind@example.com"];
    let before = scan(&app.database_url, &needles).await;
    for table in ["messages", "rejected_messages"] {
        assert!(
            before.iter().any(|f| f.starts_with(&format!("{table}."))),
            "the scenario puts the person in {table}: {before:#?}"
        );
    }
    let id = profile_id(&app, user).await;
    let regulation = erase(&app, &id).await;
    assert_eq!(settled(&app, &regulation).await["status"], "succeeded");
    let left = scan(&app.database_url, &needles).await;
    assert!(left.is_empty(), "copies survived the erasure: {left:#?}");
    let bob = app
        .profile("user_id", "bob-escapes")
        .await
        .expect("bob stays");
    assert_eq!(bob["traits"]["company"], "[erased]");
    let shared = &app.stored("esc-bob-2").await[0];
    assert_eq!(shared["body"]["properties"]["with"], "[erased]");
    assert_eq!(shared["body"]["properties"]["cc"], "[erased]");
}
