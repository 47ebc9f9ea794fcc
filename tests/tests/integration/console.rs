//! The admin console: its endpoints on both stores (contacts in previews and member lists,
//! audience size over time, the entered/exited feed and the destinations syncing an audience, the
//! identity graph, tracking-plan health and spec, pipeline health), and every page in headless
//! Chromium with seeded demo data — the PQL audience built visually and saved equals the one in
//! AUDIENCES.md; no page logs an error or breaks its Content-Security-Policy. Screenshots of every
//! page go to `target/screenshots/console/`, or to `docs/screenshots/` with
//! `TOUCHPOINT_SCREENSHOTS=docs` (how the README's screenshots are made).

use serde_json::{Value, json};
use std::time::Duration;
use touchpoint_core::audiences::condition::Condition;
use touchpoint_core::audiences::definitions::parse_file;
use touchpoint_core::destinations::config::DeliveryConfig;
use touchpoint_core::destinations::salesforce::config::SalesforceConfig;
use touchpoint_core::destinations::webhook::config::WebhookConfig;
use touchpoint_core::pipeline::Policy;
use touchpoint_tests::fakes::{self, Fake};
use touchpoint_tests::{
    ADMIN_TOKEN, Db, SERVER_KEY, TestApp, WEB_KEY, fresh_database, repo_root, run_node_script,
    spawn_app_with, test_config,
};

crate::on_both_stores!(
    the_console_endpoints_show_people_sizes_feeds_graphs_and_health,
    console_endpoints_refuse_unknown_audiences_and_missing_tokens,
);

/// Fake destinations the demo delivers to.
struct Destinations {
    salesforce: Fake<fakes::salesforce::State>,
    webhook: Fake<fakes::webhook::State>,
}

/// A server on `db` delivering to a fake Salesforce and a fake webhook receiver, with stage retries
/// short enough for a poisoned message to be quarantined quickly.
async fn spawn_demo_app(db: Db) -> (TestApp, Destinations) {
    let salesforce = fakes::salesforce::spawn().await;
    let webhook = fakes::webhook::spawn().await;
    let (url, tmp) = fresh_database(db).await;
    let mut config = test_config(url);
    config.destinations.salesforce = Some(SalesforceConfig::new(
        &salesforce.url,
        fakes::salesforce::CLIENT_ID,
        fakes::salesforce::CLIENT_SECRET,
    ));
    config.destinations.webhook = Some(WebhookConfig {
        url: format!("{}/hooks/touchpoint", webhook.url),
        secret: fakes::webhook::SECRET.into(),
    });
    config.destinations.delivery = DeliveryConfig {
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(300),
        poll: Duration::from_millis(50),
        ..DeliveryConfig::default()
    };
    config.stage_retry = Policy {
        attempts: 2,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        isolate_span: 50,
    };
    let app = spawn_app_with(config, tmp).await;
    (
        app,
        Destinations {
            salesforce,
            webhook,
        },
    )
}

fn at(days_ago: f64) -> String {
    (chrono::Utc::now() - chrono::Duration::milliseconds((days_ago * 86_400_000.0) as i64))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One person of the demo workspace.
struct Person {
    user: &'static str,
    name: &'static str,
    email: &'static str,
    workspace: &'static str,
    company: &'static str,
    seats: i64,
    plan: &'static str,
    invites: usize,
    /// Days ago they connected an integration, if they did.
    integration: Option<f64>,
}

const PEOPLE: [Person; 8] = [
    Person {
        user: "u-ada",
        name: "Ada Lovelace",
        email: "ada@acme.example",
        workspace: "ws-acme",
        company: "Acme",
        seats: 5,
        plan: "pro",
        invites: 2,
        integration: Some(3.0),
    },
    Person {
        user: "u-grace",
        name: "Grace Hopper",
        email: "grace@navy.example",
        workspace: "ws-navy",
        company: "Navy Labs",
        seats: 12,
        plan: "business",
        invites: 4,
        integration: Some(9.0),
    },
    Person {
        user: "u-margaret",
        name: "Margaret Hamilton",
        email: "margaret@mit.example",
        workspace: "ws-mit",
        company: "MIT",
        seats: 6,
        plan: "pro",
        invites: 1,
        integration: Some(1.5),
    },
    Person {
        user: "u-barbara",
        name: "Barbara Liskov",
        email: "barbara@mit.example",
        workspace: "ws-mit",
        company: "MIT",
        seats: 6,
        plan: "pro",
        invites: 0,
        integration: None,
    },
    Person {
        user: "u-alan",
        name: "Alan Turing",
        email: "alan@bletchley.example",
        workspace: "ws-bletchley",
        company: "Bletchley",
        seats: 2,
        plan: "free",
        invites: 1,
        integration: Some(5.0),
    },
    Person {
        user: "u-katherine",
        name: "Katherine Johnson",
        email: "katherine@nasa.example",
        workspace: "ws-nasa",
        company: "NASA",
        seats: 8,
        plan: "business",
        invites: 3,
        integration: Some(40.0),
    },
    Person {
        user: "u-linus",
        name: "Linus Torvalds",
        email: "linus@kernel.example",
        workspace: "ws-kernel",
        company: "Kernel",
        seats: 4,
        plan: "free",
        invites: 2,
        integration: None,
    },
    Person {
        user: "u-dennis",
        name: "Dennis Ritchie",
        email: "dennis@bell.example",
        workspace: "ws-bell",
        company: "Bell Labs",
        seats: 3,
        plan: "free",
        invites: 3,
        integration: None,
    },
];

/// Who the PQL holds for in the demo: more than three seats and an integration within 30 days.
const PQL_MEMBERS: [&str; 3] = ["u-ada", "u-grace", "u-margaret"];

/// Sends the demo workspace's two weeks of activity through the public API: anonymous visits,
/// sign-ups, workspaces, invitations and integrations (Ada on two devices, so two profiles merge),
/// plus the bad data the tracking-plan page reports (blocked, flagged and rejected).
async fn seed_demo(app: &TestApp) {
    // Each person's browser messages go first, processed before their server-side ones: a
    // partitioned log orders messages per device only, and the story wants the sign-up to be
    // what brings each user id.
    let mut later = Vec::new();
    for (i, p) in PEOPLE.iter().enumerate() {
        let anon = format!("anon-{}", p.user);
        let start = 13.0 - i as f64;
        let mut batch = Vec::new();
        for (k, path) in ["/", "/pricing", "/docs", "/signup"].iter().enumerate() {
            batch.push(json!({"type": "page", "anonymousId": anon, "name": path.trim_start_matches('/'),
                "properties": {"path": path, "url": format!("https://acme.example{path}"), "title": format!("Acme {path}")},
                "timestamp": at(start - k as f64 * 0.1)}));
        }
        batch.push(json!({"type": "track", "anonymousId": anon, "userId": p.user, "event": "user_signed_up",
            "properties": {"signup_method": "email", "plan_tier": p.plan}, "timestamp": at(start - 0.5)}));
        batch.push(json!({"type": "identify", "anonymousId": anon, "userId": p.user,
            "traits": {"email": p.email, "name": p.name, "plan_tier": p.plan, "user_role": if i % 3 == 0 { "owner" } else { "admin" }},
            "timestamp": at(start - 0.5)}));
        app.send_batch(WEB_KEY, std::mem::take(&mut batch)).await;
        batch.push(json!({"type": "group", "userId": p.user, "groupId": p.workspace,
            "traits": {"name": p.company, "seats_provisioned": p.seats, "plan_tier": p.plan}, "timestamp": at(start - 0.6)}));
        batch.push(
            json!({"type": "track", "userId": p.user, "event": "trial_started",
            "properties": {"plan_tier": p.plan, "trial_days": 14}, "timestamp": at(start - 0.7)}),
        );
        batch.push(json!({"type": "track", "userId": p.user, "event": "workspace_created",
            "properties": {"workspace_id": p.workspace, "workspace_name": p.company}, "timestamp": at(start - 0.8)}));
        for n in 0..p.invites {
            batch.push(json!({"type": "track", "userId": p.user, "event": "teammate_invited",
                "properties": {"workspace_id": p.workspace, "invitee_role": "member", "invite_method": "email"},
                "timestamp": at(start - 1.0 - n as f64 * 0.7)}));
        }
        for d in 0..(i % 4 + 2) {
            batch.push(json!({"type": "track", "userId": p.user, "event": "report_generated",
                "properties": {"report_type": "usage", "row_count": 40 + d * 7}, "timestamp": at((start - 2.0 - d as f64).max(0.2))}));
        }
        batch.push(json!({"type": "track", "userId": p.user, "event": "feature_toggled",
            "properties": {"feature_name": "dark_mode", "new_status": true}, "timestamp": at((start - 3.0).max(0.3))}));
        if let Some(days) = p.integration {
            batch.push(json!({"type": "track", "userId": p.user, "event": "integration_connected",
                "properties": {"integration_name": "slack", "workspace_id": p.workspace}, "timestamp": at(days)}));
        }
        later.push(batch);
    }
    app.wait_processed().await;
    for batch in later {
        app.send_batch(WEB_KEY, batch).await;
    }
    // Ada on her phone: anonymous at first (a profile of its own), then signed in, which merges it.
    app.send_batch(
        WEB_KEY,
        vec![
            json!({"type": "page", "anonymousId": "anon-ada-phone", "name": "pricing",
                   "properties": {"path": "/pricing"}, "timestamp": at(2.5)}),
            json!({"type": "track", "anonymousId": "anon-ada-phone", "event": "report_generated",
                   "properties": {"report_type": "mobile", "row_count": 3}, "timestamp": at(2.4)}),
        ],
    )
    .await;
    app.wait_processed().await;
    app.send_batch(
        WEB_KEY,
        vec![
            json!({"type": "identify", "anonymousId": "anon-ada-phone", "userId": "u-ada",
                   "traits": {"email": "ada@acme.example"}, "timestamp": at(2.3)}),
        ],
    )
    .await;
    // Bad data: an unplanned, badly named event from the server; invalid events from the web.
    let mut bad = Vec::new();
    for d in [1.2, 4.2, 6.2] {
        bad.push(
            json!({"type": "track", "userId": "u-grace", "event": "Signed Up", "timestamp": at(d)}),
        );
    }
    app.send_batch(SERVER_KEY, bad).await;
    app.send_batch(WEB_KEY,
        vec![
            json!({"type": "track", "userId": "u-alan", "event": "trial_started",
                   "properties": {"plan_tier": "pro"}, "timestamp": at(2.1)}),
            json!({"type": "track", "userId": "u-alan", "event": "trial_started",
                   "properties": {"plan_tier": "platinum", "trial_days": 14}, "timestamp": at(0.6)}),
            json!({"type": "track", "userId": "u-linus", "event": "teammate_invited",
                   "properties": {"workspace_id": "ws-kernel", "invitee_role": "superuser"}, "timestamp": at(0.4)}),
            json!({"type": "track", "userId": "u-dennis", "event": "feature_toggled",
                   "properties": {"feature_name": "beta", "new_status": "yes"}, "timestamp": at(3.1)}),
        ],
    )
    .await;
    // Not messages at all: no userId or anonymousId.
    let r = app
        .post(
            "/v1/batch",
            SERVER_KEY,
            &json!({"batch": [{"type": "track", "event": "report_generated"}, {"type": "identify", "traits": {}}]}),
        )
        .await;
    assert!(
        r.status().is_success() || r.status() == 400,
        "{}",
        r.status()
    );
}

/// Waits (bounded) until profiles and audiences have processed the whole log.
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

async fn admin_post_json(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    let r = app
        .client
        .post(format!("{}{path}", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .json(body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Polls `path` (bounded) until `check` holds for its body; returns it.
async fn until(app: &TestApp, path: &str, check: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        let (status, body) = app.admin_get(path).await;
        if status == 200 && check(&body) {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} never satisfied the check; last answer: {last}");
}

fn pql_text() -> String {
    let src = std::fs::read_to_string(repo_root().join("AUDIENCES.md")).expect("AUDIENCES.md");
    let (defs, _) = parse_file(&src);
    defs.into_iter()
        .find(|d| d.id == "product_qualified_lead")
        .expect("the PQL in AUDIENCES.md")
        .condition
        .to_string()
}

async fn the_console_endpoints_show_people_sizes_feeds_graphs_and_health(db: Db) {
    let (app, dest) = spawn_demo_app(db).await;
    seed_demo(&app).await;
    settle(&app).await;

    // The preview names its sample members.
    let (status, p) = admin_post_json(
        &app,
        "/admin/audiences/preview",
        &json!({"condition": pql_text()}),
    )
    .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["count"], 3, "{p}");
    let mut emails: Vec<&str> = p["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["email"].as_str().unwrap())
        .collect();
    emails.sort_unstable();
    assert_eq!(
        emails,
        [
            "ada@acme.example",
            "grace@navy.example",
            "margaret@mit.example"
        ]
    );
    assert!(
        p["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "Ada Lovelace"),
        "{p}"
    );

    // Members, the size over time and the feed, with people's names.
    let (_, m) = app
        .admin_get("/admin/audiences/product_qualified_lead/members")
        .await;
    assert_eq!(m["count"], 3);
    assert!(
        m["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["email"].is_string() && r["name"].is_string()),
        "{m}"
    );
    let (status, size) = app
        .admin_get("/admin/audiences/product_qualified_lead/size?range=24h&points=24")
        .await;
    assert_eq!(status, 200, "{size}");
    let points = size["points"].as_array().unwrap();
    assert_eq!(points.len(), 25, "{size}");
    assert_eq!(points[0][1], 0, "nobody was in it a day ago");
    assert_eq!(points.last().unwrap()[1], 3, "{size}");
    assert_eq!(size["entered"], 3);
    assert_eq!(size["members"], 3);
    let (_, all) = app
        .admin_get("/admin/audiences/product_qualified_lead/size")
        .await;
    assert_eq!(all["points"].as_array().unwrap().last().unwrap()[1], 3);
    let (_, feed) = app
        .admin_get("/admin/audiences/product_qualified_lead/feed?limit=10")
        .await;
    let events = feed["events"].as_array().unwrap();
    assert_eq!(events.len(), 3, "{feed}");
    assert!(events.iter().all(|e| e["kind"] == "audience_entered"));
    assert!(
        events[0]["id"].as_i64() > events[2]["id"].as_i64(),
        "newest first"
    );
    let first = events[2]["id"].as_i64().unwrap();
    let (_, after) = app
        .admin_get(&format!(
            "/admin/audiences/product_qualified_lead/feed?after={first}"
        ))
        .await;
    assert_eq!(after["events"].as_array().unwrap().len(), 2, "{after}");
    assert!(events.iter().any(|e| e["name"] == "Grace Hopper"), "{feed}");

    // Salesforce and the webhook both take the PQL's transitions; their outbox rows show the state.
    let d = until(
        &app,
        "/admin/audiences/product_qualified_lead/destinations",
        |d| {
            d["destinations"].as_array().is_some_and(|v| {
                v.len() == 2
                    && v.iter()
                        .all(|x| x["outbox"]["delivered"].as_i64() >= Some(3))
            })
        },
    )
    .await;
    for x in d["destinations"].as_array().unwrap() {
        assert_eq!(x["state"], "in sync", "{d}");
        assert!(["salesforce", "webhook"].contains(&x["name"].as_str().unwrap()));
    }
    assert!(
        dest.webhook.with(|s| s.events.len()) > 0
            && dest.salesforce.with(|s| s.problems.is_empty())
    );

    // The identity graph: Ada's identifiers, the messages that linked them, the merge.
    let ada = app.profile("user_id", "u-ada").await.expect("Ada");
    let id = ada["id"].as_str().unwrap();
    let (status, g) = app.admin_get(&format!("/admin/profiles/{id}/graph")).await;
    assert_eq!(status, 200, "{g}");
    let ids: Vec<&str> = g["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    for want in [
        "user_id:u-ada",
        "email:ada@acme.example",
        "anonymous_id:anon-u-ada",
        "anonymous_id:anon-ada-phone",
    ] {
        assert!(ids.contains(&want), "{want} in {ids:?}");
    }
    let messages = g["messages"].as_array().unwrap();
    let merge = messages
        .iter()
        .find(|m| {
            !m["merges"].as_array().unwrap().is_empty()
                && m["carried"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("anonymous_id:anon-ada-phone"))
        })
        .expect("the sign-in on the phone merged two profiles");
    assert_eq!(merge["type"], "identify");
    let carried: Vec<&str> = merge["carried"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        carried.contains(&"user_id:u-ada") && carried.contains(&"anonymous_id:anon-ada-phone"),
        "{merge}"
    );
    let signup = messages
        .iter()
        .find(|m| {
            m["attached"]
                .as_array()
                .unwrap()
                .contains(&json!("user_id:u-ada"))
        })
        .expect("the message that attached the user id");
    assert!(
        signup["carried"]
            .as_array()
            .unwrap()
            .contains(&json!("anonymous_id:anon-u-ada")),
        "{signup}"
    );

    // Tracking-plan health: volume per event per day, violations by kind, sources, rejections.
    let (status, h) = app.admin_get("/admin/plan/health?days=14").await;
    assert_eq!(status, 200, "{h}");
    assert_eq!(h["days"].as_array().unwrap().len(), 14);
    assert_eq!(h["totals"]["blocked"], 7, "{}", h["totals"]);
    assert!(
        h["totals"]["rejected"].as_i64() >= Some(1),
        "{}",
        h["totals"]
    );
    let event = |name: &str| {
        h["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["event"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {}", h["events"]))
    };
    let pages = event("page_viewed");
    assert_eq!(pages["total"], 33);
    assert_eq!(
        pages["perDay"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .sum::<i64>(),
        33
    );
    assert_eq!(pages["planned"], true);
    assert_eq!(event("Signed Up")["planned"], false);
    assert_eq!(event("Signed Up")["blocked"], 3);
    assert_eq!(event("trial_started")["violations"], 2);
    let kinds: Vec<&str> = h["violationsByKind"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kind"].as_str().unwrap())
        .collect();
    for k in [
        "unplanned_event",
        "missing_required",
        "not_in_enum",
        "wrong_type",
    ] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    let source = |name: &str| {
        h["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["source"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {}", h["sources"]))
    };
    assert_eq!(source("web")["blocked"], 4);
    assert_eq!(source("server")["blocked"], 3);
    assert!(source("server")["rejected"].as_i64() >= Some(1));
    assert_eq!(
        h["sources"][0]["source"], "server",
        "the worst source first: {}",
        h["sources"]
    );
    let (status, spec) = app.admin_get("/admin/plan/spec").await;
    assert_eq!(status, 200);
    let trial = spec["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "trial_started")
        .unwrap();
    assert_eq!(trial["stage"], "Activation");
    assert_eq!(trial["properties"][1]["name"], "trial_days");
    assert_eq!(trial["properties"][1]["min"], 1.0);

    // Pipeline health: every stage caught up, messages received, successful deliveries.
    let p = until(&app, "/admin/pipeline/health?minutes=60", |p| {
        p["deliveries"].as_array().is_some_and(|d| {
            d.iter()
                .any(|x| x["destination"] == "webhook" && x["totals"]["success"].as_i64() > Some(0))
        })
    })
    .await;
    let stage = |name: &str| {
        p["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stage"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {}", p["stages"]))
    };
    assert_eq!(stage("profiles")["behind"], 0, "{}", p["stages"]);
    assert_eq!(stage("profiles")["running"], true);
    assert!(stage("profiles")["processed"].as_i64() > Some(50));
    assert!(stage("destinations_audiences")["head"].as_i64() >= Some(3));
    let received: i64 = p["received"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .sum();
    let stored = app.sql_number("SELECT COUNT(*) FROM messages").await;
    assert_eq!(
        received, stored,
        "every message was received in the last hour"
    );
    assert_eq!(
        p["times"].as_array().unwrap().len(),
        p["received"].as_array().unwrap().len()
    );
}

async fn console_endpoints_refuse_unknown_audiences_and_missing_tokens(db: Db) {
    let (url, tmp) = fresh_database(db).await;
    let app = spawn_app_with(test_config(url), tmp).await;
    for path in [
        "/admin/audiences/nope/size",
        "/admin/audiences/nope/feed",
        "/admin/audiences/nope/destinations",
        "/admin/profiles/nope/graph",
    ] {
        let (status, body) = app.admin_get(path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, body) = app
        .admin_get("/admin/audiences/product_qualified_lead/size?range=forever")
        .await;
    assert_eq!(status, 400, "{body}");
    for path in [
        "/admin/plan/health",
        "/admin/plan/spec",
        "/admin/pipeline/health",
        "/admin/audiences/product_qualified_lead/size",
    ] {
        let r = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    // An empty database: empty series, not errors.
    let (status, size) = app
        .admin_get("/admin/audiences/product_qualified_lead/size")
        .await;
    assert_eq!(status, 200, "{size}");
    assert!(size["points"].as_array().unwrap().iter().all(|p| p[1] == 0));
    let (status, h) = app.admin_get("/admin/plan/health").await;
    assert_eq!(status, 200, "{h}");
    assert_eq!(h["totals"], json!({"rejected": 0}));
    let (status, _) = app.admin_get("/admin/pipeline/health?minutes=10080").await;
    assert_eq!(status, 200);
    // Pages and their scripts are served (the pages themselves carry no data).
    for path in [
        "/audiences",
        "/audiences/builder",
        "/profiles",
        "/plan",
        "/pipeline",
        "/destinations",
        "/assets/console/uPlot.iife.min.js",
        "/assets/console/builder.js",
    ] {
        let r = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
}

/// Older membership of the PQL, from before this server's database: closed periods only, so the
/// size today is still what the pipeline computed. It gives the demo's size chart a month.
async fn seed_older_history(app: &TestApp) {
    let now = chrono::Utc::now().timestamp_millis();
    let day = 86_400_000i64;
    let mut rows = Vec::new();
    for i in 0..14i64 {
        let entered = now - (28 - i) * day - (i * 37 % 11) * 3_600_000;
        let exited = entered + (3 + i % 9) * day;
        rows.push(format!(
            "('product_qualified_lead', 'earlier-member-{i}', {entered}, {exited})"
        ));
    }
    app.sql(&format!(
        "INSERT INTO audience_history (audience, profile_id, entered_at, exited_at) VALUES {}",
        rows.join(", ")
    ))
    .await;
}

/// A message the profiles stage cannot store (a database trigger refuses its identity): after
/// bounded retries it is quarantined, which the pipeline page shows.
async fn poison_one_message(app: &TestApp) {
    app.sql(
        "CREATE TRIGGER poison BEFORE INSERT ON identities WHEN NEW.value = 'poison-user' \
         BEGIN SELECT RAISE(ABORT, 'poisoned identity (a broken trigger)'); END;",
    )
    .await;
    app.send_batch(
        SERVER_KEY,
        vec![json!({"type": "identify", "userId": "poison-user", "traits": {"name": "Poison"}})],
    )
    .await;
    until(app, "/admin/quarantine", |q| {
        q["entries"].as_array().is_some_and(|e| !e.is_empty())
    })
    .await;
    app.sql("DROP TRIGGER poison").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_console_page_works_in_chromium_and_the_pql_is_built_visually() {
    let (app, dest) = spawn_demo_app(Db::Sqlite).await;
    // The first webhook calls fail, so the delivery charts show errors and retries.
    dest.webhook.with(|s| s.common.faults.fail_next = 4);
    seed_demo(&app).await;
    settle(&app).await;
    seed_older_history(&app).await;
    poison_one_message(&app).await;

    let out = match std::env::var("TOUCHPOINT_SCREENSHOTS").as_deref() {
        Ok("docs") => repo_root().join("docs/screenshots"),
        _ => repo_root().join("target/screenshots/console"),
    };
    std::fs::create_dir_all(&out).unwrap();
    let ada = app.profile("user_id", "u-ada").await.expect("Ada");
    let stdout = run_node_script(
        "tests/browser/console.mjs",
        &[
            &app.address,
            ADMIN_TOKEN,
            WEB_KEY,
            ada["id"].as_str().unwrap(),
            &out.display().to_string(),
        ],
        Duration::from_secs(240),
    )
    .await;
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("no report from console.mjs ({e}):\n{stdout}"));

    // The audience built with blocks was saved with the PQL's condition, as AUDIENCES.md has it.
    let expected = pql_text();
    let (status, saved) = app.admin_get("/admin/audiences/pql_built_visually").await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["audience"]["condition"], expected.as_str());
    assert_eq!(
        Condition::parse(saved["audience"]["condition"].as_str().unwrap()).unwrap(),
        Condition::parse(&expected).unwrap()
    );
    assert_eq!(report["builtText"], expected.as_str(), "{report}");
    assert_eq!(
        report["builtCount"],
        PQL_MEMBERS.len() as i64,
        "the live estimate while editing: {report}"
    );
    // It backfills to the same members as the file's PQL, and the live counter saw someone enter.
    let m = until(&app, "/admin/audiences/pql_built_visually/members", |m| {
        m["count"].as_i64() == Some(PQL_MEMBERS.len() as i64 + 1)
    })
    .await;
    assert!(
        m["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "Alan Turing"),
        "Alan entered live when his workspace grew: {m}"
    );
    assert_eq!(
        report["liveCounter"],
        PQL_MEMBERS.len() as i64 + 1,
        "{report}"
    );
    for shot in [
        "audiences.png",
        "audience-builder.png",
        "profile.png",
        "tracking-plan.png",
        "pipeline.png",
        "deliveries.png",
        "debugger.png",
    ] {
        let len = std::fs::metadata(out.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 20_000, "{shot} screenshot ({len} bytes)");
    }
}
