//! Audiences over HTTP on both stores: realtime entry/exit, the seed examples, preview, backfill,
//! the admin API and the entered/exited feed.

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use touchpoint_core::pipeline::{ClockRef, ManualClock};
use touchpoint_tests::{
    ADMIN_TOKEN, Db, SERVER_KEY, TestApp, WEB_KEY, eventually, fresh_database, spawn_app,
    spawn_app_with, test_config,
};

crate::on_both_stores!(
    the_pql_is_entered_when_seats_exceed_three_and_an_integration_is_connected,
    free_users_who_invited_two_teammates_without_an_integration_are_found,
    a_new_audience_is_previewed_then_backfilled_over_existing_profiles,
    membership_is_visible_on_the_profile_with_its_history,
    bad_conditions_are_refused_with_the_position,
    a_cycle_through_stored_audiences_is_refused_and_the_audiences_keep_updating,
    a_membership_ends_on_schedule_when_its_time_window_expires,
    pro_users_without_activity_for_seven_days_are_dormant,
    a_member_merged_into_another_profile_leaves_quietly_and_the_winner_is_evaluated,
);

fn now_iso(offset_days: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(offset_days))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn events_for(app: &TestApp, profile: &str) -> Vec<Value> {
    let (_, feed) = app.admin_get("/admin/audience-events?limit=1000").await;
    feed.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["profile_id"] == profile)
        .cloned()
        .collect()
}

/// Waits (bounded) until the audience stage has caught up with the profiles stage.
async fn settle(app: &TestApp) {
    app.wait_processed().await;
    for _ in 0..200 {
        let (_, p) = app.admin_get("/admin/pipeline").await;
        if p["audiencesCursor"].as_i64() >= p["profilesCursor"].as_i64() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the audience stage did not catch up");
}

/// The id of the profile holding identifier `kind:value`.
async fn profile_id(app: &TestApp, kind: &str, value: &str) -> String {
    app.profile(kind, value).await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn members(app: &TestApp, audience: &str) -> Vec<String> {
    let (_, m) = app
        .admin_get(&format!("/admin/audiences/{audience}/members"))
        .await;
    m["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["profile_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn the_pql_is_entered_when_seats_exceed_three_and_an_integration_is_connected(db: Db) {
    let app = spawn_app(db).await;
    app.send_batch(SERVER_KEY, vec![
        json!({"type": "identify", "userId": "pql-1", "traits": {"plan_tier": "pro"}}),
        json!({"type": "group", "userId": "pql-1", "groupId": "acme", "traits": {"seats_provisioned": 2}}),
        json!({"type": "track", "userId": "pql-1", "event": "integration_connected",
               "properties": {"integration_name": "slack"}}),
    ]).await;
    settle(&app).await;
    let profile = app.profile("user_id", "pql-1").await.unwrap();
    let id = profile["id"].as_str().unwrap().to_owned();
    assert!(
        members(&app, "product_qualified_lead").await.is_empty(),
        "2 seats is not enough"
    );

    app.send_batch(
        SERVER_KEY,
        vec![
            json!({"type": "group", "userId": "pql-1", "groupId": "acme",
        "traits": {"seats_provisioned": 5}}),
        ],
    )
    .await;
    settle(&app).await;
    assert_eq!(
        members(&app, "product_qualified_lead").await,
        vec![id.clone()]
    );
    let feed = events_for(&app, &id).await;
    let entered: Vec<&Value> = feed
        .iter()
        .filter(|e| e["audience"] == "product_qualified_lead")
        .collect();
    assert_eq!(entered.len(), 1);
    assert_eq!(entered[0]["kind"], "audience_entered");
    assert_eq!(entered[0]["reason"], "message");

    // Seats drop again: the profile exits, with an audience_exited event.
    app.send_batch(
        SERVER_KEY,
        vec![
            json!({"type": "group", "userId": "pql-1", "groupId": "acme",
        "traits": {"seats_provisioned": 3}}),
        ],
    )
    .await;
    settle(&app).await;
    assert!(members(&app, "product_qualified_lead").await.is_empty());
    let kinds: Vec<String> = events_for(&app, &id)
        .await
        .iter()
        .filter(|e| e["audience"] == "product_qualified_lead")
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, vec!["audience_entered", "audience_exited"]);
}

async fn free_users_who_invited_two_teammates_without_an_integration_are_found(db: Db) {
    let app = spawn_app(db).await;
    let invite = |user: &str| {
        json!({"type": "track", "userId": user, "event": "teammate_invited",
        "properties": {"workspace_id": "w", "invitee_role": "member"}})
    };
    app.send_batch(WEB_KEY, vec![
        json!({"type": "identify", "userId": "free-a", "traits": {"plan_tier": "free"}}),
        invite("free-a"), invite("free-a"),
        json!({"type": "identify", "userId": "free-b", "traits": {"plan_tier": "free"}}),
        invite("free-b"),
        json!({"type": "identify", "userId": "free-c", "traits": {"plan_tier": "free"}}),
        invite("free-c"), invite("free-c"),
        json!({"type": "track", "userId": "free-c", "event": "integration_connected", "properties": {"integration_name": "github"}}),
        json!({"type": "identify", "userId": "pro-d", "traits": {"plan_tier": "pro"}}),
        invite("pro-d"), invite("pro-d"),
    ]).await;
    settle(&app).await;
    let a = profile_id(&app, "user_id", "free-a").await;
    assert_eq!(
        members(&app, "free_inviters_without_integration").await,
        vec![a]
    );
}

async fn a_new_audience_is_previewed_then_backfilled_over_existing_profiles(db: Db) {
    let app = spawn_app(db).await;
    for i in 0..6 {
        let tier = if i % 2 == 0 { "business" } else { "free" };
        app.send_batch(
            SERVER_KEY,
            vec![json!({"type": "identify", "userId": format!("bf-{i}"),
            "traits": {"plan_tier": tier, "user_role": "admin"}, "timestamp": now_iso(-1)})],
        )
        .await;
    }
    app.send_batch(
        SERVER_KEY,
        vec![
            json!({"type": "track", "userId": "bf-0", "event": "report_generated",
        "properties": {"report_type": "usage", "row_count": 10}}),
        ],
    )
    .await;
    settle(&app).await;
    let condition = "plan_tier = 'business' AND NOT PERFORMED report_generated WITHIN 7 DAYS";
    let r = app
        .client
        .post(format!("{}/admin/audiences/preview", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"condition": condition}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let preview: Value = r.json().await.unwrap();
    assert_eq!(preview["count"], 2, "{preview}");
    assert_eq!(preview["of"], 6);
    let (_, before) = app.admin_get("/admin/audiences").await;
    let r = app
        .client
        .post(format!("{}/admin/audiences", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"id": "quiet_business", "name": "Quiet business accounts", "condition": condition}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let mut done = false;
    for _ in 0..200 {
        let (_, a) = app.admin_get("/admin/audiences/quiet_business").await;
        if a["audience"]["backfilled_at"].is_number() {
            assert_eq!(a["members"], 2);
            assert_eq!(a["audience"]["backfill_done"], 6);
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(done, "backfill finished");
    let (_, after) = app.admin_get("/admin/audiences").await;
    assert_eq!(
        after.as_array().unwrap().len(),
        before.as_array().unwrap().len() + 1
    );
}

async fn membership_is_visible_on_the_profile_with_its_history(db: Db) {
    let app = spawn_app(db).await;
    app.send_batch(SERVER_KEY, vec![
        json!({"type": "identify", "userId": "hist-1", "traits": {"plan_tier": "free"}}),
        json!({"type": "track", "userId": "hist-1", "event": "teammate_invited", "properties": {"workspace_id": "w", "invitee_role": "admin"}}),
        json!({"type": "track", "userId": "hist-1", "event": "teammate_invited", "properties": {"workspace_id": "w", "invitee_role": "admin"}}),
    ]).await;
    settle(&app).await;
    app.send_batch(
        SERVER_KEY,
        vec![
            json!({"type": "track", "userId": "hist-1", "event": "integration_connected",
        "properties": {"integration_name": "jira"}}),
        ],
    )
    .await;
    settle(&app).await;
    let p = app.profile("user_id", "hist-1").await.unwrap();
    let history = p["audiences"].as_array().expect("audiences on the profile");
    let h = history
        .iter()
        .find(|m| m["audience"] == "free_inviters_without_integration")
        .expect("membership history");
    assert!(h["entered_at"].is_number());
    assert!(
        h["exited_at"].is_number(),
        "left after connecting an integration: {h}"
    );
}

async fn bad_conditions_are_refused_with_the_position(db: Db) {
    let app = spawn_app(db).await;
    let r = app
        .client
        .post(format!("{}/admin/audiences", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"id": "broken", "condition": "plan_tier = 'free' AND PERFORMED x AT LEAST two TIMES"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("column 45"),
        "{body}"
    );
    let r = app
        .client
        .post(format!("{}/admin/audiences", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"id": "dangling", "condition": {"in_audience": "nope"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = app
        .client
        .post(format!("{}/admin/audiences", app.address))
        .bearer_auth(WEB_KEY)
        .json(&json!({"id": "x", "condition": "plan_tier = 'pro'"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "write keys cannot define audiences");
}

async fn a_cycle_through_stored_audiences_is_refused_and_the_audiences_keep_updating(db: Db) {
    let app = spawn_app(db).await;
    let define = |id: &'static str, condition: &'static str| {
        let app = &app;
        async move {
            let r = app
                .client
                .post(format!("{}/admin/audiences", app.address))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({"id": id, "condition": condition}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(define("cyc_a", "plan_tier = 'business'").await.0, 201);
    assert_eq!(define("cyc_b", "IN AUDIENCE cyc_a").await.0, 201);
    assert_eq!(define("cyc_c", "IN AUDIENCE cyc_b").await.0, 201);
    let (status, body) = define("cyc_a", "IN AUDIENCE cyc_c").await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("cyc_a → cyc_c → cyc_b → cyc_a"), "{body}");
    let (_, a) = app.admin_get("/admin/audiences/cyc_a").await;
    assert_eq!(a["audience"]["condition"], "plan_tier = 'business'", "{a}");

    app.send_batch(
        SERVER_KEY,
        vec![json!({"type": "identify", "userId": "cyc-1", "traits": {"plan_tier": "business"}})],
    )
    .await;
    settle(&app).await;
    let id = profile_id(&app, "user_id", "cyc-1").await;
    for audience in ["cyc_a", "cyc_b", "cyc_c"] {
        assert_eq!(
            members(&app, audience).await,
            vec![id.clone()],
            "{audience}"
        );
    }
}

async fn a_membership_ends_on_schedule_when_its_time_window_expires(db: Db) {
    // The service reads a clock the test moves, so the window ends when the test says, not after
    // a wait on the wall clock.
    let now = chrono::Utc::now();
    let clock = Arc::new(ManualClock::at(now.timestamp_millis()));
    let (url, tmp) = fresh_database(db).await;
    let mut config = test_config(url);
    config.clock = ClockRef(clock.clone());
    let app = spawn_app_with(config, tmp).await;
    // The integration was connected 30 days ago minus an hour: it leaves the window in an hour.
    let almost_expired = (now - chrono::Duration::days(30) + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    app.send_batch(SERVER_KEY, vec![
        json!({"type": "group", "userId": "win-1", "groupId": "g-win", "traits": {"seats_provisioned": 8}}),
        json!({"type": "track", "userId": "win-1", "event": "integration_connected",
               "properties": {"integration_name": "slack"}, "timestamp": almost_expired}),
    ]).await;
    settle(&app).await;
    let id = profile_id(&app, "user_id", "win-1").await;
    assert_eq!(
        members(&app, "product_qualified_lead").await,
        vec![id.clone()]
    );
    // Two hours pass. No new message arrives: only the window scheduler can notice.
    clock.advance(Duration::from_secs(2 * 3600));
    eventually(30, "the scheduler ends the membership", async || {
        events_for(&app, &id)
            .await
            .iter()
            .any(|e| e["kind"] == "audience_exited" && e["audience"] == "product_qualified_lead")
    })
    .await;
    let exited = events_for(&app, &id)
        .await
        .into_iter()
        .find(|e| e["kind"] == "audience_exited")
        .unwrap();
    assert_eq!(exited["reason"], "window");
    assert!(members(&app, "product_qualified_lead").await.is_empty());
}

async fn pro_users_without_activity_for_seven_days_are_dormant(db: Db) {
    let app = spawn_app(db).await;
    app.send_batch(SERVER_KEY, vec![
        json!({"type": "identify", "userId": "dormant", "traits": {"plan_tier": "pro"}, "timestamp": now_iso(-20)}),
        json!({"type": "page", "userId": "dormant", "name": "Home", "timestamp": now_iso(-8)}),
        json!({"type": "identify", "userId": "active", "traits": {"plan_tier": "pro"}, "timestamp": now_iso(-20)}),
        json!({"type": "page", "userId": "active", "name": "Home", "timestamp": now_iso(-1)}),
    ]).await;
    settle(&app).await;
    let dormant = profile_id(&app, "user_id", "dormant").await;
    assert_eq!(members(&app, "dormant_pro_users").await, vec![dormant]);
}

async fn a_member_merged_into_another_profile_leaves_quietly_and_the_winner_is_evaluated(db: Db) {
    let app = spawn_app(db).await;
    let invite = json!({"type": "track", "event": "teammate_invited", "anonymousId": "merge-dev",
        "properties": {"workspace_id": "w", "invitee_role": "member"}});
    // An anonymous free user who invited two teammates is a member; the server knows the user.
    app.send_batch(
        WEB_KEY,
        vec![
            json!({"type": "identify", "anonymousId": "merge-dev", "traits": {"plan_tier": "free"}}),
            invite.clone(),
            invite,
        ],
    )
    .await;
    app.send_batch(
        SERVER_KEY,
        vec![json!({"type": "identify", "userId": "merge-user", "traits": {"user_role": "owner"}})],
    )
    .await;
    settle(&app).await;
    let device = profile_id(&app, "anonymous_id", "merge-dev").await;
    assert_eq!(
        members(&app, "free_inviters_without_integration").await,
        vec![device.clone()]
    );

    // The user logs in on the device: the device's profile merges into the user's.
    app.send_batch(
        WEB_KEY,
        vec![json!({"type": "identify", "anonymousId": "merge-dev", "userId": "merge-user"})],
    )
    .await;
    settle(&app).await;
    let user = profile_id(&app, "user_id", "merge-user").await;
    assert_ne!(user, device, "the user's profile won the merge");
    assert_eq!(
        members(&app, "free_inviters_without_integration").await,
        vec![user.clone()],
        "the winner holds the plan and the invites now"
    );
    let left: Vec<String> = events_for(&app, &device)
        .await
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        left,
        ["audience_entered"],
        "a merged-away profile leaves without an audience_exited"
    );
    assert_eq!(
        app.sql_number(&format!(
            "SELECT count(*) FROM audience_history WHERE profile_id = '{device}' AND exited_at IS NULL"
        ))
        .await,
        0,
        "its membership is closed in the history"
    );
}
