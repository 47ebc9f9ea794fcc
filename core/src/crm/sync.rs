//! Inbound sync, decided purely: CRM changes (already read and normalised into [`Change`]s) plus
//! what the store knows → the messages to hand to the intake, the field states and records to
//! write, and the external ids to write back to the CRM.
//!
//! - Echo suppression: a field whose value equals the last value we wrote (or read) is not a
//!   change and produces nothing; a record that only echoes our writes produces no message.
//! - Last-modified-wins: an inbound change carries the CRM's modified time as its timestamp, so
//!   profile traits (last write wins by event time) keep whichever side changed last; the field's
//!   CRM-side time is stored so the outbound encoders skip older values of ours.
//! - Matching: records carry the person's userId when the CRM has it (the external id field);
//!   otherwise the profile holding the CRM id as an identity, else the one holding the email; a
//!   person the CRM created and nobody knows gets an `anonymousId` of `<crm>-<object>-<id>`.
//! - Accounts: account and opportunity/deal changes become `group` calls sent as a known member of
//!   the account (the CRM gives no person); with no member yet they wait (`pending`).

use super::mapping::{self, Crm, Mappings, ObjectKind};
use super::store::{FieldRow, RecordRow, Writes, digest};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use touchpoint_tracking_plan::TrackingPlan;

/// The account a person or an opportunity/deal belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountLink {
    /// The groupId: the account's external id, or `<crm>-<id>` when it has none yet.
    pub group_id: String,
    /// The CRM's id of the account.
    pub crm_id: String,
}

/// One changed (or deleted) CRM record, normalised.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Change {
    /// The object (`Lead`, `contacts`…).
    pub object: String,
    /// The CRM's id.
    pub id: String,
    /// The external key it carries (userId on Lead/Contact, groupId on Account/companies, email
    /// on HubSpot contacts), if any.
    pub key: Option<String>,
    /// The userId the record carries (`Touchpoint_User_Id__c`, `touchpoint_user_id`).
    pub user_id: Option<String>,
    /// A person's email.
    pub email: Option<String>,
    /// The CRM's modified time (ms).
    pub modified_at: i64,
    /// Raw values of the mapped inbound fields, by field (relationship paths included).
    pub values: Map<String, Value>,
    /// The account (person: theirs; opportunity/deal: its).
    pub account: Option<AccountLink>,
    /// A converted Lead's Contact id.
    pub converted_contact: Option<String>,
    /// Deleted in the CRM (only `object` and `id` are known).
    pub deleted: bool,
}

/// An external id to write on a CRM record before its messages are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteBack {
    /// The object.
    pub object: String,
    /// The record's CRM id.
    pub id: String,
    /// The external-id field.
    pub field: String,
    /// Its value.
    pub value: String,
}

/// What the store knows, loaded before deciding.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Records by (object, CRM id).
    pub records: HashMap<(String, String), RecordRow>,
    /// Field states by (object, key, field).
    pub fields: HashMap<(String, String, String), FieldRow>,
    /// Identity lookups: (kind, value) → the (kind, value) messages should carry.
    pub who: HashMap<(String, String), (String, String)>,
    /// Account members: groupId → (kind, value).
    pub members: HashMap<String, (String, String)>,
    /// Account changes waiting for a member: (object, record).
    pub pending: Vec<(String, RecordRow)>,
}

impl Known {
    /// Adds field rows of an object.
    pub fn add_fields(&mut self, object: &str, rows: Vec<FieldRow>) {
        for r in rows {
            self.fields.insert(
                (object.to_owned(), r.record_key.clone(), r.field.clone()),
                r,
            );
        }
    }
}

/// The outcome of one sync step.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    /// Messages for the intake, in order.
    pub messages: Vec<Value>,
    /// State to store once the messages are accepted.
    pub writes: Writes,
    /// External ids to write to the CRM first.
    pub write_backs: Vec<WriteBack>,
    /// Values that did not convert, accounts without members… (logged).
    pub notes: Vec<String>,
    /// Changed fields found (each a change of one field of one record).
    pub changed_fields: usize,
}

/// The identity kind of a CRM object's ids (`salesforce_lead_id`, `hubspot_contact_id`).
pub fn id_kind(crm: Crm, object: &str) -> String {
    let object = match object {
        "contacts" => "contact",
        "companies" => "company",
        "deals" => "deal",
        o => o,
    };
    format!("{}_{}_id", crm.as_str(), object.to_ascii_lowercase())
}

/// The groupId of an account that has no external id yet.
pub fn synthetic_group(crm: Crm, id: &str) -> String {
    format!("{}-{id}", crm.as_str())
}

/// The external-id field of an object, for write-backs.
pub fn key_field(crm: Crm, object: &str) -> Option<&'static str> {
    match (crm, object) {
        (Crm::Salesforce, "Lead" | "Contact") => Some("Touchpoint_User_Id__c"),
        (Crm::Salesforce, "Account") => Some("Touchpoint_Account_Id__c"),
        (Crm::HubSpot, "contacts") => Some("touchpoint_user_id"),
        (Crm::HubSpot, "companies") => Some("touchpoint_account_id"),
        _ => None,
    }
}

fn message_id(crm: Crm, object: &str, id: &str, at: i64, what: &str) -> String {
    let digest = Sha256::digest(format!("{crm}\u{0}{object}\u{0}{id}\u{0}{at}\u{0}{what}"));
    format!("crm-{}", &hex::encode(digest)[..32])
}

fn context(crm: Crm, c: &Change, fields: &[String], ids: &[(String, String)]) -> Value {
    let mut ctx = json!({
        "library": {"name": "touchpoint-crm", "version": env!("CARGO_PKG_VERSION")},
        "crm": {"system": crm.as_str(), "object": c.object, "id": c.id,
                "modifiedAt": mapping::rfc3339(c.modified_at), "fields": fields, "deleted": c.deleted},
    });
    if !ids.is_empty() {
        ctx["externalIds"] = ids
            .iter()
            .map(|(kind, id)| json!({"type": kind, "id": id, "collection": "users", "encoding": "none"}))
            .collect();
    }
    ctx
}

fn identified(mut m: Value, who: &(String, String)) -> Value {
    match who.0.as_str() {
        "user_id" => m["userId"] = json!(who.1),
        _ => m["anonymousId"] = json!(who.1),
    }
    m
}

/// Decides one sync step. `changes` are in the order read (people before accounts, then
/// opportunities and deals); `now` stamps nothing but notes.
pub fn decide(
    crm: Crm,
    changes: &[Change],
    known: &Known,
    mappings: &Mappings,
    plan: &TrackingPlan,
) -> Decision {
    let mut d = Decision::default();
    // Who speaks for each account in this step: the people linked to it.
    let mut speakers: HashMap<String, (String, String)> = HashMap::new();
    // Records decided in this step, so a later change of the same record sees them.
    let mut seen: HashMap<(String, String), RecordRow> = HashMap::new();
    let mut fields_now: HashMap<(String, String, String), String> = HashMap::new();
    for c in changes {
        let Some(kind) = mapping::kind_of(crm, &c.object) else {
            continue;
        };
        let rkey = (c.object.clone(), c.id.clone());
        let before = seen
            .get(&rkey)
            .or_else(|| known.records.get(&rkey))
            .cloned();
        if c.deleted {
            let Some(row) = before else { continue };
            deleted(
                crm,
                c,
                &row,
                kind,
                known,
                mappings,
                &speakers,
                &mut fields_now,
                &mut d,
            );
            continue;
        }
        let row = match kind {
            ObjectKind::Person => {
                let decided = person(
                    crm,
                    c,
                    before,
                    known,
                    mappings,
                    plan,
                    &mut fields_now,
                    &mut d,
                );
                if let Some((row, who)) = &decided
                    && let Some(g) = &row.group_id
                {
                    speakers.entry(g.clone()).or_insert(who.clone());
                }
                decided.map(|(row, _)| row)
            }
            ObjectKind::Account | ObjectKind::AccountChild => account(
                crm,
                c,
                kind,
                before,
                known,
                mappings,
                plan,
                &speakers,
                &mut fields_now,
                &mut d,
            ),
        };
        if let Some(row) = row {
            seen.insert(rkey, row.clone());
            d.writes.records.push((c.object.clone(), row));
        }
    }
    // Account changes that waited for a member.
    for (object, row) in &known.pending {
        if seen.contains_key(&(object.clone(), row.record_id.clone())) {
            continue;
        }
        let Some(group) = &row.group_id else { continue };
        let Some(who) = speakers.get(group).or_else(|| known.members.get(group)) else {
            continue;
        };
        let Some(p) = row
            .pending
            .as_deref()
            .and_then(|p| serde_json::from_str::<Value>(p).ok())
        else {
            continue;
        };
        let at = p["at"].as_i64().unwrap_or(0);
        let c = Change {
            object: object.clone(),
            id: row.record_id.clone(),
            modified_at: at,
            ..Change::default()
        };
        let fields: Vec<String> = p["fields"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|f| f.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let m = json!({
            "type": "group",
            "messageId": message_id(crm, object, &row.record_id, at, "group"),
            "timestamp": mapping::rfc3339(at),
            "groupId": group,
            "traits": p["traits"],
            "context": context(crm, &c, &fields, &[]),
        });
        d.messages.push(identified(m, who));
        let mut done = row.clone();
        done.pending = None;
        d.writes.records.push((object.clone(), done));
    }
    d
}

/// Compares a field with its last known state; records and returns the converted trait value when
/// it changed.
#[allow(clippy::too_many_arguments)]
fn changed(
    crm: Crm,
    c: &Change,
    key: &str,
    f: &mapping::FieldMap,
    known: &Known,
    plan: &TrackingPlan,
    fields_now: &mut HashMap<(String, String, String), String>,
    d: &mut Decision,
) -> Option<Value> {
    let raw = c.values.get(&f.field).cloned().unwrap_or(Value::Null);
    let text = digest(&mapping::canon(&raw));
    let k = (c.object.clone(), key.to_owned(), f.field.clone());
    let last = fields_now
        .get(&k)
        .cloned()
        .or_else(|| known.fields.get(&k).map(|r| r.value.clone()));
    match &last {
        Some(v) if *v == text => return None,
        None if raw.is_null() => return None,
        _ => {}
    }
    let spec = plan.trait_spec(&f.trait_name);
    let converted = mapping::inbound(f, &raw, spec.map(|s| s.ty)).map_err(|e| e.to_string());
    // A value the plan would refuse (a custom lifecycle stage, a 300-character title, a NUL) is
    // left out alone, so it does not block the record's other fields; its state is not recorded,
    // so the corrected value flows once the CRM has it.
    let refused = match &converted {
        Ok(v) => crate::ingest::limits::check_trait_value(&f.trait_name, v)
            .err()
            .map(|e| e.to_string())
            .or_else(|| {
                let spec = spec.filter(|_| !v.is_null())?;
                let violations = touchpoint_tracking_plan::validate::trait_violations(spec, v);
                violations
                    .first()
                    .map(|violation| violation.message.clone())
            }),
        Err(_) => None,
    };
    if let Some(why) = refused {
        d.notes.push(format!(
            "{crm} {} {}: field {} left out: {why}",
            c.object, c.id, f.field
        ));
        return None;
    }
    fields_now.insert(k, text.clone());
    d.writes.fields.push((
        c.object.clone(),
        FieldRow {
            record_key: key.to_owned(),
            field: f.field.clone(),
            value: text,
            modified_at: c.modified_at,
            origin: "in".into(),
        },
    ));
    match converted {
        Ok(v) => {
            d.changed_fields += 1;
            Some(v)
        }
        Err(e) => {
            d.notes.push(format!("{crm} {} {}: {e}", c.object, c.id));
            None
        }
    }
}

/// Records a re-key when the record's key changed since it was last seen, and returns the traits
/// (and their CRM fields) whose mapped inbound values changed.
#[allow(clippy::too_many_arguments)]
fn keyed_traits(
    crm: Crm,
    c: &Change,
    key: &str,
    before: Option<&RecordRow>,
    known: &Known,
    mappings: &Mappings,
    plan: &TrackingPlan,
    fields_now: &mut HashMap<(String, String, String), String>,
    d: &mut Decision,
) -> (Map<String, Value>, Vec<String>) {
    if let Some(b) = before
        && b.record_key != key
    {
        d.writes
            .rekeys
            .push((c.object.clone(), b.record_key.clone(), key.to_owned()));
    }
    let mut traits = Map::new();
    let mut fields = Vec::new();
    if let Some(object) = mappings.object(crm, &c.object) {
        for f in object.inbound() {
            if let Some(v) = changed(crm, c, key, f, known, plan, fields_now, d) {
                traits.insert(f.trait_name.clone(), v);
                fields.push(f.field.clone());
            }
        }
    }
    (traits, fields)
}

#[allow(clippy::too_many_arguments)]
fn person(
    crm: Crm,
    c: &Change,
    before: Option<RecordRow>,
    known: &Known,
    mappings: &Mappings,
    plan: &TrackingPlan,
    fields_now: &mut HashMap<(String, String, String), String>,
    d: &mut Decision,
) -> Option<(RecordRow, (String, String))> {
    let id_kind = id_kind(crm, &c.object);
    let lookup =
        |kind: &str, value: &str| known.who.get(&(kind.to_owned(), value.to_owned())).cloned();
    let email = c
        .email
        .as_deref()
        .and_then(crate::identity::normalise_email);
    let mut unmatched = false;
    let who = c
        .user_id
        .clone()
        .map(|u| ("user_id".to_owned(), u))
        .or_else(|| lookup(&id_kind, &c.id))
        .or_else(|| email.as_deref().and_then(|e| lookup("email", e)))
        .unwrap_or_else(|| {
            unmatched = true;
            (
                "anonymous_id".to_owned(),
                format!(
                    "{}-{}-{}",
                    crm.as_str(),
                    c.object.to_ascii_lowercase(),
                    c.id
                ),
            )
        });
    // The record's key: its external key, else the userId we are about to write back.
    let mut key = c.key.clone();
    if key.is_none()
        && who.0 == "user_id"
        && let Some(field) = key_field(crm, &c.object)
    {
        d.write_backs.push(WriteBack {
            object: c.object.clone(),
            id: c.id.clone(),
            field: field.into(),
            value: who.1.clone(),
        });
        key = Some(who.1.clone());
    }
    let key = digest(&key.unwrap_or_else(|| format!("id:{}", c.id)));
    let (mut traits, fields) = keyed_traits(
        crm,
        c,
        &key,
        before.as_ref(),
        known,
        mappings,
        plan,
        fields_now,
        d,
    );
    let mut ids = vec![(id_kind.clone(), c.id.clone())];
    if before.is_none() {
        traits.insert(id_kind.clone(), json!(c.id));
    }
    let mut converted = before.as_ref().and_then(|b| b.converted.clone());
    if let Some(contact) = &c.converted_contact
        && converted.as_deref() != Some(contact.as_str())
    {
        let kind = id_kind_for(crm, "Contact");
        traits.insert(kind.clone(), json!(contact));
        ids.push((kind, contact.clone()));
        converted = Some(contact.clone());
    }
    if unmatched && let Some(e) = &email {
        traits.insert("email".into(), json!(e));
    }
    let group = c
        .account
        .as_ref()
        .map(|a| a.group_id.clone())
        .or_else(|| before.as_ref().and_then(|b| b.group_id.clone()));
    let new_link = c.account.as_ref().filter(|a| {
        before.as_ref().and_then(|b| b.group_id.as_deref()) != Some(a.group_id.as_str())
    });
    let meaningful = traits.keys().any(|k| *k != id_kind) || before.is_none();
    if meaningful {
        let m = json!({
            "type": "identify",
            "messageId": message_id(crm, &c.object, &c.id, c.modified_at, "identify"),
            "timestamp": mapping::rfc3339(c.modified_at),
            "traits": traits,
            "context": context(crm, c, &fields, &ids),
        });
        d.messages.push(identified(m, &who));
    }
    if let Some(link) = new_link {
        let account_kind = id_kind_for(crm, account_object(crm));
        let m = json!({
            "type": "group",
            "messageId": message_id(crm, &c.object, &c.id, c.modified_at, &format!("link:{}", link.group_id)),
            "timestamp": mapping::rfc3339(c.modified_at),
            "groupId": link.group_id,
            "traits": {account_kind: link.crm_id},
            "context": context(crm, c, &[], &ids),
        });
        d.messages.push(identified(m, &who));
    }
    Some((
        RecordRow {
            record_id: c.id.clone(),
            record_key: key,
            who: None,
            group_id: group,
            converted,
            pending: None,
        },
        who,
    ))
}

fn id_kind_for(crm: Crm, object: &str) -> String {
    id_kind(crm, object)
}

/// The account object of a CRM.
pub fn account_object(crm: Crm) -> &'static str {
    match crm {
        Crm::Salesforce => "Account",
        Crm::HubSpot => "companies",
    }
}

#[allow(clippy::too_many_arguments)]
fn account(
    crm: Crm,
    c: &Change,
    kind: ObjectKind,
    before: Option<RecordRow>,
    known: &Known,
    mappings: &Mappings,
    plan: &TrackingPlan,
    speakers: &HashMap<String, (String, String)>,
    fields_now: &mut HashMap<(String, String, String), String>,
    d: &mut Decision,
) -> Option<RecordRow> {
    let (group, key) = if kind == ObjectKind::Account {
        match &c.key {
            Some(k) => (k.clone(), k.clone()),
            None => {
                let g = synthetic_group(crm, &c.id);
                if let Some(field) = key_field(crm, &c.object) {
                    d.write_backs.push(WriteBack {
                        object: c.object.clone(),
                        id: c.id.clone(),
                        field: field.into(),
                        value: g.clone(),
                    });
                }
                (g.clone(), g)
            }
        }
    } else {
        let Some(link) = &c.account else {
            d.notes.push(format!(
                "{crm} {} {} has no account; skipped",
                c.object, c.id
            ));
            return None;
        };
        (link.group_id.clone(), format!("id:{}", c.id))
    };
    let key = digest(&key);
    let (mut traits, fields) = keyed_traits(
        crm,
        c,
        &key,
        before.as_ref(),
        known,
        mappings,
        plan,
        fields_now,
        d,
    );
    if kind == ObjectKind::Account && before.is_none() {
        traits.insert(id_kind(crm, &c.object), json!(c.id));
    }
    let mut row = RecordRow {
        record_id: c.id.clone(),
        record_key: key,
        who: None,
        group_id: Some(group.clone()),
        converted: None,
        pending: before.as_ref().and_then(|b| b.pending.clone()),
    };
    if traits.is_empty() {
        return Some(row);
    }
    match speakers.get(&group).or_else(|| known.members.get(&group)) {
        Some(who) => {
            let m = json!({
                "type": "group",
                "messageId": message_id(crm, &c.object, &c.id, c.modified_at, "group"),
                "timestamp": mapping::rfc3339(c.modified_at),
                "groupId": group,
                "traits": traits,
                "context": context(crm, c, &fields, &[]),
            });
            d.messages.push(identified(m, who));
            row.pending = None;
        }
        None => {
            // Keep what changed (merged over what already waited) until a member is known.
            let mut waiting = row
                .pending
                .as_deref()
                .and_then(|p| serde_json::from_str::<Value>(p).ok())
                .and_then(|p| p["traits"].as_object().cloned())
                .unwrap_or_default();
            waiting.extend(traits);
            row.pending =
                Some(json!({"traits": waiting, "at": c.modified_at, "fields": fields}).to_string());
            d.notes.push(format!(
                "{crm} {} {}: no known member of account {group} yet; the change waits",
                c.object, c.id
            ));
        }
    }
    Some(row)
}

#[allow(clippy::too_many_arguments)]
fn deleted(
    crm: Crm,
    c: &Change,
    row: &RecordRow,
    kind: ObjectKind,
    known: &Known,
    mappings: &Mappings,
    speakers: &HashMap<String, (String, String)>,
    fields_now: &mut HashMap<(String, String, String), String>,
    d: &mut Decision,
) {
    let Some(object) = mappings.object(crm, &c.object) else {
        return;
    };
    let mut traits = Map::new();
    for f in object.inbound() {
        let k = (c.object.clone(), row.record_key.clone(), f.field.clone());
        let last = fields_now
            .get(&k)
            .cloned()
            .or_else(|| known.fields.get(&k).map(|r| r.value.clone()));
        let null = digest("null");
        if last.is_some_and(|v| v != null) {
            traits.insert(f.trait_name.clone(), Value::Null);
            fields_now.insert(k, null.clone());
            d.writes.fields.push((
                c.object.clone(),
                FieldRow {
                    record_key: row.record_key.clone(),
                    field: f.field.clone(),
                    value: null.clone(),
                    modified_at: c.modified_at,
                    origin: "in".into(),
                },
            ));
        }
    }
    if traits.is_empty() {
        return;
    }
    let who = match kind {
        ObjectKind::Person => known
            .who
            .get(&(id_kind(crm, &c.object), c.id.clone()))
            .cloned(),
        _ => row
            .group_id
            .as_ref()
            .and_then(|g| speakers.get(g).or_else(|| known.members.get(g)))
            .cloned(),
    };
    let Some(who) = who else { return };
    let mut m = json!({
        "messageId": message_id(crm, &c.object, &c.id, c.modified_at, "deleted"),
        "timestamp": mapping::rfc3339(c.modified_at),
        "traits": traits,
        "context": context(crm, c, &[], &[]),
    });
    match (kind, &row.group_id) {
        (ObjectKind::Person, _) => m["type"] = json!("identify"),
        (_, Some(g)) => {
            m["type"] = json!("group");
            m["groupId"] = json!(g);
        }
        _ => return,
    }
    d.messages.push(identified(m, &who));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> TrackingPlan {
        touchpoint_tracking_plan::parse(include_str!("../../../TRACKING_PLAN.md")).unwrap()
    }

    fn lead(status: &str, at: i64) -> Change {
        Change {
            object: "Lead".into(),
            id: "00Q1".into(),
            key: Some("u-1".into()),
            user_id: Some("u-1".into()),
            email: Some("Ada@Example.com".into()),
            modified_at: at,
            values: serde_json::from_value(json!({
                "Status": status, "FirstName": "Ada", "LastName": "Lovelace",
                "Owner.Email": "rep@crm.test", "Title": null,
            }))
            .unwrap(),
            ..Change::default()
        }
    }

    fn apply(known: &mut Known, d: &Decision) {
        for (o, r) in &d.writes.records {
            known
                .records
                .insert((o.clone(), r.record_id.clone()), r.clone());
        }
        for (o, f) in &d.writes.fields {
            known.fields.insert(
                (o.clone(), f.record_key.clone(), f.field.clone()),
                f.clone(),
            );
        }
    }

    #[test]
    fn a_changed_lead_becomes_one_identify_at_the_crm_s_time_and_repeats_are_silent() {
        let (m, p) = (Mappings::bundled(), plan());
        let mut known = Known::default();
        let d = decide(
            Crm::Salesforce,
            &[lead("Working - Contacted", 1_000)],
            &known,
            &m,
            &p,
        );
        assert_eq!(d.messages.len(), 1, "{:#?}", d.messages);
        let msg = &d.messages[0];
        assert_eq!(msg["type"], "identify");
        assert_eq!(msg["userId"], "u-1");
        assert_eq!(msg["timestamp"], "1970-01-01T00:00:01.000Z");
        assert_eq!(msg["traits"]["lead_status"], "Working");
        assert_eq!(msg["traits"]["crm_owner_email"], "rep@crm.test");
        assert_eq!(msg["traits"]["salesforce_lead_id"], "00Q1");
        assert_eq!(
            msg["context"]["externalIds"][0]["type"],
            "salesforce_lead_id"
        );
        assert!(
            msg["traits"].get("job_title").is_none(),
            "an empty field is not news"
        );
        apply(&mut known, &d);
        // Read again (an overlapping poll): nothing changed, nothing to say.
        let again = decide(
            Crm::Salesforce,
            &[lead("Working - Contacted", 1_000)],
            &known,
            &m,
            &p,
        );
        assert!(again.messages.is_empty(), "{:#?}", again.messages);
        // The rep moves it on: only the status travels.
        let next = decide(Crm::Salesforce, &[lead("Nurturing", 2_000)], &known, &m, &p);
        assert_eq!(next.messages.len(), 1);
        let traits = next.messages[0]["traits"].as_object().unwrap();
        assert_eq!(traits.keys().collect::<Vec<_>>(), vec!["lead_status"]);
    }

    #[test]
    fn a_field_the_plan_refuses_is_left_out_alone_and_flows_once_corrected() {
        let (m, p) = (Mappings::bundled(), plan());
        let mut known = Known::default();
        let mut c = lead("Working - Contacted", 1_000);
        c.values.insert("Title".into(), json!("J".repeat(300)));
        let d = decide(Crm::Salesforce, &[c.clone()], &known, &m, &p);
        assert_eq!(d.messages.len(), 1, "{:#?}", d.messages);
        let traits = &d.messages[0]["traits"];
        assert!(traits.get("job_title").is_none(), "{traits}");
        assert_eq!(
            traits["lead_status"], "Working",
            "the other fields still travel"
        );
        assert_eq!(traits["first_name"], "Ada");
        assert!(
            d.notes.iter().any(|n| n.contains("Title left out")),
            "{:?}",
            d.notes
        );
        apply(&mut known, &d);
        // The rep shortens the title: now it travels.
        c.values.insert("Title".into(), json!("CTO"));
        c.modified_at = 2_000;
        let next = decide(Crm::Salesforce, &[c.clone()], &known, &m, &p);
        assert_eq!(next.messages[0]["traits"]["job_title"], "CTO");
        // A NUL character is left out the same way.
        c.values.insert("Title".into(), json!("C\u{0}O"));
        let nul = decide(Crm::Salesforce, &[c], &known, &m, &p);
        assert!(
            nul.notes.iter().any(|n| n.contains("NUL")),
            "{:?}",
            nul.notes
        );
    }

    #[test]
    fn our_own_writes_do_not_echo_back_as_changes() {
        let (m, p) = (Mappings::bundled(), plan());
        let mut known = Known::default();
        known.records.insert(
            ("Lead".into(), "00Q1".into()),
            RecordRow {
                record_id: "00Q1".into(),
                record_key: digest("u-1"),
                ..RecordRow::default()
            },
        );
        // What the outbound encoder wrote, read back after the modstamp moved.
        for (field, value) in [("FirstName", "Ada"), ("LastName", "Lovelace")] {
            known.fields.insert(
                ("Lead".into(), digest("u-1"), field.into()),
                FieldRow {
                    record_key: digest("u-1"),
                    field: field.into(),
                    value: digest(value),
                    modified_at: 500,
                    origin: "out".into(),
                },
            );
        }
        let mut echo = lead("Working - Contacted", 1_000);
        echo.values.remove("Status");
        echo.values.remove("Owner.Email");
        let d = decide(Crm::Salesforce, &[echo], &known, &m, &p);
        assert!(d.messages.is_empty(), "{:#?}", d.messages);
        assert_eq!(d.changed_fields, 0);
    }

    #[test]
    fn a_conversion_links_the_person_to_the_new_account_which_speaks_through_them() {
        let (m, p) = (Mappings::bundled(), plan());
        let mut known = Known::default();
        let first = decide(
            Crm::Salesforce,
            &[lead("Working - Contacted", 1_000)],
            &known,
            &m,
            &p,
        );
        apply(&mut known, &first);
        let mut converted = lead("Closed - Converted", 2_000);
        converted.converted_contact = Some("003C".into());
        converted.account = Some(AccountLink {
            group_id: "salesforce-001A".into(),
            crm_id: "001A".into(),
        });
        let account = Change {
            object: "Account".into(),
            id: "001A".into(),
            modified_at: 2_000,
            values: serde_json::from_value(json!({"Name": "Acme", "Industry": "Technology"}))
                .unwrap(),
            ..Change::default()
        };
        let opportunity = Change {
            object: "Opportunity".into(),
            id: "006O".into(),
            modified_at: 2_000,
            values: serde_json::from_value(
                json!({"Name": "Acme - 50 seats", "StageName": "Prospecting",
                "Amount": 12000.0, "CloseDate": "2026-09-30", "IsClosed": false}),
            )
            .unwrap(),
            account: Some(AccountLink {
                group_id: "salesforce-001A".into(),
                crm_id: "001A".into(),
            }),
            ..Change::default()
        };
        let d = decide(
            Crm::Salesforce,
            &[converted, account, opportunity],
            &known,
            &m,
            &p,
        );
        let kinds: Vec<&str> = d
            .messages
            .iter()
            .map(|m| m["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            vec!["identify", "group", "group", "group"],
            "{:#?}",
            d.messages
        );
        assert_eq!(d.messages[0]["traits"]["salesforce_contact_id"], "003C");
        assert_eq!(d.messages[0]["traits"]["lead_status"], "Converted");
        assert_eq!(d.messages[1]["groupId"], "salesforce-001A");
        assert_eq!(
            d.messages[2]["userId"], "u-1",
            "the account speaks through its member"
        );
        assert_eq!(d.messages[2]["traits"]["name"], "Acme");
        assert_eq!(d.messages[2]["traits"]["salesforce_account_id"], "001A");
        assert_eq!(d.messages[3]["traits"]["open_opportunity"], true);
        assert_eq!(d.messages[3]["traits"]["opportunity_amount"], 12000);
        assert_eq!(
            d.messages[3]["traits"]["opportunity_close_date"],
            "2026-09-30T00:00:00.000Z"
        );
        assert_eq!(
            d.write_backs,
            vec![WriteBack {
                object: "Account".into(),
                id: "001A".into(),
                field: "Touchpoint_Account_Id__c".into(),
                value: "salesforce-001A".into()
            }]
        );
    }

    #[test]
    fn an_account_without_a_known_member_waits_and_is_sent_once_one_appears() {
        let (m, p) = (Mappings::bundled(), plan());
        let mut known = Known::default();
        let account = Change {
            object: "Account".into(),
            id: "001B".into(),
            key: Some("globex".into()),
            modified_at: 5_000,
            values: serde_json::from_value(json!({"Name": "Globex"})).unwrap(),
            ..Change::default()
        };
        let d = decide(Crm::Salesforce, &[account], &known, &m, &p);
        assert!(d.messages.is_empty());
        assert!(d.write_backs.is_empty(), "it has its external id");
        let (_, row) = d.writes.records[0].clone();
        assert!(row.pending.is_some());
        known.pending = vec![("Account".into(), row)];
        known
            .members
            .insert("globex".into(), ("user_id".into(), "u-9".into()));
        let later = decide(Crm::Salesforce, &[], &known, &m, &p);
        assert_eq!(later.messages.len(), 1);
        assert_eq!(later.messages[0]["userId"], "u-9");
        assert_eq!(later.messages[0]["traits"]["name"], "Globex");
        assert_eq!(later.messages[0]["timestamp"], "1970-01-01T00:00:05.000Z");
        assert!(later.writes.records[0].1.pending.is_none());
    }

    #[test]
    fn a_person_the_crm_created_matches_by_email_and_gets_the_user_id_written_back() {
        let (m, p) = (Mappings::bundled(), plan());
        let mut known = Known::default();
        known.who.insert(
            ("email".into(), "grace@example.com".into()),
            ("user_id".into(), "u-7".into()),
        );
        let c = Change {
            object: "Contact".into(),
            id: "003X".into(),
            email: Some("Grace@Example.com".into()),
            modified_at: 10,
            values: serde_json::from_value(json!({"Title": "CTO"})).unwrap(),
            ..Change::default()
        };
        let d = decide(Crm::Salesforce, std::slice::from_ref(&c), &known, &m, &p);
        assert_eq!(d.messages[0]["userId"], "u-7");
        assert_eq!(d.messages[0]["traits"]["job_title"], "CTO");
        assert_eq!(d.write_backs[0].field, "Touchpoint_User_Id__c");
        assert_eq!(d.writes.fields[0].1.record_key, digest("u-7"));
        // Nobody known: an anonymous profile keyed by the CRM id, with the email to match later.
        let d = decide(Crm::Salesforce, &[c], &Known::default(), &m, &p);
        assert_eq!(d.messages[0]["anonymousId"], "salesforce-contact-003X");
        assert_eq!(d.messages[0]["traits"]["email"], "grace@example.com");
        assert!(d.write_backs.is_empty());
    }

    #[test]
    fn a_deleted_record_clears_the_traits_it_fed() {
        let (m, p) = (Mappings::bundled(), plan());
        let mut known = Known::default();
        let first = decide(
            Crm::Salesforce,
            &[lead("Working - Contacted", 1_000)],
            &known,
            &m,
            &p,
        );
        apply(&mut known, &first);
        let gone = Change {
            object: "Lead".into(),
            id: "00Q1".into(),
            modified_at: 3_000,
            deleted: true,
            ..Change::default()
        };
        // The profile holds the Lead id as an identity.
        known.who.insert(
            ("salesforce_lead_id".into(), "00Q1".into()),
            ("user_id".into(), "u-1".into()),
        );
        let d = decide(Crm::Salesforce, &[gone], &known, &m, &p);
        assert_eq!(d.messages.len(), 1);
        assert_eq!(d.messages[0]["traits"]["lead_status"], Value::Null);
        assert_eq!(d.messages[0]["userId"], "u-1");
    }
}
