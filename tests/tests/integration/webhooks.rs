//! Stripe and Resend webhooks over HTTP on both stores, with payloads signed by the providers'
//! official libraries (`stripe` and `svix` from npm, through `tests/browser/sign-webhooks.mjs`).

use secrecy::SecretString;
use serde_json::{Value, json};
use std::time::Duration;
use touchpoint_core::webhooks::{WebhookSource, WebhooksConfig, anonymous_id_for_email};
use touchpoint_tests::{
    ADMIN_TOKEN, Db, TestApp, WEB_KEY, fresh_database, run_node_script, spawn_app_with, test_config,
};

crate::on_both_stores!(
    stripe_events_signed_by_stripes_library_build_the_customers_profile,
    stripe_signatures_are_checked_and_a_redelivered_event_is_stored_once,
    resend_engagement_lands_on_the_recipients_profile_and_in_audiences,
    resend_signatures_are_checked_and_a_redelivery_is_stored_once,
);

const STRIPE_SECRET: &str = "whsec_test_0123456789abcdefTouchpoint";
const RESEND_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn spawn(db: Db) -> TestApp {
    let (url, tmp) = fresh_database(db).await;
    let mut config = test_config(url);
    config.webhooks = WebhooksConfig {
        stripe: vec![WebhookSource {
            name: "stripe".into(),
            secret: SecretString::from(STRIPE_SECRET),
        }],
        resend: vec![WebhookSource {
            name: "resend".into(),
            secret: SecretString::from(RESEND_SECRET),
        }],
        tolerance: Duration::from_secs(300),
    };
    spawn_app_with(config, tmp).await
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Signs each request with the official library: `{"kind": "stripe"|"svix", "payload", "secret",
/// "timestamp", "id"}` → the `Stripe-Signature` or `svix-signature` value.
async fn sign(requests: Vec<Value>) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("requests.json");
    std::fs::write(&path, serde_json::to_vec(&requests).unwrap()).unwrap();
    let out = run_node_script(
        "tests/browser/sign-webhooks.mjs",
        &[path.to_str().unwrap()],
        Duration::from_secs(60),
    )
    .await;
    serde_json::from_str(&out).expect("signatures")
}

fn stripe_event(id: &str, kind: &str, object: Value) -> String {
    let event = json!({
        "id": id, "object": "event", "api_version": "2024-06-20", "created": now(),
        "data": {"object": object}, "livemode": false, "pending_webhooks": 1,
        "request": {"id": "req_touchpoint", "idempotency_key": null}, "type": kind,
    });
    // Stripe sends pretty-printed JSON: the signature covers those exact bytes.
    serde_json::to_string_pretty(&event).unwrap()
}

async fn post_stripe(app: &TestApp, payload: &str, signature: Option<&str>) -> (u16, Value) {
    let mut r = app
        .client
        .post(format!("{}/v1/sources/stripe/stripe/webhook", app.address))
        .header("content-type", "application/json; charset=utf-8")
        .body(payload.to_owned());
    if let Some(s) = signature {
        r = r.header("Stripe-Signature", s);
    }
    let r = r.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Signs and posts Stripe events in order, expecting 200 for each; returns the responses.
async fn deliver_stripe(app: &TestApp, payloads: &[String]) -> Vec<Value> {
    let requests = payloads
        .iter()
        .map(|p| json!({"kind": "stripe", "payload": p, "secret": STRIPE_SECRET}))
        .collect();
    let mut out = Vec::new();
    for (payload, signature) in payloads.iter().zip(sign(requests).await) {
        let (status, body) = post_stripe(app, payload, Some(&signature)).await;
        assert_eq!(status, 200, "{body}");
        out.push(body);
    }
    out
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

async fn timeline(app: &TestApp, profile: &Value) -> Vec<Value> {
    let id = profile["id"].as_str().unwrap();
    let (status, page) = app
        .admin_get(&format!("/admin/profiles/{id}/timeline?limit=100"))
        .await;
    assert_eq!(status, 200);
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["message"].clone())
        .collect()
}

fn track<'a>(timeline: &'a [Value], event: &str) -> Vec<&'a Value> {
    timeline.iter().filter(|m| m["event"] == event).collect()
}

async fn identify(app: &TestApp, user_id: &str, email: &str) {
    let r = app
        .post(
            "/v1/identify",
            WEB_KEY,
            &json!({"userId": user_id, "traits": {"email": email, "plan_tier": "pro"}}),
        )
        .await;
    assert_eq!(r.status(), 200);
}

async fn preview(app: &TestApp, condition: &str) -> Value {
    let r = app
        .client
        .post(format!("{}/admin/audiences/preview", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"condition": condition}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn subscription(customer: &str, status: &str) -> Value {
    json!({
        "id": "sub_T1", "object": "subscription", "customer": customer, "status": status,
        "cancel_at_period_end": false, "currency": "usd", "metadata": {}, "trial_end": null,
        "items": {"object": "list", "has_more": false, "data": [{
            "id": "si_T1", "object": "subscription_item", "quantity": 4,
            "price": {"id": "price_pro_monthly", "object": "price", "product": "prod_pro", "currency": "usd",
                      "unit_amount": 2500, "recurring": {"interval": "month", "interval_count": 1}}}]},
    })
}

fn invoice(id: &str, customer: &str, email: &str) -> Value {
    json!({
        "id": id, "object": "invoice", "customer": customer, "customer_email": email,
        "customer_name": "Ada Lovelace", "amount_due": 10000, "amount_paid": 10000, "currency": "usd",
        "attempt_count": 1, "billing_reason": "subscription_cycle", "number": "TP-0001", "status": "paid",
        "subscription": "sub_T1", "next_payment_attempt": null,
        "lines": {"object": "list", "data": [{"id": "il_1", "price": {"id": "price_pro_monthly"}}]},
    })
}

async fn stripe_events_signed_by_stripes_library_build_the_customers_profile(db: Db) {
    let app = spawn(db).await;
    identify(&app, "user-77", "ada@example.com").await;
    let customer = "cus_TouchpointAda";
    let mut failed = invoice("in_T2", customer, "ada@example.com");
    failed["amount_paid"] = json!(0);
    failed["amount_due"] = json!(10000);
    failed["attempt_count"] = json!(2);
    failed["status"] = json!("open");
    failed["next_payment_attempt"] = json!(now() + 3 * 86400);
    let payloads = vec![
        stripe_event(
            "evt_T1",
            "customer.created",
            json!({"id": customer, "object": "customer", "email": "Ada@Example.com", "name": "Ada Lovelace",
                   "phone": null, "metadata": {}, "created": now()}),
        ),
        stripe_event(
            "evt_T2",
            "customer.subscription.created",
            subscription(customer, "active"),
        ),
        stripe_event(
            "evt_T3",
            "invoice.paid",
            invoice("in_T1", customer, "ada@example.com"),
        ),
        stripe_event("evt_T4", "invoice.payment_failed", failed),
        stripe_event(
            "evt_T5",
            "checkout.session.completed",
            json!({"id": "cs_test_T1", "object": "checkout.session", "customer": customer, "mode": "payment",
                   "amount_total": 4900, "currency": "eur", "payment_status": "paid", "status": "complete",
                   "client_reference_id": null, "subscription": null,
                   "customer_details": {"email": "ada@example.com", "name": "Ada Lovelace", "phone": null}}),
        ),
        stripe_event(
            "evt_T6",
            "charge.refunded",
            json!({"id": "ch_T1", "object": "charge", "customer": customer, "amount": 4900,
                   "amount_refunded": 4900, "refunded": true, "currency": "eur", "payment_intent": "pi_T1",
                   "billing_details": {"email": "ada@example.com", "name": "Ada Lovelace"},
                   "refunds": {"object": "list", "data": [{"id": "re_T1", "amount": 4900, "reason": "requested_by_customer"}]}}),
        ),
        stripe_event(
            "evt_T7",
            "payout.paid",
            json!({"id": "po_T1", "object": "payout", "amount": 1}),
        ),
    ];
    let responses = deliver_stripe(&app, &payloads).await;
    assert_eq!(responses[0]["stored"], 1, "{}", responses[0]);
    assert_eq!(
        responses[4]["stored"], 2,
        "identify and track: {}",
        responses[4]
    );
    assert!(
        responses[6]["ignored"].is_string(),
        "an unmapped type is acknowledged: {}",
        responses[6]
    );
    for id in [
        "stripe-evt_T1-identify",
        "stripe-evt_T2",
        "stripe-in_T1-paid",
        "stripe-evt_T4",
    ] {
        let rows = app.stored(id).await;
        assert_eq!(rows.len(), 1, "{id}");
        assert_eq!(
            rows[0]["status"], "accepted",
            "{id} conforms to the plan: {}",
            rows[0]
        );
    }
    app.wait_processed().await;

    let by_customer = app
        .profile("stripe_customer_id", customer)
        .await
        .expect("a profile by Stripe customer id");
    let by_user = app.profile("user_id", "user-77").await.expect("the user");
    assert_eq!(
        by_customer["id"], by_user["id"],
        "Stripe's customer joined the user's profile through the email"
    );
    assert_eq!(
        kinds_and_values(&by_customer),
        vec![
            ("anonymous_id".into(), customer.into()),
            ("email".into(), "ada@example.com".into()),
            ("stripe_customer_id".into(), customer.into()),
            ("user_id".into(), "user-77".into()),
        ]
    );
    assert_eq!(by_customer["traits"]["name"], "Ada Lovelace");
    assert_eq!(by_customer["traits"]["plan_tier"], "pro");
    let events = timeline(&app, &by_customer).await;
    for name in [
        "subscription_created",
        "payment_succeeded",
        "payment_failed",
        "checkout_completed",
        "refund_created",
    ] {
        assert_eq!(track(&events, name).len(), 1, "{name} on the timeline");
    }
    let sub = track(&events, "subscription_created")[0];
    assert_eq!(sub["properties"]["amount"], 100.0);
    assert_eq!(sub["properties"]["price_id"], "price_pro_monthly");
    assert_eq!(sub["properties"]["plan_interval"], "month");
    let paid = track(&events, "payment_succeeded")[0];
    assert_eq!(paid["properties"]["amount"], 100.0);
    assert_eq!(paid["properties"]["currency"], "usd");
    assert_eq!(paid["properties"]["invoice_id"], "in_T1");
    let failed = track(&events, "payment_failed")[0];
    assert_eq!(failed["properties"]["attempt_count"], 2);
    assert!(failed["properties"]["next_payment_attempt"].is_string());
    let refund = track(&events, "refund_created")[0];
    assert_eq!(refund["properties"]["amount"], 49.0);
    assert_eq!(refund["properties"]["refund_id"], "re_T1");

    // Usable in audiences.
    let p = preview(&app, "PERFORMED payment_failed WITHIN 7 DAYS").await;
    assert_eq!(p["count"], 1, "{p}");
}

async fn stripe_signatures_are_checked_and_a_redelivered_event_is_stored_once(db: Db) {
    let app = spawn(db).await;
    let customer = "cus_TouchpointBob";
    let event = stripe_event(
        "evt_R1",
        "customer.created",
        json!({"id": customer, "object": "customer", "email": "bob@example.com", "name": "Bob", "metadata": {"user_id": "user-88"}}),
    );
    let stale = now() - 600;
    let signed = sign(vec![
        json!({"kind": "stripe", "payload": event, "secret": STRIPE_SECRET}),
        json!({"kind": "stripe", "payload": event, "secret": "whsec_someone_else"}),
        json!({"kind": "stripe", "payload": event, "secret": STRIPE_SECRET, "timestamp": stale}),
    ])
    .await;
    let (good, other_secret, old) = (&signed[0], &signed[1], &signed[2]);

    let tampered = event.replace("bob@example.com", "eve@example.com");
    let (status, body) = post_stripe(&app, &tampered, Some(good)).await;
    assert_eq!(status, 401, "a tampered body: {body}");
    assert_eq!(body["code"], "bad_signature");
    let (status, _) = post_stripe(&app, &event, Some(other_secret)).await;
    assert_eq!(status, 401, "another endpoint's secret");
    let (status, body) = post_stripe(&app, &event, Some(old)).await;
    assert_eq!(status, 401, "signed ten minutes ago: {body}");
    let (status, body) = post_stripe(&app, &event, None).await;
    assert_eq!(status, 400, "no signature: {body}");
    let (status, _) = post_stripe(&app, "not json", Some(good)).await;
    assert_eq!(
        status, 401,
        "the signature is checked before anything is read"
    );
    assert!(app.stored("stripe-evt_R1-identify").await.is_empty());

    let r = app
        .client
        .post(format!(
            "{}/v1/sources/stripe/elsewhere/webhook",
            app.address
        ))
        .header("Stripe-Signature", good.as_str())
        .body(event.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "an endpoint that is not configured");

    // Stripe retries: the same event, signed again later.
    deliver_stripe(&app, std::slice::from_ref(&event)).await;
    let again = deliver_stripe(&app, std::slice::from_ref(&event)).await;
    assert_eq!(again[0]["stored"], 0, "{}", again[0]);
    // … even after the 24-hour messageId window: the log itself remembers the event.
    app.sql("UPDATE messages SET dedup_key = NULL").await;
    let late = deliver_stripe(&app, std::slice::from_ref(&event)).await;
    assert_eq!(late[0]["stored"], 0, "{}", late[0]);
    let rows = app.stored("stripe-evt_R1-identify").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0]["body"]["userId"], "user-88",
        "metadata.user_id is the user id"
    );

    // invoice.paid and invoice.payment_succeeded announce one payment.
    let paid = [
        stripe_event(
            "evt_R2",
            "invoice.paid",
            invoice("in_R1", customer, "bob@example.com"),
        ),
        stripe_event(
            "evt_R3",
            "invoice.payment_succeeded",
            invoice("in_R1", customer, "bob@example.com"),
        ),
    ];
    let responses = deliver_stripe(&app, &paid).await;
    assert_eq!(responses[0]["stored"], 1);
    assert_eq!(responses[1]["stored"], 0);
    assert_eq!(app.stored("stripe-in_R1-paid").await.len(), 1);
    app.wait_processed().await;
    let profile = app.profile("user_id", "user-88").await.expect("profile");
    assert_eq!(
        track(&timeline(&app, &profile).await, "payment_succeeded").len(),
        1
    );
}

fn resend_event(kind: &str, to: &str, extra: Value) -> String {
    let mut data = json!({
        "broadcast_id": null, "created_at": chrono::Utc::now().to_rfc3339(),
        "email_id": "56761188-7520-42d8-8898-ff6fc54ce618", "from": "Acme <news@acme.test>",
        "to": [to], "subject": "What's new at Acme", "tags": [{"name": "campaign", "value": "november"}],
    });
    for (k, v) in extra.as_object().unwrap() {
        data[k] = v.clone();
    }
    serde_json::to_string(
        &json!({"type": kind, "created_at": chrono::Utc::now().to_rfc3339(), "data": data}),
    )
    .unwrap()
}

async fn post_resend(
    app: &TestApp,
    id: &str,
    timestamp: i64,
    signature: &str,
    payload: &str,
) -> (u16, Value) {
    let r = app
        .client
        .post(format!("{}/v1/sources/resend/webhook", app.address))
        .header("content-type", "application/json")
        .header("svix-id", id)
        .header("svix-timestamp", timestamp.to_string())
        .header("svix-signature", signature)
        .body(payload.to_owned())
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Signs (with Svix's library) and posts `(svix id, payload)` deliveries, expecting 200 each.
async fn deliver_resend(app: &TestApp, deliveries: &[(&str, String)]) -> Vec<Value> {
    let ts = now();
    let requests = deliveries
        .iter()
        .map(|(id, p)| json!({"kind": "svix", "payload": p, "secret": RESEND_SECRET, "id": id, "timestamp": ts}))
        .collect();
    let mut out = Vec::new();
    for ((id, payload), signature) in deliveries.iter().zip(sign(requests).await) {
        let (status, body) = post_resend(app, id, ts, &signature, payload).await;
        assert_eq!(status, 200, "{body}");
        out.push(body);
    }
    out
}

async fn resend_engagement_lands_on_the_recipients_profile_and_in_audiences(db: Db) {
    let app = spawn(db).await;
    identify(&app, "user-99", "carol@example.com").await;
    let deliveries = [
        (
            "msg_E1",
            resend_event("email.delivered", "Carol@Example.com", json!({})),
        ),
        (
            "msg_E2",
            resend_event("email.opened", "carol@example.com", json!({})),
        ),
        (
            "msg_E3",
            resend_event("email.opened", "carol@example.com", json!({})),
        ),
        (
            "msg_E4",
            resend_event("email.opened", "carol@example.com", json!({})),
        ),
        (
            "msg_E5",
            resend_event(
                "email.clicked",
                "carol@example.com",
                json!({"click": {"ipAddress": "192.0.2.1", "link": "https://acme.test/new",
                                  "timestamp": chrono::Utc::now().to_rfc3339(), "userAgent": "Mozilla/5.0"}}),
            ),
        ),
        (
            "msg_E6",
            resend_event(
                "email.bounced",
                "dave@example.com",
                json!({"bounce": {"message": "Mailbox does not exist", "subType": "General", "type": "Permanent"}}),
            ),
        ),
        (
            "msg_E7",
            resend_event("email.sent", "carol@example.com", json!({})),
        ),
    ];
    let responses = deliver_resend(&app, &deliveries).await;
    assert_eq!(responses[0]["stored"], 1, "{}", responses[0]);
    assert!(responses[6]["ignored"].is_string(), "{}", responses[6]);
    for id in ["resend-msg_E1", "resend-msg_E5", "resend-msg_E6"] {
        let rows = app.stored(id).await;
        assert_eq!(rows.len(), 1, "{id}");
        assert_eq!(rows[0]["status"], "accepted", "{id}: {}", rows[0]);
    }
    app.wait_processed().await;

    let carol = app.profile("user_id", "user-99").await.expect("carol");
    let by_email = app
        .profile("email", "carol@example.com")
        .await
        .expect("by email");
    assert_eq!(carol["id"], by_email["id"]);
    assert!(
        kinds_and_values(&carol).contains(&(
            "anonymous_id".into(),
            anonymous_id_for_email("carol@example.com")
        )),
        "the engagement joined the known profile: {carol}"
    );
    assert_eq!(carol["computed"]["events"]["email_opened"]["total"], 3);
    let events = timeline(&app, &carol).await;
    assert_eq!(track(&events, "email_delivered").len(), 1);
    assert_eq!(track(&events, "email_opened").len(), 3);
    let click = track(&events, "email_clicked");
    assert_eq!(click.len(), 1);
    assert_eq!(click[0]["properties"]["link"], "https://acme.test/new");
    assert_eq!(click[0]["properties"]["tags"]["campaign"], "november");

    let dave = app
        .profile("email", "dave@example.com")
        .await
        .expect("a bounced address gets a profile of its own");
    assert_ne!(dave["id"], carol["id"]);
    let bounce = timeline(&app, &dave).await;
    assert_eq!(
        track(&bounce, "email_bounced")[0]["properties"]["bounce_type"],
        "Permanent"
    );

    // Usable in audiences: a preview, and the `engaged_email_readers` audience of AUDIENCES.md.
    let p = preview(
        &app,
        "PERFORMED email_opened AT LEAST 3 TIMES WITHIN 30 DAYS",
    )
    .await;
    assert_eq!(p["count"], 1, "{p}");
    let mut members = Vec::new();
    for _ in 0..200 {
        let (_, m) = app
            .admin_get("/admin/audiences/engaged_email_readers/members")
            .await;
        members = m["members"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|r| r["profile_id"].as_str().map(str::to_owned))
            .collect();
        if !members.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(members, vec![carol["id"].as_str().unwrap().to_owned()]);
}

async fn resend_signatures_are_checked_and_a_redelivery_is_stored_once(db: Db) {
    let app = spawn(db).await;
    let payload = resend_event("email.opened", "erin@example.com", json!({}));
    let ts = now();
    let signed = sign(vec![
        json!({"kind": "svix", "payload": payload, "secret": RESEND_SECRET, "id": "msg_S1", "timestamp": ts}),
        json!({"kind": "svix", "payload": payload, "secret": RESEND_SECRET, "id": "msg_S1", "timestamp": ts - 600}),
        json!({"kind": "svix", "payload": payload, "secret": "whsec_c29tZW9uZSBlbHNl", "id": "msg_S1", "timestamp": ts}),
    ])
    .await;
    let tampered = payload.replace("erin@", "mallory@");
    assert_eq!(
        post_resend(&app, "msg_S1", ts, &signed[0], &tampered)
            .await
            .0,
        401
    );
    assert_eq!(
        post_resend(&app, "msg_S2", ts, &signed[0], &payload)
            .await
            .0,
        401,
        "the id is signed"
    );
    assert_eq!(
        post_resend(&app, "msg_S1", ts - 600, &signed[1], &payload)
            .await
            .0,
        401,
        "too old"
    );
    assert_eq!(
        post_resend(&app, "msg_S1", ts, &signed[2], &payload)
            .await
            .0,
        401,
        "another secret"
    );
    assert_eq!(
        post_resend(&app, "msg_S1", ts, "", &payload).await.0,
        400,
        "no v1 signature"
    );
    assert!(app.stored("resend-msg_S1").await.is_empty());

    let (status, body) = post_resend(&app, "msg_S1", ts, &signed[0], &payload).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stored"], 1);
    // Resend redelivers with the same svix-id and a fresh signature.
    let again = deliver_resend(&app, &[("msg_S1", payload.clone())]).await;
    assert_eq!(again[0]["stored"], 0, "{}", again[0]);
    assert_eq!(app.stored("resend-msg_S1").await.len(), 1);
}
