//! The retry schedule, as a pure state machine over explicit times (seconds, any epoch), with
//! Fluentd's rules (`retry_state.rb`):
//!
//! * The first retry is `retry_wait` after the first failure. After the n-th failed retry
//!   (`steps = n`), the next one waits `retry_wait × base^(n−1)` (exponential backoff, capped
//!   by `retry_max_interval`) or `retry_wait` (periodic), randomized by ±12.5 % with
//!   `retry_randomize`.
//! * Without `retry_forever`, no retry is scheduled past `start + retry_timeout`: the last one
//!   is moved to that instant, and the state reports [`RetryState::limit`] once a retry would
//!   land there, or once `retry_max_times` retries have failed.
//! * With a secondary output, the schedule switches to it at
//!   `start + min(retry_timeout, time of retry_max_times retries) × retry_secondary_threshold`;
//!   the backoff then starts again from `retry_wait`.

/// The retry parameters of a `<buffer>` section.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryParams {
    /// `retry_type exponential_backoff` (true) or `periodic` (false).
    pub exponential: bool,
    /// `retry_wait`, seconds.
    pub wait: f64,
    /// `retry_timeout`, seconds.
    pub timeout: f64,
    /// `retry_forever`.
    pub forever: bool,
    /// `retry_max_times`.
    pub max_steps: Option<u64>,
    /// `retry_exponential_backoff_base`.
    pub backoff_base: f64,
    /// `retry_max_interval`, seconds.
    pub max_interval: Option<f64>,
    /// `retry_randomize`.
    pub randomize: bool,
    /// Whether a secondary output exists.
    pub secondary: bool,
    /// `retry_secondary_threshold`, in (0, 1).
    pub secondary_threshold: f64,
}

/// How far randomization moves an interval either way (Fluentd's `randomize_width`).
pub const RANDOMIZE_WIDTH: f64 = 0.125;

/// The retry state of one output: created at the first failure, dropped at the next success.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryState {
    params: RetryParams,
    start: f64,
    steps: u64,
    next_time: f64,
    timeout_at: f64,
    secondary_at: Option<f64>,
    secondary_steps: Option<u64>,
}

impl RetryParams {
    /// The interval before retry number `num` (counting from 1), before randomization.
    pub fn interval(&self, num: u64) -> f64 {
        if !self.exponential {
            return self.wait;
        }
        let mut n = num.saturating_sub(1);
        let raw = |n: u64| self.wait * self.backoff_base.powf(n as f64);
        let mut v = raw(n);
        if let Some(max) = self.max_interval {
            if v > max {
                return max;
            }
        }
        // Past the range of f64, use the last finite interval, as Fluentd does.
        while !v.is_finite() && n > 0 {
            n -= 1;
            v = raw(n);
        }
        v
    }

    fn max_retry_time(&self, steps: u64) -> f64 {
        if self.exponential {
            (1..=steps).map(|i| self.interval(i)).sum()
        } else {
            self.wait * steps as f64
        }
    }
}

impl RetryState {
    /// Starts the schedule at `now` (the time of the first failure).
    pub fn new(params: RetryParams, now: f64) -> Self {
        let timeout_at = now + params.timeout;
        let secondary_at = params.secondary.then(|| {
            let mut max = params.timeout;
            if let Some(steps) = params.max_steps {
                max = max.min(params.max_retry_time(steps));
            }
            now + max * params.secondary_threshold
        });
        RetryState {
            next_time: now + params.wait,
            params,
            start: now,
            steps: 0,
            timeout_at,
            secondary_at,
            secondary_steps: None,
        }
    }

    /// When the schedule started.
    pub fn start(&self) -> f64 {
        self.start
    }

    /// Failed retries so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// When the next retry is due.
    pub fn next_time(&self) -> f64 {
        self.next_time
    }

    /// The instant no retry is scheduled past (without `retry_forever`).
    pub fn timeout_at(&self) -> f64 {
        self.timeout_at
    }

    /// When the switch to the secondary happens, if there is a secondary.
    pub fn secondary_transition_at(&self) -> Option<f64> {
        self.secondary_at
    }

    /// True when a retry at `now` should go to the secondary output.
    pub fn secondary(&self, now: f64) -> bool {
        !self.params.forever
            && (self.secondary_steps.is_some() || self.secondary_at.is_some_and(|at| now >= at))
    }

    fn randomize(&self, interval: f64, rand01: f64) -> f64 {
        if self.params.randomize {
            interval + interval * RANDOMIZE_WIDTH * (2.0 * rand01 - 1.0)
        } else {
            interval
        }
    }

    fn calc_next(&self, now: f64, rand01: f64) -> f64 {
        let naive = |n: u64| now + self.randomize(self.params.interval(n), rand01);
        if self.params.forever {
            return naive(self.steps);
        }
        match (self.secondary_at, self.secondary_steps) {
            (None, _) => naive(self.steps).min(self.timeout_at),
            (Some(at), None) => naive(self.steps).min(at),
            (Some(_), Some(s)) => naive(self.steps - s + 1).min(self.timeout_at),
        }
    }

    /// Records a failed retry made at `now` and schedules the next one. `rand01` is a uniform
    /// random number in [0, 1) (used only with `retry_randomize`).
    pub fn step(&mut self, now: f64, rand01: f64) {
        self.steps += 1;
        if !self.params.forever && self.secondary_steps.is_none() {
            if let Some(at) = self.secondary_at {
                if now >= at {
                    self.secondary_steps = Some(self.steps);
                }
            }
        }
        self.next_time = self.calc_next(now, rand01);
    }

    /// Recomputes the next retry time from `now` without counting a retry (a failure reported
    /// before the scheduled time, by another flush worker).
    pub fn recalc(&mut self, now: f64, rand01: f64) {
        self.next_time = self.calc_next(now, rand01);
    }

    /// True when retrying is over: the next retry would be at or past the timeout, or
    /// `retry_max_times` retries have failed. Never with `retry_forever`.
    pub fn limit(&self) -> bool {
        !self.params.forever
            && (self.next_time >= self.timeout_at
                || self.params.max_steps.is_some_and(|m| self.steps >= m))
    }
}

/// The retry times of a schedule whose every retry fails exactly when due, until the limit:
/// `(time, to_secondary)` pairs, the first being the first retry. At most `cap` entries.
pub fn schedule(params: &RetryParams, start: f64, cap: usize) -> Vec<(f64, bool)> {
    let mut s = RetryState::new(params.clone(), start);
    let mut out = Vec::new();
    if s.limit() {
        return out;
    }
    while out.len() < cap {
        let t = s.next_time();
        out.push((t, s.secondary(t)));
        s.step(t, 0.5);
        if s.limit() {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(exponential: bool, wait: f64, timeout: f64) -> RetryParams {
        RetryParams {
            exponential,
            wait,
            timeout,
            forever: false,
            max_steps: None,
            backoff_base: 2.0,
            max_interval: None,
            randomize: false,
            secondary: false,
            secondary_threshold: 0.8,
        }
    }

    fn times(params: &RetryParams) -> Vec<f64> {
        schedule(params, 0.0, 1000)
            .into_iter()
            .map(|(t, _)| t)
            .collect()
    }

    #[test]
    fn exponential_with_short_timeout() {
        // Fluentd: wait 1, timeout 12, max_interval 10: retries at 1, 2, 4, 8; the next would be
        // 16 > 12, so it is moved to 12 and the limit is reached.
        let mut q = p(true, 1.0, 12.0);
        q.max_interval = Some(10.0);
        let mut s = RetryState::new(q.clone(), 0.0);
        assert_eq!(s.next_time(), 1.0);
        for (now, next) in [(1.0, 2.0), (2.0, 4.0), (4.0, 8.0)] {
            s.step(now, 0.5);
            assert_eq!(s.next_time(), next);
            assert!(!s.limit());
        }
        s.step(8.0, 0.5);
        assert_eq!(s.next_time(), 12.0);
        assert!(s.limit());
        assert_eq!(times(&q), vec![1.0, 2.0, 4.0, 8.0]);
    }

    #[test]
    fn exponential_with_max_times_and_max_interval() {
        let mut q = p(true, 1.0, 120.0);
        q.max_interval = Some(10.0);
        q.max_steps = Some(6);
        // Intervals 1, 1, 2, 4, 8, 10 (capped), then the limit.
        assert_eq!(times(&q), vec![1.0, 2.0, 4.0, 8.0, 16.0, 26.0]);
        let mut s = RetryState::new(q, 0.0);
        for now in [1.0, 2.0, 4.0, 8.0, 16.0] {
            s.step(now, 0.5);
            assert!(!s.limit());
        }
        s.step(26.0, 0.5);
        assert_eq!(s.next_time(), 36.0);
        assert!(s.limit());
    }

    #[test]
    fn exponential_forever_and_capped() {
        let mut q = p(true, 0.1, 300.0);
        q.forever = true;
        let mut s = RetryState::new(q.clone(), 0.0);
        for i in 1..=20u32 {
            s.step(0.0, 0.5);
            assert!((s.next_time() - 0.1 * 2f64.powi(i as i32 - 1)).abs() < 1e-9);
            assert!(!s.limit());
        }
        q.max_interval = Some(100.0);
        let mut s = RetryState::new(q.clone(), 0.0);
        for _ in 0..10 {
            s.step(0.0, 0.5);
        }
        assert!((s.next_time() - 51.2).abs() < 1e-9);
        s.step(0.0, 0.5);
        assert_eq!(s.next_time(), 100.0);
        // Huge step counts stay finite.
        let mut huge = p(true, 1.0, 300.0);
        huge.forever = true;
        assert_eq!(huge.interval(1025), 2f64.powi(1023));
        assert!(huge.interval(5000).is_finite());
    }

    #[test]
    fn periodic_with_timeout() {
        let q = p(false, 3.0, 10.0);
        // 3, 6, 9, then 12 ≥ 10 → moved to 10 and limit.
        assert_eq!(times(&q), vec![3.0, 6.0, 9.0]);
    }

    #[test]
    fn periodic_with_secondary() {
        let mut q = p(false, 3.0, 100.0);
        q.secondary = true;
        let s = RetryState::new(q.clone(), 0.0);
        assert_eq!(s.secondary_transition_at(), Some(80.0));
        let sched = schedule(&q, 0.0, 1000);
        // Primary at 3, 6, ..., 78 (26 retries), then the switch at 80, then every 3 s until 98.
        let primary: Vec<f64> = sched.iter().filter(|(_, s)| !s).map(|(t, _)| *t).collect();
        let secondary: Vec<f64> = sched.iter().filter(|(_, s)| *s).map(|(t, _)| *t).collect();
        assert_eq!(
            primary,
            (1..=26).map(|i| 3.0 * f64::from(i)).collect::<Vec<_>>()
        );
        assert_eq!(secondary, vec![80.0, 83.0, 86.0, 89.0, 92.0, 95.0, 98.0]);

        q.max_steps = Some(5);
        assert_eq!(
            RetryState::new(q, 0.0).secondary_transition_at(),
            Some(3.0 * 5.0 * 0.8)
        );
    }

    #[test]
    fn exponential_with_secondary() {
        let mut q = p(true, 1.0, 100.0);
        q.secondary = true;
        let sched = schedule(&q, 0.0, 1000);
        // Fluentd: 1, 2, 4, 8, 16, 32, 64 on the primary, 80 switches, then 81, 83, 87, 95 and
        // the timeout.
        assert_eq!(
            sched,
            vec![
                (1.0, false),
                (2.0, false),
                (4.0, false),
                (8.0, false),
                (16.0, false),
                (32.0, false),
                (64.0, false),
                (80.0, true),
                (81.0, true),
                (83.0, true),
                (87.0, true),
                (95.0, true),
            ]
        );
        q.max_steps = Some(5);
        let s = RetryState::new(q.clone(), 0.0);
        assert_eq!(s.secondary_transition_at(), Some(31.0 * 0.8));
        q.secondary_threshold = 0.75;
        q.max_steps = None;
        assert_eq!(
            RetryState::new(q, 0.0).secondary_transition_at(),
            Some(75.0)
        );
    }

    #[test]
    fn randomization_stays_in_width() {
        let mut q = p(true, 1000.0, 1e9);
        q.randomize = true;
        for r in [0.0, 0.25, 0.5, 0.999] {
            let mut s = RetryState::new(q.clone(), 0.0);
            s.step(0.0, r);
            assert!(
                (875.0..=1125.0).contains(&s.next_time()),
                "{}",
                s.next_time()
            );
        }
    }

    #[test]
    fn recalc_does_not_count() {
        let q = p(true, 1.0, 100.0);
        let mut s = RetryState::new(q, 0.0);
        s.step(1.0, 0.5);
        s.recalc(1.5, 0.5);
        assert_eq!(s.steps(), 1);
        assert_eq!(s.next_time(), 2.5);
    }
}
