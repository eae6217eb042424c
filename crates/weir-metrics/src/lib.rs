//! `weir-metrics` owns weir's metric primitives and their text form: [`Counter`], [`Gauge`] and
//! [`Histogram`] are plain atomics that the hot paths update without locks, and [`Encoder`]
//! writes them (and any other value read at scrape time) in the Prometheus text exposition
//! format, version 0.0.4.
//!
//! There is no registry: whoever serves `/metrics` walks the state it already has (listeners,
//! buffers, outputs) and writes each family once, so a metric costs nothing until it is read and
//! a plugin that goes away on a config reload simply stops being written.
//!
//! ```
//! use weir_metrics::{Counter, Encoder, Kind};
//! let acks = Counter::default();
//! acks.add(3);
//! let mut text = String::new();
//! let mut enc = Encoder::new(&mut text);
//! enc.family("weir_acks_sent_total", "Acks sent to forwarders.", Kind::Counter);
//! enc.sample("weir_acks_sent_total", &[("source", "in_forward")], acks.get() as f64);
//! assert!(text.contains("weir_acks_sent_total{source=\"in_forward\"} 3\n"));
//! ```

#![warn(missing_docs)]

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// A value that only grows (until the process restarts).
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Adds `n` (which may be negative).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Bucket upper bounds, in seconds, for latencies from a fast fsync (half a millisecond) to a
/// slow upload (a minute).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// A histogram of durations: a count per bucket, the sum and the count, each an atomic.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound, plus the `+Inf` bucket; not cumulative.
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new(LATENCY_BUCKETS)
    }
}

impl Histogram {
    /// A histogram with these bucket upper bounds in seconds (ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// A consistent-enough copy for rendering: cumulative counts per bound.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = Vec::with_capacity(self.bounds.len());
        let mut total = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            total += c.load(Ordering::Relaxed);
            if i < self.bounds.len() {
                cumulative.push(total);
            }
        }
        HistogramSnapshot {
            bounds: self.bounds,
            cumulative,
            count: total,
            sum: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }

    /// Adds another histogram's counts to a snapshot of this one (for summing the histograms
    /// of several buffers). The bounds must be the same.
    pub fn merge_into(&self, into: &mut HistogramSnapshot) {
        let s = self.snapshot();
        if s.bounds != into.bounds {
            return;
        }
        for (a, b) in into.cumulative.iter_mut().zip(&s.cumulative) {
            *a += b;
        }
        into.count += s.count;
        into.sum += s.sum;
    }
}

/// A histogram's values at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Bucket upper bounds in seconds.
    pub bounds: &'static [f64],
    /// Observations at or below each bound.
    pub cumulative: Vec<u64>,
    /// Every observation (the `+Inf` bucket).
    pub count: u64,
    /// The sum of the observations, in seconds.
    pub sum: f64,
}

impl HistogramSnapshot {
    /// An empty snapshot with these bounds.
    pub fn empty(bounds: &'static [f64]) -> Self {
        HistogramSnapshot {
            bounds,
            cumulative: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }
}

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets, sum and count.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Writes metric families in the Prometheus text format. Write a family's header with
/// [`Encoder::family`], then all of its samples, then the next family.
pub struct Encoder<'a> {
    out: &'a mut String,
}

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl<'a> Encoder<'a> {
    /// Writes into `out`.
    pub fn new(out: &'a mut String) -> Self {
        Encoder { out }
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        let _ = writeln!(
            self.out,
            "# HELP {name} {}\n# TYPE {name} {}",
            escape_help(help),
            kind.as_str()
        );
    }

    /// Writes one sample line.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        write_labels(self.out, labels, None);
        self.out.push(' ');
        write_value(self.out, value);
        self.out.push('\n');
    }

    /// Writes a histogram's `_bucket`, `_sum` and `_count` lines.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) {
        let mut le = String::new();
        for (bound, count) in h.bounds.iter().zip(&h.cumulative) {
            le.clear();
            write_value(&mut le, *bound);
            self.out.push_str(name);
            self.out.push_str("_bucket");
            write_labels(self.out, labels, Some(&le));
            let _ = writeln!(self.out, " {count}");
        }
        self.out.push_str(name);
        self.out.push_str("_bucket");
        write_labels(self.out, labels, Some("+Inf"));
        let _ = writeln!(self.out, " {}", h.count);
        self.out.push_str(name);
        self.out.push_str("_sum");
        write_labels(self.out, labels, None);
        self.out.push(' ');
        write_value(self.out, h.sum);
        self.out.push('\n');
        self.out.push_str(name);
        self.out.push_str("_count");
        write_labels(self.out, labels, None);
        let _ = writeln!(self.out, " {}", h.count);
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in labels.iter().copied().chain(le.map(|l| ("le", l))) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        escape_label_into(out, v);
        out.push('"');
    }
    out.push('}');
}

fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Escapes a label value: backslash, double quote and newline.
pub fn escape_label_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reverses [`escape_label_into`], as a Prometheus parser does.
    fn unescape(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some(o) => out.push(o),
                    None => out.push('\\'),
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn histogram_lines_are_cumulative_and_end_with_inf() {
        let h = Histogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(1));
        let mut text = String::new();
        let mut enc = Encoder::new(&mut text);
        enc.family("x_seconds", "X.", Kind::Histogram);
        enc.histogram("x_seconds", &[("plugin_id", "a")], &h.snapshot());
        assert_eq!(
            text,
            "# HELP x_seconds X.\n# TYPE x_seconds histogram\n\
             x_seconds_bucket{plugin_id=\"a\",le=\"0.001\"} 1\n\
             x_seconds_bucket{plugin_id=\"a\",le=\"0.01\"} 2\n\
             x_seconds_bucket{plugin_id=\"a\",le=\"+Inf\"} 3\n\
             x_seconds_sum{plugin_id=\"a\"} 1.0055\n\
             x_seconds_count{plugin_id=\"a\"} 3\n"
        );
    }

    #[test]
    fn values_and_labels_are_formatted_for_prometheus() {
        let mut text = String::new();
        let mut enc = Encoder::new(&mut text);
        enc.sample("a", &[], 3.0);
        enc.sample("b", &[("k", "x\"y\\z\nw")], 0.25);
        enc.sample("c", &[], f64::INFINITY);
        assert_eq!(text, "a 3\nb{k=\"x\\\"y\\\\z\\nw\"} 0.25\nc +Inf\n");
    }

    #[test]
    fn merging_adds_counts() {
        let a = Histogram::default();
        let b = Histogram::default();
        a.observe(Duration::from_millis(1));
        b.observe(Duration::from_millis(100));
        let mut s = a.snapshot();
        b.merge_into(&mut s);
        assert_eq!(s.count, 2);
        assert_eq!(s.cumulative.last().copied(), Some(2));
    }

    proptest! {
        #[test]
        fn label_escaping_round_trips(v in ".*") {
            let mut out = String::new();
            escape_label_into(&mut out, &v);
            prop_assert!(!out.contains('\n'));
            prop_assert_eq!(unescape(&out), v);
        }

        #[test]
        fn histogram_counts_every_observation(micros in proptest::collection::vec(0u64..100_000_000, 0..200)) {
            let h = Histogram::default();
            for m in &micros {
                h.observe(Duration::from_micros(*m));
            }
            let s = h.snapshot();
            prop_assert_eq!(s.count, micros.len() as u64);
            prop_assert!(s.cumulative.windows(2).all(|w| w[0] <= w[1]));
            prop_assert!(s.cumulative.last().copied().unwrap_or(0) <= s.count);
            for (bound, n) in s.bounds.iter().zip(&s.cumulative) {
                let expect = micros.iter().filter(|m| Duration::from_micros(**m).as_secs_f64() <= *bound).count() as u64;
                prop_assert_eq!(*n, expect);
            }
        }
    }
}
