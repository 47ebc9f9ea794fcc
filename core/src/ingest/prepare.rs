//! Pure ingestion logic: request bodies → validated, enriched messages ready for the log.
//!
//! No I/O here: limits, Segment-spec parsing, clock-skew correction, messageId assignment and the
//! tracking plan's verdict, all unit-tested without a server.

use super::limits::{self, LimitError};
use crate::storage::{NewMessage, Status};
use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use touchpoint_tracking_plan::{
    BatchEnvelope, Message, MessageError, MessageType, Parsed, TrackingPlan, Verdict,
};

/// Largest accepted message, in bytes of JSON (as sent and as stored).
pub const MAX_MESSAGE_BYTES: usize = limits::MAX_MESSAGE_BYTES;
/// Largest accepted batch request, in bytes of JSON.
pub const MAX_BATCH_BYTES: usize = touchpoint_tracking_plan::protocol::MAX_BATCH_BYTES;
/// Largest number of items in one batch.
pub const MAX_BATCH_ITEMS: usize = 2_000;
/// What the server may add to each message it stores (messageId, receivedAt, timestamp,
/// originalTimestamp), on top of [`MAX_BATCH_BYTES`], when a batch is measured as stored.
pub const STAMP_ALLOWANCE: usize = 512;
/// Earliest plausible event time: anything before is a client bug (year 1, a zero date).
const EARLIEST_EVENT_MS: i64 = 0;

/// Why a whole request body was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BodyError {
    /// Not JSON at all.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// A batch body without a `batch` array.
    #[error("malformed batch: expected {{\"batch\": [ … ]}} ({0})")]
    MalformedBatch(String),
    /// An empty batch.
    #[error("the batch is empty")]
    EmptyBatch,
    /// More items than [`MAX_BATCH_ITEMS`].
    #[error("the batch has {0} items; at most {MAX_BATCH_ITEMS} are accepted per request")]
    TooManyItems(usize),
    /// A single message that is not a valid Segment message.
    #[error("invalid message: {0}")]
    Invalid(#[from] MessageError),
    /// A batch whose items, with the envelope merged into each, would store more than allowed.
    #[error(
        "the batch would store {0} bytes once its envelope is merged into each item; at most {MAX_BATCH_BYTES} bytes plus {STAMP_ALLOWANCE} per item are accepted"
    )]
    ExpandsTooMuch(usize),
}

/// One batch item that could not be accepted, reported back to the client by index.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemError {
    /// Position in the `batch` array.
    pub index: usize,
    /// What is wrong with it.
    pub error: String,
    /// A stable code for what is wrong (`invalid_message`, `message_too_large`, `nul_character`, …).
    pub code: &'static str,
    /// The raw item (kept so it can be stored as rejected, never silently lost).
    #[serde(skip)]
    pub raw: String,
}

/// A message checked and enriched, with what the plan said about it.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The message as it will be stored.
    pub message: Message,
    /// The plan's verdict.
    pub status: Status,
    /// Violations and normalisation notices, as JSON objects.
    pub findings: Vec<Value>,
}

/// Where a message came from, which decides whose clock is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Straight from a client SDK: the server stamps receivedAt and corrects skew.
    Direct,
    /// From the edge worker, which already stamped receivedAt and corrected skew (signed).
    Edge,
}

/// Parses a single-message endpoint body (`/v1/track` …).
pub fn parse_single(body: &[u8], kind: MessageType) -> Result<Parsed, BodyError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| BodyError::MalformedJson(e.to_string()))?;
    Ok(Message::from_value(value, Some(kind))?)
}

/// Parses a batch envelope; items are parsed one by one so one bad item does not sink the rest.
pub fn parse_batch(
    body: &[u8],
) -> Result<(BatchEnvelope<'_>, Vec<Result<Parsed, ItemError>>), BodyError> {
    let text = std::str::from_utf8(body).map_err(|e| BodyError::MalformedJson(e.to_string()))?;
    let envelope: BatchEnvelope<'_> = serde_json::from_str(text).map_err(|e| {
        if serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() {
            BodyError::MalformedJson(e.to_string())
        } else {
            BodyError::MalformedBatch(e.to_string())
        }
    })?;
    if envelope.batch.is_empty() {
        return Err(BodyError::EmptyBatch);
    }
    if envelope.batch.len() > MAX_BATCH_ITEMS {
        return Err(BodyError::TooManyItems(envelope.batch.len()));
    }
    let items = envelope
        .batch
        .iter()
        .enumerate()
        .map(|(index, raw)| {
            let raw = raw.get();
            let fail = |error: String, code: &'static str| ItemError {
                index,
                error,
                code,
                raw: raw.to_owned(),
            };
            if raw.len() > MAX_MESSAGE_BYTES {
                return Err(fail(
                    format!(
                        "message is {} bytes; the limit is {MAX_MESSAGE_BYTES}",
                        raw.len()
                    ),
                    "message_too_large",
                ));
            }
            let value: Value =
                serde_json::from_str(raw).map_err(|e| fail(e.to_string(), "malformed_json"))?;
            let mut parsed = Message::from_value(value, None)
                .map_err(|e| fail(e.to_string(), message_error_code(&e)))?;
            envelope.apply_to(&mut parsed.message);
            Ok(parsed)
        })
        .collect();
    Ok((envelope, items))
}

/// The stable code of a message the parser refused.
pub fn message_error_code(e: &MessageError) -> &'static str {
    match e {
        MessageError::NulCharacter => "nul_character",
        _ => "invalid_message",
    }
}

/// Messages ready for the log, split from those refused by the limits on what is stored.
#[derive(Debug, Default)]
pub struct Rows {
    /// Messages within every limit, with their log rows.
    pub kept: Vec<(Checked, NewMessage)>,
    /// Messages over a limit, by their index in the request, with the limit each broke.
    pub refused: Vec<(ItemError, LimitError)>,
}

/// Turns checked messages (with their index in the request) into log rows, measuring each as it
/// will be stored: after the envelope merge and the server's stamps. A message over a limit is
/// refused by index; a batch that would store more than [`MAX_BATCH_BYTES`] plus
/// [`STAMP_ALLOWANCE`] per item is refused whole, so stored bytes stay bounded by request bytes.
pub fn to_rows(
    items: Vec<(usize, Checked)>,
    source_id: i64,
    plan_version: &Arc<str>,
    server_now_ms: i64,
) -> Result<Rows, BodyError> {
    let budget = MAX_BATCH_BYTES + STAMP_ALLOWANCE * items.len();
    let mut rows = Rows::default();
    let mut total = 0usize;
    for (index, checked) in items {
        let row = to_row(&checked, source_id, plan_version, server_now_ms);
        let stored = row.body_json.len() + row.violations_json.len();
        match limits::check(&checked.message, row.body_json.len()) {
            Ok(()) => {
                total += stored;
                rows.kept.push((checked, row));
            }
            Err(e) => rows.refused.push((refusal(index, &e, &row.body_json), e)),
        }
        if total > budget {
            return Err(BodyError::ExpandsTooMuch(total));
        }
    }
    Ok(rows)
}

/// Most bytes stored of an item that was not accepted (`rejected_messages.body`).
pub const MAX_REJECTED_BYTES: usize = 4 * 1024;

/// An item refused by a limit; the stored copy of what arrived is cut to a few KB.
fn refusal(index: usize, e: &LimitError, body: &str) -> ItemError {
    ItemError {
        index,
        error: e.to_string(),
        code: e.code(),
        raw: cut(body, MAX_REJECTED_BYTES).to_owned(),
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// What is stored of an item that was not accepted, cut to [`MAX_REJECTED_BYTES`]: as sent, unless
/// it is JSON with `\u` escapes (`"j\u00fcrgen"`, as Python's `json.dumps` writes it), which is
/// stored re-serialised, so it reads as text and an erasure that searches for the identifier finds
/// it. (Re-serialising anything else would only lose what was sent: a number past 2^64's digits,
/// a repeated key.)
pub fn rejected_body(raw: &str) -> String {
    let canonical = raw
        .contains("\\u")
        .then(|| serde_json::from_str::<Value>(raw).ok())
        .flatten()
        .map(|v| v.to_string());
    cut(canonical.as_deref().unwrap_or(raw), MAX_REJECTED_BYTES).to_owned()
}

/// Stamps server fields, corrects the timestamp, applies the plan; the message is then ready to store.
pub fn check(parsed: Parsed, plan: &TrackingPlan, origin: Origin, now: DateTime<Utc>) -> Checked {
    let Parsed {
        mut message,
        notices,
    } = parsed;
    let mut findings: Vec<Value> = notices
        .into_iter()
        .map(|n| serde_json::json!({"kind": "normalised", "field": n.field, "message": n.message}))
        .collect();
    if message.message_id.as_deref().is_none_or(str::is_empty) {
        message.message_id = Some(assigned_message_id(now));
    }
    if origin == Origin::Direct || message.received_at.is_none() {
        message.received_at = Some(rfc3339(now));
        correct_skew(&mut message, now, &mut findings);
    }
    message.write_key = None;
    clamp_future(&mut message, &mut findings);
    clamp_past(&mut message, &mut findings);
    for field in limits::unsafe_numbers(&message) {
        findings.push(serde_json::json!({
            "kind": "number_out_of_range", "field": field,
            "message": format!("{field} is beyond ±2^53: stored as parsed (past 2^64, the nearest double), never summed into aggregates"),
        }));
    }
    let outcome = plan.enforce(&mut message);
    let status = match outcome.verdict {
        Verdict::Accept if findings.is_empty() => Status::Accepted,
        Verdict::Accept | Verdict::Flag => Status::Flagged,
        Verdict::Block => Status::Blocked,
    };
    findings.extend(
        outcome
            .violations
            .iter()
            .filter_map(|v| serde_json::to_value(v).ok()),
    );
    cap_findings(&mut findings);
    Checked {
        message,
        status,
        findings,
    }
}

/// A messageId for a message sent without one: `tp-` and a UUIDv7 of `now`, so ids the server
/// assigns ascend with time and land together in the log's messageId index (a random id costs a
/// page of that index per message).
fn assigned_message_id(now: DateTime<Utc>) -> String {
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        u64::try_from(now.timestamp()).unwrap_or(0),
        now.timestamp_subsec_nanos(),
    );
    format!("tp-{}", uuid::Uuid::new_v7(ts))
}

/// Most bytes of findings stored with one message: a message with hundreds of unplanned,
/// long-named properties must not store more violations than it has content.
pub const MAX_FINDINGS_BYTES: usize = 4 * 1024;

/// Longest text kept in one field of a finding: a violation quotes the value it refused, and a
/// 30 KB value must not crowd out the finding's kind and field.
const MAX_FINDING_TEXT: usize = 256;

/// Shortens every finding's text fields to [`MAX_FINDING_TEXT`], then keeps the findings that fit
/// [`MAX_FINDINGS_BYTES`] and notes how many were left out.
fn cap_findings(findings: &mut Vec<Value>) {
    for f in findings.iter_mut() {
        if let Value::Object(fields) = f {
            for text in fields.values_mut() {
                if let Value::String(t) = text
                    && t.len() > MAX_FINDING_TEXT
                {
                    *t = format!("{}…", cut(t, MAX_FINDING_TEXT));
                }
            }
        }
    }
    let mut used = 0usize;
    let mut keep = 0usize;
    for f in findings.iter() {
        let n = f.to_string().len() + 1;
        if used + n > MAX_FINDINGS_BYTES - 200 {
            break;
        }
        used += n;
        keep += 1;
    }
    if keep < findings.len() {
        let left_out = findings.len() - keep;
        findings.truncate(keep);
        findings.push(serde_json::json!({
            "kind": "truncated",
            "message": format!("{left_out} more findings not stored"),
        }));
    }
}

/// Segment's skew correction: `timestamp = receivedAt - (sentAt - originalTimestamp)`.
fn correct_skew(message: &mut Message, now: DateTime<Utc>, findings: &mut Vec<Value>) {
    let original = message
        .original_timestamp
        .clone()
        .or_else(|| message.timestamp.clone());
    let Some(original_text) = original else {
        message.timestamp = message.received_at.clone();
        return;
    };
    let Some(original) = parse_time(&original_text) else {
        findings.push(serde_json::json!({
            "kind": "bad_timestamp", "field": "timestamp",
            "message": format!("{original_text:?} is not an ISO-8601 date-time; receivedAt used"),
        }));
        message.timestamp = message.received_at.clone();
        return;
    };
    message.original_timestamp = Some(original_text);
    let sent = message.sent_at.as_deref().and_then(parse_time);
    if let (Some(text), None) = (message.sent_at.as_deref(), sent) {
        findings.push(serde_json::json!({
            "kind": "bad_timestamp", "field": "sentAt",
            "message": format!("{text:?} is not an ISO-8601 date-time; no clock-skew correction applied"),
        }));
    }
    let corrected = match sent {
        Some(sent) if plausible(sent, now) => now
            .checked_sub_signed(sent - original)
            .filter(|t| plausible(*t, now)),
        Some(_) => {
            findings.push(serde_json::json!({
                "kind": "bad_timestamp", "field": "sentAt",
                "message": "sentAt is not a plausible time; no clock-skew correction applied",
            }));
            Some(original)
        }
        None => Some(original),
    };
    match corrected {
        Some(t) => message.timestamp = Some(rfc3339(t)),
        None => {
            findings.push(serde_json::json!({
                "kind": "bad_timestamp", "field": "timestamp",
                "message": "the skew-corrected timestamp is not a plausible time; receivedAt used",
            }));
            message.timestamp = message.received_at.clone();
        }
    }
}

/// Whether `t` could be a real event time seen at `now`: after 1970 and at most a day ahead.
fn plausible(t: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    t.timestamp_millis() >= EARLIEST_EVENT_MS && t <= now + chrono::Duration::days(1)
}

/// A timestamp before 1970 (year 1, a zeroed clock) is a client bug; it is set to receivedAt and
/// reported, so stored times always fit an ordinary date-time.
fn clamp_past(message: &mut Message, findings: &mut Vec<Value>) {
    let Some(text) = message.timestamp.as_deref() else {
        return;
    };
    let Some(at) = parse_time(text) else {
        findings.push(serde_json::json!({
            "kind": "bad_timestamp", "field": "timestamp",
            "message": format!("{text:?} is not an ISO-8601 date-time; receivedAt used"),
        }));
        message.timestamp = message.received_at.clone();
        return;
    };
    if at.timestamp_millis() < EARLIEST_EVENT_MS {
        findings.push(serde_json::json!({
            "kind": "bad_timestamp", "field": "timestamp",
            "message": format!("timestamp {} is before 1970; receivedAt used", rfc3339(at)),
        }));
        message.timestamp = message.received_at.clone();
    }
}

/// A timestamp after the message was received is a client clock error; left alone it would win
/// every last-write-wins comparison forever. It is set to receivedAt and reported.
fn clamp_future(message: &mut Message, findings: &mut Vec<Value>) {
    let received = message.received_at.as_deref().and_then(parse_time);
    let at = message.timestamp.as_deref().and_then(parse_time);
    if let (Some(received), Some(at)) = (received, at)
        && at > received + chrono::Duration::seconds(60)
    {
        findings.push(serde_json::json!({
            "kind": "future_timestamp", "field": "timestamp",
            "message": format!("timestamp {} is after receivedAt; receivedAt used", rfc3339(at)),
        }));
        message.timestamp = message.received_at.clone();
    }
}

/// Parses an RFC 3339 date-time.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `t` as `2026-11-25T12:00:00.000Z`. A leap second (`23:59:60`, which chrono keeps) is written
/// as the last millisecond before it: JavaScript's `Date` and most warehouses refuse `:60`.
fn rfc3339(t: DateTime<Utc>) -> String {
    let t = if t.nanosecond() >= 1_000_000_000 {
        t.with_nanosecond(999_000_000).unwrap_or(t)
    } else {
        t
    };
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Turns a checked message into a log row.
/// `server_now_ms` is this server's receive time: the dedup window and the log's `received_at` column
/// use it, never a time the client or the edge supplied.
pub fn to_row(
    checked: &Checked,
    source_id: i64,
    plan_version: &Arc<str>,
    server_now_ms: i64,
) -> NewMessage {
    let m = &checked.message;
    let event_time = m.timestamp.as_deref().and_then(parse_time);
    let received_at_ms = server_now_ms;
    NewMessage {
        source_id,
        message_id: m.message_id.clone().unwrap_or_default(),
        kind: m.kind.as_str(),
        event: m.event.clone(),
        user_id: m.user_id.clone(),
        anonymous_id: m.anonymous_id.clone(),
        event_time_ms: event_time.map_or(received_at_ms, |t| t.timestamp_millis()),
        received_at_ms,
        plan_version: plan_version.clone(),
        status: checked.status,
        violations_json: Value::Array(checked.findings.clone()).to_string(),
        body_json: serde_json::to_string(m).unwrap_or_else(|_| "{}".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn plan() -> TrackingPlan {
        touchpoint_tracking_plan::parse(include_str!("../../../TRACKING_PLAN.md")).unwrap()
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
    }

    #[test]
    fn a_leap_second_is_stored_as_the_last_millisecond_before_it() {
        let leap = parse_time("2016-12-31T23:59:60Z").expect("chrono reads leap seconds");
        assert_eq!(rfc3339(leap), "2016-12-31T23:59:59.999Z");
        let leap = parse_time("2016-12-31T23:59:60.5Z").unwrap();
        assert_eq!(rfc3339(leap), "2016-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(now()), "2026-11-25T12:00:00.000Z");
    }

    #[test]
    fn a_client_clock_ten_minutes_fast_is_corrected_from_sent_at() {
        let parsed = Message::from_value(
            json!({"type": "track", "event": "workspace_created", "userId": "u1",
                   "properties": {"workspace_id": "w1"},
                   "timestamp": "2026-11-25T12:09:00Z", "sentAt": "2026-11-25T12:10:00Z"}),
            None,
        )
        .unwrap();
        let c = check(parsed, &plan(), Origin::Direct, now());
        assert_eq!(
            c.message.timestamp.as_deref(),
            Some("2026-11-25T11:59:00.000Z")
        );
        assert_eq!(
            c.message.original_timestamp.as_deref(),
            Some("2026-11-25T12:09:00Z")
        );
        assert_eq!(
            c.message.received_at.as_deref(),
            Some("2026-11-25T12:00:00.000Z")
        );
    }

    #[test]
    fn hundreds_of_long_unplanned_properties_store_a_bounded_list_of_findings() {
        let props: serde_json::Map<String, Value> = (0..400)
            .map(|i| {
                (
                    format!("Unplanned Property Number {i} {}", "x".repeat(40)),
                    json!(i),
                )
            })
            .collect();
        let parsed = Message::from_value(
            json!({"type": "track", "event": "feature_toggled", "userId": "u",
                   "properties": props}),
            None,
        )
        .unwrap();
        let c = check(parsed, &plan(), Origin::Direct, now());
        let stored = Value::Array(c.findings.clone()).to_string();
        assert!(stored.len() <= MAX_FINDINGS_BYTES, "{}", stored.len());
        assert_eq!(c.findings.last().unwrap()["kind"], "truncated");
    }

    /// A planned track with the client's `timestamp` and `sentAt`, checked at [`now`].
    fn track_sent(timestamp: &str, sent_at: &str) -> Checked {
        let parsed = Message::from_value(
            json!({"type": "track", "event": "feature_toggled", "userId": "u",
                   "properties": {"feature_name": "x", "new_status": true},
                   "timestamp": timestamp, "sentAt": sent_at}),
            None,
        )
        .unwrap();
        check(parsed, &plan(), Origin::Direct, now())
    }

    #[test]
    fn an_unreadable_send_time_is_reported_and_the_event_time_kept() {
        let c = track_sent("2026-11-25T11:00:00Z", "garbage");
        assert_eq!(c.status, Status::Flagged);
        assert!(
            c.findings
                .iter()
                .any(|f| f["kind"] == "bad_timestamp" && f["field"] == "sentAt"),
            "{:?}",
            c.findings
        );
        assert_eq!(
            c.message.timestamp.as_deref(),
            Some("2026-11-25T11:00:00.000Z")
        );
    }

    #[test]
    fn a_huge_refused_value_still_leaves_the_reason_it_was_refused() {
        let parsed = Message::from_value(
            json!({"type": "identify", "userId": "u",
                   "traits": {"email": format!("{}@", "x".repeat(30_000))}}),
            None,
        )
        .unwrap();
        let c = check(parsed, &plan(), Origin::Direct, now());
        assert_eq!(c.status, Status::Blocked);
        let first = &c.findings[0];
        assert_eq!(first["field"], "traits.email", "{first}");
        assert!(first["message"].as_str().unwrap().len() <= MAX_FINDING_TEXT + 3);
        assert!(c.findings.iter().all(|f| f["kind"] != "truncated"));
    }

    #[test]
    fn a_year_one_send_time_does_not_push_the_timestamp_past_year_9999() {
        let c = track_sent("9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z");
        assert_eq!(c.message.timestamp, c.message.received_at);
        assert!(c.findings.iter().any(|f| f["kind"] == "bad_timestamp"));
    }

    #[test]
    fn a_batch_is_measured_as_stored_after_the_envelope_merge() {
        let items: Vec<(usize, Checked)> = (0..100)
            .map(|i| {
                let mut p = Message::from_value(
                    json!({"type": "track", "event": "feature_toggled", "userId": "u",
                           "properties": {"feature_name": "x", "new_status": true}}),
                    None,
                )
                .unwrap();
                p.message
                    .context
                    .insert("padding".into(), json!("p".repeat(10_000)));
                (i, check(p, &plan(), Origin::Direct, now()))
            })
            .collect();
        let version: Arc<str> = "v".into();
        assert!(matches!(
            to_rows(items, 1, &version, 0),
            Err(BodyError::ExpandsTooMuch(_))
        ));
    }

    #[test]
    fn a_rejected_item_is_stored_as_it_reads_and_cut_to_four_kilobytes() {
        // Escaped text (Python's json.dumps) is stored unescaped, so erasure can find the id;
        // a NUL stays escaped.
        assert_eq!(
            rejected_body(r#"{"userId":"j\u00fcrgen","event":"a\u0000"}"#),
            r#"{"userId":"jürgen","event":"a\u0000"}"#
        );
        // What is not JSON, or has no escapes, is kept as sent.
        assert_eq!(rejected_body("{not json \\u00fc"), "{not json \\u00fc");
        assert_eq!(
            rejected_body(r#"{"userId":18446744073709551616,"a":1,"a":2}"#),
            r#"{"userId":18446744073709551616,"a":1,"a":2}"#
        );
        let long = format!(r#"{{"userId":"u","x":"{}"}}"#, "é".repeat(30_000));
        let stored = rejected_body(&long);
        assert!(stored.len() <= MAX_REJECTED_BYTES && stored.len() > MAX_REJECTED_BYTES - 4);
        assert!(stored.starts_with(r#"{"userId":"u""#));
    }

    #[test]
    fn a_message_without_message_id_gets_one() {
        let parsed = parse_single(br#"{"userId":"u","traits":{}}"#, MessageType::Identify).unwrap();
        let c = check(parsed, &plan(), Origin::Direct, now());
        assert!(c.message.message_id.unwrap().starts_with("tp-"));
    }

    #[test]
    fn assigned_message_ids_ascend_with_the_clock_and_never_repeat() {
        let t0 = now();
        let ids: Vec<String> = (0..50)
            .map(|i| assigned_message_id(t0 + chrono::Duration::milliseconds(i)))
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let same_ms: std::collections::HashSet<String> =
            (0..1_000).map(|_| assigned_message_id(t0)).collect();
        assert_eq!(same_ms.len(), 1_000);
    }

    #[test]
    fn an_unplanned_event_is_not_accepted_silently() {
        let parsed = parse_single(
            br#"{"userId":"u","event":"Mystery Thing"}"#,
            MessageType::Track,
        )
        .unwrap();
        let c = check(parsed, &plan(), Origin::Direct, now());
        assert_ne!(c.status, Status::Accepted);
        assert!(!c.findings.is_empty());
    }

    #[test]
    fn oversized_batch_items_are_rejected_by_index_and_the_rest_kept() {
        let big = "x".repeat(MAX_MESSAGE_BYTES);
        let body = format!(
            r#"{{"batch":[{{"type":"track","event":"a","userId":"u"}},{{"type":"track","event":"b","userId":"u","properties":{{"p":"{big}"}}}}]}}"#
        );
        let (_, items) = parse_batch(body.as_bytes()).unwrap();
        assert!(items[0].is_ok());
        let err = items[1].as_ref().unwrap_err();
        assert_eq!(err.index, 1);
        assert!(err.error.contains("limit"));
    }

    #[test]
    fn a_body_that_is_not_json_is_malformed_and_a_json_without_batch_is_a_malformed_batch() {
        assert!(matches!(
            parse_batch(b"{nope"),
            Err(BodyError::MalformedJson(_))
        ));
        assert!(matches!(
            parse_batch(br#"{"events":[]}"#),
            Err(BodyError::MalformedBatch(_))
        ));
        assert_eq!(
            parse_batch(br#"{"batch":[]}"#).unwrap_err(),
            BodyError::EmptyBatch
        );
    }

    #[test]
    fn the_edge_receive_time_is_kept_for_signed_batches() {
        let parsed = Message::from_value(
            json!({"type": "page", "anonymousId": "a", "receivedAt": "2026-11-25T11:00:00.000Z",
                   "timestamp": "2026-11-25T10:59:59.000Z"}),
            None,
        )
        .unwrap();
        let c = check(parsed, &plan(), Origin::Edge, now());
        assert_eq!(
            c.message.received_at.as_deref(),
            Some("2026-11-25T11:00:00.000Z")
        );
        assert_eq!(
            c.message.timestamp.as_deref(),
            Some("2026-11-25T10:59:59.000Z")
        );
    }
}
