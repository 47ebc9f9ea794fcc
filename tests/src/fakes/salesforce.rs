//! Fake Salesforce: OAuth 2.0 client-credentials token endpoint, sObject Collections upsert by
//! external id (≤ 200 records, `attributes.type`, required fields, restricted picklists, external-id
//! relationships that must resolve) and update by Id (`PATCH …/composite/sobjects`), composite
//! requests with `@{ref.Field}` references, `/limits`, sObject rows read, updated and deleted by Id
//! or by external id (`GET|DELETE …/sobjects/{object}/{field}/{value}`, `PATCH|DELETE
//! …/sobjects/{object}/{id}`; 204, or 404 `NOT_FOUND`), and `Sforce-Limit-Info` on every API answer.
//!
//! For the CRM loop: SOQL `query` (the subset Touchpoint sends: `SELECT fields FROM object [WHERE
//! SystemModstamp >= datetime] [ORDER BY …]`, relationship fields such as `Owner.Email`, unknown
//! columns answered 400 `INVALID_FIELD`) with `queryMore` through `nextRecordsUrl` locators,
//! `sobjects/{object}/deleted` (getDeleted, with `INVALID_REPLICATION_DATE` for spans of a minute
//! or less), `sobjects/{object}/describe` (fields, types, picklist values, external ids), Leads
//! (`LastName` and `Company` required, a converted Lead cannot be updated), Opportunities, Users as
//! owners, and helpers a test uses as a sales rep would: edit a record, convert a Lead into a
//! Contact, Account and Opportunity, delete a record. Every write moves `SystemModstamp`.

use super::{Common, Fake, HasCommon, Incoming, json, start};
use axum::http::{HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The client id the fake accepts.
pub const CLIENT_ID: &str = "tp-salesforce-client";
/// The client secret the fake accepts.
pub const CLIENT_SECRET: &str = "tp-salesforce-secret";
/// The OwnerId of every Account, Lead and Contact unless a test changes it.
pub const OWNER_ID: &str = "005OWNER000000001";
/// That owner's email.
pub const OWNER_EMAIL: &str = "owner@sales.example";

/// What a conversion created.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The Contact's Id.
    pub contact_id: String,
    /// The Account's Id.
    pub account_id: String,
    /// The Opportunity's Id.
    pub opportunity_id: String,
}

/// One field of a describe answer.
#[derive(Debug, Clone)]
pub struct FieldDesc {
    /// API name.
    pub name: String,
    /// Salesforce type (`string`, `picklist`, `double`, …).
    pub ty: String,
    /// Active picklist values.
    pub picklist: Vec<String>,
    /// Whether it is an external id.
    pub external_id: bool,
    /// Whether it can be written.
    pub updateable: bool,
    /// Relationship name of a reference (`Owner`, `Account`).
    pub relationship: Option<String>,
}

/// The fake's state.
pub struct State {
    /// Shared request log and faults.
    pub common: Common,
    /// Base URL (also the instance_url).
    pub url: String,
    /// Records by object → key (the external id value at creation, else the Id) → fields (with `Id`).
    pub records: BTreeMap<String, BTreeMap<String, Map<String, Value>>>,
    /// Upsert attempts per (object, external id) (to prove a dead letter was not retried).
    pub attempts: BTreeMap<(String, String), usize>,
    /// Allowed values of restricted picklists, by field.
    pub picklists: BTreeMap<String, BTreeSet<String>>,
    /// Tokens issued.
    pub tokens: Vec<String>,
    /// API calls counted for `Sforce-Limit-Info`.
    pub api_usage: u64,
    /// Shape problems found (a correct client leaves this empty).
    pub problems: Vec<String>,
    /// Records deleted through the API, as (object, external id value or Id).
    pub deleted: Vec<(String, String)>,
    /// Records updated through `PATCH …/sobjects/{object}/{id}`, as (object, Id, fields sent).
    pub updated: Vec<(String, String, Map<String, Value>)>,
    /// The delete log getDeleted reads: (object, Id, deleted at ms).
    pub delete_log: Vec<(String, String, i64)>,
    /// Users by Id (owners): Id → email.
    pub users: BTreeMap<String, String>,
    /// The describe schema by object.
    pub schema: BTreeMap<String, Vec<FieldDesc>>,
    /// Most records per query page (Salesforce's default is 2000).
    pub query_batch: usize,
    /// Open queryMore locators: locator → (object, remaining records).
    pub cursors: BTreeMap<String, Vec<Value>>,
    /// SOQL statements received.
    pub queries: Vec<String>,
    /// Whether a conversion copies `Touchpoint_User_Id__c` from the Lead to the Contact (the
    /// org's Lead field mapping).
    pub map_lead_fields: bool,
    /// The last SystemModstamp issued (ms), so stamps strictly increase.
    pub last_stamp: i64,
}

impl Default for State {
    fn default() -> Self {
        State {
            common: Common::default(),
            url: String::new(),
            records: BTreeMap::new(),
            attempts: BTreeMap::new(),
            picklists: BTreeMap::new(),
            tokens: Vec::new(),
            api_usage: 0,
            problems: Vec::new(),
            deleted: Vec::new(),
            updated: Vec::new(),
            delete_log: Vec::new(),
            users: [(OWNER_ID.to_owned(), OWNER_EMAIL.to_owned())]
                .into_iter()
                .collect(),
            schema: default_schema(),
            query_batch: 2000,
            cursors: BTreeMap::new(),
            queries: Vec::new(),
            map_lead_fields: true,
            last_stamp: 0,
        }
    }
}

impl HasCommon for State {
    fn common(&mut self) -> &mut Common {
        &mut self.common
    }
}

fn desc(name: &str, ty: &str) -> FieldDesc {
    FieldDesc {
        name: name.into(),
        ty: ty.into(),
        picklist: Vec::new(),
        external_id: false,
        updateable: !matches!(ty, "id") && name != "SystemModstamp",
        relationship: None,
    }
}

fn picklist(name: &str, values: &[&str]) -> FieldDesc {
    FieldDesc {
        picklist: values.iter().map(|v| (*v).to_owned()).collect(),
        ..desc(name, "picklist")
    }
}

fn reference(name: &str, relationship: &str, updateable: bool) -> FieldDesc {
    FieldDesc {
        relationship: Some(relationship.into()),
        updateable,
        ..desc(name, "reference")
    }
}

fn external(name: &str) -> FieldDesc {
    FieldDesc {
        external_id: true,
        ..desc(name, "string")
    }
}

fn read_only(name: &str, ty: &str) -> FieldDesc {
    FieldDesc {
        updateable: false,
        ..desc(name, ty)
    }
}

/// A standard org with Touchpoint's custom fields.
pub fn default_schema() -> BTreeMap<String, Vec<FieldDesc>> {
    let lead_status = [
        "Open - Not Contacted",
        "Working - Contacted",
        "Nurturing",
        "Closed - Converted",
        "Closed - Not Converted",
    ];
    let industries = [
        "Technology",
        "Finance",
        "Healthcare",
        "Retail",
        "Manufacturing",
        "Education",
        "Other",
    ];
    let stages = [
        "Prospecting",
        "Qualification",
        "Needs Analysis",
        "Proposal/Price Quote",
        "Negotiation/Review",
        "Closed Won",
        "Closed Lost",
    ];
    let common = || {
        vec![
            desc("Id", "id"),
            read_only("SystemModstamp", "datetime"),
            read_only("LastModifiedDate", "datetime"),
            reference("OwnerId", "Owner", true),
        ]
    };
    let mut s = BTreeMap::new();
    let mut lead = common();
    lead.extend([
        desc("FirstName", "string"),
        desc("LastName", "string"),
        desc("Company", "string"),
        desc("Email", "email"),
        desc("Phone", "phone"),
        desc("Title", "string"),
        picklist("Status", &lead_status),
        picklist("Industry", &industries),
        read_only("IsConverted", "boolean"),
        reference("ConvertedContactId", "ConvertedContact", false),
        reference("ConvertedAccountId", "ConvertedAccount", false),
        reference("ConvertedOpportunityId", "ConvertedOpportunity", false),
        external("Touchpoint_User_Id__c"),
    ]);
    s.insert("Lead".to_owned(), lead);
    let mut contact = common();
    contact.extend([
        desc("FirstName", "string"),
        desc("LastName", "string"),
        desc("Email", "email"),
        desc("Phone", "phone"),
        desc("Title", "string"),
        desc("Department", "string"),
        reference("AccountId", "Account", true),
        external("Touchpoint_User_Id__c"),
    ]);
    s.insert("Contact".to_owned(), contact);
    let mut account = common();
    account.extend([
        desc("Name", "string"),
        picklist("Industry", &industries),
        desc("Website", "url"),
        desc("AnnualRevenue", "currency"),
        desc("NumberOfEmployees", "int"),
        desc("Seats_Provisioned__c", "double"),
        picklist("Plan_Tier__c", &["free", "pro", "business", "enterprise"]),
        external("Touchpoint_Account_Id__c"),
    ]);
    s.insert("Account".to_owned(), account);
    let mut opportunity = common();
    opportunity.extend([
        desc("Name", "string"),
        picklist("StageName", &stages),
        desc("Amount", "currency"),
        desc("CloseDate", "date"),
        read_only("IsClosed", "boolean"),
        read_only("IsWon", "boolean"),
        reference("AccountId", "Account", true),
    ]);
    s.insert("Opportunity".to_owned(), opportunity);
    s
}

/// External id field per object (`None`: records are known by Id only).
fn external_field(object: &str) -> Option<&'static str> {
    match object {
        "Contact" | "Lead" => Some("Touchpoint_User_Id__c"),
        "Task" => Some("Touchpoint_Activation_Id__c"),
        "Opportunity" | "User" => None,
        _ => Some("Touchpoint_Account_Id__c"),
    }
}

/// Relationship name → (the id field holding it, the object it points to).
fn relationship(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "Owner" => Some(("OwnerId", "User")),
        "Account" => Some(("AccountId", "Account")),
        "ConvertedAccount" => Some(("ConvertedAccountId", "Account")),
        "ConvertedContact" => Some(("ConvertedContactId", "Contact")),
        "ConvertedOpportunity" => Some(("ConvertedOpportunityId", "Opportunity")),
        _ => None,
    }
}

/// Salesforce's date-time format, e.g. `2026-05-01T10:00:00.000+0000`.
pub fn sf_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string()
}

fn parse_sf_time(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .or_else(|_| chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|d| d.timestamp_millis())
}

impl State {
    /// Records of an object.
    pub fn objects(&self, object: &str) -> Vec<Map<String, Value>> {
        self.records
            .get(object)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// One record by key: its external id value, or its Id.
    pub fn get(&self, object: &str, key: &str) -> Option<Map<String, Value>> {
        self.key_of(object, key)
            .and_then(|k| self.records.get(object)?.get(&k).cloned())
    }

    /// The map key of the record whose map key, external id or Id is `key`.
    fn key_of(&self, object: &str, key: &str) -> Option<String> {
        let table = self.records.get(object)?;
        if table.contains_key(key) {
            return Some(key.to_owned());
        }
        let field = external_field(object);
        table
            .iter()
            .find(|(_, rec)| {
                rec.get("Id").and_then(Value::as_str) == Some(key)
                    || field.is_some_and(|f| rec.get(f).and_then(Value::as_str) == Some(key))
            })
            .map(|(k, _)| k.clone())
    }

    /// A strictly increasing SystemModstamp (ms), close to the wall clock.
    pub fn stamp(&mut self) -> i64 {
        let now = chrono::Utc::now().timestamp_millis();
        self.last_stamp = now.max(self.last_stamp + 1);
        self.last_stamp
    }

    fn touch(&mut self, object: &str, key: &str) {
        let at = sf_time(self.stamp());
        if let Some(rec) = self.records.get_mut(object).and_then(|t| t.get_mut(key)) {
            rec.insert("SystemModstamp".into(), json!(at));
            rec.insert("LastModifiedDate".into(), json!(at));
        }
    }

    fn new_id(&self, object: &str) -> String {
        let prefix = match object {
            "Account" => "001",
            "Contact" => "003",
            "Lead" => "00Q",
            "Opportunity" => "006",
            "Task" => "00T",
            _ => "a0B",
        };
        let count = self.records.get(object).map_or(0, BTreeMap::len);
        format!("{prefix}{:015}", count + 1)
    }

    /// Creates a record (as a sales rep would), returning its Id.
    pub fn create(&mut self, object: &str, fields: Value) -> String {
        let id = self.new_id(object);
        let mut rec = fields.as_object().cloned().unwrap_or_default();
        rec.insert("Id".into(), json!(id));
        rec.entry("OwnerId").or_insert(json!(OWNER_ID));
        let key = external_field(object)
            .and_then(|f| rec.get(f).and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| id.clone());
        self.records
            .entry(object.to_owned())
            .or_default()
            .insert(key.clone(), rec);
        self.derive(object, &key);
        self.touch(object, &key);
        id
    }

    /// Changes fields of a record (as a sales rep would); `null` clears a field.
    pub fn edit(&mut self, object: &str, key: &str, fields: Value) {
        let k = self
            .key_of(object, key)
            .unwrap_or_else(|| panic!("no {object} {key}"));
        if let Some(rec) = self.records.get_mut(object).and_then(|t| t.get_mut(&k)) {
            for (f, v) in fields.as_object().cloned().unwrap_or_default() {
                if v.is_null() {
                    rec.remove(&f);
                } else {
                    rec.insert(f, v);
                }
            }
        }
        self.derive(object, &k);
        self.touch(object, &k);
    }

    /// Deletes a record (as a sales rep would): it goes to the delete log getDeleted reads.
    pub fn delete(&mut self, object: &str, key: &str) {
        let k = self
            .key_of(object, key)
            .unwrap_or_else(|| panic!("no {object} {key}"));
        let rec = self.records.get_mut(object).and_then(|t| t.remove(&k));
        if let Some(id) = rec.and_then(|r| r.get("Id").and_then(Value::as_str).map(str::to_owned)) {
            let at = self.stamp();
            self.delete_log.push((object.to_owned(), id, at));
        }
    }

    /// Converts a Lead into a Contact, an Account (named after the Lead's company) and an open
    /// Opportunity, the way the Convert button does.
    pub fn convert_lead(&mut self, key: &str, amount: f64) -> Converted {
        let lead = self.get("Lead", key).expect("the Lead exists");
        assert_ne!(
            lead.get("IsConverted"),
            Some(&json!(true)),
            "already converted"
        );
        let company = lead
            .get("Company")
            .and_then(Value::as_str)
            .unwrap_or("Unknown")
            .to_owned();
        let owner = lead.get("OwnerId").cloned().unwrap_or(json!(OWNER_ID));
        let account_id = self.create(
            "Account",
            json!({"Name": company, "OwnerId": owner, "Industry": lead.get("Industry").cloned().unwrap_or(Value::Null)}),
        );
        let mut contact = json!({
            "FirstName": lead.get("FirstName").cloned().unwrap_or(Value::Null),
            "LastName": lead.get("LastName").cloned().unwrap_or(Value::Null),
            "Email": lead.get("Email").cloned().unwrap_or(Value::Null),
            "Phone": lead.get("Phone").cloned().unwrap_or(Value::Null),
            "Title": lead.get("Title").cloned().unwrap_or(Value::Null),
            "AccountId": account_id, "OwnerId": owner,
        });
        if self.map_lead_fields {
            contact["Touchpoint_User_Id__c"] = lead
                .get("Touchpoint_User_Id__c")
                .cloned()
                .unwrap_or(Value::Null);
        }
        let contact = Value::Object(
            contact
                .as_object()
                .unwrap()
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        );
        let contact_id = self.create("Contact", contact);
        let close = (chrono::Utc::now() + chrono::Duration::days(60))
            .format("%Y-%m-%d")
            .to_string();
        let opportunity_id = self.create(
            "Opportunity",
            json!({"Name": format!("{company} -"), "StageName": "Prospecting", "Amount": amount,
                   "CloseDate": close, "AccountId": account_id, "OwnerId": owner}),
        );
        self.edit(
            "Lead",
            key,
            json!({"IsConverted": true, "Status": "Closed - Converted",
                   "ConvertedContactId": contact_id, "ConvertedAccountId": account_id,
                   "ConvertedOpportunityId": opportunity_id}),
        );
        Converted {
            contact_id,
            account_id,
            opportunity_id,
        }
    }

    /// Formula-like fields: Opportunity IsClosed/IsWon from StageName.
    fn derive(&mut self, object: &str, key: &str) {
        if object != "Opportunity" {
            return;
        }
        if let Some(rec) = self.records.get_mut(object).and_then(|t| t.get_mut(key)) {
            let stage = rec
                .get("StageName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            rec.insert("IsClosed".into(), json!(stage.starts_with("Closed")));
            rec.insert("IsWon".into(), json!(stage == "Closed Won"));
        }
    }

    /// Upserts one record; returns the UpsertResult.
    fn upsert(&mut self, object: &str, field: &str, mut rec: Map<String, Value>) -> Value {
        let key = match rec.get(field) {
            Some(Value::String(k)) => k.clone(),
            _ => {
                self.problems
                    .push(format!("{object} record without {field}"));
                return error(
                    "MISSING_ARGUMENT",
                    &format!("{field} not specified"),
                    &[field],
                );
            }
        };
        *self
            .attempts
            .entry((object.to_owned(), key.clone()))
            .or_default() += 1;
        for (f, allowed) in &self.picklists {
            if let Some(Value::String(v)) = rec.get(f)
                && !allowed.contains(v)
            {
                return error(
                    "PICKLIST_INVALID_VALUE",
                    &format!("bad value for restricted picklist field: {v}"),
                    &[f],
                );
            }
        }
        if let Some(fields) = self.schema.get(object) {
            for name in rec.keys() {
                if name == "attributes" || relationship_field(name) {
                    continue;
                }
                match fields.iter().find(|d| d.name == *name) {
                    None => {
                        return error(
                            "INVALID_FIELD",
                            &format!("No such column '{name}' on sobject of type {object}"),
                            &[name],
                        );
                    }
                    Some(d) if !d.updateable => {
                        return error(
                            "INVALID_FIELD_FOR_INSERT_UPDATE",
                            &format!(
                                "Unable to create/update fields: {name}. Please check the security settings of this field and verify that it is read/write for your profile or permission set."
                            ),
                            &[name],
                        );
                    }
                    Some(_) => {}
                }
            }
        }
        // External-id relationships must resolve to an existing Account.
        for rel in ["Account", "Account__r"] {
            if let Some(r) = rec.remove(rel) {
                let Some(acc) = r.get("Touchpoint_Account_Id__c").and_then(Value::as_str) else {
                    self.problems
                        .push(format!("{object}.{rel} without an external id"));
                    return error("INVALID_FIELD", "relationship without external id", &[rel]);
                };
                let Some(account) = self.get("Account", acc) else {
                    return error(
                        "INVALID_FIELD",
                        &format!(
                            "Foreign key external ID: {acc} not found for field Touchpoint_Account_Id__c in entity Account"
                        ),
                        &[rel],
                    );
                };
                let id_field = if rel == "Account" {
                    "AccountId"
                } else {
                    "Account__c"
                };
                rec.insert(id_field.into(), account["Id"].clone());
            }
        }
        let existing = self.key_of(object, &key);
        let current = existing
            .as_ref()
            .and_then(|k| self.records.get(object)?.get(k).cloned());
        if object == "Lead"
            && current
                .as_ref()
                .is_some_and(|c| c.get("IsConverted") == Some(&json!(true)))
        {
            return error(
                "CANNOT_UPDATE_CONVERTED_LEAD",
                "cannot reference converted lead",
                &[],
            );
        }
        let required: &[&str] = match object {
            "Contact" => &["LastName"],
            "Lead" => &["LastName", "Company"],
            _ => &[],
        };
        for r in required {
            if !rec.contains_key(*r) && current.as_ref().is_none_or(|e| !e.contains_key(*r)) {
                return error(
                    "REQUIRED_FIELD_MISSING",
                    &format!("Required fields are missing: [{r}]"),
                    &[r],
                );
            }
        }
        let created = current.is_none();
        let map_key = existing.unwrap_or_else(|| key.clone());
        if created {
            let mut m = Map::new();
            m.insert("Id".into(), json!(self.new_id(object)));
            if matches!(object, "Account" | "Contact" | "Lead") {
                m.insert("OwnerId".into(), json!(OWNER_ID));
            }
            if object == "Lead" {
                m.insert("Status".into(), json!("Open - Not Contacted"));
                m.insert("IsConverted".into(), json!(false));
            }
            self.records
                .entry(object.to_owned())
                .or_default()
                .insert(map_key.clone(), m);
        }
        let entry = self
            .records
            .get_mut(object)
            .and_then(|t| t.get_mut(&map_key))
            .expect("just inserted");
        for (k, v) in rec {
            if k == "attributes" {
                continue;
            }
            if v.is_null() {
                entry.remove(&k);
            } else {
                entry.insert(k, v);
            }
        }
        let id = entry["Id"].clone();
        self.touch(object, &map_key);
        json!({"id": id, "success": true, "errors": [], "created": created})
    }

    /// Updates one record by Id (sObject Collections update).
    fn update_by_id(&mut self, object: &str, rec: Map<String, Value>) -> Value {
        let Some(id) = rec
            .get("id")
            .or_else(|| rec.get("Id"))
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            self.problems.push(format!("{object} update without id"));
            return error(
                "MISSING_ARGUMENT",
                "Id not specified in an update call",
                &[],
            );
        };
        let Some(k) = self.key_of(object, &id) else {
            return error("ENTITY_IS_DELETED", "entity is deleted", &[]);
        };
        let converted = self
            .records
            .get(object)
            .and_then(|t| t.get(&k))
            .is_some_and(|r| r.get("IsConverted") == Some(&json!(true)));
        if object == "Lead" && converted {
            return error(
                "CANNOT_UPDATE_CONVERTED_LEAD",
                "cannot reference converted lead",
                &[],
            );
        }
        if let Some(entry) = self.records.get_mut(object).and_then(|t| t.get_mut(&k)) {
            for (f, v) in rec {
                if matches!(f.as_str(), "attributes" | "id" | "Id") {
                    continue;
                }
                if v.is_null() {
                    entry.remove(&f);
                } else {
                    entry.insert(f, v);
                }
            }
        }
        self.touch(object, &k);
        json!({"id": id, "success": true, "errors": []})
    }

    /// A record as a query returns it: the selected fields, relationships as nested records.
    fn project(&self, object: &str, rec: &Map<String, Value>, fields: &[String]) -> Value {
        let mut out = Map::new();
        let id = rec.get("Id").and_then(Value::as_str).unwrap_or("");
        out.insert(
            "attributes".into(),
            json!({"type": object, "url": format!("/services/data/v60.0/sobjects/{object}/{id}")}),
        );
        for f in fields {
            match f.split_once('.') {
                None => {
                    out.insert(f.clone(), rec.get(f).cloned().unwrap_or(Value::Null));
                }
                Some((rel, field)) => {
                    let (id_field, target) = relationship(rel).expect("validated");
                    let target_id = rec.get(id_field).and_then(Value::as_str);
                    let related = target_id.and_then(|tid| {
                        if target == "User" {
                            self.users.get(tid).map(|email| {
                                serde_json::from_value::<Map<String, Value>>(
                                    json!({"Id": tid, "Email": email, "Name": email}),
                                )
                                .unwrap_or_default()
                            })
                        } else {
                            self.get(target, tid)
                        }
                    });
                    let slot = out.entry(rel.to_owned()).or_insert(Value::Null);
                    match related {
                        Some(r) => {
                            if slot.is_null() {
                                *slot = json!({"attributes": {"type": target}});
                            }
                            slot[field] = r.get(field).cloned().unwrap_or(Value::Null);
                        }
                        None => *slot = Value::Null,
                    }
                }
            }
        }
        Value::Object(out)
    }
}

fn relationship_field(name: &str) -> bool {
    name == "Account" || name == "Account__r"
}

fn error(code: &str, message: &str, fields: &[&str]) -> Value {
    json!({"success": false, "errors": [{"statusCode": code, "message": message, "fields": fields}]})
}

fn api_error(status: u16, code: &str, message: &str) -> Response {
    json(
        status,
        json!([{"message": message, "errorCode": code, "fields": []}]),
    )
}

fn not_found() -> Response {
    api_error(404, "NOT_FOUND", "The requested resource does not exist")
}

fn no_content() -> Response {
    axum::http::StatusCode::NO_CONTENT.into_response()
}

fn with_limits(mut r: Response, usage: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("api-usage={usage}/15000")) {
        r.headers_mut().insert("sforce-limit-info", v);
    }
    r
}

fn handle(s: &mut State, req: &Incoming) -> Response {
    if req.path == "/services/oauth2/token" {
        let form = super::parse_form(&req.body);
        let ok = req.method == Method::POST
            && form.get("grant_type").map(String::as_str) == Some("client_credentials")
            && form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
            && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET);
        if !ok {
            return json(
                400,
                json!({"error": "invalid_client", "error_description": "invalid client credentials"}),
            );
        }
        let token = format!("00Dfake!token{}", s.tokens.len() + 1);
        s.tokens.push(token.clone());
        return json(
            200,
            json!({"access_token": token, "instance_url": s.url,
            "id": format!("{}/id/00D/005INTEGRATION", s.url), "token_type": "Bearer",
            "issued_at": "1790000000000", "signature": "fake"}),
        );
    }
    if !req.bearer().is_some_and(|t| s.tokens.contains(&t)) {
        return api_error(401, "INVALID_SESSION_ID", "Session expired or invalid");
    }
    s.api_usage += 1;
    let usage = s.api_usage;
    let parts: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    // services/data/vXX.X/...
    if parts.len() < 4 || parts[0] != "services" || parts[1] != "data" || !parts[2].starts_with('v')
    {
        return with_limits(
            api_error(404, "NOT_FOUND", "The requested resource does not exist"),
            usage,
        );
    }
    let rest = &parts[3..];
    let r = match (req.method.clone(), rest) {
        (Method::GET, ["query"]) => query(s, req),
        (Method::GET, ["query", locator]) => query_more(s, locator),
        (Method::GET, ["sobjects", object, "describe"]) => describe(s, object),
        (Method::GET, ["sobjects", object, "deleted"]) => get_deleted(s, object, req),
        (Method::PATCH, ["composite", "sobjects"]) => {
            update_collection(s, req.json().unwrap_or(Value::Null))
        }
        (Method::PATCH, ["composite", "sobjects", object, field]) => {
            collection(s, object, field, req.json().unwrap_or(Value::Null))
        }
        (Method::POST, ["composite"]) => composite(s, req.json().unwrap_or(Value::Null)),
        (Method::GET, ["sobjects", object, field, value])
            if Some(*field) == external_field(object) =>
        {
            match s.get(object, &super::decode(value)) {
                Some(mut rec) => {
                    rec.insert("attributes".into(), json!({"type": object}));
                    json(200, Value::Object(rec))
                }
                None => not_found(),
            }
        }
        (Method::DELETE, ["sobjects", object, field, value])
            if Some(*field) == external_field(object) =>
        {
            let key = super::decode(value);
            let k = s.records.get(*object).and_then(|t| {
                t.iter()
                    .find(|(mk, rec)| {
                        **mk == key || rec.get(*field).and_then(Value::as_str) == Some(&key)
                    })
                    .map(|(mk, _)| mk.clone())
            });
            match k.and_then(|k| s.records.get_mut(*object).and_then(|t| t.remove(&k))) {
                Some(_) => {
                    s.deleted.push(((*object).to_owned(), key));
                    no_content()
                }
                None => not_found(),
            }
        }
        (Method::DELETE, ["sobjects", object, id]) => {
            let key = s.records.get(*object).and_then(|t| {
                t.iter()
                    .find(|(_, rec)| rec.get("Id").and_then(Value::as_str) == Some(*id))
                    .map(|(k, _)| k.clone())
            });
            match key {
                Some(key) => {
                    if let Some(t) = s.records.get_mut(*object) {
                        t.remove(&key);
                    }
                    s.deleted.push(((*object).to_owned(), key));
                    no_content()
                }
                None => not_found(),
            }
        }
        (Method::PATCH, ["sobjects", "Task", field, value])
            if *field == "Touchpoint_Activation_Id__c" =>
        {
            task_upsert(s, &super::decode(value), req)
        }
        (Method::PATCH, ["sobjects", object, id]) => {
            let Some(Value::Object(fields)) = req.json() else {
                s.problems
                    .push(format!("update of {object} {id} without a JSON object"));
                return with_limits(
                    api_error(400, "JSON_PARSER_ERROR", "body is not an object"),
                    usage,
                );
            };
            let key = s.records.get(*object).and_then(|t| {
                t.iter()
                    .find(|(_, rec)| rec.get("Id").and_then(Value::as_str) == Some(*id))
                    .map(|(k, _)| k.clone())
            });
            let Some(key) = key else {
                return with_limits(not_found(), usage);
            };
            if let Some(owner) = fields.get("OwnerId")
                && !owner.as_str().is_some_and(|o| s.users.contains_key(o))
            {
                s.problems
                    .push(format!("{object} {id}: OwnerId {owner} is not a User"));
                return with_limits(
                    api_error(
                        400,
                        "INVALID_CROSS_REFERENCE_KEY",
                        &format!("invalid cross reference id: OwnerId {owner}"),
                    ),
                    usage,
                );
            }
            if object == &"Contact" && fields.get("LastName").is_some_and(Value::is_null) {
                return with_limits(
                    api_error(
                        400,
                        "REQUIRED_FIELD_MISSING",
                        "Required fields are missing: [LastName]",
                    ),
                    usage,
                );
            }
            if let Some(rec) = s.records.get_mut(*object).and_then(|t| t.get_mut(&key)) {
                for (k, v) in &fields {
                    if v.is_null() {
                        rec.remove(k);
                    } else {
                        rec.insert(k.clone(), v.clone());
                    }
                }
            }
            s.touch(object, &key);
            s.updated
                .push(((*object).to_owned(), (*id).to_owned(), fields));
            no_content()
        }
        (Method::GET, ["limits"]) => json(
            200,
            json!({"DailyApiRequests": {"Max": 15000, "Remaining": 15000 - usage}}),
        ),
        _ => api_error(404, "NOT_FOUND", "The requested resource does not exist"),
    };
    with_limits(r, usage)
}

/// The SOQL subset Touchpoint sends.
struct Soql {
    fields: Vec<String>,
    object: String,
    since: Option<(i64, bool)>,
}

fn parse_soql(q: &str) -> Result<Soql, String> {
    let q = q.trim();
    let upper = q.to_ascii_uppercase();
    let rest = upper
        .strip_prefix("SELECT ")
        .ok_or("a query starts with SELECT")?;
    let from = rest.find(" FROM ").ok_or("FROM is missing")? + "SELECT ".len();
    let fields: Vec<String> = q[7..from]
        .split(',')
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty())
        .collect();
    let after_from = &q[from + 6..];
    let mut words = after_from.split_whitespace();
    let object = words.next().ok_or("no object after FROM")?.to_owned();
    let tail: Vec<&str> = words.collect();
    let mut since = None;
    let mut i = 0;
    while i < tail.len() {
        match tail[i].to_ascii_uppercase().as_str() {
            "WHERE" => {
                let (field, op, value) = (
                    tail.get(i + 1).ok_or("WHERE without a condition")?,
                    tail.get(i + 2).ok_or("WHERE without an operator")?,
                    tail.get(i + 3).ok_or("WHERE without a value")?,
                );
                if *field != "SystemModstamp" {
                    return Err(format!("unsupported condition on {field}"));
                }
                let ms = parse_sf_time(value).ok_or(format!(
                    "value of filter criterion for field 'SystemModstamp' must be of type dateTime and should not be enclosed in quotes: {value}"
                ))?;
                let inclusive = match *op {
                    ">=" => true,
                    ">" => false,
                    other => return Err(format!("unsupported operator {other}")),
                };
                since = Some((ms, inclusive));
                i += 4;
            }
            "ORDER" => {
                // ORDER BY SystemModstamp ASC, Id ASC: the fake always orders so.
                i += 1;
                while i < tail.len() && !tail[i].eq_ignore_ascii_case("LIMIT") {
                    i += 1;
                }
            }
            other => return Err(format!("unexpected token {other}")),
        }
    }
    Ok(Soql {
        fields,
        object,
        since,
    })
}

fn malformed(message: &str) -> Response {
    api_error(400, "MALFORMED_QUERY", message)
}

fn query(s: &mut State, req: &Incoming) -> Response {
    let Some(q) = req.query.get("q") else {
        s.problems.push("query without q".into());
        return malformed("q is required");
    };
    s.queries.push(q.clone());
    let soql = match parse_soql(q) {
        Ok(s) => s,
        Err(e) => {
            s.problems
                .push(format!("SOQL the fake does not take: {e}: {q}"));
            return malformed(&e);
        }
    };
    let Some(schema) = s.schema.get(&soql.object) else {
        return api_error(
            400,
            "INVALID_TYPE",
            &format!(
                "sObject type '{}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name.",
                soql.object
            ),
        );
    };
    for f in &soql.fields {
        let ok = match f.split_once('.') {
            None => schema.iter().any(|d| d.name == *f),
            Some((rel, _)) => schema
                .iter()
                .any(|d| d.relationship.as_deref() == Some(rel)),
        };
        if !ok {
            return api_error(
                400,
                "INVALID_FIELD",
                &format!(
                    "No such column '{f}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
                    soql.object
                ),
            );
        }
    }
    let mut rows: Vec<(i64, String, Map<String, Value>)> = s
        .records
        .get(&soql.object)
        .map(|t| {
            t.values()
                .map(|r| {
                    let at = r
                        .get("SystemModstamp")
                        .and_then(Value::as_str)
                        .and_then(parse_sf_time)
                        .unwrap_or(0);
                    let id = r.get("Id").and_then(Value::as_str).unwrap_or("").to_owned();
                    (at, id, r.clone())
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some((since, inclusive)) = soql.since {
        rows.retain(|(at, _, _)| if inclusive { *at >= since } else { *at > since });
    }
    rows.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let records: Vec<Value> = rows
        .iter()
        .map(|(_, _, r)| s.project(&soql.object, r, &soql.fields))
        .collect();
    page(s, records)
}

fn page(s: &mut State, mut records: Vec<Value>) -> Response {
    let total = records.len();
    let batch = s.query_batch.max(1);
    let rest = if records.len() > batch {
        records.split_off(batch)
    } else {
        Vec::new()
    };
    let mut body = json!({"totalSize": total, "done": rest.is_empty(), "records": records});
    if !rest.is_empty() {
        let locator = format!("01gFAKE{:08}-{batch}", s.cursors.len() + 1);
        body["nextRecordsUrl"] = json!(format!("/services/data/v60.0/query/{locator}"));
        s.cursors.insert(locator, rest);
    }
    json(200, body)
}

fn query_more(s: &mut State, locator: &str) -> Response {
    let Some(rest) = s.cursors.remove(locator) else {
        return api_error(400, "INVALID_QUERY_LOCATOR", "invalid query locator");
    };
    page(s, rest)
}

fn describe(s: &State, object: &str) -> Response {
    let Some(fields) = s.schema.get(object) else {
        return not_found();
    };
    let fields: Vec<Value> = fields
        .iter()
        .map(|d| {
            json!({
                "name": d.name, "label": d.name, "type": d.ty,
                "length": if d.ty == "string" { 255 } else { 0 },
                "custom": d.name.ends_with("__c"),
                "externalId": d.external_id, "unique": d.external_id,
                "updateable": d.updateable, "createable": d.updateable,
                "nillable": !matches!(d.name.as_str(), "Id" | "LastName" | "Name" | "Company" | "StageName"),
                "relationshipName": d.relationship,
                "picklistValues": d.picklist.iter().enumerate().map(|(i, v)| json!({
                    "active": true, "defaultValue": i == 0, "label": v, "validFor": null, "value": v,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json(
        200,
        json!({"name": object, "label": object, "custom": false, "queryable": true, "fields": fields}),
    )
}

fn get_deleted(s: &State, object: &str, req: &Incoming) -> Response {
    let (Some(start), Some(end)) = (
        req.query.get("start").and_then(|v| parse_sf_time(v)),
        req.query.get("end").and_then(|v| parse_sf_time(v)),
    ) else {
        return api_error(
            400,
            "INVALID_REPLICATION_DATE",
            "start and end are required ISO 8601 date-times",
        );
    };
    if end - start <= 60_000 {
        return api_error(
            400,
            "INVALID_REPLICATION_DATE",
            "startDate must chronologically precede endDate by more than one minute",
        );
    }
    // Salesforce covers whole minutes.
    let covered = end - end.rem_euclid(60_000);
    let deleted: Vec<Value> = s
        .delete_log
        .iter()
        .filter(|(o, _, at)| o == object && *at >= start && *at < covered)
        .map(|(_, id, at)| json!({"id": id, "deletedDate": sf_time(*at)}))
        .collect();
    json(
        200,
        json!({"deletedRecords": deleted, "earliestDateAvailable": sf_time(0),
               "latestDateCovered": sf_time(covered)}),
    )
}

fn update_collection(s: &mut State, body: Value) -> Response {
    let Some(records) = body.get("records").and_then(Value::as_array) else {
        s.problems.push("collection update without records".into());
        return api_error(400, "JSON_PARSER_ERROR", "records is required");
    };
    if records.len() > 200 {
        s.problems
            .push(format!("{} records in one collection", records.len()));
        return api_error(
            400,
            "EXCEEDED_MAX_SIZE_REQUEST",
            "You can't add more than 200 objects in a request",
        );
    }
    let mut results = Vec::new();
    for rec in records {
        let Some(rec) = rec.as_object().cloned() else {
            return api_error(400, "JSON_PARSER_ERROR", "records must be objects");
        };
        let Some(object) = rec
            .get("attributes")
            .and_then(|a| a.get("type"))
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            s.problems
                .push("update record without attributes.type".into());
            return api_error(400, "INVALID_TYPE", "attributes.type is required");
        };
        results.push(s.update_by_id(&object, rec));
    }
    json(200, Value::Array(results))
}

fn collection(s: &mut State, object: &str, field: &str, body: Value) -> Response {
    let Some(records) = body.get("records").and_then(Value::as_array) else {
        s.problems.push("collection without records".into());
        return api_error(400, "JSON_PARSER_ERROR", "records is required");
    };
    if records.len() > 200 {
        s.problems
            .push(format!("{} records in one collection", records.len()));
        return api_error(
            400,
            "EXCEEDED_MAX_SIZE_REQUEST",
            "You can't add more than 200 objects in a request",
        );
    }
    if Some(field) != external_field(object) {
        s.problems.push(format!("{object} upserted by {field}"));
        return api_error(
            400,
            "INVALID_FIELD",
            &format!("{field} is not an external id field"),
        );
    }
    let mut results = Vec::new();
    for rec in records {
        let Some(rec) = rec.as_object().cloned() else {
            return api_error(400, "JSON_PARSER_ERROR", "records must be objects");
        };
        if rec
            .get("attributes")
            .and_then(|a| a.get("type"))
            .and_then(Value::as_str)
            != Some(object)
        {
            s.problems
                .push(format!("{object} record without attributes.type"));
            return api_error(
                400,
                "INVALID_TYPE",
                "attributes.type is required and must match the URI",
            );
        }
        if let Some(extra) = rec
            .get("attributes")
            .and_then(Value::as_object)
            .and_then(|a| a.keys().find(|k| *k != "type" && *k != "url"))
        {
            s.problems
                .push(format!("{object} record with attributes.{extra}"));
        }
        results.push(s.upsert(object, field, rec));
    }
    json(200, Value::Array(results))
}

fn resolve(v: &Value, refs: &BTreeMap<String, Value>) -> Value {
    match v {
        Value::String(t) if t.starts_with("@{") && t.ends_with('}') => {
            let inner = &t[2..t.len() - 1];
            let (r, f) = inner.split_once('.').unwrap_or((inner, ""));
            refs.get(r)
                .and_then(|b| b.get(f))
                .cloned()
                .unwrap_or(Value::Null)
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), resolve(v, refs)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn composite(s: &mut State, body: Value) -> Response {
    let Some(subs) = body.get("compositeRequest").and_then(Value::as_array) else {
        s.problems.push("composite without compositeRequest".into());
        return api_error(400, "JSON_PARSER_ERROR", "compositeRequest is required");
    };
    if subs.len() > 25 {
        s.problems
            .push(format!("{} subrequests in one composite", subs.len()));
        return api_error(400, "INVALID_INPUT", "at most 25 subrequests");
    }
    let mut refs: BTreeMap<String, Value> = BTreeMap::new();
    let mut failed: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    for sub in subs {
        let reference = sub["referenceId"].as_str().unwrap_or("").to_owned();
        let url = sub["url"].as_str().unwrap_or("");
        let path = url.split('?').next().unwrap_or("");
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let depends = serde_json::to_string(&sub["body"]).unwrap_or_default();
        if failed.iter().any(|f| depends.contains(&format!("@{{{f}."))) {
            failed.insert(reference.clone());
            out.push(json!({"referenceId": reference, "httpStatusCode": 400, "httpHeaders": {},
                "body": [{"errorCode": "PROCESSING_HALTED", "message": "Invalid reference specified. No value for a dependent reference"}]}));
            continue;
        }
        let (status, result) = match (sub["method"].as_str(), parts.get(3..).unwrap_or(&[])) {
            (Some("GET"), ["sobjects", object, field, value])
                if Some(*field) == external_field(object) =>
            {
                match s.get(object, &super::decode(value)) {
                    Some(rec) => (200, Value::Object(rec)),
                    None => (
                        404,
                        json!([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]),
                    ),
                }
            }
            (Some("PATCH"), ["sobjects", object, field, value])
                if Some(*field) == external_field(object) =>
            {
                let mut rec = resolve(&sub["body"], &refs)
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                if object == &"Task" {
                    for required in ["WhatId", "OwnerId", "Subject"] {
                        if rec.get(required).is_none_or(Value::is_null) {
                            s.problems.push(format!("Task without {required}"));
                        }
                    }
                }
                rec.insert((*field).to_owned(), json!(super::decode(value)));
                let r = s.upsert(object, field, rec);
                if r["success"] == true {
                    (if r["created"] == true { 201 } else { 200 }, r)
                } else {
                    (400, r["errors"].clone())
                }
            }
            _ => {
                s.problems
                    .push(format!("unsupported composite subrequest {url}"));
                (
                    400,
                    json!([{"errorCode": "INVALID_URL", "message": "unsupported"}]),
                )
            }
        };
        if (200..300).contains(&status) {
            refs.insert(reference.clone(), result.clone());
        } else {
            failed.insert(reference.clone());
        }
        out.push(json!({"referenceId": reference, "httpStatusCode": status, "httpHeaders": {}, "body": result}));
    }
    json(200, json!({"compositeResponse": out}))
}

/// Task `Status` picklist values of a default org.
pub const TASK_STATUSES: [&str; 5] = [
    "Not Started",
    "In Progress",
    "Completed",
    "Waiting on someone else",
    "Deferred",
];

/// Upserts a Task by its external id (`PATCH …/sobjects/Task/Touchpoint_Activation_Id__c/{key}`),
/// checking what Salesforce would: a Subject, an `OwnerId` that is a User, a `WhoId` that is a
/// Lead or Contact, `Status` and `Priority` picklist values and an `ActivityDate` date.
fn task_upsert(s: &mut State, key: &str, req: &Incoming) -> Response {
    let Some(Value::Object(mut rec)) = req.json() else {
        s.problems.push("Task upsert without a JSON object".into());
        return api_error(400, "JSON_PARSER_ERROR", "body is not an object");
    };
    let mut wrong = Vec::new();
    if rec
        .get("Subject")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        wrong.push("Subject missing".to_owned());
    }
    match rec.get("OwnerId").and_then(Value::as_str) {
        Some(o) if s.users.contains_key(o) => {}
        other => wrong.push(format!("OwnerId {other:?} is not a User")),
    }
    let who = rec.get("WhoId").and_then(Value::as_str).unwrap_or("");
    let who_exists = ["Lead", "Contact"].iter().any(|o| {
        s.records.get(*o).is_some_and(|t| {
            t.values()
                .any(|r| r.get("Id").and_then(Value::as_str) == Some(who))
        })
    });
    if !who_exists {
        wrong.push(format!("WhoId {who:?} is not a Lead or Contact"));
    }
    if let Some(st) = rec.get("Status").and_then(Value::as_str)
        && !TASK_STATUSES.contains(&st)
    {
        wrong.push(format!("Status {st:?} is not a picklist value"));
    }
    if let Some(p) = rec.get("Priority").and_then(Value::as_str)
        && !["High", "Normal", "Low"].contains(&p)
    {
        wrong.push(format!("Priority {p:?} is not a picklist value"));
    }
    if let Some(d) = rec.get("ActivityDate")
        && d.as_str()
            .is_none_or(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err())
    {
        wrong.push(format!("ActivityDate {d} is not a date"));
    }
    for f in rec.keys() {
        if ![
            "Subject",
            "Description",
            "OwnerId",
            "WhoId",
            "WhatId",
            "ActivityDate",
            "Status",
            "Priority",
            "Type",
        ]
        .contains(&f.as_str())
        {
            wrong.push(format!("No such column '{f}' on sobject of type Task"));
        }
    }
    if !wrong.is_empty() {
        s.problems.push(format!("Task {key}: {}", wrong.join("; ")));
        return api_error(400, "FIELD_INTEGRITY_EXCEPTION", &wrong.join("; "));
    }
    let closed = rec.get("Status").and_then(Value::as_str) == Some("Completed");
    rec.insert("IsClosed".into(), json!(closed));
    rec.insert("Touchpoint_Activation_Id__c".into(), json!(key));
    let r = s.upsert("Task", "Touchpoint_Activation_Id__c", rec);
    if r["success"] == true {
        let status = if r["created"] == true { 201 } else { 200 };
        json(status, r)
    } else {
        json(400, r["errors"].clone())
    }
}

impl State {
    /// Marks a Task completed (as the rep would), by its external id or Id.
    pub fn complete_task(&mut self, key: &str) {
        self.edit(
            "Task",
            key,
            json!({"Status": "Completed", "IsClosed": true}),
        );
    }
}

/// Starts a fake Salesforce.
pub async fn spawn() -> Fake<State> {
    start(
        |url| State {
            url,
            ..State::default()
        },
        handle,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soql_subset_parses() {
        let q = parse_soql(
            "SELECT Id, Owner.Email, SystemModstamp FROM Lead WHERE SystemModstamp >= 2026-05-01T10:00:00.000Z ORDER BY SystemModstamp ASC, Id ASC",
        )
        .unwrap();
        assert_eq!(q.object, "Lead");
        assert_eq!(q.fields, vec!["Id", "Owner.Email", "SystemModstamp"]);
        assert_eq!(q.since, Some((1_777_629_600_000, true)));
        assert!(parse_soql("SELECT Id FROM Lead WHERE Name = 'x'").is_err());
    }
}
