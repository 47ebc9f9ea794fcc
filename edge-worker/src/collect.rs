//! What the edge does to a collection request, without I/O: limits, write key, the `tp_sid`
//! cookie's anonymous id, Segment-spec parsing, the tracking plan (enforced, verdict annotated,
//! never dropped), enrichment (IP per privacy setting, geo, user agent, receivedAt, clock skew, bot
//! flag) and the exact batch body to sign and send to core.

use crate::bot;
use crate::cookie::CookieState;
use crate::privacy::IpPrivacy;
use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use touchpoint_tracking_plan::{
    BatchEnvelope, Message, MessageError, MessageType, TrackingPlan, Verdict,
};

/// Largest accepted message, in bytes of JSON (as core).
pub const MAX_MESSAGE_BYTES: usize = touchpoint_tracking_plan::protocol::MAX_MESSAGE_BYTES;
/// Largest accepted batch request, in bytes of JSON (as core).
pub const MAX_BATCH_BYTES: usize = touchpoint_tracking_plan::protocol::MAX_BATCH_BYTES;
/// Largest number of items in one batch (as core).
pub const MAX_BATCH_ITEMS: usize = 2_000;

/// Why a request was refused before anything was forwarded; each maps to a 4xx.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CollectError {
    /// The body is over the endpoint's limit.
    #[error("request body is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// Bytes received.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// More than [`MAX_BATCH_ITEMS`] items.
    #[error("the batch has {0} items; at most {MAX_BATCH_ITEMS} are accepted per request")]
    TooManyItems(usize),
    /// Not JSON, or not the expected shape.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// An empty batch.
    #[error("the batch is empty")]
    EmptyBatch,
    /// A single message that is not a valid Segment message.
    #[error("invalid message: {0}")]
    Invalid(#[from] MessageError),
    /// No item of the batch is a valid message.
    #[error("no valid message in the batch")]
    NothingValid(Vec<ItemError>),
    /// No write key in the Authorization header or the body.
    #[error(
        "missing write key: send HTTP Basic auth with the write key as user name, or \"writeKey\" in the body"
    )]
    MissingWriteKey,
}

impl CollectError {
    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            CollectError::TooLarge { .. } | CollectError::TooManyItems(_) => 413,
            CollectError::MissingWriteKey => 401,
            _ => 400,
        }
    }

    /// The JSON body for this error: `{"success": false, "error": …}` (+ `rejected` items).
    pub fn body(&self) -> Value {
        let mut body = json!({"success": false, "error": self.to_string()});
        if let CollectError::NothingValid(items) = self {
            body["rejected"] = json!(items);
        }
        body
    }
}

/// A batch item that is not a valid message: reported by index and forwarded as-is so core keeps
/// it among its rejected messages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemError {
    /// Position in the `batch` array.
    pub index: usize,
    /// What is wrong with it.
    pub error: String,
}

/// Geolocation from Cloudflare's `request.cf`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Geo {
    /// ISO 3166-1 alpha-2 country code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Region (state, province).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// City.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// IANA time zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

impl Geo {
    fn is_empty(&self) -> bool {
        self.country.is_none()
            && self.region.is_none()
            && self.city.is_none()
            && self.timezone.is_none()
    }
}

/// Everything about the incoming request the edge needs.
#[derive(Debug, Clone)]
pub struct Incoming<'a> {
    /// The request body.
    pub body: &'a [u8],
    /// `Some(type)` for `/v1/{type}`, `None` for `/v1/batch`.
    pub kind: Option<MessageType>,
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// What the `tp_sid` cookie said.
    pub cookie: &'a CookieState,
    /// `CF-Connecting-IP`.
    pub client_ip: Option<&'a str>,
    /// `User-Agent`.
    pub user_agent: Option<&'a str>,
    /// `request.cf` geolocation.
    pub geo: &'a Geo,
    /// The IP privacy setting.
    pub ip_privacy: IpPrivacy,
    /// Now, in Unix milliseconds (the edge's clock).
    pub now_ms: i64,
}

/// A request turned into the batch to send to core.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// `{"writeKey": …, "batch": […]}`: the exact bytes to sign and send.
    pub body: Vec<u8>,
    /// Messages the plan accepted.
    pub accepted: usize,
    /// Messages the plan flagged.
    pub flagged: usize,
    /// Messages the plan blocked (forwarded with their violations; core stores them as blocked).
    pub blocked: usize,
    /// Items that are not valid messages (forwarded raw; core stores them as rejected).
    pub rejected: Vec<ItemError>,
    /// Messages from a client that looks automated.
    pub bots: usize,
    /// Messages whose anonymousId was filled from the cookie.
    pub filled_from_cookie: usize,
    /// The anonymous id to (re)set in the cookie: the cookie's own when valid, else the first one sent.
    pub anonymous_id: Option<String>,
    /// The messageIds forwarded, in order.
    pub message_ids: Vec<String>,
}

impl Prepared {
    /// The browser-facing summary (`delivery` is `"core"` or `"queued"`).
    pub fn summary(&self, delivery: &str) -> Value {
        json!({
            "success": true,
            "delivery": delivery,
            "accepted": self.accepted,
            "flagged": self.flagged,
            "blocked": self.blocked,
            "rejected": self.rejected,
        })
    }
}

#[derive(Serialize)]
struct Outgoing<'a> {
    #[serde(rename = "writeKey")]
    write_key: &'a str,
    batch: Vec<Value>,
}

/// Reads, checks and enriches a collection request against `plan`.
pub fn prepare(req: &Incoming<'_>, plan: &TrackingPlan) -> Result<Prepared, CollectError> {
    let limit = if req.kind.is_some() {
        MAX_MESSAGE_BYTES
    } else {
        MAX_BATCH_BYTES
    };
    if req.body.len() > limit {
        return Err(CollectError::TooLarge {
            size: req.body.len(),
            limit,
        });
    }
    let text = std::str::from_utf8(req.body)
        .map_err(|e| CollectError::Malformed(format!("body is not UTF-8: {e}")))?;
    let mut out = Prepared {
        body: Vec::new(),
        accepted: 0,
        flagged: 0,
        blocked: 0,
        rejected: Vec::new(),
        bots: 0,
        filled_from_cookie: 0,
        anonymous_id: None,
        message_ids: Vec::new(),
    };
    let cookie_id = match req.cookie {
        CookieState::Valid(id) => Some(id.as_str()),
        _ => None,
    };
    let now = DateTime::<Utc>::from_timestamp_millis(req.now_ms).unwrap_or_default();
    let ctx = Enrich {
        req,
        plan,
        now,
        cookie_id,
    };
    let mut batch = Vec::new();
    let write_key;
    match req.kind {
        Some(kind) => {
            let value: Value = serde_json::from_str(text)
                .map_err(|e| CollectError::Malformed(format!("invalid JSON: {e}")))?;
            write_key = write_key_of(req.authorization, value.get("writeKey"))?;
            let msg = ctx.one(value, Some(kind), 0, text, &mut out)?;
            batch.push(msg);
        }
        None => {
            let envelope: BatchEnvelope<'_> = serde_json::from_str(text).map_err(|e| {
                if serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() {
                    CollectError::Malformed(format!("invalid JSON: {e}"))
                } else {
                    CollectError::Malformed(format!("expected {{\"batch\": [ … ]}} ({e})"))
                }
            })?;
            write_key = write_key_of(
                req.authorization,
                envelope
                    .write_key
                    .as_ref()
                    .map(|k| Value::String(k.clone()))
                    .as_ref(),
            )?;
            if envelope.batch.is_empty() {
                return Err(CollectError::EmptyBatch);
            }
            if envelope.batch.len() > MAX_BATCH_ITEMS {
                return Err(CollectError::TooManyItems(envelope.batch.len()));
            }
            for (index, raw) in envelope.batch.iter().enumerate() {
                let raw = raw.get();
                let item = if raw.len() > MAX_MESSAGE_BYTES {
                    Err(format!(
                        "message is {} bytes; the limit is {MAX_MESSAGE_BYTES}",
                        raw.len()
                    ))
                } else {
                    serde_json::from_str::<Value>(raw)
                        .map_err(|e| e.to_string())
                        .and_then(|value| {
                            ctx.one_in_batch(value, &envelope, index, raw, &mut out)
                                .map_err(|e| e.to_string())
                        })
                };
                match item {
                    Ok(msg) => batch.push(msg),
                    Err(error) => {
                        out.rejected.push(ItemError { index, error });
                        // Forwarded verbatim: core stores it among the rejected messages.
                        if let Ok(v) = serde_json::from_str::<Value>(raw) {
                            batch.push(v);
                        }
                    }
                }
            }
            if out.message_ids.is_empty() {
                return Err(CollectError::NothingValid(out.rejected));
            }
        }
    }
    out.anonymous_id = cookie_id.map(str::to_owned).or(out.anonymous_id);
    out.body = serde_json::to_vec(&Outgoing {
        write_key: &write_key,
        batch,
    })
    .map_err(|e| CollectError::Malformed(e.to_string()))?;
    Ok(out)
}

/// The write key from `Authorization: Basic base64(key:)`, else the body's `writeKey`.
fn write_key_of(
    authorization: Option<&str>,
    body_key: Option<&Value>,
) -> Result<String, CollectError> {
    if let Some(key) =
        authorization.and_then(touchpoint_tracking_plan::protocol::write_key_from_basic)
    {
        return Ok(key);
    }
    body_key
        .and_then(Value::as_str)
        .filter(|k| !k.trim().is_empty())
        .map(str::to_owned)
        .ok_or(CollectError::MissingWriteKey)
}

struct Enrich<'a> {
    req: &'a Incoming<'a>,
    plan: &'a TrackingPlan,
    now: DateTime<Utc>,
    cookie_id: Option<&'a str>,
}

impl Enrich<'_> {
    fn one_in_batch(
        &self,
        value: Value,
        envelope: &BatchEnvelope<'_>,
        index: usize,
        raw: &str,
        out: &mut Prepared,
    ) -> Result<Value, MessageError> {
        self.enrich(value, None, Some(envelope), index, raw, out)
    }

    fn one(
        &self,
        value: Value,
        kind: Option<MessageType>,
        index: usize,
        raw: &str,
        out: &mut Prepared,
    ) -> Result<Value, CollectError> {
        Ok(self.enrich(value, kind, None, index, raw, out)?)
    }

    fn enrich(
        &self,
        mut value: Value,
        kind: Option<MessageType>,
        envelope: Option<&BatchEnvelope<'_>>,
        index: usize,
        raw: &str,
        out: &mut Prepared,
    ) -> Result<Value, MessageError> {
        let mut from_cookie = false;
        if let (Some(id), Value::Object(map)) = (self.cookie_id, &mut value) {
            let missing = |v: Option<&Value>| match v {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) => s.trim().is_empty(),
                Some(_) => false,
            };
            if missing(map.get("anonymousId")) {
                map.insert("anonymousId".into(), Value::String(id.to_owned()));
                from_cookie = true;
            }
        }
        let parsed = Message::from_value(value, kind)?;
        let mut m = parsed.message;
        if let Some(env) = envelope {
            env.apply_to(&mut m);
        }
        m.write_key = None;
        if m.message_id.as_deref().is_none_or(str::is_empty) {
            m.message_id = Some(derived_message_id(self.req.now_ms, index, raw));
        }
        let mut notes: Vec<Value> = parsed
            .notices
            .iter()
            .map(|n| json!({"field": n.field, "message": n.message}))
            .collect();
        m.received_at = Some(rfc3339(self.now));
        correct_skew(&mut m, self.now, &mut notes);
        let ctx = &mut m.context;
        match self
            .req
            .client_ip
            .and_then(|ip| self.req.ip_privacy.apply(ip))
        {
            Some(ip) => {
                ctx.insert("ip".into(), Value::String(ip));
            }
            None => {
                ctx.shift_remove("ip");
            }
        }
        if !ctx.contains_key("userAgent")
            && let Some(ua) = self.req.user_agent.filter(|u| !u.is_empty())
        {
            ctx.insert("userAgent".into(), Value::String(ua.to_owned()));
        }
        if !self.req.geo.is_empty() {
            let location = ctx
                .entry("location")
                .or_insert_with(|| Value::Object(Map::new()));
            if !location.is_object() {
                *location = Value::Object(Map::new());
            }
            if let (Value::Object(loc), Value::Object(geo)) = (location, json!(self.req.geo)) {
                loc.extend(geo);
            }
        }
        let bot = bot::detect(self.req.user_agent);
        let outcome = self.plan.enforce(&mut m);
        match outcome.verdict {
            Verdict::Accept => out.accepted += 1,
            Verdict::Flag => out.flagged += 1,
            Verdict::Block => out.blocked += 1,
        }
        if bot.is_some() {
            out.bots += 1;
        }
        if from_cookie {
            out.filled_from_cookie += 1;
        }
        let mut edge = json!({
            "verdict": outcome.verdict,
            "violations": outcome.violations,
            "planVersion": self.plan.version(),
            "bot": bot.is_some(),
        });
        if let Some(reason) = bot {
            edge["botReason"] = json!(reason);
        }
        if !outcome.dropped.is_empty() {
            edge["dropped"] = json!(outcome.dropped);
        }
        if !notes.is_empty() {
            edge["notes"] = Value::Array(notes);
        }
        if from_cookie {
            edge["anonymousIdFrom"] = json!("cookie");
        }
        m.context.insert("edge".into(), edge);
        if out.anonymous_id.is_none()
            && let Some(a) = m
                .anonymous_id
                .as_deref()
                .filter(|a| crate::cookie::is_storable(a))
        {
            out.anonymous_id = Some(a.to_owned());
        }
        out.message_ids
            .push(m.message_id.clone().unwrap_or_default());
        Ok(serde_json::to_value(&m).unwrap_or(Value::Null))
    }
}

/// A messageId for a message sent without one, stable for the request (a retry from the Queue
/// resends the same bytes, so core's messageId dedup keeps it exactly once).
fn derived_message_id(now_ms: i64, index: usize, raw: &str) -> String {
    let mut h = Sha256::new();
    h.update(now_ms.to_string().as_bytes());
    h.update(b".");
    h.update(index.to_string().as_bytes());
    h.update(b".");
    h.update(raw.as_bytes());
    format!("edge-{}", &hex::encode(h.finalize())[..32])
}

/// Segment's skew correction: `timestamp = receivedAt − (sentAt − originalTimestamp)`.
fn correct_skew(m: &mut Message, now: DateTime<Utc>, notes: &mut Vec<Value>) {
    let Some(original_text) = m.original_timestamp.clone().or_else(|| m.timestamp.clone()) else {
        m.timestamp = m.received_at.clone();
        return;
    };
    let Some(original) = parse_time(&original_text) else {
        notes.push(json!({
            "field": "timestamp",
            "message": format!("{original_text:?} is not an ISO-8601 date-time; receivedAt used"),
        }));
        m.timestamp = m.received_at.clone();
        return;
    };
    m.original_timestamp = Some(original_text);
    let corrected = match m.sent_at.as_deref().and_then(parse_time) {
        Some(sent) => now - (sent - original),
        None => original,
    };
    m.timestamp = Some(rfc3339(corrected));
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `t` with milliseconds; a leap second (`23:59:60`) as the last millisecond before it, as core
/// stores it: JavaScript's `Date` and most warehouses refuse `:60`.
fn rfc3339(t: DateTime<Utc>) -> String {
    let t = if t.nanosecond() >= 1_000_000_000 {
        t.with_nanosecond(999_000_000).unwrap_or(t)
    } else {
        t
    };
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-25T12:00:00Z
    const NOW_MS: i64 = 1_795_608_000_000;
    const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";

    fn plan() -> &'static TrackingPlan {
        &crate::PLAN
    }

    fn berlin() -> Geo {
        Geo {
            country: Some("DE".into()),
            region: Some("Berlin".into()),
            city: Some("Berlin".into()),
            timezone: Some("Europe/Berlin".into()),
        }
    }

    fn incoming<'a>(
        body: &'a [u8],
        kind: Option<MessageType>,
        cookie: &'a CookieState,
        geo: &'a Geo,
    ) -> Incoming<'a> {
        Incoming {
            body,
            kind,
            authorization: None,
            cookie,
            client_ip: Some("203.0.113.77"),
            user_agent: Some(CHROME),
            geo,
            ip_privacy: IpPrivacy::Truncate,
            now_ms: NOW_MS,
        }
    }

    fn sent(p: &Prepared) -> Value {
        serde_json::from_slice(&p.body).unwrap()
    }

    #[test]
    fn a_leap_second_is_written_as_the_last_millisecond_before_it() {
        let leap = parse_time("2016-12-31T23:59:60Z").unwrap();
        assert_eq!(rfc3339(leap), "2016-12-31T23:59:59.999Z");
    }

    #[test]
    fn a_conforming_batch_is_enriched_for_core() {
        let body = json!({"writeKey": "wk_web", "sentAt": "2026-11-25T12:10:00Z", "batch": [
            {"type": "track", "event": "workspace_created", "anonymousId": "a-1", "messageId": "m-1",
             "properties": {"workspace_id": "w1"}, "timestamp": "2026-11-25T12:09:00Z"}
        ]})
        .to_string();
        let geo = berlin();
        let p = prepare(
            &incoming(body.as_bytes(), None, &CookieState::Absent, &geo),
            plan(),
        )
        .unwrap();
        assert_eq!((p.accepted, p.flagged, p.blocked), (1, 0, 0));
        assert_eq!(p.message_ids, vec!["m-1"]);
        assert_eq!(p.anonymous_id.as_deref(), Some("a-1"));
        let out = sent(&p);
        assert_eq!(out["writeKey"], "wk_web");
        let m = &out["batch"][0];
        assert_eq!(m["receivedAt"], "2026-11-25T12:00:00.000Z");
        // The client clock is 10 minutes fast: the event happened a minute before it was sent.
        assert_eq!(m["timestamp"], "2026-11-25T11:59:00.000Z");
        assert_eq!(m["originalTimestamp"], "2026-11-25T12:09:00Z");
        assert_eq!(m["context"]["ip"], "203.0.113.0");
        assert_eq!(m["context"]["userAgent"], CHROME);
        assert_eq!(m["context"]["location"]["country"], "DE");
        assert_eq!(m["context"]["location"]["timezone"], "Europe/Berlin");
        assert_eq!(m["context"]["edge"]["verdict"], "accept");
        assert_eq!(m["context"]["edge"]["bot"], false);
        assert!(m.get("writeKey").is_none());
    }

    #[test]
    fn blocked_messages_are_forwarded_with_their_violations() {
        let body = json!({"writeKey": "k", "batch": [
            {"type": "track", "event": "invoice_paid", "userId": "u1"},
            {"type": "track", "event": "workspace_created", "userId": "u1", "properties": {"workspace_id": "w", "colour": "red"}}
        ]})
        .to_string();
        let geo = Geo::default();
        let p = prepare(
            &incoming(body.as_bytes(), None, &CookieState::Absent, &geo),
            plan(),
        )
        .unwrap();
        assert_eq!(p.blocked, 1);
        assert_eq!(p.flagged, 1);
        let out = sent(&p);
        let blocked = &out["batch"][0];
        assert_eq!(blocked["context"]["edge"]["verdict"], "block");
        assert_eq!(
            blocked["context"]["edge"]["violations"][0]["kind"],
            "unplanned_event"
        );
        let flagged = &out["batch"][1];
        assert_eq!(flagged["context"]["edge"]["dropped"][0], "colour");
        assert!(flagged["properties"].get("colour").is_none());
        assert!(
            blocked["messageId"]
                .as_str()
                .is_some_and(|id| id.starts_with("edge-"))
        );
        assert!(out["batch"][0]["context"].get("location").is_none());
    }

    #[test]
    fn invalid_items_are_reported_and_forwarded_raw_but_an_all_invalid_batch_is_refused() {
        let body = json!({"writeKey": "k", "batch": [
            {"type": "track", "event": "x"},
            {"type": "page", "anonymousId": "a"}
        ]})
        .to_string();
        let geo = Geo::default();
        let p = prepare(
            &incoming(body.as_bytes(), None, &CookieState::Absent, &geo),
            plan(),
        )
        .unwrap();
        assert_eq!(p.rejected.len(), 1);
        assert_eq!(p.rejected[0].index, 0);
        assert_eq!(sent(&p)["batch"].as_array().unwrap().len(), 2);

        let none_valid = json!({"writeKey": "k", "batch": [{"type": "track"}]}).to_string();
        let err = prepare(
            &incoming(none_valid.as_bytes(), None, &CookieState::Absent, &geo),
            plan(),
        )
        .unwrap_err();
        assert_eq!(err.status(), 400);
        assert_eq!(err.body()["rejected"][0]["index"], 0);
    }

    #[test]
    fn the_cookie_fills_a_missing_anonymous_id_and_wins_for_the_cookie() {
        let body = json!({"event": "feature_toggled", "writeKey": "k",
            "properties": {"feature_name": "dark_mode", "new_status": true}})
        .to_string();
        let geo = Geo::default();
        let cookie = CookieState::Valid("a-cookie".into());
        let p = prepare(
            &incoming(body.as_bytes(), Some(MessageType::Track), &cookie, &geo),
            plan(),
        )
        .unwrap();
        assert_eq!(p.filled_from_cookie, 1);
        assert_eq!(p.anonymous_id.as_deref(), Some("a-cookie"));
        let m = &sent(&p)["batch"][0];
        assert_eq!(m["anonymousId"], "a-cookie");
        assert_eq!(m["context"]["edge"]["anonymousIdFrom"], "cookie");

        // An anonymousId of white space alone is missing too.
        let blank = json!({"event": "feature_toggled", "writeKey": "k", "anonymousId": "  ",
            "properties": {"feature_name": "dark_mode", "new_status": true}})
        .to_string();
        let p = prepare(
            &incoming(blank.as_bytes(), Some(MessageType::Track), &cookie, &geo),
            plan(),
        )
        .unwrap();
        assert_eq!(sent(&p)["batch"][0]["anonymousId"], "a-cookie");

        // A forged cookie fills nothing: the message has no id and is refused.
        let err = prepare(
            &incoming(
                body.as_bytes(),
                Some(MessageType::Track),
                &CookieState::Forged,
                &geo,
            ),
            plan(),
        )
        .unwrap_err();
        assert_eq!(err, CollectError::Invalid(MessageError::MissingIdentity));
    }

    #[test]
    fn limits_malformed_bodies_and_missing_keys_are_clear_4xx() {
        let geo = Geo::default();
        let c = CookieState::Absent;
        let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
        let err = prepare(&incoming(&big, Some(MessageType::Track), &c, &geo), plan()).unwrap_err();
        assert_eq!(err.status(), 413);
        let huge = vec![b' '; MAX_BATCH_BYTES + 1];
        assert_eq!(
            prepare(&incoming(&huge, None, &c, &geo), plan())
                .unwrap_err()
                .status(),
            413
        );
        for bad in [&b"{not json"[..], &b"[1,2]"[..], &b"{\"batch\": 3}"[..]] {
            let err = prepare(&incoming(bad, None, &c, &geo), plan()).unwrap_err();
            assert_eq!(err.status(), 400, "{err}");
        }
        assert_eq!(
            prepare(&incoming(br#"{"batch": []}"#, None, &c, &geo), plan()).unwrap_err(),
            CollectError::MissingWriteKey
        );
        assert_eq!(
            prepare(
                &incoming(br#"{"writeKey": "k", "batch": []}"#, None, &c, &geo),
                plan()
            )
            .unwrap_err(),
            CollectError::EmptyBatch
        );
    }

    #[test]
    fn basic_auth_gives_the_write_key() {
        let geo = Geo::default();
        let c = CookieState::Absent;
        let body = br#"{"anonymousId": "a"}"#;
        let mut req = incoming(body, Some(MessageType::Page), &c, &geo);
        req.authorization = Some("Basic d2tfYmFzaWM6"); // "wk_basic:"
        let p = prepare(&req, plan()).unwrap();
        assert_eq!(sent(&p)["writeKey"], "wk_basic");
    }

    #[test]
    fn ip_privacy_drop_removes_even_a_client_supplied_ip() {
        let geo = Geo::default();
        let c = CookieState::Absent;
        let body = br#"{"anonymousId": "a", "writeKey": "k", "context": {"ip": "198.51.100.23"}}"#;
        let mut req = incoming(body, Some(MessageType::Page), &c, &geo);
        req.ip_privacy = IpPrivacy::Drop;
        let p = prepare(&req, plan()).unwrap();
        assert!(sent(&p)["batch"][0]["context"].get("ip").is_none());
    }

    #[test]
    fn bots_are_flagged_not_dropped() {
        let geo = Geo::default();
        let c = CookieState::Absent;
        let body = br#"{"anonymousId": "a", "writeKey": "k"}"#;
        let mut req = incoming(body, Some(MessageType::Page), &c, &geo);
        req.user_agent = Some("Mozilla/5.0 (compatible; Googlebot/2.1)");
        let p = prepare(&req, plan()).unwrap();
        assert_eq!(p.bots, 1);
        let edge = &sent(&p)["batch"][0]["context"]["edge"];
        assert_eq!(edge["bot"], true);
        assert_eq!(edge["botReason"], "bot");
    }

    #[test]
    fn derived_message_ids_are_stable_per_request_and_distinct_per_item() {
        assert_eq!(
            derived_message_id(1, 0, "{}"),
            derived_message_id(1, 0, "{}")
        );
        assert_ne!(
            derived_message_id(1, 0, "{}"),
            derived_message_id(1, 1, "{}")
        );
        assert_ne!(
            derived_message_id(1, 0, "{}"),
            derived_message_id(2, 0, "{}")
        );
    }
}
