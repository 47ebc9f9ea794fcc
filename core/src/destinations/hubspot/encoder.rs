//! Pure HubSpot encoder: contacts (by email) and companies (by the groupId property) through the
//! CRM v3 batch upsert endpoints, at most 100 inputs a call, one input per id per batch.

use crate::destinations::{Activation, Encoded, Method, Request};
use serde_json::{Map, Value, json};

/// Inputs per batch call (HubSpot's limit).
pub const MAX_INPUTS: usize = 100;

/// Whether HubSpot wants this activation: identifies with an email, group calls.
pub fn accepts(a: &Activation) -> bool {
    match a.kind.as_str() {
        "identify" => a.email.is_some(),
        "group" => a.account.is_some(),
        _ => false,
    }
}

fn contact(a: &Activation) -> Option<(String, Map<String, Value>)> {
    let email = a.email.clone()?;
    let mut p = Map::new();
    p.insert("email".into(), json!(email));
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
        p.insert("firstname".into(), json!(f));
    }
    if let Some(l) = last {
        p.insert("lastname".into(), json!(l));
    }
    if let Some(u) = &a.user_id {
        p.insert("touchpoint_user_id".into(), json!(u));
    }
    if let Some(r) = a.trait_str("user_role") {
        p.insert("jobtitle".into(), json!(r));
    }
    if let Some(c) = a.trait_str("company") {
        p.insert("company".into(), json!(c));
    }
    if let Some(ph) = a.phone.clone() {
        p.insert("phone".into(), json!(ph));
    }
    if let Some(t) = a.trait_str("plan_tier") {
        p.insert("plan_tier".into(), json!(t));
    }
    Some((email, p))
}

fn company(a: &Activation) -> Option<(String, Map<String, Value>)> {
    let acc = a.account.as_ref()?;
    let mut p = Map::new();
    p.insert(
        "name".into(),
        json!(
            acc.trait_str("name")
                .or_else(|| acc.trait_str("company"))
                .unwrap_or_else(|| acc.group_id.clone())
        ),
    );
    for (ours, theirs) in [
        ("seats_provisioned", "seats_provisioned"),
        ("plan_tier", "plan_tier"),
        ("industry", "industry"),
        ("website", "domain"),
    ] {
        if let Some(v) = acc.trait_str(ours) {
            p.insert(theirs.into(), json!(v));
        }
    }
    Some((acc.group_id.clone(), p))
}

fn batches(
    object: &str,
    id_property: &str,
    items: Vec<(String, Map<String, Value>, Vec<usize>)>,
) -> Vec<Request> {
    items
        .chunks(MAX_INPUTS)
        .map(|chunk| Request {
            method: Method::Post,
            path: format!("/crm/v3/objects/{object}/batch/upsert"),
            body: Some(json!({
                "inputs": chunk.iter().map(|(id, props, _)| json!({
                    "idProperty": id_property,
                    "id": id,
                    "properties": props,
                })).collect::<Vec<_>>()
            })),
            covers: chunk.iter().map(|(_, _, c)| c.clone()).collect(),
            label: format!("{object} batch upsert"),
        })
        .collect()
}

fn upsert(
    items: &mut Vec<(String, Map<String, Value>, Vec<usize>)>,
    id: String,
    props: Map<String, Value>,
    i: usize,
) {
    match items.iter_mut().find(|(k, _, _)| *k == id) {
        Some((_, p, c)) => {
            p.extend(props);
            c.push(i);
        }
        None => items.push((id, props, vec![i])),
    }
}

/// Encodes a batch; `company_id_property` is the unique company property holding the groupId.
pub fn encode(company_id_property: &str, batch: &[Activation]) -> Encoded {
    let mut companies = Vec::new();
    let mut contacts = Vec::new();
    for (i, a) in batch.iter().enumerate() {
        if !accepts(a) {
            continue;
        }
        if a.kind == "group"
            && let Some((id, p)) = company(a)
        {
            upsert(&mut companies, id, p, i);
        }
        if a.kind == "identify"
            && let Some((id, p)) = contact(a)
        {
            upsert(&mut contacts, id, p, i);
        }
    }
    let mut requests = batches("companies", company_id_property, companies);
    requests.extend(batches("contacts", "email", contacts));
    Encoded {
        requests,
        rejected: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destinations::AccountSnapshot;

    fn identify(i: usize) -> Activation {
        Activation {
            key: format!("m:{i}"),
            kind: "identify".into(),
            message_id: None,
            event: None,
            message: None,
            timestamp_ms: 0,
            profile_id: format!("p{i}"),
            user_id: Some(format!("u{i}")),
            anonymous_id: None,
            email: Some(format!("u{i}@example.com")),
            phone: None,
            traits: serde_json::from_value(json!({"name": "Ada Lovelace"})).unwrap(),
            account: None,
            audience: None,
            visit: None,
        }
    }

    #[test]
    fn contacts_are_upserted_by_email_at_most_100_per_call() {
        let batch: Vec<Activation> = (0..250).map(identify).collect();
        let e = encode("touchpoint_account_id", &batch);
        assert_eq!(
            e.requests
                .iter()
                .map(|r| r.covers.len())
                .collect::<Vec<_>>(),
            vec![100, 100, 50]
        );
        let input = &e.requests[0].body.as_ref().unwrap()["inputs"][0];
        assert_eq!(e.requests[0].path, "/crm/v3/objects/contacts/batch/upsert");
        assert_eq!(input["idProperty"], "email");
        assert_eq!(input["id"], "u0@example.com");
        assert_eq!(input["properties"]["firstname"], "Ada");
        assert_eq!(input["properties"]["lastname"], "Lovelace");
        assert_eq!(input["properties"]["touchpoint_user_id"], "u0");
    }

    #[test]
    fn group_calls_upsert_companies_by_the_group_id_property() {
        let mut g = identify(1);
        g.kind = "group".into();
        g.account = Some(AccountSnapshot {
            group_id: "acme".into(),
            traits: serde_json::from_value(json!({"name": "Acme", "seats_provisioned": 5}))
                .unwrap(),
            ..AccountSnapshot::default()
        });
        let e = encode("touchpoint_account_id", &[g.clone(), g]);
        assert_eq!(e.requests.len(), 1);
        assert_eq!(e.requests[0].covers, vec![vec![0, 1]]);
        let input = &e.requests[0].body.as_ref().unwrap()["inputs"][0];
        assert_eq!(input["idProperty"], "touchpoint_account_id");
        assert_eq!(input["id"], "acme");
        assert_eq!(input["properties"]["name"], "Acme");
        assert_eq!(input["properties"]["seats_provisioned"], "5");
    }
}
