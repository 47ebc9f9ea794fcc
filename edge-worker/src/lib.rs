//! Touchpoint's edge worker: first-party collection on Cloudflare Workers.
//!
//! Everything that decides something lives in host-testable modules — [`route`] (which request is
//! which), [`config`] (vars and secrets), [`collect`] (limits, the tracking plan, enrichment),
//! [`delivery`] (core's answers, retry backoff), [`cors`] (which origins get credentials),
//! [`privacy`] (IP truncation), [`bot`] (user-agent heuristics), [`cookie`] (the signed `tp_sid`
//! cookie), [`settings`] (Segment's settings document pointed at the edge) and [`sign`] (the HMAC
//! core verifies). Only `entry` (wasm32) touches the Workers runtime:
//! the `fetch` handler forwards to core or, when core is down, to a Queue, and the `queue` handler
//! retries delivery.

pub mod bot;
pub mod collect;
pub mod config;
pub mod cookie;
pub mod cors;
pub mod delivery;
pub mod privacy;
pub mod route;
pub mod settings;
pub mod sign;

#[cfg(target_arch = "wasm32")]
mod entry;

use std::sync::LazyLock;
use touchpoint_tracking_plan::TrackingPlan;

/// The tracking plan compiled into the worker (the repository's `TRACKING_PLAN.md`), parsed once
/// per isolate.
pub static PLAN: LazyLock<TrackingPlan> = LazyLock::new(|| {
    touchpoint_tracking_plan::parse(include_str!("../../TRACKING_PLAN.md"))
        .expect("TRACKING_PLAN.md is checked by `touchpoint plan check` before it ships")
});

#[cfg(test)]
mod tests {
    #[test]
    fn the_compiled_in_plan_parses() {
        assert!(!super::PLAN.events().is_empty());
        assert!(!super::PLAN.version().is_empty());
    }
}
