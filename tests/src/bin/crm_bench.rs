//! CRM inbound benchmark: CRM API calls per 1,000 inbound changes. Spawns core (SQLite) with the
//! fake Salesforce and HubSpot, lets a first poll learn the records, changes them in the fakes (as
//! sales reps would), then measures one poll (or the webhook deliveries) and counts every API call
//! the fakes received (token requests excluded), the messages accepted and the wall time.
//!
//! `cargo run --release -p touchpoint-tests --bin crm-bench`
#![allow(clippy::print_stdout)]

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use touchpoint_core::destinations::hubspot::config::HubSpotConfig;
use touchpoint_core::destinations::salesforce::config::SalesforceConfig;
use touchpoint_tests::fakes::{self, Fake, Recorded};
use touchpoint_tests::{Db, SERVER_KEY, TestApp, fresh_database, spawn_app_with, test_config};

struct Row {
    scenario: String,
    changes: usize,
    calls: usize,
    detail: String,
    messages: u64,
    elapsed: Duration,
}

fn api_calls(r: &[Recorded]) -> Vec<&Recorded> {
    r.iter()
        .filter(|r| !r.path.contains("oauth"))
        .collect::<Vec<_>>()
}

fn detail(calls: &[&Recorded]) -> String {
    let mut kinds: Vec<(String, usize)> = Vec::new();
    for c in calls {
        let kind = if c.path.contains("/query/") {
            "queryMore".to_owned()
        } else if c.path.ends_with("/query") {
            "query".to_owned()
        } else if c.path.contains("/deleted") {
            "getDeleted".to_owned()
        } else if c.path.contains("/search") {
            "search".to_owned()
        } else if c.path.contains("/associations/") {
            "associations".to_owned()
        } else if c.path.contains("/owners/") {
            "owners".to_owned()
        } else if c.path.contains("/batch/read") {
            "batch read".to_owned()
        } else if c.path.ends_with("/composite/sobjects") || c.path.contains("/batch/update") {
            "write-back".to_owned()
        } else {
            c.path.clone()
        };
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kind, 1)),
        }
    }
    kinds
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn poll(app: &TestApp) -> Value {
    let (status, body) = app.admin_post("/admin/crm/poll").await;
    assert_eq!(status, 200, "{body}");
    body
}

fn messages(body: &Value, crm: &str) -> u64 {
    body["polls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["crm"] == crm)
        .map_or(0, |p| p["messages"].as_u64().unwrap_or(0))
}

async fn spawn(sf: &Fake<fakes::salesforce::State>, hs: &Fake<fakes::hubspot::State>) -> TestApp {
    let (url, tmp) = fresh_database(Db::Sqlite).await;
    let mut c = test_config(url);
    c.destinations.salesforce = Some(SalesforceConfig::new(
        &sf.url,
        fakes::salesforce::CLIENT_ID,
        fakes::salesforce::CLIENT_SECRET,
    ));
    c.destinations.hubspot = Some(HubSpotConfig::oauth(
        &hs.url,
        fakes::hubspot::CLIENT_ID,
        fakes::hubspot::CLIENT_SECRET,
        fakes::hubspot::REFRESH_TOKEN,
    ));
    c.destinations.delivery.run_workers = false;
    c.crm.poll_interval = Duration::ZERO;
    c.crm.backfill = Duration::from_secs(86_400);
    c.crm.max_pages = 1000;
    c.crm.hubspot_app_secret = Some(fakes::hubspot::CLIENT_SECRET.into());
    c.rate_limit_per_second = 0;
    spawn_app_with(c, tmp).await
}

/// Salesforce: `n` Leads changed since the last poll, read by one poll.
async fn salesforce(n: usize) -> Row {
    let sf = fakes::salesforce::spawn().await;
    let hs = fakes::hubspot::spawn().await;
    let app = spawn(&sf, &hs).await;
    sf.with(|s| {
        for i in 0..n {
            s.create(
                "Lead",
                json!({"LastName": format!("Person {i}"), "Company": "Initech",
                       "Email": format!("lead{i}@initech.example"),
                       "Touchpoint_User_Id__c": format!("u-{i}")}),
            );
        }
    });
    poll(&app).await;
    app.wait_processed().await;
    sf.with(|s| {
        for i in 0..n {
            s.edit(
                "Lead",
                &format!("u-{i}"),
                json!({"Status": "Working - Contacted"}),
            );
        }
    });
    // A poll a minute or more after the last reads the delete log too.
    app.sql("UPDATE crm_watermarks SET deleted_at = deleted_at - 120000 WHERE crm = 'salesforce'")
        .await;
    let before = sf.requests("").len();
    let started = Instant::now();
    let body = poll(&app).await;
    let elapsed = started.elapsed();
    let all = sf.requests("");
    let calls = api_calls(&all[before..]);
    Row {
        scenario: "Salesforce poll (Lead status changed)".into(),
        changes: n,
        calls: calls.len(),
        detail: detail(&calls),
        messages: messages(&body, "salesforce"),
        elapsed,
    }
}

/// HubSpot: `n` contacts changed since the last poll, read by one poll.
async fn hubspot(n: usize) -> Row {
    let sf = fakes::salesforce::spawn().await;
    let hs = fakes::hubspot::spawn().await;
    let app = spawn(&sf, &hs).await;
    hs.with(|s| {
        for i in 0..n {
            s.create(
                "contacts",
                json!({"email": format!("c{i}@hooli.example"), "touchpoint_user_id": format!("u-{i}"),
                       "lifecyclestage": "lead"}),
            );
        }
    });
    poll(&app).await;
    app.wait_processed().await;
    hs.with(|s| {
        for i in 0..n {
            s.edit(
                "contacts",
                &(1001 + i).to_string(),
                json!({"lifecyclestage": "salesqualifiedlead"}),
            );
        }
    });
    let before = hs.requests("").len();
    let started = Instant::now();
    let body = poll(&app).await;
    let elapsed = started.elapsed();
    let all = hs.requests("");
    let calls = api_calls(&all[before..]);
    Row {
        scenario: "HubSpot poll (contact lifecycle stage changed)".into(),
        changes: n,
        calls: calls.len(),
        detail: detail(&calls),
        messages: messages(&body, "hubspot"),
        elapsed,
    }
}

/// HubSpot webhooks: `n` deal stage changes delivered 100 events a request.
async fn webhooks(n: usize) -> Row {
    let sf = fakes::salesforce::spawn().await;
    let hs = fakes::hubspot::spawn().await;
    let app = spawn(&sf, &hs).await;
    let r = app
        .post(
            "/v1/batch",
            SERVER_KEY,
            &json!({"batch": [{"type": "group", "userId": "u-1", "groupId": "acme",
                               "traits": {"name": "Acme"}}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    app.wait_processed().await;
    let deals: Vec<String> = hs.with(|s| {
        let company = s.create(
            "companies",
            json!({"name": "Acme", "touchpoint_account_id": "acme"}),
        );
        (0..n)
            .map(|i| {
                let d = s.create(
                    "deals",
                    json!({"dealname": format!("Deal {i}"), "dealstage": "appointmentscheduled",
                           "amount": "1000"}),
                );
                s.associate("deals", &d, "companies", &company);
                s.edit("deals", &d, json!({"dealstage": "closedwon"}));
                d
            })
            .collect()
    });
    let hook = format!("{}/v1/sources/hubspot/webhook", app.address);
    let before = hs.requests("").len();
    let started = Instant::now();
    let mut accepted = 0;
    for chunk in deals.chunks(100) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|d| {
                json!({"objectId": d.parse::<u64>().unwrap(), "subscriptionType": "deal.propertyChange",
                       "propertyName": "dealstage", "propertyValue": "closedwon",
                       "occurredAt": chrono::Utc::now().timestamp_millis(), "attemptNumber": 0})
            })
            .collect();
        let r = fakes::hubspot::deliver(
            &app.client,
            &hook,
            fakes::hubspot::CLIENT_SECRET,
            &Value::Array(events),
        )
        .await;
        assert_eq!(r.status(), 200);
        accepted += r.json::<Value>().await.unwrap()["messages"]
            .as_u64()
            .unwrap_or(0);
    }
    let elapsed = started.elapsed();
    let all = hs.requests("");
    let calls = api_calls(&all[before..]);
    Row {
        scenario: "HubSpot webhooks (deal stage changed, 100 events a delivery)".into(),
        changes: n,
        calls: calls.len(),
        detail: detail(&calls),
        messages: accepted,
        elapsed,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rows = vec![
        salesforce(1_000).await,
        salesforce(10_000).await,
        hubspot(1_000).await,
        hubspot(10_000).await,
        webhooks(1_000).await,
    ];
    println!(
        "| Scenario | Changes | API calls | Calls per 1,000 changes | Calls | Messages | Time |"
    );
    println!("|---|---:|---:|---:|---|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.1} | {} | {} | {:.2} s |",
            r.scenario,
            r.changes,
            r.calls,
            r.calls as f64 * 1000.0 / r.changes as f64,
            r.detail,
            r.messages,
            r.elapsed.as_secs_f64()
        );
    }
    Ok(())
}
