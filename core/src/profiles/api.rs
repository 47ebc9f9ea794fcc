//! Profiles API (admin token only, never a write key): lookup by any identifier, traits, computed
//! traits, identities, accounts, merges, reports, a paged timeline, deletion; and the Profiles page.

use super::computed;
use crate::admin::{Admin, AdminError};
use crate::hardening::{Path, Query};
use crate::identity::{Identifier, ProfileId, normalise_email, normalise_phone};
use crate::privacy::store::EraseRequest;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;

/// The profile routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/profiles", get(lookup))
        .route("/admin/profiles/{id}", get(profile).delete(delete))
        .route("/admin/profiles/{id}/timeline", get(timeline))
        .route("/admin/profiles/{id}/merges", get(merges))
        .route("/admin/pipeline", get(pipeline))
        .route("/profiles", get(|| async { Html(PAGE) }))
        // Deleting a profile creates a regulation; these routes show it.
        .merge(crate::privacy::api::routes())
}

/// The Profiles page; all data is rendered with `textContent`.
pub const PAGE: &str = include_str!("../../assets/profiles.html");

/// Turns a `kind=value` lookup into a normalised identifier.
pub fn identifier_from_query(q: &HashMap<String, String>) -> Result<Identifier, AdminError> {
    let (kind, value) = if let (Some(k), Some(v)) = (q.get("kind"), q.get("value")) {
        (k.as_str(), v.as_str())
    } else {
        ["user_id", "anonymous_id", "email", "phone"]
            .iter()
            .find_map(|k| q.get(*k).map(|v| (*k, v.as_str())))
            .ok_or_else(|| {
                AdminError::BadRequest(
                    "give one of user_id, anonymous_id, email, phone, or kind and value".into(),
                )
            })?
    };
    let value = match kind {
        "email" => normalise_email(value)
            .ok_or_else(|| AdminError::BadRequest(format!("{value:?} is not an email")))?,
        "phone" => normalise_phone(value)
            .ok_or_else(|| AdminError::BadRequest(format!("{value:?} is not a phone number")))?,
        _ => value.trim().to_owned(),
    };
    Ok(Identifier::new(kind, &value))
}

async fn lookup(
    _: Admin,
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, AdminError> {
    let id = identifier_from_query(&q)?;
    let profile = state
        .profiles
        .lookup(&id)
        .await?
        .ok_or(AdminError::NotFound)?;
    render(&state, &profile).await.map(Json)
}

/// The live profile an id names, following merges.
pub(crate) async fn live_id(state: &AppState, id: &ProfileId) -> Result<ProfileId, AdminError> {
    let mut current = id.clone();
    // Follow merges (bounded: a chain can never be longer than the number of merges).
    for _ in 0..64 {
        match state.profiles.profile(&current).await? {
            None => return Err(AdminError::NotFound),
            Some((_, _, None)) => return Ok(current),
            Some((_, _, Some(next))) => current = next,
        }
    }
    Err(AdminError::NotFound)
}

async fn render(state: &AppState, requested: &ProfileId) -> Result<Value, AdminError> {
    let id = live_id(state, requested).await?;
    let store = &state.profiles;
    let now = chrono::Utc::now().timestamp_millis();
    let traits = store.traits(&id).await?;
    let stats = store.event_stats(&id, now).await?;
    let active = store.active_days(&id, now - 30 * 86_400_000).await?;
    let plan = state.plan.current();
    let computed = computed::compute(&stats, active, &plan.plan);
    let accounts: Vec<Value> = store
        .accounts(&id)
        .await?
        .into_iter()
        .map(|(group_id, traits)| {
            json!({"groupId": group_id,
                   "traits": traits.iter().map(|t| (t.key.clone(), t.value.clone())).collect::<serde_json::Map<_, _>>()})
        })
        .collect();
    let (created_at, _) = store
        .profile(&id)
        .await?
        .map(|(_, c, m)| (c, m))
        .ok_or(AdminError::NotFound)?;
    Ok(json!({
        "id": id,
        "requested": requested,
        "createdAt": created_at,
        "traits": traits.iter().map(|t| (t.key.clone(), t.value.clone())).collect::<serde_json::Map<_, _>>(),
        "traitTimes": traits.iter().map(|t| (t.key.clone(), json!(t.updated_at))).collect::<serde_json::Map<_, _>>(),
        "computed": computed,
        "aggregates": store.aggregates(&id).await?,
        "identities": store.identities(&id).await?,
        "accounts": accounts,
        "merges": store.merges(&id).await?,
        "reports": store.reports(&id).await?,
        "audiences": state.audiences.memberships(&id).await?,
    }))
}

async fn profile(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<ProfileId>,
) -> Result<Json<Value>, AdminError> {
    render(&state, &id).await.map(Json)
}

#[derive(Deserialize)]
struct Page {
    before: Option<String>,
    limit: Option<i64>,
}

async fn timeline(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<ProfileId>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, AdminError> {
    let id = live_id(&state, &id).await?;
    let limit = page.limit.unwrap_or(50).clamp(1, 500);
    let before = match page.before.as_deref() {
        None | Some("") => None,
        Some(cursor) => Some(parse_cursor(cursor).ok_or_else(|| {
            AdminError::BadRequest("before must be the `next` cursor of a previous page".into())
        })?),
    };
    let items = state.profiles.timeline(&id, before, limit).await?;
    let next = (items.len() as i64 == limit)
        .then(|| items.last().map(|r| format!("{}_{}", r.event_time, r.seq)))
        .flatten();
    Ok(Json(json!({"id": id, "items": items, "next": next})))
}

fn parse_cursor(s: &str) -> Option<(i64, i64)> {
    let (t, q) = s.split_once('_')?;
    Some((t.parse().ok()?, q.parse().ok()?))
}

async fn merges(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<ProfileId>,
) -> Result<Json<Value>, AdminError> {
    let id = live_id(&state, &id).await?;
    Ok(Json(json!(state.profiles.merges(&id).await?)))
}

/// Erases the profile and every copy of its data, suppresses its identifiers, and answers 202
/// with the regulation that forwards the erasure to each enabled destination.
async fn delete(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<ProfileId>,
) -> Result<(StatusCode, Json<Value>), AdminError> {
    let id = live_id(&state, &id).await?;
    let regulation = uuid::Uuid::new_v4().to_string();
    let destinations: Vec<&str> = state.destinations.enabled.keys().copied().collect();
    let request = EraseRequest {
        profile_id: &id,
        regulation: &regulation,
        destinations: &destinations,
        now: chrono::Utc::now().timestamp_millis(),
    };
    let erased = state
        .privacy
        .store
        .erase(&request)
        .await?
        .ok_or(AdminError::NotFound)?;
    state.privacy.wake.notify_one();
    tracing::info!(
        profile = %id,
        regulation = %regulation,
        identifiers = erased.identifiers,
        deleted = erased.deleted,
        rewritten = erased.rewritten,
        "profile erased and its identifiers suppressed"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "regulationId": regulation,
            "status": erased.status,
            "destinations": destinations,
            "erased": erased,
        })),
    ))
}

async fn pipeline(_: Admin, State(state): State<AppState>) -> Result<Json<Value>, AdminError> {
    let audiences_cursor: i64 = state.profiles.cursor("audiences").await?;
    Ok(Json(json!({
        "audiencesCursor": audiences_cursor,
        "destinationsCursor": state.profiles.cursor("destinations").await?,
        "logHead": state.profiles.head().await?,
        "stages": state.pipeline.stages().iter().map(|s| json!({
            "stage": s.name,
            "processed": s.processed.load(std::sync::atomic::Ordering::Relaxed),
            "retries": s.retries.load(std::sync::atomic::Ordering::Relaxed),
            "quarantined": s.quarantined.load(std::sync::atomic::Ordering::Relaxed),
            "failing": s.failing_since_ms.load(std::sync::atomic::Ordering::Relaxed) != 0,
        })).collect::<Vec<_>>(),
        "profilesCursor": state.profiles.cursor("profiles").await?,
        "profiles": state.profiles.count().await?,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_normalise_emails_and_refuse_missing_identifiers() {
        let q: HashMap<String, String> = [("email".to_owned(), " Ada@X.io".to_owned())].into();
        assert_eq!(
            identifier_from_query(&q).unwrap(),
            Identifier::new("email", "ada@x.io")
        );
        assert!(identifier_from_query(&HashMap::new()).is_err());
    }

    #[test]
    fn timeline_cursors_round_trip() {
        assert_eq!(
            parse_cursor("1700000000000_42"),
            Some((1_700_000_000_000, 42))
        );
        assert_eq!(parse_cursor("nope"), None);
    }
}
