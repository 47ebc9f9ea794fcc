//! The pure half of the warehouse export: log messages, identity changes and audience
//! transitions become typed rows ([`Record`]s) following Segment's warehouse conventions, with
//! the tracking plan deciding each property's column type. Both targets (Parquet files and the
//! PostgreSQL warehouse) write these rows; nothing here does I/O.

use crate::identity::ProfileId;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use touchpoint_tracking_plan::{Message, MessageType, PropertySpec, PropertyType, TrackingPlan};

/// Longest column, table or schema name (PostgreSQL's identifier limit).
pub const MAX_NAME: usize = 63;
/// Most `context_*` columns taken from one message (hostile contexts cannot explode a schema).
pub const MAX_CONTEXT_COLUMNS: usize = 64;
/// Deepest nested context object flattened into columns; deeper values are kept as JSON.
const MAX_CONTEXT_DEPTH: usize = 3;
/// Collections Segment reserves in a source's schema; an event named like one gets `_event` added.
pub const RESERVED_TABLES: [&str; 8] = [
    "tracks",
    "identifies",
    "pages",
    "screens",
    "groups",
    "aliases",
    "users",
    "accounts",
];

/// The type of a column in both targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Text (strings, enums, JSON).
    Text,
    /// 64-bit integer.
    Int,
    /// Double.
    Float,
    /// Boolean.
    Bool,
    /// Instant, milliseconds since the epoch, UTC.
    Time,
}

impl Kind {
    /// The column type the plan gives a property of type `ty`.
    pub fn of(ty: PropertyType) -> Kind {
        match ty {
            PropertyType::Integer => Kind::Int,
            PropertyType::Number => Kind::Float,
            PropertyType::Boolean => Kind::Bool,
            PropertyType::Timestamp => Kind::Time,
            PropertyType::String
            | PropertyType::Enum
            | PropertyType::Array
            | PropertyType::Object => Kind::Text,
        }
    }

    /// The PostgreSQL type of such a column.
    pub fn sql(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Int => "bigint",
            Kind::Float => "double precision",
            Kind::Bool => "boolean",
            Kind::Time => "timestamptz",
        }
    }
}

/// One value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Absent.
    Null,
    /// Text.
    Text(String),
    /// Integer.
    Int(i64),
    /// Double.
    Float(f64),
    /// Boolean.
    Bool(bool),
    /// Milliseconds since the epoch.
    Time(i64),
}

impl Cell {
    /// The value as `kind`, converting where that loses nothing a reader would miss (an integer
    /// into a double column, anything into a text column); `Null` when it cannot be converted.
    pub fn to_kind(&self, kind: Kind) -> Cell {
        match (self, kind) {
            (Cell::Null, _) => Cell::Null,
            (Cell::Text(_), Kind::Text)
            | (Cell::Int(_), Kind::Int)
            | (Cell::Float(_), Kind::Float)
            | (Cell::Bool(_), Kind::Bool)
            | (Cell::Time(_), Kind::Time) => self.clone(),
            (Cell::Int(i), Kind::Float) => Cell::Float(*i as f64),
            (Cell::Float(f), Kind::Int) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                Cell::Int(*f as i64)
            }
            (Cell::Text(s), Kind::Int) => s.parse().map_or(Cell::Null, Cell::Int),
            (Cell::Text(s), Kind::Float) => s.parse().map_or(Cell::Null, Cell::Float),
            (Cell::Text(s), Kind::Bool) => s.parse().map_or(Cell::Null, Cell::Bool),
            (Cell::Text(s), Kind::Time) => parse_time(s).map_or(Cell::Null, Cell::Time),
            (Cell::Int(i), Kind::Text) => Cell::Text(i.to_string()),
            (Cell::Float(f), Kind::Text) => Cell::Text(f.to_string()),
            (Cell::Bool(b), Kind::Text) => Cell::Text(b.to_string()),
            (Cell::Time(t), Kind::Text) => Cell::Text(rfc3339(*t)),
            _ => Cell::Null,
        }
    }
}

/// Where a column sits in a table: standard columns first, then context, then properties in
/// the plan's order, then properties the plan does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rank {
    /// Segment's standard columns, in their conventional order.
    Standard(u16),
    /// `context_*`, by name.
    Context,
    /// A property (trait) the plan declares, by its position in the plan.
    Planned(u16),
    /// A property the plan does not declare (JSON text), by name.
    Unplanned,
}

/// A named, typed value of a row.
#[derive(Debug, Clone, PartialEq)]
pub struct Col {
    /// Column name (sanitised snake_case).
    pub name: String,
    /// Its type.
    pub kind: Kind,
    /// Where it sorts.
    pub rank: Rank,
    /// The value.
    pub cell: Cell,
}

impl Col {
    fn new(name: &str, kind: Kind, rank: Rank, cell: Cell) -> Col {
        Col {
            name: name.to_owned(),
            kind,
            rank,
            cell,
        }
    }
}

/// The table (Segment "collection") a row belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Collection {
    /// A `track` call; the table named after the (sanitised) event. PostgreSQL also gets the
    /// row without its properties in `tracks`.
    Track(String),
    /// `page` calls.
    Pages,
    /// `screen` calls.
    Screens,
    /// `identify` calls (PostgreSQL also upserts `users`).
    Identifies,
    /// `group` calls.
    Groups,
    /// `alias` calls.
    Aliases,
    /// Profiles entering an audience.
    AudienceEntered,
    /// Profiles leaving an audience.
    AudienceExited,
    /// Identifier → profile links as they were made.
    ExternalIdMappingUpdates,
    /// Profile → canonical profile, after each merge.
    IdGraphUpdates,
}

impl Collection {
    /// The table name (PostgreSQL) and the Parquet folder under the warehouse root.
    pub fn table(&self) -> &str {
        match self {
            Collection::Track(event) => event,
            Collection::Pages => "pages",
            Collection::Screens => "screens",
            Collection::Identifies => "identifies",
            Collection::Groups => "groups",
            Collection::Aliases => "aliases",
            Collection::AudienceEntered => "audience_entered",
            Collection::AudienceExited => "audience_exited",
            Collection::ExternalIdMappingUpdates => "external_id_mapping_updates",
            Collection::IdGraphUpdates => "id_graph_updates",
        }
    }

    /// The folder of its Parquet files for `day`, relative to the warehouse root: events under
    /// `events/date=…/event=…/`, audience transitions under `audiences/date=…/event=…/`, every
    /// other collection under `<collection>/date=…/`.
    pub fn folder(&self, day: &str) -> String {
        match self {
            Collection::Track(event) => format!("events/date={day}/event={event}"),
            Collection::AudienceEntered | Collection::AudienceExited => {
                format!("audiences/date={day}/event={}", self.table())
            }
            other => format!("{}/date={day}", other.table()),
        }
    }

    /// Whether rows come from the audience feed (ranged by feed id) rather than the log.
    pub fn is_audience(&self) -> bool {
        matches!(
            self,
            Collection::AudienceEntered | Collection::AudienceExited
        )
    }
}

/// One output row.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Its table.
    pub collection: Collection,
    /// The source's name (`None` for identity and audience rows, which belong to no source).
    pub source: Option<String>,
    /// UTC day of its `timestamp`, `YYYY-MM-DD` (the Parquet partition).
    pub day: String,
    /// Its values; standard columns first.
    pub cols: Vec<Col>,
}

impl Record {
    /// The value of a column, if the row has it.
    pub fn get(&self, name: &str) -> Option<&Cell> {
        self.cols.iter().find(|c| c.name == name).map(|c| &c.cell)
    }
}

/// A log message as the warehouse reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    /// Log position.
    pub seq: i64,
    /// The source's name.
    pub source: String,
    /// messageId.
    pub message_id: String,
    /// Skew-corrected event time (ms).
    pub event_time: i64,
    /// Receive time (ms).
    pub received_at: i64,
    /// The profile it belongs to (current, after merges), if any.
    pub profile_id: Option<ProfileId>,
    /// The stored message.
    pub body: String,
}

/// An identifier attached to a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRow {
    /// Its profile now.
    pub profile_id: ProfileId,
    /// `user_id`, `anonymous_id`, `email`, …
    pub kind: String,
    /// The (normalised) value.
    pub value: String,
    /// The log message that attached it.
    pub seq: i64,
    /// When (ms).
    pub added_at: i64,
    /// That message's messageId and type, when it is still in the log.
    pub message: Option<(String, String)>,
}

/// A profile whose canonical profile changed through a merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphRow {
    /// The profile.
    pub profile_id: ProfileId,
    /// The profile it now resolves to.
    pub canonical_profile_id: ProfileId,
    /// The merge's winner.
    pub merged_into: ProfileId,
    /// Why the profiles merged.
    pub reason: String,
    /// The log message that caused the merge.
    pub seq: i64,
    /// When (ms).
    pub at: i64,
    /// That message's messageId and type, when it is still in the log.
    pub message: Option<(String, String)>,
}

/// An entry of the audience feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudienceRow {
    /// Feed position.
    pub id: i64,
    /// Audience id (Segment's `audience_key`).
    pub audience: String,
    /// Its human name, if the audience still exists.
    pub name: Option<String>,
    /// The profile.
    pub profile_id: ProfileId,
    /// The profile's user id, if it has one.
    pub user_id: Option<String>,
    /// `audience_entered` or `audience_exited`.
    pub kind: String,
    /// When (ms).
    pub at: i64,
    /// The log message that caused it (0 for schedules and backfills).
    pub seq: i64,
    /// `message`, `window`, `backfill`, `merge`, …
    pub reason: String,
}

/// Why a log message could not become a row.
#[derive(Debug, thiserror::Error)]
#[error("message at log position {seq} is not a readable message: {reason}")]
pub struct BadMessage {
    /// Its position.
    pub seq: i64,
    /// What is wrong.
    pub reason: String,
}

/// A name as a warehouse identifier: snake_case ASCII letters, digits and `_`, not starting with
/// a digit, at most [`MAX_NAME`] bytes; `None` when nothing is left.
pub fn column_name(raw: &str) -> Option<String> {
    // Most names already are identifiers (plan properties are snake_case): no work for them.
    let b = raw.as_bytes();
    if !b.is_empty()
        && b.len() <= MAX_NAME
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
        && !b[0].is_ascii_digit()
        && b[0] != b'_'
        && b[b.len() - 1] != b'_'
        && !raw.contains("__")
    {
        return Some(raw.to_owned());
    }
    let snake = touchpoint_tracking_plan::to_snake_case(raw);
    let mut out: String = snake
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    while out.contains("__") {
        out = out.replace("__", "_");
    }
    let mut out = out.trim_matches('_').to_owned();
    if out.is_empty() {
        return None;
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out.truncate(MAX_NAME);
    Some(out)
}

/// The table a track event is written to: its column name, with `_event` added when it would be
/// one of Segment's reserved collections.
pub fn event_table(event: &str) -> String {
    let name = column_name(event).unwrap_or_else(|| "unnamed_event".into());
    if RESERVED_TABLES.contains(&name.as_str()) || name.starts_with("audience_") {
        let mut n = name;
        n.truncate(MAX_NAME - 6);
        n + "_event"
    } else {
        name
    }
}

/// The schema a source's tables go to in PostgreSQL.
pub fn schema_name(source: &str) -> String {
    let name = column_name(source).unwrap_or_else(|| "source".into());
    if name == "touchpoint"
        || name == "public"
        || name.starts_with("pg_")
        || name == "information_schema"
    {
        format!("src_{name}")
    } else {
        name
    }
}

/// Milliseconds since the epoch of an RFC 3339 date-time.
pub fn parse_time(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.timestamp_millis())
}

/// RFC 3339 text of an instant.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// UTC day of an instant, `YYYY-MM-DD`.
pub fn day_of(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

/// The cell a typed column gets from a JSON value; `None` when the value does not fit the type.
pub fn typed(value: &Value, ty: PropertyType) -> Option<Cell> {
    Some(match (ty, value) {
        (_, Value::Null) => Cell::Null,
        (PropertyType::String | PropertyType::Enum, Value::String(s)) => Cell::Text(s.clone()),
        (PropertyType::Integer, Value::Number(n)) => match n.as_i64() {
            Some(i) => Cell::Int(i),
            None => {
                let f = n.as_f64()?;
                if f.fract() != 0.0 || f.abs() >= 9.0e15 {
                    return None;
                }
                Cell::Int(f as i64)
            }
        },
        (PropertyType::Number, Value::Number(n)) => {
            Cell::Float(n.as_f64().filter(|f| f.is_finite())?)
        }
        (PropertyType::Boolean, Value::Bool(b)) => Cell::Bool(*b),
        (PropertyType::Timestamp, Value::String(s)) => Cell::Time(parse_time(s)?),
        (PropertyType::Array, Value::Array(_)) | (PropertyType::Object, Value::Object(_)) => {
            Cell::Text(value.to_string())
        }
        _ => return None,
    })
}

/// Text of a context value: strings as they are, anything else as JSON.
fn plain(value: &Value) -> Cell {
    match value {
        Value::Null => Cell::Null,
        Value::String(s) => Cell::Text(s.clone()),
        other => Cell::Text(other.to_string()),
    }
}

/// Flattens `context` into `context_*` columns (Segment's convention: nested objects joined with
/// `_`, arrays and deeper objects as JSON), without `context.traits` (identify rows carry the
/// traits), at most [`MAX_CONTEXT_COLUMNS`].
pub fn context_columns(context: &Map<String, Value>) -> Vec<Col> {
    fn walk(prefix: &str, map: &Map<String, Value>, depth: usize, out: &mut Vec<(String, Cell)>) {
        for (k, v) in map {
            if depth == 0 && k == "traits" {
                continue;
            }
            let Some(name) = column_name(&format!("{prefix}_{k}")) else {
                continue;
            };
            match v {
                Value::Object(inner) if depth + 1 < MAX_CONTEXT_DEPTH => {
                    walk(&name, inner, depth + 1, out)
                }
                Value::Null => {}
                other => out.push((name, plain(other))),
            }
        }
    }
    let mut flat = Vec::new();
    walk("context", context, 0, &mut flat);
    flat.sort_by(|a, b| a.0.cmp(&b.0));
    flat.dedup_by(|a, b| a.0 == b.0);
    flat.truncate(MAX_CONTEXT_COLUMNS);
    flat.into_iter()
        .map(|(name, cell)| Col {
            name,
            kind: Kind::Text,
            rank: Rank::Context,
            cell,
        })
        .collect()
}

/// Property (or trait) columns: typed by `spec` where the plan declares the name, JSON text
/// otherwise. A value that does not fit its declared type (a flagged message) leaves the column
/// empty and is kept in `touchpoint_invalid_properties`. Names taken by `taken` (standard
/// columns) get `property_` in front; keys in `skip` (copied into standard columns) are left out.
pub fn property_columns(
    props: &Map<String, Value>,
    spec: impl Fn(&str) -> Option<(u16, PropertyType)>,
    taken: &[&str],
    skip: &[&str],
) -> Vec<Col> {
    let mut out: Vec<Col> = Vec::with_capacity(props.len());
    let mut invalid = Map::new();
    let mut seen = BTreeSet::new();
    for (key, value) in props {
        if skip.contains(&key.as_str()) {
            continue;
        }
        let Some(mut name) = column_name(key) else {
            invalid.insert(key.clone(), value.clone());
            continue;
        };
        if taken.contains(&name.as_str()) {
            name = column_name(&format!("property_{name}")).unwrap_or(name);
        }
        if !seen.insert(name.clone()) {
            // Two keys that read the same as columns ("planTier" and "plan_tier"): the first wins.
            invalid.insert(key.clone(), value.clone());
            continue;
        }
        match spec(key) {
            Some((order, ty)) => {
                let cell = typed(value, ty).unwrap_or_else(|| {
                    invalid.insert(key.clone(), value.clone());
                    Cell::Null
                });
                out.push(Col {
                    name,
                    kind: Kind::of(ty),
                    rank: Rank::Planned(order),
                    cell,
                });
            }
            None => out.push(Col {
                name,
                kind: Kind::Text,
                rank: Rank::Unplanned,
                cell: match value {
                    Value::Null => Cell::Null,
                    v => Cell::Text(v.to_string()),
                },
            }),
        }
    }
    if !invalid.is_empty() {
        out.push(Col::new(
            "touchpoint_invalid_properties",
            Kind::Text,
            Rank::Standard(90),
            Cell::Text(Value::Object(invalid).to_string()),
        ));
    }
    out
}

fn text(s: Option<&str>) -> Cell {
    s.map_or(Cell::Null, |s| Cell::Text(s.to_owned()))
}

fn time(s: Option<&str>) -> Cell {
    s.and_then(parse_time).map_or(Cell::Null, Cell::Time)
}

/// Where a property sits in the plan and its type, by name (`None`: the plan does not declare it).
type SpecFn<'a> = Box<dyn Fn(&str) -> Option<(u16, PropertyType)> + 'a>;

/// The property spec of the plan for an event's properties.
fn event_spec<'p>(
    plan: &'p TrackingPlan,
    event: &str,
) -> impl Fn(&str) -> Option<(u16, PropertyType)> + 'p {
    let spec = plan.event(event);
    move |name: &str| position(spec.map(|s| s.properties()).unwrap_or(&[]), name)
}

fn position(specs: &[PropertySpec], name: &str) -> Option<(u16, PropertyType)> {
    specs
        .iter()
        .position(|p| p.name == name)
        .map(|i| (i as u16, specs[i].ty))
}

/// The row of one log message, typed by `plan`; `loaded_at` is the load time (`uuid_ts`).
pub fn message_record(
    row: &LogRow,
    plan: &TrackingPlan,
    loaded_at: i64,
) -> Result<Record, BadMessage> {
    let message: Message = serde_json::from_str(&row.body).map_err(|e| BadMessage {
        seq: row.seq,
        reason: e.to_string(),
    })?;
    let mut cols = vec![
        Col::new(
            "id",
            Kind::Text,
            Rank::Standard(0),
            Cell::Text(row.message_id.clone()),
        ),
        Col::new(
            "touchpoint_seq",
            Kind::Int,
            Rank::Standard(1),
            Cell::Int(row.seq),
        ),
        Col::new(
            "touchpoint_source",
            Kind::Text,
            Rank::Standard(2),
            Cell::Text(row.source.clone()),
        ),
        Col::new(
            "touchpoint_profile_id",
            Kind::Text,
            Rank::Standard(3),
            text(row.profile_id.as_ref().map(ProfileId::as_str)),
        ),
        Col::new(
            "anonymous_id",
            Kind::Text,
            Rank::Standard(4),
            text(message.anonymous_id.as_deref()),
        ),
        Col::new(
            "user_id",
            Kind::Text,
            Rank::Standard(5),
            text(message.user_id.as_deref()),
        ),
    ];
    let (collection, props, spec): (Collection, &Map<String, Value>, SpecFn<'_>) =
        match message.kind {
            MessageType::Track => {
                let event = message.event.clone().unwrap_or_default();
                let table = event_table(&event);
                cols.push(Col::new(
                    "event",
                    Kind::Text,
                    Rank::Standard(6),
                    Cell::Text(table.clone()),
                ));
                cols.push(Col::new(
                    "event_text",
                    Kind::Text,
                    Rank::Standard(7),
                    Cell::Text(event.clone()),
                ));
                (
                    Collection::Track(table),
                    &message.properties,
                    Box::new(event_spec(plan, &event)),
                )
            }
            MessageType::Page | MessageType::Screen => {
                // analytics.page(category, name) also copies both into the properties.
                let prop = |k: &str| message.properties.get(k).and_then(Value::as_str);
                cols.push(Col::new(
                    "name",
                    Kind::Text,
                    Rank::Standard(6),
                    text(message.name.as_deref().or(prop("name"))),
                ));
                cols.push(Col::new(
                    "category",
                    Kind::Text,
                    Rank::Standard(7),
                    text(message.category.as_deref().or(prop("category"))),
                ));
                let (collection, spec_name) = if message.kind == MessageType::Page {
                    (Collection::Pages, "page_viewed")
                } else {
                    (Collection::Screens, "screen_viewed")
                };
                (
                    collection,
                    &message.properties,
                    Box::new(event_spec(plan, spec_name)),
                )
            }
            MessageType::Identify => (
                Collection::Identifies,
                &message.traits,
                Box::new(|name: &str| position(plan.traits(), name)),
            ),
            MessageType::Group => {
                cols.push(Col::new(
                    "group_id",
                    Kind::Text,
                    Rank::Standard(6),
                    text(message.group_id.as_deref()),
                ));
                (
                    Collection::Groups,
                    &message.traits,
                    Box::new(|name: &str| position(plan.traits(), name)),
                )
            }
            MessageType::Alias => {
                cols.push(Col::new(
                    "previous_id",
                    Kind::Text,
                    Rank::Standard(6),
                    text(message.previous_id.as_deref()),
                ));
                (
                    Collection::Aliases,
                    &message.properties,
                    Box::new(|_: &str| None),
                )
            }
        };
    cols.extend([
        Col::new(
            "timestamp",
            Kind::Time,
            Rank::Standard(10),
            Cell::Time(row.event_time),
        ),
        Col::new(
            "original_timestamp",
            Kind::Time,
            Rank::Standard(11),
            time(message.original_timestamp.as_deref()),
        ),
        Col::new(
            "sent_at",
            Kind::Time,
            Rank::Standard(12),
            time(message.sent_at.as_deref()),
        ),
        Col::new(
            "received_at",
            Kind::Time,
            Rank::Standard(13),
            Cell::Time(row.received_at),
        ),
        Col::new(
            "uuid_ts",
            Kind::Time,
            Rank::Standard(14),
            Cell::Time(loaded_at),
        ),
    ]);
    cols.extend(context_columns(&message.context));
    let taken: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
    let skip: &[&str] = match collection {
        Collection::Pages | Collection::Screens => &["name", "category"],
        _ => &[],
    };
    let properties = property_columns(props, spec, &taken, skip);
    cols.extend(properties);
    Ok(Record {
        collection,
        source: Some(row.source.clone()),
        day: day_of(row.event_time),
        cols,
    })
}

fn trigger(message: &Option<(String, String)>) -> [Cell; 2] {
    match message {
        Some((id, kind)) => [Cell::Text(id.clone()), Cell::Text(kind.clone())],
        None => [Cell::Null, Cell::Null],
    }
}

/// The `external_id_mapping_updates` row of an identifier (Segment Profiles Sync's convention).
pub fn identity_record(row: &IdentityRow, loaded_at: i64) -> Record {
    let [event_id, event_type] = trigger(&row.message);
    let cols = vec![
        Col::new(
            "profile_id",
            Kind::Text,
            Rank::Standard(0),
            Cell::Text(row.profile_id.to_string()),
        ),
        Col::new(
            "external_id_type",
            Kind::Text,
            Rank::Standard(1),
            Cell::Text(row.kind.clone()),
        ),
        Col::new(
            "external_id_value",
            Kind::Text,
            Rank::Standard(2),
            Cell::Text(row.value.clone()),
        ),
        Col::new(
            "triggering_event_id",
            Kind::Text,
            Rank::Standard(3),
            event_id,
        ),
        Col::new(
            "triggering_event_type",
            Kind::Text,
            Rank::Standard(4),
            event_type,
        ),
        Col::new(
            "touchpoint_seq",
            Kind::Int,
            Rank::Standard(5),
            Cell::Int(row.seq),
        ),
        Col::new(
            "timestamp",
            Kind::Time,
            Rank::Standard(10),
            Cell::Time(row.added_at),
        ),
        Col::new(
            "uuid_ts",
            Kind::Time,
            Rank::Standard(14),
            Cell::Time(loaded_at),
        ),
    ];
    Record {
        collection: Collection::ExternalIdMappingUpdates,
        source: None,
        day: day_of(row.added_at),
        cols,
    }
}

/// The `id_graph_updates` row of a profile whose canonical profile changed.
pub fn graph_record(row: &GraphRow, loaded_at: i64) -> Record {
    let [event_id, event_type] = trigger(&row.message);
    let cols = vec![
        Col::new(
            "profile_id",
            Kind::Text,
            Rank::Standard(0),
            Cell::Text(row.profile_id.to_string()),
        ),
        Col::new(
            "canonical_profile_id",
            Kind::Text,
            Rank::Standard(1),
            Cell::Text(row.canonical_profile_id.to_string()),
        ),
        Col::new(
            "merged_into",
            Kind::Text,
            Rank::Standard(2),
            Cell::Text(row.merged_into.to_string()),
        ),
        Col::new(
            "reason",
            Kind::Text,
            Rank::Standard(3),
            Cell::Text(row.reason.clone()),
        ),
        Col::new(
            "triggering_event_id",
            Kind::Text,
            Rank::Standard(4),
            event_id,
        ),
        Col::new(
            "triggering_event_type",
            Kind::Text,
            Rank::Standard(5),
            event_type,
        ),
        Col::new(
            "touchpoint_seq",
            Kind::Int,
            Rank::Standard(6),
            Cell::Int(row.seq),
        ),
        Col::new(
            "timestamp",
            Kind::Time,
            Rank::Standard(10),
            Cell::Time(row.at),
        ),
        Col::new(
            "uuid_ts",
            Kind::Time,
            Rank::Standard(14),
            Cell::Time(loaded_at),
        ),
    ];
    Record {
        collection: Collection::IdGraphUpdates,
        source: None,
        day: day_of(row.at),
        cols,
    }
}

/// The `audience_entered` / `audience_exited` row of an audience transition (the events Segment
/// Engage sends to warehouses).
pub fn audience_record(row: &AudienceRow, loaded_at: i64) -> Record {
    let collection = if row.kind == "audience_exited" {
        Collection::AudienceExited
    } else {
        Collection::AudienceEntered
    };
    let cols = vec![
        Col::new(
            "id",
            Kind::Text,
            Rank::Standard(0),
            Cell::Text(format!("audience-event-{}", row.id)),
        ),
        Col::new(
            "touchpoint_audience_event_id",
            Kind::Int,
            Rank::Standard(1),
            Cell::Int(row.id),
        ),
        Col::new(
            "touchpoint_profile_id",
            Kind::Text,
            Rank::Standard(3),
            Cell::Text(row.profile_id.to_string()),
        ),
        Col::new(
            "user_id",
            Kind::Text,
            Rank::Standard(5),
            text(row.user_id.as_deref()),
        ),
        Col::new(
            "event",
            Kind::Text,
            Rank::Standard(6),
            Cell::Text(row.kind.clone()),
        ),
        Col::new(
            "audience_key",
            Kind::Text,
            Rank::Standard(7),
            Cell::Text(row.audience.clone()),
        ),
        Col::new(
            "audience_name",
            Kind::Text,
            Rank::Standard(8),
            text(row.name.as_deref()),
        ),
        Col::new(
            "reason",
            Kind::Text,
            Rank::Standard(9),
            Cell::Text(row.reason.clone()),
        ),
        Col::new(
            "touchpoint_seq",
            Kind::Int,
            Rank::Standard(2),
            if row.seq > 0 {
                Cell::Int(row.seq)
            } else {
                Cell::Null
            },
        ),
        Col::new(
            "timestamp",
            Kind::Time,
            Rank::Standard(10),
            Cell::Time(row.at),
        ),
        Col::new(
            "uuid_ts",
            Kind::Time,
            Rank::Standard(14),
            Cell::Time(loaded_at),
        ),
    ];
    Record {
        collection,
        source: None,
        day: day_of(row.at),
        cols,
    }
}

/// The columns of a set of rows: every name once, in rank order, with the type of its first
/// appearance (the plan is read once per batch, so types agree within one).
pub fn schema_of<'a>(rows: impl IntoIterator<Item = &'a Record>) -> Vec<(String, Kind)> {
    let mut seen: std::collections::HashSet<&str> = Default::default();
    let mut ordered: Vec<(Rank, &str, Kind)> = Vec::new();
    for r in rows {
        for c in &r.cols {
            if seen.insert(c.name.as_str()) {
                ordered.push((c.rank, c.name.as_str(), c.kind));
            }
        }
    }
    ordered.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    ordered
        .into_iter()
        .map(|(_, name, kind)| (name.to_owned(), kind))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan() -> TrackingPlan {
        touchpoint_tracking_plan::parse(include_str!("../../../TRACKING_PLAN.md")).unwrap()
    }

    fn row(seq: i64, body: Value) -> LogRow {
        LogRow {
            seq,
            source: "web".into(),
            message_id: format!("m-{seq}"),
            event_time: 1_796_083_200_000, // 2026-12-01T00:00:00Z
            received_at: 1_796_083_201_000,
            profile_id: Some("p-1".into()),
            body: body.to_string(),
        }
    }

    #[test]
    fn names_become_snake_case_ascii_identifiers_of_bounded_length() {
        assert_eq!(column_name("planTier").as_deref(), Some("plan_tier"));
        assert_eq!(
            column_name("Trial Started").as_deref(),
            Some("trial_started")
        );
        assert_eq!(column_name("1st-touch").as_deref(), Some("_1st_touch"));
        assert_eq!(
            column_name("naïve \"x\"; drop").as_deref(),
            Some("na_ve_x_drop")
        );
        assert_eq!(column_name("!!!"), None);
        assert_eq!(column_name(&"a".repeat(200)).unwrap().len(), MAX_NAME);
        assert_eq!(event_table("users"), "users_event");
        assert_eq!(event_table("trial_started"), "trial_started");
        assert_eq!(schema_name("reverse-etl"), "reverse_etl");
        assert_eq!(schema_name("touchpoint"), "src_touchpoint");
    }

    #[test]
    fn a_track_call_gets_typed_property_columns_from_the_plan() {
        let r = message_record(
            &row(
                7,
                json!({"type": "track", "userId": "u1", "event": "trial_started",
                "properties": {"plan_tier": "pro", "trial_days": 14, "coupon": {"code": "X"}},
                "context": {"campaign": {"source": "google", "medium": "cpc"}, "ip": "1.2.3.0",
                            "traits": {"email": "a@b.c"}},
                "originalTimestamp": "2026-11-30T23:59:59Z", "sentAt": "2026-12-01T00:00:01.5Z"}),
            ),
            &plan(),
            5,
        )
        .unwrap();
        assert_eq!(r.collection, Collection::Track("trial_started".into()));
        assert_eq!(r.day, "2026-12-01");
        assert_eq!(
            r.collection.folder(&r.day),
            "events/date=2026-12-01/event=trial_started"
        );
        assert_eq!(r.get("trial_days"), Some(&Cell::Int(14)));
        assert_eq!(r.get("plan_tier"), Some(&Cell::Text("pro".into())));
        assert_eq!(
            r.get("coupon"),
            Some(&Cell::Text(r#"{"code":"X"}"#.into())),
            "unplanned: JSON"
        );
        assert_eq!(
            r.get("context_campaign_source"),
            Some(&Cell::Text("google".into()))
        );
        assert_eq!(
            r.get("context_traits_email"),
            None,
            "context.traits are not copied"
        );
        assert_eq!(r.get("sent_at"), Some(&Cell::Time(1_796_083_201_500)));
        assert_eq!(
            r.get("original_timestamp"),
            Some(&Cell::Time(1_796_083_199_000))
        );
        assert_eq!(r.get("uuid_ts"), Some(&Cell::Time(5)));
        let schema = schema_of([&r]);
        let names: Vec<&str> = schema.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(&names[..3], &["id", "touchpoint_seq", "touchpoint_source"]);
        let planned = names.iter().position(|n| *n == "plan_tier").unwrap();
        assert!(names.iter().position(|n| *n == "trial_days").unwrap() > planned);
        assert!(names.iter().position(|n| *n == "coupon").unwrap() > planned);
        assert!(names.iter().position(|n| *n == "context_ip").unwrap() < planned);
    }

    #[test]
    fn values_that_break_the_declared_type_are_kept_aside_not_coerced() {
        let r = message_record(
            &row(
                1,
                json!({"type": "track", "userId": "u1", "event": "trial_started",
                "properties": {"trial_days": "fourteen", "id": "shadow"}}),
            ),
            &plan(),
            0,
        )
        .unwrap();
        assert_eq!(r.get("trial_days"), Some(&Cell::Null));
        assert_eq!(
            r.get("touchpoint_invalid_properties"),
            Some(&Cell::Text(r#"{"trial_days":"fourteen"}"#.into()))
        );
        assert_eq!(
            r.get("id"),
            Some(&Cell::Text("m-1".into())),
            "standard columns win"
        );
        assert_eq!(r.get("property_id"), Some(&Cell::Text("\"shadow\"".into())));
    }

    #[test]
    fn identify_group_page_and_alias_calls_land_in_their_collections() {
        let plan = plan();
        let identify = message_record(
            &row(1, json!({"type": "identify", "userId": "u1",
                "traits": {"seats_provisioned": 5, "email": "a@b.co", "created_at": "2026-01-01T00:00:00Z"}})),
            &plan,
            0,
        )
        .unwrap();
        assert_eq!(identify.collection, Collection::Identifies);
        assert_eq!(identify.get("seats_provisioned"), Some(&Cell::Int(5)));
        assert_eq!(
            identify.get("created_at"),
            Some(&Cell::Time(1_767_225_600_000))
        );
        let group = message_record(
            &row(2, json!({"type": "group", "userId": "u1", "groupId": "ws-1", "traits": {"company": "Acme"}})),
            &plan,
            0,
        )
        .unwrap();
        assert_eq!(group.collection, Collection::Groups);
        assert_eq!(group.get("group_id"), Some(&Cell::Text("ws-1".into())));
        let page = message_record(
            &row(
                3,
                json!({"type": "page", "anonymousId": "a", "name": "Pricing",
                "properties": {"path": "/pricing", "name": "Pricing"}}),
            ),
            &plan,
            0,
        )
        .unwrap();
        assert_eq!(page.collection, Collection::Pages);
        assert_eq!(
            page.collection.folder("2026-12-01"),
            "pages/date=2026-12-01"
        );
        assert_eq!(page.cols.iter().filter(|c| c.name == "name").count(), 1);
        assert_eq!(page.get("path"), Some(&Cell::Text("/pricing".into())));
        let alias = message_record(
            &row(
                4,
                json!({"type": "alias", "userId": "u1", "previousId": "a"}),
            ),
            &plan,
            0,
        )
        .unwrap();
        assert_eq!(alias.get("previous_id"), Some(&Cell::Text("a".into())));
    }

    #[test]
    fn an_unreadable_message_is_an_error_naming_its_position() {
        let e = message_record(&row(9, json!({"type": "nonsense"})), &plan(), 0).unwrap_err();
        assert_eq!(e.seq, 9);
    }

    #[test]
    fn hostile_contexts_are_bounded() {
        let mut ctx = Map::new();
        for i in 0..500 {
            ctx.insert(format!("k{i}"), json!({"deep": {"deeper": {"deepest": i}}}));
        }
        let cols = context_columns(&ctx);
        assert_eq!(cols.len(), MAX_CONTEXT_COLUMNS);
        assert_eq!(cols[0].name, "context_k0_deep_deeper");
        assert_eq!(cols[0].cell, Cell::Text(r#"{"deepest":0}"#.into()));
    }

    #[test]
    fn identity_graph_and_audience_rows_follow_profiles_sync_and_engage_names() {
        let id = identity_record(
            &IdentityRow {
                profile_id: "p1".into(),
                kind: "email".into(),
                value: "a@b.co".into(),
                seq: 3,
                added_at: 1_796_083_200_000,
                message: Some(("m-3".into(), "identify".into())),
            },
            0,
        );
        assert_eq!(
            id.collection.folder(&id.day),
            "external_id_mapping_updates/date=2026-12-01"
        );
        assert_eq!(
            id.get("triggering_event_type"),
            Some(&Cell::Text("identify".into()))
        );
        let a = audience_record(
            &AudienceRow {
                id: 4,
                audience: "product_qualified_lead".into(),
                name: None,
                profile_id: "p1".into(),
                user_id: Some("u1".into()),
                kind: "audience_entered".into(),
                at: 1_796_083_200_000,
                seq: 0,
                reason: "window".into(),
            },
            0,
        );
        assert_eq!(
            a.collection.folder(&a.day),
            "audiences/date=2026-12-01/event=audience_entered"
        );
        assert_eq!(a.get("touchpoint_seq"), Some(&Cell::Null));
    }

    #[test]
    fn cells_convert_to_an_existing_column_type_without_inventing_values() {
        assert_eq!(Cell::Int(3).to_kind(Kind::Float), Cell::Float(3.0));
        assert_eq!(Cell::Text("x".into()).to_kind(Kind::Int), Cell::Null);
        assert_eq!(
            Cell::Bool(true).to_kind(Kind::Text),
            Cell::Text("true".into())
        );
        assert_eq!(Cell::Float(2.5).to_kind(Kind::Int), Cell::Null);
    }
}
