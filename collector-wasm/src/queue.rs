//! The bounded message queue (persisted as a JSON array of messages), batching and retry backoff.
//! Pure logic: the browser bindings decide when to read, write and send it.

use crate::json::{push_str, split_array, split_once_byte, string_field};
use alloc::string::String;
use alloc::vec::Vec;

/// Most messages kept waiting; beyond it the oldest are dropped (with a console warning).
pub const MAX_QUEUE: usize = 500;
/// A message larger than this is dropped with a warning (the server refuses it too).
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// Largest batch body, under the 64 KB that `fetch(…, {keepalive})` and `sendBeacon` accept.
pub const MAX_BATCH_BYTES: usize = 60 * 1024;
/// Most messages in one batch.
pub const MAX_BATCH_ITEMS: usize = 100;

/// Messages (JSON text each) in the order they were made.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Queue {
    /// The messages, oldest first.
    pub items: Vec<String>,
}

impl Queue {
    /// Reads a stored queue; anything unreadable counts as empty.
    pub fn parse(stored: &str) -> Queue {
        Queue {
            items: split_array(stored).into_iter().map(String::from).collect(),
        }
    }

    /// The stored form: a JSON array of the messages.
    pub fn to_json(&self) -> String {
        let len = self.items.iter().map(|m| m.len() + 1).sum::<usize>() + 2;
        let mut s = String::with_capacity(len);
        s.push('[');
        for (i, m) in self.items.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(m);
        }
        s.push(']');
        s
    }

    /// Appends a message, dropping the oldest beyond `max`; returns how many were dropped.
    pub fn push(&mut self, msg: String, max: usize) -> usize {
        self.items.push(msg);
        let over = self.items.len().saturating_sub(max.max(1));
        drop_front(&mut self.items, over);
        over
    }

    /// How many of the oldest messages make the next batch (at least one when not empty).
    pub fn batch_len(&self, max_items: usize, max_bytes: usize) -> usize {
        let mut bytes = 0;
        let mut n = 0;
        for m in self.items.iter().take(max_items.max(1)) {
            bytes += m.len() + 1;
            if n > 0 && bytes > max_bytes {
                break;
            }
            n += 1;
        }
        n
    }

    /// Removes the messages whose `messageId` is in `ids` (another tab may have appended meanwhile).
    pub fn remove_ids(&mut self, ids: &[String]) {
        self.items
            .retain(|m| !message_id(m).is_some_and(|id| ids.iter().any(|x| x == id)));
    }
}

/// Removes the first `n` items (all when fewer); unlike `drain(..n)` it has no panicking path, whose
/// message formatting would pull `core::fmt` into the wasm.
pub fn drop_front<T>(v: &mut Vec<T>, n: usize) {
    let mut i = 0;
    v.retain(|_| {
        i += 1;
        i > n
    });
}

/// The `messageId` of a message written by this crate (raw JSON string content).
pub fn message_id(msg: &str) -> Option<&str> {
    string_field(msg, "messageId")
}

/// The `/v1/batch` body: `{"batch":[…],"sentAt":…,"writeKey":…}`.
pub fn batch_body(msgs: &[String], sent_at: &str, write_key: &str) -> String {
    let mut s = String::with_capacity(msgs.iter().map(|m| m.len() + 1).sum::<usize>() + 96);
    s.push_str("{\"batch\":[");
    for (i, m) in msgs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(m);
    }
    s.push_str("],\"sentAt\":");
    push_str(&mut s, sent_at);
    s.push_str(",\"writeKey\":");
    push_str(&mut s, write_key);
    s.push('}');
    s
}

/// Whether a send that ended with `status` (0 = network error) should be retried.
pub fn is_retryable(status: u16) -> bool {
    status == 0 || status == 408 || status == 429 || status >= 500
}

/// Milliseconds to wait before retry number `attempt` (1-based): 500 ms doubling to a 30 s cap,
/// scaled by `jitter` in [0, 1) into the upper half of the interval.
pub fn backoff_ms(attempt: u32, jitter: f64) -> u32 {
    let full = 500u32
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(30_000);
    let half = full / 2;
    half + (f64::from(half) * jitter.clamp(0.0, 1.0)) as u32
}

/// Whether a cross-tab lease `tab|expiresAtMs` is free for `tab` at `now` (absent, expired or ours).
pub fn lease_free(stored: Option<&str>, tab: &str, now: u64) -> bool {
    let Some((owner, expiry)) = stored.and_then(|s| split_once_byte(s, b'|')) else {
        return true;
    };
    owner == tab || crate::json::parse_uint(expiry).is_none_or(|e| e <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str) -> String {
        format!(r#"{{"type":"track","messageId":"{id}","event":"e"}}"#)
    }

    #[test]
    fn the_queue_round_trips_through_its_stored_form() {
        let mut q = Queue::default();
        q.push(msg("a"), 10);
        q.push(msg("b"), 10);
        assert_eq!(Queue::parse(&q.to_json()), q);
        assert_eq!(Queue::parse("not json"), Queue::default());
    }

    #[test]
    fn a_full_queue_drops_its_oldest_messages() {
        let mut q = Queue::default();
        for i in 0..5 {
            assert_eq!(q.push(msg(&i.to_string()), 3), usize::from(i >= 3));
        }
        let ids: Vec<_> = q.items.iter().filter_map(|m| message_id(m)).collect();
        assert_eq!(ids, ["2", "3", "4"]);
    }

    #[test]
    fn dropping_from_the_front_keeps_the_rest_in_order() {
        let mut v = vec![1, 2, 3, 4];
        drop_front(&mut v, 0);
        assert_eq!(v, [1, 2, 3, 4]);
        drop_front(&mut v, 3);
        assert_eq!(v, [4]);
        drop_front(&mut v, 5);
        assert!(v.is_empty());
    }

    #[test]
    fn batches_respect_item_and_byte_limits_but_always_take_one() {
        let mut q = Queue::default();
        for i in 0..10 {
            q.push(msg(&i.to_string()), 100);
        }
        assert_eq!(q.batch_len(4, 1 << 20), 4);
        let one = q.items[0].len() + 1;
        assert_eq!(q.batch_len(100, one * 3), 3);
        assert_eq!(q.batch_len(100, 1), 1);
        assert_eq!(Queue::default().batch_len(100, 100), 0);
    }

    #[test]
    fn sent_messages_are_removed_by_id_even_after_other_tabs_appended() {
        let mut q = Queue::default();
        for id in ["a", "b", "c"] {
            q.push(msg(id), 100);
        }
        q.remove_ids(&["a".into(), "c".into()]);
        assert_eq!(q.items, vec![msg("b")]);
    }

    #[test]
    fn the_batch_body_carries_the_write_key_and_sent_at() {
        let body = batch_body(&[msg("a")], "2024-01-01T00:00:00.000Z", "wk\"1");
        assert_eq!(
            body,
            r#"{"batch":[{"type":"track","messageId":"a","event":"e"}],"sentAt":"2024-01-01T00:00:00.000Z","writeKey":"wk\"1"}"#
        );
    }

    #[test]
    fn network_errors_5xx_and_429_are_retried_other_4xx_are_not() {
        for s in [0, 408, 429, 500, 503] {
            assert!(is_retryable(s), "{s}");
        }
        for s in [200, 400, 401, 413] {
            assert!(!is_retryable(s), "{s}");
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_a_cap() {
        assert_eq!(backoff_ms(1, 0.0), 250);
        assert_eq!(backoff_ms(1, 1.0), 500);
        assert_eq!(backoff_ms(2, 1.0), 1000);
        assert_eq!(backoff_ms(3, 0.5), 1500);
        assert_eq!(backoff_ms(40, 1.0), 30_000);
        assert!((1..30).all(|a| backoff_ms(a, 0.3) <= backoff_ms(a + 1, 0.3)));
    }

    #[test]
    fn a_lease_is_free_when_absent_expired_or_ours() {
        assert!(lease_free(None, "t1", 100));
        assert!(lease_free(Some("t1|50"), "t1", 100));
        assert!(lease_free(Some("t2|50"), "t1", 100));
        assert!(!lease_free(Some("t2|150"), "t1", 100));
        assert!(lease_free(Some("junk"), "t1", 100));
    }
}
