//! Reading HubSpot: the CRM search API on the last-modified date since each object's watermark
//! (`limit` 200, `after` paging; HubSpot stops a search at 10,000 results, so a poll stops there
//! and the next one continues from the newest date read), batch reads for webhook events, v4
//! association reads (contact → company, deal → company), and owners resolved to their email.
//! Records are normalised into [`Change`]s (pure: [`search_body`], [`change`]).

use super::mapping::{self, Crm, FieldMap, FieldType};
use super::salesforce::commit;
use super::sync::{self, AccountLink, Change, WriteBack};
use super::{CrmLoop, Report, SyncError};
use crate::destinations::Method;
use crate::destinations::hubspot::config::HubSpotConfig;
use crate::destinations::hubspot::service::Service;
use crate::state::AppState;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The objects polled, in the order their changes are decided.
pub const OBJECTS: [&str; 3] = ["contacts", "companies", "deals"];
/// Results per search page (HubSpot's maximum).
pub const PAGE: usize = 200;
/// Results one search can page through.
pub const SEARCH_CAP: usize = 10_000;
/// Ids per association batch read (HubSpot's limit since February 2025).
pub const ASSOCIATIONS_PER_READ: usize = 1_000;

/// The last-modified property of an object (contacts have their own).
pub fn modified_property(object: &str) -> &'static str {
    if object == "contacts" {
        "lastmodifieddate"
    } else {
        "hs_lastmodifieddate"
    }
}

/// Properties every read of an object asks for besides the mapped ones.
pub fn base_properties(object: &str) -> Vec<&'static str> {
    match object {
        "contacts" => vec!["email", "touchpoint_user_id", "lastmodifieddate"],
        "companies" => vec!["touchpoint_account_id", "hs_lastmodifieddate"],
        _ => vec!["hs_lastmodifieddate"],
    }
}

fn properties(object: &str, inbound: &[&FieldMap]) -> Vec<String> {
    let mut p: Vec<String> = base_properties(object)
        .into_iter()
        .map(str::to_owned)
        .collect();
    for f in inbound {
        if !p.contains(&f.field) {
            p.push(f.field.clone());
        }
    }
    p
}

/// The search request for what changed in `object` since `since`.
pub fn search_body(object: &str, inbound: &[&FieldMap], since: i64, after: Option<&str>) -> Value {
    let modified = modified_property(object);
    let mut body = json!({
        "filterGroups": [{"filters": [{"propertyName": modified, "operator": "GTE", "value": since.to_string()}]}],
        "sorts": [{"propertyName": modified, "direction": "ASCENDING"}],
        "properties": properties(object, inbound),
        "limit": PAGE,
    });
    if let Some(a) = after {
        body["after"] = json!(a);
    }
    body
}

fn text(props: &Map<String, Value>, name: &str) -> Option<String> {
    props
        .get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A search or batch-read result as a [`Change`] (its account is filled in later).
pub fn change(object: &str, result: &Value, inbound: &[&FieldMap]) -> Option<Change> {
    let id = match &result["id"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let props = result["properties"].as_object()?;
    let modified_at = text(props, modified_property(object))
        .or_else(|| result["updatedAt"].as_str().map(str::to_owned))
        .and_then(|t| mapping::parse_datetime(&t))?;
    let mut values = Map::new();
    for f in inbound {
        values.insert(
            f.field.clone(),
            props.get(&f.field).cloned().unwrap_or(Value::Null),
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
        "contacts" => {
            c.email = text(props, "email");
            c.key = c
                .email
                .as_deref()
                .and_then(crate::identity::normalise_email);
            c.user_id = text(props, "touchpoint_user_id");
        }
        "companies" => c.key = text(props, "touchpoint_account_id"),
        _ => {}
    }
    Some(c)
}

/// Reads HubSpot for the inbound sync (its own token and rate limit).
pub struct Reader {
    service: Service,
    calls: AtomicU64,
    owners: Mutex<HashMap<String, Option<String>>>,
}

impl Reader {
    /// A reader for the HubSpot destination's settings.
    pub fn new(config: HubSpotConfig, client: reqwest::Client) -> Reader {
        Reader {
            service: Service::new(config, client),
            calls: AtomicU64::new(0),
            owners: Mutex::new(HashMap::new()),
        }
    }

    /// API calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// One API call; an error answer becomes [`SyncError::Crm`] with HubSpot's message. A 207
    /// (some inputs not found) is an answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), SyncError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let answer = self
            .service
            .call(method, path, body)
            .await
            .map_err(|e| SyncError::Crm(format!("HubSpot {path}: {e}")))?;
        let json = answer.json();
        if !(200..300).contains(&answer.status) && answer.status != 404 {
            let category = json["category"].as_str().unwrap_or("");
            let message = json["message"].as_str().unwrap_or(&answer.body);
            return Err(SyncError::Crm(format!(
                "HubSpot answered HTTP {}: {category} {message}",
                answer.status
            )));
        }
        Ok((answer.status, json))
    }

    /// Records of `object` changed since `since`, at most `max_pages` pages (and never past the
    /// search cap); also the newest modification time read and how many records were read.
    pub async fn changed(
        &self,
        object: &str,
        inbound: &[&FieldMap],
        since: i64,
        max_pages: usize,
    ) -> Result<(Vec<Change>, i64), SyncError> {
        let path = format!("/crm/v3/objects/{object}/search");
        let mut out = Vec::new();
        let mut newest = since;
        let mut after: Option<String> = None;
        for _ in 0..max_pages {
            let body = search_body(object, inbound, since, after.as_deref());
            let (_, page) = self.call(Method::Post, &path, Some(&body)).await?;
            for r in page["results"].as_array().into_iter().flatten() {
                if let Some(c) = change(object, r, inbound) {
                    newest = newest.max(c.modified_at);
                    out.push(c);
                }
            }
            match page["paging"]["next"]["after"].as_str() {
                Some(next) if next.parse::<usize>().is_ok_and(|n| n < SEARCH_CAP) => {
                    after = Some(next.to_owned());
                }
                _ => break,
            }
        }
        Ok((out, newest))
    }

    /// Records by id (batch read, ≤ 100 a call); ids HubSpot no longer has are left out.
    pub async fn read(
        &self,
        object: &str,
        ids: &[String],
        inbound: &[&FieldMap],
    ) -> Result<Vec<Change>, SyncError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(100) {
            let body = json!({
                "properties": properties(object, inbound),
                "inputs": chunk.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
            });
            let (_, answer) = self
                .call(
                    Method::Post,
                    &format!("/crm/v3/objects/{object}/batch/read"),
                    Some(&body),
                )
                .await?;
            for r in answer["results"].as_array().into_iter().flatten() {
                if let Some(c) = change(object, r, inbound) {
                    out.push(c);
                }
            }
        }
        Ok(out)
    }

    /// The first company each record is associated with (v4 batch read, ≤ 1,000 ids a call).
    pub async fn companies_of(
        &self,
        object: &str,
        ids: &[String],
    ) -> Result<HashMap<String, String>, SyncError> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(ASSOCIATIONS_PER_READ) {
            let body =
                json!({"inputs": chunk.iter().map(|id| json!({"id": id})).collect::<Vec<_>>()});
            let (_, answer) = self
                .call(
                    Method::Post,
                    &format!("/crm/v4/associations/{object}/companies/batch/read"),
                    Some(&body),
                )
                .await?;
            for r in answer["results"].as_array().into_iter().flatten() {
                let from = match &r["from"]["id"] {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => continue,
                };
                let to = r["to"].as_array().and_then(|t| {
                    t.iter()
                        .filter_map(|x| match &x["toObjectId"] {
                            Value::Number(n) => Some(n.to_string()),
                            Value::String(s) => Some(s.clone()),
                            _ => None,
                        })
                        .min_by_key(|id| id.parse::<u64>().unwrap_or(u64::MAX))
                });
                if let Some(to) = to {
                    out.insert(from, to);
                }
            }
        }
        Ok(out)
    }

    /// An owner's email (cached for the process's life).
    pub async fn owner_email(&self, id: &str) -> Result<Option<String>, SyncError> {
        if let Some(e) = self
            .owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            return Ok(e.clone());
        }
        let (status, body) = self
            .call(
                Method::Get,
                &format!("/crm/v3/owners/{}", segment(id)),
                None,
            )
            .await?;
        let email = (status == 200)
            .then(|| body["email"].as_str().map(str::to_owned))
            .flatten();
        self.owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned(), email.clone());
        Ok(email)
    }

    /// Writes external ids (batch update by id, ≤ 100 a call).
    pub async fn write_back(&self, wbs: &[WriteBack]) -> Result<(), SyncError> {
        let mut by_object: BTreeMap<&str, Vec<&WriteBack>> = BTreeMap::new();
        for w in wbs {
            by_object.entry(w.object.as_str()).or_default().push(w);
        }
        for (object, list) in by_object {
            for chunk in list.chunks(100) {
                let body = json!({"inputs": chunk.iter().map(|w| json!({
                    "id": w.id, "properties": {w.field.clone(): w.value}})).collect::<Vec<_>>()});
                self.call(
                    Method::Post,
                    &format!("/crm/v3/objects/{object}/batch/update"),
                    Some(&body),
                )
                .await?;
            }
        }
        Ok(())
    }
}

fn segment(s: &str) -> String {
    crate::destinations::salesforce::encoder::segment(s)
}

/// Resolves owner ids to emails and fills in each person's and deal's company.
pub(crate) async fn enrich(
    crm: &CrmLoop,
    reader: &Reader,
    changes: &mut [Change],
) -> Result<(), SyncError> {
    // Owners.
    for c in changes.iter_mut() {
        let Some(map) = crm.mappings.object(Crm::HubSpot, &c.object) else {
            continue;
        };
        for f in map.inbound().filter(|f| f.ty == FieldType::Owner) {
            if let Some(id) = c
                .values
                .get(&f.field)
                .and_then(Value::as_str)
                .map(str::to_owned)
                && !id.is_empty()
            {
                let email = reader.owner_email(&id).await?;
                c.values.insert(
                    f.field.clone(),
                    email.map(Value::String).unwrap_or(Value::Null),
                );
            }
        }
    }
    // Companies of contacts and deals.
    let mut company_of: HashMap<(String, String), String> = HashMap::new();
    for object in ["contacts", "deals"] {
        let ids: Vec<String> = changes
            .iter()
            .filter(|c| c.object == object && !c.deleted)
            .map(|c| c.id.clone())
            .collect();
        if ids.is_empty() {
            continue;
        }
        for (from, to) in reader.companies_of(object, &ids).await? {
            company_of.insert((object.to_owned(), from), to);
        }
    }
    // Each company's groupId: this step's changes, then the store, then HubSpot.
    let mut group: HashMap<String, String> = changes
        .iter()
        .filter(|c| c.object == "companies" && !c.deleted)
        .map(|c| {
            (
                c.id.clone(),
                c.key
                    .clone()
                    .unwrap_or_else(|| sync::synthetic_group(Crm::HubSpot, &c.id)),
            )
        })
        .collect();
    let wanted: Vec<String> = company_of
        .values()
        .filter(|id| !group.contains_key(*id))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !wanted.is_empty() {
        for r in crm
            .store
            .records(Crm::HubSpot, "companies", &wanted)
            .await?
        {
            if let Some(g) = r.group_id {
                group.insert(r.record_id, g);
            }
        }
        let still: Vec<String> = wanted
            .into_iter()
            .filter(|id| !group.contains_key(id))
            .collect();
        if !still.is_empty() {
            for c in reader.read("companies", &still, &[]).await? {
                let g = c
                    .key
                    .clone()
                    .unwrap_or_else(|| sync::synthetic_group(Crm::HubSpot, &c.id));
                group.insert(c.id, g);
            }
        }
    }
    for c in changes.iter_mut() {
        if let Some(company) = company_of.get(&(c.object.clone(), c.id.clone()))
            && let Some(g) = group.get(company)
        {
            c.account = Some(AccountLink {
                group_id: g.clone(),
                crm_id: company.clone(),
            });
        }
    }
    Ok(())
}

/// One HubSpot poll.
pub async fn poll(state: &AppState, crm: &CrmLoop, reader: &Reader) -> Result<Report, SyncError> {
    let calls_before = reader.calls();
    let now = state.clock.now_ms();
    let mut changes = Vec::new();
    let mut watermarks = Vec::new();
    for object in OBJECTS {
        let Some(map) = crm.mappings.object(Crm::HubSpot, object) else {
            continue;
        };
        let inbound: Vec<&FieldMap> = map.inbound().collect();
        let (since, deleted) = crm
            .store
            .watermark(Crm::HubSpot, object)
            .await?
            .unwrap_or_else(|| {
                let first = now - crm.config.backfill.as_millis() as i64;
                (first, first)
            });
        let (mut found, newest) = reader
            .changed(object, &inbound, since, crm.config.max_pages)
            .await?;
        changes.append(&mut found);
        watermarks.push((object.to_owned(), newest, deleted));
    }
    let report = apply(state, crm, reader, changes, watermarks).await?;
    let mut report = report;
    report.calls = reader.calls() - calls_before;
    super::account_for(crm, Crm::HubSpot, &report);
    Ok(report)
}

/// Enriches, decides and commits HubSpot changes (a poll's or a webhook delivery's).
pub(crate) async fn apply(
    state: &AppState,
    crm: &CrmLoop,
    reader: &Reader,
    mut changes: Vec<Change>,
    watermarks: Vec<(String, i64, i64)>,
) -> Result<Report, SyncError> {
    enrich(crm, reader, &mut changes).await?;
    // People, then accounts, then deals, whatever order they were read in.
    changes.sort_by_key(|c| {
        (
            OBJECTS.iter().position(|o| *o == c.object).unwrap_or(9),
            c.deleted,
            c.modified_at,
        )
    });
    commit(
        state,
        crm,
        Crm::HubSpot,
        &changes,
        watermarks,
        async |wbs| reader.write_back(wbs).await,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_filters_and_sorts_on_the_object_s_last_modified_date() {
        let m = mapping::Mappings::bundled();
        let deals: Vec<&FieldMap> = m.object(Crm::HubSpot, "deals").unwrap().inbound().collect();
        let b = search_body("deals", &deals, 1_700_000_000_000, Some("200"));
        assert_eq!(
            b["filterGroups"][0]["filters"][0]["propertyName"],
            "hs_lastmodifieddate"
        );
        assert_eq!(b["filterGroups"][0]["filters"][0]["operator"], "GTE");
        assert_eq!(b["filterGroups"][0]["filters"][0]["value"], "1700000000000");
        assert_eq!(b["sorts"][0]["direction"], "ASCENDING");
        assert_eq!(b["limit"], 200);
        assert_eq!(b["after"], "200");
        assert!(
            b["properties"]
                .as_array()
                .unwrap()
                .contains(&json!("dealstage"))
        );
        let contacts = search_body("contacts", &[], 0, None);
        assert_eq!(
            contacts["filterGroups"][0]["filters"][0]["propertyName"],
            "lastmodifieddate"
        );
        assert!(contacts.get("after").is_none());
    }

    #[test]
    fn a_contact_is_keyed_by_its_email_and_carries_its_user_id() {
        let r = json!({"id": "1001", "properties": {"email": "Ada@Example.com", "touchpoint_user_id": "u-1",
            "lastmodifieddate": "2026-05-01T10:00:00.000Z", "lifecyclestage": "lead"},
            "createdAt": "2026-05-01T09:00:00.000Z", "updatedAt": "2026-05-01T10:00:00.000Z", "archived": false});
        let c = change("contacts", &r, &[]).unwrap();
        assert_eq!(c.key.as_deref(), Some("ada@example.com"));
        assert_eq!(c.user_id.as_deref(), Some("u-1"));
        assert_eq!(c.modified_at, 1_777_629_600_000);
    }
}
