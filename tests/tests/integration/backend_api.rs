//! The API for backends over HTTP, on both stores: scoped tokens (shown once, hashed, revocable,
//! last-used), every `/v1` and Segment-compatible route with the right scope (200), a wrong one
//! (403) and none (401), stable cursors, ETags, per-token rate limits, and the OpenAPI document
//! (committed, valid, and matching the routes).

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use std::time::Duration;
use touchpoint_tests::{
    ADMIN_TOKEN, Db, SERVER_KEY, TestApp, WEB_KEY, fresh_database, repo_root, spawn_app,
    spawn_app_with, test_config,
};

crate::on_both_stores!(
    tokens_are_shown_once_listed_without_the_secret_revoked_and_record_their_last_use,
    every_route_answers_its_scope_with_200_a_wrong_scope_with_403_and_no_token_with_401,
    segment_profile_api_routes_answer_like_segments_documented_examples,
    member_pages_have_stable_cursors_while_members_come_and_go,
    event_pages_are_filtered_by_name_type_and_time_and_never_repeat,
    answers_carry_an_etag_and_are_304_until_the_profile_changes,
    each_token_has_its_own_rate_limit_answered_429_with_retry_after,
    every_documented_route_answers_through_the_real_router,
);

/// How a request authenticates.
#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
    /// HTTP Basic with the token as the username and an empty password (`curl -u token:`).
    Basic(&'a str),
}

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    auth: Auth<'_>,
    headers: &[(&str, &str)],
) -> (u16, HeaderMap, Value) {
    let mut r = app.client.request(method, format!("{}{path}", app.address));
    r = match auth {
        Auth::None => r,
        Auth::Bearer(t) => r.bearer_auth(t),
        Auth::Basic(t) => r.basic_auth(t, Some("")),
    };
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.expect("request");
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        h,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

async fn get(app: &TestApp, path: &str, auth: Auth<'_>) -> (u16, Value) {
    let (s, _, v) = call(app, reqwest::Method::GET, path, auth, &[]).await;
    (s, v)
}

/// Creates a token with the admin token; returns (id, token).
async fn token(app: &TestApp, name: &str, scopes: &[&str]) -> (i64, String) {
    let r = app
        .client
        .post(format!("{}/admin/tokens", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": name, "scopes": scopes}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    (
        v["id"].as_i64().unwrap(),
        v["token"].as_str().unwrap().to_owned(),
    )
}

/// Waits until profiles and audiences have processed the whole log.
async fn settle(app: &TestApp) {
    app.wait_processed().await;
    for _ in 0..400 {
        let (_, p) = app.admin_get("/admin/pipeline").await;
        if p["audiencesCursor"].as_i64() >= p["profilesCursor"].as_i64() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the audience stage did not catch up");
}

/// One user with traits, a page view, track events, an account, and membership of `pro_users`;
/// a second user outside it.
async fn seed(app: &TestApp) {
    let r = app
        .client
        .post(format!("{}/admin/audiences", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"id": "pro_users", "name": "Pro users", "condition": "plan_tier = 'pro'"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    app.send_batch(WEB_KEY, vec![
        json!({"type": "page", "anonymousId": "a-1", "name": "Pricing", "messageId": "m-page",
               "properties": {"path": "/pricing", "url": "https://example.com/pricing", "title": "Pricing"},
               "timestamp": "2026-11-20T09:00:00Z"}),
        json!({"type": "identify", "anonymousId": "a-1", "userId": "u-1", "messageId": "m-identify",
               "traits": {"email": "Ada@Example.com", "plan_tier": "pro", "user_role": "admin"},
               "timestamp": "2026-11-20T10:00:00Z"}),
    ]).await;
    // Processed before the server's messages: a partitioned log orders messages per device only,
    // and the identify must be the message that brought `u-1` (its `first_message_id`).
    settle(app).await;
    app.send_batch(SERVER_KEY, vec![
        json!({"type": "track", "userId": "u-1", "event": "trial_started", "messageId": "m-trial",
               "properties": {"plan_tier": "pro", "trial_days": 14}, "timestamp": "2026-11-20T10:01:00Z"}),
        json!({"type": "track", "userId": "u-1", "event": "workspace_created", "messageId": "m-ws",
               "properties": {"workspace_id": "ws-1", "workspace_name": "Acme"}, "timestamp": "2026-11-20T10:02:00Z"}),
        json!({"type": "track", "userId": "u-1", "event": "teammate_invited", "messageId": "m-inv-1",
               "properties": {"workspace_id": "ws-1", "invitee_role": "member"}, "timestamp": "2026-11-20T10:03:00Z"}),
        json!({"type": "track", "userId": "u-1", "event": "teammate_invited", "messageId": "m-inv-2",
               "properties": {"workspace_id": "ws-1", "invitee_role": "admin"}, "timestamp": "2026-11-20T10:04:00Z"}),
        json!({"type": "group", "userId": "u-1", "groupId": "acct-1", "messageId": "m-group",
               "traits": {"seats_provisioned": 5, "company": "Acme"}, "timestamp": "2026-11-20T10:05:00Z"}),
        json!({"type": "identify", "userId": "u-2", "traits": {"plan_tier": "free"},
               "timestamp": "2026-11-20T10:06:00Z"}),
    ]).await;
    settle(app).await;
}

async fn tokens_are_shown_once_listed_without_the_secret_revoked_and_record_their_last_use(db: Db) {
    let app = spawn_app(db).await;
    let r = app
        .client
        .post(format!("{}/admin/tokens", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "personalisation/production", "scopes": ["profiles:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let secret = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_i64().unwrap();
    assert!(
        secret.starts_with("tp_") && secret.len() == 67,
        "{secret:?}"
    );
    assert_eq!(created["prefix"], json!(&secret[..11]));
    assert_eq!(created["scopes"], json!(["profiles:read"]));
    assert_eq!(created["lastUsedAt"], Value::Null);

    // Listing never shows the token, and only its SHA-256 is stored.
    let list = app
        .client
        .get(format!("{}/admin/tokens", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!list.contains(&secret[11..]), "the listing leaks the token");
    let listed: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(listed[0]["id"], id);
    assert_eq!(listed[0]["name"], "personalisation/production");
    assert!(listed[0].get("token").is_none());
    let stored = app
        .sql_number(&format!(
            "SELECT COUNT(*) FROM api_tokens WHERE token_hash = '{}'",
            touchpoint_core::backend_api::tokens::hash(&secret)
        ))
        .await;
    assert_eq!(stored, 1);
    let in_clear = app
        .sql_number(&format!(
            "SELECT COUNT(*) FROM api_tokens WHERE token_hash = '{secret}' OR prefix = '{secret}'"
        ))
        .await;
    assert_eq!(in_clear, 0);

    // Using it records the last use.
    let (s, _) = get(&app, "/v1/audiences", Auth::Bearer(&secret)).await;
    assert_eq!(s, 403, "profiles:read does not grant audiences:read");
    let (s, _) = get(&app, "/v1/profiles/user_id:nobody", Auth::Bearer(&secret)).await;
    assert_eq!(s, 404);
    let (_, listed) = app.admin_get("/admin/tokens").await;
    assert!(listed[0]["lastUsedAt"].as_i64().unwrap() >= created["createdAt"].as_i64().unwrap());

    // Bad requests, and who may manage tokens.
    for body in [
        json!({"name": "x", "scopes": ["profiles:write"]}),
        json!({"name": "x", "scopes": []}),
        json!({"name": " ", "scopes": ["admin"]}),
    ] {
        let r = app
            .client
            .post(format!("{}/admin/tokens", app.address))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
    }
    let (s, _) = get(&app, "/admin/tokens", Auth::None).await;
    assert_eq!(s, 401);
    let (s, _) = get(&app, "/admin/tokens", Auth::Bearer(&secret)).await;
    assert_eq!(s, 403);
    let (_, admin_scoped) = token(&app, "ops", &["admin"]).await;
    let (s, _, body) = call(
        &app,
        reqwest::Method::POST,
        "/admin/tokens",
        Auth::Bearer(&admin_scoped),
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(
        s, 400,
        "an empty body is refused, after authorisation: {body}"
    );
    let (s, listed) = get(&app, "/admin/tokens", Auth::Bearer(&admin_scoped)).await;
    assert_eq!((s, listed.as_array().unwrap().len()), (200, 2));

    // Revoked: refused from the next request on; revoking twice is 404.
    let (s, _, _) = call(
        &app,
        reqwest::Method::DELETE,
        &format!("/admin/tokens/{id}"),
        Auth::Bearer(ADMIN_TOKEN),
        &[],
    )
    .await;
    assert_eq!(s, 204);
    let (s, body) = get(&app, "/v1/profiles/user_id:nobody", Auth::Bearer(&secret)).await;
    assert_eq!(s, 401, "{body}");
    let (s, _, _) = call(
        &app,
        reqwest::Method::DELETE,
        &format!("/admin/tokens/{id}"),
        Auth::Bearer(ADMIN_TOKEN),
        &[],
    )
    .await;
    assert_eq!(s, 404);
    let (_, listed) = app.admin_get("/admin/tokens").await;
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap();
    assert!(row["revokedAt"].is_number());
}

/// Every backend route with the scope it needs.
const ROUTES: &[(&str, &str)] = &[
    ("/v1/profiles/user_id:u-1", "profiles:read"),
    ("/v1/profiles/email:ada@example.com", "profiles:read"),
    ("/v1/profiles/user_id:u-1/events", "profiles:read"),
    ("/v1/accounts/acct-1", "profiles:read"),
    ("/v1/accounts/acct-1/members", "profiles:read"),
    (
        "/v1/spaces/any/collections/users/profiles/user_id:u-1/traits",
        "profiles:read",
    ),
    (
        "/v1/spaces/any/collections/users/profiles/user_id:u-1/events",
        "profiles:read",
    ),
    (
        "/v1/spaces/any/collections/users/profiles/user_id:u-1/external_ids",
        "profiles:read",
    ),
    (
        "/v1/spaces/any/collections/users/profiles/user_id:u-1/metadata",
        "profiles:read",
    ),
    (
        "/v1/spaces/any/collections/users/profiles/user_id:u-1/links",
        "profiles:read",
    ),
    (
        "/v1/spaces/any/collections/accounts/profiles/group_id:acct-1/traits",
        "profiles:read",
    ),
    ("/v1/profiles/user_id:u-1/audiences", "audiences:read"),
    ("/v1/audiences", "audiences:read"),
    ("/v1/audiences/pro_users", "audiences:read"),
    ("/v1/audiences/pro_users/members", "audiences:read"),
    (
        "/v1/audiences/pro_users/members/user_id:u-1",
        "audiences:read",
    ),
    ("/admin/tokens", "admin"),
];

async fn every_route_answers_its_scope_with_200_a_wrong_scope_with_403_and_no_token_with_401(
    db: Db,
) {
    let app = spawn_app(db).await;
    seed(&app).await;
    let (_, profiles) = token(&app, "profiles", &["profiles:read"]).await;
    let (_, audiences) = token(&app, "audiences", &["audiences:read"]).await;
    let (_, admin) = token(&app, "admin", &["admin"]).await;
    let (revoked_id, revoked) = token(&app, "old", &["profiles:read", "audiences:read"]).await;
    call(
        &app,
        reqwest::Method::DELETE,
        &format!("/admin/tokens/{revoked_id}"),
        Auth::Bearer(ADMIN_TOKEN),
        &[],
    )
    .await;
    for (path, scope) in ROUTES {
        let (right, wrong) = match *scope {
            "profiles:read" => (profiles.as_str(), audiences.as_str()),
            "audiences:read" => (audiences.as_str(), profiles.as_str()),
            _ => (admin.as_str(), profiles.as_str()),
        };
        for (auth, expected, what) in [
            (Auth::Bearer(right), 200, "a token with the scope"),
            (
                Auth::Basic(right),
                200,
                "the token as the basic-auth username",
            ),
            (Auth::Bearer(ADMIN_TOKEN), 200, "the admin token"),
            (Auth::Bearer(&admin), 200, "a token with the admin scope"),
            (Auth::Bearer(wrong), 403, "a token without the scope"),
            (Auth::None, 401, "no token"),
            (Auth::Bearer(&revoked), 401, "a revoked token"),
            (Auth::Bearer("tp_0000"), 401, "an unknown token"),
            (Auth::Basic(WEB_KEY), 401, "a write key"),
            (Auth::Bearer(WEB_KEY), 401, "a write key as a bearer token"),
        ] {
            let (s, body) = get(&app, path, auth).await;
            assert_eq!(s, expected, "GET {path} with {what}: {body}");
            if expected == 401 {
                assert!(
                    body["error"].is_string() || body["error"]["code"] == "authentication_error",
                    "{path}: {body}"
                );
            }
        }
    }
    // The answers hold the seeded data.
    let (_, p) = get(&app, "/v1/profiles/user_id:u-1", Auth::Bearer(&profiles)).await;
    assert_eq!(p["traits"]["plan_tier"], "pro");
    assert_eq!(p["traits"]["email"], "Ada@Example.com");
    assert_eq!(p["computed"]["events"]["teammate_invited"]["total"], 2);
    // (`dormant_pro_users` from AUDIENCES.md may hold it too: its events are old.)
    assert!(
        p["audiences"]
            .as_array()
            .unwrap()
            .contains(&json!("pro_users")),
        "{p}"
    );
    assert_eq!(p["accounts"][0]["groupId"], "acct-1");
    let kinds: Vec<&str> = p["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    for k in ["user_id", "anonymous_id", "email"] {
        assert!(kinds.contains(&k), "{kinds:?}");
    }
    let (_, by_email) = get(
        &app,
        "/v1/profiles/email:ada@example.com",
        Auth::Bearer(&profiles),
    )
    .await;
    assert_eq!(by_email["id"], p["id"]);
    let (_, yes) = get(
        &app,
        "/v1/audiences/pro_users/members/user_id:u-1",
        Auth::Bearer(&audiences),
    )
    .await;
    assert_eq!(
        (yes["member"].clone(), yes["profileId"].clone()),
        (json!(true), p["id"].clone())
    );
    let (_, no) = get(
        &app,
        "/v1/audiences/pro_users/members/user_id:u-2",
        Auth::Bearer(&audiences),
    )
    .await;
    assert_eq!(no["member"], false);
    let (_, unknown) = get(
        &app,
        "/v1/audiences/pro_users/members/user_id:nobody",
        Auth::Bearer(&audiences),
    )
    .await;
    assert_eq!(
        (unknown["member"].clone(), unknown["profileId"].clone()),
        (json!(false), Value::Null)
    );
    let (s, _) = get(
        &app,
        "/v1/audiences/nope/members/user_id:u-1",
        Auth::Bearer(&audiences),
    )
    .await;
    assert_eq!(s, 404);
    let (_, list) = get(&app, "/v1/audiences", Auth::Bearer(&audiences)).await;
    let pro = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "pro_users")
        .unwrap();
    assert_eq!(pro["members"], 1);
    let (_, account) = get(&app, "/v1/accounts/acct-1", Auth::Bearer(&profiles)).await;
    assert_eq!(
        (
            account["traits"]["company"].clone(),
            account["members"].clone()
        ),
        (json!("Acme"), json!(1))
    );
    let (_, members) = get(&app, "/v1/accounts/acct-1/members", Auth::Bearer(&profiles)).await;
    assert_eq!(members["items"][0]["profileId"], p["id"]);
    let (s, _) = get(&app, "/v1/accounts/nope", Auth::Bearer(&profiles)).await;
    assert_eq!(s, 404);
    let (s, body) = get(&app, "/v1/profiles/u-1", Auth::Bearer(&profiles)).await;
    assert_eq!(s, 400, "{body}");
}

async fn segment_profile_api_routes_answer_like_segments_documented_examples(db: Db) {
    let app = spawn_app(db).await;
    seed(&app).await;
    let (_, access_token) = token(&app, "segment-migration", &["profiles:read"]).await;
    let base = "/v1/spaces/lg8283283/collections/users/profiles";

    // `curl https://…/traits -u $SEGMENT_ACCESS_SECRET:` exactly as Segment's documentation shows.
    let out = tokio::process::Command::new("curl")
        .args(["-s", "-u"])
        .arg(format!("{access_token}:"))
        .arg(format!("{}{base}/user_id:u-1/traits", app.address))
        .output()
        .await
        .expect("curl (installed with the system)");
    assert!(out.status.success());
    let traits: Value = serde_json::from_slice(&out.stdout).expect("JSON from curl");
    assert_eq!(traits["traits"]["plan_tier"], "pro");
    assert_eq!(
        traits["traits"]["pro_users"], true,
        "audiences are boolean traits"
    );
    let cursor = traits["cursor"].as_object().expect("cursor object");
    for k in ["url", "has_more", "next", "limit"] {
        assert!(cursor.contains_key(k), "cursor.{k}: {traits}");
    }
    assert_eq!(traits["cursor"]["limit"], 10, "10 traits by default");
    assert_eq!(
        traits["cursor"]["url"],
        format!("{base}/user_id:u-1/traits")
    );

    let auth = Auth::Basic(&access_token);
    // Paging with limit and next walks every trait exactly once, in name order.
    let (_, all) = get(&app, &format!("{base}/user_id:u-1/traits?limit=200"), auth).await;
    let every: Vec<String> = all["traits"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(all["cursor"]["has_more"], false);
    assert_eq!(all["cursor"]["next"], "");
    let mut walked = Vec::new();
    let mut next = String::new();
    loop {
        let (s, page) = get(
            &app,
            &format!(
                "{base}/user_id:u-1/traits?limit=3&next={}",
                urlencode(&next)
            ),
            auth,
        )
        .await;
        assert_eq!(s, 200, "{page}");
        walked.extend(page["traits"].as_object().unwrap().keys().cloned());
        if page["cursor"]["has_more"] == false {
            break;
        }
        next = page["cursor"]["next"].as_str().unwrap().to_owned();
    }
    assert_eq!(walked, every);
    assert!(
        every.contains(&"teammate_invited_last_30_days".to_owned())
            || every.contains(&"messages_total".to_owned())
    );

    // Field selection: include, class, verbose.
    let (_, some) = get(
        &app,
        &format!("{base}/user_id:u-1/traits?include=plan_tier,user_role"),
        auth,
    )
    .await;
    assert_eq!(
        some["traits"],
        json!({"plan_tier": "pro", "user_role": "admin"})
    );
    let (_, audiences) = get(
        &app,
        &format!("{base}/user_id:u-1/traits?class=audience"),
        auth,
    )
    .await;
    assert_eq!(audiences["traits"]["pro_users"], true);
    assert!(
        audiences["traits"]
            .as_object()
            .unwrap()
            .values()
            .all(Value::is_boolean),
        "{audiences}"
    );
    let (_, computed) = get(
        &app,
        &format!("{base}/user_id:u-1/traits?class=computed_trait"),
        auth,
    )
    .await;
    assert!(
        computed["traits"]["messages_total"].is_number(),
        "{computed}"
    );
    assert!(computed["traits"].get("plan_tier").is_none());
    let (_, verbose) = get(
        &app,
        &format!("{base}/user_id:u-1/traits?include=plan_tier&verbose=true"),
        auth,
    )
    .await;
    assert_eq!(verbose["traits"]["plan_tier"]["value"], "pro");
    assert_eq!(verbose["traits"]["plan_tier"]["source_id"], "web");
    assert_eq!(
        verbose["traits"]["plan_tier"]["updated_at"],
        "2026-11-20T10:00:00.000Z"
    );
    let (s, bad) = get(&app, &format!("{base}/user_id:u-1/traits?class=nope"), auth).await;
    assert_eq!(
        (s, bad["error"]["code"].clone()),
        (400, json!("validation_error"))
    );

    // External ids.
    let (_, ids) = get(&app, &format!("{base}/anonymous_id:a-1/external_ids"), auth).await;
    let data = ids["data"].as_array().unwrap();
    let user = data
        .iter()
        .find(|d| d["type"] == "user_id")
        .expect("user_id");
    assert_eq!(user["id"], "u-1");
    assert_eq!(user["collection"], "users");
    assert_eq!(user["encoding"], "none");
    assert_eq!(user["first_message_id"], "m-identify");
    assert_eq!(user["source_id"], "web");
    assert!(user["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(ids["cursor"]["has_more"] == false);
    let (_, only) = get(
        &app,
        &format!("{base}/user_id:u-1/external_ids?include=email"),
        auth,
    )
    .await;
    assert_eq!(only["data"].as_array().unwrap().len(), 1);
    assert_eq!(only["data"][0]["id"], "ada@example.com");
    let (_, first) = get(
        &app,
        &format!("{base}/user_id:u-1/external_ids?limit=1"),
        auth,
    )
    .await;
    assert_eq!(first["cursor"]["has_more"], true);
    let (_, second) = get(
        &app,
        &format!(
            "{base}/user_id:u-1/external_ids?limit=1&next={}",
            first["cursor"]["next"].as_str().unwrap()
        ),
        auth,
    )
    .await;
    assert_ne!(first["data"][0], second["data"][0]);

    // Events: newest first, Segment's fields, include/exclude, start/end, sort, paging.
    let (_, events) = get(&app, &format!("{base}/user_id:u-1/events"), auth).await;
    let data = events["data"].as_array().unwrap();
    assert_eq!(data[0]["message_id"], "m-group");
    let invite = data.iter().find(|e| e["message_id"] == "m-inv-2").unwrap();
    assert_eq!(invite["type"], "track");
    assert_eq!(invite["event"], "teammate_invited");
    assert_eq!(invite["timestamp"], "2026-11-20T10:04:00.000Z");
    assert_eq!(invite["properties"]["invitee_role"], "admin");
    assert_eq!(invite["source_id"], "server");
    assert_eq!(
        invite["external_ids"][0],
        json!({"collection": "users", "type": "user_id", "id": "u-1", "encoding": "none"})
    );
    assert!(invite["context"].is_object());
    assert!(invite["related"]["users"].is_string());
    let page_view = data.iter().find(|e| e["message_id"] == "m-page").unwrap();
    assert_eq!(page_view["event"], "Page Viewed");
    let (_, invites) = get(
        &app,
        &format!("{base}/user_id:u-1/events?include=teammate_invited,Page%20Viewed"),
        auth,
    )
    .await;
    let got: Vec<&str> = invites["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["m-inv-2", "m-inv-1", "m-page"]);
    let (_, windowed) = get(&app, &format!("{base}/user_id:u-1/events?start=2026-11-20T10:01:00Z&end=2026-11-20T10:04:00Z&sort=asc&exclude=workspace_created"), auth).await;
    let got: Vec<&str> = windowed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["m-trial", "m-inv-1"]);
    let (_, p1) = get(&app, &format!("{base}/user_id:u-1/events?limit=4"), auth).await;
    assert_eq!(
        (
            p1["cursor"]["has_more"].clone(),
            p1["cursor"]["limit"].clone()
        ),
        (json!(true), json!(4))
    );
    let (_, p2) = get(
        &app,
        &format!(
            "{base}/user_id:u-1/events?limit=4&next={}",
            p1["cursor"]["next"].as_str().unwrap()
        ),
        auth,
    )
    .await;
    assert_eq!(p2["cursor"]["has_more"], false);
    let mut all_ids: Vec<&str> = p1["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p2["data"].as_array().unwrap())
        .map(|e| e["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(all_ids.len(), data.len());
    all_ids.dedup();
    assert_eq!(all_ids.len(), data.len());

    // Metadata and links.
    let (_, meta) = get(&app, &format!("{base}/user_id:u-1/metadata"), auth).await;
    let m = &meta["metadata"];
    assert_eq!(m["first_message_id"], "m-page");
    assert_eq!(m["first_source_id"], "web");
    assert_eq!(m["last_message_id"], "m-group");
    assert_eq!(m["last_source_id"], "server");
    assert_eq!(m["expires_at"], Value::Null);
    assert_eq!(m["updated_at"], "2026-11-20T10:05:00.000Z");
    assert!(m["created_at"].as_str().unwrap().ends_with('Z'));
    let (_, links) = get(&app, &format!("{base}/user_id:u-1/links"), auth).await;
    assert_eq!(links["data"][0]["to_collection"], "accounts");
    assert_eq!(links["data"][0]["external_ids"][0]["type"], "group_id");
    assert_eq!(links["data"][0]["external_ids"][0]["id"], "acct-1");
    let (_, account) = get(
        &app,
        "/v1/spaces/lg8283283/collections/accounts/profiles/group_id:acct-1/traits",
        auth,
    )
    .await;
    assert_eq!(
        account["traits"],
        json!({"company": "Acme", "seats_provisioned": 5})
    );

    // Errors in Segment's shape.
    let (s, missing) = get(&app, &format!("{base}/user_id:nobody/traits"), auth).await;
    assert_eq!(s, 404);
    assert_eq!(
        missing,
        json!({"error": {"code": "not_found", "message": "Profile was not found."}})
    );
    let (s, unauth) = get(
        &app,
        &format!("{base}/user_id:u-1/traits"),
        Auth::Basic("wrong"),
    )
    .await;
    assert_eq!(
        (s, unauth["error"]["code"].clone()),
        (401, json!("authentication_error"))
    );
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn member_pages_have_stable_cursors_while_members_come_and_go(db: Db) {
    let app = spawn_app(db).await;
    let (_, t) = token(&app, "audiences", &["audiences:read"]).await;
    let r = app
        .client
        .post(format!("{}/admin/audiences", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"id": "paged", "condition": "plan_tier = 'enterprise'"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    settle(&app).await;
    // Members written directly, with ids whose order the test controls.
    app.sql(
        "INSERT INTO audience_members (audience, profile_id, entered_at) VALUES \
         ('paged', 'p-01', 1), ('paged', 'p-02', 2), ('paged', 'p-03', 3), ('paged', 'p-04', 4), \
         ('paged', 'p-05', 5), ('paged', 'p-06', 6)",
    )
    .await;
    let page = |cursor: String| {
        let app = &app;
        let t = t.clone();
        async move {
            let (s, v) = get(
                app,
                &format!("/v1/audiences/paged/members?limit=2&cursor={cursor}"),
                Auth::Bearer(&t),
            )
            .await;
            assert_eq!(s, 200, "{v}");
            v
        }
    };
    let first = page(String::new()).await;
    assert_eq!(first["count"], 6);
    let ids = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["profileId"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&first), ["p-01", "p-02"]);
    let cursor = first["next"].as_str().unwrap().to_owned();
    // The same cursor gives the same page.
    assert_eq!(ids(&page(cursor.clone()).await), ["p-03", "p-04"]);
    // Members come and go around the cursor: one before it, one after it, one leaves.
    app.sql(
        "INSERT INTO audience_members (audience, profile_id, entered_at) VALUES ('paged', 'p-00', 7), ('paged', 'p-035', 8); \
         DELETE FROM audience_members WHERE audience = 'paged' AND profile_id = 'p-04'",
    )
    .await;
    let mut seen = ids(&first);
    let mut next = Some(cursor);
    while let Some(c) = next {
        let p = page(c).await;
        seen.extend(ids(&p));
        next = p["next"].as_str().map(str::to_owned);
    }
    assert_eq!(
        seen,
        ["p-01", "p-02", "p-03", "p-035", "p-05", "p-06"],
        "members present throughout are seen once each, in order; none repeats"
    );
    let (s, _) = get(
        &app,
        "/v1/audiences/paged/members?cursor=garbage",
        Auth::Bearer(&t),
    )
    .await;
    assert_eq!(s, 400);
}

async fn event_pages_are_filtered_by_name_type_and_time_and_never_repeat(db: Db) {
    let app = spawn_app(db).await;
    seed(&app).await;
    let (_, t) = token(&app, "profiles", &["profiles:read"]).await;
    let auth = Auth::Bearer(&t);
    let ids = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["messageId"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, all) = get(&app, "/v1/profiles/user_id:u-1/events", auth).await;
    assert_eq!(
        ids(&all),
        [
            "m-group",
            "m-inv-2",
            "m-inv-1",
            "m-ws",
            "m-trial",
            "m-identify",
            "m-page"
        ]
    );
    assert_eq!(all["next"], Value::Null);
    let mut walked = Vec::new();
    let mut cursor = String::new();
    loop {
        let (_, p) = get(
            &app,
            &format!("/v1/profiles/user_id:u-1/events?limit=3&order=asc&cursor={cursor}"),
            auth,
        )
        .await;
        walked.extend(ids(&p));
        match p["next"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    let mut reversed = ids(&all);
    reversed.reverse();
    assert_eq!(walked, reversed);
    let (_, named) = get(
        &app,
        "/v1/profiles/user_id:u-1/events?event=teammate_invited,trial_started",
        auth,
    )
    .await;
    assert_eq!(ids(&named), ["m-inv-2", "m-inv-1", "m-trial"]);
    let (_, typed) = get(
        &app,
        "/v1/profiles/user_id:u-1/events?type=identify,page",
        auth,
    )
    .await;
    assert_eq!(ids(&typed), ["m-identify", "m-page"]);
    let (_, windowed) = get(
        &app,
        "/v1/profiles/user_id:u-1/events?start=2026-11-20T10:02:00Z&end=1795169040000",
        auth,
    )
    .await;
    // 1795169040000 ms = 2026-11-20T10:04:00Z, exclusive.
    assert_eq!(ids(&windowed), ["m-inv-1", "m-ws"]);
    assert_eq!(
        windowed["items"][0]["message"]["properties"]["invitee_role"],
        "member"
    );
    for bad in ["start=yesterday", "order=sideways", "cursor=nope"] {
        let (s, _) = get(
            &app,
            &format!("/v1/profiles/user_id:u-1/events?{bad}"),
            auth,
        )
        .await;
        assert_eq!(s, 400, "{bad}");
    }
}

async fn answers_carry_an_etag_and_are_304_until_the_profile_changes(db: Db) {
    let app = spawn_app(db).await;
    seed(&app).await;
    let (_, t) = token(&app, "profiles", &["profiles:read"]).await;
    let path = "/v1/spaces/s/collections/users/profiles/user_id:u-1/traits?include=plan_tier";
    let (s, h, body) = call(&app, reqwest::Method::GET, path, Auth::Basic(&t), &[]).await;
    assert_eq!(s, 200);
    let etag = h["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"'), "{etag}");
    let (s, h2, body2) = call(
        &app,
        reqwest::Method::GET,
        path,
        Auth::Basic(&t),
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!((s, body2), (304, Value::Null));
    assert_eq!(h2["etag"].to_str().unwrap(), etag);
    let (s, _, _) = call(
        &app,
        reqwest::Method::GET,
        path,
        Auth::Basic(&t),
        &[("if-none-match", "\"stale\"")],
    )
    .await;
    assert_eq!(s, 200);
    // The profile changes: a new answer, a new tag.
    app.send_batch(WEB_KEY, vec![json!({"type": "identify", "userId": "u-1", "traits": {"plan_tier": "enterprise"}, "timestamp": "2026-11-20T11:00:00Z"})]).await;
    settle(&app).await;
    let (s, h3, body3) = call(
        &app,
        reqwest::Method::GET,
        path,
        Auth::Basic(&t),
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(s, 200);
    assert_ne!(h3["etag"].to_str().unwrap(), etag);
    assert_ne!(body3, body);
    assert_eq!(body3["traits"]["plan_tier"], "enterprise");
    // The v1 routes too.
    let (s, h, _) = call(
        &app,
        reqwest::Method::GET,
        "/v1/profiles/user_id:u-1",
        Auth::Bearer(&t),
        &[],
    )
    .await;
    assert_eq!(s, 200);
    let tag = h["etag"].to_str().unwrap().to_owned();
    let (s, _, _) = call(
        &app,
        reqwest::Method::GET,
        "/v1/profiles/user_id:u-1",
        Auth::Bearer(&t),
        &[("if-none-match", &format!("W/{tag}"))],
    )
    .await;
    assert_eq!(s, 304);
}

async fn each_token_has_its_own_rate_limit_answered_429_with_retry_after(db: Db) {
    let (url, tmp) = fresh_database(db).await;
    let mut config = test_config(url);
    config.api_rate_limit_per_second = 1;
    config.api_rate_limit_burst = 2;
    let app = spawn_app_with(config, tmp).await;
    let (_, a) = token(&app, "a", &["profiles:read"]).await;
    let (_, b) = token(&app, "b", &["profiles:read"]).await;
    let path = "/v1/profiles/user_id:nobody";
    for _ in 0..2 {
        let (s, _) = get(&app, path, Auth::Bearer(&a)).await;
        assert_eq!(s, 404, "within the burst");
    }
    let (s, h, body) = call(&app, reqwest::Method::GET, path, Auth::Bearer(&a), &[]).await;
    assert_eq!(s, 429, "{body}");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert!(body["error"].as_str().unwrap().contains("rate limit"));
    let (s, h, body) = call(
        &app,
        reqwest::Method::GET,
        "/v1/spaces/x/collections/users/profiles/user_id:nobody/traits",
        Auth::Basic(&a),
        &[],
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].clone()),
        (429, json!("rate_limit_error"))
    );
    assert!(h.contains_key("retry-after"));
    let (s, _) = get(&app, path, Auth::Bearer(&b)).await;
    assert_eq!(s, 404, "another token has its own allowance");
    for _ in 0..5 {
        let (s, _) = get(&app, path, Auth::Bearer(ADMIN_TOKEN)).await;
        assert_eq!(s, 404, "the admin token is not limited");
    }
}

/// The committed document, parsed.
fn committed_document() -> Value {
    let text = std::fs::read_to_string(repo_root().join("docs/openapi.json"))
        .expect("docs/openapi.json exists");
    serde_json::from_str(&text).expect("docs/openapi.json is JSON")
}

async fn every_documented_route_answers_through_the_real_router(db: Db) {
    let app = spawn_app(db).await;
    seed(&app).await;
    let (_, served) = get(&app, "/v1/openapi.json", Auth::None).await;
    assert_eq!(
        served,
        committed_document(),
        "the served document is the committed one"
    );
    let mut checked = 0;
    for (template, item) in served["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            // A token to revoke for DELETE /admin/tokens/{id}; existing data for everything else.
            let (victim, _) = token(&app, "victim", &["profiles:read"]).await;
            let path = template
                .replace(
                    "{external_id}",
                    if template.contains("/accounts/") {
                        "group_id:acct-1"
                    } else {
                        "user_id:u-1"
                    },
                )
                .replace("{space_id}", "space")
                .replace("{audience_id}", "pro_users")
                .replace("{group_id}", "acct-1")
                .replace("{id}", &victim.to_string());
            assert!(!path.contains('{'), "unfilled parameter in {path}");
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let body_headers: &[(&str, &str)] = &[];
            let (s, _, body) = if m == reqwest::Method::POST {
                let r = app
                    .client
                    .post(format!("{}{path}", app.address))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&json!({"name": "from the route check", "scopes": ["profiles:read"]}))
                    .send()
                    .await
                    .unwrap();
                (
                    r.status().as_u16(),
                    r.headers().clone(),
                    r.json().await.unwrap_or(Value::Null),
                )
            } else {
                call(
                    &app,
                    m.clone(),
                    &path,
                    Auth::Bearer(ADMIN_TOKEN),
                    body_headers,
                )
                .await
            };
            assert!(
                (200..300).contains(&s),
                "{method} {template} (as {path}) answered {s}: {body}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 18, "only {checked} operations documented");
}

#[test]
fn the_committed_openapi_document_is_the_one_the_code_generates() {
    let generated = touchpoint_core::backend_api::openapi::json();
    let committed =
        std::fs::read_to_string(repo_root().join("docs/openapi.json")).unwrap_or_default();
    assert!(
        generated == committed,
        "docs/openapi.json is out of date with the code: regenerate it with\n  \
         cargo run -q -p touchpoint-core --bin touchpoint -- openapi > docs/openapi.json\n\
         and commit it"
    );
}

#[test]
fn the_committed_openapi_document_validates_against_the_openapi_schema() {
    let python = repo_root().join(".tools/venv/bin/python");
    let out = std::process::Command::new(&python)
        .args(["-m", "openapi_spec_validator"])
        .arg(repo_root().join("docs/openapi.json"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} (scripts/setup.sh installs openapi-spec-validator): {e}",
                python.display()
            )
        });
    assert!(
        out.status.success(),
        "docs/openapi.json is not a valid OpenAPI document:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = committed_document();
    assert_eq!(doc["openapi"], "3.1.0");
}
