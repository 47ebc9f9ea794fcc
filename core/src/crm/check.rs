//! `touchpoint crm check`: the mappings against the CRMs' own metadata — Salesforce describe
//! (`/sobjects/{object}/describe`: missing and custom fields, types, read-only fields, external
//! ids, picklist values against the plan's enums) and HubSpot's properties API
//! (`/crm/v3/properties/{object}`) — printing what to fix, in Salesforce/HubSpot or in the file.
//! The comparisons are pure ([`salesforce`], [`hubspot`]); [`run`] fetches and prints.

use super::mapping::{Crm, FieldMap, FieldType, Mappings, ObjectMap};
use crate::destinations::Method;
use serde_json::Value;
use std::fmt::Write;
use touchpoint_tracking_plan::{PropertyType, TrackingPlan};

/// One thing to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `salesforce Lead.Status`.
    pub what: String,
    /// Line of the mapping row (0: not from a row).
    pub line: usize,
    /// What is wrong and what to do.
    pub message: String,
}

/// A field as the CRM describes it.
#[derive(Debug, Clone)]
struct Described {
    ty: String,
    updateable: bool,
    external_id: bool,
    unique: bool,
    relationship: Option<String>,
    values: Vec<String>,
}

fn finding(crm: Crm, object: &str, field: &str, line: usize, message: String) -> Finding {
    Finding {
        what: format!("{crm} {object}.{field}"),
        line,
        message,
    }
}

/// The enum values of a trait in the plan, if it is an enum.
fn enum_values<'a>(plan: &'a TrackingPlan, f: &FieldMap) -> Option<&'a [String]> {
    plan.trait_spec(&f.trait_name)
        .filter(|s| s.ty == PropertyType::Enum)
        .map(|s| s.constraints.values.as_slice())
}

fn ours_of<'a>(f: &'a FieldMap, crm_value: &'a str) -> &'a str {
    f.values
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(crm_value))
        .map_or(crm_value, |(_, o)| o.as_str())
}

fn theirs_of<'a>(f: &'a FieldMap, ours: &'a str) -> &'a str {
    f.values
        .iter()
        .find(|(_, o)| o.eq_ignore_ascii_case(ours))
        .map_or(ours, |(c, _)| c.as_str())
}

#[allow(clippy::too_many_arguments)]
fn compare(
    crm: Crm,
    map: &ObjectMap,
    f: &FieldMap,
    d: &Described,
    declared: Option<FieldType>,
    plan: &TrackingPlan,
    out: &mut Vec<Finding>,
) {
    let object = &map.object;
    match declared {
        Some(t) if !f.ty.compatible(t) => out.push(finding(
            crm,
            object,
            &f.field,
            f.line,
            format!(
                "is a {} field in {crm}, the mapping says `{}`: fix the Type column",
                d.ty,
                f.ty.as_str()
            ),
        )),
        None if f.ty != FieldType::Owner => out.push(finding(
            crm,
            object,
            &f.field,
            f.line,
            format!(
                "has type {} in {crm}, which Touchpoint does not convert",
                d.ty
            ),
        )),
        _ => {}
    }
    if f.direction.outbound() && !d.updateable {
        out.push(finding(
            crm,
            object,
            &f.field,
            f.line,
            format!("is read-only in {crm}: set the direction to `in`"),
        ));
    }
    if d.values.is_empty() {
        return;
    }
    let Some(plan_values) = enum_values(plan, f) else {
        return;
    };
    if f.direction.inbound() {
        for v in &d.values {
            let ours = ours_of(f, v);
            if !plan_values.iter().any(|p| p == ours) {
                out.push(finding(
                    crm,
                    object,
                    &f.field,
                    f.line,
                    format!(
                        "has the value {v:?}, which matches none of {}'s values ({}): add `{v}` = `…` to the Values column, or the value to TRACKING_PLAN.md",
                        f.trait_name,
                        plan_values.join(", ")
                    ),
                ));
            }
        }
    }
    if f.direction.outbound() {
        for p in plan_values {
            let theirs = theirs_of(f, p);
            if !d.values.iter().any(|v| v == theirs) {
                out.push(finding(
                    crm,
                    object,
                    &f.field,
                    f.line,
                    format!(
                        "lacks the value {theirs:?} that {} {p:?} is written as: add it in {crm}, or map it in the Values column",
                        f.trait_name
                    ),
                ));
            }
        }
    }
}

/// The key fields Touchpoint writes on an object whatever the mappings say.
fn key_fields(crm: Crm, object: &str) -> &'static [&'static str] {
    match (crm, object) {
        (Crm::Salesforce, "Lead" | "Contact") => &["Touchpoint_User_Id__c"],
        (Crm::Salesforce, "Account") => &["Touchpoint_Account_Id__c"],
        (Crm::HubSpot, "contacts") => &["touchpoint_user_id"],
        (Crm::HubSpot, "companies") => &["touchpoint_account_id"],
        _ => &[],
    }
}

/// Compares one Salesforce object's mapping with its describe answer.
pub fn salesforce(map: &ObjectMap, describe: &Value, plan: &TrackingPlan) -> Vec<Finding> {
    let crm = Crm::Salesforce;
    let fields: Vec<(String, Described)> = describe["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| {
            Some((
                f["name"].as_str()?.to_owned(),
                Described {
                    ty: f["type"].as_str().unwrap_or("").to_owned(),
                    updateable: f["updateable"].as_bool().unwrap_or(false),
                    external_id: f["externalId"].as_bool().unwrap_or(false),
                    unique: f["unique"].as_bool().unwrap_or(false),
                    relationship: f["relationshipName"].as_str().map(str::to_owned),
                    values: f["picklistValues"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|v| v["active"].as_bool().unwrap_or(true))
                        .filter_map(|v| v["value"].as_str().map(str::to_owned))
                        .collect(),
                },
            ))
        })
        .collect();
    let get = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, d)| d);
    let mut out = Vec::new();
    for key in key_fields(crm, &map.object) {
        match get(key) {
            None => out.push(finding(
                crm,
                &map.object,
                key,
                map.line,
                "is missing: create it as a Text(255) field marked External ID and Unique".into(),
            )),
            Some(d) if !d.external_id => out.push(finding(
                crm,
                &map.object,
                key,
                map.line,
                "is not an External ID: tick External ID (and Unique) on the field".into(),
            )),
            Some(_) => {}
        }
    }
    for f in &map.fields {
        if let Some((rel, _)) = f.field.split_once('.') {
            if !fields
                .iter()
                .any(|(_, d)| d.relationship.as_deref() == Some(rel))
            {
                out.push(finding(
                    crm,
                    &map.object,
                    &f.field,
                    f.line,
                    format!(
                        "names a relationship {} does not have ({rel}): fix the Field column",
                        map.object
                    ),
                ));
            }
            continue;
        }
        match get(&f.field) {
            None => {
                let hint = if f.field.ends_with("__c") {
                    format!(
                        "create the custom field ({}) on {}, or fix the Field column",
                        f.ty.as_str(),
                        map.object
                    )
                } else {
                    "fix the Field column (standard field names are case-sensitive)".into()
                };
                out.push(finding(
                    crm,
                    &map.object,
                    &f.field,
                    f.line,
                    format!("does not exist: {hint}"),
                ));
            }
            Some(d) => {
                let declared = FieldType::of_salesforce(&d.ty);
                compare(crm, map, f, d, declared, plan, &mut out);
            }
        }
    }
    out
}

/// Compares one HubSpot object's mapping with its properties.
pub fn hubspot(map: &ObjectMap, properties: &Value, plan: &TrackingPlan) -> Vec<Finding> {
    let crm = Crm::HubSpot;
    let props: Vec<(String, Described)> = properties["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                p["name"].as_str()?.to_owned(),
                Described {
                    ty: p["type"].as_str().unwrap_or("").to_owned(),
                    updateable: !p["modificationMetadata"]["readOnlyValue"]
                        .as_bool()
                        .unwrap_or(false),
                    external_id: false,
                    unique: p["hasUniqueValue"].as_bool().unwrap_or(false),
                    relationship: None,
                    values: p["options"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|o| !o["hidden"].as_bool().unwrap_or(false))
                        .filter_map(|o| o["value"].as_str().map(str::to_owned))
                        .collect(),
                },
            ))
        })
        .collect();
    let get = |name: &str| props.iter().find(|(n, _)| n == name).map(|(_, d)| d);
    let mut out = Vec::new();
    for key in key_fields(crm, &map.object) {
        match get(key) {
            None => out.push(finding(
                crm,
                &map.object,
                key,
                map.line,
                format!(
                    "is missing: create it as a single-line text property{}",
                    if map.object == "companies" {
                        " with unique values"
                    } else {
                        ""
                    }
                ),
            )),
            Some(d) if map.object == "companies" && !d.unique => out.push(finding(
                crm,
                &map.object,
                key,
                map.line,
                "must have unique values to upsert companies by it: recreate it with \"Require unique values\"".into(),
            )),
            Some(_) => {}
        }
    }
    for f in &map.fields {
        match get(&f.field) {
            None => out.push(finding(
                crm,
                &map.object,
                &f.field,
                f.line,
                format!(
                    "does not exist: create the property ({}) in HubSpot, or fix the Field column",
                    f.ty.as_str()
                ),
            )),
            Some(d) => {
                let mut d = d.clone();
                if f.ty == FieldType::Owner {
                    // Owner options are owner ids, not values to compare.
                    d.values.clear();
                }
                let declared = FieldType::of_hubspot(&d.ty);
                compare(crm, map, f, &d, declared, plan, &mut out);
            }
        }
    }
    out
}

/// Fetches the metadata of every mapped object of the configured CRMs and reports what to fix;
/// returns the report and whether there was nothing to fix.
pub async fn run(
    config: &crate::config::Config,
    mappings: &Mappings,
    file: &str,
    plan: &TrackingPlan,
) -> anyhow::Result<(String, bool)> {
    let client = crate::destinations::http::client()?;
    let mut findings = Vec::new();
    let mut report = String::new();
    let mut checked = 0;
    if let Some(c) = config.destinations.salesforce.clone() {
        let reader = super::salesforce::Reader::new(c, client.clone());
        for map in mappings.of(Crm::Salesforce) {
            let path = format!("{}/sobjects/{}/describe", reader.base(), map.object);
            let describe = reader
                .call(Method::Get, &path, None)
                .await
                .map_err(|e| anyhow::anyhow!("describing {}: {e}", map.object))?;
            findings.extend(salesforce(map, &describe, plan));
            checked += 1;
        }
    }
    if let Some(c) = config.destinations.hubspot.clone() {
        let reader = super::hubspot::Reader::new(c, client);
        for map in mappings.of(Crm::HubSpot) {
            let (status, props) = reader
                .call(
                    Method::Get,
                    &format!("/crm/v3/properties/{}", map.object),
                    None,
                )
                .await
                .map_err(|e| anyhow::anyhow!("reading {} properties: {e}", map.object))?;
            if status == 404 {
                anyhow::bail!("HubSpot does not know the object {}", map.object);
            }
            findings.extend(hubspot(map, &props, plan));
            checked += 1;
        }
    }
    if checked == 0 {
        anyhow::bail!(
            "no CRM is configured: set TOUCHPOINT_SALESFORCE_* and/or TOUCHPOINT_HUBSPOT_* (see README)"
        );
    }
    for f in &findings {
        let _ = writeln!(report, "{file}:{}: {} {}", f.line, f.what, f.message);
    }
    let _ = writeln!(
        report,
        "{checked} object(s) checked: {} thing(s) to fix{}",
        findings.len(),
        if findings.is_empty() {
            ""
        } else {
            " — check failed"
        }
    );
    Ok((report, findings.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan() -> TrackingPlan {
        touchpoint_tracking_plan::parse(include_str!("../../../TRACKING_PLAN.md")).unwrap()
    }

    fn field(name: &str, ty: &str) -> Value {
        json!({"name": name, "type": ty, "updateable": true, "externalId": false, "picklistValues": []})
    }

    #[test]
    fn describe_differences_become_instructions() {
        let m = Mappings::bundled();
        let lead = m.object(Crm::Salesforce, "Lead").unwrap();
        let mut status = field("Status", "picklist");
        status["picklistValues"] = json!([
            {"active": true, "value": "Open - Not Contacted"},
            {"active": true, "value": "Working - Contacted"},
            {"active": true, "value": "Recycled"},
            {"active": false, "value": "Old"},
        ]);
        let describe = json!({"fields": [
            field("Id", "id"), field("FirstName", "string"), field("LastName", "string"),
            field("Company", "string"), {"name": "Title", "type": "string", "updateable": false},
            status,
            {"name": "OwnerId", "type": "reference", "relationshipName": "Owner"},
        ]});
        let f = salesforce(lead, &describe, &plan());
        let text: Vec<String> = f
            .iter()
            .map(|f| format!("{} {}", f.what, f.message))
            .collect();
        assert!(
            text.iter()
                .any(|t| t.starts_with("salesforce Lead.Touchpoint_User_Id__c is missing")),
            "{text:#?}"
        );
        assert!(
            text.iter().any(|t| t.contains("Lead.Title is read-only")),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("Lead.Status has the value \"Recycled\", which matches none")),
            "{text:#?}"
        );
        assert!(
            !text.iter().any(|t| t.contains("Old")),
            "inactive values are ignored"
        );
        assert!(!text.iter().any(|t| t.contains("Owner.Email")), "{text:#?}");
        let line = f
            .iter()
            .find(|f| f.message.contains("Recycled"))
            .unwrap()
            .line;
        assert_eq!(line, lead.field("Status").unwrap().line);
    }

    #[test]
    fn a_plan_enum_value_the_picklist_lacks_is_reported_for_outbound_fields() {
        let m = Mappings::bundled();
        let companies = m.object(Crm::HubSpot, "companies").unwrap();
        let prop = |name: &str, ty: &str, options: &[&str]| {
            json!({"name": name, "type": ty, "hasUniqueValue": name == "touchpoint_account_id",
                   "modificationMetadata": {"readOnlyValue": false},
                   "options": options.iter().map(|o| json!({"value": o, "hidden": false})).collect::<Vec<_>>()})
        };
        let props = json!({"results": [
            prop("name", "string", &[]), prop("domain", "string", &[]),
            prop("numberofemployees", "number", &[]), prop("annualrevenue", "number", &[]),
            prop("seats_provisioned", "string", &[]),
            prop("plan_tier", "enumeration", &["free", "pro", "business"]),
            prop("touchpoint_account_id", "string", &[]),
        ]});
        let f = hubspot(companies, &props, &plan());
        assert_eq!(f.len(), 2, "{f:#?}");
        assert!(
            f[0].message.contains("is a string field in hubspot"),
            "{f:#?}"
        );
        assert!(
            f[1].message.starts_with("lacks the value \"enterprise\""),
            "{f:#?}"
        );
    }
}
