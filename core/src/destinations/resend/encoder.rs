//! Pure Resend encoder: `audience_entered` → add the contact to the mapped Resend audience,
//! `audience_exited` → remove it. Resend has no batch endpoint: one call per transition.

use crate::destinations::salesforce::encoder::segment;
use crate::destinations::{Activation, ActivationKind, Encoded, Method, Request};
use serde_json::json;
use std::collections::BTreeMap;

/// Whether Resend wants this activation: a transition of a synced audience, for a profile with an email.
pub fn accepts(audiences: &BTreeMap<String, String>, a: &Activation) -> bool {
    a.is_audience()
        && a.email.is_some()
        && a.audience
            .as_ref()
            .is_some_and(|x| audiences.contains_key(x))
}

/// Encodes a batch.
pub fn encode(audiences: &BTreeMap<String, String>, batch: &[Activation]) -> Encoded {
    let mut requests = Vec::new();
    for (i, a) in batch.iter().enumerate() {
        if !accepts(audiences, a) {
            continue;
        }
        let (Some(email), Some(resend_id)) = (
            a.email.as_ref(),
            a.audience.as_ref().and_then(|x| audiences.get(x)),
        ) else {
            continue;
        };
        let request = if a.kind == ActivationKind::AudienceEntered {
            let mut body = json!({"email": email, "unsubscribed": false});
            let first = a
                .trait_str("first_name")
                .or_else(|| a.trait_str("firstName"));
            let last = a.trait_str("last_name").or_else(|| a.trait_str("lastName"));
            let (first, last) = match (first, last, a.trait_str("name")) {
                (None, None, Some(n)) => match n.rsplit_once(' ') {
                    Some((f, l)) => (Some(f.to_owned()), Some(l.to_owned())),
                    None => (Some(n), None),
                },
                (f, l, _) => (f, l),
            };
            if let Some(f) = first {
                body["first_name"] = json!(f);
            }
            if let Some(l) = last {
                body["last_name"] = json!(l);
            }
            Request {
                method: Method::Post,
                path: format!("/audiences/{}/contacts", segment(resend_id)),
                body: Some(body),
                covers: vec![vec![i]],
                label: "audience contact add".into(),
            }
        } else {
            Request {
                method: Method::Delete,
                path: format!(
                    "/audiences/{}/contacts/{}",
                    segment(resend_id),
                    segment(email)
                ),
                body: None,
                covers: vec![vec![i]],
                label: "audience contact remove".into(),
            }
        };
        requests.push(request);
    }
    Encoded {
        requests,
        rejected: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transition(kind: &str, audience: &str) -> Activation {
        Activation {
            key: "a:1".into(),
            kind: ActivationKind::parse(kind).unwrap(),
            message_id: None,
            event: None,
            message: None,
            timestamp_ms: 0,
            profile_id: "p".into(),
            user_id: None,
            anonymous_id: None,
            email: Some("ada+pql@example.com".into()),
            phone: None,
            traits: serde_json::from_value(json!({"name": "Ada Lovelace"})).unwrap(),
            account: None,
            audience: Some(audience.into()),
            visit: None,
        }
    }

    #[test]
    fn entering_adds_and_exiting_removes_the_contact_of_synced_audiences_only() {
        let map: BTreeMap<String, String> = [("pql".to_owned(), "aud-1".to_owned())]
            .into_iter()
            .collect();
        let e = encode(
            &map,
            &[
                transition("audience_entered", "pql"),
                transition("audience_exited", "pql"),
                transition("audience_entered", "other"),
            ],
        );
        assert_eq!(e.requests.len(), 2);
        assert_eq!(e.requests[0].method, Method::Post);
        assert_eq!(e.requests[0].path, "/audiences/aud-1/contacts");
        let body = e.requests[0].body.as_ref().unwrap();
        assert_eq!(body["email"], "ada+pql@example.com");
        assert_eq!(body["first_name"], "Ada");
        assert_eq!(body["last_name"], "Lovelace");
        assert_eq!(e.requests[1].method, Method::Delete);
        assert_eq!(
            e.requests[1].path,
            "/audiences/aud-1/contacts/ada%2Bpql%40example.com"
        );
    }
}
