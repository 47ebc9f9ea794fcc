//! Privacy: erasure of a person (every stored copy removed or pseudonymised, the request forwarded
//! to each destination's deletion API and tracked as a *regulation*, like Segment's Regulations
//! API), suppression of their identifiers by hash, and retention of raw data.
//!
//! How an erasure finds every copy (one transaction, [`store::PrivacyStore::erase`]):
//! - rows keyed by the profile (or a profile merged into it) are deleted: its messages, traits,
//!   identities, accounts, aggregates, merges, memberships, outbox rows, resolution reports;
//! - rows that carry no profile key are matched by the person's identifier *values* (every
//!   identity of the profile): SQL narrows the candidates with `LIKE`, then [`Scrubber`] decides
//!   exactly — a value matches as a whole string, inside quotes, or (values of at least
//!   [`MIN_MENTION`] characters) as a word inside longer text, case-insensitively (Unicode), as
//!   sent or as escaped inside JSON text;
//! - blocked and unresolved messages whose own userId / anonymousId is the person's, rejected items
//!   and resolution reports mentioning them, and merges naming them are deleted; messages, traits
//!   and outbox payloads of *other* people that mention them are rewritten with [`ERASED`] in
//!   place of each mention; an API's or a stage's error message (outbox, delivery log, quarantine)
//!   that mentions them is replaced whole by [`REDACTED`], since it may quote more of them.
//!
//! What stays: rows keyed only by the random profile id (the audience feed's exit events), and
//! personal data that is not an identifier (a name) inside *other* people's data.
//!
//! What it captured (the identifiers destinations need) stays in the regulation row only until
//! every destination finished; then only SHA-256 hashes remain ([`identifier_hash`]), which is
//! also how suppressions are stored. A hash of a guessable value (an email) is pseudonymous, not
//! anonymous: it lets Touchpoint recognise the person again, which is what suppression needs.

pub mod api;
pub mod retention;
pub mod store;
pub mod worker;

pub use store::{PgPrivacy, PrivacyStore, SqlitePrivacy};

use crate::identity::{Identifier, ProfileId};
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::Notify;

/// What replaces an erased identifier inside data that is kept.
pub const ERASED: &str = "[erased]";

/// What replaces a whole API error message that named an erased person: such messages often quote
/// a request, so they may hold more of the person (a name) than the identifier that was found.
pub const REDACTED: &str = "[erased: this message named an erased person]";

/// Shortest value matched inside longer text; shorter ones (`u1`, `42`) only match a whole
/// string or a quoted one, so erasing user `1` does not rewrite every `1` in other people's data.
pub const MIN_MENTION: usize = 6;

/// The privacy services in the app state.
pub struct Privacy {
    /// Regulations, erasure and retention storage.
    pub store: Arc<dyn PrivacyStore>,
    /// Wakes the erasure worker (a new regulation).
    pub wake: Arc<Notify>,
    /// Retention settings.
    pub retention: retention::Policy,
}

impl Privacy {
    /// The privacy services over `store`, with the retention settings of `config`.
    pub fn new(
        store: Arc<dyn PrivacyStore>,
        config: &crate::config::Config,
        destinations: &crate::destinations::Destinations,
    ) -> Arc<Privacy> {
        let destinations_run =
            config.process && destinations.delivery.run_workers && !destinations.enabled.is_empty();
        let mut retention = retention::Policy::new(config.retention_days, destinations_run);
        if config.process && config.handoff.path.exists() {
            // The lead handoff stage reads the log too (its file exists, so it runs).
            retention.cursors.push(crate::handoff::store::CURSOR);
        }
        Arc::new(Privacy {
            store,
            wake: Arc::new(Notify::new()),
            retention,
        })
    }
}

/// Starts the erasure worker and the retention janitor when this process runs the pipeline.
pub fn start(state: &crate::state::AppState, config: &crate::config::Config) {
    if !config.process {
        return;
    }
    if state.destinations.delivery.run_workers {
        worker::spawn(state.privacy.clone(), state.destinations.clone());
    }
    retention::spawn(state.privacy.store.clone(), state.privacy.retention.clone());
}

/// The suppression key of an identifier: lowercase hex SHA-256 of `kind:value`.
pub fn identifier_hash(id: &Identifier) -> String {
    crate::destinations::sha256_hex(&format!("{}:{}", id.kind, id.value))
}

/// Finds and replaces mentions of a person's identifier values.
#[derive(Debug, Clone, Default)]
pub struct Scrubber {
    /// Each value case-folded ([`fold`]), as sent and, when it differs, as it reads inside a JSON
    /// string (`CORP\\jsmith`, `O\"Brien`), so raw JSON text (a rejected item, a logged request)
    /// is matched too; longest first, so a longer value wins over its prefix.
    values: Vec<String>,
}

/// Whether a byte may be part of an identifier (so a match must not be next to one).
fn word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'@' | b'_' | b'-' | b'+')
}

/// A text case-folded character by character (Unicode lowercase: `ÅSA` and `åsa` fold alike, as
/// identity normalises emails), so a value matches whatever case it was written in.
fn fold(text: &str) -> String {
    text.chars().flat_map(fold_char).collect()
}

/// One character case-folded: its Unicode lowercase, with a final sigma as any other sigma (identity
/// lowercases whole strings, which writes `ς` at the end of a word, while a character alone gives
/// `σ`).
fn fold_char(c: char) -> impl Iterator<Item = char> {
    c.to_lowercase().map(|l| if l == 'ς' { 'σ' } else { l })
}

/// A text folded for matching, with each folded character's source: the byte range of the
/// character it came from, and whether it is the first of that character's folded form.
struct Folded {
    chars: Vec<char>,
    source: Vec<(usize, usize)>,
    first: Vec<bool>,
}

impl Folded {
    fn new(text: &str) -> Folded {
        let mut folded = Folded {
            chars: Vec::with_capacity(text.len()),
            source: Vec::with_capacity(text.len()),
            first: Vec::with_capacity(text.len()),
        };
        for (at, c) in text.char_indices() {
            for (k, lower) in fold_char(c).enumerate() {
                folded.chars.push(lower);
                folded.source.push((at, at + c.len_utf8()));
                folded.first.push(k == 0);
            }
        }
        folded
    }

    /// Byte ranges of the source text whose folded form is `value`, in order, overlapping ones
    /// included; a match must cover whole source characters.
    fn find_all(&self, value: &[char]) -> Vec<(usize, usize)> {
        let (n, m) = (self.chars.len(), value.len());
        if m == 0 || m > n {
            return Vec::new();
        }
        (0..=n - m)
            .filter(|&i| {
                self.chars[i] == value[0]
                    && self.first[i]
                    && self.first.get(i + m).is_none_or(|f| *f)
                    && self.chars[i..i + m] == *value
            })
            .map(|i| (self.source[i].0, self.source[i + m - 1].1))
            .collect()
    }
}

impl Scrubber {
    /// A scrubber for these values (empty ones ignored).
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Scrubber {
        let mut out: Vec<String> = Vec::new();
        for v in values {
            let v = fold(v.trim());
            if v.is_empty() {
                continue;
            }
            let quoted = serde_json::to_string(&v).unwrap_or_default();
            let escaped = quoted
                .strip_prefix('"')
                .and_then(|q| q.strip_suffix('"'))
                .unwrap_or_default();
            if !escaped.is_empty() && escaped != v {
                out.push(escaped.to_owned());
            }
            out.push(v);
        }
        out.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        out.dedup();
        Scrubber { values: out }
    }

    /// Whether there is nothing to look for.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `LIKE` patterns (for `LOWER(column) LIKE p ESCAPE '\'`) that every text the scrubber would
    /// change matches: a superset, narrowed exactly by [`Scrubber::mentions`]. A cased letter
    /// outside ASCII is `_` (any one character): SQLite's `LOWER` and `LIKE` fold ASCII only, and
    /// PostgreSQL's `LOWER` folds it or not by the database's locale. So are `i` and `k`, the
    /// folds of `İ` and the Kelvin sign (and a Turkish locale lowers `I` to `ı`); `i` followed by
    /// a combining dot (İ folded) is `%`.
    pub fn like_patterns(&self) -> Vec<String> {
        let escape = |v: &str| {
            let mut out = String::with_capacity(v.len());
            let mut chars = v.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\\' | '%' | '_' => {
                        out.push('\\');
                        out.push(c);
                    }
                    'i' if chars.peek() == Some(&'\u{307}') => {
                        chars.next();
                        out.push('%');
                    }
                    'i' | 'k' => out.push('_'),
                    c if !c.is_ascii() && (c.is_lowercase() || c.is_uppercase()) => out.push('_'),
                    c => out.push(c),
                }
            }
            out
        };
        let mut out = Vec::new();
        for v in &self.values {
            let e = escape(v);
            if v.len() >= MIN_MENTION {
                out.push(format!("%{e}%"));
            } else {
                out.push(format!("%\"{e}\"%"));
                out.push(e);
            }
        }
        out
    }

    /// Byte ranges of `text` to replace: the whole (trimmed) text when it equals a value; quoted
    /// occurrences; and, for long values, occurrences not inside a longer identifier. Matching is
    /// case-insensitive ([`fold`]).
    fn ranges(&self, text: &str) -> Vec<(usize, usize)> {
        let trimmed = text.trim();
        let folded_whole = fold(trimmed);
        // A short value must be the whole text as it is (its LIKE pattern has no wildcards); a
        // long one may have white space around it.
        if self
            .values
            .iter()
            .any(|v| *v == folded_whole && (v.len() >= MIN_MENTION || trimmed.len() == text.len()))
        {
            let start = text.len() - text.trim_start().len();
            return vec![(start, start + trimmed.len())];
        }
        let bytes = text.as_bytes();
        let folded = Folded::new(text);
        let mut out: Vec<(usize, usize)> = Vec::new();
        for v in &self.values {
            let value: Vec<char> = v.chars().collect();
            for (s, e) in folded.find_all(&value) {
                let quoted = s > 0 && bytes[s - 1] == b'"' && bytes.get(e) == Some(&b'"');
                let bounded = (s == 0 || !word_byte(bytes[s - 1]))
                    && bytes.get(e).is_none_or(|b| !word_byte(*b));
                let overlaps = out.iter().any(|(a, b)| s < *b && *a < e);
                if (quoted || (v.len() >= MIN_MENTION && bounded)) && !overlaps {
                    out.push((s, e));
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// Whether `text` mentions one of the values.
    pub fn mentions(&self, text: &str) -> bool {
        !self.values.is_empty() && !self.ranges(text).is_empty()
    }

    /// `text` with every mention replaced by [`ERASED`]; `None` when it mentions none.
    pub fn scrub_text(&self, text: &str) -> Option<String> {
        let ranges = self.ranges(text);
        if ranges.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (s, e) in ranges {
            out.push_str(&text[at..s]);
            out.push_str(ERASED);
            at = e;
        }
        out.push_str(&text[at..]);
        Some(out)
    }

    /// [`REDACTED`] in place of a free text (an API's error message) that mentions one of the
    /// values; `None` when it mentions none.
    pub fn redact_text(&self, text: &str) -> Option<String> {
        self.mentions(text).then(|| REDACTED.to_owned())
    }

    /// Replaces mentions in every string value (not the keys) of a JSON document; returns whether
    /// anything changed.
    pub fn scrub_json(&self, value: &mut Value) -> bool {
        match value {
            Value::String(s) => match self.scrub_text(s) {
                Some(new) => {
                    *s = new;
                    true
                }
                None => false,
            },
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |changed, v| self.scrub_json(v) | changed),
            Value::Object(map) => map
                .values_mut()
                .fold(false, |changed, v| self.scrub_json(v) | changed),
            _ => false,
        }
    }

    /// A JSON text with mentions replaced (text that is not JSON is scrubbed as text); `None`
    /// when it mentions none.
    pub fn scrub_json_text(&self, text: &str) -> Option<String> {
        match serde_json::from_str::<Value>(text) {
            Ok(mut v) => self
                .scrub_json(&mut v)
                .then(|| serde_json::to_string(&v).unwrap_or_else(|_| ERASED.to_owned())),
            Err(_) => self.scrub_text(text),
        }
    }
}

/// A message that may concern the erased person, as the erasure reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRow {
    /// Log position.
    pub seq: i64,
    /// Its userId column.
    pub user_id: Option<String>,
    /// Its anonymousId column.
    pub anonymous_id: Option<String>,
    /// The message JSON.
    pub body: String,
    /// Its violations JSON.
    pub violations: String,
    /// The profile whose timeline it is on (`None`: blocked, dropped or not processed yet).
    pub profile_id: Option<ProfileId>,
}

/// What happens to such a message.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageFate {
    /// It is the person's own: deleted.
    Delete,
    /// Someone else's that mentions them: the mentions are replaced.
    Rewrite {
        /// New body.
        body: String,
        /// New violations.
        violations: String,
        /// New userId column (`None` when it was the person's).
        user_id: Option<String>,
        /// New anonymousId column.
        anonymous_id: Option<String>,
    },
    /// Not about them after all.
    Keep,
}

/// Decides a message's fate: it is the person's own when it is on an erased profile's timeline,
/// or on nobody's and its own userId / anonymousId is one of theirs (or it has neither).
pub fn message_fate(
    row: &MessageRow,
    erased_profiles: &[ProfileId],
    own: &[Identifier],
    scrubber: &Scrubber,
) -> MessageFate {
    let is_own = |kind: &str, v: &Option<String>| {
        v.as_deref()
            .is_some_and(|v| own.iter().any(|i| i.kind == kind && i.value == v))
    };
    let own_user = is_own("user_id", &row.user_id);
    let own_anon = is_own("anonymous_id", &row.anonymous_id);
    match &row.profile_id {
        Some(p) if erased_profiles.contains(p) => return MessageFate::Delete,
        None if own_user || own_anon || (row.user_id.is_none() && row.anonymous_id.is_none()) => {
            return MessageFate::Delete;
        }
        _ => {}
    }
    let body = scrubber.scrub_json_text(&row.body);
    let violations = scrubber.scrub_json_text(&row.violations);
    if body.is_none() && violations.is_none() && !own_user && !own_anon {
        return MessageFate::Keep;
    }
    MessageFate::Rewrite {
        body: body.unwrap_or_else(|| row.body.clone()),
        violations: violations.unwrap_or_else(|| row.violations.clone()),
        user_id: row.user_id.clone().filter(|_| !own_user),
        anonymous_id: row.anonymous_id.clone().filter(|_| !own_anon),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scrubber() -> Scrubber {
        Scrubber::new(["ada@example.com", "u1", "anon-device-7"])
    }

    #[test]
    fn identifiers_hash_as_sha256_of_kind_and_value() {
        // echo -n 'email:ada@example.com' | sha256sum
        assert_eq!(
            identifier_hash(&Identifier::new("email", "ada@example.com")),
            "9b62a3a2bce7c868f30d60f0818e84d225bceb56f6c2dccaa4ac388af5fd8f7f"
        );
        assert_ne!(
            identifier_hash(&Identifier::new("user_id", "x")),
            identifier_hash(&Identifier::new("anonymous_id", "x"))
        );
        assert_eq!(identifier_hash(&Identifier::new("user_id", "x")).len(), 64);
    }

    #[test]
    fn whole_values_quoted_values_and_long_words_are_mentions_but_parts_of_other_ids_are_not() {
        let s = scrubber();
        assert!(s.mentions(" ADA@example.com "));
        assert!(s.mentions("u1"));
        assert!(s.mentions(r#"user_id "u1" is a blocked value"#));
        assert!(s.mentions("mail to Ada@Example.com failed."));
        assert!(!s.mentions("u12"), "a short value is not found inside text");
        assert!(!s.mentions("seat u1 of 4"), "nor as a bare word");
        assert!(
            !s.mentions("xada@example.com"),
            "a longer email is someone else"
        );
        assert!(!s.mentions("anon-device-77"));
        assert!(!Scrubber::new([""]).mentions("anything"));
    }

    #[test]
    fn scrubbing_replaces_each_mention_and_keeps_the_rest() {
        let s = scrubber();
        assert_eq!(
            s.scrub_text("Property values were not valid: Ada@example.com (x)")
                .unwrap(),
            "Property values were not valid: [erased] (x)"
        );
        assert_eq!(s.scrub_text("nothing here"), None);
        assert_eq!(
            s.redact_text(r#"HTTP 422: {"email":"ada@example.com","name":"Ada L"}"#)
                .as_deref(),
            Some(REDACTED),
            "an API error quoting the person goes whole"
        );
        assert_eq!(s.redact_text("HTTP 503: busy"), None);
        let mut v = json!({"userId": "bob", "properties": {"invitee": "ada@example.com",
            "note": "invited ada@example.com and u1", "ids": ["u1", "u2"]}});
        assert!(s.scrub_json(&mut v));
        assert_eq!(v["properties"]["invitee"], ERASED);
        assert_eq!(v["properties"]["note"], "invited [erased] and u1");
        assert_eq!(v["properties"]["ids"], json!([ERASED, "u2"]));
        assert_eq!(v["userId"], "bob");
    }

    #[test]
    fn values_are_found_in_any_case_including_letters_outside_ascii() {
        let s = Scrubber::new(["åsa@example.com", "JÜRGEN"]);
        assert!(s.mentions("ÅSA@EXAMPLE.COM"));
        assert!(s.mentions("mail to Åsa@Example.com failed"));
        assert!(s.mentions(r#"{"userId":"jürgen"}"#));
        assert_eq!(
            s.scrub_text("from ÅSA@EXAMPLE.COM to x").unwrap(),
            "from [erased] to x"
        );
        assert!(
            !s.mentions("xåsa@example.com"),
            "a longer email is someone else"
        );
        // A letter whose lowercase is longer (İ → i̇) keeps the byte ranges of the source text.
        let s = Scrubber::new(["İstanbul-42"]);
        assert_eq!(s.scrub_text("to İSTANBUL-42.").unwrap(), "to [erased].");
    }

    #[test]
    fn values_that_json_escapes_are_found_in_json_text_as_well_as_in_strings() {
        let s = Scrubber::new([r"CORP\jsmith", r#"O"Brien-77"#]);
        let raw = r#"{"type":"bogus","userId":"CORP\\jsmith","note":"ask O\"Brien-77"}"#;
        assert!(s.mentions(raw));
        let scrubbed = s.scrub_text(raw).unwrap();
        let v: Value = serde_json::from_str(&scrubbed).expect("still JSON");
        assert_eq!(v["userId"], ERASED);
        assert_eq!(v["note"], "ask [erased]");
        let mut parsed: Value = serde_json::from_str(raw).unwrap();
        assert!(s.scrub_json(&mut parsed));
        assert_eq!(parsed["userId"], ERASED);
        let p = s.like_patterns();
        assert!(p.contains(&r"%corp\\\\jsm_th%".to_owned()), "{p:?}");
        assert!(p.contains(&r#"%o\\"br_en-77%"#.to_owned()), "{p:?}");
    }

    #[test]
    fn like_patterns_leave_letters_outside_ascii_to_any_one_character() {
        let p = Scrubber::new(["JÜRGEN@example.de", "東京-user"]).like_patterns();
        assert!(p.contains(&"%j_rgen@example.de%".to_owned()), "{p:?}");
        assert!(
            p.contains(&"%東京-user%".to_owned()),
            "uncased letters stay: {p:?}"
        );
    }

    #[test]
    fn like_patterns_cover_every_text_the_scrubber_changes() {
        /// SQL `LIKE` with `ESCAPE '\'`; `ci`: ASCII case-insensitive, as SQLite's.
        fn like(p: &[char], t: &[char], ci: bool) -> bool {
            let eq = |a: char, b: char| a == b || (ci && a.eq_ignore_ascii_case(&b));
            match p.split_first() {
                None => t.is_empty(),
                Some(('%', rest)) => (0..=t.len()).any(|i| like(rest, &t[i..], ci)),
                Some(('_', rest)) => !t.is_empty() && like(rest, &t[1..], ci),
                Some(('\\', [c, rest @ ..])) | Some((c, rest)) => {
                    !t.is_empty() && eq(*c, t[0]) && like(rest, &t[1..], ci)
                }
            }
        }
        // How each database lowers a column: SQLite and PostgreSQL in the C locale fold ASCII
        // only; PostgreSQL in a UTF-8 locale folds everything; LIKE is case-insensitive (ASCII)
        // on SQLite only.
        type Database = (&'static str, fn(&str) -> String, bool);
        let databases: [Database; 3] = [
            ("sqlite", |t| t.to_ascii_lowercase(), true),
            ("postgres C", |t| t.to_ascii_lowercase(), false),
            ("postgres UTF-8", |t| t.to_lowercase(), false),
        ];
        let cases: [(&str, &[&str]); 9] = [
            ("a_b%c@example.com", &["to A_B%C@EXAMPLE.COM now"]),
            ("u1", &["u1", r#"{"userId":"u1"}"#]),
            (
                "åsa@example.com",
                &["ÅSA@EXAMPLE.COM", "mail to Åsa@example.com"],
            ),
            ("İstanbul-42", &["to İSTANBUL-42."]),
            ("kelvin-user", &["\u{212A}ELVIN-USER"]),
            ("νίκος@example.gr", &["ΝΊΚΟΣ@EXAMPLE.GR"]),
            (
                r"CORP\jsmith",
                &[r#"{"userId":"CORP\\jsmith"}"#, r"CORP\jsmith"],
            ),
            ("JÜRGEN", &[r#"{"userId":"jürgen"}"#, "JÜRGEN"]),
            (
                "ada@example.com",
                &[" ADA@example.com ", "ask Ada@Example.com"],
            ),
        ];
        for (value, texts) in cases {
            let s = Scrubber::new([value]);
            let patterns: Vec<Vec<char>> = s
                .like_patterns()
                .iter()
                .map(|p| p.chars().collect())
                .collect();
            for text in texts {
                assert!(s.mentions(text), "{value:?} in {text:?}");
                for (db, lower, ci) in databases {
                    let lowered: Vec<char> = lower(text).chars().collect();
                    assert!(
                        patterns.iter().any(|p| like(p, &lowered, ci)),
                        "{db}: no pattern of {value:?} selects {text:?}: {:?}",
                        s.like_patterns()
                    );
                }
            }
        }
        // A short value with white space around it is not the whole text, so not a mention.
        assert!(!Scrubber::new(["u1"]).mentions(" u1 "));
    }

    #[test]
    fn the_person_s_own_messages_are_deleted_and_others_mentioning_them_rewritten() {
        let own = [
            Identifier::new("user_id", "u1"),
            Identifier::new("email", "ada@example.com"),
        ];
        let erased = vec![ProfileId::from("p-ada")];
        let s = Scrubber::new(own.iter().map(|i| i.value.as_str()));
        let row = |user: Option<&str>, profile: Option<&str>, body: Value| MessageRow {
            seq: 1,
            user_id: user.map(str::to_owned),
            anonymous_id: None,
            body: body.to_string(),
            violations: "[]".into(),
            profile_id: profile.map(ProfileId::from),
        };
        let on_timeline = row(Some("u1"), Some("p-ada"), json!({}));
        assert_eq!(
            message_fate(&on_timeline, &erased, &own, &s),
            MessageFate::Delete
        );
        let blocked = row(Some("u1"), None, json!({"userId": "u1"}));
        assert_eq!(
            message_fate(&blocked, &erased, &own, &s),
            MessageFate::Delete
        );
        let referral = row(
            Some("bob"),
            Some("p-bob"),
            json!({"userId": "bob", "properties": {"invitee": "ada@example.com"}}),
        );
        match message_fate(&referral, &erased, &own, &s) {
            MessageFate::Rewrite { body, user_id, .. } => {
                assert!(!body.contains("ada@example.com") && body.contains(ERASED));
                assert_eq!(user_id.as_deref(), Some("bob"));
            }
            other => panic!("expected a rewrite, got {other:?}"),
        }
        let unrelated = row(Some("bob"), None, json!({"userId": "bob"}));
        assert_eq!(
            message_fate(&unrelated, &erased, &own, &s),
            MessageFate::Keep
        );
    }
}
