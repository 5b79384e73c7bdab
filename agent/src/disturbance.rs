//! Whether the machine was disturbed while a model was timed.
//!
//! A board in a fleet is rarely idle, and a latency measured beside other
//! work can be wrong without looking wrong. Before and after each timing the
//! agent reads the load average and the kernel's CPU steal counter and times
//! a fixed compute loop (the *canary*); during the timing it compares the
//! measuring thread's CPU time with the wall time. What it finds is recorded
//! with the sample, and the kinds the label clock cannot correct make the
//! agent measure again (`crate::timing::time_with_retries`).

use std::fs;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cpu_clock::thread_cpu_time;
use crate::label::LabelClock;

/// More than this fraction of the timed wall time off the CPU: preempted.
pub const PREEMPTED_LIMIT: f64 = 0.05;
/// More than this fraction of all CPU time stolen by the hypervisor.
pub const STEAL_LIMIT: f64 = 0.02;
/// The canary's time changed by more than this (relative): the core's speed
/// changed (frequency, thermal limit, a busy SMT sibling).
pub const CANARY_LIMIT: f64 = 0.05;
/// Iterations of the canary loop (about 0.3-1 ms on a desktop core).
const CANARY_ITERATIONS: u64 = 200_000;
/// Canary repetitions; the fastest counts.
const CANARY_REPEATS: usize = 5;

/// What was disturbed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisturbanceKind {
    /// The measuring thread was off the CPU for more than
    /// [`PREEMPTED_LIMIT`] of the timed wall time.
    Preempted,
    /// The 1-minute load average exceeded the number of cores.
    Loaded,
    /// The hypervisor stole more than [`STEAL_LIMIT`] of the CPU time.
    CpuSteal,
    /// The canary's time changed by more than [`CANARY_LIMIT`].
    CanaryChanged,
}

impl DisturbanceKind {
    /// Whether a label read on `clock` is unaffected by this disturbance:
    /// time off the CPU is not on the thread's CPU clock; a changed core
    /// speed or stolen cycles are on every clock.
    pub fn corrected_by(self, clock: LabelClock) -> bool {
        matches!(
            (self, clock),
            (
                DisturbanceKind::Preempted | DisturbanceKind::Loaded,
                LabelClock::ThreadCpu
            )
        )
    }
}

/// Cumulative CPU tick counters of the whole machine (`/proc/stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuTicks {
    /// Ticks stolen by the hypervisor.
    pub steal: u64,
    /// All ticks (user, nice, system, idle, iowait, irq, softirq, steal).
    pub total: u64,
}

/// The machine's state at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// 1-, 5- and 15-minute load averages (`/proc/loadavg`).
    pub load: Option<[f64; 3]>,
    /// CPU tick counters.
    pub ticks: Option<CpuTicks>,
    /// The canary's fastest time, ms of the thread's CPU time.
    pub canary_ms: f64,
}

impl Probe {
    /// Reads the load, the tick counters and times the canary.
    pub fn take() -> Probe {
        Probe {
            load: fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|t| parse_loadavg(&t)),
            ticks: fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|t| parse_proc_stat(&t)),
            canary_ms: canary().as_secs_f64() * 1e3,
        }
    }
}

/// What was seen of the machine during one timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disturbance {
    /// Load averages before timing.
    pub load_before: Option<[f64; 3]>,
    /// Load averages after timing.
    pub load_after: Option<[f64; 3]>,
    /// Fraction of the machine's CPU time stolen during the timing.
    pub steal_fraction: Option<f64>,
    /// Fraction of the timed wall time the measuring thread was off the CPU
    /// (`1 - cpu / wall` over the timed runs; only with the thread clock).
    pub preempted_fraction: Option<f64>,
    /// The canary before timing, ms.
    pub canary_before_ms: f64,
    /// The canary after timing, ms.
    pub canary_after_ms: f64,
    /// The disturbances found (empty: an undisturbed timing).
    pub kinds: Vec<DisturbanceKind>,
}

impl Disturbance {
    /// Judges a timing from the probes around it and its total wall and
    /// thread CPU time (`cpu`: `None` when the label clock is the wall).
    pub fn between(
        before: &Probe,
        after: &Probe,
        cores: usize,
        wall: Duration,
        cpu: Option<Duration>,
    ) -> Disturbance {
        let steal_fraction = match (before.ticks, after.ticks) {
            (Some(b), Some(a)) if a.total > b.total => {
                Some(a.steal.saturating_sub(b.steal) as f64 / (a.total - b.total) as f64)
            }
            _ => None,
        };
        let preempted_fraction = cpu
            .filter(|_| !wall.is_zero())
            .map(|c| (1.0 - c.as_secs_f64() / wall.as_secs_f64()).max(0.0));
        let mut kinds = Vec::new();
        if preempted_fraction.is_some_and(|p| p > PREEMPTED_LIMIT) {
            kinds.push(DisturbanceKind::Preempted);
        }
        let busiest = [before.load, after.load]
            .into_iter()
            .flatten()
            .map(|l| l[0])
            .fold(0.0, f64::max);
        if busiest > cores as f64 {
            kinds.push(DisturbanceKind::Loaded);
        }
        if steal_fraction.is_some_and(|s| s > STEAL_LIMIT) {
            kinds.push(DisturbanceKind::CpuSteal);
        }
        if before.canary_ms > 0.0
            && ((after.canary_ms - before.canary_ms).abs() / before.canary_ms) > CANARY_LIMIT
        {
            kinds.push(DisturbanceKind::CanaryChanged);
        }
        Disturbance {
            load_before: before.load,
            load_after: after.load,
            steal_fraction,
            preempted_fraction,
            canary_before_ms: before.canary_ms,
            canary_after_ms: after.canary_ms,
            kinds,
        }
    }

    /// Whether every disturbance found leaves a label read on `clock` right.
    pub fn corrected_by(&self, clock: LabelClock) -> bool {
        self.kinds.iter().all(|k| k.corrected_by(clock))
    }

    /// A one-line description, e.g. `preempted 31%, load 3.1`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for kind in &self.kinds {
            parts.push(match kind {
                DisturbanceKind::Preempted => format!(
                    "preempted {:.0}% of the time",
                    self.preempted_fraction.unwrap_or(0.0) * 100.0
                ),
                DisturbanceKind::Loaded => format!(
                    "load average {:.2} / {:.2} (before / after)",
                    self.load_before.map_or(f64::NAN, |l| l[0]),
                    self.load_after.map_or(f64::NAN, |l| l[0])
                ),
                DisturbanceKind::CpuSteal => format!(
                    "{:.1}% CPU stolen",
                    self.steal_fraction.unwrap_or(0.0) * 100.0
                ),
                DisturbanceKind::CanaryChanged => format!(
                    "canary {:.3} -> {:.3} ms",
                    self.canary_before_ms, self.canary_after_ms
                ),
            });
        }
        parts.join(", ")
    }
}

/// Parses `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

/// Parses the aggregate `cpu` line of `/proc/stat`.
pub fn parse_proc_stat(text: &str) -> Option<CpuTicks> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    Some(CpuTicks {
        steal: *ticks.get(7)?,
        total: ticks.iter().sum(),
    })
}

/// The fastest of [`CANARY_REPEATS`] runs of a fixed integer and
/// floating-point loop, on the thread's CPU clock.
fn canary() -> Duration {
    (0..CANARY_REPEATS)
        .map(|_| {
            let start = thread_cpu_time();
            let mut x = 0x9E37_79B9_7F4A_7C15u64;
            let mut f = 1.0f64;
            for _ in 0..CANARY_ITERATIONS {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                f = f.mul_add(1.000_000_1, (x & 0xff) as f64 * 1e-9);
            }
            std::hint::black_box((x, f));
            thread_cpu_time().saturating_sub(start)
        })
        .min()
        .unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(load: f64, steal: u64, total: u64, canary_ms: f64) -> Probe {
        Probe {
            load: Some([load, load, load]),
            ticks: Some(CpuTicks { steal, total }),
            canary_ms,
        }
    }

    #[test]
    fn parses_proc_files() {
        assert_eq!(
            parse_loadavg("0.52 1.10 2.00 3/456 7890\n"),
            Some([0.52, 1.1, 2.0])
        );
        assert_eq!(parse_loadavg("garbage"), None);
        let stat = "cpu  100 5 50 800 10 1 2 30 0 0\ncpu0 50 2 25 400 5 0 1 15 0 0\n";
        assert_eq!(
            parse_proc_stat(stat),
            Some(CpuTicks {
                steal: 30,
                total: 998
            })
        );
        assert_eq!(parse_proc_stat("intr 1 2 3"), None);
    }

    #[test]
    fn a_quiet_timing_is_undisturbed() {
        let d = Disturbance::between(
            &probe(0.5, 0, 1000, 1.0),
            &probe(0.9, 1, 2000, 1.01),
            2,
            Duration::from_millis(1000),
            Some(Duration::from_millis(990)),
        );
        assert!(d.kinds.is_empty(), "{d:?}");
        assert!(d.corrected_by(LabelClock::Wall));
    }

    #[test]
    fn each_disturbance_is_named() {
        let d = Disturbance::between(
            &probe(3.5, 0, 1000, 1.0),
            &probe(3.0, 100, 2000, 1.2),
            2,
            Duration::from_millis(1500),
            Some(Duration::from_millis(1000)),
        );
        assert_eq!(
            d.kinds,
            vec![
                DisturbanceKind::Preempted,
                DisturbanceKind::Loaded,
                DisturbanceKind::CpuSteal,
                DisturbanceKind::CanaryChanged
            ]
        );
        assert!((d.preempted_fraction.unwrap() - 1.0 / 3.0).abs() < 1e-9);
        assert!((d.steal_fraction.unwrap() - 0.1).abs() < 1e-9);
        assert!(!d.corrected_by(LabelClock::ThreadCpu));
        let text = d.describe();
        assert!(
            text.contains("preempted 33%") && text.contains("stolen"),
            "{text}"
        );
    }

    #[test]
    fn only_time_off_the_cpu_is_corrected_and_only_by_the_thread_clock() {
        let d = Disturbance::between(
            &probe(3.5, 0, 1000, 1.0),
            &probe(3.0, 0, 2000, 1.0),
            2,
            Duration::from_millis(1500),
            Some(Duration::from_millis(1000)),
        );
        assert_eq!(
            d.kinds,
            vec![DisturbanceKind::Preempted, DisturbanceKind::Loaded]
        );
        assert!(d.corrected_by(LabelClock::ThreadCpu));
        assert!(!d.corrected_by(LabelClock::Wall));
    }

    #[test]
    fn the_canary_runs() {
        let p = Probe::take();
        assert!(p.canary_ms > 0.0, "{p:?}");
    }
}
