//! Routes of the console: its pages and scripts (served from `core/assets`, compiled in), and the
//! read-only admin endpoints behind its charts — audience size over time, feed and activations,
//! the identity graph, tracking-plan health and spec, pipeline health.

use super::{
    DAY_MS, bucket_for, identity_graph, outcome_series, plan_health, plan_json, size_series,
};
use crate::admin::{Admin, AdminError};
use crate::destinations::Activation;
use crate::hardening::{Path, Query};
use crate::identity::ProfileId;
use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use touchpoint_tracking_plan::Message;

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Scripts and styles of the console pages, by file name under `/assets/console/`.
const ASSETS: &[(&str, &str, &str)] = &[
    ("console.css", CSS, include_str!("../../assets/console.css")),
    ("charts.js", JS, include_str!("../../assets/charts.js")),
    (
        "audiences.js",
        JS,
        include_str!("../../assets/audiences.js"),
    ),
    ("builder.js", JS, include_str!("../../assets/builder.js")),
    ("profiles.js", JS, include_str!("../../assets/profiles.js")),
    ("plan.js", JS, include_str!("../../assets/plan.js")),
    ("pipeline.js", JS, include_str!("../../assets/pipeline.js")),
    (
        "destinations.js",
        JS,
        include_str!("../../assets/destinations.js"),
    ),
    // uPlot (MIT), copied from npm by scripts/vendor-uplot.sh.
    ("uPlot.iife.min.js", JS, UPLOT_JS),
    (
        "uPlot.min.css",
        CSS,
        include_str!("../../assets/vendor/uplot/uPlot.min.css"),
    ),
];

/// uPlot, the chart library (the version package.json pins; see `core/assets/vendor/uplot/VERSION`).
const UPLOT_JS: &str = include_str!("../../assets/vendor/uplot/uPlot.iife.min.js");

/// The audience builder page.
pub const BUILDER_PAGE: &str = include_str!("../../assets/builder.html");
/// The tracking-plan health page.
pub const PLAN_PAGE: &str = include_str!("../../assets/plan.html");
/// The pipeline health page.
pub const PIPELINE_PAGE: &str = include_str!("../../assets/pipeline.html");

/// The console routes (pages, assets and the endpoints behind the charts).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/audiences/builder", get(|| async { Html(BUILDER_PAGE) }))
        .route("/plan", get(|| async { Html(PLAN_PAGE) }))
        .route("/pipeline", get(|| async { Html(PIPELINE_PAGE) }))
        .route("/assets/console/{file}", get(asset))
        .route("/admin/audiences/{id}/size", get(audience_size))
        .route("/admin/audiences/{id}/feed", get(audience_feed))
        .route(
            "/admin/audiences/{id}/destinations",
            get(audience_destinations),
        )
        .route("/admin/profiles/{id}/graph", get(profile_graph))
        .route("/admin/plan/spec", get(plan_spec))
        .route("/admin/plan/health", get(plan_health_route))
        .route("/admin/pipeline/health", get(pipeline_health))
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, ty, body)) => ([(header::CONTENT_TYPE, *ty)], *body).into_response(),
        None => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
}

fn now_ms(state: &AppState) -> i64 {
    state.clock.now_ms()
}

/// A range name (`1h`, `24h`, `7d`, `30d`) in ms.
fn range_ms(range: &str) -> Result<i64, AdminError> {
    Ok(match range {
        "1h" => 3_600_000,
        "24h" => DAY_MS,
        "7d" => 7 * DAY_MS,
        "30d" => 30 * DAY_MS,
        "90d" => 90 * DAY_MS,
        other => {
            return Err(AdminError::BadRequest(format!(
                "range must be all, 1h, 24h, 7d, 30d or 90d, not {other:?}"
            )));
        }
    })
}

#[derive(Deserialize)]
struct SizeQuery {
    range: Option<String>,
    points: Option<i64>,
}

async fn known_audience(state: &AppState, id: &str) -> Result<(), AdminError> {
    if state.audiences.list().await?.iter().any(|a| a.id == id) {
        Ok(())
    } else {
        Err(AdminError::NotFound)
    }
}

/// Members over time from the membership history: `range` is `all` (from the first entry,
/// the default) or a window ending now; `points` buckets (default 60).
async fn audience_size(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<SizeQuery>,
) -> Result<Json<Value>, AdminError> {
    known_audience(&state, &id).await?;
    let now = now_ms(&state);
    let points = q.points.unwrap_or(60).clamp(2, 500);
    let from = match q.range.as_deref().unwrap_or("all") {
        "all" => state
            .console
            .first_entry(&id)
            .await?
            .unwrap_or(now - 3_600_000)
            .min(now - 60_000),
        r => now - range_ms(r)?,
    };
    let bucket = bucket_for(now - from, points);
    let buckets = ((now - from) + bucket - 1) / bucket;
    let changes = state.console.size_changes(&id, from, now, bucket).await?;
    let series = size_series(&changes, from, bucket, buckets);
    let (_, members) = state.audiences.members(&id, 0).await?;
    let sum = |v: &[(i64, i64)]| v.iter().map(|(_, n)| n).sum::<i64>();
    Ok(Json(json!({
        "audience": id, "from": from, "to": now, "bucket": bucket,
        "points": series, "members": members,
        "entered": sum(&changes.entered), "exited": sum(&changes.exited),
    })))
}

#[derive(Deserialize)]
struct FeedQuery {
    after: Option<i64>,
    before: Option<i64>,
    limit: Option<i64>,
}

/// The audience's entered/exited events with each person's email and name: the newest first, or
/// with `after` the ones after a position (oldest first, for live updates).
async fn audience_feed(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<FeedQuery>,
) -> Result<Json<Value>, AdminError> {
    known_audience(&state, &id).await?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let rows = state.console.feed(&id, q.after, q.before, limit).await?;
    let ids: Vec<ProfileId> = rows.iter().map(|r| r.profile_id.clone()).collect();
    let contacts = contact_map(&state, ids).await?;
    let events: Vec<Value> = rows
        .iter()
        .map(|r| {
            let c = contacts.get(&r.profile_id);
            json!({"id": r.id, "profileId": r.profile_id, "kind": r.kind, "at": r.at,
                   "reason": r.reason, "email": c.and_then(|c| c.email.clone()),
                   "name": c.and_then(|c| c.name.clone())})
        })
        .collect();
    let (_, members) = state.audiences.members(&id, 0).await?;
    Ok(Json(
        json!({"audience": id, "members": members, "events": events}),
    ))
}

/// Email and name of these profiles, by id.
pub async fn contact_map(
    state: &AppState,
    mut ids: Vec<ProfileId>,
) -> Result<BTreeMap<ProfileId, super::store::Contact>, AdminError> {
    ids.sort();
    ids.dedup();
    Ok(state
        .console
        .contacts(&ids)
        .await?
        .into_iter()
        .map(|c| (c.id.clone(), c))
        .collect())
}

/// The destinations that sync the audience: enabled ones that accept its entered/exited
/// activations, and any that hold outbox rows of its events, with those rows by status.
async fn audience_destinations(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    known_audience(&state, &id).await?;
    // A transition of a known person with an account, as destinations see one of this audience
    // (read from JSON so fields added to activations later keep their defaults).
    let probe: Activation = serde_json::from_value(json!({
        "key": "a:0", "kind": "audience_entered", "event": "audience_entered",
        "timestamp_ms": now_ms(&state), "profile_id": "probe", "user_id": "probe",
        "email": "probe@example.invalid", "account": {"group_id": "probe"}, "audience": id,
    }))
    .map_err(|e| AdminError::BadRequest(format!("audience probe: {e}")))?;
    let d = &state.destinations;
    let counts = state.console.activations(&id).await?;
    let errors = state.console.activation_errors(&id).await?;
    let mut out = Vec::new();
    for name in crate::destinations::ALL {
        let enabled = d.enabled.get(name);
        let accepts = enabled.is_some_and(|dest| dest.accepts(&probe));
        let rows: Vec<_> = counts.iter().filter(|c| c.destination == name).collect();
        if !accepts && rows.is_empty() {
            continue;
        }
        let mut by_status = json!({"pending": 0, "delivering": 0, "delivered": 0, "dead": 0});
        for r in &rows {
            by_status[r.status.as_str()] = json!(r.count);
        }
        let state_word = if enabled.is_none() {
            "disabled"
        } else if by_status["dead"].as_i64() > Some(0) {
            "failing"
        } else if by_status["pending"].as_i64() > Some(0)
            || by_status["delivering"].as_i64() > Some(0)
        {
            "syncing"
        } else {
            "in sync"
        };
        out.push(json!({
            "name": name, "enabled": enabled.is_some(), "accepts": accepts, "state": state_word,
            "outbox": by_status, "lastAt": rows.iter().filter_map(|r| r.last_at).max(),
            "lastError": errors.get(name),
        }));
    }
    Ok(Json(json!({"audience": id, "destinations": out})))
}

/// The profile's identity graph: its identifiers, the messages that attached them or merged
/// profiles into it (each with the identifiers it carried), its merges and resolution reports.
async fn profile_graph(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<ProfileId>,
) -> Result<Json<Value>, AdminError> {
    let id = crate::profiles::api::live_id(&state, &id).await?;
    let identities = state.profiles.identities(&id).await?;
    let merges = state.profiles.merges(&id).await?;
    let reports = state.profiles.reports(&id).await?;
    let mut seqs: Vec<i64> = identities
        .iter()
        .map(|i| i.seq)
        .chain(merges.iter().map(|m| m.seq))
        .filter(|s| *s > 0)
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    let messages = state.console.messages(&seqs).await?;
    let plan = state.plan.current();
    let rules = plan.plan.identity();
    let carried = |body: &Value| {
        Message::from_value(body.clone(), None)
            .map(|p| {
                crate::identity::extract(&p.message, rules)
                    .0
                    .into_iter()
                    .map(|i| (i.kind, i.value))
                    .collect()
            })
            .unwrap_or_default()
    };
    let ids: Vec<(String, String, i64, i64)> = identities
        .iter()
        .map(|i| (i.kind.clone(), i.value.clone(), i.added_at, i.seq))
        .collect();
    let ms: Vec<(ProfileId, ProfileId, String, i64, i64)> = merges
        .iter()
        .map(|m| {
            (
                m.winner.clone(),
                m.loser.clone(),
                m.reason.clone(),
                m.seq,
                m.at,
            )
        })
        .collect();
    let (nodes, links) = identity_graph(&ids, &ms, &messages, carried);
    Ok(Json(json!({
        "id": id, "identifiers": nodes, "messages": links, "merges": merges, "reports": reports,
    })))
}

async fn plan_spec(_: Admin, State(state): State<AppState>) -> Json<Value> {
    let plan = state.plan.current();
    let mut v = plan_json(&plan.plan);
    v["loadedVersion"] = json!(&*plan.version);
    Json(v)
}

#[derive(Deserialize)]
struct DaysQuery {
    days: Option<i64>,
}

/// Tracking-plan health over the last `days` UTC days (default 14, at most 90), by event time.
async fn plan_health_route(
    _: Admin,
    State(state): State<AppState>,
    Query(q): Query<DaysQuery>,
) -> Result<Json<Value>, AdminError> {
    let days = q.days.unwrap_or(14).clamp(1, 90);
    let today = now_ms(&state).div_euclid(DAY_MS);
    let from_day = today - days + 1;
    let from = from_day * DAY_MS;
    let volume = state.console.volume(from).await?;
    let violations = state.console.violations(from).await?;
    let rejected = state.console.rejected(from).await?;
    let plan = state.plan.current();
    let mut v = plan_health(&plan.plan, from_day, days, &volume, &violations, &rejected);
    v["planVersion"] = json!(&*plan.version);
    Ok(Json(v))
}

#[derive(Deserialize)]
struct MinutesQuery {
    minutes: Option<i64>,
}

/// Most recent messages the ingest-throughput chart reads.
const THROUGHPUT_SCAN: i64 = 500_000;

/// Pipeline health: every stage's cursor, lag and counters; messages received per bucket; delivery
/// calls per destination and bucket (success vs error); the quarantine's open entries.
async fn pipeline_health(
    _: Admin,
    State(state): State<AppState>,
    Query(q): Query<MinutesQuery>,
) -> Result<Json<Value>, AdminError> {
    let minutes = q.minutes.unwrap_or(60).clamp(5, 7 * 24 * 60);
    let now = now_ms(&state);
    let span = minutes * 60_000;
    let bucket = bucket_for(span, 60);
    let buckets = (span + bucket - 1) / bucket;
    let from = now - buckets * bucket;
    let health: BTreeMap<&str, _> = state
        .pipeline
        .stages()
        .into_iter()
        .map(|s| (s.name, s))
        .collect();
    let cursors: Vec<Value> = state
        .console
        .cursors()
        .await?
        .into_iter()
        .map(|c| {
            // On a partitioned log the `profiles` cursor is the lowest of the `profiles/P`
            // stages' cursors: its health is theirs, summed.
            let parts: Vec<&crate::pipeline::StageHealth> = match health.get(c.name.as_str()) {
                Some(h) => vec![&**h],
                None => health
                    .iter()
                    .filter(|(name, _)| {
                        name.strip_prefix(c.name.as_str())
                            .is_some_and(|rest| rest.starts_with('/'))
                    })
                    .map(|(_, h)| &**h)
                    .collect(),
            };
            let running = !parts.is_empty();
            let sum = |f: fn(&crate::pipeline::StageHealth) -> u64| {
                running.then(|| parts.iter().map(|h| f(h)).sum::<u64>())
            };
            let failing = parts
                .iter()
                .map(|h| h.failing_since_ms.load(Ordering::Relaxed))
                .filter(|t| *t != 0)
                .min();
            let last_ok = parts
                .iter()
                .map(|h| h.last_ok_ms.load(Ordering::Relaxed))
                .filter(|t| *t > 0)
                .max();
            json!({
                "stage": c.name, "position": c.position, "head": c.head, "behind": c.behind,
                "lagMs": c.oldest_waiting_at.map(|t| (now - t).max(0)),
                "running": running,
                "processed": sum(|h| h.processed.load(Ordering::Relaxed)),
                "retries": sum(|h| h.retries.load(Ordering::Relaxed)),
                "quarantined": sum(|h| h.quarantined.load(Ordering::Relaxed)),
                "failingSince": failing,
                "lastOk": last_ok,
            })
        })
        .collect();
    let mut received = vec![0i64; buckets as usize];
    for (b, n) in state
        .console
        .received(from, bucket, THROUGHPUT_SCAN)
        .await?
    {
        if let Some(slot) = usize::try_from(b).ok().and_then(|i| received.get_mut(i)) {
            *slot += n;
        }
    }
    let outcomes = state.console.outcomes(from, bucket).await?;
    let open: BTreeMap<String, i64> = state.quarantine.open_counts().await?.into_iter().collect();
    Ok(Json(json!({
        "now": now, "from": from, "bucket": bucket,
        "times": (0..buckets).map(|i| from + i * bucket).collect::<Vec<_>>(),
        "stages": cursors,
        "received": received,
        "deliveries": outcome_series(&outcomes, buckets),
        "quarantineOpen": open,
        "destinations": crate::destinations::api::status(&state.destinations).await?["destinations"],
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendored_chart_library_is_the_version_package_json_pins() {
        let pkg: Value = serde_json::from_str(include_str!("../../../package.json")).unwrap();
        let pinned = pkg["devDependencies"]["uplot"]
            .as_str()
            .expect("uplot in package.json");
        assert!(
            UPLOT_JS.starts_with(&format!(
                "/*! https://github.com/leeoniya/uPlot (v{pinned})"
            )),
            "run scripts/vendor-uplot.sh"
        );
    }

    #[test]
    fn ranges_are_named_windows() {
        assert_eq!(range_ms("24h").unwrap(), DAY_MS);
        assert!(range_ms("forever").is_err());
    }
}
