//! Latency-constrained NAS (paper Section 6.8, Table 8, and past it): which
//! architecture to deploy on a target under a latency budget, from the
//! few-shot predictor fitted on k measured samples.
//!
//! Two modes: the paper's rule over MetaD2A's 500 candidates
//! ([`rule`]: first 3 predicted within the budget, most accurate of them),
//! and the exhaustive risk-aware search ([`exhaustive`]: every architecture
//! of the space, the best whose conformal upper bound, [`bound`], is within
//! the budget); on FBNet also the evolutionary search over the whole 9^22
//! space ([`evolution`], latencies by [`arch_latency`]). Any [`LatencyModel`] can rank: the served pipeline, the
//! trivial FLOPs/params fit, or the true latencies (the oracle).

pub mod arch_latency;
pub mod bound;
pub mod candidate;
pub mod constraint;
pub mod evolution;
pub mod exhaustive;
pub mod latency;
pub mod objective;
pub mod probe;
pub mod resolution;
pub mod rule;

use std::fmt;
use std::str::FromStr;

pub use bound::BoundOptions;
pub use candidate::Candidate;
pub use constraint::Constraint;
pub use latency::{AtBlend, Blended, LatencyModel, TableLatency, TrivialFit};
pub use objective::Objective;

use crate::error::{PredictorError, Result};

/// Weight of the linear stack in the pipeline a NAS searches with (the
/// `nas` command's default `--blend`). Chosen with the bound's settings on
/// task ND's source devices (docs/experiments/nas.md): the search answers
/// near the budget, where the stack's lower spread matters more than the
/// GNN's ranking; the service's served blend is chosen per device
/// ([`crate::blend::BlendRule::SERVED`]).
pub const SEARCH_BLEND: f64 = 0.95;

/// Candidates listed in an exhaustive answer (the chosen one first).
pub const RANKED_LIMIT: usize = 10;

/// How the search walks the space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The paper's rule over MetaD2A's 500-candidate list (risk unused).
    Metad2a500,
    /// Every architecture, bounded at the constraint's risk.
    Exhaustive,
    /// Exhaustive, with part of the k measurements spent near the budget
    /// ([`probe`]); it measures, so it runs through [`probe::ProbeSearch`].
    Probed,
    /// FBNet's whole space by evolution ([`evolution::evolve`]), bounded at
    /// the constraint's risk; not a table search.
    Evolution,
}

impl Mode {
    /// Command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Metad2a500 => "metad2a500",
            Mode::Exhaustive => "exhaustive",
            Mode::Probed => "probed",
            Mode::Evolution => "evolution",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mode {
    type Err = PredictorError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "metad2a500" => Ok(Mode::Metad2a500),
            "exhaustive" => Ok(Mode::Exhaustive),
            "probed" => Ok(Mode::Probed),
            "evolution" => Ok(Mode::Evolution),
            _ => Err(PredictorError::input(
                "mode",
                "metad2a500, exhaustive, probed or evolution",
                format!("`{s}`"),
            )),
        }
    }
}

/// What a search is over: the objective of every row and the rule's
/// candidate list.
#[derive(Debug, Clone, Copy)]
pub struct Problem<'a> {
    /// Objective per architecture row (higher is better).
    pub objective: &'a [f64],
    /// Rows the paper's rule walks, in order (MetaD2A's list for NB201).
    pub candidates: &'a [usize],
}

/// A search's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchOutcome {
    /// The mode that produced it.
    pub mode: Mode,
    /// The architecture to deploy.
    pub chosen: Candidate,
    /// The chosen one and the runners-up, best first.
    pub ranked: Vec<Candidate>,
    /// Log-ms factor of the bound (`upper = predicted * exp(this)`).
    pub residual_quantile: f64,
}

/// Searches `problem` under `constraint` with `model`'s predictions and the
/// plain conformal bound ([`BoundOptions::PLAIN`], what the service uses at
/// its served blend); the `nas` command passes [`BoundOptions::default`].
pub fn search(
    model: &dyn LatencyModel,
    problem: &Problem<'_>,
    constraint: &Constraint,
    mode: Mode,
) -> Result<SearchOutcome> {
    search_with(model, problem, constraint, mode, &BoundOptions::PLAIN)
}

/// [`search`] with explicit bound settings (exhaustive mode only).
pub fn search_with(
    model: &dyn LatencyModel,
    problem: &Problem<'_>,
    constraint: &Constraint,
    mode: Mode,
    bound_options: &BoundOptions,
) -> Result<SearchOutcome> {
    let max_ms = constraint.max_ms();
    let (ranked, quantile, lowest) = match mode {
        Mode::Metad2a500 => {
            let predicted = model.predict(problem.candidates)?;
            let kept = rule::first_feasible(
                problem.candidates,
                &predicted,
                problem.objective,
                max_ms,
                rule::PAPER_KEEP,
            );
            (kept, 0.0, min(&predicted))
        }
        Mode::Exhaustive => {
            let rows: Vec<usize> = (0..problem.objective.len()).collect();
            let predicted = model.predict(&rows)?;
            let residuals = model.loo_log_residuals()?;
            let q = bound::conformal_quantile(&residuals, bound_options.level(constraint.risk()));
            let step = if bound_options.quantised {
                resolution::detect(&model.sample_ms())
            } else {
                None
            };
            let ranked = exhaustive::rank_feasible_at(
                &predicted,
                problem.objective,
                q,
                (max_ms, step),
                RANKED_LIMIT,
            );
            (ranked, q, bound::upper_ms(min(&predicted), q))
        }
        Mode::Evolution => {
            return Err(PredictorError::input(
                "mode",
                "metad2a500 or exhaustive for a table search",
                "evolution (it searches architectures off the table: nas::evolution::evolve)",
            ));
        }
        Mode::Probed => {
            return Err(PredictorError::input(
                "mode",
                "metad2a500 or exhaustive for a search without measurements",
                "probed (it measures: nas::probe::ProbeSearch)",
            ));
        }
    };
    let chosen = ranked
        .first()
        .copied()
        .ok_or_else(|| PredictorError::NoFeasibleArchitecture {
            max_ms,
            why: format!("the lowest {} is {lowest:.3} ms", bound_name(mode)),
        })?;
    Ok(SearchOutcome {
        mode,
        chosen,
        ranked,
        residual_quantile: quantile,
    })
}

fn bound_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Metad2a500 => "predicted latency of the candidate list",
        Mode::Exhaustive | Mode::Probed | Mode::Evolution => "upper latency bound",
    }
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

#[cfg(test)]
mod test_table;

#[cfg(test)]
mod tests {
    use super::test_table::table;
    use super::*;

    /// Fixed latencies with given residuals.
    struct Fixed {
        ms: Vec<f64>,
        residuals: Vec<f64>,
    }

    /// [`Fixed`] whose samples were whole (or fractional) ms.
    struct Reported {
        fixed: Fixed,
        samples: Vec<f64>,
    }

    impl LatencyModel for Reported {
        fn predict(&self, rows: &[usize]) -> Result<Vec<f64>> {
            self.fixed.predict(rows)
        }
        fn loo_log_residuals(&self) -> Result<Vec<f64>> {
            self.fixed.loo_log_residuals()
        }
        fn sample_ms(&self) -> Vec<f64> {
            self.samples.clone()
        }
    }

    impl LatencyModel for Fixed {
        fn predict(&self, rows: &[usize]) -> Result<Vec<f64>> {
            Ok(rows.iter().map(|&r| self.ms[r]).collect())
        }
        fn loo_log_residuals(&self) -> Result<Vec<f64>> {
            Ok(self.residuals.clone())
        }
    }

    #[test]
    fn exhaustive_on_true_latencies_is_the_oracle() {
        let (ms, acc) = table(500);
        let truth = Fixed {
            ms: ms.clone(),
            residuals: Vec::new(),
        };
        let problem = Problem {
            objective: &acc,
            candidates: &[],
        };
        for budget in [3.0, 7.5, 11.0, 15.0, 30.0] {
            let c = Constraint::new(budget, 0.1).unwrap();
            let got = search(&truth, &problem, &c, Mode::Exhaustive).unwrap();
            let oracle = (0..ms.len())
                .filter(|&r| ms[r] <= budget)
                .max_by(|&a, &b| acc[a].total_cmp(&acc[b]))
                .unwrap();
            assert_eq!(got.chosen.row, oracle, "budget {budget}");
            assert!(
                got.ranked
                    .windows(2)
                    .all(|w| w[0].objective >= w[1].objective)
            );
        }
        let none = search(
            &truth,
            &problem,
            &Constraint::new(1.0, 0.1).unwrap(),
            Mode::Exhaustive,
        );
        assert!(matches!(
            none,
            Err(PredictorError::NoFeasibleArchitecture { .. })
        ));
    }

    #[test]
    fn a_wider_residual_spread_buys_a_safer_answer() {
        let (ms, acc) = table(500);
        let problem = Problem {
            objective: &acc,
            candidates: &[],
        };
        let c = Constraint::new(12.0, 0.1).unwrap();
        let exact = Fixed {
            ms: ms.clone(),
            residuals: vec![0.0; 20],
        };
        let unsure = Fixed {
            ms,
            residuals: (0..20).map(|i| f64::from(i) / 40.0).collect(),
        };
        let a = search(&exact, &problem, &c, Mode::Exhaustive).unwrap();
        let b = search(&unsure, &problem, &c, Mode::Exhaustive).unwrap();
        assert!(b.residual_quantile > 0.0);
        assert!(b.chosen.upper_ms <= 12.0 && b.chosen.predicted_ms < a.chosen.predicted_ms);
    }

    /// A device whose samples are whole ms may use the room up to the next
    /// integer, only when the option is on and the samples show it.
    #[test]
    fn whole_ms_devices_answer_up_to_the_next_integer() {
        let ms = vec![13.0, 14.2, 14.8, 15.1];
        let acc = vec![70.0, 71.0, 72.0, 73.0];
        let problem = Problem {
            objective: &acc,
            candidates: &[],
        };
        let c = Constraint::new(14.0, 0.1).unwrap();
        let model = |samples: Vec<f64>| Reported {
            fixed: Fixed {
                ms: ms.clone(),
                residuals: vec![0.0; 20],
            },
            samples,
        };
        let on = BoundOptions {
            risk_factor: 1.0,
            quantised: true,
        };
        let off = BoundOptions {
            quantised: false,
            ..on
        };
        let whole = model(vec![9.0, 17.0, 33.0, 16.0]);
        let fractional = model(vec![9.0, 17.5, 33.0, 16.0]);
        let chosen = |m: &Reported, o: &BoundOptions| {
            search_with(m, &problem, &c, Mode::Exhaustive, o)
                .unwrap()
                .chosen
                .row
        };
        assert_eq!(chosen(&whole, &on), 2, "14.8 reports as at most 14");
        assert_eq!(chosen(&whole, &off), 0);
        assert_eq!(chosen(&fractional, &on), 0);
    }

    #[test]
    fn bad_constraints_are_typed_errors() {
        assert!(matches!(
            Constraint::new(0.0, 0.1),
            Err(PredictorError::BadConstraint { .. })
        ));
        assert!(matches!(
            Constraint::new(-3.0, 0.1),
            Err(PredictorError::BadConstraint { .. })
        ));
        assert!(matches!(
            Constraint::new(5.0, 1.0),
            Err(PredictorError::BadRisk { .. })
        ));
        assert!("banana".parse::<Mode>().is_err());
        assert_eq!("Exhaustive".parse::<Mode>().unwrap(), Mode::Exhaustive);
    }
}
