//! The erasure worker: claims the due destination rows of regulations (a lease, like the outbox:
//! PostgreSQL `SKIP LOCKED`, so processes sharing the database never call twice at once), forwards
//! the request to the destination's deletion API, and records the outcome — succeeded, not
//! supported, retried with exponential backoff (bounded by `TOUCHPOINT_DELIVERY_MAX_ATTEMPTS`), or
//! failed with the API's error. Logs name the regulation and destination, never the person.

use super::store::{ClaimedErasure, ErasureUpdate, PrivacyStore};
use super::{Privacy, Scrubber};
use crate::destinations::erasure::Erasure;
use crate::destinations::{DeliveryConfig, Destinations, backoff};
use crate::storage::StorageError;
use std::sync::Arc;
use std::time::Duration;

/// Destination rows claimed per round.
const CLAIM: i64 = 20;

/// Spawns the worker.
pub fn spawn(privacy: Arc<Privacy>, destinations: Arc<Destinations>) {
    tokio::spawn(async move {
        loop {
            let now = chrono::Utc::now().timestamp_millis();
            match run_once(privacy.store.as_ref(), &destinations, now).await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {
                    let _ =
                        tokio::time::timeout(destinations.delivery.poll, privacy.wake.notified())
                            .await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "erasure worker failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
}

/// Claims and forwards one round of due erasures; returns how many it handled.
pub async fn run_once(
    store: &dyn PrivacyStore,
    destinations: &Destinations,
    now: i64,
) -> Result<usize, StorageError> {
    let lease = now + destinations.delivery.lease.as_millis() as i64;
    let claimed = store.claim(now, lease, CLAIM).await?;
    for c in &claimed {
        let erasure = forward(c, destinations).await;
        let done = chrono::Utc::now().timestamp_millis();
        let update = decide(&erasure, c.attempts, &destinations.delivery, done);
        let scrub = c
            .subject
            .as_ref()
            .map(|s| Scrubber::new(s.values()))
            .unwrap_or_default();
        let error = update
            .last_error
            .as_deref()
            .map(|e| scrub.scrub_text(e).unwrap_or_else(|| e.to_owned()));
        tracing::info!(
            regulation = %c.regulation,
            destination = %c.destination,
            attempt = c.attempts,
            status = update.status,
            error = error.as_deref().unwrap_or(""),
            "erasure forwarded"
        );
        store.finish(c, &update, done).await?;
    }
    Ok(claimed.len())
}

async fn forward(c: &ClaimedErasure, destinations: &Destinations) -> Erasure {
    let Some(subject) = &c.subject else {
        return Erasure::Failed("the regulation no longer holds the identifiers to send".into());
    };
    match destinations.enabled.get(c.destination.as_str()) {
        Some(dest) => dest.erase(subject).await,
        None => Erasure::Failed(format!(
            "destination {} is no longer configured; erase the person there by hand",
            c.destination
        )),
    }
}

/// What an attempt's outcome means for the row (`attempts` includes this one).
pub fn decide(
    erasure: &Erasure,
    attempts: i64,
    delivery: &DeliveryConfig,
    now: i64,
) -> ErasureUpdate {
    let update = |status, last_error: Option<String>, detail: Option<String>| ErasureUpdate {
        status,
        next_attempt_at: now,
        last_error,
        detail,
    };
    match erasure {
        Erasure::Done(what) => update("succeeded", None, Some(what.clone())),
        Erasure::NotSupported(why) => update("not_supported", None, Some(why.clone())),
        Erasure::Failed(message) => update("failed", Some(message.clone()), None),
        Erasure::Retry { reason, .. } if attempts >= delivery.max_attempts => update(
            "failed",
            Some(format!("gave up after {attempts} attempts: {reason}")),
            None,
        ),
        Erasure::Retry { after, reason } => ErasureUpdate {
            status: "pending",
            next_attempt_at: now + backoff(delivery, attempts, *after).as_millis() as i64,
            last_error: Some(reason.clone()),
            detail: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retryable_failure_backs_off_until_the_attempts_run_out_then_fails_with_its_error() {
        let delivery = DeliveryConfig {
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(1),
            max_attempts: 3,
            ..DeliveryConfig::default()
        };
        let busy = Erasure::Retry {
            after: None,
            reason: "HTTP 503: down".into(),
        };
        let first = decide(&busy, 1, &delivery, 1_000);
        assert_eq!(first.status, "pending");
        assert!((1_050..=1_100).contains(&first.next_attempt_at));
        assert_eq!(first.last_error.as_deref(), Some("HTTP 503: down"));
        let last = decide(&busy, 3, &delivery, 1_000);
        assert_eq!(last.status, "failed");
        assert_eq!(
            last.last_error.as_deref(),
            Some("gave up after 3 attempts: HTTP 503: down")
        );
        assert_eq!(
            decide(&Erasure::NotSupported("no API".into()), 1, &delivery, 0).status,
            "not_supported"
        );
        let done = decide(&Erasure::Done("1 call".into()), 1, &delivery, 0);
        assert_eq!(
            (done.status, done.detail.as_deref()),
            ("succeeded", Some("1 call"))
        );
    }
}
