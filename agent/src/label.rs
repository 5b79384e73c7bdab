//! The label: a statistic of the timed runs that a shared or throttling
//! machine moves as little as possible, and the rule that says when it has
//! settled.
//!
//! Definition (also in `docs/agent-bench.md`, section "The label"):
//!
//! 1. Each run is timed on the *label clock* ([`LabelClock`]): the measuring
//!    thread's CPU time when the runtime computes on that thread alone (one
//!    inference thread), otherwise the wall clock.
//! 2. The timed runs are cut into consecutive *rounds* of at least
//!    [`SettlePolicy::round_runs`] runs and [`SettlePolicy::round_time`] of
//!    wall time (shortened so that twice `min_rounds` rounds fit under the
//!    time cap, [`SettlePolicy::fitted_to`]). Each round is summarised by the
//!    [`SettlePolicy::quantile`]-quantile of its runs (linear interpolation).
//! 3. The label is the median of the round statistics.
//! 4. The label has *settled* once there are at least
//!    [`SettlePolicy::min_rounds`] rounds, the label computed after each of
//!    the last [`SettlePolicy::window`] rounds lies within
//!    [`SettlePolicy::tolerance`] (relative) of the current one, and at least
//!    [`SettlePolicy::min_agreement`] of the rounds lie within
//!    [`SettlePolicy::band`] of it. The timing loop keeps adding rounds until
//!    the label settles or its time cap is reached.
//!
//! Why: another process that takes the core for a time slice slows the runs
//! it overlaps on the wall clock, not on the thread's CPU clock; whatever
//! still slows some runs (cache pollution, interrupts) raises the upper
//! runs of a round more than its low quantile; a disturbance that hits
//! whole rounds (a burst of work elsewhere) moves fewer than half the rounds
//! and not their median. A drift that never stops (throttling) never
//! settles, and the sample says so.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::stats::percentile;

/// The clock each run's label time is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelClock {
    /// CPU time of the measuring thread (one inference thread: the runtime
    /// computes on the calling thread only).
    ThreadCpu,
    /// Wall time (several inference threads: work on other threads is not
    /// on the calling thread's CPU clock).
    Wall,
}

impl LabelClock {
    /// The clock for a measurement with `threads` inference threads.
    pub fn for_threads(threads: usize) -> LabelClock {
        if threads <= 1 {
            LabelClock::ThreadCpu
        } else {
            LabelClock::Wall
        }
    }
}

/// Rounds and the settle rule (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SettlePolicy {
    /// A round has at least this many runs...
    pub round_runs: usize,
    /// ...and lasts at least this long (wall time).
    pub round_time: Duration,
    /// The per-round statistic: this quantile of the round's runs.
    pub quantile: f64,
    /// No label settles before this many rounds.
    pub min_rounds: usize,
    /// The label after each of this many last rounds must agree...
    pub window: usize,
    /// ...within this relative tolerance.
    pub tolerance: f64,
    /// A round agrees with the label when within this relative band...
    pub band: f64,
    /// ...and at least this fraction of the rounds must agree.
    pub min_agreement: f64,
}

impl Default for SettlePolicy {
    /// The settings measured in `docs/agent-bench.md` ("The label").
    fn default() -> Self {
        SettlePolicy {
            round_runs: 3,
            round_time: Duration::from_millis(100),
            quantile: 0.25,
            min_rounds: 5,
            window: 3,
            tolerance: 0.01,
            band: 0.05,
            min_agreement: 0.5,
        }
    }
}

impl SettlePolicy {
    /// Whether a round of `runs` runs lasting `elapsed` is complete.
    pub fn round_done(&self, runs: usize, elapsed: Duration) -> bool {
        runs >= self.round_runs.max(1) && elapsed >= self.round_time
    }

    /// This policy with rounds short enough that twice `min_rounds` of them
    /// fit in a timing capped at `max_time` (a short cap, as in quick
    /// checks, still leaves room to settle).
    pub fn fitted_to(&self, max_time: Duration) -> SettlePolicy {
        let room = max_time / u32::try_from(2 * self.min_rounds).unwrap_or(u32::MAX);
        SettlePolicy {
            round_time: self.round_time.min(room),
            ..*self
        }
    }

    /// Checks that the settings make sense.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.quantile) {
            return Err(format!("quantile {} is not in 0..=1", self.quantile));
        }
        if self.window == 0 || self.min_rounds == 0 {
            return Err("settle window and min rounds must be at least 1".into());
        }
        if !(self.tolerance >= 0.0 && self.band >= 0.0) {
            return Err("settle tolerance and band must be non-negative".into());
        }
        if !(0.0..=1.0).contains(&self.min_agreement) {
            return Err(format!(
                "min agreement {} is not in 0..=1",
                self.min_agreement
            ));
        }
        Ok(())
    }

    /// The statistic of one round's label times (ms); `None` when empty.
    pub fn round_statistic(&self, times_ms: &[f64]) -> Option<f64> {
        if times_ms.is_empty() {
            return None;
        }
        let mut sorted = times_ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(percentile(&sorted, self.quantile))
    }

    /// The label and whether it settled, from the round statistics so far.
    pub fn judge(&self, round_stats: &[f64]) -> Verdict {
        let label = median(round_stats);
        let n = round_stats.len();
        let first = n.saturating_sub(self.window).max(1);
        let drift = (first..=n)
            .map(|k| relative(median(&round_stats[..k]), label))
            .fold(0.0, f64::max);
        let agreeing = round_stats
            .iter()
            .filter(|&&s| relative(s, label) <= self.band)
            .count();
        let agreement = if n == 0 {
            0.0
        } else {
            agreeing as f64 / n as f64
        };
        Verdict {
            label_ms: label,
            drift,
            agreement,
            settled: n >= self.min_rounds
                && n >= self.window
                && drift <= self.tolerance
                && agreement >= self.min_agreement,
        }
    }
}

/// The label after some rounds, and whether it has settled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Median of the round statistics, ms (NaN without rounds).
    pub label_ms: f64,
    /// Largest relative distance of the label after each of the last
    /// `window` rounds from the current label.
    pub drift: f64,
    /// Fraction of the rounds within `band` of the label.
    pub agreement: f64,
    /// Whether the label settled.
    pub settled: bool,
}

/// One round of timed runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Round {
    /// Runs in the round (consecutive in `times_ms`).
    pub runs: usize,
    /// Its statistic on the label clock, ms.
    pub stat_ms: f64,
}

/// The label of a timing and how it was reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The clock the runs were summarised on.
    pub clock: LabelClock,
    /// The rules used.
    pub policy: SettlePolicy,
    /// The rounds, in order.
    pub rounds: Vec<Round>,
    /// The label and the settle verdict after the last round.
    pub verdict: Verdict,
}

impl Estimate {
    /// The label, ms.
    pub fn label_ms(&self) -> f64 {
        self.verdict.label_ms
    }

    /// Whether the label settled.
    pub fn settled(&self) -> bool {
        self.verdict.settled
    }
}

/// Median (NaN for an empty slice).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 0.5)
}

/// `|a - b| / b` (infinite when `b` is not positive).
fn relative(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        (a - b).abs() / b
    } else {
        f64::INFINITY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rounds of `n` runs of `base` ms where the runs picked by `slow`
    /// (round, run) take `factor` times as long.
    fn rounds(
        count: usize,
        n: usize,
        base: f64,
        factor: f64,
        slow: impl Fn(usize, usize) -> bool,
    ) -> Vec<Vec<f64>> {
        (0..count)
            .map(|r| {
                (0..n)
                    .map(|i| {
                        let jitter = 1.0 + 0.002 * ((r * 7 + i * 3) % 5) as f64;
                        base * jitter * if slow(r, i) { factor } else { 1.0 }
                    })
                    .collect()
            })
            .collect()
    }

    fn stats(policy: &SettlePolicy, rounds: &[Vec<f64>]) -> Vec<f64> {
        rounds
            .iter()
            .map(|r| policy.round_statistic(r).unwrap())
            .collect()
    }

    #[test]
    fn half_the_runs_slowed_twofold_gives_the_undisturbed_figure() {
        let policy = SettlePolicy::default();
        // Every other run of every round is twice as slow.
        let series = rounds(10, 8, 2.0, 2.0, |_, i| i % 2 == 1);
        let verdict = policy.judge(&stats(&policy, &series));
        assert!(verdict.settled, "{verdict:?}");
        assert!(
            (verdict.label_ms - 2.0).abs() / 2.0 < 0.01,
            "label {} ms, undisturbed 2 ms",
            verdict.label_ms
        );
        // The plain median of all runs is pulled halfway to the slow runs.
        let all: Vec<f64> = series.concat();
        let plain = crate::stats::Summary::of(&all).unwrap().median_ms;
        assert!(plain > 2.9, "plain median {plain}");
    }

    #[test]
    fn whole_rounds_slowed_below_half_do_not_move_the_label() {
        let policy = SettlePolicy::default();
        // Rounds 1, 4 and 7 of 10 are entirely twice as slow.
        let series = rounds(10, 6, 3.0, 2.0, |r, _| r % 3 == 1);
        let verdict = policy.judge(&stats(&policy, &series));
        assert!(verdict.settled, "{verdict:?}");
        assert!((verdict.label_ms - 3.0).abs() / 3.0 < 0.01, "{verdict:?}");
    }

    #[test]
    fn a_series_that_drifts_never_settles() {
        let policy = SettlePolicy::default();
        // Throttling: every round 3% slower than the one before.
        let drifting: Vec<f64> = (0..40).map(|r| 2.0 * 1.03f64.powi(r)).collect();
        for n in 1..=drifting.len() {
            assert!(!policy.judge(&drifting[..n]).settled, "settled after {n}");
        }
    }

    #[test]
    fn rounds_that_disagree_do_not_settle() {
        let policy = SettlePolicy::default();
        // Two levels around a third: the median is 2.5 after each of the
        // last rounds, but only 10 of 28 rounds are near it.
        let mut split: Vec<f64> = (0..18)
            .map(|r| if r % 2 == 0 { 2.0 } else { 3.0 })
            .collect();
        split.extend([2.5; 10]);
        let verdict = policy.judge(&split);
        assert!(verdict.drift <= policy.tolerance, "{verdict:?}");
        assert!(verdict.agreement < 0.5, "{verdict:?}");
        assert!(!verdict.settled, "{verdict:?}");
    }

    #[test]
    fn a_steady_series_settles_after_min_rounds() {
        let policy = SettlePolicy::default();
        let steady = [2.0, 2.01, 1.99, 2.0, 2.005, 2.0];
        assert!(!policy.judge(&steady[..4]).settled);
        assert!(policy.judge(&steady[..5]).settled);
    }

    #[test]
    fn round_statistic_is_the_quantile() {
        let policy = SettlePolicy::default();
        assert_eq!(
            policy.round_statistic(&[4.0, 1.0, 3.0, 2.0, 5.0]),
            Some(2.0)
        );
        assert_eq!(policy.round_statistic(&[]), None);
        assert!(policy.round_done(3, Duration::from_millis(100)));
        assert!(!policy.round_done(2, Duration::from_secs(1)));
        assert!(!policy.round_done(30, Duration::from_millis(99)));
        let short = policy.fitted_to(Duration::from_millis(500));
        assert_eq!(short.round_time, Duration::from_millis(50));
        assert_eq!(policy.fitted_to(Duration::from_secs(10)), policy);
    }

    #[test]
    fn bad_policies_are_refused() {
        let bad = SettlePolicy {
            quantile: 1.5,
            ..SettlePolicy::default()
        };
        assert!(bad.validate().unwrap_err().contains("quantile"));
        assert!(SettlePolicy::default().validate().is_ok());
    }
}
