//! Shared HTTP plumbing: the client, one call with timing, and the status-code half of the retry
//! classifier (each service adds what its API's error bodies say).

use super::RetryAction;
use reqwest::header::HeaderMap;
use std::time::{Duration, Instant};

/// The HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("building the HTTP client: {0}")]
pub struct BuildError(#[from] reqwest::Error);

/// The client every destination shares (connection pooling, 30 s timeout).
pub fn client() -> Result<reqwest::Client, BuildError> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("touchpoint/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// An API's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Body text.
    pub body: String,
    /// Time taken.
    pub elapsed: Duration,
}

impl Answer {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends a request. A network failure is `Err` with a message that never contains the URL (which
/// may carry a secret, e.g. Meta's access_token).
pub async fn execute(request: reqwest::RequestBuilder) -> Result<Answer, String> {
    let started = Instant::now();
    let response = request
        .send()
        .await
        .map_err(|e| format!("network error: {}", e.without_url()))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .text()
        .await
        .map_err(|e| format!("reading the response: {}", e.without_url()))?;
    Ok(Answer {
        status,
        headers,
        body,
        elapsed: started.elapsed(),
    })
}

/// `Retry-After` in seconds, if present.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(86_400.0)))
}

/// Whether a status is worth retrying: timeouts, rate limits and server errors.
pub fn retryable(status: u16) -> bool {
    matches!(status, 408 | 425 | 429) || status >= 500
}

/// Classifies a whole-call answer by status: success, retry (honouring Retry-After) or dead with
/// `message` (the API's own words).
pub fn classify(answer: &Answer, message: String) -> RetryAction {
    if (200..300).contains(&answer.status) {
        RetryAction::Success
    } else if retryable(answer.status) {
        RetryAction::Retry {
            after: retry_after(&answer.headers),
            reason: format!("HTTP {}: {message}", answer.status),
        }
    } else {
        RetryAction::DontRetry(format!("HTTP {}: {message}", answer.status))
    }
}

/// Shortens an API message for storage (bodies can be large).
pub fn truncate(s: &str) -> String {
    const MAX: usize = 2000;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, retry: Option<&str>) -> Answer {
        let mut headers = HeaderMap::new();
        if let Some(r) = retry {
            headers.insert("retry-after", r.parse().unwrap());
        }
        Answer {
            status,
            headers,
            body: String::new(),
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn rate_limits_and_server_errors_retry_and_validation_errors_do_not() {
        assert_eq!(
            classify(&answer(204, None), "".into()),
            RetryAction::Success
        );
        assert_eq!(
            classify(&answer(429, Some("7")), "slow down".into()),
            RetryAction::Retry {
                after: Some(Duration::from_secs(7)),
                reason: "HTTP 429: slow down".into()
            }
        );
        assert!(matches!(
            classify(&answer(503, None), "".into()),
            RetryAction::Retry { after: None, .. }
        ));
        assert_eq!(
            classify(&answer(400, None), "bad field".into()),
            RetryAction::DontRetry("HTTP 400: bad field".into())
        );
    }
}
