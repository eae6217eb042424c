//! The rate limit: at most `rate_limit_per_minute` messages in any 60 seconds, and nothing
//! before the time a `429 Too Many Requests` answer's `Retry-After` named.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The window the rate is counted over.
pub const WINDOW: Duration = Duration::from_secs(60);

/// A sliding-window rate limiter over explicit instants (so tests need no clock).
#[derive(Debug)]
pub struct RateLimiter {
    per_window: usize,
    sent: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

impl RateLimiter {
    /// A limiter allowing `per_window` messages per [`WINDOW`]; 0 means no limit.
    pub fn new(per_window: usize) -> Self {
        RateLimiter {
            per_window,
            sent: VecDeque::new(),
            blocked_until: None,
        }
    }

    /// The earliest instant at or after `now` when a message may be sent.
    pub fn next_free(&mut self, now: Instant) -> Instant {
        while self
            .sent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
        {
            self.sent.pop_front();
        }
        let mut at = now;
        if self.per_window > 0 && self.sent.len() >= self.per_window {
            if let Some(oldest) = self.sent.front() {
                at = at.max(*oldest + WINDOW);
            }
        }
        if let Some(b) = self.blocked_until {
            if b > at {
                at = b;
            }
        }
        at
    }

    /// Records a message sent at `now`.
    pub fn record(&mut self, now: Instant) {
        if self.per_window > 0 {
            self.sent.push_back(now);
        }
    }

    /// Sends nothing before `until` (a `Retry-After`).
    pub fn block_until(&mut self, until: Instant) {
        if self.blocked_until.is_none_or(|b| b < until) {
            self.blocked_until = Some(until);
        }
    }
}

/// Reads a `Retry-After` header value given in seconds (what Slack sends). An HTTP date is
/// not understood and gives `None`. Capped at one hour.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let secs: u64 = v.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_and_retry_after() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(2);
        assert_eq!(l.next_free(t0), t0);
        l.record(t0);
        l.record(t0 + Duration::from_secs(1));
        let t = t0 + Duration::from_secs(2);
        assert_eq!(
            l.next_free(t),
            t0 + WINDOW,
            "the third waits for the first to age out"
        );
        let later = t0 + WINDOW + Duration::from_secs(1);
        assert_eq!(l.next_free(later), later);
        l.block_until(later + Duration::from_secs(30));
        l.block_until(later + Duration::from_secs(5));
        assert_eq!(l.next_free(later), later + Duration::from_secs(30));

        let mut free = RateLimiter::new(0);
        for i in 0..1000 {
            free.record(t0 + Duration::from_millis(i));
        }
        assert_eq!(free.next_free(t0), t0);
    }

    #[test]
    fn retry_after_values() {
        assert_eq!(parse_retry_after("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after(" 1 "), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after("999999"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    proptest::proptest! {
        /// Sending whenever the limiter allows never puts more than the limit in any window.
        #[test]
        fn never_more_than_the_limit(per in 1usize..10, gaps in proptest::collection::vec(0u64..20_000, 1..80)) {
            let t0 = Instant::now();
            let mut l = RateLimiter::new(per);
            let mut now = t0;
            let mut sent: Vec<Instant> = Vec::new();
            for g in gaps {
                now += Duration::from_millis(g);
                let at = l.next_free(now);
                now = at;
                l.record(at);
                sent.push(at);
            }
            for (i, t) in sent.iter().enumerate() {
                let in_window = sent[i..].iter().filter(|u| u.duration_since(*t) < WINDOW).count();
                proptest::prop_assert!(in_window <= per);
            }
        }
    }
}
