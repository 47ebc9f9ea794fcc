//! Seed 000 end to end, with every real part: headless Chromium browses a site whose first-party
//! `/px` path is the edge worker running in workerd; the worker forwards signed batches to core
//! (SQLite, then PostgreSQL); core resolves the profile, evaluates the PQL and delivers to fake
//! Salesforce and fake GA4. Screenshots of the debugger, profile and audience pages are kept in
//! `target/screenshots/e2e-*/` (the README's walk-through uses them), the delivery log's too.

use std::time::Duration;
use touchpoint_core::destinations::config::DeliveryConfig;
use touchpoint_core::destinations::ga4::config::Ga4Config;
use touchpoint_core::destinations::salesforce::config::SalesforceConfig;
use touchpoint_tests::fakes;
use touchpoint_tests::{
    ADMIN_TOKEN, Db, EDGE_SECRET, WEB_KEY, fresh_database, repo_root, run_node_script,
    spawn_app_with, test_config,
};

crate::on_both_stores!(the_seed_story_runs_from_a_real_browser_through_the_edge_to_salesforce);

async fn the_seed_story_runs_from_a_real_browser_through_the_edge_to_salesforce(db: Db) {
    let salesforce = fakes::salesforce::spawn().await;
    let ga4 = fakes::ga4::spawn().await;
    let (url, tmp) = fresh_database(db).await;
    let mut config = test_config(url);
    config.destinations.salesforce = Some(SalesforceConfig::new(
        &salesforce.url,
        fakes::salesforce::CLIENT_ID,
        fakes::salesforce::CLIENT_SECRET,
    ));
    config.destinations.ga4 = Some(Ga4Config::new(
        &ga4.url,
        fakes::ga4::MEASUREMENT_ID,
        fakes::ga4::API_SECRET,
    ));
    config.destinations.delivery = DeliveryConfig {
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(400),
        poll: Duration::from_millis(50),
        ..DeliveryConfig::default()
    };
    let app = spawn_app_with(config, tmp).await;

    let user = format!("user-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let out = repo_root().join(format!("target/screenshots/e2e-{db:?}").to_lowercase());
    std::fs::create_dir_all(&out).unwrap();
    let out_dir = out.display().to_string();
    let stdout = run_node_script(
        "tests/browser/e2e.mjs",
        &[
            &app.address,
            EDGE_SECRET,
            WEB_KEY,
            ADMIN_TOKEN,
            &user,
            &out_dir,
        ],
        Duration::from_secs(180),
    )
    .await;
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let anonymous_id = result["anonymousId"].as_str().unwrap().to_owned();

    // The anonymous browsing is stitched into the signed-up user's profile.
    app.wait_processed().await;
    let by_user = app.profile("user_id", &user).await.expect("profile");
    let by_anon = app.profile("anonymous_id", &anonymous_id).await.unwrap();
    assert_eq!(by_user["id"], by_anon["id"]);
    let computed = &by_user["computed"];
    assert_eq!(computed["events"]["teammate_invited"]["total"], 2);
    assert_eq!(computed["events"]["workspace_created"]["total"], 1);
    assert!(
        computed["page_views"]["total"].as_i64().unwrap() >= 3,
        "{computed}"
    );
    let id = by_user["id"].as_str().unwrap();
    let (_, timeline) = app
        .admin_get(&format!("/admin/profiles/{id}/timeline?limit=100"))
        .await;
    let items = timeline["items"].as_array().unwrap();
    let first_page = items
        .iter()
        .rev()
        .find(|i| i["message"]["type"] == "page")
        .expect("the anonymous page view is in the timeline");
    let m = &first_page["message"];
    assert_eq!(m["anonymousId"], anonymous_id.as_str());
    assert!(m.get("userId").is_none(), "it was sent before sign-up");
    assert_eq!(
        m["context"]["ip"], "198.51.100.0",
        "the edge truncated the IP"
    );
    assert!(
        m["context"]["edge"].is_object(),
        "it went through the edge: {m}"
    );

    // Salesforce: Account, Contact and Product_Usage, then the PQL Task for the owner.
    let mut task = None;
    for _ in 0..300 {
        task = salesforce.with(|s| s.objects("Task").into_iter().next());
        if task.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let task = task.expect("the PQL Task reached Salesforce");
    let (account, contact, usage, problems) = salesforce.with(|s| {
        (
            s.get("Account", "ws-acme"),
            s.get("Contact", &user),
            s.get("Product_Usage__c", "ws-acme"),
            s.problems.clone(),
        )
    });
    assert!(problems.is_empty(), "{problems:?}");
    let account = account.expect("Account");
    let contact = contact.expect("Contact");
    assert_eq!(contact["AccountId"], account["Id"]);
    assert_eq!(contact["Email"], "ada@acme.example");
    let usage = usage.expect("Product_Usage__c");
    assert_eq!(usage["Account__c"], account["Id"]);
    assert_eq!(usage["Journey_Stage__c"], "Expansion");
    assert_eq!(task["WhatId"], account["Id"]);
    assert_eq!(task["OwnerId"], fakes::salesforce::OWNER_ID);
    let description = task["Description"].as_str().unwrap();
    assert!(
        description.contains("seats_provisioned = 5"),
        "{description}"
    );
    assert!(description.contains("slack"), "{description}");

    // GA4 got the page views and events server-side, keyed by the browser's anonymousId.
    let mut names = Vec::new();
    for _ in 0..300 {
        names = ga4.with(|s| {
            s.events
                .iter()
                .filter(|(client, _, _)| *client == anonymous_id)
                .filter_map(|(_, _, e)| e["name"].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        });
        if names.iter().filter(|n| *n == "teammate_invited").count() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for expected in [
        "page_view",
        "trial_started",
        "workspace_created",
        "teammate_invited",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "GA4 lacks {expected}: {names:?}"
        );
    }
    assert!(ga4.with(|s| s.problems.is_empty()));
    for shot in [
        "debugger.png",
        "profile.png",
        "audiences.png",
        "deliveries.png",
    ] {
        let len = std::fs::metadata(out.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 10_000, "{shot} screenshot ({len} bytes)");
    }
}
