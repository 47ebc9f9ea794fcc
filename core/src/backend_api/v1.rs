//! The versioned read API for backends (`/v1/…`): a profile by any identifier (traits, computed
//! traits, identities, accounts, audiences), its events (paged, filtered by event, type and time),
//! its audiences, audience definitions, member lists (paged by profile id: stable cursors),
//! membership checks, and account profiles. Every answer carries an ETag (304 on `If-None-Match`).

use super::auth::{AudiencesRead, ProfilesRead, Scoped};
use super::store::EventQuery;
use super::{ApiError, ErrorBody, cached, cursor, list_param, profile_of, time_param};
use crate::hardening::{Path, Query};
use crate::identity::ProfileId;
use crate::profiles::computed;
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// The `/v1` read routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/profiles/{external_id}", get(profile))
        .route("/v1/profiles/{external_id}/events", get(events))
        .route(
            "/v1/profiles/{external_id}/audiences",
            get(profile_audiences),
        )
        .route("/v1/audiences", get(audiences))
        .route("/v1/audiences/{audience_id}", get(audience))
        .route("/v1/audiences/{audience_id}/members", get(members))
        .route(
            "/v1/audiences/{audience_id}/members/{external_id}",
            get(membership),
        )
        .route("/v1/accounts/{group_id}", get(account))
        .route("/v1/accounts/{group_id}/members", get(account_members))
}

/// An identifier of a profile.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentityView {
    /// Kind: `user_id`, `anonymous_id`, `email`, `phone` or a custom external id type.
    pub kind: String,
    /// Normalised value.
    pub value: String,
    /// When it joined the profile (ms since the Unix epoch).
    pub added_at: i64,
}

/// An account (group) a profile belongs to.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountRef {
    /// The groupId.
    pub group_id: String,
    /// The account's traits.
    pub traits: BTreeMap<String, Value>,
}

/// A profile.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileView {
    /// Profile id (stable until the profile is merged into another).
    #[schema(value_type = String)]
    pub id: ProfileId,
    /// Created (ms since the Unix epoch).
    pub created_at: i64,
    /// Traits from identify calls, last write wins by event time.
    pub traits: BTreeMap<String, Value>,
    /// Computed traits: first/last seen, message counts, page views and per-event counts (all time,
    /// 7 and 30 days), active days in the last 30, journey stage.
    #[schema(value_type = Object)]
    pub computed: computed::ComputedTraits,
    /// Identifiers.
    pub identities: Vec<IdentityView>,
    /// Accounts (groups) with their traits.
    pub accounts: Vec<AccountRef>,
    /// Ids of the audiences the profile is in now.
    pub audiences: Vec<String>,
}

/// The external id path parameter.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ExternalIdPath {
    /// `kind:value`, e.g. `user_id:u-1`, `email:ada@example.com` (percent-encode `+` as `%2B`).
    pub external_id: String,
}

/// Looks a profile up by any identifier.
#[utoipa::path(get, operation_id = "getProfile", path = "/v1/profiles/{external_id}", tag = "profiles",
    security(("bearer" = ["profiles:read"])),
    params(ExternalIdPath),
    responses(
        (status = 200, description = "The profile", body = ProfileView,
            headers(("ETag" = String, description = "Send back in If-None-Match"))),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
        (status = 400, description = "Not a kind:value external id", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token lacks profiles:read", body = ErrorBody),
        (status = 404, description = "No profile has this identifier", body = ErrorBody),
        (status = 429, description = "Rate limit spent; see Retry-After", body = ErrorBody),
    ))]
pub async fn profile(
    _: Scoped<ProfilesRead>,
    State(state): State<AppState>,
    Path(external_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = profile_of(&state, &external_id).await?;
    Ok(cached(&headers, &profile_view(&state, &id).await?))
}

/// Reads a live profile as [`ProfileView`].
pub async fn profile_view(state: &AppState, id: &ProfileId) -> Result<ProfileView, ApiError> {
    let store = &state.profiles;
    let (_, created_at, _) = store
        .profile(id)
        .await?
        .ok_or(ApiError::NotFound("profile"))?;
    let now = state.clock.now_ms();
    let stats = store.event_stats(id, now).await?;
    let active = store.active_days(id, now - 30 * 86_400_000).await?;
    let computed = computed::compute(&stats, active, &state.plan.current().plan);
    let traits = store
        .traits(id)
        .await?
        .into_iter()
        .map(|t| (t.key, t.value))
        .collect();
    let identities = store
        .identities(id)
        .await?
        .into_iter()
        .map(|i| IdentityView {
            kind: i.kind,
            value: i.value,
            added_at: i.added_at,
        })
        .collect();
    let accounts = store
        .accounts(id)
        .await?
        .into_iter()
        .map(|(group_id, traits)| AccountRef {
            group_id,
            traits: traits.into_iter().map(|t| (t.key, t.value)).collect(),
        })
        .collect();
    let audiences = state
        .audiences
        .memberships(id)
        .await?
        .into_iter()
        .filter(|m| m.exited_at.is_none())
        .map(|m| m.audience)
        .collect();
    Ok(ProfileView {
        id: id.clone(),
        created_at,
        traits,
        computed,
        identities,
        accounts,
        audiences,
    })
}

/// Filters and paging of a profile's events.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsParams {
    /// Only these events (comma-separated: track event names; `Page Viewed`, `Screen Viewed`).
    pub event: Option<String>,
    /// Only these message types (comma-separated: track, page, screen, identify, group, alias).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    /// Events at or after this time (ms since the epoch, RFC 3339 or YYYY-MM-DD).
    pub start: Option<String>,
    /// Events before this time (same forms as `start`).
    pub end: Option<String>,
    /// `desc` (newest first, the default) or `asc`.
    pub order: Option<String>,
    /// Page size, 1–500 (default 50).
    pub limit: Option<i64>,
    /// The `next` cursor of the previous page.
    pub cursor: Option<String>,
}

/// One message of a profile.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// Log position.
    pub seq: i64,
    /// Message type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Track event name.
    pub event: Option<String>,
    /// Event time (ms since the Unix epoch, skew-corrected).
    pub timestamp: i64,
    /// The messageId.
    pub message_id: String,
    /// The source's name.
    pub source: Option<String>,
    /// The message as stored.
    pub message: Value,
}

/// A page of a profile's events.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventsPage {
    /// The profile.
    #[schema(value_type = String)]
    pub profile_id: ProfileId,
    /// The events of this page.
    pub items: Vec<EventView>,
    /// Cursor of the next page; null on the last page.
    pub next: Option<String>,
}

/// Pages through a profile's events.
#[utoipa::path(get, operation_id = "listProfileEvents", path = "/v1/profiles/{external_id}/events", tag = "profiles",
    security(("bearer" = ["profiles:read"])),
    params(ExternalIdPath, EventsParams),
    responses(
        (status = 200, description = "A page of events", body = EventsPage),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
        (status = 400, description = "Bad filter or cursor", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token lacks profiles:read", body = ErrorBody),
        (status = 404, description = "No profile has this identifier", body = ErrorBody),
        (status = 429, description = "Rate limit spent; see Retry-After", body = ErrorBody),
    ))]
pub async fn events(
    _: Scoped<ProfilesRead>,
    State(state): State<AppState>,
    Path(external_id): Path<String>,
    Query(p): Query<EventsParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = profile_of(&state, &external_id).await?;
    let limit = p.limit.unwrap_or(50).clamp(1, 500);
    let query = EventQuery {
        after: match p.cursor.as_deref().filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => Some(cursor::decode_position(c).ok_or_else(bad_cursor)?),
        },
        ascending: match p.order.as_deref() {
            None | Some("desc") => false,
            Some("asc") => true,
            Some(o) => {
                return Err(ApiError::BadRequest(format!(
                    "order must be asc or desc, got {o:?}"
                )));
            }
        },
        start: time_param("start", p.start.as_deref())?,
        end: time_param("end", p.end.as_deref())?,
        events: list_param(p.event.as_deref()),
        exclude: Vec::new(),
        kinds: list_param(p.kind.as_deref()),
        limit: limit + 1,
    };
    let mut rows = state.api.store.events(&id, &query).await?;
    let next = (rows.len() as i64 > limit).then(|| {
        rows.truncate(limit as usize);
        rows.last()
            .map(|r| cursor::encode_position(r.event_time, r.seq))
    });
    let items = rows
        .into_iter()
        .map(|r| EventView {
            seq: r.seq,
            kind: r.kind,
            event: r.event,
            timestamp: r.event_time,
            message_id: r.message_id,
            source: r.source,
            message: r.body,
        })
        .collect();
    Ok(cached(
        &headers,
        &EventsPage {
            profile_id: id,
            items,
            next: next.flatten(),
        },
    ))
}

fn bad_cursor() -> ApiError {
    ApiError::BadRequest("cursor must be the `next` value of a previous page".into())
}

/// An audience a profile is in.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileAudience {
    /// Audience id.
    pub id: String,
    /// When the profile entered it (ms since the Unix epoch).
    pub entered_at: i64,
}

/// The audiences a profile is in.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileAudiences {
    /// The profile.
    #[schema(value_type = String)]
    pub profile_id: ProfileId,
    /// Its audiences now.
    pub audiences: Vec<ProfileAudience>,
}

/// The audiences a profile is in now.
#[utoipa::path(get, operation_id = "listProfileAudiences", path = "/v1/profiles/{external_id}/audiences", tag = "audiences",
    security(("bearer" = ["audiences:read"])),
    params(ExternalIdPath),
    responses(
        (status = 200, description = "The profile's audiences", body = ProfileAudiences),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token lacks audiences:read", body = ErrorBody),
        (status = 404, description = "No profile has this identifier", body = ErrorBody),
        (status = 429, description = "Rate limit spent; see Retry-After", body = ErrorBody),
    ))]
pub async fn profile_audiences(
    _: Scoped<AudiencesRead>,
    State(state): State<AppState>,
    Path(external_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = profile_of(&state, &external_id).await?;
    let audiences = state
        .audiences
        .memberships(&id)
        .await?
        .into_iter()
        .filter(|m| m.exited_at.is_none())
        .map(|m| ProfileAudience {
            id: m.audience,
            entered_at: m.entered_at,
        })
        .collect();
    Ok(cached(
        &headers,
        &ProfileAudiences {
            profile_id: id,
            audiences,
        },
    ))
}

/// An audience.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AudienceView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// The condition, as text.
    pub condition: String,
    /// Current member count.
    pub members: i64,
}

async fn audience_view(
    state: &AppState,
    row: crate::audiences::store::AudienceRow,
) -> Result<AudienceView, ApiError> {
    let (_, members) = state.audiences.members(&row.id, 0).await?;
    Ok(AudienceView {
        id: row.id,
        name: row.name,
        description: row.description,
        condition: row.condition,
        members,
    })
}

async fn find_audience(
    state: &AppState,
    id: &str,
) -> Result<crate::audiences::store::AudienceRow, ApiError> {
    state
        .audiences
        .list()
        .await?
        .into_iter()
        .find(|a| a.id == id)
        .ok_or(ApiError::NotFound("audience"))
}

/// Every audience with its member count.
#[utoipa::path(get, operation_id = "listAudiences", path = "/v1/audiences", tag = "audiences",
    security(("bearer" = ["audiences:read"])),
    responses(
        (status = 200, description = "Every audience", body = Vec<AudienceView>),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token lacks audiences:read", body = ErrorBody),
        (status = 429, description = "Rate limit spent; see Retry-After", body = ErrorBody),
    ))]
pub async fn audiences(
    _: Scoped<AudiencesRead>,
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut out = Vec::new();
    for row in state.audiences.list().await? {
        out.push(audience_view(&state, row).await?);
    }
    Ok(cached(&headers, &out))
}

/// The audience id path parameter.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AudiencePath {
    /// The audience's id.
    pub audience_id: String,
}

/// One audience.
#[utoipa::path(get, operation_id = "getAudience", path = "/v1/audiences/{audience_id}", tag = "audiences",
    security(("bearer" = ["audiences:read"])),
    params(AudiencePath),
    responses(
        (status = 200, description = "The audience", body = AudienceView),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token lacks audiences:read", body = ErrorBody),
        (status = 404, description = "No such audience", body = ErrorBody),
        (status = 429, description = "Rate limit spent; see Retry-After", body = ErrorBody),
    ))]
pub async fn audience(
    _: Scoped<AudiencesRead>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let row = find_audience(&state, &id).await?;
    Ok(cached(&headers, &audience_view(&state, row).await?))
}

/// Paging of a member list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1–1000 (default 100).
    pub limit: Option<i64>,
    /// The `next` cursor of the previous page.
    pub cursor: Option<String>,
}

impl PageParams {
    fn limit(&self) -> i64 {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }

    /// The profile id to resume after (`None` for the first page).
    fn after(&self) -> Result<Option<ProfileId>, ApiError> {
        match self.cursor.as_deref().filter(|c| !c.is_empty()) {
            None => Ok(None),
            Some(c) => cursor::decode(c, 1)
                .and_then(|mut p| p.pop())
                .map(|p| Some(ProfileId::from(p)))
                .ok_or_else(bad_cursor),
        }
    }
}

/// An identifier in a member list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExternalId {
    /// Kind, e.g. `user_id`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Value.
    pub id: String,
}

/// A member of an audience.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    /// The profile.
    #[schema(value_type = String)]
    pub profile_id: ProfileId,
    /// When it entered (ms since the Unix epoch).
    pub entered_at: i64,
    /// Its identifiers.
    pub external_ids: Vec<ExternalId>,
}

/// A page of an audience's members, in profile id order.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MembersPage {
    /// The audience.
    pub audience: String,
    /// Current member count.
    pub count: i64,
    /// Members of this page.
    pub items: Vec<MemberView>,
    /// Cursor of the next page; null on the last page. A cursor stays valid while members come
    /// and go: the next page starts after the last profile id of this one.
    pub next: Option<String>,
}

async fn external_ids_of(
    state: &AppState,
    profiles: &[ProfileId],
) -> Result<BTreeMap<ProfileId, Vec<ExternalId>>, ApiError> {
    let mut by_profile: BTreeMap<ProfileId, Vec<ExternalId>> = BTreeMap::new();
    for (profile, kind, id) in state.api.store.identities_of(profiles).await? {
        by_profile
            .entry(profile)
            .or_default()
            .push(ExternalId { kind, id });
    }
    Ok(by_profile)
}

/// Pages through an audience's current members.
#[utoipa::path(get, operation_id = "listAudienceMembers", path = "/v1/audiences/{audience_id}/members", tag = "audiences",
    security(("bearer" = ["audiences:read"])),
    params(AudiencePath, PageParams),
    responses(
        (status = 200, description = "A page of members", body = MembersPage),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
        (status = 400, description = "Bad cursor", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token lacks audiences:read", body = ErrorBody),
        (status = 404, description = "No such audience", body = ErrorBody),
        (status = 429, description = "Rate limit spent; see Retry-After", body = ErrorBody),
    ))]
pub async fn members(
    _: Scoped<AudiencesRead>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(p): Query<PageParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    find_audience(&state, &id).await?;
    let limit = p.limit();
    let mut rows = state
        .api
        .store
        .members_page(&id, p.after()?.as_ref(), limit + 1)
        .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = more
        .then(|| rows.last().map(|(p, _)| cursor::encode(&[p.as_str()])))
        .flatten();
    let ids: Vec<ProfileId> = rows.iter().map(|(p, _)| p.clone()).collect();
    let mut external = external_ids_of(&state, &ids).await?;
    let (_, count) = state.audiences.members(&id, 0).await?;
    let items = rows
        .into_iter()
        .map(|(profile_id, entered_at)| MemberView {
            external_ids: external.remove(&profile_id).unwrap_or_default(),
            profile_id,
            entered_at,
        })
        .collect();
    Ok(cached(
        &headers,
        &MembersPage {
            audience: id,
            count,
            items,
            next,
        },
    ))
}

/// Whether a profile is in an audience.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MembershipView {
    /// The audience.
    pub audience: String,
    /// Whether the identifier's profile is a member now.
    pub member: bool,
    /// The profile, when the identifier is known.
    #[schema(value_type = Option<String>)]
    pub profile_id: Option<ProfileId>,
    /// When it entered (ms since the Unix epoch), when it is a member.
    pub entered_at: Option<i64>,
}

/// The membership check path parameters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MembershipPath {
    /// The audience's id.
    pub audience_id: String,
    /// `kind:value`, e.g. `user_id:u-1`.
    pub external_id: String,
}

/// Checks whether an identifier's profile is in an audience (an unknown identifier is not).
#[utoipa::path(get, operation_id = "checkAudienceMembership", path = "/v1/audiences/{audience_id}/members/{external_id}", tag = "audiences",
    security(("bearer" = ["audiences:read"])),
    params(MembershipPath),
    responses(
        (status = 200, description = "Membership", body = MembershipView),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
        (status = 400, description = "Not a kind:value external id", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token lacks audiences:read", body = ErrorBody),
        (status = 404, description = "No such audience", body = ErrorBody),
        (status = 429, description = "Rate limit spent; see Retry-After", body = ErrorBody),
    ))]
pub async fn membership(
    _: Scoped<AudiencesRead>,
    State(state): State<AppState>,
    Path((audience, external_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    find_audience(&state, &audience).await?;
    let id = super::parse_external_id(&external_id)?;
    let profile = super::resolve(&state, &id).await?;
    let entered_at = match &profile {
        Some(p) => state.api.store.membership(&audience, p).await?,
        None => None,
    };
    Ok(cached(
        &headers,
        &MembershipView {
            audience,
            member: entered_at.is_some(),
            profile_id: profile,
            entered_at,
        },
    ))
}

/// An account (group) profile.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    /// The groupId.
    pub group_id: String,
    /// Its traits, from group calls.
    pub traits: BTreeMap<String, Value>,
    /// When each trait was last set (ms since the Unix epoch).
    pub trait_times: BTreeMap<String, i64>,
    /// How many profiles belong to it.
    pub members: i64,
}

/// The group id path parameter.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct GroupPath {
    /// The account's groupId.
    pub group_id: String,
}

/// An account profile.
#[utoipa::path(get, operation_id = "getAccount", path = "/v1/accounts/{group_id}", tag = "accounts",
    security(("bearer" = ["profiles:read"])),
    params(GroupPath),
    responses(
        (status = 200, description = "The account", body = AccountView),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token lacks profiles:read", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
        (status = 429, description = "Rate limit spent; see Retry-After", body = ErrorBody),
    ))]
pub async fn account(
    _: Scoped<ProfilesRead>,
    State(state): State<AppState>,
    Path(group_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let traits = state.api.store.account_traits(&group_id).await?;
    let (_, members) = state.api.store.account_members(&group_id, None, 0).await?;
    if traits.is_empty() && members == 0 {
        return Err(ApiError::NotFound("account"));
    }
    Ok(cached(
        &headers,
        &AccountView {
            group_id,
            trait_times: traits.iter().map(|(k, _, t)| (k.clone(), *t)).collect(),
            traits: traits.into_iter().map(|(k, v, _)| (k, v)).collect(),
            members,
        },
    ))
}

/// A member of an account.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountMember {
    /// The profile.
    #[schema(value_type = String)]
    pub profile_id: ProfileId,
    /// Its identifiers.
    pub external_ids: Vec<ExternalId>,
}

/// A page of an account's members, in profile id order.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountMembersPage {
    /// The groupId.
    pub group_id: String,
    /// How many profiles belong to it.
    pub count: i64,
    /// Members of this page.
    pub items: Vec<AccountMember>,
    /// Cursor of the next page; null on the last page.
    pub next: Option<String>,
}

/// Pages through the profiles of an account.
#[utoipa::path(get, operation_id = "listAccountMembers", path = "/v1/accounts/{group_id}/members", tag = "accounts",
    security(("bearer" = ["profiles:read"])),
    params(GroupPath, PageParams),
    responses(
        (status = 200, description = "A page of members", body = AccountMembersPage),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
        (status = 400, description = "Bad cursor", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token lacks profiles:read", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
        (status = 429, description = "Rate limit spent; see Retry-After", body = ErrorBody),
    ))]
pub async fn account_members(
    _: Scoped<ProfilesRead>,
    State(state): State<AppState>,
    Path(group_id): Path<String>,
    Query(p): Query<PageParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let limit = p.limit();
    let (mut rows, count) = state
        .api
        .store
        .account_members(&group_id, p.after()?.as_ref(), limit + 1)
        .await?;
    if count == 0 && state.api.store.account_traits(&group_id).await?.is_empty() {
        return Err(ApiError::NotFound("account"));
    }
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = more
        .then(|| rows.last().map(|p| cursor::encode(&[p.as_str()])))
        .flatten();
    let mut external = external_ids_of(&state, &rows).await?;
    let items = rows
        .into_iter()
        .map(|profile_id| AccountMember {
            external_ids: external.remove(&profile_id).unwrap_or_default(),
            profile_id,
        })
        .collect();
    Ok(cached(
        &headers,
        &AccountMembersPage {
            group_id,
            count,
            items,
            next,
        },
    ))
}
