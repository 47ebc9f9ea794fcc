//! The parsed tracking plan: settings, journey stages, event and property specs, traits and identity
//! rules, with constant-time lookups for the validator.
//!
//! Build one with [`crate::parse()`] (or [`TrackingPlan::parse`] / `str::parse`); the types here are
//! read-only views of what `TRACKING_PLAN.md` says.

use regex_lite::Regex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;

/// What to do with a track whose event the plan does not define.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnplannedEventPolicy {
    /// Reject the message (it is stored with its violations, never forwarded).
    Block,
    /// Accept it and report the violation.
    Flag,
    /// Accept it silently.
    Allow,
}

/// What to do with a property (or trait) the plan does not define.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnplannedPropertyPolicy {
    /// Remove it from the message and report it.
    Drop,
    /// Keep it and report it.
    Flag,
    /// Keep it silently.
    Allow,
}

/// What to do with a planned event that breaks its spec (missing required property, wrong type,
/// value not in the enum, out of range, pattern mismatch, badly named).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidEventPolicy {
    /// Reject the message (it is stored with its violations, never forwarded).
    Block,
    /// Accept it and report the violations.
    Flag,
}

/// The naming convention the plan enforces on event, property and trait names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NamingConvention {
    /// `^[a-z][a-z0-9]*(_[a-z0-9]+)*$`, e.g. `user_signed_up`.
    SnakeCase,
    /// No convention is enforced.
    None,
}

/// The `## Settings` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Naming convention for events, properties and traits (default `snake_case`).
    pub naming: NamingConvention,
    /// Policy for tracks of events the plan does not define (default `flag`).
    pub unplanned_events: UnplannedEventPolicy,
    /// Policy for properties and traits the plan does not define (default `flag`).
    pub unplanned_properties: UnplannedPropertyPolicy,
    /// Policy for planned events that break their spec (default `flag`).
    pub invalid_events: InvalidEventPolicy,
    /// The human version label, e.g. `2026.1` (default `unversioned`).
    pub version_label: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            naming: NamingConvention::SnakeCase,
            unplanned_events: UnplannedEventPolicy::Flag,
            unplanned_properties: UnplannedPropertyPolicy::Flag,
            invalid_events: InvalidEventPolicy::Flag,
            version_label: "unversioned".into(),
        }
    }
}

/// One journey stage from `## Journey stages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// The stage name, e.g. `Activation`.
    pub name: String,
    /// The one-line description.
    pub description: String,
    /// The 1-based line it is defined on.
    pub line: usize,
}

/// The type of a property or trait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PropertyType {
    /// A JSON string.
    String,
    /// A JSON integer (a number with a zero fraction such as `3.0` is accepted).
    Integer,
    /// Any JSON number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// An RFC 3339 date-time string, e.g. `2026-01-31T12:00:00.000Z`.
    Timestamp,
    /// A string, number or boolean whose string form is one of the allowed values.
    Enum,
    /// A JSON array.
    Array,
    /// A JSON object.
    Object,
}

impl PropertyType {
    /// Every type, in the order the plan documents them.
    pub const ALL: [PropertyType; 8] = [
        PropertyType::String,
        PropertyType::Integer,
        PropertyType::Number,
        PropertyType::Boolean,
        PropertyType::Timestamp,
        PropertyType::Enum,
        PropertyType::Array,
        PropertyType::Object,
    ];

    /// The name used in `TRACKING_PLAN.md` (`"string"`, `"integer"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            PropertyType::String => "string",
            PropertyType::Integer => "integer",
            PropertyType::Number => "number",
            PropertyType::Boolean => "boolean",
            PropertyType::Timestamp => "timestamp",
            PropertyType::Enum => "enum",
            PropertyType::Array => "array",
            PropertyType::Object => "object",
        }
    }

    /// Parses a type name, case-insensitively; `None` if it is not one of the eight.
    pub fn parse(s: &str) -> Option<PropertyType> {
        PropertyType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }

    /// Whether `min`/`max` make sense for this type (value for numbers, length for strings/arrays).
    pub fn takes_range(self) -> bool {
        matches!(
            self,
            PropertyType::String
                | PropertyType::Integer
                | PropertyType::Number
                | PropertyType::Array
        )
    }
}

impl fmt::Display for PropertyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Constraints on a property's value.
#[derive(Debug, Clone, Default)]
pub struct Constraints {
    /// Allowed values of an `enum`, compared as strings.
    pub values: Vec<String>,
    /// Minimum value (numbers) or length in characters/items (strings/arrays), inclusive.
    pub min: Option<f64>,
    /// Maximum value (numbers) or length in characters/items (strings/arrays), inclusive.
    pub max: Option<f64>,
    /// A regular expression a string must match (unanchored unless it says `^…$`).
    pub pattern: Option<Regex>,
}

impl Constraints {
    /// Whether there are no constraints at all.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.min.is_none() && self.max.is_none() && self.pattern.is_none()
    }
}

/// One row of a property or trait table.
#[derive(Debug, Clone)]
pub struct PropertySpec {
    /// The property name, e.g. `plan_tier`.
    pub name: String,
    /// Its type.
    pub ty: PropertyType,
    /// Whether a message must carry it (with a non-null value).
    pub required: bool,
    /// Allowed values, range and pattern.
    pub constraints: Constraints,
    /// The description column.
    pub description: String,
    /// The 1-based line of the table row.
    pub line: usize,
}

/// A set of property specs in document order, indexed by name.
#[derive(Debug, Clone, Default)]
pub(crate) struct PropertyTable {
    pub(crate) specs: Vec<PropertySpec>,
    pub(crate) index: HashMap<String, usize, FxBuild>,
    pub(crate) required: usize,
}

impl PropertyTable {
    /// Adds a spec; returns the line of the earlier spec of the same name instead if there is one.
    pub(crate) fn insert(&mut self, spec: PropertySpec) -> Result<(), usize> {
        if let Some(&i) = self.index.get(spec.name.as_str()) {
            return Err(self.specs[i].line);
        }
        self.required += usize::from(spec.required);
        self.index.insert(spec.name.clone(), self.specs.len());
        self.specs.push(spec);
        Ok(())
    }

    #[inline]
    pub(crate) fn get(&self, name: &str) -> Option<&PropertySpec> {
        self.index.get(name).map(|&i| &self.specs[i])
    }
}

/// One `### event_name` section.
#[derive(Debug, Clone)]
pub struct EventSpec {
    pub(crate) name: String,
    pub(crate) stage: Option<String>,
    pub(crate) description: String,
    pub(crate) properties: PropertyTable,
    pub(crate) line: usize,
}

impl EventSpec {
    /// The event name, e.g. `trial_started`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The journey stage it belongs to, as named in `## Journey stages`.
    pub fn stage(&self) -> Option<&str> {
        self.stage.as_deref()
    }

    /// The description paragraph.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The properties, in table order.
    pub fn properties(&self) -> &[PropertySpec] {
        &self.properties.specs
    }

    /// One property by name.
    pub fn property(&self, name: &str) -> Option<&PropertySpec> {
        self.properties.get(name)
    }

    /// How many properties are required.
    pub fn required_count(&self) -> usize {
        self.properties.required
    }

    /// The 1-based line of the `###` heading.
    pub fn line(&self) -> usize {
        self.line
    }
}

/// A value identity resolution must never merge on.
#[derive(Debug, Clone)]
pub enum BlockedValue {
    /// Matches case-insensitively after trimming; `""` is the empty string.
    Literal(String),
    /// Matches when the regular expression does (written `/…/` in the plan).
    Pattern(Regex),
}

impl BlockedValue {
    /// Whether `value` (already trimmed) is blocked by this rule.
    pub fn matches(&self, trimmed: &str) -> bool {
        match self {
            BlockedValue::Literal(l) => l.eq_ignore_ascii_case(trimmed),
            BlockedValue::Pattern(re) => re.is_match(trimmed),
        }
    }
}

impl fmt::Display for BlockedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockedValue::Literal(l) => write!(f, "{l:?}"),
            BlockedValue::Pattern(re) => write!(f, "/{}/", re.as_str()),
        }
    }
}

/// The `## Identity` section: how identifiers merge into profiles.
#[derive(Debug, Clone, Default)]
pub struct IdentityRules {
    /// Identifier kinds, most trusted first, e.g. `["user_id", "email", "anonymous_id"]`.
    pub priority: Vec<String>,
    /// Most values of each identifier kind one profile may hold, e.g. `("user_id", 1)`.
    pub limits: Vec<(String, u32)>,
    /// Values that are never identifiers (`null`, `anonymous`, `/^[0-]*$/`, …).
    pub blocked: Vec<BlockedValue>,
}

impl IdentityRules {
    /// Whether `value` is a blocked identifier: a case-insensitive literal match after trimming, or
    /// a blocked pattern matching the trimmed value.
    pub fn is_blocked(&self, value: &str) -> bool {
        let v = value.trim();
        self.blocked.iter().any(|b| b.matches(v))
    }

    /// The per-profile limit for an identifier kind, if the plan sets one.
    pub fn limit(&self, kind: &str) -> Option<u32> {
        self.limits.iter().find(|(k, _)| k == kind).map(|&(_, n)| n)
    }

    /// The rank of an identifier kind in the priority list (0 = most trusted).
    pub fn rank(&self, kind: &str) -> Option<usize> {
        self.priority.iter().position(|k| k == kind)
    }
}

/// A parsed `TRACKING_PLAN.md`.
#[derive(Debug, Clone)]
pub struct TrackingPlan {
    pub(crate) settings: Settings,
    pub(crate) stages: Vec<Stage>,
    pub(crate) events: Vec<EventSpec>,
    pub(crate) event_index: HashMap<String, usize, FxBuild>,
    pub(crate) traits: PropertyTable,
    pub(crate) identity: IdentityRules,
    pub(crate) version: String,
}

impl TrackingPlan {
    /// Parses a plan; the first error (lowest line) if it has any. Same as [`crate::parse()`].
    pub fn parse(src: &str) -> Result<TrackingPlan, crate::ParseError> {
        crate::parse::parse(src)
    }

    /// A stable id of this exact plan: `"<version label>+<FNV-1a-64 of the source, 16 hex>"`.
    /// Stored with every validated message so violations can be traced to the plan that found them.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The `## Settings` section.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The journey stages, in document order.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// The events, in document order.
    pub fn events(&self) -> &[EventSpec] {
        &self.events
    }

    /// One event by exact name.
    #[inline]
    pub fn event(&self, name: &str) -> Option<&EventSpec> {
        self.event_index.get(name).map(|&i| &self.events[i])
    }

    /// The journey stage of an event, if the plan defines the event and gives it one.
    pub fn stage_of(&self, event: &str) -> Option<&str> {
        self.event(event).and_then(EventSpec::stage)
    }

    /// The traits table, in document order.
    pub fn traits(&self) -> &[PropertySpec] {
        &self.traits.specs
    }

    /// One trait by name.
    pub fn trait_spec(&self, name: &str) -> Option<&PropertySpec> {
        self.traits.get(name)
    }

    /// The `## Identity` rules.
    pub fn identity(&self) -> &IdentityRules {
        &self.identity
    }
}

impl FromStr for TrackingPlan {
    type Err = crate::ParseError;

    fn from_str(src: &str) -> Result<Self, Self::Err> {
        crate::parse::parse(src)
    }
}

/// FNV-1a, 64-bit: a stable, dependency-free fingerprint of the plan source.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A fast, non-cryptographic hasher (the FxHash mix) for the plan's small, fixed name maps.
///
/// Keys are plan names; lookups use names from messages, so the worst an adversarial name can do is
/// probe a map whose size the plan bounds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FxBuild;

impl BuildHasher for FxBuild {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher(0)
    }
}

/// See [`FxBuild`].
pub(crate) struct FxHasher(u64);

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(c);
            self.add(u64::from_le_bytes(buf));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(blocked: Vec<BlockedValue>) -> IdentityRules {
        IdentityRules {
            priority: vec!["user_id".into()],
            limits: vec![("user_id".into(), 1)],
            blocked,
        }
    }

    #[test]
    fn blocked_literals_match_case_insensitively_after_trimming() {
        let r = rules(vec![
            BlockedValue::Literal("anonymous".into()),
            BlockedValue::Literal(String::new()),
        ]);
        assert!(r.is_blocked("  Anonymous "));
        assert!(r.is_blocked("   "));
        assert!(!r.is_blocked("anonymous1"));
    }

    #[test]
    fn blocked_patterns_match_the_trimmed_value() {
        let r = rules(vec![BlockedValue::Pattern(Regex::new("^[0-]*$").unwrap())]);
        assert!(r.is_blocked("000-000"));
        assert!(r.is_blocked(" 0 "));
        assert!(!r.is_blocked("0a"));
    }

    #[test]
    fn limits_and_ranks_are_looked_up_by_identifier_kind() {
        let r = rules(vec![]);
        assert_eq!(r.limit("user_id"), Some(1));
        assert_eq!(r.limit("email"), None);
        assert_eq!(r.rank("user_id"), Some(0));
    }

    #[test]
    fn type_names_round_trip_and_unknown_names_are_rejected() {
        for t in PropertyType::ALL {
            assert_eq!(PropertyType::parse(t.as_str()), Some(t));
        }
        assert_eq!(PropertyType::parse("Integer"), Some(PropertyType::Integer));
        assert_eq!(PropertyType::parse("int"), None);
    }

    #[test]
    fn the_fnv_fingerprint_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn a_property_table_rejects_a_second_spec_of_the_same_name() {
        let spec = |line| PropertySpec {
            name: "x".into(),
            ty: PropertyType::String,
            required: true,
            constraints: Constraints::default(),
            description: String::new(),
            line,
        };
        let mut t = PropertyTable::default();
        assert!(t.insert(spec(3)).is_ok());
        assert_eq!(t.insert(spec(4)), Err(3));
        assert_eq!(t.required, 1);
        assert!(t.get("x").is_some());
    }
}
