//! Resend email-engagement webhooks mapped to Segment track messages (pure; the signature is
//! [`super::svix`]).
//!
//! `email.delivered`, `email.opened`, `email.clicked` and `email.bounced` become `email_delivered`,
//! `email_opened`, `email_clicked` and `email_bounced`, one per recipient in `data.to`, timed at the
//! event's `created_at`. A recipient is known only by address, so each message carries the email in
//! `context.traits` (identity resolution joins it to the person's profile through the `email`
//! identifier) and, because Segment messages need an id, an `anonymousId` derived from the address
//! ([`super::anonymous_id_for_email`]). Message ids derive from the `svix-id`, which Resend keeps
//! across redeliveries, so a redelivery is stored once. Other event types are acknowledged and
//! ignored.

use super::{anonymous_id_for_email, clean_email, text};
use serde_json::{Map, Value, json};

/// What a Resend event becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// Track messages, one per recipient, with their messageIds set.
    Messages(Vec<Value>),
    /// Nothing to record (an unmapped type or no usable recipient); logged with this reason.
    Ignored(String),
}

/// Why a body is not a Resend event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Resend event: {0}")]
pub struct NotAnEvent(pub &'static str);

/// Most recipients of one event turned into messages (Resend allows 50 per email).
const MAX_RECIPIENTS: usize = 50;

/// Maps one Resend webhook body, delivered under Svix message id `delivery_id`.
pub fn map_event(delivery_id: &str, event: &Value) -> Result<Mapped, NotAnEvent> {
    let kind = text(&event["type"]).ok_or(NotAnEvent("no type"))?;
    let data = event["data"].as_object().ok_or(NotAnEvent("no data"))?;
    let name = match kind {
        "email.delivered" => "email_delivered",
        "email.opened" => "email_opened",
        "email.clicked" => "email_clicked",
        "email.bounced" => "email_bounced",
        other => {
            return Ok(Mapped::Ignored(format!(
                "Resend event type {other} is not mapped"
            )));
        }
    };
    let timestamp = text(&event["created_at"])
        .or_else(|| data.get("created_at").and_then(text))
        .and_then(crate::ingest::prepare::parse_time)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let recipients: Vec<String> = match data.get("to") {
        Some(Value::Array(to)) => to.iter().filter_map(clean_email).collect(),
        Some(one) => clean_email(one).into_iter().collect(),
        None => Vec::new(),
    };
    let mut seen = std::collections::HashSet::new();
    let recipients: Vec<String> = recipients
        .into_iter()
        .filter(|e| seen.insert(e.to_lowercase()))
        .take(MAX_RECIPIENTS)
        .collect();
    if recipients.is_empty() {
        return Ok(Mapped::Ignored(format!("{kind} names no recipient email")));
    }
    let properties = properties(data);
    let many = recipients.len() > 1;
    let messages = recipients
        .iter()
        .enumerate()
        .map(|(i, email)| {
            let message_id = if many {
                format!("resend-{delivery_id}-{i}")
            } else {
                format!("resend-{delivery_id}")
            };
            let mut m = json!({
                "type": "track",
                "event": name,
                "messageId": message_id,
                "anonymousId": anonymous_id_for_email(email),
                "properties": properties,
                "context": {
                    "library": {"name": "touchpoint-resend-webhook", "version": env!("CARGO_PKG_VERSION")},
                    "traits": {"email": email},
                    "resend": {"deliveryId": delivery_id, "eventType": kind},
                },
            });
            if let Some(ts) = &timestamp {
                m["timestamp"] = json!(ts);
            }
            m
        })
        .collect();
    Ok(Mapped::Messages(messages))
}

/// The planned properties of an email event.
fn properties(data: &Map<String, Value>) -> Value {
    let mut p = Map::new();
    let mut put = |key: &str, value: Option<&Value>| {
        if let Some(s) = value.and_then(text) {
            p.insert(key.into(), json!(s));
        }
    };
    put("email_id", data.get("email_id"));
    put("subject", data.get("subject"));
    put("from", data.get("from"));
    put("broadcast_id", data.get("broadcast_id"));
    let click = data.get("click");
    put("link", click.and_then(|c| c.get("link")));
    let bounce = data.get("bounce");
    put("bounce_type", bounce.and_then(|b| b.get("type")));
    put("bounce_subtype", bounce.and_then(|b| b.get("subType")));
    put("bounce_message", bounce.and_then(|b| b.get("message")));
    // Tags: `[{name, value}]` (current) or `{name: value}` (older payloads) → `{name: value}`.
    let tags: Map<String, Value> = match data.get("tags") {
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|t| Some((text(&t["name"])?.to_owned(), json!(text(&t["value"])?))))
            .collect(),
        Some(Value::Object(map)) => map
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), json!(text(v)?))))
            .collect(),
        _ => Map::new(),
    };
    if !tags.is_empty() {
        p.insert("tags".into(), Value::Object(tags));
    }
    Value::Object(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use touchpoint_tracking_plan::Message;

    fn event(kind: &str, extra: Value) -> Value {
        let mut data = json!({
            "broadcast_id": "8b146471-e88e-4322-86af-016cd36fd216",
            "created_at": "2026-11-22T23:41:11.894719+00:00",
            "email_id": "56761188-7520-42d8-8898-ff6fc54ce618",
            "from": "Acme <onboarding@resend.dev>",
            "to": ["Ada@Example.com"],
            "subject": "Welcome to Acme",
            "tags": [{"name": "category", "value": "onboarding"}],
        });
        for (k, v) in extra.as_object().unwrap() {
            data[k] = v.clone();
        }
        json!({"type": kind, "created_at": "2026-11-22T23:41:12.126Z", "data": data})
    }

    fn messages(event: &Value) -> Vec<Value> {
        match map_event("msg_2Kx", event).unwrap() {
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
    fn an_open_is_tracked_for_the_recipient_by_email() {
        let m = messages(&event("email.opened", json!({})));
        assert_eq!(m.len(), 1);
        let t = &m[0];
        assert_eq!(t["event"], "email_opened");
        assert_eq!(t["messageId"], "resend-msg_2Kx");
        assert_eq!(t["timestamp"], "2026-11-22T23:41:12.126Z");
        assert_eq!(t["context"]["traits"]["email"], "Ada@Example.com");
        assert_eq!(
            t["anonymousId"],
            anonymous_id_for_email("ada@example.com").as_str()
        );
        assert_eq!(
            t["properties"],
            json!({"email_id": "56761188-7520-42d8-8898-ff6fc54ce618", "subject": "Welcome to Acme",
                   "from": "Acme <onboarding@resend.dev>", "broadcast_id": "8b146471-e88e-4322-86af-016cd36fd216",
                   "tags": {"category": "onboarding"}})
        );
    }

    #[test]
    fn clicks_carry_the_link_and_bounces_their_kind() {
        let click = messages(&event(
            "email.clicked",
            json!({"click": {"ipAddress": "122.115.53.11", "link": "https://acme.test/start",
                              "timestamp": "2026-11-24T05:00:57.163Z", "userAgent": "Mozilla/5.0"}}),
        ));
        assert_eq!(click[0]["event"], "email_clicked");
        assert_eq!(click[0]["properties"]["link"], "https://acme.test/start");
        assert!(click[0]["properties"].get("ipAddress").is_none());
        let bounce = messages(&event(
            "email.bounced",
            json!({"bounce": {"message": "Mailbox does not exist", "subType": "General", "type": "Permanent"}}),
        ));
        assert_eq!(bounce[0]["event"], "email_bounced");
        assert_eq!(bounce[0]["properties"]["bounce_type"], "Permanent");
        assert_eq!(bounce[0]["properties"]["bounce_subtype"], "General");
        assert_eq!(
            bounce[0]["properties"]["bounce_message"],
            "Mailbox does not exist"
        );
        let delivered = messages(&event(
            "email.delivered",
            json!({"tags": {"kind": "receipt"}}),
        ));
        assert_eq!(delivered[0]["event"], "email_delivered");
        assert_eq!(
            delivered[0]["properties"]["tags"],
            json!({"kind": "receipt"})
        );
    }

    #[test]
    fn each_recipient_gets_its_own_message_with_a_stable_id() {
        let m = messages(&event(
            "email.delivered",
            json!({"to": ["a@example.com", "not an address", "b@example.com"]}),
        ));
        assert_eq!(m.len(), 2);
        assert_eq!(m[0]["messageId"], "resend-msg_2Kx-0");
        assert_eq!(m[1]["messageId"], "resend-msg_2Kx-1");
        assert_eq!(m[1]["context"]["traits"]["email"], "b@example.com");
    }

    #[test]
    fn other_types_and_events_without_recipients_are_ignored() {
        for kind in [
            "email.sent",
            "email.complained",
            "contact.created",
            "domain.updated",
        ] {
            assert!(
                matches!(
                    map_event("m", &event(kind, json!({}))),
                    Ok(Mapped::Ignored(_))
                ),
                "{kind}"
            );
        }
        assert!(matches!(
            map_event("m", &event("email.opened", json!({"to": []}))),
            Ok(Mapped::Ignored(_))
        ));
        assert!(map_event("m", &json!({"type": "email.opened"})).is_err());
        assert!(map_event("m", &json!({"data": {}})).is_err());
    }
}
