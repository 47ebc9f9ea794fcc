//! Delivery workers: one per enabled destination and process. Each claims due outbox rows (a lease:
//! PostgreSQL `FOR UPDATE SKIP LOCKED`, so processes sharing the outbox never take the same row),
//! encodes them into calls batched to the API's limits, makes the calls in order, and records every
//! call in the delivery log and every row's outcome, decided by the pure `settle::settle`: delivered,
//! retry later (exponential backoff with jitter, honouring Retry-After) or dead (validation errors,
//! keeping the API's message; retryable failures after the last attempt).

use super::settle::{Jitter, Verdict, settle};
use super::store::{Claimed, LogEntry, RowOutcome};
use super::{Activation, Counters, Destination, Destinations, RetryAction};
use crate::storage::StorageError;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Spawns a worker per enabled destination. Every wake-up of `Destinations::wake` reaches every
/// worker (a `Notify` alone would wake only one of them, leaving the others to their poll).
pub fn spawn(destinations: &Arc<Destinations>) {
    let wakes: Vec<Arc<Notify>> = destinations
        .enabled
        .keys()
        .map(|_| Arc::new(Notify::new()))
        .collect();
    crate::pipeline::fan_out(destinations.wake.clone(), wakes.clone());
    for (name, wake) in destinations.enabled.keys().zip(wakes) {
        let d = destinations.clone();
        let name: &'static str = name;
        tokio::spawn(async move {
            loop {
                match deliver_once(&d, name).await {
                    Ok(n) if n > 0 => continue,
                    Ok(_) => {
                        let _ = tokio::time::timeout(d.delivery.poll, wake.notified()).await;
                    }
                    Err(e) => {
                        tracing::error!(destination = name, error = %e, "delivery worker failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }
}

/// Claims and delivers one batch of a destination; returns how many rows it handled.
pub async fn deliver_once(d: &Destinations, name: &'static str) -> Result<usize, StorageError> {
    let Some(dest) = d.enabled.get(name) else {
        return Ok(0);
    };
    let counters = d.counters.get(name).cloned().unwrap_or_default();
    let now = d.clock.now_ms();
    let lease = now + d.delivery.lease.as_millis() as i64;
    let claimed = d
        .store
        .claim(name, now, lease, dest.batch_size() as i64)
        .await?;
    if claimed.is_empty() {
        return Ok(0);
    }
    let (outcomes, log) = deliver(dest.as_ref(), &claimed, d, &counters).await;
    let done = d.clock.now_ms();
    d.store.finish(&outcomes, &log, done).await?;
    Ok(claimed.len())
}

async fn deliver(
    dest: &dyn Destination,
    claimed: &[Claimed],
    d: &Destinations,
    counters: &Counters,
) -> (Vec<(i64, i64, RowOutcome)>, Vec<LogEntry>) {
    let name = dest.name();
    let mut verdicts: BTreeMap<usize, Verdict> = BTreeMap::new();
    let mut batch: Vec<Activation> = Vec::with_capacity(claimed.len());
    let mut index: Vec<usize> = Vec::with_capacity(claimed.len()); // batch position → claimed position
    for (i, row) in claimed.iter().enumerate() {
        match serde_json::from_str::<Activation>(&row.payload) {
            Ok(a) => {
                batch.push(a);
                index.push(i);
            }
            Err(e) => {
                verdicts.insert(i, Verdict::Dead(format!("unreadable outbox payload: {e}")));
            }
        }
    }
    let encoded = dest.encode(&batch);
    let mut log = Vec::new();
    for (b, reason) in &encoded.rejected {
        verdicts
            .entry(index[*b])
            .or_insert(Verdict::Delivered)
            .merge(Verdict::Dead(reason.clone()));
        log.push(LogEntry {
            destination: name.into(),
            outbox_ids: vec![claimed[index[*b]].id],
            request: "validation (not sent)".into(),
            status_code: None,
            duration_ms: 0,
            outcome: "dead".into(),
            error: Some(reason.clone()),
            at: d.clock.now_ms(),
        });
    }
    let mut halted: Option<String> = None;
    for request in &encoded.requests {
        let carried: Vec<usize> = request.activations().iter().map(|b| index[*b]).collect();
        if let Some(reason) = &halted {
            // An earlier call failed as a whole; later calls may depend on it (Contacts on their
            // Account), so they wait for the retry.
            for i in carried {
                verdicts
                    .entry(i)
                    .or_insert(Verdict::Delivered)
                    .merge(Verdict::Retry(None, format!("not sent: {reason}")));
            }
            continue;
        }
        let started = std::time::Instant::now();
        let sent = dest.send(request).await;
        let elapsed = started.elapsed();
        let at = d.clock.now_ms();
        let item_rows = |items: &[usize]| -> Vec<usize> {
            let mut v: Vec<usize> = items
                .iter()
                .filter_map(|it| request.covers.get(*it))
                .flatten()
                .map(|b| index[*b])
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let (outcome, error) = match &sent.action {
            RetryAction::Success => {
                for i in &carried {
                    verdicts.entry(*i).or_insert(Verdict::Delivered);
                }
                ("success", None)
            }
            RetryAction::Retry { after, reason } => {
                Counters::add(&counters.failed, 1);
                for i in &carried {
                    verdicts
                        .entry(*i)
                        .or_insert(Verdict::Delivered)
                        .merge(Verdict::Retry(*after, reason.clone()));
                }
                halted = Some(reason.clone());
                ("retry", Some(reason.clone()))
            }
            RetryAction::DontRetry(message) => {
                Counters::add(&counters.failed, 1);
                for i in &carried {
                    verdicts
                        .entry(*i)
                        .or_insert(Verdict::Delivered)
                        .merge(Verdict::Dead(message.clone()));
                }
                ("dead", Some(message.clone()))
            }
            RetryAction::RetryPart {
                retry,
                dead,
                reason,
            } => {
                Counters::add(&counters.failed, 1);
                for i in &carried {
                    verdicts.entry(*i).or_insert(Verdict::Delivered);
                }
                for i in item_rows(retry) {
                    verdicts
                        .entry(i)
                        .or_insert(Verdict::Delivered)
                        .merge(Verdict::Retry(None, reason.clone()));
                }
                let mut messages = Vec::new();
                for (item, message) in dead {
                    messages.push(message.clone());
                    for i in item_rows(&[*item]) {
                        verdicts
                            .entry(i)
                            .or_insert(Verdict::Delivered)
                            .merge(Verdict::Dead(message.clone()));
                    }
                }
                if !retry.is_empty() {
                    messages.push(reason.clone());
                }
                ("partial", Some(messages.join("; ")))
            }
        };
        if let Some(e) = &error {
            tracing::warn!(destination = name, request = %request.label, status = ?sent.status, error = %e, "delivery call failed");
        }
        let mut ids: Vec<i64> = request
            .activations()
            .iter()
            .map(|b| claimed[index[*b]].id)
            .collect();
        ids.sort_unstable();
        log.push(LogEntry {
            destination: name.into(),
            outbox_ids: ids,
            request: format!(
                "{} {} ({} item{})",
                request.method.as_str(),
                request.label,
                request.covers.len(),
                if request.covers.len() == 1 { "" } else { "s" }
            ),
            status_code: sent.status.map(i64::from),
            duration_ms: elapsed.as_millis() as i64,
            outcome: outcome.into(),
            error,
            at,
        });
    }
    let now = d.clock.now_ms();
    let mut outcomes = Vec::with_capacity(claimed.len());
    let (mut delivered, mut retried, mut dead) = (0, 0, 0);
    for (i, row) in claimed.iter().enumerate() {
        // Rows no call carried had nothing to send for this destination: done.
        let verdict = verdicts.remove(&i).unwrap_or(Verdict::Delivered);
        let outcome = settle(verdict, row.attempts, &d.delivery, now, Jitter::random());
        match outcome {
            RowOutcome::Delivered => delivered += 1,
            RowOutcome::Retry { .. } => retried += 1,
            RowOutcome::Dead(_) => dead += 1,
        }
        outcomes.push((row.id, row.attempts, outcome));
    }
    Counters::add(&counters.delivered, delivered);
    Counters::add(&counters.retried, retried);
    Counters::add(&counters.dead, dead);
    tracing::info!(
        destination = name,
        delivered,
        retried,
        dead,
        calls = encoded.requests.len(),
        "delivered"
    );
    (outcomes, log)
}
