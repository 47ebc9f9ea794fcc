//! Operations endpoints: `/healthz`, `/readyz` and Prometheus `/metrics`.

use crate::sources::SourceCounters;
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::fmt::Write;
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
    let mut out = String::with_capacity(2048);
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
        let _ = writeln!(out, "# HELP touchpoint_messages_{name}_total {help}");
        let _ = writeln!(out, "# TYPE touchpoint_messages_{name}_total counter");
        for s in &sources {
            let _ = writeln!(
                out,
                "touchpoint_messages_{name}_total{{source=\"{}\"}} {}",
                s.name.replace(['"', '\\', '\n'], "_"),
                read(&s.counters)
            );
        }
    }
    let stats = &state.writer.stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    metric(
        &mut out,
        "touchpoint_commits_total",
        "counter",
        "Group commits made.",
        load(&stats.commits),
    );
    metric(
        &mut out,
        "touchpoint_commit_rows_total",
        "counter",
        "Rows written by group commits.",
        load(&stats.rows),
    );
    metric(
        &mut out,
        "touchpoint_commit_failures_total",
        "counter",
        "Group commits that failed.",
        load(&stats.failures),
    );
    metric(
        &mut out,
        "touchpoint_ingest_queue_depth",
        "gauge",
        "Messages waiting for a commit.",
        state.writer.queue_depth() as u64,
    );
    crate::destinations::render_metrics(&state.destinations, &mut out);
    state.pipeline.render_metrics(&mut out);
    state.warehouse.render_metrics(&mut out);
    out
}

/// Writes one unlabelled metric with its HELP and TYPE lines.
fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render_metrics(&state),
    )
}
