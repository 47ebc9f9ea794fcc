//! Lead scoring and handoff end to end on both stores (issue 15): three prospects reach sales
//! through the three kinds of trigger in `LEAD_HANDOFF.md` — a score over the threshold, a demo
//! request, fourteen days in the nurture audience — and go to reps by round robin and by territory,
//! with the owner set and a first follow-up Task in the fake Salesforce and HubSpot, an email at
//! the fake Resend, a reminder once the (injected) clock has moved past the reminder delay while
//! the Task is still open, and nobody handed off twice (nor customers, nor open opportunities).

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use touchpoint_core::Config;
use touchpoint_core::destinations::config::DeliveryConfig;
use touchpoint_core::destinations::hubspot::config::HubSpotConfig;
use touchpoint_core::destinations::resend::config::ResendConfig;
use touchpoint_core::destinations::salesforce::config::SalesforceConfig;
use touchpoint_core::pipeline::ClockRef;
use touchpoint_core::pipeline::{Clock, ManualClock};
use touchpoint_tests::fakes::{self, Fake};
use touchpoint_tests::{
    ADMIN_TOKEN, Db, SERVER_KEY, TestApp, eventually, fresh_database, spawn_app_with, test_config,
};

crate::on_both_stores!(
    three_prospects_reach_sales_by_score_behaviour_and_time_in_nurture_once_each_with_owner_task_email_and_reminder,
    a_handoff_whose_email_failed_is_finished_later_without_repeating_the_crm_steps,
);

const DAY: Duration = Duration::from_secs(86_400);
/// Reps of `LEAD_HANDOFF.md`: the inbound team takes turns, emea has only a HubSpot owner id.
const INES_SF: &str = "005REP000000000001";
const JON_SF: &str = "005REP000000000002";
const ERIK_HS: &str = "52000001";
const INES_HS: &str = "52000004";
const JON_HS: &str = "52000005";

struct World {
    salesforce: Fake<fakes::salesforce::State>,
    hubspot: Fake<fakes::hubspot::State>,
    resend: Fake<fakes::resend::State>,
}

async fn spawn(db: Db, w: &World, clock: Arc<ManualClock>) -> TestApp {
    let (url, tmp) = fresh_database(db).await;
    let mut c: Config = test_config(url);
    c.destinations.salesforce = Some(SalesforceConfig::new(
        &w.salesforce.url,
        fakes::salesforce::CLIENT_ID,
        fakes::salesforce::CLIENT_SECRET,
    ));
    c.destinations.hubspot = Some(HubSpotConfig::oauth(
        &w.hubspot.url,
        fakes::hubspot::CLIENT_ID,
        fakes::hubspot::CLIENT_SECRET,
        fakes::hubspot::REFRESH_TOKEN,
    ));
    c.destinations.resend = Some(ResendConfig {
        url: w.resend.url.clone(),
        api_key: fakes::resend::API_KEY.into(),
        audiences: Default::default(),
        requests_per_sec: 50,
    });
    c.destinations.delivery = DeliveryConfig {
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(400),
        max_attempts: 50,
        poll: Duration::from_millis(50),
        ..DeliveryConfig::default()
    };
    c.crm.mappings_path = touchpoint_tests::repo_root().join("CRM_MAPPINGS.md");
    c.crm.poll_interval = Duration::ZERO;
    // Stages run when woken by the stage before them, never by their poll.
    c.stage_poll = Duration::from_secs(600);
    c.handoff.path = touchpoint_tests::repo_root().join("LEAD_HANDOFF.md");
    // Time-based rules run when the test asks (POST /admin/handoffs/tick), on the test's clock.
    c.handoff.tick = Duration::ZERO;
    c.handoff.clock = Some(ClockRef(clock));
    spawn_app_with(c, tmp).await
}

/// Waits until the profiles, audience and handoff stages have caught up with the whole log (the
/// scores the handoff stage records are messages too), and the CRM outboxes are empty.
async fn settled(app: &TestApp) {
    eventually(30, "every stage catches up with the log", async || {
        let (_, h) = app.admin_get("/admin/handoffs").await;
        let (_, p) = app.admin_get("/admin/pipeline").await;
        let head = p["logHead"].as_i64().unwrap_or(i64::MAX);
        h["cursor"].as_i64() >= Some(head)
            && p["profilesCursor"].as_i64() >= Some(head)
            && p["audiencesCursor"].as_i64() >= Some(head)
    })
    .await;
    app.wait_delivered(&["salesforce", "hubspot"]).await;
}

fn iso(offset_secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(offset_secs))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn handoffs(app: &TestApp) -> Vec<Value> {
    let (status, body) = app.admin_get("/admin/handoffs").await;
    assert_eq!(status, 200, "{body}");
    let mut rows = body["handoffs"].as_array().cloned().unwrap_or_default();
    rows.reverse();
    rows
}

async fn profile_id(app: &TestApp, user: &str) -> String {
    app.profile("user_id", user)
        .await
        .expect("the profile exists")["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn of<'a>(rows: &'a [Value], profile: &str) -> Vec<&'a Value> {
    rows.iter().filter(|h| h["profileId"] == profile).collect()
}

async fn tick(app: &TestApp) -> Value {
    let (status, body) = app.admin_post("/admin/handoffs/tick").await;
    assert_eq!(status, 200, "{body}");
    body
}

fn invited() -> Value {
    json!({"workspace_id": "ws-1", "invitee_role": "member"})
}

async fn three_prospects_reach_sales_by_score_behaviour_and_time_in_nurture_once_each_with_owner_task_email_and_reminder(
    db: Db,
) {
    let w = World {
        salesforce: fakes::salesforce::spawn().await,
        hubspot: fakes::hubspot::spawn().await,
        resend: fakes::resend::spawn().await,
    };
    w.salesforce.with(|s| {
        for (id, email) in [
            (INES_SF, "ines@sales.example"),
            (JON_SF, "jon@sales.example"),
            ("005REP000000000003", "hana@sales.example"),
        ] {
            s.users.insert(id.into(), email.into());
        }
    });
    w.hubspot.with(|s| {
        for (id, email) in [
            (ERIK_HS, "erik@sales.example"),
            ("52000003", "hana@sales.example"),
            (INES_HS, "ines@sales.example"),
            (JON_HS, "jon@sales.example"),
        ] {
            s.owners.insert(id.into(), email.into());
        }
    });
    let clock = Arc::new(ManualClock::at(chrono::Utc::now().timestamp_millis()));
    let app = spawn(db, &w, clock.clone()).await;

    // The prospects, as marketing knows them: Ada (a VP at a 500-person company, US), Bruno
    // (Germany, in nurture), Chloe (US, in nurture); Dana is a customer and Eve's account has an
    // open opportunity.
    app.send_batch(SERVER_KEY, vec![
            json!({"type": "identify", "userId": "u-ada", "timestamp": iso(-900), "traits": {
                "email": "ada@engines.example", "name": "Ada Lovelace", "first_name": "Ada", "last_name": "Lovelace",
                "job_title": "VP Engineering", "company": "Analytical Engines", "country": "US"}}),
            json!({"type": "group", "userId": "u-ada", "groupId": "acct-engines", "timestamp": iso(-900),
                "traits": {"name": "Analytical Engines", "employees": 500, "industry": "Software"}}),
            json!({"type": "identify", "userId": "u-bruno", "timestamp": iso(-900), "traits": {
                "email": "bruno@fabrik.example", "name": "Bruno Weber", "first_name": "Bruno", "last_name": "Weber",
                "country": "DE", "lead_status": "Nurturing"}}),
            json!({"type": "identify", "userId": "u-chloe", "timestamp": iso(-900), "traits": {
                "email": "chloe@orbit.example", "name": "Chloe Martin", "first_name": "Chloe", "last_name": "Martin",
                "country": "US", "job_title": "Analyst", "lead_status": "Nurturing"}}),
            json!({"type": "identify", "userId": "u-dana", "timestamp": iso(-900), "traits": {
                "email": "dana@customer.example", "name": "Dana Ruiz", "country": "US", "lifecycle_stage": "customer"}}),
            json!({"type": "identify", "userId": "u-eve", "timestamp": iso(-900), "traits": {
                "email": "eve@deal.example", "name": "Eve Stone", "country": "US"}}),
            json!({"type": "group", "userId": "u-eve", "groupId": "acct-deal", "timestamp": iso(-900),
                "traits": {"name": "Deal Corp", "open_opportunity": true}}),
        ],
    )
    .await;
    settled(&app).await;
    assert!(handoffs(&app).await.is_empty(), "nobody is ready yet");
    let ada = profile_id(&app, "u-ada").await;
    let bruno = profile_id(&app, "u-bruno").await;
    let chloe = profile_id(&app, "u-chloe").await;
    let (_, nurture) = app.admin_get("/admin/audiences/lead_nurture/members").await;
    let members = nurture["members"].to_string();
    assert!(
        members.contains(&bruno) && members.contains(&chloe),
        "{nurture}"
    );

    // 1. Score: Ada invites four teammates (4 × 40 points) on top of her role (150) and company
    //    size (200): 510 ≥ 500, an immediate handoff. 2. Behaviour: Bruno requests a demo.
    //    Dana (a customer) requests one too, and Eve (open opportunity) visits the pricing page.
    let mut batch: Vec<Value> = (0..4)
        .map(|i| {
            json!({"type": "track", "userId": "u-ada", "event": "teammate_invited",
            "timestamp": iso(-300 + i), "properties": invited()})
        })
        .collect();
    batch.push(
        json!({"type": "track", "userId": "u-bruno", "event": "demo_requested",
        "timestamp": iso(-200), "properties": {"source": "pricing_page"}}),
    );
    batch.push(
        json!({"type": "track", "userId": "u-dana", "event": "demo_requested",
        "timestamp": iso(-200), "properties": {}}),
    );
    batch.push(
        json!({"type": "page", "userId": "u-eve", "name": "Pricing", "timestamp": iso(-200),
        "properties": {"path": "/pricing", "url": "https://touchpoint.example/pricing"}}),
    );
    app.send_batch(SERVER_KEY, batch).await;
    settled(&app).await;
    eventually(20, "both handoffs are delivered", async || {
        let rows = handoffs(&app).await;
        rows.len() >= 2 && rows.iter().all(|h| h["state"] == "open")
    })
    .await;
    let rows = handoffs(&app).await;
    assert_eq!(rows.len(), 2, "only Ada and Bruno: {rows:#?}");
    let h_ada = of(&rows, &ada)[0].clone();
    assert_eq!(h_ada["rule"], "score_threshold");
    assert_eq!(h_ada["kind"], "score");
    assert_eq!(h_ada["priority"], "immediate");
    assert_eq!(h_ada["score"], 510);
    assert_eq!(
        (h_ada["team"].as_str(), h_ada["rep"].as_str()),
        (Some("inbound"), Some("ines"))
    );
    assert!(
        h_ada["how"].as_str().unwrap().contains("round robin"),
        "{h_ada}"
    );
    let h_bruno = of(&rows, &bruno)[0].clone();
    assert_eq!(h_bruno["rule"], "demo_request");
    assert_eq!(h_bruno["priority"], "priority");
    assert_eq!(
        (h_bruno["team"].as_str(), h_bruno["rep"].as_str()),
        (Some("emea"), Some("erik"))
    );
    assert!(
        h_bruno["how"].as_str().unwrap().contains("territory emea"),
        "{h_bruno}"
    );

    // The score is a trait with its breakdown, and audiences can use it.
    let p = app.profile("user_id", "u-ada").await.unwrap();
    assert_eq!(p["traits"]["lead_score"], 510, "{:#}", p["traits"]);
    assert_eq!(
        p["traits"]["lead_score_breakdown"],
        json!({"company_200_plus": 200, "senior_role": 150, "teammate_invited": 160})
    );
    let (_, s) = app
        .admin_get(&format!("/admin/handoffs/scores/{ada}"))
        .await;
    assert_eq!(s["score"], 510, "{s}");
    let r = app
        .client
        .post(format!("{}/admin/audiences", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"id": "sales_ready", "name": "Sales-ready leads", "condition": "traits.lead_score >= 500"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    eventually(10, "the score audience is backfilled", async || {
        let (_, m) = app.admin_get("/admin/audiences/sales_ready/members").await;
        m["members"]
            .as_array()
            .is_some_and(|m| m.len() == 1 && m[0]["profile_id"] == ada.as_str())
    })
    .await;

    // Ada, by round robin in the inbound team: owner and Task in both CRMs.
    let contact = w
        .salesforce
        .with(|s| s.get("Contact", "u-ada"))
        .expect("Ada's Contact");
    assert_eq!(contact["OwnerId"], INES_SF);
    let task_key = format!("handoff-{}", h_ada["id"]);
    let task = w
        .salesforce
        .with(|s| s.get("Task", &task_key))
        .expect("Ada's Task");
    assert_eq!(task["OwnerId"], INES_SF);
    assert_eq!(task["WhoId"], contact["Id"]);
    assert_eq!(task["Priority"], "High");
    assert_eq!(task["Status"], "Not Started");
    assert!(
        task["Subject"].as_str().unwrap().contains("Ada Lovelace"),
        "{task:?}"
    );
    let description = task["Description"].as_str().unwrap();
    for needle in [
        "rule score_threshold (immediate)",
        "Lead score 510",
        "- senior_role: 150",
        "- company_200_plus: 200",
        "- teammate_invited: 160",
        "- Email: ada@engines.example",
        "- Title: VP Engineering",
        "- Employees: 500",
        "teammate_invited\n",
        &format!("Touchpoint profile: {ada}"),
    ] {
        assert!(
            description.contains(needle),
            "{needle:?} in the Task:\n{description}"
        );
    }
    let (hs_contact, hs_tasks) = w.hubspot.with(|s| {
        let c = s
            .get("contacts", "ada@engines.example")
            .expect("Ada's contact");
        let id = c["hs_object_id"].as_str().unwrap().to_owned();
        let tasks: Vec<(String, serde_json::Map<String, Value>)> = s
            .objects
            .get("tasks")
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let linked: Vec<_> = tasks
            .into_iter()
            .filter(|(tid, _)| {
                s.associations.contains(&(
                    "tasks".into(),
                    tid.clone(),
                    "contacts".into(),
                    id.clone(),
                ))
            })
            .map(|(_, t)| t)
            .collect();
        (c, linked)
    });
    assert_eq!(hs_contact["hubspot_owner_id"], INES_HS);
    assert_eq!(hs_tasks.len(), 1, "{hs_tasks:?}");
    assert_eq!(hs_tasks[0]["hubspot_owner_id"], INES_HS);
    assert_eq!(hs_tasks[0]["hs_task_priority"], "HIGH");
    assert_eq!(hs_tasks[0]["hs_task_status"], "NOT_STARTED");
    assert!(
        hs_tasks[0]["hs_task_body"]
            .as_str()
            .unwrap()
            .contains("- teammate_invited: 160")
    );

    // Bruno, by territory: Erik has only a HubSpot owner id, so nothing changes in Salesforce.
    let bruno_hs = w
        .hubspot
        .with(|s| s.get("contacts", "bruno@fabrik.example"))
        .expect("Bruno's contact");
    assert_eq!(bruno_hs["hubspot_owner_id"], ERIK_HS);
    assert_eq!(
        w.salesforce.with(|s| s.get("Contact", "u-bruno")).unwrap()["OwnerId"],
        fakes::salesforce::OWNER_ID
    );
    assert_eq!(
        w.salesforce.with(|s| s.objects("Task").len()),
        1,
        "only Ada's"
    );
    let bruno_task = w.hubspot.with(|s| {
        s.objects["tasks"]
            .values()
            .find(|t| t["hubspot_owner_id"] == ERIK_HS)
            .cloned()
    });
    let bruno_task = bruno_task.expect("Bruno's task");
    assert!(
        bruno_task["hs_task_body"]
            .as_str()
            .unwrap()
            .contains("rule demo_request (priority)"),
        "{bruno_task:?}"
    );

    // The reps were emailed through Resend.
    let emails = w.resend.with(|s| s.emails.clone());
    assert_eq!(emails.len(), 2, "{emails:#?}");
    let to = |e: &serde_json::Map<String, Value>| e["to"][0].as_str().unwrap_or("").to_owned();
    let ines_mail = emails
        .iter()
        .find(|e| to(e) == "ines@sales.example")
        .expect("Ines's email");
    assert!(
        ines_mail["subject"]
            .as_str()
            .unwrap()
            .contains("Ada Lovelace")
    );
    assert!(
        ines_mail["html"]
            .as_str()
            .unwrap()
            .contains("senior_role: 150")
    );
    assert_eq!(
        ines_mail["from"],
        "Touchpoint Handoffs <handoffs@touchpoint.example>"
    );
    assert!(
        emails.iter().any(|e| to(e) == "erik@sales.example"
            && e["subject"].as_str().unwrap().contains("Bruno Weber"))
    );

    // Nobody twice: more signals from Ada and Bruno change nothing.
    app.send_batch(SERVER_KEY, vec![
            json!({"type": "track", "userId": "u-ada", "event": "teammate_invited", "timestamp": iso(-60), "properties": invited()}),
            json!({"type": "page", "userId": "u-bruno", "name": "Pricing", "timestamp": iso(-60), "properties": {"path": "/pricing"}}),
            json!({"type": "track", "userId": "u-bruno", "event": "trial_started", "timestamp": iso(-60),
                "properties": {"plan_tier": "pro", "trial_days": 14}}),
        ],
    )
    .await;
    settled(&app).await;
    assert_eq!(handoffs(&app).await.len(), 2);

    // Ines completes her Salesforce Task; Erik does not touch his.
    w.salesforce.with(|s| s.complete_task(&task_key));

    // 3. Time in nurture: fifteen days later Chloe has been nurtured for more than fourteen days;
    //    Bruno too, but he was handed off within the window. The reminders are due as well.
    clock.advance(15 * DAY);
    let report = tick(&app).await;
    assert_eq!(report["handedOff"], 1, "{report:#}");
    assert_eq!(report["delivered"], 1, "{report:#}");
    assert_eq!(report["completed"], 1, "Ada's Task is done: {report:#}");
    assert_eq!(
        report["reminded"], 1,
        "Bruno's task is still open: {report:#}"
    );
    assert!(
        report["skipped"].as_array().unwrap().iter().any(|s| s["profile"] == bruno.as_str()
            && s["skip"]["reason"] == "handed_off_recently"),
        "{report:#}"
    );
    let rows = handoffs(&app).await;
    assert_eq!(rows.len(), 3);
    let h_chloe = of(&rows, &chloe)[0].clone();
    assert_eq!(h_chloe["rule"], "nurture_14_days");
    assert_eq!(h_chloe["kind"], "nurture");
    assert_eq!(h_chloe["priority"], "standard");
    assert_eq!(
        (h_chloe["team"].as_str(), h_chloe["rep"].as_str()),
        (Some("inbound"), Some("jon")),
        "round robin: Ines had the last inbound lead"
    );
    assert_eq!(h_chloe["state"], "open");
    assert_eq!(of(&rows, &ada)[0]["state"], "completed");
    assert_eq!(of(&rows, &bruno)[0]["state"], "reminded");
    assert_eq!(
        w.salesforce.with(|s| s.get("Contact", "u-chloe")).unwrap()["OwnerId"],
        JON_SF
    );
    let chloe_task = w
        .salesforce
        .with(|s| s.get("Task", &format!("handoff-{}", h_chloe["id"])))
        .expect("Chloe's Task");
    assert_eq!(chloe_task["Priority"], "Normal");
    assert!(
        chloe_task["Description"]
            .as_str()
            .unwrap()
            .contains("- Lead status: Nurturing")
    );
    let due = chrono::DateTime::from_timestamp_millis(clock.now_ms() + 86_400_000)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(
        chloe_task["ActivityDate"],
        due.as_str(),
        "due a day after the (moved) clock"
    );
    assert_eq!(
        w.hubspot
            .with(|s| s.get("contacts", "chloe@orbit.example"))
            .unwrap()["hubspot_owner_id"],
        JON_HS
    );
    let emails = w.resend.with(|s| s.emails.clone());
    assert_eq!(emails.len(), 4, "{emails:#?}");
    assert!(
        emails.iter().any(|e| to(e) == "jon@sales.example"
            && e["subject"].as_str().unwrap().contains("Chloe Martin"))
    );
    let reminder = emails
        .iter()
        .find(|e| e["subject"].as_str().unwrap().starts_with("Reminder:"))
        .expect("a reminder");
    assert_eq!(to(reminder), "erik@sales.example");
    assert!(
        reminder["subject"]
            .as_str()
            .unwrap()
            .contains("Bruno Weber")
    );

    // The same tick again does nothing: one reminder per handoff, nobody handed off again.
    let again = tick(&app).await;
    assert_eq!(
        (again["handedOff"].as_u64(), again["reminded"].as_u64()),
        (Some(0), Some(0)),
        "{again:#}"
    );
    // Four more days: Chloe's Task is still open, so Jon gets his reminder.
    clock.advance(4 * DAY);
    let later = tick(&app).await;
    assert_eq!(later["reminded"], 1, "{later:#}");
    let emails = w.resend.with(|s| s.emails.clone());
    assert_eq!(emails.len(), 5);
    assert_eq!(to(&emails[4]), "jon@sales.example");
    assert!(
        emails[4]["subject"]
            .as_str()
            .unwrap()
            .starts_with("Reminder:")
    );
    assert_eq!(handoffs(&app).await.len(), 3, "nobody was handed off twice");

    // The log needs the admin token, has a page, and the fakes saw only well-formed requests.
    let anonymous = app
        .client
        .get(format!("{}/admin/handoffs", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let (status, page) = app.get_text("/handoffs").await;
    assert_eq!(status, 200);
    assert!(page.contains("Lead handoffs"));
    for (name, problems) in [
        ("Salesforce", w.salesforce.with(|s| s.problems.clone())),
        ("HubSpot", w.hubspot.with(|s| s.problems.clone())),
        ("Resend", w.resend.with(|s| s.problems.clone())),
    ] {
        assert!(problems.is_empty(), "{name}: {problems:#?}");
    }
}

async fn a_handoff_whose_email_failed_is_finished_later_without_repeating_the_crm_steps(db: Db) {
    let w = World {
        salesforce: fakes::salesforce::spawn().await,
        hubspot: fakes::hubspot::spawn().await,
        resend: fakes::resend::spawn().await,
    };
    w.salesforce
        .with(|s| s.users.insert(INES_SF.into(), "ines@sales.example".into()));
    w.hubspot
        .with(|s| s.owners.insert(INES_HS.into(), "ines@sales.example".into()));
    let clock = Arc::new(ManualClock::at(chrono::Utc::now().timestamp_millis()));
    let app = spawn(db, &w, clock.clone()).await;
    app.send_batch(
        SERVER_KEY,
        vec![
            json!({"type": "identify", "userId": "u-fay", "timestamp": iso(-600), "traits": {
            "email": "fay@signal.example", "name": "Fay Chen", "country": "US"}}),
        ],
    )
    .await;
    settled(&app).await;
    // Resend is down when Fay requests a demo.
    w.resend.set_down(true);
    app.send_batch(
        SERVER_KEY,
        vec![
            json!({"type": "track", "userId": "u-fay", "event": "demo_requested",
            "timestamp": iso(-60), "properties": {}}),
        ],
    )
    .await;
    settled(&app).await;
    eventually(20, "the first delivery attempt is recorded", async || {
        handoffs(&app)
            .await
            .first()
            .is_some_and(|h| h["attempts"].as_i64() >= Some(1))
    })
    .await;
    let rows = handoffs(&app).await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let h = &rows[0];
    assert_eq!(h["state"], "pending", "{h:#}");
    assert!(h["error"].as_str().unwrap().contains("Resend"), "{h:#}");
    assert_eq!(h["progress"]["salesforce"]["owner"], true, "{h:#}");
    assert!(h["progress"]["hubspot"]["task"].is_string(), "{h:#}");
    assert!(w.resend.with(|s| s.emails.is_empty()));

    // Back up: the next tick sends the email and repeats nothing else.
    w.resend.set_down(false);
    let report = tick(&app).await;
    assert_eq!(report["delivered"], 1, "{report:#}");
    let rows = handoffs(&app).await;
    assert_eq!(rows[0]["state"], "open", "{:#}", rows[0]);
    assert_eq!(w.resend.with(|s| s.emails.len()), 1);
    assert_eq!(w.salesforce.with(|s| s.objects("Task").len()), 1);
    assert_eq!(
        w.hubspot
            .with(|s| s.objects.get("tasks").map_or(0, |t| t.len())),
        1
    );
    assert_eq!(
        w.salesforce
            .requests("/sobjects/Task/")
            .iter()
            .filter(|r| r.method == "PATCH")
            .count(),
        1,
        "one Task upsert"
    );
    let again = tick(&app).await;
    assert_eq!(again["delivered"], 0, "{again:#}");
    assert_eq!(w.resend.with(|s| s.emails.len()), 1);
    assert!(w.salesforce.with(|s| s.problems.is_empty()));
    assert!(w.hubspot.with(|s| s.problems.is_empty()));
}
