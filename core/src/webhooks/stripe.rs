//! Stripe webhooks: the `Stripe-Signature` check and the mapping of Stripe events to Segment
//! messages, both pure (no I/O) so they are tested on their own.
//!
//! Signature: `Stripe-Signature: t=<unix s>,v1=<hex>[,v1=<hex>…]` where each `v1` is
//! HMAC-SHA256 of `"{t}.{raw body}"` keyed with the endpoint's signing secret (`whsec_…`, used as
//! is). Several `v1` values appear while a secret is being rolled; one match is enough.
//!
//! Mapping (see `TRACKING_PLAN.md` for the properties):
//!
//! | Stripe event | Messages |
//! |---|---|
//! | `customer.created`, `customer.updated` | identify (email, name) |
//! | `customer.subscription.created` / `.updated` / `.deleted` | track `subscription_created` / `subscription_updated` / `subscription_canceled` |
//! | `invoice.paid` (or `invoice.payment_succeeded`) | track `payment_succeeded` |
//! | `invoice.payment_failed` | track `payment_failed` |
//! | `checkout.session.completed` | identify (when the session has an email or name) + track `checkout_completed` |
//! | `charge.refunded` | track `refund_created` |
//!
//! Every message carries the Stripe customer id as the `stripe_customer_id` identity
//! (`context.externalIds`) and the customer's email, when the event has it, so identity resolution
//! joins it to the person's profile. Segment messages need a `userId` or an `anonymousId`: the
//! `userId` is a `user_id` (or `userId`) in the object's or its customer's metadata; otherwise the
//! `anonymousId` is the Stripe customer id, or for a guest checkout a hash of the email
//! ([`super::anonymous_id_for_email`]). Message ids derive from the Stripe event id, so a
//! redelivered event is stored once; `payment_succeeded` derives from the invoice id instead, so
//! `invoice.paid` and `invoice.payment_succeeded` for one invoice are one payment.

use super::{SignatureError, anonymous_id_for_email, clean_email, text};
use chrono::{DateTime, SecondsFormat};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use std::time::Duration;

/// The header Stripe signs deliveries with.
pub const SIGNATURE_HEADER: &str = "stripe-signature";

/// The identity kind the Stripe customer id is recorded under.
pub const CUSTOMER_ID_KIND: &str = "stripe_customer_id";

/// Computes a `Stripe-Signature` header value for `payload` signed at `timestamp` (for tests and
/// tools; Stripe's own libraries produce the same).
pub fn sign(secret: &[u8], timestamp: i64, payload: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, payload).finalize().into_bytes())
    )
}

fn mac(secret: &[u8], timestamp: i64, payload: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

/// Checks a `Stripe-Signature` header against the raw body at time `now` (Unix seconds): one `v1`
/// signature must match (compared in constant time) and the signed time must be within
/// `tolerance` of `now`, either way. Other schemes (`v0`) are ignored, as Stripe's libraries do.
pub fn verify(
    secret: &[u8],
    header: Option<&str>,
    payload: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing(SIGNATURE_HEADER))?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let Some((key, value)) = item.trim().split_once('=') else {
            continue;
        };
        match key.trim() {
            "t" => timestamp = value.trim().parse::<i64>().ok(),
            "v1" => signatures.push(value.trim()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed(
        "Stripe-Signature has no t= timestamp",
    ))?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed(
            "Stripe-Signature has no v1 signature",
        ));
    }
    let expected = mac(secret, timestamp, payload);
    let matched = signatures
        .iter()
        .any(|s| hex::decode(s).is_ok_and(|sig| expected.clone().verify_slice(&sig).is_ok()));
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    if now.abs_diff(timestamp) > tolerance.as_secs() {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// What a Stripe event becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// Segment messages (identify and track), in order, with their messageIds set.
    Messages(Vec<Value>),
    /// Nothing to record (an event type Touchpoint does not map, or one that names nobody):
    /// acknowledged so Stripe stops retrying, and logged with this reason.
    Ignored(String),
}

/// Why a body is not a Stripe event at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Stripe event: {0}")]
pub struct NotAnEvent(pub &'static str);

/// Longest Stripe event id accepted (they are about 30 characters).
const MAX_EVENT_ID: usize = 128;

/// Maps one Stripe event (the parsed webhook body) to Segment messages.
pub fn map_event(event: &Value) -> Result<Mapped, NotAnEvent> {
    let id = text(&event["id"]).ok_or(NotAnEvent("no id"))?;
    if id.len() > MAX_EVENT_ID || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(NotAnEvent("malformed id"));
    }
    let kind = text(&event["type"]).ok_or(NotAnEvent("no type"))?;
    let created = event["created"]
        .as_i64()
        .ok_or(NotAnEvent("no created time"))?;
    let object = &event["data"]["object"];
    if !object.is_object() {
        return Err(NotAnEvent("no data.object"));
    }
    let ctx = Ctx {
        event_id: id,
        kind,
        timestamp: DateTime::from_timestamp(created, 0)
            .ok_or(NotAnEvent("created time out of range"))?
            .to_rfc3339_opts(SecondsFormat::Secs, true),
        event,
    };
    let object = object.as_object().expect("checked above");
    Ok(match kind {
        "customer.created" | "customer.updated" => customer(&ctx, object),
        "customer.subscription.created" => subscription(&ctx, object, "subscription_created"),
        "customer.subscription.updated" => subscription(&ctx, object, "subscription_updated"),
        "customer.subscription.deleted" => subscription(&ctx, object, "subscription_canceled"),
        "invoice.paid" | "invoice.payment_succeeded" => invoice(&ctx, object, "payment_succeeded"),
        "invoice.payment_failed" => invoice(&ctx, object, "payment_failed"),
        "checkout.session.completed" => checkout(&ctx, object),
        "charge.refunded" => refund(&ctx, object),
        other => Mapped::Ignored(format!("Stripe event type {other} is not mapped")),
    })
}

/// The event being mapped.
struct Ctx<'a> {
    event_id: &'a str,
    kind: &'a str,
    timestamp: String,
    event: &'a Value,
}

/// Who a Stripe object is about.
#[derive(Default)]
struct Who {
    user_id: Option<String>,
    customer: Option<String>,
    email: Option<String>,
    name: Option<String>,
}

impl Who {
    /// The customer an object points at (an id or an expanded customer), its email and name when
    /// expanded, and a user id from the object's or the customer's metadata.
    fn of(object: &Map<String, Value>) -> Who {
        let customer = object.get("customer").unwrap_or(&Value::Null);
        let expanded = customer.as_object();
        Who {
            user_id: metadata_user_id(object).or_else(|| expanded.and_then(metadata_user_id)),
            customer: text(customer)
                .or_else(|| expanded.and_then(|c| c.get("id")).and_then(text))
                .map(str::to_owned),
            email: expanded.and_then(|c| c.get("email")).and_then(clean_email),
            name: expanded
                .and_then(|c| c.get("name"))
                .and_then(text)
                .map(str::to_owned),
        }
    }

    fn or_email(mut self, email: Option<&Value>) -> Who {
        if self.email.is_none() {
            self.email = email.and_then(clean_email);
        }
        self
    }

    fn or_name(mut self, name: Option<&Value>) -> Who {
        if self.name.is_none() {
            self.name = name.and_then(text).map(str::to_owned);
        }
        self
    }

    fn nobody(&self) -> bool {
        self.user_id.is_none() && self.customer.is_none() && self.email.is_none()
    }
}

/// `metadata.user_id` (or `userId`), text or a whole number.
fn metadata_user_id(object: &Map<String, Value>) -> Option<String> {
    let metadata = object.get("metadata")?;
    ["user_id", "userId"]
        .iter()
        .find_map(|k| match &metadata[*k] {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
            _ => None,
        })
}

/// The Segment fields every message of an event shares.
fn envelope(ctx: &Ctx, who: &Who, kind: &str, message_id: String) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), json!(kind));
    m.insert("messageId".into(), json!(message_id));
    m.insert("timestamp".into(), json!(ctx.timestamp));
    if let Some(u) = &who.user_id {
        m.insert("userId".into(), json!(u));
    }
    let anonymous = who
        .customer
        .clone()
        .or_else(|| who.email.as_deref().map(anonymous_id_for_email));
    if let Some(a) = anonymous {
        m.insert("anonymousId".into(), json!(a));
    }
    let mut context = Map::new();
    context.insert(
        "library".into(),
        json!({"name": "touchpoint-stripe-webhook", "version": env!("CARGO_PKG_VERSION")}),
    );
    if let Some(c) = &who.customer {
        context.insert(
            "externalIds".into(),
            json!([{"type": CUSTOMER_ID_KIND, "id": c, "collection": "users", "encoding": "none"}]),
        );
    }
    let mut stripe = Map::new();
    stripe.insert("eventId".into(), json!(ctx.event_id));
    stripe.insert("eventType".into(), json!(ctx.kind));
    if let Some(live) = ctx.event["livemode"].as_bool() {
        stripe.insert("livemode".into(), json!(live));
    }
    if let Some(account) = text(&ctx.event["account"]) {
        stripe.insert("account".into(), json!(account));
    }
    context.insert("stripe".into(), Value::Object(stripe));
    m.insert("context".into(), Value::Object(context));
    m
}

/// Planned traits known from the event: `email` and `name`.
fn traits(who: &Who) -> Map<String, Value> {
    let mut t = Map::new();
    if let Some(e) = &who.email {
        t.insert("email".into(), json!(e));
    }
    if let Some(n) = &who.name {
        t.insert("name".into(), json!(n));
    }
    t
}

fn identify(ctx: &Ctx, who: &Who) -> Value {
    let mut m = envelope(
        ctx,
        who,
        "identify",
        format!("stripe-{}-identify", ctx.event_id),
    );
    m.insert("traits".into(), Value::Object(traits(who)));
    Value::Object(m)
}

fn track(
    ctx: &Ctx,
    who: &Who,
    event: &str,
    message_id: String,
    properties: Map<String, Value>,
) -> Value {
    let mut m = envelope(ctx, who, "track", message_id);
    m.insert("event".into(), json!(event));
    m.insert("properties".into(), Value::Object(properties));
    let t = traits(who);
    if !t.is_empty() {
        m["context"]["traits"] = Value::Object(t);
    }
    Value::Object(m)
}

fn nobody(ctx: &Ctx) -> Mapped {
    Mapped::Ignored(format!(
        "{} names no customer, user id or email to record it for",
        ctx.kind
    ))
}

fn customer(ctx: &Ctx, object: &Map<String, Value>) -> Mapped {
    let who = Who {
        user_id: metadata_user_id(object),
        customer: object.get("id").and_then(text).map(str::to_owned),
        email: object.get("email").and_then(clean_email),
        name: object.get("name").and_then(text).map(str::to_owned),
    };
    if who.customer.is_none() {
        return nobody(ctx);
    }
    Mapped::Messages(vec![identify(ctx, &who)])
}

/// The subscription fields whose change is worth a `subscription_updated`; Stripe also sends
/// `customer.subscription.updated` for every renewal and metadata edit, which are not.
const NOTABLE_CHANGES: [&str; 8] = [
    "status",
    "items",
    "plan",
    "quantity",
    "cancel_at_period_end",
    "cancel_at",
    "trial_end",
    "pause_collection",
];

fn subscription(ctx: &Ctx, object: &Map<String, Value>, event: &str) -> Mapped {
    let who = Who::of(object);
    if who.nobody() {
        return nobody(ctx);
    }
    let mut p = Map::new();
    put_text(&mut p, "subscription_id", object.get("id"));
    put_text(&mut p, "status", object.get("status"));
    let items: Vec<&Value> = object
        .get("items")
        .and_then(|i| i["data"].as_array())
        .map(|d| d.iter().collect())
        .unwrap_or_default();
    if let Some(first) = items.first() {
        let price = &first["price"];
        put_text(&mut p, "price_id", price.get("id"));
        let product = &price["product"];
        put_text(
            &mut p,
            "product_id",
            Some(product.get("id").unwrap_or(product)),
        );
        put_text(&mut p, "plan_interval", price["recurring"].get("interval"));
        if let Some(q) = first["quantity"].as_i64() {
            p.insert("quantity".into(), json!(q));
        }
    }
    // The recurring amount: every item's unit price × quantity, when every item has a unit price
    // (metered and tiered prices have none).
    let currency = items
        .first()
        .and_then(|i| text(&i["price"]["currency"]))
        .or_else(|| object.get("currency").and_then(text));
    let total: Option<i64> = items.iter().try_fold(0i64, |sum, i| {
        let unit = i["price"]["unit_amount"].as_i64()?;
        let quantity = i["quantity"].as_i64().unwrap_or(1);
        sum.checked_add(unit.checked_mul(quantity)?)
    });
    if let (Some(total), Some(currency), false) = (total, currency, items.is_empty()) {
        p.insert("amount".into(), json!(major_units(total, currency)));
        p.insert("currency".into(), json!(currency.to_ascii_lowercase()));
    }
    if let Some(b) = object.get("cancel_at_period_end").and_then(Value::as_bool) {
        p.insert("cancel_at_period_end".into(), json!(b));
    }
    put_time(&mut p, "trial_end", object.get("trial_end"));
    match event {
        "subscription_updated" => {
            let previous = &ctx.event["data"]["previous_attributes"];
            if let Some(prev) = previous.as_object() {
                let changes: Vec<&str> = NOTABLE_CHANGES
                    .iter()
                    .copied()
                    .filter(|k| prev.contains_key(*k))
                    .collect();
                if changes.is_empty() {
                    return Mapped::Ignored(
                        "subscription update without a status, plan, quantity, trial or cancellation change"
                            .into(),
                    );
                }
                put_text(&mut p, "previous_status", prev.get("status"));
                p.insert("changes".into(), json!(changes));
            }
        }
        "subscription_canceled" => {
            put_text(
                &mut p,
                "cancellation_reason",
                object
                    .get("cancellation_details")
                    .and_then(|d| d.get("reason")),
            );
            put_time(&mut p, "canceled_at", object.get("canceled_at"));
        }
        _ => {}
    }
    let id = format!("stripe-{}", ctx.event_id);
    Mapped::Messages(vec![track(ctx, &who, event, id, p)])
}

/// The subscription an invoice belongs to: `subscription` (API versions before 2025-03-31) or
/// `parent.subscription_details.subscription` (later versions).
fn invoice_subscription(object: &Map<String, Value>) -> Option<&Value> {
    let legacy = object.get("subscription").filter(|v| !v.is_null());
    legacy.or_else(|| {
        object
            .get("parent")?
            .get("subscription_details")?
            .get("subscription")
    })
}

/// The price of an invoice's first line: `price.id` (older API versions) or
/// `pricing.price_details.price` (later versions).
fn invoice_price(object: &Map<String, Value>) -> Option<&Value> {
    let line = object.get("lines")?.get("data")?.get(0)?;
    line.get("price")
        .and_then(|p| p.get("id"))
        .or_else(|| line.get("pricing")?.get("price_details")?.get("price"))
}

fn invoice(ctx: &Ctx, object: &Map<String, Value>, event: &str) -> Mapped {
    let who = Who::of(object)
        .or_email(object.get("customer_email"))
        .or_name(object.get("customer_name"));
    if who.nobody() {
        return nobody(ctx);
    }
    let currency = object.get("currency").and_then(text).unwrap_or("usd");
    let mut p = Map::new();
    put_text(&mut p, "invoice_id", object.get("id"));
    let amount_field = if event == "payment_succeeded" {
        "amount_paid"
    } else {
        "amount_due"
    };
    if let Some(amount) = cents(object.get(amount_field)) {
        p.insert("amount".into(), json!(major_units(amount, currency)));
    }
    p.insert("currency".into(), json!(currency.to_ascii_lowercase()));
    let subscription = invoice_subscription(object);
    put_text(
        &mut p,
        "subscription_id",
        subscription.map(|s| s.get("id").unwrap_or(s)),
    );
    put_text(&mut p, "price_id", invoice_price(object));
    put_text(&mut p, "billing_reason", object.get("billing_reason"));
    put_text(&mut p, "invoice_number", object.get("number"));
    let message_id = if event == "payment_failed" {
        if let Some(n) = object.get("attempt_count").and_then(Value::as_i64) {
            p.insert("attempt_count".into(), json!(n));
        }
        put_time(
            &mut p,
            "next_payment_attempt",
            object.get("next_payment_attempt"),
        );
        let (reason, code) = failure(object);
        put_text(&mut p, "failure_reason", reason);
        put_text(&mut p, "failure_code", code);
        format!("stripe-{}", ctx.event_id)
    } else {
        // invoice.paid and invoice.payment_succeeded both announce this payment: one message.
        match object.get("id").and_then(text) {
            Some(invoice) => format!("stripe-{invoice}-paid"),
            None => format!("stripe-{}", ctx.event_id),
        }
    };
    Mapped::Messages(vec![track(ctx, &who, event, message_id, p)])
}

/// Why an invoice payment failed, where the event says: an expanded charge's `failure_message`,
/// an expanded payment intent's `last_payment_error`, or the invoice's `last_finalization_error`.
fn failure(object: &Map<String, Value>) -> (Option<&Value>, Option<&Value>) {
    let charge = object.get("charge").filter(|c| c.is_object());
    if let Some(c) = charge.filter(|c| text(&c["failure_message"]).is_some()) {
        return (c.get("failure_message"), c.get("failure_code"));
    }
    let intent_error = object
        .get("payment_intent")
        .and_then(|p| p.get("last_payment_error"))
        .filter(|e| e.is_object());
    let error = intent_error.or_else(|| {
        object
            .get("last_finalization_error")
            .filter(|e| e.is_object())
    });
    match error {
        Some(e) => (
            e.get("message"),
            e.get("decline_code")
                .filter(|v| text(v).is_some())
                .or_else(|| e.get("code")),
        ),
        None => (None, None),
    }
}

fn checkout(ctx: &Ctx, object: &Map<String, Value>) -> Mapped {
    let details = object.get("customer_details");
    let who = Who::of(object)
        .or_email(details.and_then(|d| d.get("email")))
        .or_email(object.get("customer_email"))
        .or_name(details.and_then(|d| d.get("name")));
    if who.nobody() {
        return nobody(ctx);
    }
    let mut p = Map::new();
    put_text(&mut p, "checkout_session_id", object.get("id"));
    put_text(&mut p, "mode", object.get("mode"));
    if let (Some(total), Some(currency)) = (
        object.get("amount_total").and_then(Value::as_i64),
        object.get("currency").and_then(text),
    ) {
        p.insert("amount".into(), json!(major_units(total, currency)));
        p.insert("currency".into(), json!(currency.to_ascii_lowercase()));
    }
    put_text(&mut p, "payment_status", object.get("payment_status"));
    let subscription = object.get("subscription").filter(|s| !s.is_null());
    put_text(
        &mut p,
        "subscription_id",
        subscription.map(|s| s.get("id").unwrap_or(s)),
    );
    put_text(
        &mut p,
        "client_reference_id",
        object.get("client_reference_id"),
    );
    let mut messages = Vec::with_capacity(2);
    if who.email.is_some() || who.name.is_some() {
        messages.push(identify(ctx, &who));
    }
    let id = format!("stripe-{}", ctx.event_id);
    messages.push(track(ctx, &who, "checkout_completed", id, p));
    Mapped::Messages(messages)
}

fn refund(ctx: &Ctx, object: &Map<String, Value>) -> Mapped {
    let billing = object.get("billing_details");
    let who = Who::of(object)
        .or_email(billing.and_then(|b| b.get("email")))
        .or_email(object.get("receipt_email"))
        .or_name(billing.and_then(|b| b.get("name")));
    if who.nobody() {
        return nobody(ctx);
    }
    let currency = object.get("currency").and_then(text).unwrap_or("usd");
    let total = cents(object.get("amount_refunded"));
    // This refund: the newest in `refunds` (older API versions list them, newest first), else
    // what `amount_refunded` grew by, else the whole refunded amount.
    let newest = object
        .get("refunds")
        .and_then(|r| r["data"].get(0))
        .filter(|r| r.is_object());
    let previous = ctx.event["data"]["previous_attributes"]["amount_refunded"].as_i64();
    let amount = match newest {
        Some(r) => cents(r.get("amount")),
        None => match (total, previous) {
            (Some(total), Some(prev)) => total.checked_sub(prev),
            (total, _) => total,
        },
    };
    let mut p = Map::new();
    put_text(&mut p, "charge_id", object.get("id"));
    if let Some(amount) = amount {
        p.insert("amount".into(), json!(major_units(amount, currency)));
    }
    p.insert("currency".into(), json!(currency.to_ascii_lowercase()));
    if let Some(total) = total {
        p.insert("total_refunded".into(), json!(major_units(total, currency)));
    }
    if let Some(full) = object.get("refunded").and_then(Value::as_bool) {
        p.insert("fully_refunded".into(), json!(full));
    }
    if let Some(r) = newest {
        put_text(&mut p, "refund_id", r.get("id"));
        put_text(&mut p, "refund_reason", r.get("reason"));
    }
    put_text(&mut p, "payment_intent_id", object.get("payment_intent"));
    let id = format!("stripe-{}", ctx.event_id);
    Mapped::Messages(vec![track(ctx, &who, "refund_created", id, p)])
}

/// An amount in the currency's smallest unit: absent is 0; `None` when it is present but not an
/// integer within 64 bits (`1.5e300`, `2^64 - 1`), so the property is left out and the plan
/// flags the message, instead of recording a payment of 0.
fn cents(value: Option<&Value>) -> Option<i64> {
    match value {
        None | Some(Value::Null) => Some(0),
        Some(v) => v.as_i64(),
    }
}

fn put_text(p: &mut Map<String, Value>, key: &str, value: Option<&Value>) {
    if let Some(s) = value.and_then(text) {
        p.insert(key.into(), json!(s));
    }
}

fn put_time(p: &mut Map<String, Value>, key: &str, value: Option<&Value>) {
    if let Some(t) = value
        .and_then(Value::as_i64)
        .and_then(|s| DateTime::from_timestamp(s, 0))
    {
        p.insert(
            key.into(),
            json!(t.to_rfc3339_opts(SecondsFormat::Secs, true)),
        );
    }
}

/// Currencies Stripe counts in whole units (no minor unit).
const ZERO_DECIMAL: [&str; 16] = [
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];
/// Currencies Stripe counts in thousandths.
const THREE_DECIMAL: [&str; 5] = ["bhd", "jod", "kwd", "omr", "tnd"];

/// A Stripe amount (in the currency's smallest unit) in major units: 1999 USD cents → 19.99,
/// 500 JPY → 500, 1500 KWD fils → 1.5.
pub fn major_units(amount: i64, currency: &str) -> f64 {
    let currency = currency.to_ascii_lowercase();
    let divisor = if ZERO_DECIMAL.contains(&currency.as_str()) {
        1.0
    } else if THREE_DECIMAL.contains(&currency.as_str()) {
        1000.0
    } else {
        100.0
    };
    amount as f64 / divisor
}

#[cfg(test)]
mod tests {
    use super::*;
    use touchpoint_tracking_plan::Message;

    const TOL: Duration = Duration::from_secs(300);

    #[test]
    fn a_payload_signed_with_the_endpoint_secret_verifies() {
        let header = sign(b"whsec_test", 1_000_000, b"{\"id\":1}");
        assert_eq!(
            verify(b"whsec_test", Some(&header), b"{\"id\":1}", 1_000_010, TOL),
            Ok(())
        );
    }

    #[test]
    fn a_tampered_body_or_another_secret_is_a_mismatch() {
        let header = sign(b"whsec_test", 1_000_000, b"{\"id\":1}");
        assert_eq!(
            verify(b"whsec_test", Some(&header), b"{\"id\":2}", 1_000_000, TOL),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"whsec_other", Some(&header), b"{\"id\":1}", 1_000_000, TOL),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is signed too.
        let moved = header.replace("t=1000000", "t=1000001");
        assert_eq!(
            verify(b"whsec_test", Some(&moved), b"{\"id\":1}", 1_000_000, TOL),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_timestamp_must_be_within_the_tolerance_either_way() {
        let header = sign(b"k", 1_000_000, b"x");
        assert_eq!(verify(b"k", Some(&header), b"x", 1_000_300, TOL), Ok(()));
        assert_eq!(verify(b"k", Some(&header), b"x", 999_700, TOL), Ok(()));
        assert_eq!(
            verify(b"k", Some(&header), b"x", 1_000_301, TOL),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(b"k", Some(&header), b"x", 999_699, TOL),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(
                b"k",
                Some(&header),
                b"x",
                1_003_000,
                Duration::from_secs(3600)
            ),
            Ok(())
        );
    }

    #[test]
    fn any_of_several_v1_signatures_may_match_while_a_secret_rolls() {
        let new = sign(b"new-secret", 1_000_000, b"x");
        let old = sign(b"old-secret", 1_000_000, b"x");
        let old_sig = old.split_once(",v1=").unwrap().1;
        let new_sig = new.split_once(",v1=").unwrap().1;
        let header = format!("t=1000000,v1={old_sig},v1={new_sig},v0=deadbeef");
        assert_eq!(
            verify(b"new-secret", Some(&header), b"x", 1_000_000, TOL),
            Ok(())
        );
        assert_eq!(
            verify(b"old-secret", Some(&header), b"x", 1_000_000, TOL),
            Ok(())
        );
        assert_eq!(
            verify(b"third", Some(&header), b"x", 1_000_000, TOL),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn malformed_headers_are_told_apart_from_mismatches() {
        assert_eq!(
            verify(b"k", None, b"x", 0, TOL),
            Err(SignatureError::Missing(SIGNATURE_HEADER))
        );
        assert!(matches!(
            verify(b"k", Some("v1=abc"), b"x", 0, TOL),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            verify(b"k", Some("t=5,v0=abc"), b"x", 5, TOL),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            verify(b"k", Some("t=soon,v1=00"), b"x", 5, TOL),
            Err(SignatureError::Malformed(_))
        ));
        assert_eq!(
            verify(b"k", Some("t=5,v1=not-hex"), b"x", 5, TOL),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn amounts_are_in_major_units_of_their_currency() {
        assert_eq!(major_units(1999, "usd"), 19.99);
        assert_eq!(major_units(1999, "EUR"), 19.99);
        assert_eq!(major_units(500, "jpy"), 500.0);
        assert_eq!(major_units(1500, "kwd"), 1.5);
        assert_eq!(major_units(0, "usd"), 0.0);
    }

    fn event(kind: &str, object: Value) -> Value {
        json!({"id": "evt_1Abc", "object": "event", "api_version": "2024-06-20", "created": 1_796_000_000,
               "livemode": false, "type": kind, "data": {"object": object}})
    }

    fn messages(event: &Value) -> Vec<Value> {
        match map_event(event).unwrap() {
            Mapped::Messages(m) => {
                for message in &m {
                    Message::from_value(message.clone(), None).expect("a valid Segment message");
                }
                m
            }
            Mapped::Ignored(why) => panic!("ignored: {why}"),
        }
    }

    #[test]
    fn a_customer_becomes_an_identify_with_email_name_and_the_customer_identity() {
        let m = messages(&event(
            "customer.created",
            json!({"id": "cus_123", "object": "customer", "email": " Ada@Example.com ", "name": "Ada Lovelace",
                   "metadata": {}}),
        ));
        assert_eq!(m.len(), 1);
        let identify = &m[0];
        assert_eq!(identify["type"], "identify");
        assert_eq!(identify["messageId"], "stripe-evt_1Abc-identify");
        assert_eq!(identify["anonymousId"], "cus_123");
        assert!(identify.get("userId").is_none());
        assert_eq!(identify["traits"]["email"], "Ada@Example.com");
        assert_eq!(identify["traits"]["name"], "Ada Lovelace");
        assert_eq!(
            identify["context"]["externalIds"][0],
            json!({"type": "stripe_customer_id", "id": "cus_123", "collection": "users", "encoding": "none"})
        );
        assert_eq!(identify["timestamp"], "2026-11-30T00:53:20Z");
        assert_eq!(
            identify["context"]["stripe"]["eventType"],
            "customer.created"
        );
    }

    #[test]
    fn a_user_id_in_metadata_becomes_the_user_id() {
        let m = messages(&event(
            "customer.updated",
            json!({"id": "cus_123", "email": "not an email", "metadata": {"user_id": "user-42"}}),
        ));
        assert_eq!(m[0]["userId"], "user-42");
        assert!(m[0]["traits"].get("email").is_none(), "not an email");
    }

    fn subscription_object() -> Value {
        json!({"id": "sub_1", "object": "subscription", "customer": "cus_123", "status": "active",
               "cancel_at_period_end": false, "currency": "usd", "metadata": {},
               "items": {"object": "list", "data": [
                   {"id": "si_1", "quantity": 3, "price": {"id": "price_pro", "product": "prod_pro",
                    "unit_amount": 1200, "currency": "usd", "recurring": {"interval": "month"}}}]}})
    }

    #[test]
    fn a_new_subscription_is_tracked_with_price_interval_and_amount() {
        let m = messages(&event(
            "customer.subscription.created",
            subscription_object(),
        ));
        let t = &m[0];
        assert_eq!(t["event"], "subscription_created");
        assert_eq!(t["messageId"], "stripe-evt_1Abc");
        assert_eq!(t["anonymousId"], "cus_123");
        assert_eq!(
            t["properties"],
            json!({"subscription_id": "sub_1", "status": "active", "price_id": "price_pro",
                   "product_id": "prod_pro", "plan_interval": "month", "quantity": 3, "amount": 36.0,
                   "currency": "usd", "cancel_at_period_end": false})
        );
    }

    #[test]
    fn subscription_updates_are_tracked_only_when_something_notable_changed() {
        let mut e = event("customer.subscription.updated", subscription_object());
        e["data"]["previous_attributes"] = json!({"status": "trialing"});
        let m = messages(&e);
        assert_eq!(m[0]["event"], "subscription_updated");
        assert_eq!(m[0]["properties"]["previous_status"], "trialing");
        assert_eq!(m[0]["properties"]["changes"], json!(["status"]));
        e["data"]["previous_attributes"] =
            json!({"current_period_end": 1, "latest_invoice": "in_0"});
        assert!(matches!(map_event(&e), Ok(Mapped::Ignored(_))));
    }

    #[test]
    fn a_deleted_subscription_is_a_cancellation_with_its_reason() {
        let mut s = subscription_object();
        s["status"] = json!("canceled");
        s["canceled_at"] = json!(1_796_000_000);
        s["cancellation_details"] = json!({"reason": "payment_failed", "comment": null});
        let m = messages(&event("customer.subscription.deleted", s));
        assert_eq!(m[0]["event"], "subscription_canceled");
        assert_eq!(m[0]["properties"]["cancellation_reason"], "payment_failed");
        assert_eq!(m[0]["properties"]["canceled_at"], "2026-11-30T00:53:20Z");
    }

    fn invoice_object() -> Value {
        json!({"id": "in_1", "object": "invoice", "customer": "cus_123", "customer_email": "ada@example.com",
               "customer_name": "Ada", "amount_due": 3600, "amount_paid": 3600, "currency": "eur",
               "attempt_count": 2, "billing_reason": "subscription_cycle", "number": "A-0001",
               "next_payment_attempt": 1_796_086_400, "subscription": "sub_1",
               "lines": {"data": [{"price": {"id": "price_pro"}}]}})
    }

    #[test]
    fn a_paid_invoice_is_one_payment_whichever_event_announces_it() {
        let paid = messages(&event("invoice.paid", invoice_object()));
        let t = &paid[0];
        assert_eq!(t["event"], "payment_succeeded");
        assert_eq!(t["messageId"], "stripe-in_1-paid");
        assert_eq!(
            t["context"]["traits"],
            json!({"email": "ada@example.com", "name": "Ada"})
        );
        assert_eq!(
            t["properties"],
            json!({"invoice_id": "in_1", "amount": 36.0, "currency": "eur", "subscription_id": "sub_1",
                   "price_id": "price_pro", "billing_reason": "subscription_cycle", "invoice_number": "A-0001"})
        );
        let mut other = event("invoice.payment_succeeded", invoice_object());
        other["id"] = json!("evt_2");
        assert_eq!(messages(&other)[0]["messageId"], "stripe-in_1-paid");
    }

    #[test]
    fn an_amount_that_is_not_an_integer_within_64_bits_is_left_out_not_recorded_as_zero() {
        let mut invoice = invoice_object();
        invoice["amount_paid"] = json!(18_446_744_073_709_551_615_u64);
        let paid = messages(&event("invoice.paid", invoice));
        assert!(paid[0]["properties"].get("amount").is_none(), "{}", paid[0]);
        let refund = json!({"id": "ch_1", "object": "charge", "customer": "cus_123",
                            "amount_refunded": 1.5e300, "currency": "usd", "refunded": true});
        let refunded = messages(&event("charge.refunded", refund));
        let p = &refunded[0]["properties"];
        assert!(
            p.get("amount").is_none() && p.get("total_refunded").is_none(),
            "{p}"
        );
    }

    #[test]
    fn a_failed_invoice_payment_carries_attempts_next_try_and_reason() {
        let mut inv = invoice_object();
        inv["amount_paid"] = json!(0);
        inv["charge"] = json!({"id": "ch_1", "failure_code": "card_declined",
                                "failure_message": "Your card was declined."});
        let m = messages(&event("invoice.payment_failed", inv));
        let p = &m[0]["properties"];
        assert_eq!(m[0]["event"], "payment_failed");
        assert_eq!(m[0]["messageId"], "stripe-evt_1Abc");
        assert_eq!(p["amount"], 36.0);
        assert_eq!(p["attempt_count"], 2);
        assert_eq!(p["next_payment_attempt"], "2026-12-01T00:53:20Z");
        assert_eq!(p["failure_reason"], "Your card was declined.");
        assert_eq!(p["failure_code"], "card_declined");
    }

    #[test]
    fn newer_api_versions_put_the_subscription_and_price_elsewhere() {
        let mut inv = invoice_object();
        inv.as_object_mut().unwrap().remove("subscription");
        inv["parent"] = json!({"type": "subscription_details",
                               "subscription_details": {"subscription": "sub_9"}});
        inv["lines"] = json!({"data": [{"pricing": {"price_details": {"price": "price_9"}}}]});
        let m = messages(&event("invoice.payment_failed", inv));
        assert_eq!(m[0]["properties"]["subscription_id"], "sub_9");
        assert_eq!(m[0]["properties"]["price_id"], "price_9");
        assert!(m[0]["properties"].get("failure_reason").is_none());
    }

    #[test]
    fn a_guest_checkout_is_identified_by_its_email() {
        let m = messages(&event(
            "checkout.session.completed",
            json!({"id": "cs_1", "object": "checkout.session", "customer": null, "mode": "payment",
                   "amount_total": 500, "currency": "jpy", "payment_status": "paid",
                   "client_reference_id": "cart-7",
                   "customer_details": {"email": "Guest@Example.com", "name": "Guest"}}),
        ));
        assert_eq!(m.len(), 2);
        assert_eq!(m[0]["type"], "identify");
        assert_eq!(m[0]["traits"]["email"], "Guest@Example.com");
        let anon = anonymous_id_for_email("guest@example.com");
        assert_eq!(m[0]["anonymousId"], anon.as_str());
        assert!(m[0]["context"].get("externalIds").is_none());
        assert_eq!(m[1]["event"], "checkout_completed");
        assert_eq!(m[1]["anonymousId"], anon.as_str());
        assert_eq!(
            m[1]["properties"],
            json!({"checkout_session_id": "cs_1", "mode": "payment", "amount": 500.0, "currency": "jpy",
                   "payment_status": "paid", "client_reference_id": "cart-7"})
        );
        assert_ne!(m[0]["messageId"], m[1]["messageId"]);
    }

    #[test]
    fn a_refund_carries_this_refund_and_the_total() {
        let mut e = event(
            "charge.refunded",
            json!({"id": "ch_1", "object": "charge", "customer": "cus_123", "amount": 5000,
                   "amount_refunded": 3000, "refunded": false, "currency": "usd", "payment_intent": "pi_1",
                   "billing_details": {"email": "ada@example.com"}}),
        );
        e["data"]["previous_attributes"] = json!({"amount_refunded": 1000});
        let m = messages(&e);
        assert_eq!(m[0]["event"], "refund_created");
        assert_eq!(
            m[0]["properties"],
            json!({"charge_id": "ch_1", "amount": 20.0, "currency": "usd", "total_refunded": 30.0,
                   "fully_refunded": false, "payment_intent_id": "pi_1"})
        );
        e["data"]["object"]["refunds"] =
            json!({"data": [{"id": "re_2", "amount": 1500, "reason": "requested_by_customer"}]});
        let m = messages(&e);
        assert_eq!(m[0]["properties"]["amount"], 15.0);
        assert_eq!(m[0]["properties"]["refund_id"], "re_2");
        assert_eq!(m[0]["properties"]["refund_reason"], "requested_by_customer");
    }

    #[test]
    fn unmapped_types_and_events_about_nobody_are_ignored_not_errors() {
        assert!(matches!(
            map_event(&event("payout.paid", json!({"id": "po_1"}))),
            Ok(Mapped::Ignored(_))
        ));
        assert!(matches!(
            map_event(&event(
                "charge.refunded",
                json!({"id": "ch_1", "amount_refunded": 1})
            )),
            Ok(Mapped::Ignored(_))
        ));
    }

    #[test]
    fn bodies_that_are_not_events_are_refused() {
        assert!(map_event(&json!({})).is_err());
        assert!(
            map_event(&json!({"id": "evt_1", "type": "customer.created", "created": 1})).is_err()
        );
        assert!(
            map_event(&json!({"id": "evt 1", "type": "x", "created": 1, "data": {"object": {}}}))
                .is_err()
        );
        assert!(map_event(&json!([1, 2])).is_err());
    }
}
