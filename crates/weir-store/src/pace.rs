//! When a commit thread waits for one more request before it commits.
//!
//! Group commit writes and fdatasyncs whatever requests arrived while the previous commit ran.
//! Under a steady load from many connections that is often a single request: the commit
//! thread is woken by it, commits it alone, and sleeps again, and each of those commits costs
//! the same switches, interrupts and device round trips whatever it holds. On a machine whose
//! CPU is the limit, that fixed cost comes out of the time left for reading and parsing.
//!
//! So when requests have been arriving at least as often as commits complete, a commit thread
//! that holds a single request waits a little for a second one, at most two average gaps
//! between requests and never over [`MAX_WAIT`], and commits the two together. When requests
//! arrive less often than that (one connection sending a request after each ack, a few quiet
//! ones), nothing waits: the next request would come after the commit anyway.
//!
//! Both averages are moving averages of what the thread saw, so the rule follows the load.
//! Measured with 16 connections on two cores, this raised the durable path's throughput by
//! about 5% and lowered its ack p99; with 1 and 4 connections nothing changed
//! (docs/buffering.md, "Group commit").

use std::time::{Duration, Instant};

/// The longest a commit thread waits for a second request.
pub(crate) const MAX_WAIT: Duration = Duration::from_millis(1);

/// How much a new observation moves an average (1/16: about the last 16 count).
const WEIGHT: f64 = 1.0 / 16.0;

/// A gap between two requests longer than this counts as this long, so that an idle minute
/// does not make the next burst look slow for long.
const GAP_CAP: f64 = 0.010;

/// What one commit thread has seen of request arrivals and commit times.
#[derive(Debug, Default)]
pub(crate) struct Pace {
    /// The average time between two requests handed to the thread, in seconds.
    gap: Option<f64>,
    /// The average time a commit (write and fdatasync) took, in seconds.
    commit: Option<f64>,
    /// When the last request was handed over.
    last: Option<Instant>,
}

fn average(avg: &mut Option<f64>, sample: f64) {
    *avg = Some(match *avg {
        Some(a) => a + (sample - a) * WEIGHT,
        None => sample,
    });
}

impl Pace {
    /// Notes a request handed to the thread at `sent`. Requests from different connections
    /// may arrive slightly out of order; a negative gap counts as none.
    pub(crate) fn arrived(&mut self, sent: Instant) {
        if let Some(last) = self.last {
            let gap = sent.saturating_duration_since(last).as_secs_f64();
            average(&mut self.gap, gap.min(GAP_CAP));
        }
        if self.last.is_none_or(|last| sent > last) {
            self.last = Some(sent);
        }
    }

    /// Notes a commit (the writes and fdatasyncs of one batch) that took `took`.
    pub(crate) fn committed(&mut self, took: Duration) {
        average(&mut self.commit, took.as_secs_f64());
    }

    /// How long to wait for a second request before committing a batch that holds one, or
    /// `None` not to wait: requests must arrive at least as often as commits complete.
    pub(crate) fn wait(&self) -> Option<Duration> {
        let (gap, commit) = (self.gap?, self.commit?);
        if gap > commit {
            return None;
        }
        Some(Duration::from_secs_f64(2.0 * gap).min(MAX_WAIT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// A thread that saw requests every `gap` and commits of `commit`.
    fn seen(gap: Duration, commit: Duration) -> Pace {
        let mut p = Pace::default();
        let t0 = Instant::now();
        for i in 0..64 {
            p.arrived(t0 + gap * i);
            p.committed(commit);
        }
        p
    }

    #[test]
    fn nothing_waits_before_anything_was_seen() {
        assert_eq!(Pace::default().wait(), None);
        let mut p = Pace::default();
        p.arrived(Instant::now());
        assert_eq!(p.wait(), None, "one arrival gives no gap");
    }

    fn close_to(w: Option<Duration>, want: Duration) -> bool {
        w.is_some_and(|w| w.abs_diff(want) < us(1))
    }

    #[test]
    fn waits_two_gaps_when_requests_come_as_often_as_commits_complete() {
        let w = seen(us(100), us(400)).wait();
        assert!(close_to(w, us(200)), "{w:?}");
        let w = seen(us(120), us(125)).wait();
        assert!(close_to(w, us(240)), "{w:?}");
    }

    #[test]
    fn does_not_wait_when_the_next_request_comes_after_the_commit() {
        // One connection: the next request is sent after the ack, so after the commit.
        assert_eq!(seen(us(450), us(150)).wait(), None);
        // Requests a little less often than commits complete.
        assert_eq!(seen(us(260), us(250)).wait(), None);
    }

    #[test]
    fn the_wait_is_capped() {
        let w = seen(us(900), Duration::from_millis(20)).wait();
        assert_eq!(w, Some(MAX_WAIT));
    }

    #[test]
    fn an_idle_pause_counts_as_a_short_gap() {
        let mut p = seen(us(100), us(400));
        let later = Instant::now() + Duration::from_secs(60);
        p.arrived(later);
        // The pause counts as GAP_CAP: the average moved by (10 ms - 0.1 ms) / 16 only.
        let gap = p.gap.expect("gap");
        assert!(gap < 0.001, "{gap}");
        // Requests arriving fast again bring the wait back within a few dozen.
        for i in 1..=48 {
            p.arrived(later + us(100) * i);
        }
        assert!(p.wait().is_some());
    }

    #[test]
    fn out_of_order_arrivals_count_as_no_gap() {
        let mut p = Pace::default();
        let t0 = Instant::now();
        p.arrived(t0 + us(50));
        p.arrived(t0);
        assert_eq!(p.gap, Some(0.0));
        assert_eq!(p.last, Some(t0 + us(50)));
    }
}
