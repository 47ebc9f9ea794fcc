//! Retention: raw messages, rejected items, delivered activation payloads (outbox rows),
//! delivery-log entries and identity resolution reports older than `TOUCHPOINT_RETENTION_DAYS` are purged by an hourly janitor
//! (or `POST /admin/retention/run`). A message is only purged once every pipeline stage has
//! processed it; what the stages derived (profiles, traits, timeline counts, audiences) stays.

use super::store::{PrivacyStore, Purged};
use crate::storage::StorageError;
use std::sync::Arc;
use std::time::Duration;

/// How often the janitor runs.
const PERIOD: Duration = Duration::from_secs(3600);
const DAY_MS: i64 = 86_400_000;

/// The stage cursors over the message log that always run with the pipeline.
pub const PIPELINE_CURSORS: [&str; 2] = ["profiles", "audiences"];
/// The activation stage's cursor over the log (it runs when a destination is enabled).
pub const DESTINATIONS_CURSOR: &str = "destinations";

/// Retention settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Days raw data is kept; 0 keeps it forever.
    pub days: u32,
    /// Stage cursors a purged message must be behind.
    pub cursors: Vec<&'static str>,
}

impl Policy {
    /// A policy keeping `days` days, respecting the pipeline's cursors (and the activation
    /// stage's when it runs).
    pub fn new(days: u32, destinations_run: bool) -> Policy {
        let mut cursors = PIPELINE_CURSORS.to_vec();
        if destinations_run {
            cursors.push(DESTINATIONS_CURSOR);
        }
        Policy { days, cursors }
    }
}

/// The oldest time (ms) kept at `now` (ms); `None` when retention is off.
pub fn cutoff(now: i64, days: u32) -> Option<i64> {
    (days > 0).then(|| now.saturating_sub(i64::from(days).saturating_mul(DAY_MS)))
}

/// Purges what is older than the policy allows at `now` (ms); `None` when retention is off.
pub async fn run_once(
    store: &dyn PrivacyStore,
    policy: &Policy,
    now: i64,
) -> Result<Option<Purged>, StorageError> {
    let Some(before) = cutoff(now, policy.days) else {
        return Ok(None);
    };
    let purged = store.purge(before, &policy.cursors).await?;
    tracing::info!(
        days = policy.days,
        messages = purged.messages,
        rejected = purged.rejected,
        outbox = purged.outbox,
        delivery_log = purged.delivery_log,
        identity_reports = purged.identity_reports,
        "retention purge"
    );
    Ok(Some(purged))
}

/// Spawns the hourly janitor (nothing when retention is off).
pub fn spawn(store: Arc<dyn PrivacyStore>, policy: Policy) {
    if policy.days == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PERIOD);
        loop {
            tick.tick().await;
            let now = chrono::Utc::now().timestamp_millis();
            if let Err(e) = run_once(store.as_ref(), &policy, now).await {
                tracing::warn!(error = %e, "retention purge failed");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cutoff_is_n_days_before_now_and_absent_when_retention_is_off() {
        let now = 100 * DAY_MS + 5;
        assert_eq!(cutoff(now, 0), None);
        assert_eq!(cutoff(now, 30), Some(70 * DAY_MS + 5));
        assert_eq!(cutoff(0, u32::MAX), Some(-i64::from(u32::MAX) * DAY_MS));
        assert_eq!(cutoff(i64::MIN, 1), Some(i64::MIN));
    }

    #[test]
    fn a_purge_waits_for_the_activation_stage_only_when_it_runs() {
        assert_eq!(Policy::new(7, false).cursors, ["profiles", "audiences"]);
        assert!(Policy::new(7, true).cursors.contains(&"destinations"));
    }
}
