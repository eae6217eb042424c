//! Keeps the filter thread out of ingest's way when the machine has no CPU to spare.
//!
//! The filter thread runs at idle priority, so in principle it only gets CPU time nobody else
//! wants. On a machine whose cores are all busy with ingest that is not quite free: the thread
//! runs in the short gaps while connections wait for the network, and every time ingest wakes
//! up it must first push the thread off its core, finding its caches full of the thread's
//! data. Measured on two cores at full load, four subscribers' filtering took about 6% of the
//! machine's CPU this way and cost ingest 10–15% of its throughput.
//!
//! So the thread watches how busy the machine is (`/proc/stat`, every [`WINDOW`]). While less
//! than [`BUSY_IDLE`] of the machine's CPU time is idle, it allows itself [`BUSY_SHARE`] of one
//! core per window and sleeps through the rest; requests that arrive meanwhile are skipped and
//! counted, as when the thread falls behind for any other reason. With CPU to spare, it is not
//! limited.

use std::time::{Duration, Instant};

/// How often the machine's load is read and the thread's budget renewed.
pub(crate) const WINDOW: Duration = Duration::from_millis(100);

/// Below this share of idle CPU time (over the last window) the machine counts as busy.
pub(crate) const BUSY_IDLE: f64 = 0.10;

/// The share of one core the filter thread may use per window while the machine is busy.
pub(crate) const BUSY_SHARE: f64 = 0.02;

/// CPU time counters of the whole machine: (idle, total), in clock ticks.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is counted in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((idle, total))
}

/// CPU time the calling thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which lives across the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// The filter thread's budget. Call [`Throttle::pace`] after each piece of work.
pub(crate) struct Throttle {
    window_start: Instant,
    cpu_at_start: Duration,
    ticks_at_start: Option<(u64, u64)>,
    busy: bool,
}

impl Throttle {
    pub(crate) fn new() -> Throttle {
        Throttle {
            window_start: Instant::now(),
            cpu_at_start: thread_cpu(),
            ticks_at_start: machine_ticks(),
            busy: false,
        }
    }

    fn renew(&mut self) {
        let ticks = machine_ticks();
        self.busy = match (self.ticks_at_start, ticks) {
            (Some((i0, t0)), Some((i1, t1))) if t1 > t0 => {
                ((i1.saturating_sub(i0)) as f64 / (t1 - t0) as f64) < BUSY_IDLE
            }
            _ => false,
        };
        self.ticks_at_start = ticks;
        self.window_start = Instant::now();
        self.cpu_at_start = thread_cpu();
    }

    /// Starts a new window when the current one is over; while the machine is busy and this
    /// window's share is used up, sleeps until the window ends.
    pub(crate) fn pace(&mut self) {
        let elapsed = self.window_start.elapsed();
        if elapsed >= WINDOW {
            self.renew();
            return;
        }
        if self.busy && thread_cpu().saturating_sub(self.cpu_at_start) > WINDOW.mul_f64(BUSY_SHARE)
        {
            std::thread::sleep(WINDOW - elapsed);
            self.renew();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_machine_and_thread_counters() {
        if cfg!(target_os = "linux") {
            let (idle, total) = machine_ticks().expect("/proc/stat");
            assert!(idle <= total && total > 0);
        }
        let before = thread_cpu();
        let mut x = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(thread_cpu() > before);
    }

    #[test]
    fn a_busy_machine_holds_the_thread_to_its_share() {
        let mut t = Throttle::new();
        t.busy = true;
        // Burn CPU past the share, then pace: the call sleeps out the window.
        let start = Instant::now();
        while thread_cpu().saturating_sub(t.cpu_at_start) <= WINDOW.mul_f64(BUSY_SHARE) {
            std::hint::black_box(start.elapsed());
        }
        let before = Instant::now();
        let window_end = t.window_start + WINDOW;
        t.pace();
        assert!(
            Instant::now() >= window_end,
            "pace returned before the window ended"
        );
        assert!(before.elapsed() <= WINDOW + Duration::from_millis(50));
    }

    #[test]
    fn an_idle_machine_does_not_hold_the_thread() {
        let mut t = Throttle::new();
        t.busy = false;
        let start = Instant::now();
        while thread_cpu().saturating_sub(t.cpu_at_start) <= WINDOW.mul_f64(BUSY_SHARE) * 2 {
            std::hint::black_box(start.elapsed());
        }
        let before = Instant::now();
        t.pace();
        assert!(before.elapsed() < Duration::from_millis(20));
    }
}
