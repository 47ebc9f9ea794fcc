//! Ad platforms end to end, on both stores: Meta Custom Audiences follow Touchpoint audiences
//! (hashed identifiers added on entry and removed on exit, many entries batched into few calls, a
//! full sync through `usersreplace` in one numbered session), and GA4 receives what makes
//! server-side events count like tagged ones (sessions, engagement time, late-event timestamps,
//! campaigns, consent).

use chrono::SecondsFormat;
use serde_json::{Value, json};
use std::time::Duration;
use touchpoint_core::Config;
use touchpoint_core::destinations::config::DeliveryConfig;
use touchpoint_core::destinations::ga4::config::Ga4Config;
use touchpoint_core::destinations::meta::config::MetaConfig;
use touchpoint_core::destinations::sha256_hex;
use touchpoint_tests::fakes::{self, Fake};
use touchpoint_tests::{
    Db, SERVER_KEY, TestApp, WEB_KEY, fresh_database, spawn_app_with, test_config,
};

crate::on_both_stores!(
    a_profile_entering_an_audience_is_added_to_the_meta_custom_audience_and_removed_on_exit,
    many_entries_are_batched_into_few_custom_audience_calls,
    a_full_sync_replaces_the_custom_audience_in_one_session_of_numbered_batches,
    ga4_events_carry_sessions_engagement_late_timestamps_campaigns_and_consent,
);

const AUDIENCE: &str = fakes::meta::AUDIENCE_IDS[0];
const MINUTE: i64 = 60_000;

/// A config delivering to the fakes that are given, with fast retries and a plan that keeps
/// unplanned traits (a `phone`, so Meta gets one).
fn config(
    url: String,
    plan_dir: &tempfile::TempDir,
    meta: Option<MetaConfig>,
    ga4: Option<Ga4Config>,
) -> Config {
    let plan = std::fs::read_to_string(touchpoint_tests::repo_root().join("TRACKING_PLAN.md"))
        .unwrap()
        .replace(
            "- Unplanned properties: `drop`",
            "- Unplanned properties: `allow`",
        );
    let plan_path = plan_dir.path().join("TRACKING_PLAN.md");
    std::fs::write(&plan_path, plan).unwrap();
    let mut c = test_config(url);
    c.plan_path = plan_path;
    c.destinations.meta = meta;
    c.destinations.ga4 = ga4;
    c.destinations.delivery = DeliveryConfig {
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(400),
        max_attempts: 50,
        poll: Duration::from_millis(50),
        ..DeliveryConfig::default()
    };
    c
}

/// Meta with Custom Audiences only (no pixel): `audience` syncs to the fake's first audience.
fn meta_audiences(f: &Fake<fakes::meta::State>, audience: &str, per_call: usize) -> MetaConfig {
    MetaConfig {
        pixel_id: None,
        custom_audiences: [(audience.to_owned(), AUDIENCE.to_owned())].into(),
        users_per_call: per_call,
        ..MetaConfig::pixel(&f.url, fakes::meta::PIXEL_ID, fakes::meta::ACCESS_TOKEN)
    }
}

async fn spawn(
    db: Db,
    meta: Option<MetaConfig>,
    ga4: Option<Ga4Config>,
) -> (tempfile::TempDir, TestApp) {
    let dir = tempfile::tempdir().unwrap();
    let (url, tmp) = fresh_database(db).await;
    let app = spawn_app_with(config(url, &dir, meta, ga4), tmp).await;
    (dir, app)
}

/// An RFC 3339 time `offset_ms` from now, and that time in ms.
fn at(offset_ms: i64) -> (String, i64) {
    let t = chrono::Utc::now() + chrono::Duration::milliseconds(offset_ms);
    (
        t.to_rfc3339_opts(SecondsFormat::Millis, true),
        t.timestamp_millis(),
    )
}

/// Polls `check` every 50 ms for up to `secs` seconds.
async fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..secs * 20 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {secs} s waiting until {what}");
}

/// Outbox counts of a destination.
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

/// Waits until a destination has nothing pending or in flight and at least `min_done` rows done.
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
    panic!("{name} did not settle: {}", outbox(app, name).await);
}

async fn a_profile_entering_an_audience_is_added_to_the_meta_custom_audience_and_removed_on_exit(
    db: Db,
) {
    let meta = fakes::meta::spawn().await;
    // AUDIENCES.md: free users who invited 2+ teammates and never connected an integration.
    let config = meta_audiences(&meta, "free_inviters_without_integration", 10_000);
    let (_dir, app) = spawn(db, Some(config), None).await;
    app.send_batch(SERVER_KEY, vec![
        json!({"type": "identify", "userId": "u-inviter", "traits": {
            "email": "Ada.Inviter@Example.COM", "phone": "+1 (555) 010-3000", "plan_tier": "free"}}),
        json!({"type": "track", "userId": "u-inviter", "event": "teammate_invited",
               "properties": {"workspace_id": "ws-1", "invitee_role": "member"}}),
        json!({"type": "track", "userId": "u-inviter", "event": "teammate_invited",
               "properties": {"workspace_id": "ws-1", "invitee_role": "admin"}}),
    ])
    .await;
    let email = sha256_hex("ada.inviter@example.com");
    eventually(30, "the person is in the Custom Audience", || {
        meta.with(|s| s.has(AUDIENCE, 0, &email))
    })
    .await;
    let members = meta.with(|s| s.members(AUDIENCE));
    assert_eq!(
        members,
        vec![vec![
            email.clone(),
            sha256_hex("15550103000"),
            sha256_hex("u-inviter")
        ]],
        "normalised, hashed email, phone and external id"
    );
    // Custom Audiences only: page and track messages are not Conversions API events.
    assert!(meta.requests("/events").is_empty());
    meta.with(|s| {
        let add = &s.audience_calls[0];
        assert_eq!((add.method.as_str(), add.edge.as_str()), ("POST", "users"));
        assert_eq!(add.session["batch_seq"], 1);
        assert_eq!(add.session["last_batch_flag"], true);
    });

    // Connecting an integration takes them out of the audience: Meta removes them.
    app.send_batch(
        SERVER_KEY,
        vec![json!({"type": "track", "userId": "u-inviter",
        "event": "integration_connected",
        "properties": {"integration_name": "slack", "workspace_id": "ws-1"}})],
    )
    .await;
    eventually(30, "the person left the Custom Audience", || {
        meta.with(|s| s.members(AUDIENCE).is_empty())
    })
    .await;
    settled(&app, "meta", 2).await;
    meta.with(|s| {
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        let remove = s.audience_calls.last().unwrap();
        assert_eq!(remove.method, "DELETE");
        assert_eq!(remove.rows, members);
    });
    assert!(
        meta.requests("")
            .iter()
            .all(|r| r.query["access_token"] == fakes::meta::ACCESS_TOKEN)
    );
    let (_, log) = app.admin_get("/admin/destinations/meta/log").await;
    let text = log.to_string();
    assert!(text.contains("Custom Audience add") && text.contains("Custom Audience remove"));
    assert!(
        !text.contains(fakes::meta::ACCESS_TOKEN),
        "the token is never logged"
    );
}

/// Identifies `n` people `{prefix}-{i}` with an email each.
async fn people(app: &TestApp, prefix: &str, n: usize) {
    let batch = (0..n)
        .map(|i| {
            json!({"type": "identify", "userId": format!("{prefix}-{i}"),
                   "traits": {"email": format!("{prefix}{i}@example.com")}})
        })
        .collect();
    app.send_batch(SERVER_KEY, batch).await;
    app.wait_processed().await;
}

async fn many_entries_are_batched_into_few_custom_audience_calls(db: Db) {
    let meta = fakes::meta::spawn().await;
    // 12 users a call, so 30 entries make 3 calls (Meta's own limit, 10,000, is unit-tested).
    let (_dir, app) = spawn(db, Some(meta_audiences(&meta, "ad_retargeting", 12)), None).await;
    people(&app, "batch", 30).await;
    // The audience engine's 30 entries, committed at once.
    let now = chrono::Utc::now().timestamp_millis();
    app.sql(&format!(
        "INSERT INTO audience_events (audience, profile_id, kind, at, seq, reason) \
         SELECT 'ad_retargeting', profile_id, 'audience_entered', {now}, 0, 'backfill' \
         FROM identities WHERE kind = 'user_id' AND value LIKE 'batch-%'"
    ))
    .await;
    settled(&app, "meta", 30).await;
    meta.with(|s| {
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert_eq!(s.members(AUDIENCE).len(), 30);
        let sizes: Vec<usize> = s.audience_calls.iter().map(|c| c.rows.len()).collect();
        assert_eq!(sizes, vec![12, 12, 6]);
        assert!(s.audience_calls.iter().all(|c| c.method == "POST"));
        assert!(s.has(AUDIENCE, 0, &sha256_hex("batch7@example.com")));
        assert!(s.has(AUDIENCE, 2, &sha256_hex("batch-7")));
    });
    // Exit, entry and exit of one person committed together: one removal, not three calls.
    app.sql(&format!(
        "BEGIN; \
         INSERT INTO audience_events (audience, profile_id, kind, at, seq, reason) \
         SELECT 'ad_retargeting', profile_id, 'audience_exited', {now}, 0, 'backfill' \
         FROM identities WHERE kind = 'user_id' AND value = 'batch-3'; \
         INSERT INTO audience_events (audience, profile_id, kind, at, seq, reason) \
         SELECT 'ad_retargeting', profile_id, 'audience_entered', {now}, 0, 'backfill' \
         FROM identities WHERE kind = 'user_id' AND value = 'batch-3'; \
         INSERT INTO audience_events (audience, profile_id, kind, at, seq, reason) \
         SELECT 'ad_retargeting', profile_id, 'audience_exited', {now}, 0, 'backfill' \
         FROM identities WHERE kind = 'user_id' AND value = 'batch-3'; \
         COMMIT;"
    ))
    .await;
    settled(&app, "meta", 33).await;
    meta.with(|s| {
        assert_eq!(s.members(AUDIENCE).len(), 29);
        assert!(!s.has(AUDIENCE, 2, &sha256_hex("batch-3")));
        assert_eq!(s.audience_calls.len(), 4);
        let last = s.audience_calls.last().unwrap();
        assert_eq!((last.method.as_str(), last.rows.len()), ("DELETE", 1));
    });
}

async fn a_full_sync_replaces_the_custom_audience_in_one_session_of_numbered_batches(db: Db) {
    let meta = fakes::meta::spawn().await;
    // Someone added by hand (or left over from before): the full sync removes them.
    meta.with(|s| {
        s.audiences.insert(
            AUDIENCE.to_owned(),
            vec![vec![
                sha256_hex("stale@example.com"),
                String::new(),
                String::new(),
            ]],
        )
    });
    let (_dir, app) = spawn(db, Some(meta_audiences(&meta, "ad_retargeting", 2)), None).await;
    people(&app, "member", 5).await;
    // One member refused advertising; one is known only by an anonymousId.
    app.send_batch(WEB_KEY, vec![
        json!({"type": "identify", "userId": "member-no-ads",
               "traits": {"email": "no-ads@example.com"},
               "context": {"consent": {"categoryPreferences": {"Analytics": true, "Advertising": false}}}}),
        json!({"type": "page", "anonymousId": "anon-only", "name": "Home"}),
    ])
    .await;
    app.wait_processed().await;
    let now = chrono::Utc::now().timestamp_millis();
    app.sql(&format!(
        "INSERT INTO audience_members (audience, profile_id, entered_at) \
         SELECT DISTINCT 'ad_retargeting', profile_id, {now} FROM identities \
         WHERE value LIKE 'member-%' OR value = 'anon-only'"
    ))
    .await;

    let (status, body) = app
        .admin_post("/admin/destinations/meta/audiences/unmapped/replace")
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app
        .admin_post("/admin/destinations/meta/audiences/ad_retargeting/replace")
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["customAudience"], AUDIENCE);
    let session = body["sessionId"].as_i64().unwrap();
    eventually(30, "the replace session completes", || {
        meta.with(|s| !s.replaced.is_empty())
    })
    .await;
    meta.with(|s| {
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert_eq!(s.replaced, vec![(AUDIENCE.to_owned(), session, 3)]);
        let calls: Vec<_> = s
            .audience_calls
            .iter()
            .filter(|c| c.edge == "usersreplace")
            .collect();
        assert_eq!(calls.len(), 3);
        for (i, c) in calls.iter().enumerate() {
            assert_eq!(c.session["session_id"], session);
            assert_eq!(c.session["batch_seq"], i + 1);
            assert_eq!(c.session["last_batch_flag"], i == 2);
            assert_eq!(c.session["estimated_num_total"], 7, "every member counted");
        }
        assert_eq!(
            calls.iter().map(|c| c.rows.len()).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
        let members = s.members(AUDIENCE);
        assert_eq!(members.len(), 5, "{members:?}");
        for i in 0..5 {
            assert!(s.has(AUDIENCE, 0, &sha256_hex(&format!("member{i}@example.com"))));
        }
        assert!(!s.has(AUDIENCE, 0, &sha256_hex("stale@example.com")));
        assert!(!s.has(AUDIENCE, 0, &sha256_hex("no-ads@example.com")));
    });
    // Each call is in the delivery log (written once Meta answered it).
    let mut replaces = 0;
    for _ in 0..100 {
        let (_, log) = app.admin_get("/admin/destinations/meta/log").await;
        replaces = log["log"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["request"]
                    .as_str()
                    .unwrap()
                    .contains("Custom Audience replace")
            })
            .count();
        if replaces == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(replaces, 3);
}

async fn ga4_events_carry_sessions_engagement_late_timestamps_campaigns_and_consent(db: Db) {
    let ga4 = fakes::ga4::spawn().await;
    let config = Ga4Config::new(&ga4.url, fakes::ga4::MEASUREMENT_ID, fakes::ga4::API_SECRET);
    let (_dir, app) = spawn(db, None, Some(config)).await;
    let no_ads = json!({"categoryPreferences": {"Analytics": true, "Advertising": false}});
    let ads = json!({"categoryPreferences": {"Analytics": true, "Advertising": true}});
    let (t1, ms1) = at(-50 * MINUTE);
    let (t2, ms2) = at(-48 * MINUTE);
    let (t3, ms3) = at(-5 * MINUTE);
    let (old, _) = at(-4 * 24 * 60 * MINUTE);
    app.send_batch(WEB_KEY, vec![
        // A visit from a newsletter: a page, then a toggle two minutes later.
        json!({"type": "page", "anonymousId": "anon-ga", "name": "Pricing", "timestamp": t1,
               "properties": {"url": "https://example.com/pricing?utm_source=newsletter", "title": "Pricing"},
               "context": {"consent": no_ads,
                           "campaign": {"name": "spring_sale", "source": "newsletter", "medium": "email"}}}),
        json!({"type": "track", "anonymousId": "anon-ga", "event": "feature_toggled", "timestamp": t2,
               "properties": {"feature_name": "dark_mode", "new_status": true},
               "context": {"consent": no_ads}}),
        // 43 minutes later: a new visit, advertising now consented.
        json!({"type": "track", "anonymousId": "anon-ga", "event": "feature_toggled", "timestamp": t3,
               "properties": {"feature_name": "beta", "new_status": true},
               "context": {"consent": ads}}),
        // Four days late: outside GA4's window.
        json!({"type": "track", "anonymousId": "anon-ga", "event": "feature_toggled", "timestamp": old,
               "properties": {"feature_name": "late", "new_status": true}}),
    ])
    .await;
    settled(&app, "ga4", 4).await;

    let (events, bodies) = ga4.with(|s| {
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        (s.events.clone(), s.bodies.clone())
    });
    let find = |name: &str, feature: Option<&str>| -> Value {
        events
            .iter()
            .map(|(_, _, e)| e.clone())
            .find(|e| e["name"] == name && feature.is_none_or(|f| e["params"]["feature_name"] == f))
            .unwrap_or_else(|| panic!("no {name} {feature:?} in {events:?}"))
    };
    let page = find("page_view", None);
    let toggle = find("feature_toggled", Some("dark_mode"));
    let next = find("feature_toggled", Some("beta"));
    let campaign = find("campaign_details", None);
    assert_eq!(events.len(), 4, "the late event was not sent: {events:?}");

    // Sessions: the first two share the visit that started with the page.
    assert_eq!(page["params"]["session_id"], ms1 / 1000);
    assert_eq!(toggle["params"]["session_id"], ms1 / 1000);
    assert_eq!(next["params"]["session_id"], ms3 / 1000);
    assert_eq!(page["params"]["engagement_time_msec"], 1);
    assert_eq!(toggle["params"]["engagement_time_msec"], ms2 - ms1);
    assert_eq!(next["params"]["engagement_time_msec"], 1);
    // Each event keeps its own time.
    assert_eq!(page["timestamp_micros"], ms1 * 1000);
    assert_eq!(toggle["timestamp_micros"], ms2 * 1000);
    assert_eq!(next["timestamp_micros"], ms3 * 1000);
    // The newsletter campaign, in the page's session.
    assert_eq!(campaign["params"]["campaign"], "spring_sale");
    assert_eq!(campaign["params"]["source"], "newsletter");
    assert_eq!(campaign["params"]["medium"], "email");
    assert_eq!(campaign["params"]["session_id"], ms1 / 1000);
    // Consent follows each message's Advertising choice.
    let consent_of = |name: &str| -> Value {
        bodies
            .iter()
            .find(|b| {
                b["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["params"]["feature_name"] == name)
            })
            .unwrap()["consent"]
            .clone()
    };
    assert_eq!(
        consent_of("dark_mode"),
        json!({"ad_user_data": "DENIED", "ad_personalization": "DENIED"})
    );
    assert_eq!(
        consent_of("beta"),
        json!({"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"})
    );
    // The four-day-old event is a dead letter that says why.
    assert_eq!(outbox(&app, "ga4").await["dead"], 1);
    let (_, log) = app.admin_get("/admin/destinations/ga4/log").await;
    let reason = log["dead"][0]["lastError"].as_str().unwrap();
    assert!(reason.contains("72 hours"), "{reason}");
}
