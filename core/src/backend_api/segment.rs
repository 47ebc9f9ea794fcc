//! Segment Profile API compatible routes, so backend code written against Segment works by changing
//! the host and the token: `/v1/spaces/{space_id}/collections/users/profiles/{id_type}:{id}/…`
//! `traits`, `events`, `external_ids`, `metadata` and `links`, and an account's `traits` under
//! `collections/accounts/profiles/group_id:{id}`. Authentication is HTTP Basic with the token as
//! the username (`curl -u tp_…:`), or a bearer token; any space id is accepted (a Touchpoint
//! server is one space). Paging (`limit`, `next`), field selection (`include`, `exclude`, `class`,
//! `verbose`, `start`, `end`, `sort`) and the answer shapes (`{"traits": …, "cursor": {"url",
//! "has_more", "next", "limit"}}`, `{"data": […], "cursor": …}`, `{"error": {"code", "message"}}`)
//! follow Segment's documentation. Errors use Segment's codes; 403 (a token without
//! `profiles:read`) is Touchpoint's own, as Segment's tokens have no scopes.

use super::auth::{ProfilesRead, SegmentScoped};
use super::store::EventQuery;
use super::{ApiError, cached, cursor, iso, list_param, profile_of, time_param};
use crate::hardening::{Path, Query};
use crate::profiles::computed;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

const USERS: &str = "/v1/spaces/{space_id}/collections/users/profiles/{external_id}";

/// The Segment-compatible routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(&format!("{USERS}/traits"), get(traits))
        .route(&format!("{USERS}/events"), get(events))
        .route(&format!("{USERS}/external_ids"), get(external_ids))
        .route(&format!("{USERS}/metadata"), get(metadata))
        .route(&format!("{USERS}/links"), get(links))
        .route(
            "/v1/spaces/{space_id}/collections/accounts/profiles/{external_id}/traits",
            get(account_traits),
        )
}

/// An error in Segment's shape: `{"error": {"code": "…", "message": "…"}}`.
#[derive(Debug)]
pub struct SegmentError(pub ApiError);

impl From<ApiError> for SegmentError {
    fn from(e: ApiError) -> SegmentError {
        SegmentError(e)
    }
}

impl From<crate::storage::StorageError> for SegmentError {
    fn from(e: crate::storage::StorageError) -> SegmentError {
        SegmentError(ApiError::Storage(e))
    }
}

/// The body of a Segment error.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SegmentErrorBody {
    /// The error.
    pub error: SegmentErrorDetail,
}

/// What went wrong, with Segment's code.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SegmentErrorDetail {
    /// `authentication_error`, `forbidden`, `not_found`, `rate_limit_error`, `validation_error`
    /// or `server_error`.
    pub code: String,
    /// Explanation.
    pub message: String,
}

impl IntoResponse for SegmentError {
    fn into_response(self) -> Response {
        let (code, message) = match &self.0 {
            ApiError::Unauthorized => ("authentication_error", self.0.to_string()),
            ApiError::Forbidden(_) => ("forbidden", self.0.to_string()),
            ApiError::RateLimited(_) => ("rate_limit_error", self.0.to_string()),
            ApiError::NotFound("profile") => ("not_found", "Profile was not found.".to_owned()),
            ApiError::NotFound(_) => ("not_found", self.0.to_string()),
            ApiError::BadRequest(_) => ("validation_error", self.0.to_string()),
            ApiError::Storage(_) => ("server_error", self.0.to_string()),
        };
        let body = SegmentErrorBody {
            error: SegmentErrorDetail {
                code: code.to_owned(),
                message,
            },
        };
        self.0
            .decorate((self.0.status(), Json(body)).into_response())
    }
}

/// Segment's paging block.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SegmentCursor {
    /// The path of this list.
    pub url: String,
    /// Whether another page follows.
    pub has_more: bool,
    /// Pass as `next` to get the next page; empty on the last page.
    pub next: String,
    /// The page size used.
    pub limit: i64,
}

impl SegmentCursor {
    /// The cursor of a page of the list at `uri`: another page follows exactly when `next` is set.
    fn page(uri: &axum::http::Uri, next: String, limit: i64) -> SegmentCursor {
        SegmentCursor {
            url: uri.path().to_owned(),
            has_more: !next.is_empty(),
            next,
            limit,
        }
    }
}

/// The path parameters of every Segment route.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SegmentPath {
    /// Any value: a Touchpoint server is one space.
    pub space_id: String,
    /// `id_type:id`, e.g. `user_id:u-1`, `anonymous_id:a-1`, `email:ada@example.com`
    /// (percent-encode `+` as `%2B`); for accounts, `group_id:{groupId}`.
    pub external_id: String,
}

/// Parameters of the traits route.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TraitsParams {
    /// `audience` (audience memberships as true/false traits) or `computed_trait`; all when absent.
    pub class: Option<String>,
    /// Comma-separated trait names to return.
    pub include: Option<String>,
    /// Traits per page, 1–200 (default 10).
    pub limit: Option<i64>,
    /// The `cursor.next` of the previous page (the first trait name of the next page).
    pub next: Option<String>,
    /// Alias of `next`.
    pub cursor: Option<String>,
    /// `true`: each trait as `{"value", "source_id", "updated_at"}`.
    pub verbose: Option<bool>,
}

/// A profile's traits.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TraitsResponse {
    /// Trait name → value (or `{"value", "source_id", "updated_at"}` with `verbose=true`).
    pub traits: BTreeMap<String, Value>,
    /// Paging.
    pub cursor: SegmentCursor,
}

/// One trait before field selection: value, when it was set, and by which source.
struct Trait {
    value: Value,
    updated_at: Option<i64>,
    source: Option<String>,
}

/// The computed traits as Segment-style named traits.
fn computed_traits(c: &computed::ComputedTraits) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    if let Some(t) = c.first_seen {
        out.insert("first_seen".to_owned(), json!(iso(t)));
    }
    if let Some(t) = c.last_seen {
        out.insert("last_seen".to_owned(), json!(iso(t)));
    }
    out.insert("messages_total".to_owned(), json!(c.messages_total));
    out.insert(
        "page_views_last_30_days".to_owned(),
        json!(c.page_views.last_30d),
    );
    out.insert(
        "active_days_last_30_days".to_owned(),
        json!(c.active_days_30d),
    );
    if let Some(stage) = &c.journey_stage {
        out.insert("journey_stage".to_owned(), json!(stage));
    }
    for (event, counts) in &c.events {
        out.insert(format!("{event}_last_30_days"), json!(counts.last_30d));
    }
    out
}

/// Gets a profile's traits: its own, computed traits and audience memberships.
#[utoipa::path(get, operation_id = "segmentGetTraits", path = "/v1/spaces/{space_id}/collections/users/profiles/{external_id}/traits",
    tag = "segment", security(("basic" = ["profiles:read"]), ("bearer" = ["profiles:read"])),
    params(SegmentPath, TraitsParams),
    responses(
        (status = 200, description = "The traits", body = TraitsResponse),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
        (status = 400, description = "validation_error", body = SegmentErrorBody),
        (status = 401, description = "authentication_error", body = SegmentErrorBody),
        (status = 403, description = "The token lacks profiles:read", body = SegmentErrorBody),
        (status = 404, description = "Profile was not found.", body = SegmentErrorBody),
        (status = 429, description = "rate_limit_error; see Retry-After", body = SegmentErrorBody),
    ))]
pub async fn traits(
    _: SegmentScoped<ProfilesRead>,
    State(state): State<AppState>,
    Path((_space, external_id)): Path<(String, String)>,
    Query(p): Query<TraitsParams>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, SegmentError> {
    let id = profile_of(&state, &external_id).await?;
    let (own, computed, audiences) = match p.class.as_deref() {
        None | Some("") => (true, true, true),
        Some("audience") => (false, false, true),
        Some("computed_trait") => (false, true, false),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "class must be audience or computed_trait, got {other:?}"
            ))
            .into());
        }
    };
    let mut all: BTreeMap<String, Trait> = BTreeMap::new();
    if own {
        for t in state.api.store.sourced_traits(&id).await? {
            all.insert(
                t.key,
                Trait {
                    value: t.value,
                    updated_at: Some(t.updated_at),
                    source: t.source,
                },
            );
        }
    }
    if computed {
        let now = state.clock.now_ms();
        let stats = state.profiles.event_stats(&id, now).await?;
        let active = state
            .profiles
            .active_days(&id, now - 30 * 86_400_000)
            .await?;
        let c = computed::compute(&stats, active, &state.plan.current().plan);
        for (k, v) in computed_traits(&c) {
            all.entry(k).or_insert(Trait {
                value: v,
                updated_at: None,
                source: None,
            });
        }
    }
    if audiences {
        // Per audience: true while a membership period is open, false once every period closed.
        let mut flags: BTreeMap<String, (bool, i64)> = BTreeMap::new();
        for m in state
            .audiences
            .memberships(&id)
            .await
            .map_err(ApiError::from)?
        {
            let f = flags.entry(m.audience).or_insert((false, 0));
            f.0 |= m.exited_at.is_none();
            f.1 = f.1.max(m.exited_at.unwrap_or(m.entered_at));
        }
        for (audience, (current, at)) in flags {
            all.entry(audience).or_insert(Trait {
                value: json!(current),
                updated_at: Some(at),
                source: None,
            });
        }
    }
    let include = list_param(p.include.as_deref());
    if !include.is_empty() {
        all.retain(|k, _| include.contains(k));
    }
    let limit = p.limit.unwrap_or(10).clamp(1, 200);
    let start = p.next.or(p.cursor).unwrap_or_default();
    let verbose = p.verbose.unwrap_or(false);
    let mut rest = all.into_iter().filter(|(k, _)| *k >= start);
    let page: BTreeMap<String, Value> = rest
        .by_ref()
        .take(limit as usize)
        .map(|(k, t)| {
            let v = if verbose {
                json!({"value": t.value, "source_id": t.source, "updated_at": t.updated_at.map(iso)})
            } else {
                t.value
            };
            (k, v)
        })
        .collect();
    let next = rest.next().map(|(k, _)| k).unwrap_or_default();
    let body = TraitsResponse {
        traits: page,
        cursor: SegmentCursor::page(&uri, next, limit),
    };
    Ok(cached(&headers, &body))
}

/// Parameters of the events route.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SegmentEventsParams {
    /// Events after this time (ISO 8601, e.g. `2026-01-02` or `2026-01-02T03:04:05Z`).
    pub start: Option<String>,
    /// Events before this time (ISO 8601).
    pub end: Option<String>,
    /// Comma-separated event names to include (`Page Viewed`, `Screen Viewed` for views).
    pub include: Option<String>,
    /// Comma-separated event names to exclude.
    pub exclude: Option<String>,
    /// Events per page, 1–100 (default 10).
    pub limit: Option<i64>,
    /// `desc` (newest first, the default) or `asc`.
    pub sort: Option<String>,
    /// The `cursor.next` of the previous page.
    pub next: Option<String>,
    /// Alias of `next`.
    pub cursor: Option<String>,
}

/// An identifier as Segment lists it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SegmentExternalId {
    /// The source's name, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    /// `users` or `accounts`.
    pub collection: String,
    /// The value.
    pub id: String,
    /// The kind, e.g. `user_id`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When it joined the profile (ISO 8601).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Always `none`.
    pub encoding: String,
    /// The messageId of the message that brought it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_message_id: Option<String>,
}

/// One event of a profile, in Segment's shape.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SegmentEvent {
    /// The message's userId and anonymousId.
    pub external_ids: Vec<SegmentExternalId>,
    /// The message's context.
    pub context: Value,
    /// Message type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The messageId.
    pub message_id: String,
    /// The source's name.
    pub source_id: Option<String>,
    /// Event time (ISO 8601).
    pub timestamp: String,
    /// The message's properties (traits for identify and group calls).
    pub properties: Value,
    /// The track event, `Page Viewed` or `Screen Viewed`; null for other types.
    pub event: Option<String>,
    /// The profile: `{"users": "<profile id>"}`.
    pub related: Value,
}

/// A page of events.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SegmentEventsResponse {
    /// The events.
    pub data: Vec<SegmentEvent>,
    /// Paging.
    pub cursor: SegmentCursor,
}

/// Gets a profile's events, newest first.
#[utoipa::path(get, operation_id = "segmentGetEvents", path = "/v1/spaces/{space_id}/collections/users/profiles/{external_id}/events",
    tag = "segment", security(("basic" = ["profiles:read"]), ("bearer" = ["profiles:read"])),
    params(SegmentPath, SegmentEventsParams),
    responses(
        (status = 200, description = "A page of events", body = SegmentEventsResponse),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
        (status = 400, description = "validation_error", body = SegmentErrorBody),
        (status = 401, description = "authentication_error", body = SegmentErrorBody),
        (status = 403, description = "The token lacks profiles:read", body = SegmentErrorBody),
        (status = 404, description = "Profile was not found.", body = SegmentErrorBody),
        (status = 429, description = "rate_limit_error; see Retry-After", body = SegmentErrorBody),
    ))]
pub async fn events(
    _: SegmentScoped<ProfilesRead>,
    State(state): State<AppState>,
    Path((_space, external_id)): Path<(String, String)>,
    Query(p): Query<SegmentEventsParams>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, SegmentError> {
    let id = profile_of(&state, &external_id).await?;
    let limit = p.limit.unwrap_or(10).clamp(1, 100);
    let after = match p.next.or(p.cursor).filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(cursor::decode_position(&c).ok_or_else(|| {
            ApiError::BadRequest("next must be the cursor.next of a previous page".into())
        })?),
    };
    let query = EventQuery {
        after,
        ascending: match p.sort.as_deref() {
            None | Some("desc") => false,
            Some("asc") => true,
            Some(o) => {
                return Err(
                    ApiError::BadRequest(format!("sort must be asc or desc, got {o:?}")).into(),
                );
            }
        },
        start: time_param("start", p.start.as_deref())?,
        end: time_param("end", p.end.as_deref())?,
        events: list_param(p.include.as_deref()),
        exclude: list_param(p.exclude.as_deref()),
        kinds: Vec::new(),
        limit: limit + 1,
    };
    let mut rows = state.api.store.events(&id, &query).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = if more {
        rows.last()
            .map(|r| cursor::encode_position(r.event_time, r.seq))
            .unwrap_or_default()
    } else {
        String::new()
    };
    let data = rows
        .into_iter()
        .map(|r| {
            let body = &r.body;
            let mut ids = Vec::new();
            for (field, kind) in [("userId", "user_id"), ("anonymousId", "anonymous_id")] {
                if let Some(v) = body.get(field).and_then(Value::as_str) {
                    ids.push(SegmentExternalId {
                        source_id: None,
                        collection: "users".into(),
                        id: v.to_owned(),
                        kind: kind.into(),
                        created_at: None,
                        encoding: "none".into(),
                        first_message_id: None,
                    });
                }
            }
            let properties = body
                .get("properties")
                .or_else(|| body.get("traits"))
                .cloned()
                .unwrap_or_else(|| json!({}));
            let event = match r.kind.as_str() {
                "page" => Some("Page Viewed".to_owned()),
                "screen" => Some("Screen Viewed".to_owned()),
                _ => r.event,
            };
            SegmentEvent {
                external_ids: ids,
                context: body.get("context").cloned().unwrap_or_else(|| json!({})),
                kind: r.kind,
                message_id: r.message_id,
                source_id: r.source,
                timestamp: iso(r.event_time),
                properties,
                event,
                related: json!({"users": id}),
            }
        })
        .collect();
    let body = SegmentEventsResponse {
        data,
        cursor: SegmentCursor::page(&uri, next, limit),
    };
    Ok(cached(&headers, &body))
}

/// Parameters of the external ids route.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExternalIdsParams {
    /// Comma-separated kinds to include, e.g. `user_id,anonymous_id`.
    pub include: Option<String>,
    /// Ids per page, 1–100 (default 25).
    pub limit: Option<i64>,
    /// The `cursor.next` of the previous page.
    pub next: Option<String>,
    /// Alias of `next`.
    pub cursor: Option<String>,
    /// Accepted for compatibility; the answer is always complete.
    pub verbose: Option<bool>,
}

/// A profile's identifiers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExternalIdsResponse {
    /// The identifiers, by kind and value.
    pub data: Vec<SegmentExternalId>,
    /// Paging.
    pub cursor: SegmentCursor,
}

/// Gets a profile's identifiers.
#[utoipa::path(get, operation_id = "segmentGetExternalIds",
    path = "/v1/spaces/{space_id}/collections/users/profiles/{external_id}/external_ids",
    tag = "segment", security(("basic" = ["profiles:read"]), ("bearer" = ["profiles:read"])),
    params(SegmentPath, ExternalIdsParams),
    responses(
        (status = 200, description = "The identifiers", body = ExternalIdsResponse),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
        (status = 400, description = "validation_error", body = SegmentErrorBody),
        (status = 401, description = "authentication_error", body = SegmentErrorBody),
        (status = 403, description = "The token lacks profiles:read", body = SegmentErrorBody),
        (status = 404, description = "Profile was not found.", body = SegmentErrorBody),
        (status = 429, description = "rate_limit_error; see Retry-After", body = SegmentErrorBody),
    ))]
pub async fn external_ids(
    _: SegmentScoped<ProfilesRead>,
    State(state): State<AppState>,
    Path((_space, external_id)): Path<(String, String)>,
    Query(p): Query<ExternalIdsParams>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, SegmentError> {
    let id = profile_of(&state, &external_id).await?;
    let limit = p.limit.unwrap_or(25).clamp(1, 100);
    let start = match p.next.or(p.cursor).filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(cursor::decode(&c, 2).ok_or_else(|| {
            ApiError::BadRequest("next must be the cursor.next of a previous page".into())
        })?),
    };
    let include = list_param(p.include.as_deref());
    let mut rest = state
        .api
        .store
        .external_ids(&id)
        .await?
        .into_iter()
        .filter(|r| include.is_empty() || include.contains(&r.kind))
        .filter(|r| {
            start
                .as_ref()
                .is_none_or(|s| (r.kind.as_str(), r.value.as_str()) >= (&s[0], &s[1]))
        });
    let data: Vec<SegmentExternalId> = rest
        .by_ref()
        .take(limit as usize)
        .map(|r| SegmentExternalId {
            source_id: r.source,
            collection: "users".into(),
            id: r.value,
            kind: r.kind,
            created_at: Some(iso(r.added_at)),
            encoding: "none".into(),
            first_message_id: r.message_id,
        })
        .collect();
    let next = rest
        .next()
        .map(|r| cursor::encode(&[&r.kind, &r.value]))
        .unwrap_or_default();
    let body = ExternalIdsResponse {
        data,
        cursor: SegmentCursor::page(&uri, next, limit),
    };
    Ok(cached(&headers, &body))
}

/// A profile's metadata.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Metadata {
    /// Profile created (ISO 8601).
    pub created_at: String,
    /// Last change: the event time of its last message or trait update, whichever is later
    /// (its creation time when it has neither) (ISO 8601).
    pub updated_at: String,
    /// Always null: profiles do not expire.
    pub expires_at: Option<String>,
    /// The messageId of its first message.
    pub first_message_id: Option<String>,
    /// The source of its first message.
    pub first_source_id: Option<String>,
    /// The messageId of its last message.
    pub last_message_id: Option<String>,
    /// The source of its last message.
    pub last_source_id: Option<String>,
}

/// The metadata answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MetadataResponse {
    /// The metadata.
    pub metadata: Metadata,
}

/// Parameters of the metadata route.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MetadataParams {
    /// Accepted for compatibility; the answer is always complete.
    pub verbose: Option<bool>,
}

/// Gets a profile's metadata.
#[utoipa::path(get, operation_id = "segmentGetMetadata", path = "/v1/spaces/{space_id}/collections/users/profiles/{external_id}/metadata",
    tag = "segment", security(("basic" = ["profiles:read"]), ("bearer" = ["profiles:read"])),
    params(SegmentPath, MetadataParams),
    responses(
        (status = 200, description = "The metadata", body = MetadataResponse),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
        (status = 401, description = "authentication_error", body = SegmentErrorBody),
        (status = 403, description = "The token lacks profiles:read", body = SegmentErrorBody),
        (status = 404, description = "Profile was not found.", body = SegmentErrorBody),
        (status = 429, description = "rate_limit_error; see Retry-After", body = SegmentErrorBody),
    ))]
pub async fn metadata(
    _: SegmentScoped<ProfilesRead>,
    State(state): State<AppState>,
    Path((_space, external_id)): Path<(String, String)>,
    Query(_): Query<MetadataParams>,
    headers: HeaderMap,
) -> Result<Response, SegmentError> {
    let id = profile_of(&state, &external_id).await?;
    let (_, created_at, _) = state
        .profiles
        .profile(&id)
        .await
        .map_err(ApiError::from)?
        .ok_or(ApiError::NotFound("profile"))?;
    let m = state.api.store.metadata(&id).await?;
    let trait_time = state
        .api
        .store
        .sourced_traits(&id)
        .await?
        .iter()
        .map(|t| t.updated_at)
        .max();
    let updated = m.last_event_time.max(trait_time).unwrap_or(created_at);
    let (first_message_id, first_source_id) = m.first.map_or((None, None), |(a, b)| (Some(a), b));
    let (last_message_id, last_source_id) = m.last.map_or((None, None), |(a, b)| (Some(a), b));
    Ok(cached(
        &headers,
        &MetadataResponse {
            metadata: Metadata {
                created_at: iso(created_at),
                updated_at: iso(updated),
                expires_at: None,
                first_message_id,
                first_source_id,
                last_message_id,
                last_source_id,
            },
        },
    ))
}

/// Profiles linked to this one: for a user, its accounts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Link {
    /// `accounts`.
    pub to_collection: String,
    /// The account's `group_id`.
    pub external_ids: Vec<SegmentExternalId>,
}

/// The links answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LinksResponse {
    /// The linked accounts.
    pub data: Vec<Link>,
}

/// Gets the accounts a user belongs to.
#[utoipa::path(get, operation_id = "segmentGetLinks", path = "/v1/spaces/{space_id}/collections/users/profiles/{external_id}/links",
    tag = "segment", security(("basic" = ["profiles:read"]), ("bearer" = ["profiles:read"])),
    params(SegmentPath),
    responses(
        (status = 200, description = "The linked accounts", body = LinksResponse),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
        (status = 401, description = "authentication_error", body = SegmentErrorBody),
        (status = 403, description = "The token lacks profiles:read", body = SegmentErrorBody),
        (status = 404, description = "Profile was not found.", body = SegmentErrorBody),
        (status = 429, description = "rate_limit_error; see Retry-After", body = SegmentErrorBody),
    ))]
pub async fn links(
    _: SegmentScoped<ProfilesRead>,
    State(state): State<AppState>,
    Path((_space, external_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, SegmentError> {
    let id = profile_of(&state, &external_id).await?;
    let data = state
        .profiles
        .accounts(&id)
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .map(|(group_id, _)| Link {
            to_collection: "accounts".into(),
            external_ids: vec![SegmentExternalId {
                source_id: None,
                collection: "accounts".into(),
                id: group_id,
                kind: "group_id".into(),
                created_at: None,
                encoding: "none".into(),
                first_message_id: None,
            }],
        })
        .collect();
    Ok(cached(&headers, &LinksResponse { data }))
}

/// Gets an account's traits (`group_id:{groupId}`).
#[utoipa::path(get, operation_id = "segmentGetAccountTraits",
    path = "/v1/spaces/{space_id}/collections/accounts/profiles/{external_id}/traits",
    tag = "segment", security(("basic" = ["profiles:read"]), ("bearer" = ["profiles:read"])),
    params(SegmentPath, TraitsParams),
    responses(
        (status = 200, description = "The account's traits", body = TraitsResponse),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
        (status = 400, description = "validation_error", body = SegmentErrorBody),
        (status = 401, description = "authentication_error", body = SegmentErrorBody),
        (status = 403, description = "The token lacks profiles:read", body = SegmentErrorBody),
        (status = 404, description = "Profile was not found.", body = SegmentErrorBody),
        (status = 429, description = "rate_limit_error; see Retry-After", body = SegmentErrorBody),
    ))]
pub async fn account_traits(
    _: SegmentScoped<ProfilesRead>,
    State(state): State<AppState>,
    Path((_space, external_id)): Path<(String, String)>,
    Query(p): Query<TraitsParams>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, SegmentError> {
    let group_id = external_id
        .strip_prefix("group_id:")
        .filter(|g| !g.is_empty())
        .ok_or_else(|| {
            ApiError::BadRequest("accounts are looked up as group_id:{groupId}".into())
        })?;
    let rows = state.api.store.account_traits(group_id).await?;
    if rows.is_empty() {
        return Err(ApiError::NotFound("profile").into());
    }
    let include = list_param(p.include.as_deref());
    let limit = p.limit.unwrap_or(10).clamp(1, 200);
    let start = p.next.or(p.cursor).unwrap_or_default();
    let verbose = p.verbose.unwrap_or(false);
    let mut rest = rows
        .into_iter()
        .filter(|(k, _, _)| include.is_empty() || include.contains(k))
        .filter(|(k, _, _)| *k >= start);
    let traits = rest
        .by_ref()
        .take(limit as usize)
        .map(|(k, v, t)| {
            let v = if verbose {
                json!({"value": v, "source_id": null, "updated_at": iso(t)})
            } else {
                v
            };
            (k, v)
        })
        .collect();
    let next = rest.next().map(|(k, _, _)| k).unwrap_or_default();
    Ok(cached(
        &headers,
        &TraitsResponse {
            traits,
            cursor: SegmentCursor::page(&uri, next, limit),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles::computed::{ComputedTraits, Counts};

    #[test]
    fn computed_traits_are_named_like_segment_computed_traits() {
        let c = ComputedTraits {
            first_seen: Some(1_515_111_395_663),
            last_seen: None,
            messages_total: 7,
            page_views: Counts {
                total: 3,
                last_7d: 2,
                last_30d: 3,
            },
            events: [(
                "emails_opened".to_owned(),
                Counts {
                    total: 40,
                    last_7d: 5,
                    last_30d: 33,
                },
            )]
            .into(),
            active_days_30d: 4,
            journey_stage: Some("activated".into()),
        };
        let t = computed_traits(&c);
        assert_eq!(t["first_seen"], json!("2018-01-05T00:16:35.663Z"));
        assert!(!t.contains_key("last_seen"));
        assert_eq!(t["emails_opened_last_30_days"], json!(33));
        assert_eq!(t["page_views_last_30_days"], json!(3));
        assert_eq!(t["journey_stage"], json!("activated"));
    }
}
