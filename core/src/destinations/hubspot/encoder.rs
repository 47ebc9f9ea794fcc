//! Pure HubSpot encoder: contacts (by email) and companies (by the groupId property) through the
//! CRM v3 batch upsert endpoints, at most 100 inputs a call, one input per id per batch, with the
//! properties `CRM_MAPPINGS.md` maps ([`crate::crm::mapping`]); each input's field times travel
//! beside it for the service's last-modified-wins check. A group call of a person with an email
//! also associates their contact with the company (v4 batch associate; the service turns the email
//! and groupId into HubSpot ids).

use crate::crm::mapping::{Crm, Mappings};
use crate::crm::outbound::{self, FIELD_TIMES};
use crate::destinations::{Activation, ActivationKind, Encoded, Method, Request};
use serde_json::{Map, Value, json};

/// Inputs per batch call (HubSpot's limit).
pub const MAX_INPUTS: usize = 100;
/// The v4 call associating contacts with companies (default association type).
pub const ASSOCIATE_PATH: &str = "/crm/v4/associations/contacts/companies/batch/associate/default";
/// Body key naming the id properties the association inputs use (removed by the service).
pub const ID_PROPERTIES: &str = "touchpointIdProperties";

/// Whether HubSpot wants this activation: identifies with an email, group calls (never one the
/// HubSpot sync itself made).
pub fn accepts(a: &Activation) -> bool {
    if outbound::origin(a) == Some("hubspot") {
        return false;
    }
    match a.kind {
        ActivationKind::Identify => a.email.is_some(),
        ActivationKind::Group => a.account.is_some(),
        _ => false,
    }
}

/// An input: id, properties, their times.
type Input = (String, Map<String, Value>, Map<String, Value>);

fn mapped(
    m: &Mappings,
    object: &str,
    a: &Activation,
    p: &mut Map<String, Value>,
) -> Map<String, Value> {
    let mut times = Map::new();
    if let Some(map) = m.object(Crm::HubSpot, object) {
        for (field, value, t) in outbound::fields(map, a, Crm::HubSpot) {
            p.insert(field.clone(), value);
            times.insert(field, json!(t));
        }
    }
    times
}

fn contact(m: &Mappings, a: &Activation) -> Option<Input> {
    let email = a.email.clone()?;
    let mut p = Map::new();
    p.insert("email".into(), json!(email));
    if let Some(u) = &a.user_id {
        p.insert("touchpoint_user_id".into(), json!(u));
    }
    if let Some(ph) = a.phone.clone() {
        p.insert("phone".into(), json!(ph));
    }
    let times = mapped(m, "contacts", a, &mut p);
    Some((email, p, times))
}

fn company(m: &Mappings, company_id_property: &str, a: &Activation) -> Option<Input> {
    let acc = a.account.as_ref()?;
    let mut p = Map::new();
    p.insert(company_id_property.into(), json!(acc.group_id));
    p.insert(
        "name".into(),
        json!(
            acc.trait_str("name")
                .or_else(|| acc.trait_str("company"))
                .unwrap_or_else(|| acc.group_id.clone())
        ),
    );
    let times = mapped(m, "companies", a, &mut p);
    Some((acc.group_id.clone(), p, times))
}

fn batches(object: &str, id_property: &str, items: Vec<(Input, Vec<usize>)>) -> Vec<Request> {
    items
        .chunks(MAX_INPUTS)
        .map(|chunk| {
            let mut body = json!({
                "inputs": chunk.iter().map(|((id, props, _), _)| json!({
                    "idProperty": id_property,
                    "id": id,
                    "properties": props,
                })).collect::<Vec<_>>()
            });
            body[FIELD_TIMES] = chunk
                .iter()
                .map(|((_, _, t), _)| Value::Object(t.clone()))
                .collect();
            Request {
                method: Method::Post,
                path: format!("/crm/v3/objects/{object}/batch/upsert"),
                body: Some(body),
                covers: chunk.iter().map(|(_, c)| c.clone()).collect(),
                label: format!("{object} batch upsert"),
            }
        })
        .collect()
}

fn upsert(items: &mut Vec<(Input, Vec<usize>)>, input: Input, i: usize) {
    let (id, props, times) = input;
    match items.iter_mut().find(|((k, _, _), _)| *k == id) {
        Some(((_, p, t), c)) => {
            p.extend(props);
            for (field, new) in times {
                let old = t.get(&field).and_then(Value::as_i64).unwrap_or(0);
                t.insert(field, json!(old.max(new.as_i64().unwrap_or(0))));
            }
            c.push(i);
        }
        None => items.push(((id, props, times), vec![i])),
    }
}

/// Encodes a batch; `company_id_property` is the unique company property holding the groupId.
pub fn encode(m: &Mappings, company_id_property: &str, batch: &[Activation]) -> Encoded {
    let mut companies = Vec::new();
    let mut contacts = Vec::new();
    let mut links: Vec<((String, String), Vec<usize>)> = Vec::new();
    for (i, a) in batch.iter().enumerate() {
        if !accepts(a) {
            continue;
        }
        if a.kind == ActivationKind::Group
            && let Some(input) = company(m, company_id_property, a)
        {
            upsert(&mut companies, input, i);
            if let (Some(email), Some(acc)) = (&a.email, &a.account) {
                let pair = (email.clone(), acc.group_id.clone());
                match links.iter_mut().find(|(p, _)| *p == pair) {
                    Some((_, c)) => c.push(i),
                    None => links.push((pair, vec![i])),
                }
            }
        }
        if a.kind == ActivationKind::Identify
            && let Some(input) = contact(m, a)
        {
            upsert(&mut contacts, input, i);
        }
    }
    let mut requests = batches("companies", company_id_property, companies);
    requests.extend(batches("contacts", "email", contacts));
    for chunk in links.chunks(MAX_INPUTS) {
        requests.push(Request {
            method: Method::Post,
            path: ASSOCIATE_PATH.into(),
            body: Some(json!({
                "inputs": chunk.iter().map(|((email, group), _)| json!({
                    "from": {"id": email}, "to": {"id": group},
                })).collect::<Vec<_>>(),
                ID_PROPERTIES: {"from": "email", "to": company_id_property},
            })),
            covers: chunk.iter().map(|(_, c)| c.clone()).collect(),
            label: "contact–company associations".into(),
        });
    }
    Encoded {
        requests,
        rejected: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identify(i: usize) -> Activation {
        serde_json::from_value(json!({
            "key": format!("m:{i}"), "kind": "identify", "timestamp_ms": 0,
            "profile_id": format!("p{i}"), "user_id": format!("u{i}"),
            "email": format!("u{i}@example.com"), "traits": {"name": "Ada Lovelace"},
        }))
        .unwrap()
    }

    #[test]
    fn contacts_are_upserted_by_email_at_most_100_per_call() {
        let batch: Vec<Activation> = (0..250).map(identify).collect();
        let e = encode(&Mappings::bundled(), "touchpoint_account_id", &batch);
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
        g.kind = ActivationKind::Group;
        g.account = serde_json::from_value(json!({
            "group_id": "acme", "traits": {"name": "Acme", "seats_provisioned": 5},
        }))
        .unwrap();
        let e = encode(
            &Mappings::bundled(),
            "touchpoint_account_id",
            &[g.clone(), g],
        );
        assert_eq!(e.requests.len(), 2);
        assert_eq!(e.requests[0].covers, vec![vec![0, 1]]);
        // The person's contact is associated with the company, once.
        assert_eq!(e.requests[1].path, ASSOCIATE_PATH);
        assert_eq!(e.requests[1].covers, vec![vec![0, 1]]);
        let link = &e.requests[1].body.as_ref().unwrap()["inputs"][0];
        assert_eq!(link["from"]["id"], "u1@example.com");
        assert_eq!(link["to"]["id"], "acme");
        let input = &e.requests[0].body.as_ref().unwrap()["inputs"][0];
        assert_eq!(input["idProperty"], "touchpoint_account_id");
        assert_eq!(input["id"], "acme");
        assert_eq!(input["properties"]["name"], "Acme");
        assert_eq!(input["properties"]["seats_provisioned"], "5");
    }

    #[test]
    fn changes_the_hubspot_sync_made_are_not_sent_back_to_hubspot() {
        let mut a = identify(1);
        a.message = Some(json!({"context": {"crm": {"system": "hubspot"}}}));
        assert!(!accepts(&a));
        a.message = Some(json!({"context": {"crm": {"system": "salesforce"}}}));
        assert!(accepts(&a), "a Salesforce change still reaches HubSpot");
    }
}
