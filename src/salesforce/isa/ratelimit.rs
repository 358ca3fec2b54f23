//! The client-side request-rate limit of one org: a token bucket holding one second's worth of
//! requests. Callers reserve a slot in arrival order; the bucket may go into debt, and a caller
//! in debt sleeps until its slot comes. A `Retry-After` from Salesforce holds every caller of
//! the org back until it has passed.

use std::time::Duration;

use tokio::{sync::Mutex, time::Instant};

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    held_until: Option<Instant>,
}

/// A per-org request-rate limit.
#[derive(Debug)]
pub(super) struct RateLimiter {
    per_second: f64,
    bucket: Mutex<Bucket>,
}

impl RateLimiter {
    /// At most `per_second` requests per second on average, with bursts of as many.
    pub(super) fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        Self {
            per_second,
            bucket: Mutex::new(Bucket {
                tokens: per_second,
                refilled: Instant::now(),
                held_until: None,
            }),
        }
    }

    /// Waits until this caller may send one request.
    pub(super) async fn acquire(&self) {
        let wait = {
            let mut bucket = self.bucket.lock().await;
            let now = Instant::now();
            let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.per_second);
            bucket.refilled = now;
            bucket.tokens -= 1.0;
            let debt = if bucket.tokens < 0.0 {
                Duration::from_secs_f64(-bucket.tokens / self.per_second)
            } else {
                Duration::ZERO
            };
            let hold = bucket
                .held_until
                .filter(|until| *until > now)
                .map(|until| until - now)
                .unwrap_or_default();
            debt.max(hold)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Holds every caller back for `wait` (Salesforce sent `Retry-After`).
    pub(super) async fn hold_for(&self, wait: Duration) {
        let mut bucket = self.bucket.lock().await;
        let now = Instant::now();
        // `Retry-After` comes from outside: no panic on a wait past what `Instant` holds.
        let until = now
            .checked_add(wait)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365));
        if bucket.held_until.is_none_or(|held| held < until) {
            bucket.held_until = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bursts_up_to_the_rate_then_spaces_requests() {
        let limiter = RateLimiter::new(10);
        let start = Instant::now();
        for _ in 0..10 {
            limiter.acquire().await;
        }
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "a full bucket does not wait"
        );
        for _ in 0..10 {
            limiter.acquire().await;
        }
        // Ten more at ten per second take about a second of (virtual) time.
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(990) && waited <= Duration::from_millis(1010),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_holds_everyone_back() {
        let limiter = RateLimiter::new(1000);
        limiter.hold_for(Duration::from_secs(3)).await;
        let start = Instant::now();
        limiter.acquire().await;
        assert!(start.elapsed() >= Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_past_the_end_of_time_does_not_panic() {
        let limiter = RateLimiter::new(1000);
        limiter.hold_for(Duration::from_secs(u64::MAX)).await;
        limiter.hold_for(Duration::MAX).await;
    }
}
