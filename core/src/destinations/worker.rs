//! Delivery workers: one per enabled destination and process. Each claims due outbox rows (a lease:
//! PostgreSQL `FOR UPDATE SKIP LOCKED`, so processes sharing the outbox never take the same row),
//! encodes them into calls batched to the API's limits, makes the calls in order, and records every
//! call in the delivery log and every row's outcome, decided by the pure `settle::settle`: delivered,
//! retry later (exponential backoff with jitter, honouring Retry-After) or dead (validation errors,
//! keeping the API's message; retryable failures after the last attempt).

use super::settle::{Jitter, Verdict, Verdicts, judge, not_sent, settle};
use super::store::{Claimed, LogEntry, RowOutcome};
use super::{Activation, Counters, Destination, Destinations, Request};
use crate::storage::StorageError;
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

/// Makes the calls for the claimed rows in order and decides each row's outcome (the decisions are
/// `settle::judge` and `settle::settle`; this shell sends, times and logs).
async fn deliver(
    dest: &dyn Destination,
    claimed: &[Claimed],
    d: &Destinations,
    counters: &Counters,
) -> (Vec<(i64, i64, RowOutcome)>, Vec<LogEntry>) {
    let name = dest.name();
    let (batch, index, mut verdicts) = read_payloads(claimed);
    let encoded = dest.encode(&batch);
    let mut log = Vec::new();
    for (b, reason) in &encoded.rejected {
        verdicts.add(index[*b], Verdict::Dead(reason.clone()));
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
            not_sent(&carried, reason, &mut verdicts);
            continue;
        }
        let started = std::time::Instant::now();
        let sent = dest.send(request).await;
        let elapsed = started.elapsed();
        let judged = judge(
            &sent.action,
            &carried,
            |items| rows_of(request, &index, items),
            &mut verdicts,
        );
        if let Some(e) = &judged.error {
            Counters::add(&counters.failed, 1);
            tracing::warn!(destination = name, request = %request.label, status = ?sent.status, error = %e, "delivery call failed");
        }
        halted = judged.halts;
        let mut ids: Vec<i64> = carried.iter().map(|i| claimed[*i].id).collect();
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
            outcome: judged.outcome.into(),
            error: judged.error,
            at: d.clock.now_ms(),
        });
    }
    let now = d.clock.now_ms();
    let mut outcomes = Vec::with_capacity(claimed.len());
    let (mut delivered, mut retried, mut dead) = (0, 0, 0);
    for (i, row) in claimed.iter().enumerate() {
        let outcome = settle(
            verdicts.take(i),
            row.attempts,
            &d.delivery,
            now,
            Jitter::random(),
        );
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

/// Reads the claimed rows' activations; an unreadable payload is dead at once. Returns the
/// activations to encode, the claimed row of each, and the verdicts so far.
fn read_payloads(claimed: &[Claimed]) -> (Vec<Activation>, Vec<usize>, Verdicts) {
    let mut verdicts = Verdicts::default();
    let mut batch = Vec::with_capacity(claimed.len());
    let mut index = Vec::with_capacity(claimed.len()); // batch position → claimed position
    for (i, row) in claimed.iter().enumerate() {
        match serde_json::from_str::<Activation>(&row.payload) {
            Ok(a) => {
                batch.push(a);
                index.push(i);
            }
            Err(e) => verdicts.add(i, Verdict::Dead(format!("unreadable outbox payload: {e}"))),
        }
    }
    (batch, index, verdicts)
}

/// The claimed rows behind some items of `request`.
fn rows_of(request: &Request, index: &[usize], items: &[usize]) -> Vec<usize> {
    let mut v: Vec<usize> = items
        .iter()
        .filter_map(|it| request.covers.get(*it))
        .flatten()
        .map(|b| index[*b])
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}
