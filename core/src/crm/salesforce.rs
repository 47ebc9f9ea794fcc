//! Reading Salesforce: SOQL on `SystemModstamp` since each object's watermark with `queryMore`
//! through `nextRecordsUrl`, deleted records through getDeleted, normalised into [`Change`]s
//! (pure: [`soql`], [`change`]); external ids written back through sObject Collections update.

use super::mapping::{self, Crm, FieldMap};
use super::store::{Writes, digest};
use super::sync::{self, AccountLink, Change, Known, WriteBack};
use super::{CrmLoop, Report, SyncError};
use crate::destinations::Method;
use crate::destinations::salesforce::config::SalesforceConfig;
use crate::destinations::salesforce::encoder::segment;
use crate::destinations::salesforce::service::{Service, error_text};
use crate::state::AppState;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

/// The objects polled, in the order their changes are decided (people before accounts).
pub const OBJECTS: [&str; 4] = ["Lead", "Contact", "Account", "Opportunity"];

/// Fields every poll of an object reads besides the mapped ones.
pub fn base_fields(object: &str) -> &'static [&'static str] {
    match object {
        "Lead" => &[
            "Id",
            "SystemModstamp",
            "Email",
            "Touchpoint_User_Id__c",
            "IsConverted",
            "ConvertedContactId",
            "ConvertedAccountId",
            "ConvertedAccount.Touchpoint_Account_Id__c",
        ],
        "Contact" => &[
            "Id",
            "SystemModstamp",
            "Email",
            "Touchpoint_User_Id__c",
            "AccountId",
            "Account.Touchpoint_Account_Id__c",
        ],
        "Account" => &["Id", "SystemModstamp", "Touchpoint_Account_Id__c"],
        _ => &[
            "Id",
            "SystemModstamp",
            "AccountId",
            "Account.Touchpoint_Account_Id__c",
        ],
    }
}

/// Salesforce's date-time literal for SOQL and getDeleted (`2026-05-01T10:00:00.000Z`).
pub fn literal(ms: i64) -> String {
    mapping::rfc3339(ms)
}

/// The SOQL reading what changed in `object` since `since` (inclusive: a record stamped in the
/// same millisecond as the last one read is read again and found unchanged).
pub fn soql(object: &str, inbound: &[&FieldMap], since: i64) -> String {
    let mut fields: Vec<String> = base_fields(object)
        .iter()
        .map(|f| (*f).to_owned())
        .collect();
    for f in inbound {
        if !fields.contains(&f.field) {
            fields.push(f.field.clone());
        }
    }
    format!(
        "SELECT {} FROM {object} WHERE SystemModstamp >= {} ORDER BY SystemModstamp ASC, Id ASC",
        fields.join(", "),
        literal(since)
    )
}

fn text(rec: &Map<String, Value>, path: &str) -> Option<String> {
    mapping::at_path(rec, path)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn link(rec: &Map<String, Value>, id_field: &str, relationship: &str) -> Option<AccountLink> {
    let id = text(rec, id_field)?;
    let group = text(rec, &format!("{relationship}.Touchpoint_Account_Id__c"))
        .unwrap_or_else(|| sync::synthetic_group(Crm::Salesforce, &id));
    Some(AccountLink {
        group_id: group,
        crm_id: id,
    })
}

/// A query record as a [`Change`].
pub fn change(object: &str, rec: &Map<String, Value>, inbound: &[&FieldMap]) -> Option<Change> {
    let id = text(rec, "Id")?;
    let modified_at = text(rec, "SystemModstamp").and_then(|t| mapping::parse_datetime(&t))?;
    let mut values = Map::new();
    for f in inbound {
        values.insert(
            f.field.clone(),
            mapping::at_path(rec, &f.field)
                .cloned()
                .unwrap_or(Value::Null),
        );
    }
    let mut c = Change {
        object: object.to_owned(),
        id,
        modified_at,
        values,
        ..Change::default()
    };
    match object {
        "Lead" | "Contact" => {
            c.user_id = text(rec, "Touchpoint_User_Id__c");
            c.key = c.user_id.clone();
            c.email = text(rec, "Email");
            if object == "Contact" {
                c.account = link(rec, "AccountId", "Account");
            } else if rec.get("IsConverted") == Some(&json!(true)) {
                c.converted_contact = text(rec, "ConvertedContactId");
                c.account = link(rec, "ConvertedAccountId", "ConvertedAccount");
            }
        }
        "Account" => c.key = text(rec, "Touchpoint_Account_Id__c"),
        _ => c.account = link(rec, "AccountId", "Account"),
    }
    Some(c)
}

/// Reads Salesforce for the inbound sync (its own session and API budget).
pub struct Reader {
    service: Service,
    version: String,
    calls: AtomicU64,
}

impl Reader {
    /// A reader for the Salesforce destination's settings.
    pub fn new(config: SalesforceConfig, client: reqwest::Client) -> Reader {
        Reader {
            version: config.api_version.clone(),
            service: Service::new(config, client),
            calls: AtomicU64::new(0),
        }
    }

    /// API calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// One API call; an error answer becomes [`SyncError::Crm`] with Salesforce's message.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, SyncError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let answer = match self.service.call(method, path, body).await {
            Ok(a) => a,
            Err(sent) => {
                return Err(SyncError::Crm(format!(
                    "Salesforce {path}: {:?}",
                    sent.action
                )));
            }
        };
        if !(200..300).contains(&answer.status) {
            return Err(SyncError::Crm(format!(
                "Salesforce answered HTTP {}: {}",
                answer.status,
                error_text(&answer.json())
            )));
        }
        Ok(answer.json())
    }

    /// The API version path prefix.
    pub fn base(&self) -> String {
        format!("/services/data/{}", self.version)
    }

    /// Records of `object` changed since `since`, reading at most `max_pages` pages; also the
    /// newest `SystemModstamp` read.
    pub async fn changed(
        &self,
        object: &str,
        inbound: &[&FieldMap],
        since: i64,
        max_pages: usize,
    ) -> Result<(Vec<Change>, i64, usize), SyncError> {
        let q = soql(object, inbound, since);
        let mut path = format!("{}/query?q={}", self.base(), segment(&q));
        let mut out = Vec::new();
        let mut newest = since;
        let mut read = 0;
        for _ in 0..max_pages {
            let page = self.call(Method::Get, &path, None).await?;
            for rec in page["records"].as_array().into_iter().flatten() {
                read += 1;
                if let Some(c) = rec.as_object().and_then(|r| change(object, r, inbound)) {
                    newest = newest.max(c.modified_at);
                    out.push(c);
                }
            }
            match page["nextRecordsUrl"].as_str() {
                Some(next) if page["done"] == json!(false) => path = next.to_owned(),
                _ => break,
            }
        }
        Ok((out, newest, read))
    }

    /// Records of `object` deleted in `[start, end)`, and the time covered (the next start).
    /// Salesforce wants more than a minute between the two; a shorter span reads nothing yet.
    pub async fn deleted(
        &self,
        object: &str,
        start: i64,
        end: i64,
    ) -> Result<(Vec<Change>, i64), SyncError> {
        if end - start <= 60_000 {
            return Ok((Vec::new(), start));
        }
        // Salesforce keeps 15 days of deletions.
        let start = start.max(end - 15 * 86_400_000 + 60_000);
        let path = format!(
            "{}/sobjects/{object}/deleted/?start={}&end={}",
            self.base(),
            segment(&literal(start)),
            segment(&literal(end))
        );
        let body = self.call(Method::Get, &path, None).await?;
        let covered = body["latestDateCovered"]
            .as_str()
            .and_then(mapping::parse_datetime)
            .unwrap_or(start);
        let changes = body["deletedRecords"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| {
                Some(Change {
                    object: object.to_owned(),
                    id: d["id"].as_str()?.to_owned(),
                    modified_at: d["deletedDate"]
                        .as_str()
                        .and_then(mapping::parse_datetime)
                        .unwrap_or(covered),
                    deleted: true,
                    ..Change::default()
                })
            })
            .collect();
        Ok((changes, covered))
    }

    /// Writes external ids (sObject Collections update by Id, ≤ 200 a call).
    pub async fn write_back(&self, wbs: &[WriteBack]) -> Result<(), SyncError> {
        for chunk in wbs.chunks(200) {
            let records: Vec<Value> = chunk
                .iter()
                .map(|w| json!({"attributes": {"type": w.object}, "id": w.id, w.field.clone(): w.value}))
                .collect();
            let body = json!({"allOrNone": false, "records": records});
            let answer = self
                .call(
                    Method::Patch,
                    &format!("{}/composite/sobjects", self.base()),
                    Some(&body),
                )
                .await?;
            for (i, r) in answer.as_array().into_iter().flatten().enumerate() {
                if r["success"] != json!(true) {
                    let w = &chunk[i.min(chunk.len() - 1)];
                    return Err(SyncError::Crm(format!(
                        "writing {} on {} {}: {}",
                        w.field,
                        w.object,
                        w.id,
                        error_text(&r["errors"])
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Loads what the store knows about `changes`.
pub(crate) async fn known(
    crm: &CrmLoop,
    which: Crm,
    changes: &[Change],
) -> Result<Known, SyncError> {
    let store = &crm.store;
    let mut k = Known::default();
    let objects: BTreeSet<&str> = changes.iter().map(|c| c.object.as_str()).collect();
    for object in &objects {
        let ids: Vec<String> = changes
            .iter()
            .filter(|c| c.object == *object)
            .map(|c| c.id.clone())
            .collect();
        for r in store.records(which, object, &ids).await? {
            k.records
                .insert(((*object).to_owned(), r.record_id.clone()), r);
        }
    }
    for c in changes {
        let kind = mapping::kind_of(which, &c.object);
        if kind == Some(mapping::ObjectKind::Person) {
            let id_kind = sync::id_kind(which, &c.object);
            if let Some(w) = store.who(&id_kind, &c.id).await? {
                k.who.insert((id_kind, c.id.clone()), w);
            }
            if c.user_id.is_none()
                && let Some(e) = c
                    .email
                    .as_deref()
                    .and_then(crate::identity::normalise_email)
                && let Some(w) = store.who("email", &e).await?
            {
                k.who.insert(("email".into(), e), w);
            }
        }
    }
    k.pending = store.pending(which).await?;
    // Accounts the changes speak for.
    let mut groups: BTreeSet<String> = BTreeSet::new();
    for c in changes {
        match mapping::kind_of(which, &c.object) {
            Some(mapping::ObjectKind::Account) => {
                groups.insert(
                    c.key
                        .clone()
                        .unwrap_or_else(|| sync::synthetic_group(which, &c.id)),
                );
            }
            Some(mapping::ObjectKind::AccountChild) => {
                if let Some(a) = &c.account {
                    groups.insert(a.group_id.clone());
                }
            }
            _ => {}
        }
        if let Some(g) = k
            .records
            .get(&(c.object.clone(), c.id.clone()))
            .and_then(|r| r.group_id.clone())
        {
            groups.insert(g);
        }
    }
    for (_, r) in &k.pending {
        if let Some(g) = &r.group_id {
            groups.insert(g.clone());
        }
    }
    for g in groups {
        if let Some(m) = store.member(&g).await? {
            k.members.insert(g, m);
        }
    }
    // Field states under every key a change may use.
    for object in &objects {
        let mut keys: BTreeSet<String> = BTreeSet::new();
        for c in changes.iter().filter(|c| c.object == *object) {
            keys.insert(format!("id:{}", c.id));
            if let Some(key) = &c.key {
                keys.insert(key.clone());
            }

            if mapping::kind_of(which, object) == Some(mapping::ObjectKind::Account) {
                keys.insert(sync::synthetic_group(which, &c.id));
            }
        }
        for (_, (kind, value)) in k.who.iter() {
            if kind == "user_id" {
                keys.insert(value.clone());
            }
        }
        let mut keys: Vec<String> = keys.iter().map(|k| digest(k)).collect();
        for c in changes.iter().filter(|c| c.object == *object) {
            if let Some(r) = k.records.get(&(c.object.clone(), c.id.clone())) {
                keys.push(r.record_key.clone());
            }
        }
        keys.sort();
        keys.dedup();
        let rows = store.fields(which, object, &keys).await?;
        k.add_fields(object, rows);
    }
    Ok(k)
}

/// Decides, writes back external ids, accepts the messages, then commits the state: the shell
/// around [`sync::decide`] both CRMs share.
pub(crate) async fn commit(
    state: &AppState,
    crm: &CrmLoop,
    which: Crm,
    changes: &[Change],
    watermarks: Vec<(String, i64, i64)>,
    write_back: impl AsyncFnOnce(&[WriteBack]) -> Result<(), SyncError>,
) -> Result<Report, SyncError> {
    let known = known(crm, which, changes).await?;
    let plan = state.plan.current();
    let decision = sync::decide(which, changes, &known, &crm.mappings, &plan.plan);
    if !decision.write_backs.is_empty() {
        write_back(&decision.write_backs).await?;
    }
    let messages = super::accept(state, which, &decision.messages).await?;
    let mut writes: Writes = decision.writes;
    writes.watermarks = watermarks;
    crm.store
        .apply(which, &writes, state.clock.now_ms())
        .await?;
    Ok(Report {
        crm: which.as_str(),
        records: changes.len(),
        changes: decision.changed_fields,
        messages,
        write_backs: decision.write_backs.len(),
        calls: 0,
        notes: decision.notes,
    })
}

/// One Salesforce poll.
pub async fn poll(state: &AppState, crm: &CrmLoop, reader: &Reader) -> Result<Report, SyncError> {
    let calls_before = reader.calls();
    let now = state.clock.now_ms();
    let mut changes = Vec::new();
    let mut deletions = Vec::new();
    let mut watermarks = Vec::new();
    for object in OBJECTS {
        let Some(map) = crm.mappings.object(Crm::Salesforce, object) else {
            continue;
        };
        let inbound: Vec<&FieldMap> = map.inbound().collect();
        let (since, deleted_since) = crm
            .store
            .watermark(Crm::Salesforce, object)
            .await?
            .unwrap_or_else(|| {
                let first = now - crm.config.backfill.as_millis() as i64;
                (first, first)
            });
        let (mut found, newest, _) = reader
            .changed(object, &inbound, since, crm.config.max_pages)
            .await?;
        changes.append(&mut found);
        let (mut gone, covered) = reader.deleted(object, deleted_since, now).await?;
        deletions.append(&mut gone);
        watermarks.push((object.to_owned(), newest, covered));
    }
    changes.append(&mut deletions);
    let mut report = commit(
        state,
        crm,
        Crm::Salesforce,
        &changes,
        watermarks,
        async |wbs| reader.write_back(wbs).await,
    )
    .await?;
    report.calls = reader.calls() - calls_before;
    super::account_for(crm, Crm::Salesforce, &report);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poll_query_reads_mapped_fields_and_relationships_since_the_watermark() {
        let m = mapping::Mappings::bundled();
        let lead: Vec<&FieldMap> = m
            .object(Crm::Salesforce, "Lead")
            .unwrap()
            .inbound()
            .collect();
        let q = soql("Lead", &lead, 1_777_629_600_000);
        assert!(
            q.starts_with("SELECT Id, SystemModstamp, Email, Touchpoint_User_Id__c, IsConverted")
        );
        assert!(q.contains("Owner.Email"));
        assert!(q.contains("Status"));
        assert!(q.ends_with(
            "FROM Lead WHERE SystemModstamp >= 2026-05-01T10:00:00.000Z ORDER BY SystemModstamp ASC, Id ASC"
        ));
    }

    #[test]
    fn a_converted_lead_names_its_contact_and_account() {
        let m = mapping::Mappings::bundled();
        let lead: Vec<&FieldMap> = m
            .object(Crm::Salesforce, "Lead")
            .unwrap()
            .inbound()
            .collect();
        let rec: Map<String, Value> = serde_json::from_value(json!({
            "attributes": {"type": "Lead"}, "Id": "00Q1", "SystemModstamp": "2026-05-01T10:00:00.000+0000",
            "Email": "ada@example.com", "Touchpoint_User_Id__c": "u-1", "IsConverted": true,
            "ConvertedContactId": "003C", "ConvertedAccountId": "001A", "ConvertedAccount": null,
            "Status": "Closed - Converted", "Owner": {"attributes": {"type": "User"}, "Email": "rep@x.io"},
        }))
        .unwrap();
        let c = change("Lead", &rec, &lead).unwrap();
        assert_eq!(c.user_id.as_deref(), Some("u-1"));
        assert_eq!(c.modified_at, 1_777_629_600_000);
        assert_eq!(c.converted_contact.as_deref(), Some("003C"));
        assert_eq!(
            c.account,
            Some(AccountLink {
                group_id: "salesforce-001A".into(),
                crm_id: "001A".into()
            })
        );
        assert_eq!(c.values["Owner.Email"], "rep@x.io");
        assert_eq!(c.values["Title"], Value::Null);
    }
}
