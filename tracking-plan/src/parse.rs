//! The `TRACKING_PLAN.md` parser: markdown in, [`TrackingPlan`] out, with 1-based line numbers.
//!
//! Grammar, in brief (everything else is prose and is ignored):
//!
//! - `## Settings`: list items `- Name: value` where the value is the first `` `code` `` span (or the
//!   first word); text after it is commentary. Names: `Naming convention` (`snake_case` | `none`),
//!   `Unplanned events` (`block` | `flag` | `allow`), `Unplanned properties` (`drop` | `flag` |
//!   `allow`), `Invalid events` (`block` | `flag`), `Version` (any label).
//! - `## Journey stages`: list items `- **Name** — description` (`—`, `–`, ` - ` or `:` separate).
//! - `## Events`: one `### event_name` per event, then a `Stage: Name` line, description lines and a
//!   table whose header names the columns: name (`Property`/`Name`/`Trait`), `Type`, `Required`
//!   (`yes`/`no`), `Constraints` (or `Allowed values`) and `Description`, in any order.
//! - `## Traits`: one table with the same columns.
//! - `## Identity`: `- Priority: a > b > c`, `- Limits: a: 1, b: 100`, and
//!   `` - Blocked values: `null`, `""`, `/^[0-]*$/` `` (`""` is the empty string, `/…/` a regex).
//! - Constraint cells: comma- or semicolon-separated clauses: `` `value` `` (or a bare word) for enum
//!   values, `min N`, `max N`, ``pattern `regex` ``. Escape `|` in a cell as `\|`.
//! - Fenced code blocks are skipped.
//!
//! [`parse`] returns the first error; [`check`] keeps going and reports every error and warning,
//! including the lints of [`crate::lint`].

use crate::lint;
use crate::plan::{
    BlockedValue, Constraints, EventSpec, FxBuild, IdentityRules, InvalidEventPolicy,
    NamingConvention, PropertySpec, PropertyTable, PropertyType, Settings, Stage, TrackingPlan,
    UnplannedEventPolicy, UnplannedPropertyPolicy, fnv1a64,
};
use regex_lite::Regex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

/// A problem that makes a plan unusable, at a 1-based line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct ParseError {
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub kind: ParseErrorKind,
}

/// What is wrong with a plan.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// A `## Settings` item names no known setting.
    #[error(
        "unknown setting {0:?}: expected naming convention, unplanned events, unplanned properties, invalid events or version"
    )]
    UnknownSetting(String),
    /// A setting (or an event's `Stage:`) is given twice.
    #[error("{0} is given twice")]
    DuplicateSetting(String),
    /// A setting's value is not one it accepts.
    #[error("{setting} must be {expected}, not {value:?}")]
    BadSettingValue {
        /// The setting.
        setting: &'static str,
        /// The value found.
        value: String,
        /// The accepted values.
        expected: &'static str,
    },
    /// A type cell names no known type.
    #[error(
        "unknown type {0:?}: expected string, integer, number, boolean, timestamp, enum, array or object"
    )]
    UnknownType(String),
    /// A table row cannot be read.
    #[error("malformed table row: {0}")]
    MalformedRow(String),
    /// A table header lacks a column the plan needs.
    #[error("the table has no {0} column")]
    MissingColumn(&'static str),
    /// A table where none belongs (outside an event, in settings, …).
    #[error("a table is not expected here ({0})")]
    UnexpectedTable(&'static str),
    /// An `###` event heading or a table row without a name.
    #[error("{0} has no name")]
    MissingName(&'static str),
    /// The event is already defined.
    #[error("event {name:?} is already defined on line {first_line}")]
    DuplicateEvent {
        /// The event name.
        name: String,
        /// Where it was first defined.
        first_line: usize,
    },
    /// The property (or trait) is already defined in the same table.
    #[error("property {name:?} is already defined on line {first_line}")]
    DuplicateProperty {
        /// The property name.
        name: String,
        /// Where it was first defined.
        first_line: usize,
    },
    /// The journey stage is already defined.
    #[error("stage {name:?} is already defined on line {first_line}")]
    DuplicateStage {
        /// The stage name.
        name: String,
        /// Where it was first defined.
        first_line: usize,
    },
    /// A journey stage item cannot be read.
    #[error("malformed journey stage {0:?}: expected `- Name — description`")]
    BadStage(String),
    /// An event names a stage that is not in `## Journey stages`.
    #[error("stage {0:?} is not one of the journey stages")]
    UnknownStage(String),
    /// A `pattern` or blocked value is not a valid regular expression.
    #[error("bad regular expression {pattern:?}: {message}")]
    BadRegex {
        /// The pattern as written.
        pattern: String,
        /// The regex engine's complaint.
        message: String,
    },
    /// `min` is greater than `max`.
    #[error("min {min} is greater than max {max}")]
    MinGreaterThanMax {
        /// The minimum.
        min: f64,
        /// The maximum.
        max: f64,
    },
    /// An `enum` property lists no allowed values.
    #[error("enum {0:?} lists no allowed values")]
    EnumWithoutValues(String),
    /// The required cell is not yes/no.
    #[error("required must be yes or no, not {0:?}")]
    BadRequired(String),
    /// `min`/`max` is not a number.
    #[error("{0:?} is not a number")]
    BadNumber(String),
    /// A constraint clause cannot be read.
    #[error("unknown constraint {0:?}: expected `value`, min N, max N or pattern `regex`")]
    UnknownConstraint(String),
    /// A constraint that does not apply to the property's type.
    #[error("{constraint} does not apply to type {ty}")]
    ConstraintNotApplicable {
        /// `min`, `max`, `pattern` or `allowed values`.
        constraint: &'static str,
        /// The property's type.
        ty: PropertyType,
    },
    /// An `## Identity` item names no known rule.
    #[error("unknown identity rule {0:?}: expected priority, limits or blocked values")]
    UnknownIdentityRule(String),
    /// An `## Identity` item cannot be read.
    #[error("malformed identity rule: {0}")]
    BadIdentityRule(String),
}

/// How serious a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The plan is wrong (or breaks its own naming convention); CI should fail.
    Error,
    /// Worth fixing (destination limits, missing descriptions, ignored sections).
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One finding of [`check`]; displays as `line N: error: message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// The 1-based line number.
    pub line: usize,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, for humans.
    pub message: String,
}

impl Diagnostic {
    pub(crate) fn warning(line: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            line,
            severity: Severity::Warning,
            message: message.into(),
        }
    }

    pub(crate) fn error(line: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            line,
            severity: Severity::Error,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.severity, self.message)
    }
}

impl From<&ParseError> for Diagnostic {
    fn from(e: &ParseError) -> Diagnostic {
        Diagnostic::error(e.line, e.kind.to_string())
    }
}

/// Parses a plan. Returns the first error (by line) if there is any; use [`check`] to see them all.
pub fn parse(src: &str) -> Result<TrackingPlan, ParseError> {
    let out = Parser::run(src);
    match out.errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(out.plan),
    }
}

/// Reports every problem in a plan: parse errors (the parser recovers past them), naming-convention
/// errors, and warnings (destination limits, missing stages or descriptions, ignored sections),
/// sorted by line.
pub fn check(src: &str) -> Vec<Diagnostic> {
    let out = Parser::run(src);
    let mut diags: Vec<Diagnostic> = out.errors.iter().map(Diagnostic::from).collect();
    diags.extend(out.warnings);
    diags.extend(lint::lint(&out.plan));
    diags.sort_by_key(|d| (d.line, d.severity));
    diags
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    None,
    Settings,
    Stages,
    Events,
    Traits,
    Identity,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Name,
    Type,
    Required,
    Constraints,
    Description,
    Ignored,
}

/// Where the rows of the current table go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Event,
    Traits,
    Nowhere,
}

struct Table {
    /// `None` until the separator row has been seen; then the column of each cell.
    columns: Option<Vec<Col>>,
    header: Vec<Col>,
    target: Target,
    /// The header lacked a needed column: rows are skipped.
    broken: bool,
}

struct Output {
    plan: TrackingPlan,
    errors: Vec<ParseError>,
    warnings: Vec<Diagnostic>,
}

#[derive(Default)]
struct SettingLines {
    naming: Option<usize>,
    unplanned_events: Option<usize>,
    unplanned_properties: Option<usize>,
    invalid_events: Option<usize>,
    version: Option<usize>,
}

struct Parser {
    settings: Settings,
    seen: SettingLines,
    stages: Vec<Stage>,
    events: Vec<EventSpec>,
    event_index: HashMap<String, usize, FxBuild>,
    /// `(event index, stage name as written, line)` to resolve once every stage is known.
    stage_refs: Vec<(usize, String, usize)>,
    stage_lines: Vec<Option<usize>>,
    traits: PropertyTable,
    identity: IdentityRules,
    errors: Vec<ParseError>,
    warnings: Vec<Diagnostic>,
    section: Section,
    /// The event whose `###` section we are in (index into `events`), if any.
    current: Option<usize>,
    /// Set when an `###` heading was rejected: its content is skipped.
    skipping_event: bool,
    table: Option<Table>,
}

impl Parser {
    fn run(src: &str) -> Output {
        let mut p = Parser {
            settings: Settings::default(),
            seen: SettingLines::default(),
            stages: Vec::new(),
            events: Vec::new(),
            event_index: HashMap::default(),
            stage_refs: Vec::new(),
            stage_lines: Vec::new(),
            traits: PropertyTable::default(),
            identity: IdentityRules::default(),
            errors: Vec::new(),
            warnings: Vec::new(),
            section: Section::None,
            current: None,
            skipping_event: false,
            table: None,
        };
        let mut fence: Option<&str> = None;
        for (i, raw) in src.lines().enumerate() {
            let line = i + 1;
            let t = raw.trim();
            if let Some(f) = fence {
                if t.starts_with(f) {
                    fence = None;
                }
                continue;
            }
            if t.starts_with("```") || t.starts_with("~~~") {
                p.end_table(line);
                fence = Some(&t[..3]);
                continue;
            }
            p.line(line, t);
        }
        p.end_table(src.lines().count() + 1);
        p.finish(src)
    }

    fn err(&mut self, line: usize, kind: ParseErrorKind) {
        self.errors.push(ParseError { line, kind });
    }

    fn line(&mut self, line: usize, t: &str) {
        if t.starts_with('|') {
            self.table_row(line, t);
            return;
        }
        self.end_table(line);
        if let Some(level) = heading_level(t) {
            let text = t[level..].trim().trim_end_matches('#').trim();
            self.heading(line, level, text);
            return;
        }
        if t.is_empty() {
            return;
        }
        let item = list_item(t);
        match self.section {
            Section::Settings => {
                if let Some(item) = item {
                    self.setting(line, item);
                }
            }
            Section::Stages => {
                if let Some(item) = item {
                    self.stage(line, item);
                }
            }
            Section::Identity => {
                if let Some(item) = item {
                    self.identity_rule(line, item);
                }
            }
            Section::Events => self.event_text(line, t),
            Section::None | Section::Traits | Section::Other => {}
        }
    }

    fn heading(&mut self, line: usize, level: usize, text: &str) {
        match level {
            1 => {
                self.section = Section::None;
                self.current = None;
            }
            2 => {
                self.current = None;
                self.skipping_event = false;
                let key = normalize_key(text);
                self.section = match key.as_str() {
                    "settings" => Section::Settings,
                    "journey stages" | "stages" => Section::Stages,
                    "events" => Section::Events,
                    "traits" => Section::Traits,
                    "identity" | "identity rules" => Section::Identity,
                    _ => {
                        self.warnings.push(Diagnostic::warning(
                            line,
                            format!(
                                "section {text:?} is not part of the plan grammar and is ignored"
                            ),
                        ));
                        Section::Other
                    }
                };
            }
            3 if self.section == Section::Events => self.event_heading(line, text),
            _ => {}
        }
    }

    fn event_heading(&mut self, line: usize, text: &str) {
        self.current = None;
        self.skipping_event = true;
        let name = strip_code(text).trim().to_string();
        if name.is_empty() {
            self.err(line, ParseErrorKind::MissingName("an event heading"));
            return;
        }
        if let Some(&i) = self.event_index.get(name.as_str()) {
            let first_line = self.events[i].line;
            self.err(line, ParseErrorKind::DuplicateEvent { name, first_line });
            return;
        }
        self.skipping_event = false;
        self.event_index.insert(name.clone(), self.events.len());
        self.current = Some(self.events.len());
        self.stage_lines.push(None);
        self.events.push(EventSpec {
            name,
            stage: None,
            description: String::new(),
            properties: PropertyTable::default(),
            line,
        });
    }

    fn event_text(&mut self, line: usize, t: &str) {
        let Some(i) = self.current else { return };
        let plain = t.replace('*', "");
        let plain = plain.trim();
        if let Some(rest) = strip_prefix_ci(plain, "stage:") {
            if let Some(first) = self.stage_lines[i] {
                self.err(
                    line,
                    ParseErrorKind::DuplicateSetting(format!("Stage (first on line {first})")),
                );
                return;
            }
            self.stage_lines[i] = Some(line);
            let name = strip_code(rest).trim().to_string();
            self.stage_refs.push((i, name, line));
            return;
        }
        let desc = &mut self.events[i].description;
        if !desc.is_empty() {
            desc.push(' ');
        }
        desc.push_str(t);
    }

    fn setting(&mut self, line: usize, item: &str) {
        let item = item.replace('*', "");
        let Some((key, value)) = item.split_once(':') else {
            self.err(
                line,
                ParseErrorKind::UnknownSetting(item.trim().to_string()),
            );
            return;
        };
        let key = normalize_key(key);
        let value = first_value(value);
        let lower = value.to_ascii_lowercase();
        let (slot, name): (&mut Option<usize>, &'static str) = match key.as_str() {
            "naming convention" | "naming" => (&mut self.seen.naming, "naming convention"),
            "unplanned events" => (&mut self.seen.unplanned_events, "unplanned events"),
            "unplanned properties" => (&mut self.seen.unplanned_properties, "unplanned properties"),
            "invalid events" => (&mut self.seen.invalid_events, "invalid events"),
            "version" | "version label" => (&mut self.seen.version, "version"),
            _ => {
                self.err(line, ParseErrorKind::UnknownSetting(key));
                return;
            }
        };
        if let Some(first) = *slot {
            self.err(
                line,
                ParseErrorKind::DuplicateSetting(format!(
                    "setting {name:?} (first on line {first})"
                )),
            );
            return;
        }
        *slot = Some(line);
        let bad = |expected: &'static str| ParseErrorKind::BadSettingValue {
            setting: name,
            value: value.clone(),
            expected,
        };
        let s = &mut self.settings;
        let result = match (name, lower.as_str()) {
            ("naming convention", "snake_case") => {
                s.naming = NamingConvention::SnakeCase;
                Ok(())
            }
            ("naming convention", "none") => {
                s.naming = NamingConvention::None;
                Ok(())
            }
            ("naming convention", _) => Err(bad("snake_case or none")),
            ("unplanned events", v) => match v {
                "block" => Ok(UnplannedEventPolicy::Block),
                "flag" => Ok(UnplannedEventPolicy::Flag),
                "allow" => Ok(UnplannedEventPolicy::Allow),
                _ => Err(bad("block, flag or allow")),
            }
            .map(|p| s.unplanned_events = p),
            ("unplanned properties", v) => match v {
                "drop" => Ok(UnplannedPropertyPolicy::Drop),
                "flag" => Ok(UnplannedPropertyPolicy::Flag),
                "allow" => Ok(UnplannedPropertyPolicy::Allow),
                _ => Err(bad("drop, flag or allow")),
            }
            .map(|p| s.unplanned_properties = p),
            ("invalid events", v) => match v {
                "block" => Ok(InvalidEventPolicy::Block),
                "flag" => Ok(InvalidEventPolicy::Flag),
                _ => Err(bad("block or flag")),
            }
            .map(|p| s.invalid_events = p),
            _ if value.is_empty() => Err(bad("a label such as 2026.1")),
            _ => {
                s.version_label = value.clone();
                Ok(())
            }
        };
        if let Err(kind) = result {
            self.err(line, kind);
        }
    }

    fn stage(&mut self, line: usize, item: &str) {
        let item = item.replace('*', "");
        let (name, desc) = split_stage(&item);
        let name = strip_code(name).trim().to_string();
        if name.is_empty() {
            self.err(line, ParseErrorKind::BadStage(item.trim().to_string()));
            return;
        }
        if let Some(s) = self
            .stages
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(&name))
        {
            let first_line = s.line;
            self.err(line, ParseErrorKind::DuplicateStage { name, first_line });
            return;
        }
        self.stages.push(Stage {
            name,
            description: desc.trim().to_string(),
            line,
        });
    }

    fn identity_rule(&mut self, line: usize, item: &str) {
        let Some((key, value)) = item.split_once(':') else {
            self.err(
                line,
                ParseErrorKind::UnknownIdentityRule(item.trim().to_string()),
            );
            return;
        };
        let key = normalize_key(key);
        match key.as_str() {
            "priority" => {
                let value = value.split(" — ").next().unwrap_or_default();
                let kinds: Vec<String> = value
                    .split('>')
                    .map(|k| strip_code(k).trim().to_string())
                    .collect();
                if kinds.iter().any(String::is_empty) {
                    self.err(
                        line,
                        ParseErrorKind::BadIdentityRule(
                            "priority must read like `user_id > email > anonymous_id`".into(),
                        ),
                    );
                } else {
                    self.identity.priority = kinds;
                }
            }
            "limits" => {
                let value = value.split(" — ").next().unwrap_or_default();
                let mut limits = Vec::new();
                for part in value.split(',') {
                    let part = strip_code(part);
                    let part = part.trim();
                    let parsed = part
                        .rsplit_once([':', '=', ' '])
                        .and_then(|(k, n)| {
                            let k = k.trim().trim_end_matches([':', '=', ' ']).trim();
                            Some((k, n.trim().parse::<u32>().ok()?))
                        })
                        .filter(|(k, _)| !k.is_empty());
                    match parsed {
                        Some((k, n)) => limits.push((k.to_string(), n)),
                        None => {
                            self.err(
                                line,
                                ParseErrorKind::BadIdentityRule(format!(
                                    "limit {part:?} must read like `user_id: 1`"
                                )),
                            );
                            return;
                        }
                    }
                }
                self.identity.limits = limits;
            }
            "blocked values" | "blocked" => {
                for clause in clauses(value) {
                    let literal = match (clause.outside.trim(), clause.code.as_slice()) {
                        ("", [code]) => code.clone(),
                        (bare, []) => bare.to_string(),
                        _ => {
                            self.err(
                                line,
                                ParseErrorKind::BadIdentityRule(format!(
                                    "blocked value {:?} must be one `code` span",
                                    clause.text
                                )),
                            );
                            continue;
                        }
                    };
                    if literal == "\"\"" {
                        self.identity
                            .blocked
                            .push(BlockedValue::Literal(String::new()));
                    } else if literal.len() >= 2
                        && literal.starts_with('/')
                        && literal[1..].contains('/')
                    {
                        let end = literal.rfind('/').unwrap_or(literal.len());
                        let (body, flags) = (&literal[1..end], &literal[end + 1..]);
                        let pattern = if flags == "i" {
                            format!("(?i){body}")
                        } else if flags.is_empty() {
                            body.to_string()
                        } else {
                            self.err(
                                line,
                                ParseErrorKind::BadRegex {
                                    pattern: literal.clone(),
                                    message: "the only flag allowed is i".into(),
                                },
                            );
                            continue;
                        };
                        match Regex::new(&pattern) {
                            Ok(re) => self.identity.blocked.push(BlockedValue::Pattern(re)),
                            Err(e) => self.err(
                                line,
                                ParseErrorKind::BadRegex {
                                    pattern: literal.clone(),
                                    message: e.to_string(),
                                },
                            ),
                        }
                    } else {
                        self.identity
                            .blocked
                            .push(BlockedValue::Literal(literal.trim().to_string()));
                    }
                }
            }
            _ => self.err(line, ParseErrorKind::UnknownIdentityRule(key)),
        }
    }

    fn table_row(&mut self, line: usize, t: &str) {
        let cells = split_cells(t);
        let Some(table) = &mut self.table else {
            // A header row starts a table.
            let target = match self.section {
                Section::Events if self.current.is_some() => Target::Event,
                Section::Events if self.skipping_event => Target::Nowhere,
                Section::Events => {
                    self.err(
                        line,
                        ParseErrorKind::UnexpectedTable("it is not under an ### event heading"),
                    );
                    Target::Nowhere
                }
                Section::Traits => Target::Traits,
                Section::Settings => {
                    self.err(
                        line,
                        ParseErrorKind::UnexpectedTable("settings are `- Name: value` items"),
                    );
                    Target::Nowhere
                }
                Section::Stages => {
                    self.err(
                        line,
                        ParseErrorKind::UnexpectedTable("stages are `- Name — description` items"),
                    );
                    Target::Nowhere
                }
                Section::Identity => {
                    self.err(
                        line,
                        ParseErrorKind::UnexpectedTable("identity rules are `- Name: value` items"),
                    );
                    Target::Nowhere
                }
                Section::None | Section::Other => Target::Nowhere,
            };
            let header: Vec<Col> = cells.iter().map(|c| column(c)).collect();
            let mut broken = false;
            if target != Target::Nowhere {
                for (col, name) in [(Col::Name, "name"), (Col::Type, "type")] {
                    if !header.contains(&col) {
                        self.err(line, ParseErrorKind::MissingColumn(name));
                        broken = true;
                    }
                }
            }
            self.table = Some(Table {
                columns: None,
                header,
                target,
                broken,
            });
            return;
        };
        let Some(columns) = &table.columns else {
            if cells.iter().all(|c| is_separator_cell(c)) && !cells.is_empty() {
                table.columns = Some(std::mem::take(&mut table.header));
            } else {
                let target = table.target;
                table.target = Target::Nowhere;
                table.columns = Some(Vec::new());
                if target != Target::Nowhere {
                    self.err(
                        line,
                        ParseErrorKind::MalformedRow(
                            "a table header must be followed by a separator row like |---|---|"
                                .into(),
                        ),
                    );
                }
            }
            return;
        };
        if table.target == Target::Nowhere || table.broken {
            return;
        }
        if cells.len() != columns.len() {
            let msg = format!(
                "the row has {} cells but the header has {}",
                cells.len(),
                columns.len()
            );
            self.err(line, ParseErrorKind::MalformedRow(msg));
            return;
        }
        let target = table.target;
        let row = read_row(columns, &cells, line);
        match row {
            Err(kind) => self.err(line, kind),
            Ok(spec) => {
                let table = match target {
                    Target::Event => match self.current {
                        Some(i) => &mut self.events[i].properties,
                        None => return,
                    },
                    Target::Traits => &mut self.traits,
                    Target::Nowhere => return,
                };
                let name = spec.name.clone();
                if let Err(first_line) = table.insert(spec) {
                    self.err(line, ParseErrorKind::DuplicateProperty { name, first_line });
                }
            }
        }
    }

    fn end_table(&mut self, line: usize) {
        if let Some(table) = self.table.take()
            && table.columns.is_none()
            && table.target != Target::Nowhere
        {
            self.err(
                line.saturating_sub(1).max(1),
                ParseErrorKind::MalformedRow(
                    "a table header must be followed by a separator row like |---|---|".into(),
                ),
            );
        }
    }

    fn finish(mut self, src: &str) -> Output {
        for (i, name, line) in std::mem::take(&mut self.stage_refs) {
            match self
                .stages
                .iter()
                .find(|s| s.name.eq_ignore_ascii_case(&name))
            {
                Some(s) => self.events[i].stage = Some(s.name.clone()),
                None => self.err(line, ParseErrorKind::UnknownStage(name)),
            }
        }
        for e in &self.events {
            if e.stage.is_none() && !self.stages.is_empty() && !self.stage_lines_has(e) {
                self.warnings.push(Diagnostic::warning(
                    e.line,
                    format!("event {:?} has no `Stage:` line", e.name),
                ));
            }
            if e.description.is_empty() {
                self.warnings.push(Diagnostic::warning(
                    e.line,
                    format!("event {:?} has no description", e.name),
                ));
            }
        }
        self.errors.sort_by_key(|e| e.line);
        let version = format!(
            "{}+{:016x}",
            self.settings.version_label,
            fnv1a64(src.as_bytes())
        );
        Output {
            plan: TrackingPlan {
                settings: self.settings,
                stages: self.stages,
                events: self.events,
                event_index: self.event_index,
                traits: self.traits,
                identity: self.identity,
                version,
            },
            errors: self.errors,
            warnings: self.warnings,
        }
    }

    fn stage_lines_has(&self, e: &EventSpec) -> bool {
        self.event_index
            .get(e.name.as_str())
            .and_then(|&i| self.stage_lines[i])
            .is_some()
    }
}

/// Reads one property row; `columns[i]` says what `cells[i]` is.
fn read_row(
    columns: &[Col],
    cells: &[String],
    line: usize,
) -> Result<PropertySpec, ParseErrorKind> {
    let cell = |want: Col| {
        columns
            .iter()
            .position(|&c| c == want)
            .map_or("", |i| cells[i].as_str())
    };
    let name = strip_code(cell(Col::Name)).trim().to_string();
    if name.is_empty() {
        return Err(ParseErrorKind::MissingName("a table row"));
    }
    let ty_text = strip_code(cell(Col::Type)).trim().to_string();
    let ty = PropertyType::parse(&ty_text).ok_or(ParseErrorKind::UnknownType(ty_text))?;
    let req_text = strip_code(cell(Col::Required)).trim().to_ascii_lowercase();
    let required = match req_text.as_str() {
        "yes" | "true" | "required" | "y" | "✓" | "✔" => true,
        "no" | "false" | "optional" | "n" | "" | "-" | "—" => false,
        _ => return Err(ParseErrorKind::BadRequired(req_text)),
    };
    let constraints = read_constraints(cell(Col::Constraints), ty, &name)?;
    Ok(PropertySpec {
        name,
        ty,
        required,
        constraints,
        description: cell(Col::Description).trim().to_string(),
        line,
    })
}

fn read_constraints(
    text: &str,
    ty: PropertyType,
    name: &str,
) -> Result<Constraints, ParseErrorKind> {
    let mut c = Constraints::default();
    for clause in clauses(text) {
        let outside = clause.outside.trim();
        let lower = outside.to_ascii_lowercase();
        if let Some(rest) = keyword(&lower, "min").or_else(|| keyword(&lower, "max")) {
            let is_min = lower.starts_with("min");
            let number_text = if rest.is_empty() {
                clause.code.first().cloned().unwrap_or_default()
            } else {
                rest.to_string()
            };
            let n: f64 = number_text
                .trim()
                .parse()
                .ok()
                .filter(|n: &f64| n.is_finite())
                .ok_or_else(|| ParseErrorKind::BadNumber(number_text.trim().to_string()))?;
            if !ty.takes_range() {
                return Err(ParseErrorKind::ConstraintNotApplicable {
                    constraint: if is_min { "min" } else { "max" },
                    ty,
                });
            }
            if is_min {
                c.min = Some(n);
            } else {
                c.max = Some(n);
            }
        } else if keyword(&lower, "pattern").is_some() {
            let Some(pattern) = clause.code.first() else {
                return Err(ParseErrorKind::UnknownConstraint(clause.text.clone()));
            };
            if ty != PropertyType::String {
                return Err(ParseErrorKind::ConstraintNotApplicable {
                    constraint: "pattern",
                    ty,
                });
            }
            let re = Regex::new(pattern).map_err(|e| ParseErrorKind::BadRegex {
                pattern: pattern.clone(),
                message: e.to_string(),
            })?;
            c.pattern = Some(re);
        } else {
            let value = match (outside, clause.code.as_slice()) {
                ("", [code]) => code.clone(),
                (bare, []) => bare.to_string(),
                _ => return Err(ParseErrorKind::UnknownConstraint(clause.text.clone())),
            };
            if ty != PropertyType::Enum {
                return Err(ParseErrorKind::ConstraintNotApplicable {
                    constraint: "allowed values",
                    ty,
                });
            }
            c.values.push(value);
        }
    }
    if ty == PropertyType::Enum && c.values.is_empty() {
        return Err(ParseErrorKind::EnumWithoutValues(name.to_string()));
    }
    if let (Some(min), Some(max)) = (c.min, c.max)
        && min > max
    {
        return Err(ParseErrorKind::MinGreaterThanMax { min, max });
    }
    Ok(c)
}

/// If `lower` is `word` followed by a space, `:`, `=`, a digit, a sign or nothing: the rest, trimmed
/// of separators.
fn keyword<'a>(lower: &'a str, word: &str) -> Option<&'a str> {
    let rest = lower.strip_prefix(word)?;
    match rest.chars().next() {
        None => Some(rest),
        Some(c) if c.is_whitespace() || c == ':' || c == '=' => {
            Some(rest.trim_start_matches(|c: char| c.is_whitespace() || c == ':' || c == '='))
        }
        Some(c) if c.is_ascii_digit() || c == '-' || c == '+' => Some(rest),
        Some(_) => None,
    }
}

/// One comma/semicolon-separated clause of a cell: its text outside backticks and its code spans.
struct Clause {
    text: String,
    outside: String,
    code: Vec<String>,
}

/// Splits on `,` and `;` outside backticks.
fn clauses(text: &str) -> Vec<Clause> {
    let mut out = Vec::new();
    let mut cur = Clause {
        text: String::new(),
        outside: String::new(),
        code: Vec::new(),
    };
    let mut in_code: Option<String> = None;
    for ch in text.chars() {
        match (&mut in_code, ch) {
            (Some(code), '`') => {
                cur.code.push(std::mem::take(code));
                in_code = None;
                cur.text.push(ch);
            }
            (Some(code), _) => {
                code.push(ch);
                cur.text.push(ch);
            }
            (None, '`') => {
                in_code = Some(String::new());
                cur.text.push(ch);
            }
            (None, ',' | ';') => {
                let done = std::mem::replace(
                    &mut cur,
                    Clause {
                        text: String::new(),
                        outside: String::new(),
                        code: Vec::new(),
                    },
                );
                if !done.text.trim().is_empty() {
                    out.push(done);
                }
            }
            (None, _) => {
                cur.outside.push(ch);
                cur.text.push(ch);
            }
        }
    }
    if let Some(code) = in_code {
        // An unterminated span: treat the backtick as text.
        cur.outside.push('`');
        cur.outside.push_str(&code);
    }
    if !cur.text.trim().is_empty() {
        out.push(cur);
    }
    out
}

/// Splits a table row into trimmed cells; `\|` is a literal pipe.
fn split_cells(t: &str) -> Vec<String> {
    let body = t.strip_prefix('|').unwrap_or(t);
    let mut cells = Vec::new();
    let mut cur = String::new();
    let mut chars = body.chars().peekable();
    let mut closed = false;
    while let Some(ch) = chars.next() {
        closed = false;
        match ch {
            '\\' if chars.peek() == Some(&'|') => {
                cur.push('|');
                chars.next();
            }
            '|' => {
                cells.push(cur.trim().to_string());
                cur.clear();
                closed = true;
            }
            _ => cur.push(ch),
        }
    }
    if !closed || !cur.trim().is_empty() {
        cells.push(cur.trim().to_string());
    }
    cells
}

fn is_separator_cell(c: &str) -> bool {
    let c = c.trim();
    let inner = c.strip_prefix(':').unwrap_or(c);
    let inner = inner.strip_suffix(':').unwrap_or(inner);
    !inner.is_empty() && inner.chars().all(|ch| ch == '-')
}

fn column(header: &str) -> Col {
    let key = normalize_key(header);
    match key.as_str() {
        "name" | "property" | "trait" | "field" => Col::Name,
        "type" => Col::Type,
        "required" => Col::Required,
        "description" => Col::Description,
        k if k.contains("constraint") || k.contains("allowed") || k == "values" => Col::Constraints,
        _ => Col::Ignored,
    }
}

/// `#`…`######` followed by a space (or nothing): the number of `#`.
fn heading_level(t: &str) -> Option<usize> {
    let level = t.bytes().take_while(|&b| b == b'#').count();
    if (1..=6).contains(&level)
        && t[level..]
            .chars()
            .next()
            .is_none_or(|c| c == ' ' || c == '\t')
    {
        Some(level)
    } else {
        None
    }
}

/// The text of a `- `, `* ` or `+ ` list item.
fn list_item(t: &str) -> Option<&str> {
    ["- ", "* ", "+ "]
        .iter()
        .find_map(|p| t.strip_prefix(p))
        .map(str::trim)
}

/// Lowercase, without `*`, `` ` `` and `_` markup, whitespace collapsed, trailing `:` removed.
fn normalize_key(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .filter(|&c| c != '*' && c != '`')
        .collect::<String>()
        .to_lowercase();
    let cleaned = cleaned.trim().trim_end_matches(':');
    cleaned
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .trim_matches('_')
        .to_string()
}

/// Removes backticks.
fn strip_code(s: &str) -> String {
    s.replace('`', "")
}

/// A setting's value: the first `code` span, else the first word.
fn first_value(v: &str) -> String {
    let v = v.trim();
    if let Some(start) = v.find('`')
        && let Some(len) = v[start + 1..].find('`')
    {
        return v[start + 1..start + 1 + len].trim().to_string();
    }
    v.split_whitespace().next().unwrap_or("").to_string()
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `Name — description`, `Name – description`, `Name - description` or `Name: description`.
fn split_stage(item: &str) -> (&str, &str) {
    for sep in ["—", "–", " - ", ":"] {
        if let Some((name, desc)) = item.split_once(sep) {
            return (name, desc);
        }
    }
    (item, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = include_str!("../../TRACKING_PLAN.md");

    #[test]
    fn the_real_plan_parses_and_check_finds_nothing() {
        let plan = parse(PLAN).unwrap();
        assert_eq!(check(PLAN), Vec::<Diagnostic>::new());
        assert_eq!(plan.events().len(), 20);
        assert_eq!(plan.stages().len(), 4);
        assert_eq!(
            plan.settings().unplanned_events,
            UnplannedEventPolicy::Block
        );
        assert_eq!(
            plan.settings().unplanned_properties,
            UnplannedPropertyPolicy::Drop
        );
        assert_eq!(plan.settings().invalid_events, InvalidEventPolicy::Block);
        assert_eq!(plan.stage_of("teammate_invited"), Some("Expansion"));
        assert_eq!(plan.stage_of("page_viewed"), Some("Evaluation"));
        let trial = plan.event("trial_started").unwrap();
        let days = trial.property("trial_days").unwrap();
        assert_eq!(days.ty, PropertyType::Integer);
        assert_eq!(
            (days.constraints.min, days.constraints.max),
            (Some(1.0), Some(90.0))
        );
        let tier = trial.property("plan_tier").unwrap();
        assert_eq!(
            tier.constraints.values,
            ["free", "pro", "business", "enterprise"]
        );
        assert!(plan.trait_spec("seats_provisioned").is_some());
        assert!(
            plan.trait_spec("email")
                .unwrap()
                .constraints
                .pattern
                .is_some()
        );
    }

    #[test]
    fn the_real_plans_identity_rules_block_the_seed_values() {
        let plan = parse(PLAN).unwrap();
        let id = plan.identity();
        assert_eq!(id.priority, ["user_id", "email", "anonymous_id"]);
        assert_eq!(id.limit("user_id"), Some(1));
        assert_eq!(id.limit("anonymous_id"), Some(100));
        for v in [
            "null",
            "NULL",
            "undefined",
            "-1",
            "0",
            "anonymous",
            "Guest",
            "unknown",
            "",
            "  ",
            "000",
            "0-0",
        ] {
            assert!(id.is_blocked(v), "{v:?} should be blocked");
        }
        for v in ["u_123", "42", "ada@example.com"] {
            assert!(!id.is_blocked(v), "{v:?} should not be blocked");
        }
    }

    #[test]
    fn the_version_is_the_label_plus_a_fingerprint_of_the_source() {
        let a = parse(PLAN).unwrap();
        assert!(a.version().starts_with("2026.1+"));
        assert_eq!(a.version().len(), "2026.1+".len() + 16);
        let b = parse(&format!("{PLAN}\n")).unwrap();
        assert_ne!(a.version(), b.version());
        assert_eq!(a.version(), parse(PLAN).unwrap().version());
    }

    const BROKEN: &str = "\
## Settings

- Naming convention: `snake_case`
- Unplanned events: `maybe`

## Journey stages

- Activation — first value

## Events

### trial_started

Stage: Activation

Trial began.

| Property | Type | Required | Constraints | Description |
|---|---|---|---|---|
| `trial_days` | integr | yes | | days |

### trial_started

Stage: Activation

Again.
";

    #[test]
    fn a_broken_plan_reports_exactly_the_bad_lines() {
        let diags = check(BROKEN);
        let lines: Vec<usize> = diags.iter().map(|d| d.line).collect();
        assert_eq!(lines, [4, 20, 22], "{diags:#?}");
        assert!(diags.iter().all(|d| d.severity == Severity::Error));
        assert!(
            diags[0]
                .to_string()
                .starts_with("line 4: error: unplanned events")
        );
        assert!(diags[1].message.contains("integr"));
        assert!(diags[2].message.contains("line 12"));
        let err = parse(BROKEN).unwrap_err();
        assert_eq!(err.line, 4);
        assert!(matches!(err.kind, ParseErrorKind::BadSettingValue { .. }));
    }

    fn one_event(table_rows: &str) -> String {
        format!(
            "## Events\n\n### e\n\nAn event.\n\n| Name | Type | Required | Constraints |\n|-|-|-|-|\n{table_rows}"
        )
    }

    fn first_error(src: &str) -> ParseError {
        parse(src).unwrap_err()
    }

    #[test]
    fn min_greater_than_max_is_an_error_on_its_row() {
        let e = first_error(&one_event("| n | integer | no | min 5, max 1 |\n"));
        assert_eq!(e.line, 9);
        assert_eq!(
            e.kind,
            ParseErrorKind::MinGreaterThanMax { min: 5.0, max: 1.0 }
        );
    }

    #[test]
    fn an_enum_without_values_is_an_error() {
        let e = first_error(&one_event("| n | enum | no | |\n"));
        assert_eq!(e.kind, ParseErrorKind::EnumWithoutValues("n".into()));
    }

    #[test]
    fn a_bad_pattern_is_reported_as_a_bad_regex() {
        let e = first_error(&one_event("| n | string | no | pattern `(` |\n"));
        assert!(matches!(e.kind, ParseErrorKind::BadRegex { .. }));
    }

    #[test]
    fn a_duplicate_property_names_the_first_line() {
        let e = first_error(&one_event("| n | string | no | |\n| n | string | no | |\n"));
        assert_eq!(e.line, 10);
        assert_eq!(
            e.kind,
            ParseErrorKind::DuplicateProperty {
                name: "n".into(),
                first_line: 9
            }
        );
    }

    #[test]
    fn allowed_values_on_a_non_enum_are_rejected() {
        let e = first_error(&one_event("| n | string | no | `a`, `b` |\n"));
        assert!(matches!(
            e.kind,
            ParseErrorKind::ConstraintNotApplicable {
                constraint: "allowed values",
                ..
            }
        ));
    }

    #[test]
    fn a_row_with_the_wrong_number_of_cells_is_malformed() {
        let e = first_error(&one_event("| n | string |\n"));
        assert!(matches!(e.kind, ParseErrorKind::MalformedRow(_)));
    }

    #[test]
    fn a_table_without_a_type_column_is_rejected() {
        let e = first_error("## Traits\n\n| Name | Kind |\n|-|-|\n| a | b |\n");
        assert_eq!(e.line, 3);
        assert_eq!(e.kind, ParseErrorKind::MissingColumn("type"));
    }

    #[test]
    fn an_unknown_setting_and_an_unknown_stage_are_reported() {
        let src = "## Settings\n\n- Colour: blue\n\n## Events\n\n### e\n\nStage: Nowhere\n\nd\n";
        let diags = check(src);
        assert_eq!(diags.len(), 2, "{diags:#?}");
        assert_eq!(diags[0].line, 3);
        assert!(diags[0].message.contains("colour"));
        assert_eq!(diags[1].line, 9);
        assert!(diags[1].message.contains("Nowhere"));
    }

    #[test]
    fn pipes_can_be_escaped_in_patterns() {
        let plan = parse(&one_event("| n | string | no | pattern `^(a\\|b)$` |\n")).unwrap();
        let re = plan.event("e").unwrap().properties()[0]
            .constraints
            .pattern
            .clone()
            .unwrap();
        assert!(re.is_match("b"));
        assert!(!re.is_match("c"));
    }

    #[test]
    fn enum_values_in_backticks_may_contain_commas_and_spaces() {
        let plan = parse(&one_event(
            "| n | enum | yes | `a, b`, `Enterprise V2`, c |\n",
        ))
        .unwrap();
        let spec = &plan.event("e").unwrap().properties()[0];
        assert!(spec.required);
        assert_eq!(spec.constraints.values, ["a, b", "Enterprise V2", "c"]);
    }

    #[test]
    fn fenced_code_blocks_are_skipped() {
        let src = "## Events\n\n```\n### not_an_event\n```\n";
        assert!(parse(src).unwrap().events().is_empty());
    }

    #[test]
    fn an_unknown_section_is_a_warning_not_an_error() {
        let src = "## Changelog\n\n- added things\n";
        assert!(parse(src).is_ok());
        let diags = check(src);
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].severity, Severity::Warning);
    }

    #[test]
    fn keyword_clauses_need_a_separator_after_the_word() {
        assert_eq!(keyword("min 3", "min"), Some("3"));
        assert_eq!(keyword("min:3", "min"), Some("3"));
        assert_eq!(keyword("min3", "min"), Some("3"));
        assert_eq!(keyword("minimal", "min"), None);
    }

    #[test]
    fn cells_are_split_on_unescaped_pipes() {
        assert_eq!(split_cells("| a | b \\| c |"), ["a", "b | c"]);
        assert_eq!(split_cells("|a|b"), ["a", "b"]);
        assert_eq!(split_cells("| a | |"), ["a", ""]);
    }
}
