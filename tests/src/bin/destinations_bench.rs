//! Destinations benchmark: API calls per 1,000 profile updates for each destination, thanks to
//! batching. Spawns core (SQLite) and the local fake APIs, sends 1,000 messages (250 users in 50
//! accounts, each: identify, group, page, feature_toggled), waits for every outbox to drain, and
//! prints a markdown table of calls made versus one call per activation.
//!
//! `cargo run --release -p touchpoint-tests --bin destinations-bench`
#![allow(clippy::print_stdout)]

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use touchpoint_core::destinations::config::DeliveryConfig;
use touchpoint_core::destinations::ga4::config::Ga4Config;
use touchpoint_core::destinations::hubspot::config::HubSpotConfig;
use touchpoint_core::destinations::meta::config::MetaConfig;
use touchpoint_core::destinations::salesforce::config::SalesforceConfig;
use touchpoint_core::destinations::webhook::config::WebhookConfig;
use touchpoint_tests::{
    ADMIN_TOKEN, Db, WEB_KEY, fakes, fresh_database, spawn_app_with, test_config,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sf = fakes::salesforce::spawn().await;
    let hs = fakes::hubspot::spawn().await;
    let ga4 = fakes::ga4::spawn().await;
    let meta = fakes::meta::spawn().await;
    let hook = fakes::webhook::spawn().await;
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
    c.destinations.ga4 = Some(Ga4Config::new(
        &ga4.url,
        fakes::ga4::MEASUREMENT_ID,
        fakes::ga4::API_SECRET,
    ));
    c.destinations.meta = Some(MetaConfig::pixel(
        &meta.url,
        fakes::meta::PIXEL_ID,
        fakes::meta::ACCESS_TOKEN,
    ));
    c.destinations.webhook = Some(WebhookConfig {
        url: hook.url.clone(),
        secret: fakes::webhook::SECRET.into(),
    });
    c.destinations.delivery = DeliveryConfig {
        poll: Duration::from_millis(200),
        ..DeliveryConfig::default()
    };
    let app = spawn_app_with(c, tmp).await;

    let started = Instant::now();
    let mut batch = Vec::new();
    for u in 0..250 {
        let user = format!("user-{u}");
        let anon = format!("anon-{u}");
        let group = format!("acct-{}", u % 50);
        batch.push(
            json!({"type": "identify", "userId": user, "anonymousId": anon,
            "traits": {"email": format!("{user}@example.com"), "name": format!("User {u}")}}),
        );
        batch.push(json!({"type": "group", "userId": user, "groupId": group,
            "traits": {"name": format!("Account {}", u % 50), "seats_provisioned": 3}}));
        batch.push(json!({"type": "page", "userId": user, "anonymousId": anon,
            "properties": {"url": "https://example.com/app", "title": "App"}}));
        batch.push(
            json!({"type": "track", "userId": user, "anonymousId": anon, "event": "feature_toggled",
            "properties": {"feature_name": "dark_mode", "new_status": true}}),
        );
    }
    for chunk in batch.chunks(100) {
        let r = app
            .post("/v1/batch", WEB_KEY, &json!({"batch": chunk}))
            .await;
        anyhow::ensure!(r.status() == 200, "ingest failed: {}", r.status());
    }
    app.wait_processed().await;
    let names = ["salesforce", "hubspot", "ga4", "meta", "webhook"];
    let status = loop {
        let s: Value = app
            .client
            .get(format!("{}/admin/destinations", app.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?
            .json()
            .await?;
        let busy = s["destinations"].as_array().into_iter().flatten().any(|d| {
            names.contains(&d["name"].as_str().unwrap_or(""))
                && (d["outbox"]["pending"] != 0 || d["outbox"]["delivering"] != 0)
        });
        // The activation stage may not have run yet right after processing.
        let total: i64 = s["destinations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| d["outbox"]["delivered"].as_i64().unwrap_or(0))
            .sum();
        if !busy && total > 0 {
            break s;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "outboxes did not drain"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let elapsed = started.elapsed();
    let calls = |name: &str| -> usize {
        match name {
            "salesforce" => sf.requests("/services/data/").len(),
            "hubspot" => hs.requests("/crm/").len(),
            "ga4" => ga4.requests("/mp/collect").len(),
            "meta" => meta.requests("/events").len(),
            _ => hook.requests("").len(),
        }
    };
    let tokens = sf.requests("/oauth2/token").len() + hs.requests("/oauth/v1/token").len();
    println!(
        "1,000 profile updates (250 users × identify, group, page, feature_toggled; 50 accounts),"
    );
    println!(
        "delivered in {:.1} s (SQLite, one core process, local fake APIs).\n",
        elapsed.as_secs_f64()
    );
    println!(
        "| destination | activations (outbox rows) | API calls | calls per 1,000 updates | without batching |"
    );
    println!("|---|---:|---:|---:|---:|");
    for d in s_list(&status) {
        let (name, rows) = d;
        if !names.contains(&name.as_str()) {
            continue;
        }
        let n = calls(&name);
        println!("| {name} | {rows} | {n} | {n} | {rows} |");
    }
    println!("\nOAuth token calls (once per process, not counted above): {tokens}.");
    Ok(())
}

fn s_list(status: &Value) -> Vec<(String, i64)> {
    status["destinations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (
                d["name"].as_str().unwrap_or("").to_owned(),
                d["outbox"]["delivered"].as_i64().unwrap_or(0)
                    + d["outbox"]["dead"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}
