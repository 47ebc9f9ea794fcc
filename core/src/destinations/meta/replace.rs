//! Full sync of a Meta Custom Audience (a backfill, or repairing drift): `POST
//! /admin/destinations/meta/audiences/{audience}/replace` starts it and answers 202 with the
//! session id; a background task pages through the audience's members (profile id order), skips
//! those whose latest consent refuses Meta's categories or who have no email, phone or userId,
//! and sends them through [`audience::Replace`] — one `usersreplace` session, batches numbered
//! from 1, the last flagged. Each call (and each retry of it, up to [`ATTEMPTS`]) is recorded in
//! the delivery log; a call that still fails stops the sync, which can simply be started again
//! (a new session). One sync per audience runs at a time.

use super::Meta;
use super::audience::{self, Row};
use crate::admin::{Admin, AdminError};
use crate::destinations::store::LogEntry;
use crate::destinations::{Destinations, RetryAction, backoff, consent};
use crate::identity::ProfileId;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use std::sync::Arc;

/// Attempts per call before the sync gives up.
pub const ATTEMPTS: i64 = 5;
/// Members read per page.
const PAGE: i64 = 1000;

/// The route.
pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/admin/destinations/meta/audiences/{audience}/replace",
        post(start),
    )
}

async fn start(
    _: Admin,
    State(state): State<AppState>,
    Path(audience): Path<String>,
) -> Result<(StatusCode, Json<Value>), AdminError> {
    let d = state.destinations.clone();
    let Some(meta) = d.meta.clone() else {
        return Err(AdminError::NotFound);
    };
    let Some(custom) = meta.custom_audience(&audience).map(str::to_owned) else {
        return Err(AdminError::BadRequest(format!(
            "audience {audience:?} is not synced to a Meta Custom Audience \
             (TOUCHPOINT_META_CUSTOM_AUDIENCES)"
        )));
    };
    let Some(guard) = meta.begin_replace(&audience) else {
        return Err(AdminError::BadRequest(format!(
            "a full sync of {audience:?} is already running"
        )));
    };
    let session_id = audience::session_id_of([uuid::Uuid::new_v4().to_string().as_str()]);
    let a = audience.clone();
    tokio::spawn(async move {
        let _running = guard;
        match run(&d, &meta, &a, session_id).await {
            Ok(r) => tracing::info!(
                audience = %a, session_id, calls = r.calls, users = r.users,
                skipped_consent = r.skipped_consent, skipped_unmatchable = r.skipped_unmatchable,
                "custom audience replaced"
            ),
            Err(e) => {
                tracing::warn!(audience = %a, session_id, error = %e, "custom audience replace stopped")
            }
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"audience": audience, "customAudience": custom, "sessionId": session_id})),
    ))
}

/// What a full sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Calls made (batches).
    pub calls: u32,
    /// Users sent.
    pub users: usize,
    /// Members left out because their consent refuses Meta's categories.
    pub skipped_consent: usize,
    /// Members left out for lack of an email, phone or userId.
    pub skipped_unmatchable: usize,
}

/// Runs a full sync of `audience` in session `session_id`.
pub async fn run(
    d: &Destinations,
    meta: &Arc<Meta>,
    audience: &str,
    session_id: i64,
) -> Result<Report, String> {
    let size = d
        .store
        .audience_size(audience)
        .await
        .map_err(|e| e.to_string())?;
    let mut replace = meta
        .replace_session(audience, session_id, size.max(0) as usize)
        .ok_or_else(|| format!("audience {audience:?} is not synced to Meta"))?;
    let categories = d.consent.categories_of("meta");
    let mut report = Report::default();
    let mut rows: Vec<Row> = Vec::new();
    let mut after: Option<ProfileId> = None;
    loop {
        let page = d
            .store
            .audience_members(audience, after.as_ref(), PAGE)
            .await
            .map_err(|e| e.to_string())?;
        let exhausted = (page.len() as i64) < PAGE;
        if let Some(m) = page.last() {
            after = Some(m.profile_id.clone());
        }
        for m in page {
            let message = m
                .latest_consent
                .as_deref()
                .and_then(|b| serde_json::from_str::<Value>(b).ok());
            let given = message.as_ref().and_then(consent::of_message);
            if let consent::Decision::Deny(_) =
                consent::permits(categories, given, d.consent.require)
            {
                report.skipped_consent += 1;
                continue;
            }
            match audience::row_of_identities(&m.identities) {
                Some(row) => rows.push(row),
                None => report.skipped_unmatchable += 1,
            }
        }
        // Full batches go as soon as more is known to follow; the rest waits for the last one.
        while rows.len() > replace.users_per_call() {
            let chunk: Vec<Row> = rows.drain(..replace.users_per_call()).collect();
            call(d, meta, replace.batch(&chunk, false)).await?;
            report.users += chunk.len();
        }
        if exhausted {
            break;
        }
    }
    if rows.is_empty() {
        return Err(format!(
            "nobody to send: {} member(s), none both consenting and matchable (Meta cannot \
             replace an audience with no users)",
            size
        ));
    }
    call(d, meta, replace.batch(&rows, true)).await?;
    report.users += rows.len();
    report.calls = replace.calls();
    Ok(report)
}

/// Makes one call of the session, retrying what may be retried, and logs every attempt.
async fn call(
    d: &Destinations,
    meta: &Meta,
    request: crate::destinations::Request,
) -> Result<(), String> {
    use crate::destinations::Destination;
    for attempt in 1..=ATTEMPTS {
        let started = std::time::Instant::now();
        let sent = meta.send(&request).await;
        let (outcome, error, wait) = match &sent.action {
            RetryAction::Success => ("success", None, None),
            RetryAction::Retry { after, reason } => ("retry", Some(reason.clone()), Some(*after)),
            RetryAction::DontRetry(m) => ("dead", Some(m.clone()), None),
            RetryAction::RetryPart { reason, .. } => ("dead", Some(reason.clone()), None),
        };
        let entry = LogEntry {
            destination: "meta".into(),
            outbox_ids: Vec::new(),
            request: format!(
                "{} {} ({} item{})",
                request.method.as_str(),
                request.label,
                request.covers.len(),
                if request.covers.len() == 1 { "" } else { "s" }
            ),
            status_code: sent.status.map(i64::from),
            duration_ms: started.elapsed().as_millis() as i64,
            outcome: outcome.into(),
            error: error.clone(),
            at: chrono::Utc::now().timestamp_millis(),
        };
        if let Err(e) = d
            .store
            .finish(&[], &[entry], chrono::Utc::now().timestamp_millis())
            .await
        {
            tracing::warn!(error = %e, "delivery log entry not recorded");
        }
        match (error, wait) {
            (None, _) => return Ok(()),
            (Some(e), Some(after)) if attempt < ATTEMPTS => {
                tracing::info!(attempt, error = %e, "custom audience replace call retried");
                tokio::time::sleep(backoff(&d.delivery, attempt, after)).await;
            }
            (Some(e), _) => return Err(e),
        }
    }
    Err("gave up".into())
}
