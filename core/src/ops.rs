//! Operations endpoints: `/healthz`, `/readyz` and Prometheus `/metrics`.

use crate::sources::SourceCounters;
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::atomic::Ordering;

/// The ops routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        // Browsers ask for it on every page; answer without a 404 in their consoles.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
}

/// Ready when the database answers and no pipeline stage has been failing, without advancing,
/// for longer than the configured stall time (a stage that is behind and stuck).
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if let Err(e) = state.store.ping().await {
        tracing::warn!(error = %e, "readiness check failed");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "database unavailable".to_owned(),
        );
    }
    let stalled = state
        .pipeline
        .stalled(state.clock.now_ms(), state.stall_after);
    if stalled.is_empty() {
        return (StatusCode::OK, "ready".to_owned());
    }
    let names: Vec<&str> = stalled.iter().map(|(name, _)| *name).collect();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "pipeline stage not advancing: {} (see the logs and /admin/quarantine)",
            names.join(", ")
        ),
    )
}

/// A counter family: name, help text, and how to read it from a source's counters.
type Family = (&'static str, &'static str, fn(&SourceCounters) -> u64);

/// Renders every counter in the Prometheus text exposition format.
pub fn render_metrics(state: &AppState) -> String {
    crate::exposition::render(|| record_metrics(state))
}

/// Records the ingest counters and every component's into the current (per-scrape) recorder.
fn record_metrics(state: &AppState) {
    let sources = state.sources.all();
    let families: [Family; 7] = [
        ("received", "Messages received, valid or not.", |c| {
            c.received.load(Ordering::Relaxed)
        }),
        (
            "accepted",
            "Messages durably stored (any plan verdict).",
            |c| c.accepted.load(Ordering::Relaxed),
        ),
        (
            "flagged",
            "Stored messages with tracking-plan violations.",
            |c| c.flagged.load(Ordering::Relaxed),
        ),
        (
            "blocked",
            "Stored messages blocked by the tracking plan.",
            |c| c.blocked.load(Ordering::Relaxed),
        ),
        (
            "rejected",
            "Items refused as invalid messages (kept in rejected_messages).",
            |c| c.rejected.load(Ordering::Relaxed),
        ),
        (
            "deduplicated",
            "Messages dropped as repeats of a messageId within 24 h.",
            |c| c.deduplicated.load(Ordering::Relaxed),
        ),
        (
            "rate_limited",
            "Messages refused (429) by the write key's rate limit.",
            |c| c.rate_limited.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, read) in families {
        let name = format!("touchpoint_messages_{name}_total");
        metrics::describe_counter!(name.clone(), help);
        for s in &sources {
            metrics::counter!(name.clone(), "source" => s.name.clone()).absolute(read(&s.counters));
        }
    }
    let stats = &state.writer.stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let counters = [
        (
            "touchpoint_commits_total",
            "Group commits made.",
            load(&stats.commits),
        ),
        (
            "touchpoint_commit_rows_total",
            "Rows written by group commits.",
            load(&stats.rows),
        ),
        (
            "touchpoint_commit_failures_total",
            "Group commits that failed.",
            load(&stats.failures),
        ),
    ];
    for (name, help, value) in counters {
        metrics::describe_counter!(name, help);
        metrics::counter!(name).absolute(value);
    }
    metrics::describe_gauge!(
        "touchpoint_ingest_queue_depth",
        "Messages waiting for a commit."
    );
    metrics::gauge!("touchpoint_ingest_queue_depth").set(state.writer.queue_depth() as f64);
    crate::destinations::record_metrics(&state.destinations);
    state.pipeline.record_metrics();
    state.warehouse.record_metrics();
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render_metrics(&state),
    )
}
