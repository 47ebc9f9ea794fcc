//! How the worker reads core's answer to a forwarded batch, and how long a queued batch waits
//! before the next attempt.

/// What to do after core answered (or did not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Core stored the batch (2xx): the browser gets 2xx, the queue message is acked.
    Delivered,
    /// Core refused the batch for good (400, 413, 415, 422, or 401 for the browser's write key):
    /// tell the browser; a queued batch is acked (core kept what it could as rejected messages).
    Refused,
    /// Try again later: network error, timeout, 5xx, 408, 429, and a refused edge signature or a
    /// missing edge endpoint (a secret or route misconfiguration an operator can fix — the Queue
    /// keeps the data meanwhile, then its dead letter queue).
    Retry,
}

/// Classifies core's answer (`None`: no answer — network error or timeout). A 401 is the browser's
/// fault (unknown write key) unless core's error `code` says the edge's own signature was refused.
pub fn classify(status: Option<u16>, body: &str) -> Answer {
    let code = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_owned));
    match status {
        Some(200..=299) => Answer::Delivered,
        Some(401) if code.as_deref() != Some("bad_signature") => Answer::Refused,
        Some(400 | 413 | 415 | 422) => Answer::Refused,
        _ => Answer::Retry,
    }
}

/// Seconds before the next delivery attempt of a batch first queued `age_secs` ago: at least
/// `min_secs`, then about as long as it has already waited (so the wait doubles each attempt),
/// at most 15 minutes.
pub fn backoff_secs(age_secs: u64, min_secs: u32) -> u32 {
    let age = u32::try_from(age_secs).unwrap_or(u32::MAX);
    age.clamp(min_secs.max(1), 900.max(min_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_answers_are_classified() {
        assert_eq!(classify(Some(200), ""), Answer::Delivered);
        assert_eq!(classify(Some(202), ""), Answer::Delivered);
        assert_eq!(classify(Some(400), ""), Answer::Refused);
        assert_eq!(classify(Some(413), ""), Answer::Refused);
        let unknown_key =
            r#"{"success":false,"error":"unknown write key","code":"unknown_write_key"}"#;
        assert_eq!(classify(Some(401), unknown_key), Answer::Refused);
        let bad_signature =
            r#"{"success":false,"error":"edge signature refused","code":"bad_signature"}"#;
        assert_eq!(classify(Some(401), bad_signature), Answer::Retry);
        for retry in [
            None,
            Some(500),
            Some(502),
            Some(503),
            Some(408),
            Some(429),
            Some(404),
        ] {
            assert_eq!(classify(retry, ""), Answer::Retry, "{retry:?}");
        }
    }

    #[test]
    fn backoff_doubles_from_the_minimum_up_to_fifteen_minutes() {
        assert_eq!(backoff_secs(0, 10), 10);
        assert_eq!(backoff_secs(10, 10), 10);
        assert_eq!(backoff_secs(20, 10), 20);
        assert_eq!(backoff_secs(40, 10), 40);
        assert_eq!(backoff_secs(100_000, 10), 900);
        assert_eq!(backoff_secs(0, 0), 1);
    }
}
