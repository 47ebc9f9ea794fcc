//! `CRM_MAPPINGS.md`: which profile and account traits map to which Salesforce and HubSpot fields,
//! in which direction, with which conversion — kept in git beside the tracking plan, parsed and
//! validated here (pure, with line numbers), and used by the outbound encoders and the inbound
//! sync alike.
//!
//! ```markdown
//! ## Settings
//! - Salesforce person object: `lead_until_account`
//!
//! ## Salesforce Lead
//! | Field | Trait | Direction | Type | Values |
//! |-------|-------|-----------|------|--------|
//! | `Status` | `lead_status` | in | picklist | `Working - Contacted` = `Working` |
//! ```
//!
//! A trait is a profile trait (person objects: Lead, Contact, HubSpot contacts) or `account.name`,
//! an account trait (Account, Opportunity, HubSpot companies and deals). Conversion goes through
//! the text form: CRM value → value map → the trait's type in the plan (integer, number, boolean,
//! timestamp, string, enum); outbound the other way round, into the field's CRM type.

use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::fmt;
use touchpoint_tracking_plan::{PropertyType, TrackingPlan};

/// The repository's mappings, used when no file is configured (tests, the CLI without a file).
pub const BUNDLED: &str = include_str!("../../../CRM_MAPPINGS.md");

/// A CRM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Crm {
    /// Salesforce (REST API).
    Salesforce,
    /// HubSpot (CRM v3 API).
    HubSpot,
}

impl Crm {
    /// Lower-case name: the destination, source and identity-kind prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            Crm::Salesforce => "salesforce",
            Crm::HubSpot => "hubspot",
        }
    }

    fn parse(s: &str) -> Option<Crm> {
        match s.to_ascii_lowercase().as_str() {
            "salesforce" => Some(Crm::Salesforce),
            "hubspot" => Some(Crm::HubSpot),
            _ => None,
        }
    }
}

impl fmt::Display for Crm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a CRM object is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A person: Lead, Contact, HubSpot contacts (profile traits).
    Person,
    /// An account: Account, HubSpot companies (account traits).
    Account,
    /// A record that hangs off an account and only flows in: Opportunity, HubSpot deals.
    AccountChild,
}

/// The objects Touchpoint syncs, per CRM, with their kind.
pub const OBJECTS: [(Crm, &str, ObjectKind); 7] = [
    (Crm::Salesforce, "Lead", ObjectKind::Person),
    (Crm::Salesforce, "Contact", ObjectKind::Person),
    (Crm::Salesforce, "Account", ObjectKind::Account),
    (Crm::Salesforce, "Opportunity", ObjectKind::AccountChild),
    (Crm::HubSpot, "contacts", ObjectKind::Person),
    (Crm::HubSpot, "companies", ObjectKind::Account),
    (Crm::HubSpot, "deals", ObjectKind::AccountChild),
];

/// The kind of a known object.
pub fn kind_of(crm: Crm, object: &str) -> Option<ObjectKind> {
    OBJECTS
        .iter()
        .find(|(c, o, _)| *c == crm && *o == object)
        .map(|(_, _, k)| *k)
}

/// Which way a field flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Touchpoint → CRM only.
    Out,
    /// CRM → Touchpoint only.
    In,
    /// Both ways, last modified wins per field.
    Both,
}

impl Direction {
    /// Whether the field is written to the CRM.
    pub fn outbound(self) -> bool {
        matches!(self, Direction::Out | Direction::Both)
    }

    /// Whether the field is read from the CRM.
    pub fn inbound(self) -> bool {
        matches!(self, Direction::In | Direction::Both)
    }

    fn parse(s: &str) -> Option<Direction> {
        match s.to_ascii_lowercase().as_str() {
            "out" => Some(Direction::Out),
            "in" => Some(Direction::In),
            "both" => Some(Direction::Both),
            _ => None,
        }
    }
}

/// A field's type on the CRM side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// Text of any kind (string, textarea, email, phone, url).
    Text,
    /// A picklist / enumeration.
    Picklist,
    /// A checkbox / bool.
    Boolean,
    /// A whole number.
    Integer,
    /// Any number (double, currency, percent).
    Number,
    /// A date without time (`YYYY-MM-DD`).
    Date,
    /// A date-time.
    DateTime,
    /// A record id (reference).
    Id,
    /// A HubSpot owner id, resolved to the owner's email through the owners API.
    Owner,
}

impl FieldType {
    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Picklist => "picklist",
            FieldType::Boolean => "boolean",
            FieldType::Integer => "integer",
            FieldType::Number => "number",
            FieldType::Date => "date",
            FieldType::DateTime => "datetime",
            FieldType::Id => "id",
            FieldType::Owner => "owner",
        }
    }

    fn parse(s: &str) -> Option<FieldType> {
        Some(match s.to_ascii_lowercase().as_str() {
            "text" | "string" => FieldType::Text,
            "picklist" | "enumeration" => FieldType::Picklist,
            "boolean" | "bool" => FieldType::Boolean,
            "integer" | "int" => FieldType::Integer,
            "number" | "double" | "currency" => FieldType::Number,
            "date" => FieldType::Date,
            "datetime" => FieldType::DateTime,
            "id" | "reference" => FieldType::Id,
            "owner" => FieldType::Owner,
            _ => return None,
        })
    }

    /// The type a Salesforce describe `type` corresponds to.
    pub fn of_salesforce(t: &str) -> Option<FieldType> {
        Some(match t {
            "string" | "textarea" | "email" | "phone" | "url" | "encryptedstring" => {
                FieldType::Text
            }
            "picklist" | "multipicklist" | "combobox" => FieldType::Picklist,
            "boolean" => FieldType::Boolean,
            "int" => FieldType::Integer,
            "double" | "currency" | "percent" => FieldType::Number,
            "date" => FieldType::Date,
            "datetime" => FieldType::DateTime,
            "id" | "reference" => FieldType::Id,
            _ => return None,
        })
    }

    /// The type a HubSpot property `type` corresponds to.
    pub fn of_hubspot(t: &str) -> Option<FieldType> {
        Some(match t {
            "string" | "phone_number" => FieldType::Text,
            "enumeration" => FieldType::Picklist,
            "bool" => FieldType::Boolean,
            "number" => FieldType::Number,
            "date" => FieldType::Date,
            "datetime" => FieldType::DateTime,
            _ => return None,
        })
    }

    /// Whether a CRM field of type `crm` can hold what this mapping declares.
    pub fn compatible(self, crm: FieldType) -> bool {
        self == crm
            || matches!(
                (self, crm),
                (FieldType::Integer, FieldType::Number)
                    | (FieldType::Number, FieldType::Integer)
                    | (FieldType::Text, FieldType::Picklist)
                    | (FieldType::Picklist, FieldType::Text)
                    | (FieldType::Owner, FieldType::Picklist)
                    | (FieldType::Owner, FieldType::Text)
                    | (FieldType::Id, FieldType::Text)
            )
    }
}

/// One row: a CRM field and the trait it maps to.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldMap {
    /// CRM field (a Salesforce relationship path such as `Owner.Email` is read-only).
    pub field: String,
    /// Trait name, without `account.`.
    pub trait_name: String,
    /// Whether the trait is an account trait (`account.name`).
    pub account: bool,
    /// Which way it flows.
    pub direction: Direction,
    /// The CRM field's type.
    pub ty: FieldType,
    /// Value map as (CRM value, trait value), compared as text.
    pub values: Vec<(String, String)>,
    /// 1-based line of the row.
    pub line: usize,
}

impl FieldMap {
    /// The trait as written in the file (`lead_status`, `account.industry`).
    pub fn trait_path(&self) -> String {
        if self.account {
            format!("account.{}", self.trait_name)
        } else {
            self.trait_name.clone()
        }
    }
}

/// One `## <CRM> <Object>` section.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectMap {
    /// The CRM.
    pub crm: Crm,
    /// The object's API name (`Lead`, `contacts`).
    pub object: String,
    /// What it is about.
    pub kind: ObjectKind,
    /// Its fields, in file order.
    pub fields: Vec<FieldMap>,
    /// 1-based line of the heading.
    pub line: usize,
}

impl ObjectMap {
    /// Fields that flow in.
    pub fn inbound(&self) -> impl Iterator<Item = &FieldMap> {
        self.fields.iter().filter(|f| f.direction.inbound())
    }

    /// Fields that flow out.
    pub fn outbound(&self) -> impl Iterator<Item = &FieldMap> {
        self.fields.iter().filter(|f| f.direction.outbound())
    }

    /// A field by name.
    pub fn field(&self, name: &str) -> Option<&FieldMap> {
        self.fields.iter().find(|f| f.field == name)
    }
}

/// When the Salesforce destination creates a Lead rather than a Contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonObject {
    /// Every person with a userId is a Contact (linked to their Account when they have one).
    Contact,
    /// A Lead while the person has no account; a Contact once they have one (or once sales
    /// converted their Lead).
    LeadUntilAccount,
    /// Always a Lead until sales converts it.
    Lead,
}

impl PersonObject {
    fn parse(s: &str) -> Option<PersonObject> {
        match s {
            "contact" => Some(PersonObject::Contact),
            "lead_until_account" => Some(PersonObject::LeadUntilAccount),
            "lead" => Some(PersonObject::Lead),
            _ => None,
        }
    }
}

/// The parsed file.
#[derive(Debug, Clone, PartialEq)]
pub struct Mappings {
    /// `Salesforce person object`.
    pub salesforce_person: PersonObject,
    /// Sections, in file order.
    pub objects: Vec<ObjectMap>,
}

impl Default for Mappings {
    fn default() -> Self {
        Mappings::bundled()
    }
}

impl Mappings {
    /// The repository's `CRM_MAPPINGS.md`.
    pub fn bundled() -> Mappings {
        parse(BUNDLED).0
    }

    /// A section.
    pub fn object(&self, crm: Crm, object: &str) -> Option<&ObjectMap> {
        self.objects
            .iter()
            .find(|o| o.crm == crm && o.object == object)
    }

    /// The sections of one CRM.
    pub fn of(&self, crm: Crm) -> impl Iterator<Item = &ObjectMap> {
        self.objects.iter().filter(move |o| o.crm == crm)
    }
}

/// A problem in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// Whether it prevents loading.
    pub error: bool,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn error(line: usize, message: impl Into<String>) -> Problem {
    Problem {
        line,
        error: true,
        message: message.into(),
    }
}

fn warning(line: usize, message: impl Into<String>) -> Problem {
    Problem {
        line,
        error: false,
        message: message.into(),
    }
}

/// Text between the first pair of backticks, else the trimmed cell.
fn unquote(cell: &str) -> String {
    let t = cell.trim();
    match (t.find('`'), t.rfind('`')) {
        (Some(a), Some(b)) if b > a => t[a + 1..b].trim().to_owned(),
        _ => t.to_owned(),
    }
}

/// `` `a` = `b`, `c` = `d` `` → pairs; backticks are required around each value.
fn parse_values(cell: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut quoted = Vec::new();
    let mut rest = cell;
    while let Some(start) = rest.find('`') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('`') else {
            return Err("unclosed backtick".into());
        };
        quoted.push((after[..end].to_owned(), start));
        let between_end = start + 1 + end + 1;
        rest = &rest[between_end..];
    }
    if quoted.len() % 2 != 0 {
        return Err("values are pairs: `CRM value` = `trait value`".into());
    }
    for pair in quoted.chunks(2) {
        out.push((pair[0].0.clone(), pair[1].0.clone()));
    }
    if !cell.trim().is_empty() && out.is_empty() {
        return Err("values are pairs: `CRM value` = `trait value`".into());
    }
    Ok(out)
}

fn is_trait_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn is_field_name(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|part| {
            let mut chars = part.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// Parses the file; what parses is returned with every problem found (line-numbered).
pub fn parse(src: &str) -> (Mappings, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut person: Option<PersonObject> = None;
    let mut objects: Vec<ObjectMap> = Vec::new();
    enum Where {
        Nowhere,
        Settings,
        Object,
        Other,
    }
    let mut at = Where::Nowhere;
    for (i, raw) in src.lines().enumerate() {
        let line = i + 1;
        let text = raw.trim();
        if let Some(heading) = text.strip_prefix("## ") {
            let heading = heading.trim();
            if heading.eq_ignore_ascii_case("settings") {
                at = Where::Settings;
                continue;
            }
            let mut words = heading.split_whitespace();
            let (crm, object) = (words.next(), words.next());
            match (crm.and_then(Crm::parse), object, words.next()) {
                (Some(crm), Some(object), None) => match kind_of(crm, object) {
                    Some(kind) => {
                        if objects.iter().any(|o| o.crm == crm && o.object == object) {
                            problems.push(error(
                                line,
                                format!("{crm} {object} is mapped twice; merge the sections"),
                            ));
                        }
                        objects.push(ObjectMap {
                            crm,
                            object: object.to_owned(),
                            kind,
                            fields: Vec::new(),
                            line,
                        });
                        at = Where::Object;
                    }
                    None => {
                        let known: Vec<&str> = OBJECTS
                            .iter()
                            .filter(|(c, _, _)| *c == crm)
                            .map(|(_, o, _)| *o)
                            .collect();
                        problems.push(error(
                            line,
                            format!(
                                "{crm} object {object:?} is not synced; use one of {}",
                                known.join(", ")
                            ),
                        ));
                        at = Where::Other;
                    }
                },
                _ => {
                    problems.push(error(
                        line,
                        format!(
                            "section {heading:?}: expected `## Settings`, `## Salesforce <Object>` or `## HubSpot <object>`"
                        ),
                    ));
                    at = Where::Other;
                }
            }
            continue;
        }
        match at {
            Where::Settings => {
                let Some(item) = text.strip_prefix("- ") else {
                    continue;
                };
                let Some((name, value)) = item.split_once(':') else {
                    problems.push(error(line, "a setting is `- Name: `value``"));
                    continue;
                };
                let value = unquote(value.split('—').next().unwrap_or(value));
                match name.trim().to_ascii_lowercase().as_str() {
                    "salesforce person object" => match PersonObject::parse(&value) {
                        Some(p) => person = Some(p),
                        None => problems.push(error(
                            line,
                            format!(
                                "Salesforce person object {value:?}: use `contact`, `lead_until_account` or `lead`"
                            ),
                        )),
                    },
                    other => problems.push(error(line, format!("unknown setting {other:?}"))),
                }
            }
            Where::Object => {
                if !text.starts_with('|') {
                    continue;
                }
                let cells: Vec<&str> = text.trim_matches('|').split('|').collect();
                let header = cells
                    .first()
                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("field"));
                let rule = cells
                    .iter()
                    .all(|c| c.trim().chars().all(|ch| ch == '-' || ch == ':'));
                if header || rule {
                    continue;
                }
                if cells.len() != 5 {
                    problems.push(error(
                        line,
                        format!(
                            "a row has 5 cells (Field, Trait, Direction, Type, Values), found {}",
                            cells.len()
                        ),
                    ));
                    continue;
                }
                let Some(object) = objects.last_mut() else {
                    continue;
                };
                match row(object, &cells, line) {
                    Ok(f) => {
                        if object.fields.iter().any(|e| e.field == f.field) {
                            problems.push(error(
                                line,
                                format!(
                                    "{} {}.{} is mapped twice",
                                    object.crm, object.object, f.field
                                ),
                            ));
                        } else {
                            object.fields.push(f);
                        }
                    }
                    Err(p) => problems.push(p),
                }
            }
            Where::Nowhere | Where::Other => {}
        }
    }
    let salesforce_person = person.unwrap_or(PersonObject::Contact);
    (
        Mappings {
            salesforce_person,
            objects,
        },
        problems,
    )
}

fn row(object: &ObjectMap, cells: &[&str], line: usize) -> Result<FieldMap, Problem> {
    let field = unquote(cells[0]);
    if !is_field_name(&field) {
        return Err(error(line, format!("{field:?} is not a field name")));
    }
    let path = unquote(cells[1]);
    let (account, trait_name) = match path.strip_prefix("account.") {
        Some(t) => (true, t.to_owned()),
        None => (false, path.clone()),
    };
    if !is_trait_name(&trait_name) {
        return Err(error(line, format!("{path:?} is not a snake_case trait")));
    }
    let direction_text = unquote(cells[2]);
    let direction = Direction::parse(&direction_text).ok_or_else(|| {
        error(
            line,
            format!("direction {direction_text:?}: use `out`, `in` or `both`"),
        )
    })?;
    let type_text = unquote(cells[3]);
    let ty = FieldType::parse(&type_text).ok_or_else(|| {
        error(
            line,
            format!(
                "type {type_text:?}: use text, picklist, boolean, integer, number, date, datetime, id or owner"
            ),
        )
    })?;
    let values = parse_values(cells[4]).map_err(|e| error(line, e))?;
    let f = FieldMap {
        field,
        trait_name,
        account,
        direction,
        ty,
        values,
        line,
    };
    match object.kind {
        ObjectKind::Person if f.account => Err(error(
            line,
            format!(
                "{} {} is a person object: map profile traits, not {}",
                object.crm,
                object.object,
                f.trait_path()
            ),
        )),
        ObjectKind::Account | ObjectKind::AccountChild if !f.account => Err(error(
            line,
            format!(
                "{} {} maps account traits: write `account.{}`",
                object.crm, object.object, f.trait_name
            ),
        )),
        ObjectKind::AccountChild if f.direction != Direction::In => Err(error(
            line,
            format!(
                "{} {} only flows in (Touchpoint never writes them): use `in`",
                object.crm, object.object
            ),
        )),
        _ if f.field.contains('.') && f.direction.outbound() => Err(error(
            line,
            format!(
                "{} is a relationship path and cannot be written: use `in`",
                f.field
            ),
        )),
        _ if f.ty == FieldType::Owner && object.crm != Crm::HubSpot => Err(error(
            line,
            "type `owner` is for HubSpot owner ids; in Salesforce map `Owner.Email`",
        )),
        _ if f.ty == FieldType::Owner && f.direction.outbound() => Err(error(
            line,
            "owners are resolved from their id and flow in only: use `in`",
        )),
        _ => Ok(f),
    }
}

/// Checks the mappings against the tracking plan: every trait declared, enum values known, one
/// inbound field per trait and object.
pub fn validate(m: &Mappings, plan: &TrackingPlan) -> Vec<Problem> {
    let mut problems = Vec::new();
    for object in &m.objects {
        let mut inbound: HashMap<String, usize> = HashMap::new();
        for f in &object.fields {
            let Some(spec) = plan.trait_spec(&f.trait_name) else {
                problems.push(error(
                    f.line,
                    format!(
                        "trait {} is not in the tracking plan: add it to the Traits table of TRACKING_PLAN.md",
                        f.trait_name
                    ),
                ));
                continue;
            };
            if f.direction.inbound()
                && let Some(first) = inbound.insert(f.trait_path(), f.line)
            {
                problems.push(error(
                    f.line,
                    format!(
                        "{} already flows in from line {first}; one field per trait and object",
                        f.trait_path()
                    ),
                ));
            }
            if spec.ty == PropertyType::Enum {
                for (crm_value, ours) in &f.values {
                    if !spec.constraints.values.iter().any(|v| v == ours) {
                        problems.push(error(
                            f.line,
                            format!(
                                "{crm_value:?} maps to {ours:?}, which is not one of {}'s values ({})",
                                f.trait_name,
                                spec.constraints.values.join(", ")
                            ),
                        ));
                    }
                }
            }
            let fits = match spec.ty {
                PropertyType::Boolean => matches!(f.ty, FieldType::Boolean) || !f.values.is_empty(),
                PropertyType::Integer | PropertyType::Number => {
                    matches!(f.ty, FieldType::Integer | FieldType::Number)
                }
                PropertyType::Timestamp => matches!(f.ty, FieldType::Date | FieldType::DateTime),
                PropertyType::Array | PropertyType::Object => false,
                _ => true,
            };
            if !fits {
                problems.push(warning(
                    f.line,
                    format!(
                        "{} is a {} in the plan but {} is a {} field; values that do not convert are skipped",
                        f.trait_name,
                        spec.ty,
                        f.field,
                        f.ty.as_str()
                    ),
                ));
            }
        }
    }
    problems
}

/// Parses and validates a file's text: the mappings if there is no error, else every problem.
pub fn load(src: &str, plan: &TrackingPlan) -> Result<(Mappings, Vec<Problem>), Vec<Problem>> {
    let (m, mut problems) = parse(src);
    problems.extend(validate(&m, plan));
    problems.sort_by_key(|p| p.line);
    if problems.iter().any(|p| p.error) {
        Err(problems)
    } else {
        Ok((m, problems))
    }
}

/// The text form of a CRM value used to compare what was written with what is read back: numbers
/// without a zero fraction, date-times as epoch milliseconds, `null` for nothing.
pub fn canon(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number_text(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() {
                return "null".into();
            }
            if t.len() > 10
                && t.as_bytes().get(10) == Some(&b'T')
                && let Some(ms) = parse_datetime(t)
            {
                return format!("@{ms}");
            }
            if let Ok(f) = t.parse::<f64>()
                && f.is_finite()
                && !t.starts_with('+')
                && !(t.starts_with('0') && t.len() > 1 && !t.starts_with("0."))
            {
                return number_text(f);
            }
            t.to_owned()
        }
        other => other.to_string(),
    }
}

fn number_text(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// Epoch milliseconds of an RFC 3339 / Salesforce (`+0000`) date-time, or of a HubSpot epoch-ms
/// string.
pub fn parse_datetime(s: &str) -> Option<i64> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().ok();
    }
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return Some(d.timestamp_millis());
    }
    // Salesforce writes `2026-05-01T10:00:00.000+0000`.
    chrono::DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f%z")
        .ok()
        .map(|d| d.timestamp_millis())
}

/// RFC 3339 with milliseconds in UTC (`2026-05-01T10:00:00.000Z`).
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(number_text(n.as_f64()?)),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

/// Converts a CRM value into the trait's value: value map, then the plan type. `Ok(Null)` for an
/// empty CRM value (the trait is cleared), `Err` when it does not convert.
pub fn inbound(f: &FieldMap, raw: &Value, ty: Option<PropertyType>) -> Result<Value, String> {
    let Some(text) = text_of(raw) else {
        return Ok(Value::Null);
    };
    let text = match f.values.iter().find(|(c, _)| c.eq_ignore_ascii_case(&text)) {
        Some((_, ours)) => ours.clone(),
        None => text,
    };
    let bad = |what: &str| format!("{} value {text:?} is not {what}", f.field);
    Ok(match ty.unwrap_or(PropertyType::String) {
        PropertyType::Integer => {
            let n: f64 = text.parse().map_err(|_| bad("a number"))?;
            if n.fract() != 0.0 {
                return Err(bad("a whole number"));
            }
            json!(n as i64)
        }
        PropertyType::Number => {
            let n: f64 = text.parse().map_err(|_| bad("a number"))?;
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                json!(n as i64)
            } else {
                serde_json::Number::from_f64(n)
                    .map(Value::Number)
                    .ok_or_else(|| bad("a finite number"))?
            }
        }
        PropertyType::Boolean => match text.to_ascii_lowercase().as_str() {
            "true" => json!(true),
            "false" => json!(false),
            _ => return Err(bad("true or false")),
        },
        PropertyType::Timestamp => {
            if text.len() == 10 {
                let d = chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d")
                    .map_err(|_| bad("a date"))?;
                json!(format!("{d}T00:00:00.000Z"))
            } else {
                json!(rfc3339(
                    parse_datetime(&text).ok_or_else(|| bad("a date-time"))?
                ))
            }
        }
        _ => json!(text),
    })
}

/// Converts a trait value into the field's CRM value (reverse value map, then the field type);
/// HubSpot takes every property as a string. `None` when there is nothing to write.
pub fn outbound(f: &FieldMap, value: &Value, crm: Crm) -> Option<Value> {
    let text = text_of(value)?;
    let text = match f
        .values
        .iter()
        .find(|(_, ours)| ours.eq_ignore_ascii_case(&text))
    {
        Some((crm_value, _)) => crm_value.clone(),
        None => text,
    };
    let typed = match f.ty {
        FieldType::Integer => text.parse::<f64>().ok().map(|n| json!(n as i64)),
        FieldType::Number => text.parse::<f64>().ok().and_then(|n| {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                Some(json!(n as i64))
            } else {
                serde_json::Number::from_f64(n).map(Value::Number)
            }
        }),
        FieldType::Boolean => match text.to_ascii_lowercase().as_str() {
            "true" => Some(json!(true)),
            "false" => Some(json!(false)),
            _ => None,
        },
        FieldType::Date => Some(json!(text.get(..10).unwrap_or(&text))),
        FieldType::DateTime => parse_datetime(&text).map(|ms| json!(rfc3339(ms))),
        _ => Some(json!(text)),
    }?;
    Some(match (crm, &typed) {
        (Crm::HubSpot, Value::String(_)) => typed,
        (Crm::HubSpot, other) => json!(text_of(other)?),
        _ => typed,
    })
}

/// A value at a dotted path of a JSON record (`Owner.Email`).
pub fn at_path<'a>(record: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut v = record.get(parts.next()?)?;
    for p in parts {
        v = v.as_object()?.get(p)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> TrackingPlan {
        touchpoint_tracking_plan::parse(include_str!("../../../TRACKING_PLAN.md")).unwrap()
    }

    #[test]
    fn the_repository_mappings_parse_and_pass_the_plan() {
        let (m, problems) = load(BUNDLED, &plan()).unwrap();
        assert!(problems.iter().all(|p| !p.error), "{problems:?}");
        let lead = m.object(Crm::Salesforce, "Lead").unwrap();
        let status = lead.field("Status").unwrap();
        assert_eq!(status.trait_name, "lead_status");
        assert_eq!(status.direction, Direction::In);
        assert!(
            status
                .values
                .contains(&("Working - Contacted".into(), "Working".into()))
        );
        assert!(m.object(Crm::HubSpot, "deals").is_some());
    }

    #[test]
    fn problems_carry_the_line_of_the_row_that_is_wrong() {
        let src = "# CRM mappings\n\n## Settings\n- Salesforce person object: `sometimes`\n\n\
                   ## Salesforce Lead\n| Field | Trait | Direction | Type | Values |\n|---|---|---|---|---|\n\
                   | `Status` | `lead_status` | sideways | picklist | |\n\
                   | `Rating` | `no_such_trait` | in | picklist | |\n\
                   | `Email` | `account.email` | out | text | |\n\n\
                   ## Salesforce Opportunity\n| `StageName` | `account.opportunity_stage` | out | picklist | |\n\
                   ## Salesforce Widget\n";
        let problems = load(src, &plan()).unwrap_err();
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![4, 9, 10, 11, 14, 15], "{problems:#?}");
        assert!(problems[1].message.contains("use `out`, `in` or `both`"));
        assert!(problems[2].message.contains("not in the tracking plan"));
        assert!(problems[3].message.contains("person object"));
        assert!(problems[4].message.contains("only flows in"));
        assert!(
            problems[5]
                .message
                .contains("Lead, Contact, Account, Opportunity")
        );
    }

    #[test]
    fn a_value_map_must_land_on_the_plan_s_enum_values() {
        let src = "## Salesforce Lead\n| `Status` | `lead_status` | in | picklist | `Hot` = `Boiling` |\n";
        let problems = load(src, &plan()).unwrap_err();
        assert_eq!(problems[0].line, 2);
        assert!(problems[0].message.contains("\"Boiling\""), "{problems:?}");
    }

    fn field(ty: FieldType, values: &[(&str, &str)]) -> FieldMap {
        FieldMap {
            field: "F".into(),
            trait_name: "t".into(),
            account: false,
            direction: Direction::Both,
            ty,
            values: values
                .iter()
                .map(|(a, b)| ((*a).into(), (*b).into()))
                .collect(),
            line: 1,
        }
    }

    #[test]
    fn values_convert_through_the_value_map_into_the_plan_type_and_back() {
        let status = field(FieldType::Picklist, &[("Working - Contacted", "Working")]);
        assert_eq!(
            inbound(
                &status,
                &json!("Working - Contacted"),
                Some(PropertyType::Enum)
            )
            .unwrap(),
            json!("Working")
        );
        assert_eq!(
            outbound(&status, &json!("Working"), Crm::Salesforce),
            Some(json!("Working - Contacted"))
        );
        // Negation through the value map: IsClosed → open_opportunity.
        let closed = field(FieldType::Boolean, &[("true", "false"), ("false", "true")]);
        assert_eq!(
            inbound(&closed, &json!(false), Some(PropertyType::Boolean)).unwrap(),
            json!(true)
        );
        assert_eq!(
            inbound(&closed, &json!("true"), Some(PropertyType::Boolean)).unwrap(),
            json!(false)
        );
        let amount = field(FieldType::Number, &[]);
        assert_eq!(
            inbound(&amount, &json!("2500.5"), Some(PropertyType::Number)).unwrap(),
            json!(2500.5)
        );
        assert_eq!(outbound(&amount, &json!(3), Crm::HubSpot), Some(json!("3")));
        let employees = field(FieldType::Integer, &[]);
        assert_eq!(
            outbound(&employees, &json!("12"), Crm::Salesforce),
            Some(json!(12))
        );
        assert!(inbound(&employees, &json!("twelve"), Some(PropertyType::Integer)).is_err());
        let close = field(FieldType::Date, &[]);
        assert_eq!(
            inbound(&close, &json!("2026-06-30"), Some(PropertyType::Timestamp)).unwrap(),
            json!("2026-06-30T00:00:00.000Z")
        );
        assert_eq!(
            outbound(&close, &json!("2026-06-30T00:00:00.000Z"), Crm::Salesforce),
            Some(json!("2026-06-30"))
        );
        assert_eq!(
            inbound(&close, &Value::Null, Some(PropertyType::Timestamp)).unwrap(),
            Value::Null
        );
    }

    #[test]
    fn canonical_text_makes_what_was_written_equal_to_what_is_read_back() {
        assert_eq!(canon(&json!(2)), canon(&json!(2.0)));
        assert_eq!(canon(&json!("2")), canon(&json!(2)));
        assert_eq!(
            canon(&json!("2026-05-01T10:00:00.000+0000")),
            canon(&json!("2026-05-01T10:00:00.000Z"))
        );
        assert_eq!(canon(&json!("")), canon(&Value::Null));
        assert_ne!(canon(&json!("007")), canon(&json!(7)));
        assert_eq!(canon(&json!(true)), canon(&json!("true")));
    }

    #[test]
    fn relationship_paths_read_nested_records() {
        let rec: Map<String, Value> =
            serde_json::from_value(json!({"Owner": {"attributes": {}, "Email": "rep@x.io"}}))
                .unwrap();
        assert_eq!(at_path(&rec, "Owner.Email"), Some(&json!("rep@x.io")));
        assert_eq!(at_path(&rec, "Owner.Name"), None);
    }
}
