//! The probed search: part of the device's k measurements is spent near the
//! budget instead of spread over the space. A transfer from spread samples
//! ranks the space well but leaves a residual spread of several percent, and
//! at a tight budget, where accuracy climbs steeply with latency, that
//! spread costs whole accuracy points (docs/experiments/nas.md). Measuring
//! the few architectures the search is unsure about settles them outright.
//!
//! Per round, every unmeasured architecture is scored by its expected
//! improvement over the best answer already held: the chance it meets the
//! budget (the share of the model's leave-one-out residuals that would keep
//! it within) times its objective gain. The best-scored are measured and
//! the model is refitted on all samples so far.
//!
//! A *verified* search ([`ProbePlan::verify`], the `nas` default) holds only
//! what it measured, keeps its last probe for the last fit's bounded answer
//! and answers with the most accurate measured architecture within the
//! budget: no risk is left in its answer. An unverified one answers the
//! better of that and the bounded exhaustive answer of the last fit.

use super::bound::{self, BoundOptions};
use super::candidate::Candidate;
use super::constraint::Constraint;
use super::latency::LatencyModel;
use super::{Mode, Problem, SearchOutcome, search_with};
use crate::error::{PredictorError, Result};
use crate::samples::{Sample, Samples};

/// How many of the k measurements a probed search spends near the budget,
/// and in how many rounds (each round ends with a refit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbePlan {
    /// Measurements spent near the budget (the rest of k is spread).
    pub probes: usize,
    /// Rounds the probes are split into (>= 1).
    pub rounds: usize,
    /// Keep the last probe to measure the bounded answer of the last fit
    /// when it beats every measured one, and answer only with measured
    /// architectures (the bound answers only when none is within).
    pub verify: bool,
}

impl ProbePlan {
    /// Checks the plan against the k measurements it draws from: at least
    /// 2 spread samples must remain for the first transfer.
    pub fn validate(&self, k: usize) -> Result<()> {
        if self.verify && self.probes == 0 {
            return Err(PredictorError::input(
                "probes",
                "at least 1 when the answer is verified",
                "0",
            ));
        }
        let most = self.searching().max(1);
        if self.rounds == 0 || self.rounds > most {
            return Err(PredictorError::input(
                "probe rounds",
                format!("1 ..= {most} (the probes that search)"),
                self.rounds.to_string(),
            ));
        }
        if self.probes + 2 > k {
            return Err(PredictorError::input(
                "probes",
                format!(
                    "at most {} of the {k} samples (2 stay spread)",
                    k.saturating_sub(2)
                ),
                self.probes.to_string(),
            ));
        }
        Ok(())
    }

    /// Probes chosen by expected improvement (all but the verifying one).
    fn searching(&self) -> usize {
        self.probes - usize::from(self.verify && self.probes > 0)
    }

    /// Probes measured in round `round` (the first rounds take the extra).
    fn in_round(&self, round: usize) -> usize {
        let n = self.searching();
        n / self.rounds + usize::from(round < n % self.rounds)
    }
}

/// A probed search's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeOutcome {
    /// The answer; a measured answer's `upper_ms` is its measured latency.
    pub outcome: SearchOutcome,
    /// Whether the answer was measured (not only bounded).
    pub measured: bool,
    /// The probes, in the order they were measured.
    pub probed: Vec<Sample>,
}

/// The device side of a probed search: measures architectures and refits
/// the latency model on a grown sample set.
pub trait ProbeDevice {
    /// The model a fit returns.
    type Model: LatencyModel;
    /// Measured latency (ms) of each row, in order.
    fn measure(&mut self, rows: &[usize]) -> Result<Vec<f64>>;
    /// The model fitted on `samples`.
    fn fit(&mut self, samples: &Samples) -> Result<Self::Model>;
}

/// One probed search: what is searched, under which budget and bound, and
/// how many measurements go near the budget.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSearch<'p> {
    /// The objective of every row.
    pub problem: &'p Problem<'p>,
    /// The budget and the user's risk.
    pub constraint: &'p Constraint,
    /// The bound of the exhaustive answer.
    pub options: &'p BoundOptions,
    /// Probes and rounds.
    pub plan: ProbePlan,
}

impl ProbeSearch<'_> {
    /// Runs the rounds from `model`, fitted on the `spread` samples, on
    /// `device`, and answers. The model is borrowed: one spread fit serves
    /// every budget.
    pub fn run<D: ProbeDevice>(
        &self,
        device: &mut D,
        model: &D::Model,
        spread: &Samples,
    ) -> Result<ProbeOutcome> {
        let rows = self.problem.objective.len();
        let mut state = State {
            samples: spread.clone(),
            scored: Scored::of(model, rows)?,
            probed: Vec::new(),
        };
        for round in 0..self.plan.rounds {
            let held = state.held(self)?;
            let picks = choose(&state, self, held, self.plan.in_round(round))?;
            if picks.is_empty() {
                break;
            }
            let ms = device.measure(&picks)?;
            state.add(&picks, &ms)?;
            state.scored = Scored::of(&device.fit(&state.samples)?, rows)?;
        }
        if self.plan.verify {
            state.verify(self, device)?;
        }
        state.answer(self)
    }
}

/// One round of probes without a device at hand: the `search.plan.probes`
/// architectures beyond `model`'s bounded answer most likely to improve on
/// it (expected improvement, as in [`ProbeSearch::run`]), for a caller that
/// queues them as measurements (the service's search). `measured`: what
/// the device has measured (the fit's samples and anything since): never
/// probed again, and the best of it within the budget is a bar a probe must
/// beat.
pub fn next_probes(
    model: &dyn LatencyModel,
    search: &ProbeSearch<'_>,
    measured: &Samples,
) -> Result<Vec<Candidate>> {
    let state = State {
        samples: measured.clone(),
        scored: Scored::of(model, search.problem.objective.len())?,
        probed: Vec::new(),
    };
    let held = state.held(search)?;
    let quantile = bound::conformal_quantile(
        &state.scored.residuals,
        search.options.level(search.constraint.risk()),
    );
    choose(&state, search, held, search.plan.probes)?
        .into_iter()
        .map(|row| {
            let predicted_ms = state.scored.predict(&[row])?[0];
            Ok(Candidate {
                row,
                predicted_ms,
                upper_ms: bound::upper_ms(predicted_ms, quantile),
                objective: search.problem.objective[row],
            })
        })
        .collect()
}

/// A fit's whole-space predictions and residuals, computed once: a round
/// reads them three times (what is held, the probes, the answer).
struct Scored {
    predicted: Vec<f64>,
    residuals: Vec<f64>,
    sample_ms: Vec<f64>,
}

impl Scored {
    fn of(model: &dyn LatencyModel, rows: usize) -> Result<Self> {
        let all: Vec<usize> = (0..rows).collect();
        Ok(Scored {
            predicted: model.predict(&all)?,
            residuals: model.loo_log_residuals()?,
            sample_ms: model.sample_ms(),
        })
    }
}

impl LatencyModel for Scored {
    fn predict(&self, rows: &[usize]) -> Result<Vec<f64>> {
        rows.iter()
            .map(|&r| {
                self.predicted.get(r).copied().ok_or_else(|| {
                    PredictorError::internal(
                        "probed search",
                        format!("row {r} of {} scored", self.predicted.len()),
                    )
                })
            })
            .collect()
    }

    fn loo_log_residuals(&self) -> Result<Vec<f64>> {
        Ok(self.residuals.clone())
    }

    fn sample_ms(&self) -> Vec<f64> {
        self.sample_ms.clone()
    }
}

/// The samples and the current fit after the rounds so far.
struct State {
    samples: Samples,
    /// The fit on every sample so far.
    scored: Scored,
    probed: Vec<Sample>,
}

impl State {
    /// The bounded answer of the current model (none when nothing is
    /// bounded within the budget).
    fn bounded(&self, search: &ProbeSearch<'_>) -> Result<Option<SearchOutcome>> {
        let ProbeSearch {
            problem,
            constraint,
            options,
            ..
        } = *search;
        match search_with(&self.scored, problem, constraint, Mode::Exhaustive, options) {
            Ok(o) => Ok(Some(o)),
            Err(PredictorError::NoFeasibleArchitecture { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The most accurate measured architecture within the budget.
    fn best_measured(&self, objective: &[f64], max_ms: f64) -> Option<Sample> {
        self.samples
            .iter()
            .filter(|s| s.ms <= max_ms && objective.get(s.row).is_some_and(|o| o.is_finite()))
            .max_by(|a, b| objective[a.row].total_cmp(&objective[b.row]))
            .copied()
    }

    /// The objective already held: the better of the measured and the
    /// bounded answer, or the measured one alone when the answer is
    /// verified (the lowest objective of the space when none).
    fn held(&self, search: &ProbeSearch<'_>) -> Result<f64> {
        let objective = search.problem.objective;
        let measured = self
            .best_measured(objective, search.constraint.max_ms())
            .map(|s| objective[s.row]);
        // A verified search answers with a measured architecture, so only
        // a measured one is held: the bounded answer is then a probe like
        // any other (worth measuring when it is likely within and better).
        let bounded = if search.plan.verify {
            None
        } else {
            self.bounded(search)?.map(|o| o.chosen.objective)
        };
        let floor = objective
            .iter()
            .copied()
            .filter(|o| o.is_finite())
            .fold(f64::INFINITY, f64::min);
        Ok([measured, bounded]
            .into_iter()
            .flatten()
            .fold(floor, f64::max))
    }

    fn add(&mut self, rows: &[usize], ms: &[f64]) -> Result<()> {
        if rows.len() != ms.len() {
            return Err(PredictorError::internal(
                "probe measurements",
                format!("{} rows measured as {} latencies", rows.len(), ms.len()),
            ));
        }
        let new: Vec<Sample> = rows
            .iter()
            .zip(ms)
            .map(|(&row, &ms)| Sample { row, ms })
            .collect();
        let mut all: Vec<Sample> = self.samples.iter().copied().collect();
        all.extend(&new);
        self.samples = Samples::new(all)?;
        self.probed.extend(new);
        Ok(())
    }

    /// Measures the bounded answer when it beats every measured one (no
    /// refit: the answer is read from the measurements).
    fn verify<D: ProbeDevice>(&mut self, search: &ProbeSearch<'_>, device: &mut D) -> Result<()> {
        let Some(bounded) = self.bounded(search)? else {
            return Ok(());
        };
        let objective = search.problem.objective;
        let best = self
            .best_measured(objective, search.constraint.max_ms())
            .map(|s| objective[s.row]);
        let row = bounded.chosen.row;
        if best.is_some_and(|b| b >= bounded.chosen.objective) || self.samples.rows().contains(&row)
        {
            return Ok(());
        }
        let ms = device.measure(&[row])?;
        self.add(&[row], &ms)
    }

    fn measured_candidate(&self, s: Sample, objective: &[f64]) -> Result<Candidate> {
        Ok(Candidate {
            row: s.row,
            predicted_ms: self.scored.predict(&[s.row])?[0],
            upper_ms: s.ms,
            objective: objective[s.row],
        })
    }

    /// The better of the measured and the bounded answer; a tie goes to the
    /// measured one, which carries no risk. A verified search answers with
    /// the measured one whenever there is one.
    fn answer(self, search: &ProbeSearch<'_>) -> Result<ProbeOutcome> {
        let max_ms = search.constraint.max_ms();
        let objective = search.problem.objective;
        let bounded = self.bounded(search)?;
        let measured = self
            .best_measured(objective, max_ms)
            .map(|s| self.measured_candidate(s, objective))
            .transpose()?;
        let (outcome, is_measured) = match (bounded, measured) {
            (Some(b), Some(m)) if !search.plan.verify && b.chosen.objective > m.objective => {
                (b, false)
            }
            (b, Some(m)) => (with_measured(b, m), true),
            (Some(b), None) => (b, false),
            (None, None) => {
                return Err(PredictorError::NoFeasibleArchitecture {
                    max_ms,
                    why: "no measured architecture is within it and no bound is".into(),
                });
            }
        };
        Ok(ProbeOutcome {
            outcome,
            measured: is_measured,
            probed: self.probed,
        })
    }
}

/// `bounded`'s ranking with the measured answer `m` put first.
fn with_measured(bounded: Option<SearchOutcome>, m: Candidate) -> SearchOutcome {
    let (mut ranked, quantile) = match bounded {
        Some(b) => (b.ranked, b.residual_quantile),
        None => (Vec::new(), 0.0),
    };
    ranked.retain(|c| c.row != m.row);
    ranked.insert(0, m);
    ranked.truncate(super::RANKED_LIMIT);
    SearchOutcome {
        mode: Mode::Exhaustive,
        chosen: m,
        ranked,
        residual_quantile: quantile,
    }
}

/// The `wanted` unmeasured rows of highest expected improvement over
/// `held`: P(within the budget) x (objective - held), P read from the
/// model's leave-one-out log residuals. Rows with no chance or no gain are
/// never probed.
fn choose(state: &State, search: &ProbeSearch<'_>, held: f64, wanted: usize) -> Result<Vec<usize>> {
    let objective = search.problem.objective;
    let predicted = &state.scored.predicted;
    let residuals = sorted_finite(state.scored.residuals.clone());
    let measured = state.samples.rows();
    let log_max = search.constraint.max_ms().ln();
    let mut scored: Vec<(f64, usize)> = (0..objective.len())
        .filter(|r| !measured.contains(r))
        .filter_map(|r| {
            let gain = objective[r] - held;
            let chance = within_share(&residuals, log_max - predicted[r].ln());
            let score = chance * gain;
            (gain > 0.0 && score > 0.0 && score.is_finite()).then_some((score, r))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    Ok(scored.into_iter().take(wanted).map(|(_, r)| r).collect())
}

fn sorted_finite(mut residuals: Vec<f64>) -> Vec<f64> {
    residuals.retain(|r| r.is_finite());
    residuals.sort_by(f64::total_cmp);
    residuals
}

/// Share of the sorted `residuals` at most `room` (log ms between the
/// budget and the prediction); an exact model (no residuals) is within
/// exactly when the prediction is. Smoothed by one pseudo-count either way
/// so no finite room is certain or hopeless.
fn within_share(residuals: &[f64], room: f64) -> f64 {
    if !room.is_finite() {
        return if room > 0.0 { 1.0 } else { 0.0 };
    }
    if residuals.is_empty() {
        return if room >= 0.0 { 1.0 } else { 0.0 };
    }
    let within = residuals.partition_point(|&r| r <= room);
    (within as f64 + 0.5) / (residuals.len() as f64 + 1.0)
}

#[cfg(test)]
mod tests {
    use super::super::test_table::table;
    use super::*;

    /// Predicts `bias` x the truth with a fixed residual spread; a refit
    /// learns nothing, so every gain comes from the probes themselves.
    #[derive(Clone)]
    struct Biased {
        ms: Vec<f64>,
        bias: f64,
        residuals: Vec<f64>,
    }

    impl LatencyModel for Biased {
        fn predict(&self, rows: &[usize]) -> Result<Vec<f64>> {
            Ok(rows.iter().map(|&r| self.ms[r] * self.bias).collect())
        }
        fn loo_log_residuals(&self) -> Result<Vec<f64>> {
            Ok(self.residuals.clone())
        }
    }

    /// The table measures; every fit returns the same model and counts.
    struct Table {
        model: Biased,
        measured: Vec<usize>,
        fits: usize,
    }

    impl Table {
        fn new(model: &Biased) -> Self {
            Table {
                model: model.clone(),
                measured: Vec::new(),
                fits: 0,
            }
        }
    }

    impl ProbeDevice for Table {
        type Model = Biased;
        fn measure(&mut self, rows: &[usize]) -> Result<Vec<f64>> {
            self.measured.extend(rows);
            Ok(rows.iter().map(|&r| self.model.ms[r]).collect())
        }
        fn fit(&mut self, _samples: &Samples) -> Result<Biased> {
            self.fits += 1;
            Ok(self.model.clone())
        }
    }

    fn setup(bias: f64) -> (Vec<f64>, Vec<f64>, Biased, Samples) {
        let (ms, acc) = table(500);
        let model = Biased {
            ms: ms.clone(),
            bias,
            // Centred on the model's own bias: its belief is right, only wide.
            residuals: (0..20)
                .map(|i| -bias.ln() - 0.15 + 0.015 * f64::from(i))
                .collect(),
        };
        // Measured but far from every budget of the tests.
        let spread = Samples::new(
            (0..ms.len())
                .filter(|&r| ms[r] < 4.0 || ms[r] > 20.0)
                .take(6)
                .map(|row| Sample { row, ms: ms[row] })
                .collect(),
        )
        .unwrap();
        (ms, acc, model, spread)
    }

    fn oracle(ms: &[f64], acc: &[f64], budget: f64) -> usize {
        (0..ms.len())
            .filter(|&r| ms[r] <= budget)
            .max_by(|&a, &b| acc[a].total_cmp(&acc[b]))
            .unwrap()
    }

    /// A pessimistic model's bound keeps the search well inside the budget;
    /// probing measures the architectures it was unsure of and answers a
    /// measured one that is better and still within the budget.
    #[test]
    fn probes_recover_what_a_pessimistic_bound_gives_away() {
        let (ms, acc, model, spread) = setup(1.15);
        let problem = Problem {
            objective: &acc,
            candidates: &[],
        };
        let options = BoundOptions::PLAIN;
        let mut gained = 0;
        for budget in [8.0, 10.0, 12.0, 14.0, 16.0] {
            let c = Constraint::new(budget, 0.1).unwrap();
            let plain = search_with(&model, &problem, &c, Mode::Exhaustive, &options).unwrap();
            let search = ProbeSearch {
                problem: &problem,
                constraint: &c,
                options: &options,
                plan: ProbePlan {
                    probes: 6,
                    rounds: 2,
                    verify: false,
                },
            };
            let mut device = Table::new(&model);
            let got = search.run(&mut device, &model, &spread).unwrap();
            assert_eq!(device.measured.len(), 6);
            assert_eq!(device.fits, 2, "one refit per round");
            assert_eq!(got.probed.len(), 6);
            let chosen = got.outcome.chosen;
            let best = oracle(&ms, &acc, budget);
            assert!(ms[chosen.row] <= budget);
            assert!(chosen.objective >= plain.chosen.objective);
            if got.measured {
                assert_eq!(chosen.upper_ms, ms[chosen.row]);
                assert!(got.probed.iter().any(|p| p.row == chosen.row));
            }
            if chosen.row == best && chosen.objective > plain.chosen.objective {
                gained += 1;
            }
        }
        assert!(
            gained >= 3,
            "probes found the oracle the bound missed at {gained} of 5 budgets"
        );
    }

    /// No probe is spent where nothing can be gained, and with no probes
    /// the answer is the plain bounded one.
    #[test]
    fn without_probes_the_answer_is_the_bounded_one() {
        let (_, acc, model, spread) = setup(1.0);
        let problem = Problem {
            objective: &acc,
            candidates: &[],
        };
        let options = BoundOptions::PLAIN;
        let c = Constraint::new(10.0, 0.1).unwrap();
        let plain = search_with(&model, &problem, &c, Mode::Exhaustive, &options).unwrap();
        let search = ProbeSearch {
            problem: &problem,
            constraint: &c,
            options: &options,
            plan: ProbePlan {
                probes: 0,
                rounds: 1,
                verify: false,
            },
        };
        let mut device = Table::new(&model);
        let got = search.run(&mut device, &model, &spread).unwrap();
        assert!(device.measured.is_empty());
        assert_eq!(got.outcome.chosen, plain.chosen);
        assert!(!got.measured);
    }

    /// An over-confident model (it predicts 15% fast and believes itself)
    /// answers over the budget; verifying the answer with the last probe
    /// turns every answer into a measured one within the budget.
    #[test]
    fn verifying_the_answer_keeps_an_overconfident_model_within_the_budget() {
        let (ms, acc, mut model, spread) = setup(0.85);
        model.residuals = (0..20).map(|i| -0.02 + 0.002 * f64::from(i)).collect();
        let problem = Problem {
            objective: &acc,
            candidates: &[],
        };
        let options = BoundOptions::PLAIN;
        let mut over = [0, 0];
        for (v, verify) in [false, true].into_iter().enumerate() {
            for budget in [8.0, 10.0, 12.0, 14.0, 16.0] {
                let c = Constraint::new(budget, 0.1).unwrap();
                let search = ProbeSearch {
                    problem: &problem,
                    constraint: &c,
                    options: &options,
                    plan: ProbePlan {
                        probes: 4,
                        rounds: 1,
                        verify,
                    },
                };
                let mut device = Table::new(&model);
                let got = search.run(&mut device, &model, &spread).unwrap();
                assert!(device.measured.len() <= 4);
                if ms[got.outcome.chosen.row] > budget {
                    over[v] += 1;
                }
                if verify {
                    assert!(got.measured, "budget {budget}");
                    // The bounded answer was measured (by a round or the
                    // verification) unless a measured one already beat it.
                    let plain = search_with(&model, &problem, &c, Mode::Exhaustive, &options)
                        .unwrap()
                        .chosen;
                    assert!(
                        device.measured.contains(&plain.row)
                            || got.outcome.chosen.objective >= plain.objective,
                        "budget {budget}"
                    );
                }
            }
        }
        assert!(
            over[0] >= 3,
            "unverified answers over the budget: {}",
            over[0]
        );
        assert_eq!(over[1], 0);
    }

    /// Every refit comes back over-confident (it predicts 20% fast), so the
    /// bounded answer drifts over the budget as the rounds go. A verified
    /// search holds only what it measured, so it measures the first fit's
    /// good bounded answer early and keeps it when the drifted one fails
    /// its verification.
    #[test]
    fn a_verified_search_keeps_the_answer_it_measured_when_refits_drift() {
        struct Drifting {
            exact: Biased,
            measured: Vec<usize>,
        }
        impl ProbeDevice for Drifting {
            type Model = Biased;
            fn measure(&mut self, rows: &[usize]) -> Result<Vec<f64>> {
                self.measured.extend(rows);
                Ok(rows.iter().map(|&r| self.exact.ms[r]).collect())
            }
            fn fit(&mut self, _samples: &Samples) -> Result<Biased> {
                Ok(Biased {
                    bias: 0.8,
                    ..self.exact.clone()
                })
            }
        }
        let (ms, acc, mut exact, spread) = setup(1.0);
        exact.residuals = (0..20).map(|i| -0.01 + 0.001 * f64::from(i)).collect();
        let problem = Problem {
            objective: &acc,
            candidates: &[],
        };
        let options = BoundOptions::PLAIN;
        for budget in [8.0, 10.0, 12.0, 14.0, 16.0] {
            let c = Constraint::new(budget, 0.1).unwrap();
            let first = search_with(&exact, &problem, &c, Mode::Exhaustive, &options)
                .unwrap()
                .chosen;
            let search = ProbeSearch {
                problem: &problem,
                constraint: &c,
                options: &options,
                plan: ProbePlan {
                    probes: 4,
                    rounds: 2,
                    verify: true,
                },
            };
            let mut device = Drifting {
                exact: exact.clone(),
                measured: Vec::new(),
            };
            let got = search.run(&mut device, &exact, &spread).unwrap();
            let chosen = got.outcome.chosen;
            assert!(ms[chosen.row] <= budget, "budget {budget}");
            assert!(chosen.objective >= first.objective, "budget {budget}");
            assert!(device.measured.contains(&first.row), "budget {budget}");
        }
    }

    #[test]
    fn plans_are_checked_against_k() {
        let plan = |probes, rounds| ProbePlan {
            probes,
            rounds,
            verify: false,
        };
        assert!(plan(8, 2).validate(20).is_ok());
        assert!(plan(0, 1).validate(20).is_ok());
        assert!(plan(19, 1).validate(20).is_err(), "2 must stay spread");
        assert!(plan(8, 0).validate(20).is_err());
        assert!(plan(2, 3).validate(20).is_err());
        assert_eq!((0..3).map(|r| plan(8, 3).in_round(r)).sum::<usize>(), 8);
        assert_eq!(plan(8, 3).in_round(0), 3);
        let verified = |probes, rounds| ProbePlan {
            probes,
            rounds,
            verify: true,
        };
        assert_eq!((0..2).map(|r| verified(8, 2).in_round(r)).sum::<usize>(), 7);
        assert!(verified(0, 1).validate(20).is_err());
        assert!(verified(1, 1).validate(20).is_ok());
        assert!(
            verified(2, 2).validate(20).is_err(),
            "1 searching probe, 2 rounds"
        );
    }

    #[test]
    fn the_chance_of_a_fit_reads_the_residuals() {
        let r = [-0.1, 0.0, 0.1];
        assert!(within_share(&r, -0.2) < within_share(&r, 0.05));
        assert!(within_share(&r, 0.5) < 1.0 && within_share(&r, -0.5) > 0.0);
        assert_eq!(within_share(&[], 0.0), 1.0);
        assert_eq!(within_share(&[], -0.01), 0.0);
    }
}
