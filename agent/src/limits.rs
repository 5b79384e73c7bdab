//! Bounds of a measurement, by count *and* time (like tract's own
//! `libcli/src/profile.rs` `BenchLimits`): a fast model gets many runs, a slow
//! one stops at a time cap instead of running for minutes.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::label::SettlePolicy;

/// How long and how often to warm up and to time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BenchLimits {
    /// Warm-up stops after this many runs...
    pub warmup_loops: usize,
    /// ...or after this long, whichever comes first.
    pub warmup_time: Duration,
    /// Timed runs continue until at least this many runs...
    pub min_runs: usize,
    /// ...and at least this much timed wall time were reached...
    pub min_time: Duration,
    /// ...unless this much timed wall time has passed (then the sample is
    /// flagged `min_runs_met = false` if it fell short).
    pub max_time: Duration,
    /// Hard cap on the number of timed runs.
    pub max_runs: usize,
    /// Sleep between timed runs, to let a passively cooled board shed heat.
    pub cooldown: Duration,
    /// Rounds, the per-round statistic and when the label has settled: the
    /// loop goes on past the minimums until it has (or `max_time`).
    pub settle: SettlePolicy,
    /// Timings of one model at most (>= 1): a timing whose label did not
    /// settle, or that was disturbed in a way its clock cannot correct, is
    /// repeated up to this count.
    pub attempts: usize,
}

impl Default for BenchLimits {
    /// Defaults that give a stable label for a 1-50 ms model in a few
    /// seconds: 5 warm-ups (<= 1 s), then >= 20 runs and >= 1 s, more rounds
    /// until the label settles, capped at 10 s; at most 3 timings.
    fn default() -> Self {
        BenchLimits {
            warmup_loops: 5,
            warmup_time: Duration::from_secs(1),
            min_runs: 20,
            min_time: Duration::from_secs(1),
            max_time: Duration::from_secs(10),
            max_runs: 100_000,
            cooldown: Duration::ZERO,
            settle: SettlePolicy::default(),
            attempts: 3,
        }
    }
}

impl BenchLimits {
    /// Whether the timed loop may stop after `runs` runs and `elapsed` time
    /// (a cap was hit or both minimums were met).
    pub fn done(&self, runs: usize, elapsed: Duration) -> bool {
        self.capped(runs, elapsed) || self.enough(runs, elapsed)
    }

    /// Whether the timed loop must stop: `max_runs` or `max_time` reached.
    pub fn capped(&self, runs: usize, elapsed: Duration) -> bool {
        runs >= self.max_runs || elapsed >= self.max_time
    }

    /// Whether both minimums (runs and time) were met.
    pub fn enough(&self, runs: usize, elapsed: Duration) -> bool {
        runs >= self.min_runs && elapsed >= self.min_time
    }

    /// Whether warm-up may stop.
    pub fn warm(&self, runs: usize, elapsed: Duration) -> bool {
        runs >= self.warmup_loops || elapsed >= self.warmup_time
    }

    /// Checks that the limits make sense together.
    pub fn validate(&self) -> Result<(), String> {
        if self.min_runs == 0 {
            return Err("min runs must be at least 1".into());
        }
        if self.max_runs < self.min_runs {
            return Err(format!(
                "max runs ({}) is below min runs ({})",
                self.max_runs, self.min_runs
            ));
        }
        if self.max_time < self.min_time {
            return Err(format!(
                "max time ({:?}) is below min time ({:?})",
                self.max_time, self.min_time
            ));
        }
        if self.attempts == 0 {
            return Err("attempts must be at least 1".into());
        }
        self.settle.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_both_count_and_time_unless_capped() {
        let l = BenchLimits::default();
        assert!(!l.done(20, Duration::from_millis(500)));
        assert!(!l.done(5, Duration::from_secs(2)));
        assert!(l.done(20, Duration::from_secs(1)));
        assert!(l.done(3, Duration::from_secs(10)));
        assert!(l.warm(5, Duration::ZERO));
        assert!(l.warm(1, Duration::from_secs(1)));
        assert!(!l.warm(1, Duration::from_millis(10)));
    }

    #[test]
    fn inconsistent_limits_are_rejected() {
        let l = BenchLimits {
            max_runs: 3,
            ..BenchLimits::default()
        };
        assert!(l.validate().unwrap_err().contains("max runs"));
        let l = BenchLimits {
            max_time: Duration::from_millis(1),
            ..BenchLimits::default()
        };
        assert!(l.validate().is_err());
    }
}
