//! Segment-spec wire-format messages (track, page, screen, identify, group, alias) and batch envelopes.
//!
//! These types accept what analytics.js, analytics-node, analytics-python and RudderStack SDKs send:
//! numeric ids are normalised to strings (and reported as [`Notice`]s), unknown fields are kept in
//! [`Message::extra`] so a stored message round-trips intact.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// The six Segment message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    /// A user action (`event` names it).
    Track,
    /// A web page view.
    Page,
    /// A mobile screen view.
    Screen,
    /// Ties a user to their traits.
    Identify,
    /// Ties a user to a group (account, workspace).
    Group,
    /// Merges a previous id into a user id.
    Alias,
}

impl MessageType {
    /// All types, in the order the API documents them.
    pub const ALL: [MessageType; 6] = [
        MessageType::Track,
        MessageType::Page,
        MessageType::Screen,
        MessageType::Identify,
        MessageType::Group,
        MessageType::Alias,
    ];

    /// The wire name (`"track"`, `"page"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Track => "track",
            MessageType::Page => "page",
            MessageType::Screen => "screen",
            MessageType::Identify => "identify",
            MessageType::Group => "group",
            MessageType::Alias => "alias",
        }
    }

    /// Parses a wire name; analytics-python and some RudderStack SDKs send capitalised names.
    pub fn parse(s: &str) -> Option<MessageType> {
        MessageType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One Segment-spec message. Field names follow the wire format (camelCase).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// The message type.
    #[serde(rename = "type")]
    pub kind: MessageType,
    /// Client-generated unique id, used for deduplication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Device/browser id for a not-yet-known visitor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    /// The canonical id of a known user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Track: the event name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Page/screen: the page name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Page: the page category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Group: the group (account) id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Alias: the id being merged into `user_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_id: Option<String>,
    /// When the event happened (ISO-8601); corrected for clock skew by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// The client's own timestamp before skew correction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_timestamp: Option<String>,
    /// When the client sent the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
    /// When the server received it (set by the server, never trusted from the client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<String>,
    /// Track/page/screen properties.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub properties: Map<String, Value>,
    /// Identify/group traits.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub traits: Map<String, Value>,
    /// Context: ip, userAgent, page, locale, timezone, campaign, library, device, os, screen, consent…
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub context: Map<String, Value>,
    /// Per-destination switches.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub integrations: Map<String, Value>,
    /// The write key when sent in the body; never serialised back out.
    #[serde(default, skip_serializing)]
    pub write_key: Option<String>,
    /// Every field this type does not name, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Why a JSON value is not an acceptable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The value is not a JSON object.
    #[error("a message must be a JSON object")]
    NotAnObject,
    /// No `type` field and none implied by the endpoint.
    #[error("missing \"type\"")]
    MissingType,
    /// `type` is not one of the six Segment types.
    #[error("unknown type {0:?}: expected track, page, screen, identify, group or alias")]
    UnknownType(String),
    /// Neither `userId` nor `anonymousId`.
    #[error("missing userId or anonymousId")]
    MissingIdentity,
    /// A track without `event`.
    #[error("track requires a non-empty \"event\"")]
    MissingEvent,
    /// A group without `groupId`.
    #[error("group requires \"groupId\"")]
    MissingGroupId,
    /// An alias without `previousId`.
    #[error("alias requires \"previousId\" and \"userId\"")]
    MissingPreviousId,
    /// A string (or key) contains the NUL character, which no store accepts as text.
    #[error("strings may not contain the NUL character (\\u0000)")]
    NulCharacter,
    /// A field has a JSON type the spec does not allow.
    #[error("field {field:?} must be {expected}")]
    BadField {
        /// The wire name of the field.
        field: &'static str,
        /// What the spec expects, e.g. "a string" or "an object".
        expected: &'static str,
    },
}

/// Something the parser changed to make a message conform, reported instead of silently fixed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// The wire name of the field that was changed.
    pub field: String,
    /// What was done.
    pub message: String,
}

/// A parsed message with the normalisations applied to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The message.
    pub message: Message,
    /// Normalisations the parser applied (e.g. a numeric userId turned into a string).
    pub notices: Vec<Notice>,
}

const ID_FIELDS: [&str; 4] = ["userId", "anonymousId", "groupId", "previousId"];
const STRING_FIELDS: [&str; 9] = [
    "messageId",
    "event",
    "name",
    "category",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "receivedAt",
    "writeKey",
];
const OBJECT_FIELDS: [&str; 4] = ["properties", "traits", "context", "integrations"];

impl Message {
    /// Parses a JSON value into a message.
    ///
    /// `implied` is the type given by the endpoint (`/v1/track` implies track); a `type` in the body
    /// must then agree with it. Numeric ids become strings and are reported; `null` optional fields
    /// are treated as absent.
    pub fn from_value(value: Value, implied: Option<MessageType>) -> Result<Parsed, MessageError> {
        let Value::Object(mut map) = value else {
            return Err(MessageError::NotAnObject);
        };
        if map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)) {
            return Err(MessageError::NulCharacter);
        }
        let mut notices = Vec::new();
        let kind = match map.get("type") {
            None | Some(Value::Null) => implied.ok_or(MessageError::MissingType)?,
            Some(Value::String(s)) => {
                MessageType::parse(s).ok_or_else(|| MessageError::UnknownType(s.clone()))?
            }
            Some(_) => {
                return Err(MessageError::BadField {
                    field: "type",
                    expected: "a string",
                });
            }
        };
        if let Some(implied) = implied
            && implied != kind
        {
            return Err(MessageError::UnknownType(format!(
                "{kind} sent to the /{implied} endpoint"
            )));
        }
        map.insert("type".into(), Value::String(kind.as_str().into()));
        for field in ID_FIELDS {
            match map.get_mut(field) {
                Some(Value::Number(n)) if !exact_id(n) => {
                    // Beyond 2^53 a JSON number has already lost digits: two people's ids
                    // could become one string.
                    return Err(MessageError::BadField {
                        field,
                        expected: "a string, or an integer within 64 bits",
                    });
                }
                Some(Value::Number(n)) => {
                    let s = n.to_string();
                    notices.push(Notice {
                        field: field.into(),
                        message: format!("number {s} normalised to the string \"{s}\""),
                    });
                    map.insert(field.into(), Value::String(s));
                }
                Some(Value::Null) => {
                    map.remove(field);
                }
                Some(Value::String(_)) | None => {}
                Some(_) => {
                    return Err(MessageError::BadField {
                        field,
                        expected: "a string or a number",
                    });
                }
            }
        }
        for field in STRING_FIELDS {
            match map.get(field) {
                Some(Value::Null) => {
                    map.remove(field);
                }
                Some(Value::String(_)) | None => {}
                Some(_) => {
                    return Err(MessageError::BadField {
                        field,
                        expected: "a string",
                    });
                }
            }
        }
        // A messageId of spaces alone is no messageId: every later message that sent it would be
        // dropped as a repeat. (Blank user and anonymous ids reach identity resolution, which
        // never takes them as identifiers and reports them.)
        if let Some(Value::String(s)) = map.get("messageId")
            && !s.is_empty()
            && s.trim().is_empty()
        {
            map.remove("messageId");
            notices.push(Notice {
                field: "messageId".into(),
                message: "messageId of white space only ignored".into(),
            });
        }
        for field in OBJECT_FIELDS {
            match map.get(field) {
                Some(Value::Null) => {
                    map.remove(field);
                }
                Some(Value::Object(_)) | None => {}
                Some(_) => {
                    return Err(MessageError::BadField {
                        field,
                        expected: "an object",
                    });
                }
            }
        }
        let message: Message =
            serde_json::from_value(Value::Object(map)).map_err(|_| MessageError::NotAnObject)?;
        message.check_required()?;
        Ok(Parsed { message, notices })
    }

    fn check_required(&self) -> Result<(), MessageError> {
        // White space alone names no one and no event: such a message is refused with the
        // field named, not stored where it would reach no profile.
        let present = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        if !present(&self.user_id) && !present(&self.anonymous_id) {
            return Err(MessageError::MissingIdentity);
        }
        match self.kind {
            MessageType::Track if !present(&self.event) => Err(MessageError::MissingEvent),
            MessageType::Group if !present(&self.group_id) => Err(MessageError::MissingGroupId),
            MessageType::Alias if !present(&self.previous_id) || !present(&self.user_id) => {
                Err(MessageError::MissingPreviousId)
            }
            _ => Ok(()),
        }
    }

    /// The name the tracking plan knows this message by: the event for a track, `page_viewed`-style
    /// names are not invented; page/screen use their type, identify/group/alias theirs.
    pub fn plan_name(&self) -> &str {
        match self.kind {
            MessageType::Track => self.event.as_deref().unwrap_or(""),
            other => other.as_str(),
        }
    }

    /// The property bag the plan validates: properties for track/page/screen, traits for
    /// identify/group, nothing for alias.
    pub fn payload(&self) -> &Map<String, Value> {
        match self.kind {
            MessageType::Identify | MessageType::Group => &self.traits,
            _ => &self.properties,
        }
    }

    /// Mutable access to [`Message::payload`].
    pub fn payload_mut(&mut self) -> &mut Map<String, Value> {
        match self.kind {
            MessageType::Identify | MessageType::Group => &mut self.traits,
            _ => &mut self.properties,
        }
    }

    /// The `userId`, or else the `anonymousId`: who this message is about on the wire.
    pub fn actor(&self) -> &str {
        self.user_id
            .as_deref()
            .filter(|s| !s.is_empty())
            .or(self.anonymous_id.as_deref())
            .unwrap_or("")
    }
}

/// Whether a numeric id reads back exactly as sent: an integer that fits 64 bits. Anything else
/// has lost digits in parsing or may have (18446744073709551616 and …617 alike; 1.00000000000000001
/// and …02 both read 1.0).
fn exact_id(n: &serde_json::Number) -> bool {
    n.is_i64() || n.is_u64()
}

fn contains_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

/// A `/v1/batch` envelope: `{batch: […], sentAt, context, integrations, writeKey}`.
///
/// Items are kept as raw JSON so each can be size-checked and parsed on its own; envelope `context`
/// and `integrations` are merged under each item's own.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchEnvelope<'a> {
    /// The messages, unparsed.
    #[serde(borrow)]
    pub batch: Vec<&'a serde_json::value::RawValue>,
    /// When the client sent the batch.
    #[serde(default)]
    pub sent_at: Option<String>,
    /// Context shared by every item.
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
    /// Integrations shared by every item.
    #[serde(default)]
    pub integrations: Option<Map<String, Value>>,
    /// The write key when not sent with HTTP Basic auth.
    #[serde(default)]
    pub write_key: Option<String>,
}

impl BatchEnvelope<'_> {
    /// Applies the envelope's shared fields to one parsed item (the item's own values win).
    pub fn apply_to(&self, message: &mut Message) {
        if message.sent_at.is_none() {
            message.sent_at.clone_from(&self.sent_at);
        }
        if let Some(ctx) = &self.context {
            for (k, v) in ctx {
                message
                    .context
                    .entry(k.clone())
                    .or_insert_with(|| v.clone());
            }
        }
        if let Some(integrations) = &self.integrations {
            for (k, v) in integrations {
                message
                    .integrations
                    .entry(k.clone())
                    .or_insert_with(|| v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_message_id_of_white_space_only_is_no_message_id() {
        let value: Value = serde_json::from_str(
            r#"{"userId":"u-1","anonymousId":"a-1","messageId":"\t ","event":"x"}"#,
        )
        .unwrap();
        let parsed = Message::from_value(value, Some(MessageType::Track)).unwrap();
        assert_eq!(parsed.message.message_id, None, "the server assigns one");
        assert_eq!(parsed.notices.len(), 1);
    }

    #[test]
    fn a_numeric_id_too_large_to_read_exactly_is_refused_not_rounded() {
        for body in [
            r#"{"userId":18446744073709551616}"#,
            r#"{"userId":100000000000000000001}"#,
            r#"{"anonymousId":1e20}"#,
            r#"{"userId":-9007199254740993.0}"#,
            r#"{"userId":1.5}"#,
        ] {
            let value: Value = serde_json::from_str(body).unwrap();
            let err = Message::from_value(value, Some(MessageType::Identify)).unwrap_err();
            assert!(
                matches!(err, MessageError::BadField { .. }),
                "{body}: {err:?}"
            );
        }
        for (body, id) in [
            (r#"{"userId":18446744073709551615}"#, "18446744073709551615"),
            (r#"{"userId":-9223372036854775808}"#, "-9223372036854775808"),
        ] {
            let value: Value = serde_json::from_str(body).unwrap();
            let parsed = Message::from_value(value, Some(MessageType::Identify)).unwrap();
            assert_eq!(parsed.message.user_id.as_deref(), Some(id));
        }
    }

    #[test]
    fn a_numeric_user_id_is_normalised_to_a_string_and_reported() {
        let parsed = Message::from_value(
            json!({"type": "identify", "userId": 42, "traits": {"plan_tier": "pro"}}),
            None,
        )
        .unwrap();
        assert_eq!(parsed.message.user_id.as_deref(), Some("42"));
        assert_eq!(parsed.notices.len(), 1);
        assert_eq!(parsed.notices[0].field, "userId");
    }

    #[test]
    fn unknown_fields_are_kept_and_round_trip() {
        let input = json!({"type": "track", "event": "x", "anonymousId": "a", "_metadata": {"bundled": ["x"]}, "version": 2});
        let parsed = Message::from_value(input.clone(), None).unwrap();
        let back = serde_json::to_value(&parsed.message).unwrap();
        assert_eq!(back["_metadata"], input["_metadata"]);
        assert_eq!(back["version"], 2);
    }

    #[test]
    fn the_write_key_is_never_serialised() {
        let parsed = Message::from_value(
            json!({"type": "page", "anonymousId": "a", "writeKey": "wk_secret"}),
            None,
        )
        .unwrap();
        assert_eq!(parsed.message.write_key.as_deref(), Some("wk_secret"));
        assert!(
            !serde_json::to_string(&parsed.message)
                .unwrap()
                .contains("wk_secret")
        );
    }

    #[test]
    fn messages_without_any_id_are_rejected() {
        let err = Message::from_value(json!({"type": "track", "event": "x"}), None).unwrap_err();
        assert_eq!(err, MessageError::MissingIdentity);
    }

    #[test]
    fn ids_and_events_of_white_space_alone_count_as_missing() {
        let err = Message::from_value(json!({"type": "track", "event": "x", "userId": "  "}), None)
            .unwrap_err();
        assert_eq!(err, MessageError::MissingIdentity);
        let err = Message::from_value(
            json!({"type": "track", "event": "\t ", "userId": "u"}),
            None,
        )
        .unwrap_err();
        assert_eq!(err, MessageError::MissingEvent);
        // A blank userId beside a real anonymousId still goes through; resolution ignores it.
        assert!(
            Message::from_value(
                json!({"type": "track", "event": "x", "userId": " ", "anonymousId": "a"}),
                None
            )
            .is_ok()
        );
    }

    #[test]
    fn unknown_types_are_rejected_with_the_type_named() {
        let err =
            Message::from_value(json!({"type": "purchase", "userId": "u"}), None).unwrap_err();
        assert!(err.to_string().contains("purchase"));
    }

    #[test]
    fn the_endpoint_implies_the_type_and_a_conflicting_type_is_rejected() {
        let ok = Message::from_value(
            json!({"event": "x", "userId": "u"}),
            Some(MessageType::Track),
        )
        .unwrap();
        assert_eq!(ok.message.kind, MessageType::Track);
        assert!(
            Message::from_value(
                json!({"type": "page", "userId": "u"}),
                Some(MessageType::Track)
            )
            .is_err()
        );
    }

    #[test]
    fn capitalised_types_from_python_sdks_are_accepted() {
        let parsed = Message::from_value(json!({"type": "Identify", "userId": "u"}), None).unwrap();
        assert_eq!(parsed.message.kind, MessageType::Identify);
    }

    #[test]
    fn batch_context_is_merged_under_the_items_own() {
        let raw = r#"{"batch":[{"type":"track","event":"e","userId":"u","context":{"locale":"fr"}}],
                      "sentAt":"2026-01-01T00:00:00Z","context":{"locale":"en","library":{"name":"x"}}}"#;
        let env: BatchEnvelope<'_> = serde_json::from_str(raw).unwrap();
        let item: Value = serde_json::from_str(env.batch[0].get()).unwrap();
        let mut m = Message::from_value(item, None).unwrap().message;
        env.apply_to(&mut m);
        assert_eq!(m.context["locale"], "fr");
        assert_eq!(m.context["library"]["name"], "x");
        assert_eq!(m.sent_at.as_deref(), Some("2026-01-01T00:00:00Z"));
    }

    #[test]
    fn a_nul_character_anywhere_is_refused() {
        let err = Message::from_value(
            json!({"type": "track", "event": "e", "userId": "u", "properties": {"deep": ["a\u{0}b"]}}),
            None,
        )
        .unwrap_err();
        assert_eq!(err, MessageError::NulCharacter);
    }

    #[test]
    fn alias_needs_both_ids_and_group_needs_a_group_id() {
        assert_eq!(
            Message::from_value(json!({"type": "alias", "userId": "u"}), None).unwrap_err(),
            MessageError::MissingPreviousId
        );
        assert_eq!(
            Message::from_value(json!({"type": "group", "userId": "u"}), None).unwrap_err(),
            MessageError::MissingGroupId
        );
    }
}
