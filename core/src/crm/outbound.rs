//! What the Salesforce and HubSpot destinations share for writing CRM fields: the mapped fields of
//! an activation with the time each value was set (pure), and the service-side shell that drops
//! fields the CRM changed more recently (last-modified-wins) and remembers what was written (echo
//! suppression for the inbound sync).
//!
//! A field's time is the activation's event time when its own message set the trait (an identify
//! for profile traits, a group call for account traits), else 0: a value merely carried along
//! from the profile never overwrites a CRM edit. The encoder puts the times beside the records
//! under [`FIELD_TIMES`]; the service removes them before the call.

use super::mapping::{self, Crm, ObjectMap};
use super::store::{CrmStore, FieldRow, Writes, digest, inbound_times};
use crate::destinations::{Activation, ActivationKind};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Body key of the per-record field times (`[{field: ms}]`, aligned with the records or inputs);
/// never sent to the CRM.
pub const FIELD_TIMES: &str = "touchpointFieldTimes";

/// The CRM a message came from (`context.crm.system`), if the sync made it.
pub fn origin(a: &Activation) -> Option<&str> {
    a.message.as_ref()?.pointer("/context/crm/system")?.as_str()
}

/// A profile trait, with `first_name`/`last_name` derived from `name` when absent.
pub fn person_value(a: &Activation, name: &str) -> Option<Value> {
    if let Some(v) = a.traits.get(name).filter(|v| !v.is_null()) {
        return Some(v.clone());
    }
    if matches!(name, "first_name" | "last_name") {
        let own = |k: &str| a.trait_str(k);
        let (first, last) = (
            own("first_name").or_else(|| own("firstName")),
            own("last_name").or_else(|| own("lastName")),
        );
        let derived = if first.is_some() || last.is_some() {
            (first, last)
        } else {
            match a.trait_str("name") {
                Some(n) => match n.rsplit_once(' ') {
                    Some((f, l)) => (Some(f.trim().to_owned()), Some(l.trim().to_owned())),
                    None => (None, Some(n)),
                },
                None => (None, None),
            }
        };
        let v = if name == "first_name" {
            derived.0
        } else {
            derived.1
        };
        return v.map(Value::String);
    }
    None
}

/// When the activation's own message set `trait_name` (ms), else 0.
pub fn field_time(a: &Activation, trait_name: &str, account: bool) -> i64 {
    let wanted = if account {
        ActivationKind::Group
    } else {
        ActivationKind::Identify
    };
    if a.kind != wanted {
        return 0;
    }
    let Some(traits) = a
        .message
        .as_ref()
        .and_then(|m| m.get("traits"))
        .and_then(Value::as_object)
    else {
        return 0;
    };
    let derived = matches!(trait_name, "first_name" | "last_name") && traits.contains_key("name");
    if traits.contains_key(trait_name) || derived {
        a.timestamp_ms
    } else {
        0
    }
}

/// The outbound fields of `object` for an activation: (field, CRM value, time). Account objects
/// read the activation's account traits.
pub fn fields(object: &ObjectMap, a: &Activation, crm: Crm) -> Vec<(String, Value, i64)> {
    let mut out = Vec::new();
    for f in object.outbound() {
        let value = if f.account {
            a.account
                .as_ref()
                .and_then(|acc| acc.traits.get(&f.trait_name))
                .filter(|v| !v.is_null())
                .cloned()
        } else {
            person_value(a, &f.trait_name)
        };
        let Some(value) = value else { continue };
        if let Some(v) = mapping::outbound(f, &value, crm) {
            out.push((f.field.clone(), v, field_time(a, &f.trait_name, f.account)));
        }
    }
    out
}

/// Removes [`FIELD_TIMES`] from a body and drops, from each record, the fields whose CRM-side
/// change is newer than ours. `records` is the body's array key (`records` or `inputs`), `key_of`
/// the record's key and `props` where its fields live (`None`: the record itself).
pub async fn resolve_conflicts(
    store: Option<&Arc<dyn CrmStore>>,
    crm: Crm,
    object: &str,
    body: &mut Value,
    records: &str,
    key_of: impl Fn(&Value) -> Option<String>,
    props: Option<&str>,
) -> Result<Vec<Map<String, Value>>, String> {
    let times: Vec<Map<String, Value>> = body
        .as_object_mut()
        .and_then(|b| b.remove(FIELD_TIMES))
        .and_then(|t| serde_json::from_value(t).ok())
        .unwrap_or_default();
    let Some(store) = store else {
        return Ok(times);
    };
    let Some(list) = body.get_mut(records).and_then(Value::as_array_mut) else {
        return Ok(times);
    };
    let keys: Vec<String> = list
        .iter()
        .filter_map(&key_of)
        .map(|k| digest(&k))
        .collect();
    if keys.is_empty() {
        return Ok(times);
    }
    let rows = store
        .fields(crm, object, &keys)
        .await
        .map_err(|e| format!("reading CRM field states: {e}"))?;
    let newer = inbound_times(&rows);
    for (i, rec) in list.iter_mut().enumerate() {
        let Some(key) = key_of(rec).map(|k| digest(&k)) else {
            continue;
        };
        let Some(t) = times.get(i) else { continue };
        let target = match props {
            Some(p) => rec.get_mut(p).and_then(Value::as_object_mut),
            None => rec.as_object_mut(),
        };
        let Some(target) = target else { continue };
        for (field, ours) in t {
            let ours = ours.as_i64().unwrap_or(0);
            if newer
                .get(&(key.clone(), field.clone()))
                .is_some_and(|theirs| *theirs > ours)
            {
                target.remove(field);
                tracing::debug!(crm = crm.as_str(), object, field = %field, "CRM value is newer; field not written");
            }
        }
    }
    Ok(times)
}

/// Remembers what was written to records that succeeded: every field, with its time (or `now`
/// for carried values), so the inbound sync recognises it as our own.
#[allow(clippy::too_many_arguments)]
pub async fn remember(
    store: Option<&Arc<dyn CrmStore>>,
    crm: Crm,
    object: &str,
    written: Vec<(String, Map<String, Value>)>,
    times: &[Map<String, Value>],
    skip: &[&str],
    now: i64,
) {
    let Some(store) = store else { return };
    let mut w = Writes::default();
    for (i, (key, fields)) in written.into_iter().enumerate() {
        let t: HashMap<&String, i64> = times
            .get(i)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k, v.as_i64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        for (field, value) in &fields {
            if field == "attributes" || skip.contains(&field.as_str()) || value.is_object() {
                continue;
            }
            let at = t.get(field).copied().filter(|t| *t > 0).unwrap_or(now);
            w.fields.push((
                object.to_owned(),
                FieldRow {
                    record_key: digest(&key),
                    field: field.clone(),
                    value: digest(&mapping::canon(value)),
                    modified_at: at,
                    origin: "out".into(),
                },
            ));
        }
    }
    if w.fields.is_empty() {
        return;
    }
    if let Err(e) = store.apply(crm, &w, now).await {
        tracing::warn!(crm = crm.as_str(), object, error = %e, "could not remember CRM writes; they may echo back once");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destinations::AccountSnapshot;
    use serde_json::json;

    fn identify(traits: Value) -> Activation {
        serde_json::from_value(json!({
            "key": "m:1", "kind": "identify", "timestamp_ms": 5_000, "profile_id": "p",
            "user_id": "u", "traits": {"name": "Ada Lovelace", "job_title": "CTO", "company": "Acme"},
            "message": {"traits": traits},
        }))
        .unwrap()
    }

    #[test]
    fn a_field_carries_the_time_of_the_message_that_set_it_else_zero() {
        let m = mapping::Mappings::bundled();
        let lead = m.object(Crm::Salesforce, "Lead").unwrap();
        let a = identify(json!({"job_title": "CTO"}));
        let f = fields(lead, &a, Crm::Salesforce);
        let get = |name: &str| f.iter().find(|(n, _, _)| n == name).cloned();
        assert_eq!(get("Title"), Some(("Title".into(), json!("CTO"), 5_000)));
        assert_eq!(
            get("FirstName"),
            Some(("FirstName".into(), json!("Ada"), 0))
        );
        assert_eq!(get("LastName").unwrap().1, json!("Lovelace"));
        assert_eq!(get("Company").unwrap().2, 0, "carried from the profile");
        let renamed = identify(json!({"name": "Ada King"}));
        assert_eq!(field_time(&renamed, "last_name", false), 5_000);
        assert_eq!(field_time(&renamed, "job_title", false), 0);
    }

    #[test]
    fn account_fields_read_account_traits_and_convert_to_the_crm_type() {
        let m = mapping::Mappings::bundled();
        let companies = m.object(Crm::HubSpot, "companies").unwrap();
        let mut a = identify(json!({}));
        a.kind = ActivationKind::Group;
        a.message = Some(json!({"traits": {"employees": 40}}));
        a.account = Some(AccountSnapshot {
            group_id: "acme".into(),
            traits: serde_json::from_value(json!({"name": "Acme", "employees": 40})).unwrap(),
            ..AccountSnapshot::default()
        });
        let f = fields(companies, &a, Crm::HubSpot);
        assert!(f.contains(&("numberofemployees".into(), json!("40"), 5_000)));
        assert!(f.contains(&("name".into(), json!("Acme"), 0)));
    }
}
