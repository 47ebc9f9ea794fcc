//! Live debugger: every message a source sends, with its validation result, streamed over SSE to the
//! `/debugger` page (Segment's Source Debugger, self-hosted).

use crate::storage::StoredMessage;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::broadcast;

/// One debugger line, serialised once and shared by every subscriber.
#[derive(Debug, Clone)]
pub struct DebugEvent {
    /// Source name, used to filter subscriptions.
    pub source: Arc<str>,
    /// The JSON sent to the browser.
    pub json: Arc<str>,
}

/// Fan-out of debugger events.
#[derive(Clone)]
pub struct Debugger {
    tx: broadcast::Sender<DebugEvent>,
}

impl Default for Debugger {
    fn default() -> Self {
        Debugger {
            tx: broadcast::channel(4096).0,
        }
    }
}

impl Debugger {
    /// Whether anyone is watching; callers skip building events when not.
    pub fn watched(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Publishes one line.
    pub fn publish(&self, source: &Arc<str>, line: Value) {
        let _ = self.tx.send(DebugEvent {
            source: source.clone(),
            json: line.to_string().into(),
        });
    }

    /// A new subscription.
    pub fn subscribe(&self) -> broadcast::Receiver<DebugEvent> {
        self.tx.subscribe()
    }
}

/// The debugger line for a stored message.
pub fn stored_line(source: &str, m: &StoredMessage, duplicate: bool) -> Value {
    json!({
        "source": source,
        "seq": m.seq,
        "status": if duplicate { "duplicate" } else { m.status.as_str() },
        "messageId": m.message_id,
        "type": m.kind,
        "planVersion": m.plan_version,
        "findings": m.violations,
        "message": m.body,
    })
}

/// The debugger page. Everything from messages is rendered with `textContent`, never as HTML.
pub const PAGE: &str = include_str!("../assets/debugger.html");
