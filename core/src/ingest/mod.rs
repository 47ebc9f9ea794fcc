//! The Segment-compatible intake: `/v1/{track,identify,page,screen,group,alias,batch}` and the signed
//! edge endpoint. Requests are acknowledged only after their messages are durably committed.

pub mod compat;
pub mod edge;
pub mod limits;
pub mod prepare;
pub mod rate;
pub mod writer;

use crate::debugger::Debugger;
use crate::domain::WriteKey;
use crate::sources::{Source, SourceCounters};
use crate::state::AppState;
use crate::storage::{InsertOutcome, NewRejected, Status};
use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use prepare::{BodyError, Checked, ItemError, MAX_BATCH_BYTES, MAX_MESSAGE_BYTES, Origin};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use std::sync::Arc;
use touchpoint_tracking_plan::{Message, MessageType, Parsed};
use writer::WriteError;

/// Why a request was not acknowledged. Messages are client-safe: no internals.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The body could not be read as a message or batch.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// Larger than the endpoint's limit.
    #[error("request body exceeds {0} bytes")]
    TooLarge(usize),
    /// The body broke off or was badly framed (an invalid chunk, a connection closed early).
    #[error("the request body could not be read: {0}")]
    UnreadableBody(String),
    /// A `Content-Encoding` other than `gzip` or `identity`.
    #[error("Content-Encoding {0:?} is not supported; send gzip or uncompressed JSON")]
    UnsupportedEncoding(String),
    /// `Content-Encoding: gzip` with a body that is not valid gzip data.
    #[error("Content-Encoding is gzip but the body is not valid gzip data: {0}")]
    BadGzip(String),
    /// No write key in the Authorization header or the body.
    #[error(
        "missing write key: send HTTP Basic auth with the write key as user name, or \"writeKey\" in the body"
    )]
    MissingWriteKey,
    /// The write key names no source.
    #[error("unknown write key")]
    UnknownWriteKey,
    /// No item of a batch was a valid message.
    #[error("no valid message in the batch")]
    NothingValid(Vec<ItemError>),
    /// Queue full or storage failing: retry later.
    #[error("temporarily unable to accept messages; retry later")]
    Unavailable,
    /// The write key sent more messages than its rate limit allows; retry after this many seconds.
    #[error("too many messages for this write key; retry after {0} s")]
    RateLimited(u64),
    /// Edge endpoint without a configured secret.
    #[error("the edge endpoint is not enabled on this server")]
    EdgeDisabled,
    /// Bad edge signature.
    #[error("edge signature refused: {0}")]
    Signature(#[from] edge::SignatureError),
    /// A single message over a limit on what is stored.
    #[error("{0}")]
    Limit(#[from] limits::LimitError),
}

impl From<WriteError> for IngestError {
    fn from(e: WriteError) -> Self {
        if !matches!(e, WriteError::Overloaded) {
            tracing::warn!(error = %e, "ingest write failed");
        }
        IngestError::Unavailable
    }
}

impl IngestError {
    /// A stable machine-readable code for the JSON error body (clients branch on it, not on text).
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::Body(BodyError::MalformedJson(_)) => "malformed_json",
            IngestError::Body(BodyError::MalformedBatch(_)) => "malformed_batch",
            IngestError::Body(BodyError::EmptyBatch) => "empty_batch",
            IngestError::Body(BodyError::TooManyItems(_) | BodyError::ExpandsTooMuch(_))
            | IngestError::TooLarge(_) => "too_large",
            IngestError::UnreadableBody(_) => "unreadable_body",
            IngestError::Body(BodyError::Invalid(e)) => prepare::message_error_code(e),
            IngestError::Limit(e) => e.code(),
            IngestError::BadGzip(_) => "bad_gzip",
            IngestError::UnsupportedEncoding(_) => "unsupported_encoding",
            IngestError::MissingWriteKey => "missing_write_key",
            IngestError::UnknownWriteKey => "unknown_write_key",
            IngestError::NothingValid(_) => "nothing_valid",
            IngestError::Unavailable => "unavailable",
            IngestError::RateLimited(_) => "rate_limited",
            IngestError::EdgeDisabled => "edge_disabled",
            IngestError::Signature(_) => "bad_signature",
        }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let status = match &self {
            IngestError::Body(BodyError::TooManyItems(_) | BodyError::ExpandsTooMuch(_))
            | IngestError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::Limit(e) if e.is_size() => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::Limit(_) => StatusCode::BAD_REQUEST,
            IngestError::Body(_)
            | IngestError::NothingValid(_)
            | IngestError::BadGzip(_)
            | IngestError::UnreadableBody(_) => StatusCode::BAD_REQUEST,
            IngestError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IngestError::MissingWriteKey
            | IngestError::UnknownWriteKey
            | IngestError::Signature(_) => StatusCode::UNAUTHORIZED,
            IngestError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            IngestError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            IngestError::EdgeDisabled => StatusCode::NOT_FOUND,
        };
        let mut body = json!({"success": false, "error": self.to_string(), "code": self.code()});
        if let IngestError::NothingValid(items) = &self {
            body["rejected"] = json!(items);
        }
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let IngestError::RateLimited(secs) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// The ingest routes.
pub fn routes() -> Router<AppState> {
    let mut router = Router::new()
        .route("/v1/batch", post(batch))
        .route("/v1/import", post(batch))
        .route("/v1/edge/batch", post(edge_batch));
    for kind in MessageType::ALL {
        router = router.route(
            &format!("/v1/{kind}"),
            post(
                move |state: State<AppState>, headers: HeaderMap, body: Body| {
                    single(state, kind, headers, body)
                },
            ),
        );
    }
    router.merge(compat::routes())
}

/// How a request body is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyEncoding {
    Identity,
    Gzip,
}

fn body_encoding(headers: &HeaderMap) -> Result<BodyEncoding, IngestError> {
    let Some(enc) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(BodyEncoding::Identity);
    };
    let enc = enc.to_str().unwrap_or("?").trim();
    if enc.is_empty() || enc.eq_ignore_ascii_case("identity") {
        Ok(BodyEncoding::Identity)
    } else if enc.eq_ignore_ascii_case("gzip") || enc.eq_ignore_ascii_case("x-gzip") {
        Ok(BodyEncoding::Gzip)
    } else {
        Err(IngestError::UnsupportedEncoding(enc.to_owned()))
    }
}

/// Reads a request body of at most `limit` bytes on the wire and, for `Content-Encoding: gzip`
/// (Segment's analytics-python with `gzip=True`, RudderStack SDKs), at most `limit` bytes once
/// decompressed, so a small gzip bomb cannot expand past the endpoint's limit. Everything after
/// (parsing, the edge signature, rejected-item bodies) sees the decoded JSON.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, IngestError> {
    let encoding = body_encoding(headers)?;
    // A declared size over the limit is refused from the header alone: nothing is read, and a
    // client is not kept sending a body that can only be refused.
    if crate::hardening::declares_more_than(headers, limit) {
        return Err(IngestError::TooLarge(limit));
    }
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|e| body_error(e, limit))?;
    match encoding {
        BodyEncoding::Identity => Ok(bytes),
        BodyEncoding::Gzip => gunzip(&bytes, limit),
    }
}

/// Why a body could not be read: past the limit, or broken off or badly framed (not a size
/// problem, so not 413).
fn body_error(e: axum::Error, limit: usize) -> IngestError {
    let e = e.into_inner();
    if e.is::<http_body_util::LengthLimitError>() {
        IngestError::TooLarge(limit)
    } else {
        IngestError::UnreadableBody(e.to_string())
    }
}

/// Decompresses gzip (one or more members), stopping as soon as the output passes `limit`.
fn gunzip(compressed: &[u8], limit: usize) -> Result<Bytes, IngestError> {
    use std::io::Read;
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::with_capacity(limit.min(compressed.len().saturating_mul(4)));
    flate2::read::MultiGzDecoder::new(compressed)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| IngestError::BadGzip(e.to_string()))?;
    if out.len() > limit {
        return Err(IngestError::TooLarge(limit));
    }
    Ok(out.into())
}

fn source_for(
    state: &AppState,
    headers: &HeaderMap,
    body_key: Option<&str>,
) -> Result<Arc<Source>, IngestError> {
    let key = match headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
    {
        Some(h) => WriteKey::from_basic_auth(h).map_err(|_| IngestError::UnknownWriteKey)?,
        None => WriteKey::parse(body_key.ok_or(IngestError::MissingWriteKey)?)
            .map_err(|_| IngestError::MissingWriteKey)?,
    };
    state.sources.get(&key).ok_or(IngestError::UnknownWriteKey)
}

/// The per-write-key rate limit ([`rate`]): `messages` taken from the source's allowance, or 429.
fn admit(state: &AppState, source: &Source, messages: usize) -> Result<(), IngestError> {
    state
        .rate_limits
        .check(source.id, messages)
        .map_err(|wait| {
            SourceCounters::add(&source.counters.rate_limited, messages);
            tracing::debug!(source = %source.name, messages, "ingest rate limited");
            IngestError::RateLimited(rate::retry_after_secs(wait))
        })
}

async fn single(
    State(state): State<AppState>,
    kind: MessageType,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, IngestError> {
    let bytes = read_body(&headers, body, MAX_MESSAGE_BYTES).await?;
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|e| BodyError::MalformedJson(e.to_string()))?;
    let source = source_for(
        &state,
        &headers,
        value.get("writeKey").and_then(Value::as_str),
    )?;
    admit(&state, &source, 1)?;
    match Message::from_value(value, Some(kind)) {
        Ok(parsed) => {
            let summary = accept(
                &state,
                &source,
                Origin::Direct,
                vec![(0, parsed)],
                Vec::new(),
            )
            .await?;
            match summary.refused.into_iter().next() {
                Some(limit) => Err(limit.into()),
                None => Ok(Json(json!({"success": true}))),
            }
        }
        Err(e) => {
            let item = ItemError {
                index: 0,
                error: e.to_string(),
                code: prepare::message_error_code(&e),
                raw: String::from_utf8_lossy(&bytes).into_owned(),
            };
            accept(&state, &source, Origin::Direct, Vec::new(), vec![item]).await?;
            Err(BodyError::Invalid(e).into())
        }
    }
}

async fn batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, IngestError> {
    let bytes = read_body(&headers, body, MAX_BATCH_BYTES).await?;
    batch_from(&state, &headers, &bytes, Origin::Direct).await
}

async fn edge_batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, IngestError> {
    let secret = state.edge_secret.clone().ok_or(IngestError::EdgeDisabled)?;
    let bytes = read_body(&headers, body, MAX_BATCH_BYTES).await?;
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    edge::verify(
        secret.expose_secret().as_bytes(),
        text(edge::TIMESTAMP_HEADER),
        text(edge::SIGNATURE_HEADER),
        &bytes,
        Utc::now().timestamp(),
        state.edge_replay_window,
    )?;
    // The signature authenticates the edge; the source is still the browser's write key.
    let mut headers = headers;
    headers.remove(header::AUTHORIZATION);
    batch_from(&state, &headers, &bytes, Origin::Edge).await
}

async fn batch_from(
    state: &AppState,
    headers: &HeaderMap,
    bytes: &[u8],
    origin: Origin,
) -> Result<Json<Value>, IngestError> {
    let (envelope, items) = prepare::parse_batch(bytes)?;
    let source = source_for(state, headers, envelope.write_key.as_deref())?;
    admit(state, &source, items.len())?;
    let mut parsed = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match item {
            Ok(p) => parsed.push((index, p)),
            Err(e) => errors.push(e),
        }
    }
    let summary = accept(state, &source, origin, parsed, errors).await?;
    if summary.stored + summary.duplicates == 0 {
        return Err(IngestError::NothingValid(summary.rejected));
    }
    Ok(Json(json!({
        "success": true,
        "stored": summary.stored,
        "duplicates": summary.duplicates,
        "rejected": summary.rejected,
    })))
}

/// What an accepted request stored.
pub(crate) struct Summary {
    /// Newly stored messages.
    pub stored: usize,
    /// Repeats dropped by messageId.
    pub duplicates: usize,
    /// Items that could not be read as messages, in request order.
    pub rejected: Vec<ItemError>,
    /// The first limit a message broke, for single-message endpoints.
    pub refused: Vec<limits::LimitError>,
}

/// Checks, durably stores and publishes messages; rejected items are stored beside them.
/// `parsed` carries each message's index in the request, so refusals are reported by index.
pub(crate) async fn accept(
    state: &AppState,
    source: &Arc<Source>,
    origin: Origin,
    parsed: Vec<(usize, Parsed)>,
    mut errors: Vec<ItemError>,
) -> Result<Summary, IngestError> {
    let counters = &source.counters;
    SourceCounters::add(&counters.received, parsed.len() + errors.len());
    let loaded = state.plan.current();
    let now = Utc::now();
    let checked: Vec<(usize, Checked)> = parsed
        .into_iter()
        .map(|(i, p)| (i, prepare::check(p, &loaded.plan, origin, now)))
        .collect();
    let prepare::Rows { kept, refused } =
        prepare::to_rows(checked, source.id, &loaded.version, now.timestamp_millis())?;
    let mut refused_limits = Vec::with_capacity(refused.len());
    for (item, limit) in refused {
        tracing::info!(source = %source.name, index = item.index, code = item.code, "message refused by a limit");
        errors.push(item);
        refused_limits.push(limit);
    }
    errors.sort_by_key(|e| e.index);
    let (checked, rows): (Vec<Checked>, Vec<_>) = kept.into_iter().unzip();
    let rejected = errors
        .iter()
        .map(|e| NewRejected {
            source_id: source.id,
            received_at_ms: now.timestamp_millis(),
            // Parser errors can quote what was sent (an unknown type of any length).
            reason: crate::storage::truncate_body(&e.error)
                .chars()
                .take(1024)
                .collect(),
            body: prepare::rejected_body(&e.raw),
        })
        .collect();
    let outcomes = state.writer.write(rows, rejected).await?;
    state.pipeline_wake.notify_one();
    let mut summary = Summary {
        stored: 0,
        duplicates: 0,
        rejected: Vec::new(),
        refused: refused_limits,
    };
    for (c, outcome) in checked.iter().zip(&outcomes) {
        match (outcome, c.status) {
            (InsertOutcome::Duplicate, _) => summary.duplicates += 1,
            (InsertOutcome::Stored(_), Status::Accepted) => summary.stored += 1,
            (InsertOutcome::Stored(_), Status::Flagged) => {
                summary.stored += 1;
                SourceCounters::add(&counters.flagged, 1);
            }
            (InsertOutcome::Stored(_), Status::Blocked) => {
                summary.stored += 1;
                SourceCounters::add(&counters.blocked, 1);
            }
        }
    }
    SourceCounters::add(&counters.accepted, summary.stored);
    SourceCounters::add(&counters.deduplicated, summary.duplicates);
    SourceCounters::add(&counters.rejected, errors.len());
    if state.debugger.watched() {
        publish(
            &state.debugger,
            source,
            &loaded.version,
            &checked,
            &outcomes,
            &errors,
        );
    }
    summary.rejected = errors;
    Ok(summary)
}

fn publish(
    debugger: &Debugger,
    source: &Source,
    plan_version: &str,
    checked: &[Checked],
    outcomes: &[InsertOutcome],
    errors: &[ItemError],
) {
    let name: Arc<str> = source.name.as_str().into();
    for (c, outcome) in checked.iter().zip(outcomes) {
        let (seq, status) = match outcome {
            InsertOutcome::Stored(seq) => (Some(*seq), c.status.as_str()),
            InsertOutcome::Duplicate => (None, "duplicate"),
        };
        debugger.publish(
            &name,
            json!({
                "source": &*name, "seq": seq, "status": status,
                "messageId": c.message.message_id, "type": c.message.kind,
                "planVersion": plan_version, "findings": c.findings, "message": c.message,
            }),
        );
    }
    for e in errors {
        let message = serde_json::from_str::<Value>(&e.raw).unwrap_or(Value::String(e.raw.clone()));
        debugger.publish(
            &name,
            json!({"source": &*name, "status": "rejected", "error": e.error, "findings": [], "message": message}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{BodyEncoding, IngestError, body_encoding, gunzip, read_body};
    use axum::body::{Body, Bytes};
    use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
    use axum::response::IntoResponse;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn with_encoding(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn gzip_and_identity_are_the_accepted_encodings() {
        assert_eq!(
            body_encoding(&HeaderMap::new()).unwrap(),
            BodyEncoding::Identity
        );
        assert_eq!(
            body_encoding(&with_encoding("identity")).unwrap(),
            BodyEncoding::Identity
        );
        assert_eq!(
            body_encoding(&with_encoding("gzip")).unwrap(),
            BodyEncoding::Gzip
        );
        assert_eq!(
            body_encoding(&with_encoding("GZip")).unwrap(),
            BodyEncoding::Gzip
        );
        assert_eq!(
            body_encoding(&with_encoding("x-gzip")).unwrap(),
            BodyEncoding::Gzip
        );
        for other in ["br", "deflate", "zstd", "gzip, br"] {
            let err = body_encoding(&with_encoding(other)).unwrap_err();
            assert!(
                matches!(err, IngestError::UnsupportedEncoding(_)),
                "{other}"
            );
            assert_eq!(
                err.into_response().status(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            );
        }
    }

    #[tokio::test]
    async fn a_body_that_breaks_off_is_unreadable_and_one_past_the_limit_is_too_large() {
        let broken = Body::from_stream(futures_util::stream::iter([
            Ok(Bytes::from_static(b"{\"type\"")),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "reset",
            )),
        ]));
        let err = read_body(&HeaderMap::new(), broken, 1000)
            .await
            .unwrap_err();
        assert!(matches!(err, IngestError::UnreadableBody(_)), "{err:?}");
        assert_eq!(err.code(), "unreadable_body");
        assert_eq!(err.into_response().status(), StatusCode::BAD_REQUEST);

        let long = Body::from_stream(futures_util::stream::iter([
            Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 600])),
            Ok(Bytes::from(vec![b' '; 600])),
        ]));
        let err = read_body(&HeaderMap::new(), long, 1000).await.unwrap_err();
        assert!(matches!(err, IngestError::TooLarge(1000)), "{err:?}");
    }

    #[test]
    fn gzip_bodies_are_decompressed_up_to_the_limit() {
        let json = br#"{"type":"track","event":"a","userId":"u"}"#;
        assert_eq!(&gunzip(&gzip(json), 1024).unwrap()[..], json);
        // Exactly at the limit is fine; one byte more is not.
        let exact = vec![b' '; 1000];
        assert_eq!(gunzip(&gzip(&exact), 1000).unwrap().len(), 1000);
        let err = gunzip(&gzip(&vec![b' '; 1001]), 1000).unwrap_err();
        assert!(matches!(err, IngestError::TooLarge(1000)), "{err:?}");
        assert_eq!(err.into_response().status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        // 8 MB of zeros compress to ~8 KB; decoding must stop right after the 32 KB limit.
        let bomb = gzip(&vec![0u8; 8 << 20]);
        assert!(bomb.len() < 32 * 1024);
        assert!(matches!(
            gunzip(&bomb, 32 * 1024),
            Err(IngestError::TooLarge(32768))
        ));
    }

    #[test]
    fn concatenated_gzip_members_are_one_body() {
        let mut two = gzip(b"[1,");
        two.extend(gzip(b"2]"));
        assert_eq!(&gunzip(&two, 100).unwrap()[..], b"[1,2]");
    }

    #[test]
    fn corrupt_or_truncated_gzip_is_a_400_with_a_reason() {
        let good = gzip(br#"{"event":"a"}"#);
        for bad in [
            b"not gzip at all".to_vec(),
            good[..good.len() - 5].to_vec(),
            {
                let mut flipped = good.clone();
                let n = flipped.len();
                flipped[n - 6] ^= 0xff; // breaks the CRC
                flipped
            },
        ] {
            let err = gunzip(&bad, 1024).unwrap_err();
            assert!(matches!(err, IngestError::BadGzip(_)), "{err:?}");
            assert!(err.to_string().contains("not valid gzip"));
            assert_eq!(err.into_response().status(), StatusCode::BAD_REQUEST);
        }
    }
}
