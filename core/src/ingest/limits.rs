//! Limits on a message as it will be stored: checked after the batch envelope is merged into each
//! item and after the server's own stamps, so no route around them (envelope `context`, edge
//! enrichment, a gzip body) can store more than they allow.
//!
//! Pure: every check is a function of the message, unit-tested here.

use serde_json::{Map, Value};
use touchpoint_tracking_plan::Message;

/// Largest stored message, in bytes of JSON (Segment's 32 KB).
pub const MAX_MESSAGE_BYTES: usize = touchpoint_tracking_plan::protocol::MAX_MESSAGE_BYTES;
/// Longest identifier (userId, anonymousId, groupId, previousId, messageId, an externalId), in bytes.
/// PostgreSQL's b-tree index refuses rows past ~2.7 KB; 256 is generous for any real id.
pub const MAX_IDENTIFIER_BYTES: usize = 256;
/// Longest event name, in bytes.
pub const MAX_EVENT_NAME_BYTES: usize = 256;
/// Most `context.externalIds` entries in one message.
pub const MAX_EXTERNAL_IDS: usize = 25;
/// Longest externalId `type`, in bytes; the type is an identifier kind on the profile.
pub const MAX_EXTERNAL_ID_TYPE_BYTES: usize = 64;
/// Most keys in any one JSON object of a message (properties, traits, context, nested objects).
pub const MAX_KEYS_PER_OBJECT: usize = 500;
/// Deepest nesting of objects and arrays below the message itself.
pub const MAX_DEPTH: usize = 16;
/// Largest absolute number that survives a round trip through a double exactly (2^53).
/// Larger numbers are stored as parsed (integers within 64 bits exactly, others as the nearest
/// double) but reported, and never summed into aggregates.
pub const MAX_SAFE_NUMBER: f64 = 9_007_199_254_740_992.0;

/// Why a message cannot be stored. Each kind has a stable [`LimitError::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Larger than [`MAX_MESSAGE_BYTES`] once merged and stamped.
    #[error(
        "message is {0} bytes as stored (after merging the batch envelope); the limit is {MAX_MESSAGE_BYTES}"
    )]
    TooLarge(usize),
    /// A NUL character in a key or string, wherever it came from.
    #[error("strings may not contain the NUL character (\\u0000); found in {0}")]
    Nul(String),
    /// An identifier or event name past its length limit.
    #[error("{field} is {len} bytes; the limit is {limit}")]
    TooLong {
        /// The wire name of the field.
        field: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// More than [`MAX_EXTERNAL_IDS`] externalIds.
    #[error("context.externalIds has {0} entries; at most {MAX_EXTERNAL_IDS} are accepted")]
    TooManyExternalIds(usize),
    /// An externalId whose `type` is not a short `[A-Za-z0-9_.-]` name.
    #[error(
        "context.externalIds[{0}].type must be 1–{MAX_EXTERNAL_ID_TYPE_BYTES} characters of letters, digits, '_', '.' or '-'"
    )]
    BadExternalIdType(usize),
    /// An object with more than [`MAX_KEYS_PER_OBJECT`] keys.
    #[error("{field} has {count} keys; at most {MAX_KEYS_PER_OBJECT} are accepted")]
    TooManyKeys {
        /// Where, e.g. `properties`.
        field: String,
        /// How many keys it has.
        count: usize,
    },
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("{0} is nested more than {MAX_DEPTH} levels deep")]
    TooDeep(String),
}

impl LimitError {
    /// The stable machine-readable code clients branch on.
    pub fn code(&self) -> &'static str {
        match self {
            LimitError::TooLarge(_) => "message_too_large",
            LimitError::Nul(_) => "nul_character",
            LimitError::TooLong { .. } => "identifier_too_long",
            LimitError::TooManyExternalIds(_) => "too_many_external_ids",
            LimitError::BadExternalIdType(_) => "bad_external_id_type",
            LimitError::TooManyKeys { .. } => "too_many_keys",
            LimitError::TooDeep(_) => "too_deep",
        }
    }

    /// Whether the refusal is about size (HTTP 413) rather than shape (HTTP 400).
    pub fn is_size(&self) -> bool {
        matches!(self, LimitError::TooLarge(_))
    }
}

/// Checks every limit on `message` as it will be stored; `stored_bytes` is the length of its JSON.
pub fn check(message: &Message, stored_bytes: usize) -> Result<(), LimitError> {
    if stored_bytes > MAX_MESSAGE_BYTES {
        return Err(LimitError::TooLarge(stored_bytes));
    }
    let ids = [
        ("userId", message.user_id.as_deref(), MAX_IDENTIFIER_BYTES),
        (
            "anonymousId",
            message.anonymous_id.as_deref(),
            MAX_IDENTIFIER_BYTES,
        ),
        ("groupId", message.group_id.as_deref(), MAX_IDENTIFIER_BYTES),
        (
            "previousId",
            message.previous_id.as_deref(),
            MAX_IDENTIFIER_BYTES,
        ),
        (
            "messageId",
            message.message_id.as_deref(),
            MAX_IDENTIFIER_BYTES,
        ),
        ("event", message.event.as_deref(), MAX_EVENT_NAME_BYTES),
    ];
    for (field, value, limit) in ids {
        if let Some(v) = value {
            if v.contains('\0') {
                return Err(LimitError::Nul(field.into()));
            }
            if v.len() > limit {
                return Err(LimitError::TooLong {
                    field: field.into(),
                    len: v.len(),
                    limit,
                });
            }
        }
    }
    let strings = [
        ("name", &message.name),
        ("category", &message.category),
        ("timestamp", &message.timestamp),
        ("originalTimestamp", &message.original_timestamp),
        ("sentAt", &message.sent_at),
        ("receivedAt", &message.received_at),
    ];
    for (field, value) in strings {
        if value.as_deref().is_some_and(|v| v.contains('\0')) {
            return Err(LimitError::Nul(field.into()));
        }
    }
    let maps = [
        ("properties", &message.properties),
        ("traits", &message.traits),
        ("context", &message.context),
        ("integrations", &message.integrations),
        ("", &message.extra),
    ];
    for (field, map) in maps {
        // The message's own maps are one level below it.
        check_object(field, map, usize::from(!field.is_empty()))?;
    }
    check_external_ids(message)
}

fn check_external_ids(message: &Message) -> Result<(), LimitError> {
    let Some(Value::Array(external)) = message.context.get("externalIds") else {
        return Ok(());
    };
    if external.len() > MAX_EXTERNAL_IDS {
        return Err(LimitError::TooManyExternalIds(external.len()));
    }
    for (i, e) in external.iter().enumerate() {
        if let Some(kind) = e.get("type").and_then(Value::as_str)
            && !is_kind_name(kind)
        {
            return Err(LimitError::BadExternalIdType(i));
        }
        if let Some(id) = e.get("id").and_then(Value::as_str)
            && id.len() > MAX_IDENTIFIER_BYTES
        {
            return Err(LimitError::TooLong {
                field: format!("context.externalIds[{i}].id"),
                len: id.len(),
                limit: MAX_IDENTIFIER_BYTES,
            });
        }
    }
    Ok(())
}

/// Whether `kind` may name an identifier kind: 1–64 of `[A-Za-z0-9_.-]`.
pub fn is_kind_name(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= MAX_EXTERNAL_ID_TYPE_BYTES
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn check_object(field: &str, map: &Map<String, Value>, depth: usize) -> Result<(), LimitError> {
    if map.len() > MAX_KEYS_PER_OBJECT {
        return Err(LimitError::TooManyKeys {
            field: if field.is_empty() { "message" } else { field }.to_owned(),
            count: map.len(),
        });
    }
    for (k, v) in map {
        if k.contains('\0') {
            return Err(LimitError::Nul(join(field, "<key>")));
        }
        check_value(&join(field, k), v, depth)?;
    }
    Ok(())
}

/// The limits a trait value must keep when it arrives outside a message (a CRM field synced into
/// `traits.<name>`): no NUL character, no deeper nesting or more keys than a message may carry.
pub fn check_trait_value(name: &str, value: &Value) -> Result<(), LimitError> {
    check_value(&join("traits", name), value, 1)
}

fn check_value(field: &str, value: &Value, depth: usize) -> Result<(), LimitError> {
    match value {
        Value::String(s) if s.contains('\0') => Err(LimitError::Nul(field.to_owned())),
        Value::Object(map) => {
            if depth + 1 > MAX_DEPTH {
                return Err(LimitError::TooDeep(field.to_owned()));
            }
            check_object(field, map, depth + 1)
        }
        Value::Array(items) => {
            if depth + 1 > MAX_DEPTH {
                return Err(LimitError::TooDeep(field.to_owned()));
            }
            items
                .iter()
                .try_for_each(|item| check_value(&format!("{field}[]"), item, depth + 1))
        }
        _ => Ok(()),
    }
}

/// Numbers in properties and traits that a double cannot hold exactly (|x| > 2^53): each is
/// reported as a finding (the message is flagged, not refused) and aggregates skip them.
pub fn unsafe_numbers(message: &Message) -> Vec<String> {
    let mut out = Vec::new();
    for (bag, map) in [
        ("properties", &message.properties),
        ("traits", &message.traits),
    ] {
        for (k, v) in map {
            if let Value::Number(n) = v
                && !is_safe_number(n.as_f64())
            {
                out.push(format!("{bag}.{k}"));
            }
        }
    }
    out
}

/// Whether a number may be summed: finite and within ±2^53.
pub fn is_safe_number(x: Option<f64>) -> bool {
    x.is_some_and(|x| x.is_finite() && x.abs() <= MAX_SAFE_NUMBER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(v: Value) -> Message {
        Message::from_value(v, None).unwrap().message
    }

    fn checked(v: Value) -> Result<(), LimitError> {
        let m = msg(v);
        let bytes = serde_json::to_string(&m).unwrap().len();
        check(&m, bytes)
    }

    #[test]
    fn an_ordinary_message_is_within_every_limit() {
        assert_eq!(
            checked(json!({"type": "track", "event": "e", "userId": "u",
                "properties": {"a": [1, {"b": "c"}]}, "context": {"externalIds": [{"type": "hubspot_id", "id": "7"}]}})),
            Ok(())
        );
    }

    #[test]
    fn a_nul_added_after_parsing_is_refused_wherever_it_sits() {
        let mut m = msg(json!({"type": "track", "event": "e", "userId": "u"}));
        m.context.insert("page".into(), json!({"title": "a\u{0}b"}));
        assert_eq!(
            check(&m, 10),
            Err(LimitError::Nul("context.page.title".into()))
        );
        let mut m = msg(json!({"type": "track", "event": "e", "userId": "u"}));
        m.integrations.insert("x\u{0}".into(), json!(true));
        assert_eq!(check(&m, 10).unwrap_err().code(), "nul_character");
    }

    #[test]
    fn the_stored_size_is_what_counts() {
        let m = msg(json!({"type": "track", "event": "e", "userId": "u"}));
        let err = check(&m, MAX_MESSAGE_BYTES + 1).unwrap_err();
        assert!(err.is_size());
        assert_eq!(err.code(), "message_too_large");
    }

    #[test]
    fn long_identifiers_and_event_names_are_refused_with_the_field() {
        let long = "x".repeat(MAX_IDENTIFIER_BYTES + 1);
        let err = checked(json!({"type": "track", "event": "e", "userId": long})).unwrap_err();
        assert_eq!(err.code(), "identifier_too_long");
        assert!(err.to_string().starts_with("userId is 257 bytes"));
        let err = checked(json!({"type": "track", "event": long, "userId": "u"})).unwrap_err();
        assert!(err.to_string().starts_with("event is"));
        let err = checked(json!({"type": "track", "event": "e", "userId": "u",
            "context": {"externalIds": [{"type": "crm", "id": long}]}}))
        .unwrap_err();
        assert!(err.to_string().contains("externalIds[0].id"));
    }

    #[test]
    fn external_ids_are_limited_in_number_and_kind_names() {
        let many: Vec<Value> = (0..=MAX_EXTERNAL_IDS)
            .map(|i| json!({"type": format!("kind_{i}"), "id": "1"}))
            .collect();
        let err = checked(json!({"type": "track", "event": "e", "userId": "u",
            "context": {"externalIds": many}}))
        .unwrap_err();
        assert_eq!(err, LimitError::TooManyExternalIds(MAX_EXTERNAL_IDS + 1));
        let err = checked(json!({"type": "track", "event": "e", "userId": "u",
            "context": {"externalIds": [{"type": "ok", "id": "1"}, {"type": "has space", "id": "1"}]}}))
        .unwrap_err();
        assert_eq!(err, LimitError::BadExternalIdType(1));
    }

    #[test]
    fn wide_and_deep_objects_are_refused() {
        let wide: Map<String, Value> = (0..=MAX_KEYS_PER_OBJECT)
            .map(|i| (format!("k{i}"), json!(i)))
            .collect();
        let err =
            checked(json!({"type": "track", "event": "e", "userId": "u", "properties": wide}))
                .unwrap_err();
        assert_eq!(err.code(), "too_many_keys");
        let mut deep = json!(1);
        for _ in 0..MAX_DEPTH {
            deep = json!([deep]);
        }
        assert_eq!(
            checked(
                json!({"type": "track", "event": "e", "userId": "u", "properties": {"d": deep.clone()}})
            ),
            Err(LimitError::TooDeep(format!(
                "properties.d{}",
                "[]".repeat(MAX_DEPTH - 1)
            )))
        );
        // One level less is fine.
        let Value::Array(mut inner) = deep else {
            unreachable!()
        };
        assert_eq!(
            checked(
                json!({"type": "track", "event": "e", "userId": "u", "properties": {"d": inner.remove(0)}})
            ),
            Ok(())
        );
    }

    #[test]
    fn numbers_past_two_to_the_53rd_are_reported_not_refused() {
        let m = msg(
            json!({"type": "track", "event": "e", "userId": "u", "properties": {"row_count": 1e308, "ok": 3}}),
        );
        assert_eq!(unsafe_numbers(&m), vec!["properties.row_count".to_string()]);
        assert!(is_safe_number(Some(MAX_SAFE_NUMBER)));
        assert!(!is_safe_number(Some(-1e16)));
        assert!(!is_safe_number(None));
    }

    #[test]
    fn kind_names_are_short_plain_words() {
        assert!(is_kind_name("ga_client_id"));
        assert!(is_kind_name("salesforce.contact-id"));
        assert!(!is_kind_name(""));
        assert!(!is_kind_name("a/b"));
        assert!(!is_kind_name(&"k".repeat(65)));
    }
}
