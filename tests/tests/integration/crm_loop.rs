//! The CRM loop end to end on both stores (issue 14): a profile becomes a Salesforce Lead; sales
//! works and converts it in the (fake) CRM and one poll brings status, owner, Contact, Account and
//! Opportunity back; the person leaves the nurture audience; a HubSpot deal stage change arrives
//! by signed webhook; conflicting edits on both sides resolve by last-modified; our own writes
//! never come back as changes.

use serde_json::{Value, json};
use std::time::Duration;
use touchpoint_core::Config;
use touchpoint_core::destinations::config::DeliveryConfig;
use touchpoint_core::destinations::hubspot::config::HubSpotConfig;
use touchpoint_core::destinations::salesforce::config::SalesforceConfig;
use touchpoint_tests::fakes::{self, Fake};
use touchpoint_tests::{
    Db, SERVER_KEY, TestApp, eventually, fresh_database, spawn_app_with, test_config,
};

crate::on_both_stores!(
    a_lead_is_worked_converted_and_closed_across_salesforce_and_hubspot_and_both_sides_stay_in_step,
);

const USER: &str = "u-ada";
const EMAIL: &str = "ada@engines.example";
const REP_ID: &str = "005REP000000000001";
const REP_EMAIL: &str = "rep@sales.example";

struct Crms {
    salesforce: Fake<fakes::salesforce::State>,
    hubspot: Fake<fakes::hubspot::State>,
}

/// A server syncing with both fake CRMs: people are Leads until they have an account, polls
/// happen only when the test asks, deliveries retry fast.
async fn spawn(db: Db, crms: &Crms, mappings_dir: &std::path::Path) -> TestApp {
    let (url, tmp) = fresh_database(db).await;
    let mut c: Config = test_config(url);
    c.destinations.salesforce = Some(SalesforceConfig::new(
        &crms.salesforce.url,
        fakes::salesforce::CLIENT_ID,
        fakes::salesforce::CLIENT_SECRET,
    ));
    c.destinations.hubspot = Some(HubSpotConfig::oauth(
        &crms.hubspot.url,
        fakes::hubspot::CLIENT_ID,
        fakes::hubspot::CLIENT_SECRET,
        fakes::hubspot::REFRESH_TOKEN,
    ));
    c.destinations.delivery = DeliveryConfig {
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(400),
        max_attempts: 50,
        poll: Duration::from_millis(50),
        ..DeliveryConfig::default()
    };
    let mappings = std::fs::read_to_string(touchpoint_tests::repo_root().join("CRM_MAPPINGS.md"))
        .unwrap()
        .replace(
            "- Salesforce person object: `contact`",
            "- Salesforce person object: `lead_until_account`",
        );
    let path = mappings_dir.join("CRM_MAPPINGS.md");
    std::fs::write(&path, mappings).unwrap();
    c.crm.mappings_path = path;
    c.crm.poll_interval = Duration::ZERO;
    c.crm.hubspot_app_secret = Some(fakes::hubspot::CLIENT_SECRET.into());
    spawn_app_with(c, tmp).await
}

/// One poll of every CRM, through the admin route; returns the Salesforce and HubSpot reports.
async fn poll(app: &TestApp) -> (Value, Value) {
    let (status, body) = app.admin_post("/admin/crm/poll").await;
    assert_eq!(status, 200, "{body}");
    let of = |crm: &str| {
        body["polls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["crm"] == crm)
            .cloned()
            .unwrap_or(Value::Null)
    };
    (of("salesforce"), of("hubspot"))
}

/// Waits until every processed message was turned into activations and both CRM destinations
/// have nothing pending or in flight.
async fn delivered(app: &TestApp) {
    audiences_settled(app).await;
    app.wait_delivered(&["salesforce", "hubspot"]).await;
}

/// Waits until the audience stage caught up with the profiles stage.
async fn audiences_settled(app: &TestApp) {
    app.wait_processed().await;
    eventually(10, "the audience stage catches up", async || {
        let (_, p) = app.admin_get("/admin/pipeline").await;
        p["audiencesCursor"].as_i64() >= p["profilesCursor"].as_i64()
    })
    .await;
}

async fn profile(app: &TestApp) -> Value {
    app.profile("user_id", USER)
        .await
        .expect("the profile exists")
}

async fn in_nurture(app: &TestApp, id: &str) -> bool {
    let (_, m) = app.admin_get("/admin/audiences/lead_nurture/members").await;
    m["members"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["profile_id"] == id)
}

fn iso(offset_secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(offset_secs))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn a_lead_is_worked_converted_and_closed_across_salesforce_and_hubspot_and_both_sides_stay_in_step(
    db: Db,
) {
    let crms = Crms {
        salesforce: fakes::salesforce::spawn().await,
        hubspot: fakes::hubspot::spawn().await,
    };
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(db, &crms, dir.path()).await;

    // 1. A profile becomes a Lead: a person without an account is a Lead, not a Contact.
    app.send_batch(
        SERVER_KEY,
        vec![
            json!({"type": "identify", "userId": USER, "timestamp": iso(-120),
            "traits": {"email": EMAIL, "name": "Ada Lovelace", "company": "Analytical Engines"}}),
        ],
    )
    .await;
    delivered(&app).await;
    let lead = crms
        .salesforce
        .with(|s| s.get("Lead", USER))
        .expect("the Lead exists");
    assert_eq!(lead["LastName"], "Lovelace");
    assert_eq!(lead["FirstName"], "Ada");
    assert_eq!(lead["Company"], "Analytical Engines");
    assert_eq!(lead["Email"], EMAIL);
    assert_eq!(lead["Status"], "Open - Not Contacted");
    assert!(crms.salesforce.with(|s| s.objects("Contact").is_empty()));
    let lead_id = lead["Id"].as_str().unwrap().to_owned();
    // Polling now finds our own write plus what Salesforce set itself (the default status, the
    // owner): only the latter come back.
    let (sf, _) = poll(&app).await;
    assert_eq!(
        sf["changes"], 2,
        "Status and Owner.Email, not the names we wrote: {sf}"
    );
    assert_eq!(sf["messages"], 1, "{sf}");
    app.wait_processed().await;
    let p = profile(&app).await;
    assert_eq!(p["traits"]["lead_status"], "Open", "{p:#}");
    assert_eq!(
        p["traits"]["crm_owner_email"],
        fakes::salesforce::OWNER_EMAIL
    );

    // 2. Sales works the Lead: status and owner change in Salesforce; one poll brings them.
    crms.salesforce.with(|s| {
        s.users.insert(REP_ID.into(), REP_EMAIL.into());
        s.edit(
            "Lead",
            USER,
            json!({"Status": "Working - Contacted", "OwnerId": REP_ID}),
        );
    });
    let (sf, _) = poll(&app).await;
    assert_eq!(sf["changes"], 2, "{sf}");
    assert_eq!(sf["messages"], 1, "{sf}");
    assert!(sf["calls"].as_u64().unwrap() >= 4, "{sf}");
    audiences_settled(&app).await;
    let p = profile(&app).await;
    let id = p["id"].as_str().unwrap().to_owned();
    assert_eq!(p["traits"]["lead_status"], "Working", "{p:#}");
    assert_eq!(p["traits"]["crm_owner_email"], REP_EMAIL);
    assert_eq!(p["traits"]["salesforce_lead_id"], lead_id.as_str());
    assert!(
        p["identities"].to_string().contains(&lead_id),
        "the Lead id is an identity: {}",
        p["identities"]
    );
    let (_, timeline) = app
        .admin_get(&format!("/admin/profiles/{id}/timeline"))
        .await;
    assert!(
        timeline["items"].as_array().unwrap().iter().any(|i| {
            i["message"]["context"]["crm"]["object"] == "Lead"
                && i["message"]["traits"]["lead_status"] == "Working"
        }),
        "the change is on the timeline: {timeline:#}"
    );
    assert!(in_nurture(&app, &id).await, "a worked Lead is nurtured");

    // 3. Sales converts the Lead into a Contact, an Account and an open Opportunity.
    let converted = crms.salesforce.with(|s| s.convert_lead(USER, 48_000.0));
    let group = format!("salesforce-{}", converted.account_id);
    let (sf, _) = poll(&app).await;
    assert!(sf["messages"].as_u64().unwrap() >= 4, "{sf}");
    assert_eq!(
        sf["writeBacks"], 1,
        "the Account gets its external id: {sf}"
    );
    audiences_settled(&app).await;
    let p = profile(&app).await;
    assert_eq!(
        p["traits"]["salesforce_contact_id"],
        converted.contact_id.as_str()
    );
    assert_eq!(p["traits"]["lead_status"], "Converted");
    let account = p["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["groupId"] == group.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("the person belongs to {group}: {p:#}"));
    assert_eq!(account["traits"]["open_opportunity"], true, "{account:#}");
    assert_eq!(account["traits"]["opportunity_stage"], "Prospecting");
    assert_eq!(account["traits"]["opportunity_amount"], 48000);
    assert_eq!(account["traits"]["name"], "Analytical Engines");
    assert_eq!(
        account["traits"]["salesforce_account_id"],
        converted.account_id.as_str()
    );
    assert!(
        !in_nurture(&app, &id).await,
        "an open opportunity takes the person out of nurture"
    );
    assert_eq!(
        crms.salesforce
            .with(|s| s.get("Account", &converted.account_id))
            .unwrap()["Touchpoint_Account_Id__c"],
        group.as_str()
    );
    // The account reached HubSpot as a company (its changes came from Salesforce, so they were
    // not sent back there).
    delivered(&app).await;
    assert!(
        crms.hubspot
            .with(|s| s.get("companies", &group))
            .is_some_and(|c| c["name"] == "Analytical Engines"),
        "{:?}",
        crms.hubspot.with(|s| s.objects.clone())
    );
    assert_eq!(
        crms.salesforce.with(|s| s.objects("Account").len()),
        1,
        "no second Account"
    );
    // The person's HubSpot contact is associated with that company.
    let linked = crms.hubspot.with(|s| {
        let contact = s.id_of("contacts", EMAIL).unwrap();
        let company = s.id_of("companies", &group).unwrap();
        s.associations
            .contains(&("contacts".into(), contact, "companies".into(), company))
    });
    assert!(
        linked,
        "{:?}",
        crms.hubspot.with(|s| s.associations.clone())
    );

    // 4. A HubSpot deal stage change arrives by (signed) webhook.
    let deal = crms.hubspot.with(|s| {
        let d = s.create(
            "deals",
            json!({"dealname": "Analytical Engines - expansion", "dealstage": "appointmentscheduled",
                   "amount": "9000", "pipeline": "default"}),
        );
        s.associate("deals", &d, "companies", &group);
        s.edit("deals", &d, json!({"dealstage": "closedwon"}));
        d
    });
    let hook = format!("{}/v1/sources/hubspot/webhook", app.address);
    let events = json!([{"eventId": 3_816_279_340u64, "subscriptionId": 25, "portalId": 33,
        "appId": 1_160_452, "occurredAt": chrono::Utc::now().timestamp_millis(),
        "subscriptionType": "deal.propertyChange", "attemptNumber": 0,
        "objectId": deal.parse::<u64>().unwrap(), "propertyName": "dealstage",
        "propertyValue": "closedwon", "changeSource": "CRM"}]);
    let forged = fakes::hubspot::deliver(&app.client, &hook, "not-the-secret", &events).await;
    assert_eq!(forged.status(), 401);
    let r =
        fakes::hubspot::deliver(&app.client, &hook, fakes::hubspot::CLIENT_SECRET, &events).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    app.wait_processed().await;
    let p = profile(&app).await;
    let account = p["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["groupId"] == group.as_str())
        .cloned()
        .unwrap();
    assert_eq!(account["traits"]["deal_stage"], "closedwon", "{account:#}");
    assert_eq!(account["traits"]["deal_amount"], 9000);
    assert_eq!(
        account["traits"]["deal_name"],
        "Analytical Engines - expansion"
    );

    // 5. Conflicting edits resolve by last-modified, field by field.
    // a) The CRM changed the title after our (older) value was set: the CRM wins on both sides.
    crms.salesforce.with(|s| {
        s.edit(
            "Contact",
            &converted.contact_id,
            json!({"Title": "VP Engineering"}),
        )
    });
    poll(&app).await;
    app.send_batch(
        SERVER_KEY,
        vec![
            json!({"type": "identify", "userId": USER, "timestamp": iso(-3600),
            "traits": {"job_title": "CTO"}}),
        ],
    )
    .await;
    delivered(&app).await;
    assert_eq!(profile(&app).await["traits"]["job_title"], "VP Engineering");
    assert_eq!(
        crms.salesforce
            .with(|s| s.get("Contact", &converted.contact_id))
            .unwrap()["Title"],
        "VP Engineering",
        "our older value did not overwrite the CRM's newer one"
    );
    // b) We changed it after the CRM did: ours wins on both sides, and does not echo back.
    app.send_batch(
        SERVER_KEY,
        vec![
            json!({"type": "identify", "userId": USER, "timestamp": iso(0),
            "traits": {"job_title": "Chief Scientist"}}),
        ],
    )
    .await;
    delivered(&app).await;
    assert_eq!(
        crms.salesforce
            .with(|s| s.get("Contact", &converted.contact_id))
            .unwrap()["Title"],
        "Chief Scientist"
    );
    let (sf, hs) = poll(&app).await;
    assert_eq!(sf["changes"], 0, "our own write is not a change: {sf}");
    assert_eq!(sf["messages"], 0, "{sf}");
    assert_eq!(hs["messages"], 0, "{hs}");
    assert_eq!(
        profile(&app).await["traits"]["job_title"],
        "Chief Scientist"
    );

    // The fakes saw only well-formed requests.
    assert!(
        crms.salesforce.with(|s| s.problems.is_empty()),
        "{:?}",
        crms.salesforce.with(|s| s.problems.clone())
    );
    assert!(
        crms.hubspot.with(|s| s.problems.is_empty()),
        "{:?}",
        crms.hubspot.with(|s| s.problems.clone())
    );
    let (_, log) = app.admin_get("/admin/destinations/salesforce/log").await;
    assert!(
        log["dead"].as_array().is_none_or(|d| d.is_empty()),
        "no dead letters: {log:#}"
    );
}

crate::on_both_stores!(a_poll_pages_through_query_more_and_search_results_and_reads_deletions_once,);

async fn a_poll_pages_through_query_more_and_search_results_and_reads_deletions_once(db: Db) {
    let crms = Crms {
        salesforce: fakes::salesforce::spawn().await,
        hubspot: fakes::hubspot::spawn().await,
    };
    // Pages of 3 records, so 7 changed Leads take three queryMore rounds.
    crms.salesforce.with(|s| s.query_batch = 3);
    let dir = tempfile::tempdir().unwrap();
    let app = {
        let (url, tmp) = fresh_database(db).await;
        let mut c: Config = test_config(url);
        c.destinations.salesforce = Some(SalesforceConfig::new(
            &crms.salesforce.url,
            fakes::salesforce::CLIENT_ID,
            fakes::salesforce::CLIENT_SECRET,
        ));
        c.destinations.hubspot = Some(HubSpotConfig::oauth(
            &crms.hubspot.url,
            fakes::hubspot::CLIENT_ID,
            fakes::hubspot::CLIENT_SECRET,
            fakes::hubspot::REFRESH_TOKEN,
        ));
        std::fs::copy(
            touchpoint_tests::repo_root().join("CRM_MAPPINGS.md"),
            dir.path().join("CRM_MAPPINGS.md"),
        )
        .unwrap();
        c.crm.mappings_path = dir.path().join("CRM_MAPPINGS.md");
        c.crm.poll_interval = Duration::ZERO;
        // Read from a day back, so the deletion log has a span Salesforce accepts.
        c.crm.backfill = Duration::from_secs(86_400);
        spawn_app_with(c, tmp).await
    };
    // Records sales created in the CRMs themselves: nobody in Touchpoint knows them yet.
    crms.salesforce.with(|s| {
        for i in 0..7 {
            let id = s.create(
                "Lead",
                json!({"LastName": format!("Person {i}"), "Company": "Initech",
                       "Email": format!("lead{i}@initech.example"), "Status": "Working - Contacted"}),
            );
            // Last modified ten minutes ago.
            let past = fakes::salesforce::sf_time(chrono::Utc::now().timestamp_millis() - 600_000);
            let lead = s.records.get_mut("Lead").unwrap().get_mut(&id).unwrap();
            lead.insert("SystemModstamp".into(), json!(past));
        }
    });
    crms.hubspot.with(|s| {
        for i in 0..450 {
            s.create(
                "contacts",
                json!({"email": format!("contact{i}@hooli.example"), "lifecyclestage": "lead"}),
            );
        }
    });
    let (sf, hs) = poll(&app).await;
    assert_eq!(sf["records"], 7, "{sf}");
    assert_eq!(sf["messages"], 7, "{sf}");
    // The Leads may already have reached HubSpot as contacts by the time it is polled.
    let first = hs["records"].as_u64().unwrap();
    assert!((450..=457).contains(&first), "{hs}");
    assert_eq!(hs["messages"], hs["records"], "{hs}");
    let soql: Vec<String> = crms.salesforce.with(|s| s.queries.clone());
    assert_eq!(soql.len(), 4, "one query per object: {soql:#?}");
    assert_eq!(
        crms.salesforce.requests("/query/01gFAKE").len(),
        2,
        "two queryMore rounds after the first page of 3"
    );
    let searches = crms.hubspot.with(|s| s.searches.clone());
    let contact_pages: Vec<&Value> = searches
        .iter()
        .filter(|b| b["filterGroups"][0]["filters"][0]["propertyName"] == "lastmodifieddate")
        .collect();
    assert_eq!(contact_pages.len(), 3, "450 contacts in pages of 200");
    assert_eq!(contact_pages[2]["after"], "400");
    app.wait_processed().await;
    let lead = app
        .profile("email", "lead3@initech.example")
        .await
        .expect("a Lead sales created is a profile, matched later by its email");
    assert_eq!(lead["traits"]["lead_status"], "Working");
    assert!(
        app.profile("email", "contact449@hooli.example")
            .await
            .is_some_and(|p| p["traits"]["lifecycle_stage"] == "lead")
    );

    // The seven Leads reached HubSpot as contacts (changes from Salesforce go to HubSpot): the
    // next poll meets them there once, to learn their HubSpot ids; after that, nothing is new
    // (the newest records are read again — the watermark is inclusive — and found unchanged).
    delivered(&app).await;
    let (sf, hs) = poll(&app).await;
    assert_eq!(sf["messages"], 0, "{sf}");
    assert_eq!(hs["messages"].as_u64().unwrap(), 457 - first, "{hs}");
    app.wait_processed().await;
    assert!(
        app.profile("email", "lead3@initech.example")
            .await
            .is_some_and(|p| p["traits"]["hubspot_contact_id"].is_string())
    );
    let (sf, hs) = poll(&app).await;
    assert_eq!(sf["messages"], 0, "{sf}");
    assert_eq!(hs["messages"], 0, "{hs}");

    // A deleted Lead clears what it fed into the profile, once. Salesforce's delete log covers
    // whole minutes, at least one apart: the deletion happened two minutes ago and the last read
    // of the log ten.
    app.sql(
        "UPDATE crm_watermarks SET deleted_at = deleted_at - 600000 \
         WHERE crm = 'salesforce' AND object = 'Lead'",
    )
    .await;
    crms.salesforce.with(|s| {
        let id = s
            .objects("Lead")
            .iter()
            .find(|l| l["Email"] == "lead3@initech.example")
            .unwrap()["Id"]
            .as_str()
            .unwrap()
            .to_owned();
        s.delete("Lead", &id);
        // The delete log covers whole minutes: date the deletion a minute back.
        let last = s.delete_log.len() - 1;
        s.delete_log[last].2 -= 120_000;
    });
    let (sf, _) = poll(&app).await;
    assert_eq!(sf["messages"], 1, "{sf}");
    let (sf, _) = poll(&app).await;
    assert_eq!(sf["messages"], 0, "a deletion is read once: {sf}");
    app.wait_processed().await;
    let lead = app.profile("email", "lead3@initech.example").await.unwrap();
    assert!(
        lead["traits"]["lead_status"].is_null(),
        "{:#}",
        lead["traits"]
    );
    assert!(crms.salesforce.with(|s| s.problems.is_empty()));
    assert!(crms.hubspot.with(|s| s.problems.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_check_compares_the_mappings_with_describe_and_properties_and_says_what_to_fix() {
    let crms = Crms {
        salesforce: fakes::salesforce::spawn().await,
        hubspot: fakes::hubspot::spawn().await,
    };
    let mut c: Config = test_config("sqlite://unused".into());
    c.destinations.salesforce = Some(SalesforceConfig::new(
        &crms.salesforce.url,
        fakes::salesforce::CLIENT_ID,
        fakes::salesforce::CLIENT_SECRET,
    ));
    c.destinations.hubspot = Some(HubSpotConfig::oauth(
        &crms.hubspot.url,
        fakes::hubspot::CLIENT_ID,
        fakes::hubspot::CLIENT_SECRET,
        fakes::hubspot::REFRESH_TOKEN,
    ));
    let root = touchpoint_tests::repo_root();
    let text = std::fs::read_to_string(root.join("CRM_MAPPINGS.md")).unwrap();
    let plan = touchpoint_tracking_plan::parse(
        &std::fs::read_to_string(root.join("TRACKING_PLAN.md")).unwrap(),
    )
    .unwrap();
    let (mappings, _) = touchpoint_core::crm::mapping::load(&text, &plan).unwrap();
    let run = async || {
        touchpoint_core::crm::check::run(&c, &mappings, "CRM_MAPPINGS.md", &plan)
            .await
            .unwrap()
    };
    let (report, ok) = run().await;
    assert!(ok, "the fakes are set up as the mappings expect:\n{report}");
    assert!(
        report.contains("7 object(s) checked: 0 thing(s) to fix"),
        "{report}"
    );

    // An org without the external id on Contacts, a renamed Lead status, a portal whose plan
    // tiers lack `enterprise`.
    crms.salesforce.with(|s| {
        s.schema
            .get_mut("Contact")
            .unwrap()
            .retain(|f| f.name != "Touchpoint_User_Id__c");
        let status = s
            .schema
            .get_mut("Lead")
            .unwrap()
            .iter_mut()
            .find(|f| f.name == "Status")
            .unwrap();
        status.picklist.push("Recycled".into());
    });
    crms.hubspot.with(|s| {
        let tier = s
            .schema
            .get_mut("companies")
            .unwrap()
            .iter_mut()
            .find(|p| p.name == "plan_tier")
            .unwrap();
        tier.options.retain(|o| o != "enterprise");
    });
    let (report, ok) = run().await;
    assert!(!ok);
    let line = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    for expected in [
        format!(
            "CRM_MAPPINGS.md:{}: salesforce Contact.Touchpoint_User_Id__c is missing",
            line("## Salesforce Contact")
        ),
        format!(
            "CRM_MAPPINGS.md:{}: salesforce Lead.Status has the value \"Recycled\", which matches none of lead_status's values",
            line("| `Status` | `lead_status`")
        ),
        format!(
            "CRM_MAPPINGS.md:{}: hubspot companies.plan_tier lacks the value \"enterprise\"",
            line("| `plan_tier` | `account.plan_tier`")
        ),
    ] {
        assert!(report.contains(&expected), "{expected}\nin\n{report}");
    }
    assert!(report.contains("3 thing(s) to fix"), "{report}");
}
