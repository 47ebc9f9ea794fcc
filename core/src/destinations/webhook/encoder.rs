//! Pure webhook encoder: every activation as a JSON event, at most 100 per POST.

use crate::destinations::{Activation, Encoded, Method, Request};
use serde_json::{Value, json};

/// Events per POST.
pub const MAX_EVENTS: usize = 100;

/// The JSON a receiver gets for one activation.
pub fn event(a: &Activation) -> Value {
    let timestamp = chrono::DateTime::from_timestamp_millis(a.timestamp_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    json!({
        "id": a.key,
        "type": a.kind,
        "messageId": a.message_id,
        "event": a.event,
        "audience": a.audience,
        "timestamp": timestamp,
        "profileId": a.profile_id,
        "userId": a.user_id,
        "anonymousId": a.anonymous_id,
        "email": a.email,
        "traits": a.traits,
        "properties": a.properties(),
        "account": a.account.as_ref().map(|acc| json!({
            "groupId": acc.group_id,
            "traits": acc.traits,
            "activeUsersLast7Days": acc.active_users_7d,
            "keyFeaturesUsed": acc.key_features,
            "journeyStage": acc.journey_stage,
            "pql": acc.pql,
        })),
    })
}

/// Encodes a batch (the service signs each body when it sends it).
pub fn encode(batch: &[Activation]) -> Encoded {
    let indexed: Vec<(usize, Value)> = batch.iter().map(event).enumerate().collect();
    Encoded {
        requests: indexed
            .chunks(MAX_EVENTS)
            .map(|chunk| Request {
                method: Method::Post,
                path: String::new(),
                body: Some(
                    json!({"events": chunk.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>()}),
                ),
                covers: chunk.iter().map(|(i, _)| vec![*i]).collect(),
                label: "webhook".into(),
            })
            .collect(),
        rejected: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_their_idempotency_key_and_batches_hold_100() {
        let a = Activation {
            key: "m:9".into(),
            kind: crate::destinations::ActivationKind::Track,
            message_id: Some("msg-9".into()),
            event: Some("workspace_created".into()),
            message: Some(json!({"properties": {"workspace_id": "ws-1"}})),
            timestamp_ms: 0,
            profile_id: "p".into(),
            user_id: Some("u".into()),
            anonymous_id: None,
            email: None,
            phone: None,
            traits: serde_json::Map::new(),
            account: None,
            audience: None,
            visit: None,
        };
        let batch = vec![a; 150];
        let e = encode(&batch);
        assert_eq!(e.requests.len(), 2);
        let first = &e.requests[0].body.as_ref().unwrap()["events"][0];
        assert_eq!(first["id"], "m:9");
        assert_eq!(first["properties"]["workspace_id"], "ws-1");
        assert_eq!(first["timestamp"], "1970-01-01T00:00:00.000Z");
    }
}
