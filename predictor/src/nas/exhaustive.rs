//! The exhaustive, risk-aware search: every architecture scored, answer the
//! best objective whose *upper bound* (prediction times the conformal
//! residual factor, see [`super::bound`]) is within the budget.

use super::bound::upper_ms;
use super::candidate::Candidate;
use super::resolution;

/// The rows whose bound `predicted[r] * exp(quantile)` is <= `max_ms`,
/// ranked by objective (best first; ties: lower bound first), at most
/// `limit` of them. `predicted[r]` and `objective[r]` belong to row `r`.
pub fn rank_feasible(
    predicted: &[f64],
    objective: &[f64],
    quantile: f64,
    max_ms: f64,
    limit: usize,
) -> Vec<Candidate> {
    rank_feasible_at(predicted, objective, quantile, (max_ms, None), limit)
}

/// [`rank_feasible`] for a device that reports in steps of `budget.1` ms
/// (`None`: continuous): a bound is within `budget.0` as
/// [`resolution::within`] says.
pub fn rank_feasible_at(
    predicted: &[f64],
    objective: &[f64],
    quantile: f64,
    budget: (f64, Option<f64>),
    limit: usize,
) -> Vec<Candidate> {
    let (max_ms, step) = budget;
    let mut feasible: Vec<Candidate> = predicted
        .iter()
        .zip(objective)
        .enumerate()
        .map(|(row, (&ms, &objective))| Candidate {
            row,
            predicted_ms: ms,
            upper_ms: upper_ms(ms, quantile),
            objective,
        })
        .filter(|c| resolution::within(c.upper_ms, max_ms, step) && c.objective.is_finite())
        .collect();
    feasible.sort_by(|a, b| {
        b.objective
            .total_cmp(&a.objective)
            .then(a.upper_ms.total_cmp(&b.upper_ms))
    });
    feasible.truncate(limit);
    feasible
}
