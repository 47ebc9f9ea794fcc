//! Identity resolution and unified profiles over HTTP, on both stores.

use serde_json::{Value, json};
use touchpoint_tests::{Db, SERVER_KEY, WEB_KEY, spawn_app, spawn_app_with, test_config};

crate::on_both_stores!(
    the_seed_story_ends_in_one_profile_holding_everything,
    traits_are_last_write_wins_by_event_time_not_arrival_order,
    two_user_ids_sharing_a_device_stay_two_profiles_and_the_conflict_is_reported,
    a_device_that_keeps_conflicting_leaves_only_the_newest_reports_on_the_profile,
    messages_whose_every_id_is_blocked_leave_a_bounded_report_trail,
    a_group_call_attaches_the_account_and_its_traits,
    a_profile_in_many_accounts_shows_the_first_hundred_with_their_traits,
    deleting_a_profile_erases_it_and_drops_re_sent_data,
    blocked_identifier_values_never_join_profiles,
    processing_resumes_from_the_log_after_a_restart,
    numeric_properties_are_aggregated_per_event_and_survive_a_merge,
    one_batch_stitching_three_devices_ends_in_one_profile_with_the_latest_traits_and_every_count,
);

/// A `report_generated` track with `row_count = rows`, sent as `who` (`userId`/`anonymousId`).
fn report(who: Value, rows: i64) -> Value {
    let mut m = json!({"type": "track", "event": "report_generated",
        "properties": {"report_type": "usage", "row_count": rows}});
    m.as_object_mut()
        .unwrap()
        .extend(who.as_object().unwrap().clone());
    m
}

/// The profile's aggregate of `report_generated.row_count`.
fn row_count_aggregate(profile: &Value) -> &Value {
    let aggs = profile["aggregates"].as_array().unwrap();
    aggs.iter()
        .find(|a| a["event"] == "report_generated" && a["property"] == "row_count")
        .unwrap_or_else(|| panic!("aggregate missing: {aggs:?}"))
}

fn kinds_and_values(profile: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = profile["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap().into(),
                i["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    v.sort();
    v
}

async fn the_seed_story_ends_in_one_profile_holding_everything(db: Db) {
    let app = spawn_app(db).await;
    let anon = format!("anon-{}", uuid::Uuid::new_v4().simple());
    // 1. An anonymous visit.
    app.send_batch(WEB_KEY, vec![json!({"type": "page", "anonymousId": anon, "name": "Pricing",
        "properties": {"path": "/pricing", "url": "https://example.com/pricing", "title": "Pricing"},
        "timestamp": "2026-11-20T10:00:00Z"})]).await;
    app.wait_processed().await;
    let anonymous = app
        .profile("anonymous_id", &anon)
        .await
        .expect("anonymous profile");
    // 2. Sign-up: identify with the same anonymousId, then trial_started.
    app.send_batch(WEB_KEY, vec![
        json!({"type": "identify", "anonymousId": anon, "userId": "user-1001",
               "traits": {"email": "Ada@Example.com", "plan_tier": "free", "user_role": "admin"},
               "timestamp": "2026-11-20T10:05:00Z"}),
        json!({"type": "track", "userId": "user-1001", "event": "trial_started",
               "properties": {"plan_tier": "pro", "trial_days": 14}, "timestamp": "2026-11-20T10:05:01Z"}),
    ]).await;
    // 3. Inside the product (server-side, user id only).
    app.send_batch(SERVER_KEY, vec![
        json!({"type": "track", "userId": "user-1001", "event": "workspace_created",
               "properties": {"workspace_id": "ws-1", "workspace_name": "Acme"}, "timestamp": "2026-11-20T10:06:00Z"}),
        json!({"type": "track", "userId": "user-1001", "event": "teammate_invited",
               "properties": {"workspace_id": "ws-1", "invitee_role": "member"}, "timestamp": "2026-11-20T10:07:00Z"}),
        json!({"type": "track", "userId": "user-1001", "event": "teammate_invited",
               "properties": {"workspace_id": "ws-1", "invitee_role": "admin"}, "timestamp": "2026-11-20T10:08:00Z"}),
    ]).await;
    app.wait_processed().await;

    let by_user = app
        .profile("user_id", "user-1001")
        .await
        .expect("profile by user id");
    let by_anon = app
        .profile("anonymous_id", &anon)
        .await
        .expect("profile by anonymous id");
    let by_email = app
        .profile("email", "ada@example.com")
        .await
        .expect("profile by email");
    assert_eq!(
        by_user["id"], by_anon["id"],
        "anonymous browsing is stitched into the profile"
    );
    assert_eq!(by_user["id"], by_email["id"]);
    if by_user["id"] != anonymous["id"] {
        // A partitioned log orders messages per device only: the userId's own partition may
        // have made a profile for it before the identify was processed. Then the anonymous
        // profile was folded into that one, and its id resolves there.
        let merged_into = app
            .sql_text(&format!(
                "SELECT merged_into FROM profiles WHERE id = '{}'",
                anonymous["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(
            Some(by_user["id"].as_str().unwrap()),
            merged_into.as_deref(),
            "the anonymous profile became the known one"
        );
        assert_eq!(db, Db::Postgres, "SQLite processes the log in order");
    }
    assert_eq!(
        kinds_and_values(&by_user),
        vec![
            ("anonymous_id".into(), anon.clone()),
            ("email".into(), "ada@example.com".into()),
            ("user_id".into(), "user-1001".into())
        ]
    );
    assert_eq!(by_user["traits"]["plan_tier"], "free");
    let computed = &by_user["computed"];
    assert_eq!(computed["messages_total"], 6);
    assert_eq!(computed["events"]["teammate_invited"]["total"], 2);
    assert_eq!(computed["page_views"]["total"], 1);
    assert_eq!(computed["journey_stage"], "Expansion");

    let id = by_user["id"].as_str().unwrap();
    let (status, page) = app
        .admin_get(&format!("/admin/profiles/{id}/timeline?limit=4"))
        .await;
    assert_eq!(status, 200);
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert_eq!(
        items[0]["message"]["event"], "teammate_invited",
        "newest first"
    );
    let next = page["next"].as_str().expect("a next cursor");
    let (_, rest) = app
        .admin_get(&format!(
            "/admin/profiles/{id}/timeline?limit=4&before={next}"
        ))
        .await;
    let rest = rest["items"].as_array().unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(
        rest[1]["message"]["type"], "page",
        "the anonymous page view is in the timeline"
    );
}

async fn traits_are_last_write_wins_by_event_time_not_arrival_order(db: Db) {
    let app = spawn_app(db).await;
    app.send_batch(SERVER_KEY, vec![json!({"type": "identify", "userId": "lww-1",
        "traits": {"plan_tier": "business", "seats_provisioned": 5}, "timestamp": "2026-11-21T12:00:00Z"})]).await;
    // Arrives later but happened earlier: must not overwrite.
    app.send_batch(SERVER_KEY, vec![json!({"type": "identify", "userId": "lww-1",
        "traits": {"plan_tier": "free", "user_role": "member"}, "timestamp": "2026-11-21T09:00:00Z"})]).await;
    app.wait_processed().await;
    let p = app.profile("user_id", "lww-1").await.unwrap();
    assert_eq!(p["traits"]["plan_tier"], "business");
    assert_eq!(
        p["traits"]["user_role"], "member",
        "older writes still fill unset traits"
    );
}

async fn two_user_ids_sharing_a_device_stay_two_profiles_and_the_conflict_is_reported(db: Db) {
    let app = spawn_app(db).await;
    app.send_batch(
        WEB_KEY,
        vec![
            json!({"type": "identify", "userId": "alice", "anonymousId": "shared-laptop"}),
            json!({"type": "identify", "userId": "bob", "anonymousId": "shared-laptop"}),
        ],
    )
    .await;
    app.wait_processed().await;
    let alice = app.profile("user_id", "alice").await.unwrap();
    let bob = app.profile("user_id", "bob").await.unwrap();
    assert_ne!(alice["id"], bob["id"], "two user ids never merge");
    assert_eq!(
        app.profile("anonymous_id", "shared-laptop").await.unwrap()["id"],
        alice["id"]
    );
    let reports = bob["reports"].as_array().unwrap();
    assert_eq!(reports[0]["kind"], "merge_refused", "{reports:?}");
    assert_eq!(reports[0]["id_value"], "shared-laptop");
    assert!(bob["merges"].as_array().unwrap().is_empty());
}

async fn a_device_that_keeps_conflicting_leaves_only_the_newest_reports_on_the_profile(db: Db) {
    let app = spawn_app(db).await;
    let cap = touchpoint_core::profiles::store::MAX_REPORTS_PER_PROFILE as usize;
    app.send_batch(
        WEB_KEY,
        vec![json!({"type": "identify", "userId": "carol", "anonymousId": "kiosk"})],
    )
    .await;
    // Every later identify from the kiosk as dave is a refused merge, reported each time.
    for round in 0..3 {
        let batch: Vec<Value> = (0..50)
            .map(|i| {
                json!({"type": "identify", "userId": "dave", "anonymousId": "kiosk",
                            "messageId": format!("kiosk-{round}-{i}")})
            })
            .collect();
        app.send_batch(WEB_KEY, batch).await;
        app.wait_processed().await;
    }
    let dave = app.profile("user_id", "dave").await.unwrap();
    let reports = dave["reports"].as_array().unwrap();
    assert_eq!(reports.len(), cap, "the profile shows the newest reports");
    assert!(reports.iter().all(|r| r["kind"] == "merge_refused"));
    let seqs: Vec<i64> = reports.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] <= w[1]),
        "oldest first: {seqs:?}"
    );
    let pool = touchpoint_tests::any_pool(&app.database_url).await;
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM identity_reports")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_eq!(stored as usize, cap, "and no more are stored");
}

async fn messages_whose_every_id_is_blocked_leave_a_bounded_report_trail(db: Db) {
    let app = spawn_app(db).await;
    let cap = touchpoint_core::profiles::store::MAX_UNATTACHED_REPORTS as usize;
    // `null` is a blocked value in the plan: each such message reaches no profile and is reported.
    let total = cap + 300;
    for chunk in 0..total.div_ceil(1000) {
        let batch: Vec<Value> = (chunk * 1000..((chunk + 1) * 1000).min(total))
            .map(|i| {
                json!({"type": "track", "event": "feature_toggled", "userId": "null",
                            "messageId": format!("blocked-{i}"),
                            "properties": {"feature_name": "x", "new_status": true}})
            })
            .collect();
        app.send_batch(SERVER_KEY, batch).await;
    }
    app.wait_processed().await;
    let pool = touchpoint_tests::any_pool(&app.database_url).await;
    let (stored, newest): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), MAX(seq) FROM identity_reports WHERE profile_id IS NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    let head: i64 = sqlx::query_scalar("SELECT MAX(seq) FROM messages")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_eq!(stored as usize, cap, "the newest reports are kept, no more");
    assert_eq!(newest, head, "the last message's report is among them");
}

async fn a_group_call_attaches_the_account_and_its_traits(db: Db) {
    let app = spawn_app(db).await;
    app.send_batch(SERVER_KEY, vec![
        json!({"type": "group", "userId": "g-user", "groupId": "acct-9",
               "traits": {"seats_provisioned": 2, "company": "Acme"}, "timestamp": "2026-11-21T10:00:00Z"}),
        json!({"type": "group", "userId": "g-user", "groupId": "acct-9",
               "traits": {"seats_provisioned": 4}, "timestamp": "2026-11-21T11:00:00Z"}),
    ]).await;
    app.wait_processed().await;
    let p = app.profile("user_id", "g-user").await.unwrap();
    assert_eq!(p["accounts"][0]["groupId"], "acct-9");
    assert_eq!(p["accounts"][0]["traits"]["seats_provisioned"], 4);
    assert_eq!(p["accounts"][0]["traits"]["company"], "Acme");
}

async fn a_profile_in_many_accounts_shows_the_first_hundred_with_their_traits(db: Db) {
    let app = spawn_app(db).await;
    let cap = touchpoint_core::profiles::store::MAX_ACCOUNTS_SHOWN as usize;
    let groups: Vec<Value> = (0..cap + 5)
        .map(|i| {
            json!({"type": "group", "userId": "many-accounts", "groupId": format!("acct-{i:03}"),
                        "traits": {"seats_provisioned": i}})
        })
        .collect();
    app.send_batch(SERVER_KEY, groups).await;
    app.wait_processed().await;
    let p = app.profile("user_id", "many-accounts").await.unwrap();
    let accounts = p["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), cap);
    assert_eq!(accounts[0]["groupId"], "acct-000");
    assert_eq!(accounts[7]["traits"]["seats_provisioned"], 7);
    assert_eq!(accounts[cap - 1]["groupId"], format!("acct-{:03}", cap - 1));
}

async fn deleting_a_profile_erases_it_and_drops_re_sent_data(db: Db) {
    let app = spawn_app(db).await;
    let msg = |id: &str| {
        json!({"type": "identify", "messageId": id, "userId": "forget-me", "anonymousId": "fm-device",
        "traits": {"email": "forget@example.com"}})
    };
    app.send_batch(WEB_KEY, vec![msg("d-1")]).await;
    app.wait_processed().await;
    let p = app.profile("user_id", "forget-me").await.unwrap();
    let id = p["id"].as_str().unwrap();
    let r = app
        .client
        .delete(format!("{}/admin/profiles/{id}", app.address))
        .bearer_auth(touchpoint_tests::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        202,
        "accepted: the erasure is forwarded as a regulation"
    );
    assert!(app.profile("user_id", "forget-me").await.is_none());
    assert!(
        app.stored("d-1").await.is_empty(),
        "the stored message is erased"
    );
    // Re-sent data carrying any of its identifiers is dropped.
    app.send_batch(
        WEB_KEY,
        vec![
            json!({"type": "track", "messageId": "d-2", "anonymousId": "fm-device",
        "event": "feature_toggled", "properties": {"feature_name": "x", "new_status": true}}),
        ],
    )
    .await;
    app.wait_processed().await;
    assert!(app.profile("anonymous_id", "fm-device").await.is_none());
    assert!(app.stored("d-2").await.is_empty());
}

async fn blocked_identifier_values_never_join_profiles(db: Db) {
    let app = spawn_app(db).await;
    app.send_batch(
        WEB_KEY,
        vec![
            json!({"type": "identify", "userId": "null", "anonymousId": "dev-a"}),
            json!({"type": "identify", "userId": "null", "anonymousId": "dev-b"}),
        ],
    )
    .await;
    app.wait_processed().await;
    let a = app.profile("anonymous_id", "dev-a").await.unwrap();
    let b = app.profile("anonymous_id", "dev-b").await.unwrap();
    assert_ne!(
        a["id"], b["id"],
        "\"null\" did not glue two people together"
    );
    assert!(app.profile("user_id", "null").await.is_none());
}

async fn processing_resumes_from_the_log_after_a_restart(db: Db) {
    let (url, tmp) = touchpoint_tests::fresh_database(db).await;
    let mut config = test_config(url.clone());
    config.process = false;
    let mut ingest_only = spawn_app_with(config, tmp).await;
    ingest_only
        .send_batch(
            WEB_KEY,
            vec![
                json!({"type": "page", "anonymousId": "resume-a"}),
                json!({"type": "identify", "anonymousId": "resume-a", "userId": "resume-u"}),
            ],
        )
        .await;
    assert!(
        ingest_only.profile("user_id", "resume-u").await.is_none(),
        "not processed yet"
    );
    let tmp = ingest_only.tmp.take();
    drop(ingest_only);
    let processing = spawn_app_with(test_config(url), tmp).await;
    processing.wait_processed().await;
    let p = processing
        .profile("user_id", "resume-u")
        .await
        .expect("processed after restart");
    assert_eq!(p["computed"]["messages_total"], 2);
}

async fn numeric_properties_are_aggregated_per_event_and_survive_a_merge(db: Db) {
    let app = spawn_app(db).await;
    // Two reports while anonymous, one as the known user on another device, then the stitch.
    app.send_batch(
        WEB_KEY,
        vec![
            report(json!({"anonymousId": "agg-device"}), 10),
            report(json!({"anonymousId": "agg-device"}), 30),
            report(json!({"userId": "agg-user"}), 5),
            json!({"type": "identify", "userId": "agg-user", "anonymousId": "agg-device"}),
        ],
    )
    .await;
    app.wait_processed().await;
    let p = app.profile("user_id", "agg-user").await.unwrap();
    let rows = row_count_aggregate(&p);
    assert_eq!(rows["count"], 3);
    assert_eq!(rows["sum"], 45.0);
    assert_eq!(rows["min"], 5.0);
    assert_eq!(rows["max"], 30.0);
}

async fn one_batch_stitching_three_devices_ends_in_one_profile_with_the_latest_traits_and_every_count(
    db: Db,
) {
    let app = spawn_app(db).await;
    // Three profiles: a device known by its email, another device, and the user on the server,
    // each with a plan (at different times) and a report.
    app.send_batch(
        WEB_KEY,
        vec![
            json!({"type": "identify", "anonymousId": "chain-1", "timestamp": "2026-11-21T09:00:00Z",
                "traits": {"plan_tier": "free", "email": "chain@example.com"}}),
            report(json!({"anonymousId": "chain-1"}), 1),
            json!({"type": "identify", "anonymousId": "chain-2", "timestamp": "2026-11-21T12:00:00Z",
                "traits": {"plan_tier": "business"}}),
            report(json!({"anonymousId": "chain-2"}), 10),
        ],
    )
    .await;
    app.send_batch(
        SERVER_KEY,
        vec![
            json!({"type": "identify", "userId": "chain-user", "timestamp": "2026-11-21T10:00:00Z",
                "traits": {"plan_tier": "pro", "user_role": "admin"}}),
            report(json!({"userId": "chain-user"}), 100),
        ],
    )
    .await;
    app.wait_processed().await;
    // One batch, so one step of the profiles stage: the second device's email folds it into the
    // first device's profile, then the user folds that one into theirs: a chain of merges.
    app.send_batch(
        WEB_KEY,
        vec![
            json!({"type": "identify", "anonymousId": "chain-2", "traits": {"email": "chain@example.com"}}),
            json!({"type": "identify", "anonymousId": "chain-1", "userId": "chain-user"}),
        ],
    )
    .await;
    app.wait_processed().await;

    let p = app.profile("user_id", "chain-user").await.unwrap();
    for anon in ["chain-1", "chain-2"] {
        assert_eq!(
            app.profile("anonymous_id", anon).await.unwrap()["id"],
            p["id"],
            "{anon} joined the user's profile"
        );
    }
    assert_eq!(
        app.sql_number("SELECT count(*) FROM merges").await,
        2,
        "the second device into the first, then the first into the user's"
    );
    assert_eq!(
        p["traits"]["plan_tier"], "business",
        "the latest write wins"
    );
    assert_eq!(
        p["traits"]["user_role"], "admin",
        "a trait of one profile only is kept"
    );
    let rows = row_count_aggregate(&p);
    assert_eq!(rows["count"], 3);
    assert_eq!(rows["sum"], 111.0);
    assert_eq!(rows["min"], 1.0);
    assert_eq!(rows["max"], 100.0);
    let live = app
        .sql_number("SELECT count(*) FROM profiles WHERE merged_into IS NULL")
        .await;
    assert_eq!(live, 1, "the merged-away profiles point at the winner");
    let on_losers = app
        .sql_number(
            "SELECT (SELECT count(*) FROM identities i JOIN profiles p ON p.id = i.profile_id \
             WHERE p.merged_into IS NOT NULL) \
             + (SELECT count(*) FROM profile_messages m JOIN profiles p ON p.id = m.profile_id \
             WHERE p.merged_into IS NOT NULL) \
             + (SELECT count(*) FROM profile_traits t JOIN profiles p ON p.id = t.profile_id \
             WHERE p.merged_into IS NOT NULL)",
        )
        .await;
    assert_eq!(on_losers, 0, "nothing is left on a merged-away profile");
}
