//! A token bucket per destination (HubSpot 190 requests / 10 s, Resend 2 / s, …).

use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Allows `capacity` calls at once, refilled at `per_second`.
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// `capacity` requests per `window`, starting full.
    pub fn new(capacity: u64, window: Duration) -> TokenBucket {
        let capacity = capacity.max(1) as f64;
        TokenBucket {
            capacity,
            per_second: capacity / window.as_secs_f64().max(0.001),
            state: Mutex::new((capacity, Instant::now())),
        }
    }

    /// How long the caller must wait for a token (zero: take it now).
    pub async fn try_take(&self) -> Duration {
        let mut s = self.state.lock().await;
        let now = Instant::now();
        let refill = now.duration_since(s.1).as_secs_f64() * self.per_second;
        s.0 = (s.0 + refill).min(self.capacity);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - s.0) / self.per_second)
        }
    }

    /// Waits for a token.
    pub async fn acquire(&self) {
        loop {
            let wait = self.try_take().await;
            if wait.is_zero() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_bucket_allows_a_burst_then_paces_calls() {
        let b = TokenBucket::new(2, Duration::from_millis(200));
        assert!(b.try_take().await.is_zero());
        assert!(b.try_take().await.is_zero());
        let wait = b.try_take().await;
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100));
        let started = Instant::now();
        b.acquire().await;
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}
