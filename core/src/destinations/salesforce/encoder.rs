//! Pure Salesforce encoder: activations → sObject Collections upserts by external id (Accounts,
//! then the people — Leads or Contacts, linked to their Account — then Product_Usage__c on the
//! Account; ≤ 200 records a call, one record per external id per batch) and, when a profile enters
//! the PQL audience, a composite call that reads the Account's Id and OwnerId and upserts a Task
//! for the owner. Which fields are written comes from `CRM_MAPPINGS.md` ([`crate::crm::mapping`]);
//! each record's field times travel beside it for the service's last-modified-wins check.

use crate::crm::mapping::{Crm, Mappings, PersonObject};
use crate::crm::outbound::{self, FIELD_TIMES};
use crate::destinations::{Activation, ActivationKind, Encoded, Method, Request};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Records per sObject Collections call (Salesforce's limit).
pub const MAX_RECORDS: usize = 200;
/// Subrequests per composite call (Salesforce's limit); a Task takes two.
pub const MAX_SUBREQUESTS: usize = 25;
/// External id field of Accounts and Product_Usage__c (the groupId).
pub const ACCOUNT_KEY: &str = "Touchpoint_Account_Id__c";
/// External id field of Contacts and Leads (the userId).
pub const CONTACT_KEY: &str = "Touchpoint_User_Id__c";
/// External id field of Tasks (the activation's idempotency key), so a retried call never
/// creates a second Task.
pub const TASK_KEY: &str = "Touchpoint_Activation_Id__c";
/// Company of a Lead whose person has none (Salesforce's own placeholder for web leads).
pub const NO_COMPANY: &str = "[not provided]";

/// What the encoder needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// REST version, e.g. `v60.0`.
    pub api_version: String,
    /// The audience whose entry creates a Task.
    pub pql_audience: String,
    /// Field mappings (`CRM_MAPPINGS.md`).
    pub mappings: Arc<Mappings>,
}

/// Whether Salesforce wants this activation (never one the Salesforce sync itself made).
pub fn accepts(a: &Activation) -> bool {
    if outbound::origin(a) == Some("salesforce") {
        return false;
    }
    let known = a.user_id.is_some() || a.account.is_some();
    match a.kind {
        ActivationKind::Identify | ActivationKind::Group | ActivationKind::Track => known,
        ActivationKind::AudienceEntered | ActivationKind::AudienceExited => known,
        _ => false,
    }
}

/// Percent-encodes a path segment.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The object a person is written as: their Contact once sales converted their Lead (the
/// `salesforce_contact_id` trait), else what the mappings' `Salesforce person object` says.
pub fn person_object(m: &Mappings, a: &Activation) -> &'static str {
    if a.traits
        .get("salesforce_contact_id")
        .is_some_and(|v| !v.is_null())
    {
        return "Contact";
    }
    match m.salesforce_person {
        PersonObject::Contact => "Contact",
        PersonObject::LeadUntilAccount if a.account.is_some() => "Contact",
        PersonObject::LeadUntilAccount | PersonObject::Lead => "Lead",
    }
}

/// A record keyed by external id: fields, each field's time, and the activations behind it.
type Record = (Map<String, Value>, Map<String, Value>, Vec<usize>);

/// Records keyed by external id, in first-seen order.
struct Keyed {
    order: Vec<String>,
    records: BTreeMap<String, Record>,
}

impl Keyed {
    fn new() -> Keyed {
        Keyed {
            order: Vec::new(),
            records: BTreeMap::new(),
        }
    }

    /// Merges fields into the record (later activations win field by field; a field keeps the
    /// newest time any activation gave it).
    fn put(
        &mut self,
        key: &str,
        fields: Map<String, Value>,
        times: &[(String, i64)],
        activation: usize,
    ) {
        let entry = self.records.entry(key.to_owned()).or_insert_with(|| {
            self.order.push(key.to_owned());
            (Map::new(), Map::new(), Vec::new())
        });
        for (k, v) in fields {
            entry.0.insert(k, v);
        }
        for (field, t) in times {
            let old = entry.1.get(field).and_then(Value::as_i64).unwrap_or(0);
            entry.1.insert(field.clone(), json!(old.max(*t)));
        }
        if !entry.2.contains(&activation) {
            entry.2.push(activation);
        }
    }

    fn requests(self, s: &Settings, object: &str, field: &str, label: &str) -> Vec<Request> {
        let Keyed { order, mut records } = self;
        let mut out = Vec::new();
        for chunk in order.chunks(MAX_RECORDS) {
            let mut body = Vec::with_capacity(chunk.len());
            let mut times = Vec::with_capacity(chunk.len());
            let mut covers = Vec::with_capacity(chunk.len());
            for key in chunk {
                if let Some((fields, t, acts)) = records.remove(key) {
                    let mut rec = Map::new();
                    rec.insert("attributes".into(), json!({"type": object}));
                    rec.extend(fields);
                    body.push(Value::Object(rec));
                    times.push(Value::Object(t));
                    covers.push(acts);
                }
            }
            let mut b = json!({"allOrNone": false, "records": body});
            if times
                .iter()
                .any(|t| t.as_object().is_some_and(|m| !m.is_empty()))
            {
                b[FIELD_TIMES] = Value::Array(times);
            }
            out.push(Request {
                method: Method::Patch,
                path: format!(
                    "/services/data/{}/composite/sobjects/{object}/{field}",
                    s.api_version
                ),
                body: Some(b),
                covers,
                label: label.into(),
            });
        }
        out
    }
}

/// Adds the mapped fields of `object` to `f`, returning their times.
fn mapped(
    s: &Settings,
    object: &str,
    a: &Activation,
    f: &mut Map<String, Value>,
) -> Vec<(String, i64)> {
    let Some(map) = s.mappings.object(Crm::Salesforce, object) else {
        return Vec::new();
    };
    let mut times = Vec::new();
    for (field, value, t) in outbound::fields(map, a, Crm::Salesforce) {
        f.insert(field.clone(), value);
        times.push((field, t));
    }
    times
}

/// A record's external id, fields and field times.
type Fields = (String, Map<String, Value>, Vec<(String, i64)>);

fn account_fields(s: &Settings, a: &Activation) -> Option<Fields> {
    let acc = a.account.as_ref()?;
    let mut f = Map::new();
    f.insert(ACCOUNT_KEY.into(), json!(acc.group_id));
    let name = acc
        .trait_str("name")
        .or_else(|| acc.trait_str("company"))
        .unwrap_or_else(|| acc.group_id.clone());
    f.insert("Name".into(), json!(name));
    let times = mapped(s, "Account", a, &mut f);
    Some((acc.group_id.clone(), f, times))
}

fn person_fields(s: &Settings, object: &str, a: &Activation) -> Option<Fields> {
    let user = a.user_id.clone()?;
    let mut f = Map::new();
    f.insert(CONTACT_KEY.into(), json!(user));
    let email = a.email.clone().or_else(|| a.trait_str("email"));
    if let Some(e) = &email {
        f.insert("Email".into(), json!(e));
    }
    // LastName is required: the name, else the email's local part, else the user id.
    let last = outbound::person_value(a, "last_name")
        .and_then(|v| v.as_str().map(str::to_owned))
        .or_else(|| {
            email
                .as_ref()
                .and_then(|e| e.split('@').next().map(str::to_owned))
        })
        .unwrap_or_else(|| user.clone());
    f.insert("LastName".into(), json!(last));
    if let Some(phone) = a.phone.clone().or_else(|| a.trait_str("phone")) {
        f.insert("Phone".into(), json!(phone));
    }
    if object == "Lead" {
        // Company is required on a Lead.
        let company = a.trait_str("company").unwrap_or_else(|| NO_COMPANY.into());
        f.insert("Company".into(), json!(company));
    }
    let times = mapped(s, object, a, &mut f);
    if object == "Contact"
        && let Some(acc) = &a.account
    {
        f.insert("Account".into(), json!({ ACCOUNT_KEY: acc.group_id }));
    }
    Some((user, f, times))
}

fn usage_fields(a: &Activation) -> Option<(String, Map<String, Value>)> {
    let acc = a.account.as_ref()?;
    let mut f = Map::new();
    f.insert(ACCOUNT_KEY.into(), json!(acc.group_id));
    let name = acc
        .trait_str("name")
        .or_else(|| acc.trait_str("company"))
        .unwrap_or_else(|| acc.group_id.clone());
    f.insert("Name".into(), json!(format!("Product usage: {name}")));
    f.insert("Account__r".into(), json!({ ACCOUNT_KEY: acc.group_id }));
    f.insert(
        "Active_Users_Last_7_Days__c".into(),
        json!(acc.active_users_7d),
    );
    f.insert(
        "Key_Features_Used__c".into(),
        json!(acc.key_features.join(";")),
    );
    f.insert(
        "PQL_Status__c".into(),
        json!(if acc.pql { "PQL" } else { "Not PQL" }),
    );
    if let Some(stage) = &acc.journey_stage {
        f.insert("Journey_Stage__c".into(), json!(stage));
    }
    Some((acc.group_id.clone(), f))
}

/// The Task body for a PQL entry: assigned to the Account owner, describing the signals.
pub fn task_body(a: &Activation, account_ref: &str) -> Option<Value> {
    let acc = a.account.as_ref()?;
    let name = acc
        .trait_str("name")
        .or_else(|| acc.trait_str("company"))
        .unwrap_or_else(|| acc.group_id.clone());
    let who = a
        .email
        .clone()
        .or_else(|| a.user_id.clone())
        .unwrap_or_else(|| a.profile_id.to_string());
    let mut description = format!(
        "{who} ({name}) entered the product-qualified lead audience.\n\nSignals that qualified it:\n"
    );
    for s in &acc.signals {
        description.push_str(&format!("- {s}\n"));
    }
    if !acc.key_features.is_empty() {
        description.push_str(&format!(
            "- key features used: {}\n",
            acc.key_features.join(", ")
        ));
    }
    let due = chrono::DateTime::from_timestamp_millis(a.timestamp_ms)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string();
    Some(json!({
        "Subject": format!("Product-qualified lead: {name}"),
        "Description": description,
        "WhatId": format!("@{{{account_ref}.Id}}"),
        "OwnerId": format!("@{{{account_ref}.OwnerId}}"),
        "Status": "Not Started",
        "Priority": "High",
        "ActivityDate": due,
    }))
}

/// Encodes a batch.
pub fn encode(s: &Settings, batch: &[Activation]) -> Encoded {
    let mut accounts = Keyed::new();
    let mut leads = Keyed::new();
    let mut contacts = Keyed::new();
    let mut usage = Keyed::new();
    let mut tasks: Vec<(usize, String, Value)> = Vec::new();
    for (i, a) in batch.iter().enumerate() {
        if !accepts(a) {
            continue;
        }
        if let Some((key, f, t)) = account_fields(s, a) {
            accounts.put(&key, f, &t, i);
        }
        let wants_person = matches!(
            a.kind,
            ActivationKind::Identify
                | ActivationKind::Group
                | ActivationKind::AudienceEntered
                | ActivationKind::AudienceExited
        );
        let object = person_object(&s.mappings, a);
        if wants_person && let Some((key, f, t)) = person_fields(s, object, a) {
            match object {
                "Lead" => leads.put(&key, f, &t, i),
                _ => contacts.put(&key, f, &t, i),
            }
        }
        if let Some((key, f)) = usage_fields(a) {
            usage.put(&key, f, &[], i);
        }
        if a.kind == ActivationKind::AudienceEntered
            && a.audience.as_deref() == Some(s.pql_audience.as_str())
            && let Some(acc) = &a.account
        {
            let r = format!("acct{}", tasks.len() % (MAX_SUBREQUESTS / 2));
            if let Some(body) = task_body(a, &r) {
                tasks.push((i, acc.group_id.clone(), body));
            }
        }
    }
    let mut requests = accounts.requests(s, "Account", ACCOUNT_KEY, "Account upsert");
    requests.extend(leads.requests(s, "Lead", CONTACT_KEY, "Lead upsert"));
    requests.extend(contacts.requests(s, "Contact", CONTACT_KEY, "Contact upsert"));
    requests.extend(usage.requests(
        s,
        "Product_Usage__c",
        ACCOUNT_KEY,
        "Product_Usage__c upsert",
    ));
    for chunk in tasks.chunks(MAX_SUBREQUESTS / 2) {
        let mut subrequests = Vec::with_capacity(chunk.len() * 2);
        let mut covers = Vec::with_capacity(chunk.len());
        for (n, (i, group_id, body)) in chunk.iter().enumerate() {
            let key = batch[*i].key.replace(':', "-");
            subrequests.push(json!({
                "method": "GET",
                "url": format!(
                    "/services/data/{}/sobjects/Account/{ACCOUNT_KEY}/{}?fields=Id,OwnerId",
                    s.api_version,
                    segment(group_id)
                ),
                "referenceId": format!("acct{n}"),
            }));
            subrequests.push(json!({
                "method": "PATCH",
                "url": format!(
                    "/services/data/{}/sobjects/Task/{TASK_KEY}/{}",
                    s.api_version,
                    segment(&key)
                ),
                "referenceId": format!("task{n}"),
                "body": body,
            }));
            covers.push(vec![*i]);
        }
        requests.push(Request {
            method: Method::Post,
            path: format!("/services/data/{}/composite", s.api_version),
            body: Some(json!({"allOrNone": false, "compositeRequest": subrequests})),
            covers,
            label: "composite Account owner lookup + Task upsert".into(),
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

    fn settings() -> Settings {
        Settings {
            api_version: "v60.0".into(),
            pql_audience: "product_qualified_lead".into(),
            mappings: Arc::new(Mappings::bundled()),
        }
    }

    fn lead_settings() -> Settings {
        let mut m = Mappings::bundled();
        m.salesforce_person = PersonObject::LeadUntilAccount;
        Settings {
            mappings: Arc::new(m),
            ..settings()
        }
    }

    fn activation(kind: &str, user: &str, group: Option<&str>) -> Activation {
        let account = group.map(|g| {
            json!({
                "group_id": g,
                "traits": {"name": "Acme", "seats_provisioned": 5},
                "active_users_7d": 2,
                "key_features": ["dark_mode", "integration:slack"],
                "journey_stage": "Expansion",
                "pql": true,
                "signals": ["seats_provisioned = 5"],
            })
        });
        serde_json::from_value(json!({
            "key": format!("m:{user}:{kind}"),
            "kind": kind,
            "timestamp_ms": 1_790_000_000_000i64,
            "profile_id": format!("p-{user}"),
            "user_id": user,
            "email": format!("{user}@example.com"),
            "traits": {"name": "Ada Lovelace", "user_role": "admin", "job_title": "CTO"},
            "account": account,
        }))
        .unwrap()
    }

    #[test]
    fn accounts_contacts_and_usage_are_upserted_by_external_id_in_dependency_order() {
        let batch = vec![
            activation("identify", "u1", None),
            activation("group", "u1", Some("acme")),
            activation("track", "u1", Some("acme")),
        ];
        let e = encode(&settings(), &batch);
        let paths: Vec<&str> = e.requests.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "/services/data/v60.0/composite/sobjects/Account/Touchpoint_Account_Id__c",
                "/services/data/v60.0/composite/sobjects/Contact/Touchpoint_User_Id__c",
                "/services/data/v60.0/composite/sobjects/Product_Usage__c/Touchpoint_Account_Id__c",
            ]
        );
        assert!(e.requests.iter().all(|r| r.method == Method::Patch));
        let account = &e.requests[0].body.as_ref().unwrap()["records"][0];
        assert_eq!(account["attributes"]["type"], "Account");
        assert_eq!(account["Touchpoint_Account_Id__c"], "acme");
        assert_eq!(account["Seats_Provisioned__c"], 5);
        // One Contact for two activations of the same user, linked through the Account's external id.
        assert_eq!(e.requests[1].covers, vec![vec![0, 1]]);
        let contact = &e.requests[1].body.as_ref().unwrap()["records"][0];
        assert_eq!(contact["LastName"], "Lovelace");
        assert_eq!(contact["FirstName"], "Ada");
        assert_eq!(contact["Title"], "CTO");
        assert_eq!(contact["Email"], "u1@example.com");
        assert_eq!(contact["Account"]["Touchpoint_Account_Id__c"], "acme");
        let usage = &e.requests[2].body.as_ref().unwrap()["records"][0];
        assert_eq!(usage["Active_Users_Last_7_Days__c"], 2);
        assert_eq!(usage["Key_Features_Used__c"], "dark_mode;integration:slack");
        assert_eq!(usage["PQL_Status__c"], "PQL");
        assert_eq!(usage["Journey_Stage__c"], "Expansion");
        assert_eq!(usage["Account__r"]["Touchpoint_Account_Id__c"], "acme");
    }

    #[test]
    fn a_person_without_an_account_is_a_lead_until_they_have_one_or_sales_converts_them() {
        let e = encode(&lead_settings(), &[activation("identify", "u1", None)]);
        assert_eq!(
            e.requests[0].path,
            "/services/data/v60.0/composite/sobjects/Lead/Touchpoint_User_Id__c"
        );
        let lead = &e.requests[0].body.as_ref().unwrap()["records"][0];
        assert_eq!(lead["attributes"]["type"], "Lead");
        assert_eq!(lead["Company"], NO_COMPANY);
        assert_eq!(lead["LastName"], "Lovelace");
        assert!(lead.get("Account").is_none());
        let with_account = encode(&lead_settings(), &[activation("group", "u1", Some("acme"))]);
        assert!(with_account.requests[1].path.contains("/Contact/"));
        let mut converted = activation("identify", "u1", None);
        converted
            .traits
            .insert("salesforce_contact_id".into(), json!("003C"));
        assert!(
            encode(&lead_settings(), &[converted]).requests[0]
                .path
                .contains("/Contact/")
        );
    }

    #[test]
    fn field_times_travel_beside_the_records_for_the_service_and_the_sync_s_own_changes_stay_home()
    {
        let mut a = activation("identify", "u1", None);
        a.message = Some(json!({"traits": {"job_title": "CTO"}}));
        let e = encode(&settings(), &[a.clone()]);
        let body = e.requests[0].body.as_ref().unwrap();
        assert_eq!(body[FIELD_TIMES][0]["Title"], 1_790_000_000_000i64);
        assert_eq!(body[FIELD_TIMES][0]["FirstName"], 0);
        a.message = Some(json!({"traits": {"lead_status": "Working"},
            "context": {"crm": {"system": "salesforce", "object": "Lead"}}}));
        assert!(!accepts(&a));
        assert!(encode(&settings(), &[a]).requests.is_empty());
    }

    #[test]
    fn collections_hold_at_most_200_records() {
        let batch: Vec<Activation> = (0..450)
            .map(|i| activation("identify", &format!("u{i}"), None))
            .collect();
        let e = encode(&settings(), &batch);
        let sizes: Vec<usize> = e.requests.iter().map(|r| r.covers.len()).collect();
        assert_eq!(sizes, vec![200, 200, 50]);
    }

    #[test]
    fn entering_the_pql_audience_creates_a_task_for_the_account_owner_in_one_composite_call() {
        let mut a = activation("audience_entered", "u1", Some("acme"));
        a.key = "a:7".into();
        a.audience = Some("product_qualified_lead".into());
        let e = encode(&settings(), &[a]);
        let composite = e.requests.last().unwrap();
        assert_eq!(composite.path, "/services/data/v60.0/composite");
        let subs = composite.body.as_ref().unwrap()["compositeRequest"]
            .as_array()
            .unwrap();
        assert_eq!(subs.len(), 2);
        assert_eq!(
            subs[0]["url"],
            "/services/data/v60.0/sobjects/Account/Touchpoint_Account_Id__c/acme?fields=Id,OwnerId"
        );
        assert_eq!(
            subs[1]["url"],
            "/services/data/v60.0/sobjects/Task/Touchpoint_Activation_Id__c/a-7"
        );
        assert_eq!(subs[1]["body"]["WhatId"], "@{acct0.Id}");
        assert_eq!(subs[1]["body"]["OwnerId"], "@{acct0.OwnerId}");
        assert!(
            subs[1]["body"]["Description"]
                .as_str()
                .unwrap()
                .contains("seats_provisioned = 5")
        );
        let mut other = activation("audience_entered", "u2", Some("acme"));
        other.audience = Some("newsletter".into());
        assert_eq!(encode(&settings(), &[other]).requests.len(), 3);
    }
}
