//! Evolutionary search over FBNet's whole space (9^22 architectures, any
//! the builder can make), not only the 5,000 measured ones: regularised
//! (aging) evolution (Real et al., AAAI 2019), generation-batched so the
//! GNN scores many children in one pass.
//!
//! Each generation draws `batch` parents, each the fittest of `tournament`
//! members sampled from the population; a child is its parent with one
//! layer's block replaced by another; the children join the population and
//! as many of the oldest members leave it. With `batch = 1` this is exactly
//! aging evolution. Fitness: a candidate whose conformal upper bound
//! ([`super::bound`]) is within the budget beats every one that is not;
//! among feasible ones the higher objective wins, among infeasible ones the
//! lower bound (the population is pulled towards the budget). The answer is
//! the best feasible candidate *ever scored*, not only the survivors.

use std::collections::HashMap;

use nasflat_shared::{FBNET_LAYERS, FbnetArch, FbnetBlock};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::bound::{conformal_quantile, upper_ms};
use super::constraint::Constraint;
use crate::error::{PredictorError, Result};

/// An FBNet architecture with its predicted latency, bound and objective.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArchCandidate {
    /// The architecture.
    pub arch: FbnetArch,
    /// Predicted latency (ms).
    pub predicted_ms: f64,
    /// Upper bound at the constraint's risk (ms).
    pub upper_ms: f64,
    /// Objective (the stated proxy).
    pub objective: f64,
}

/// What the evolution asks of a model: latency and objective of a batch.
pub trait ArchScorer {
    /// `(predicted ms, objective)` of each architecture, in order.
    fn score(&self, archs: &[FbnetArch]) -> Result<Vec<(f64, f64)>>;

    /// Out-of-sample log residuals the bound is a quantile of (empty: exact).
    fn loo_log_residuals(&self) -> Vec<f64>;
}

/// Settings of one evolutionary search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvolutionConfig {
    /// Population size (the first `population` candidates are random).
    pub population: usize,
    /// Members sampled per parent selection.
    pub tournament: usize,
    /// Children per generation (scored in one batch).
    pub batch: usize,
    /// Distinct architectures scored, the initial population included.
    pub budget: usize,
    /// Seed of every random draw.
    pub seed: u64,
}

impl Default for EvolutionConfig {
    fn default() -> Self {
        EvolutionConfig {
            population: 64,
            tournament: 16,
            batch: 32,
            budget: 3000,
            seed: 0,
        }
    }
}

impl EvolutionConfig {
    /// Rejects settings that cannot run.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &'static str, expected: &str, got: usize| {
            Err(PredictorError::input(what, expected, got.to_string()))
        };
        if self.population < 2 {
            return bad("evolution population", "at least 2", self.population);
        }
        if !(1..=self.population).contains(&self.tournament) {
            return bad("evolution tournament", "1..=population", self.tournament);
        }
        if self.batch == 0 {
            return bad("evolution batch", "at least 1", self.batch);
        }
        if self.budget < self.population {
            return bad(
                "evolution budget",
                "at least the population size",
                self.budget,
            );
        }
        Ok(())
    }
}

/// The evolution's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct EvolutionOutcome {
    /// The architecture to deploy: the best feasible one scored.
    pub chosen: ArchCandidate,
    /// The best feasible ones scored, best first (at most `ranked_limit`).
    pub ranked: Vec<ArchCandidate>,
    /// Distinct architectures scored.
    pub evaluated: usize,
    /// Log-ms factor of the bound.
    pub residual_quantile: f64,
}

/// Searches FBNet's whole space under `constraint`, returning at most
/// `ranked_limit` ranked answers.
pub fn evolve(
    scorer: &dyn ArchScorer,
    constraint: &Constraint,
    config: &EvolutionConfig,
    ranked_limit: usize,
) -> Result<EvolutionOutcome> {
    config.validate()?;
    let q = conformal_quantile(&scorer.loo_log_residuals(), constraint.risk());
    let mut run = Run {
        scorer,
        quantile: q,
        max_ms: constraint.max_ms(),
        rng: StdRng::seed_from_u64(config.seed),
        seen: HashMap::new(),
        scored: Vec::new(),
    };
    let initial: Vec<FbnetArch> = (0..config.population).map(|_| run.random_arch()).collect();
    let mut population = run.evaluate(&initial)?;
    // Children that were scored before cost nothing; the cap on generations
    // ends a search whose space is exhausted before its budget.
    let max_generations = 10 * config.budget.div_ceil(config.batch);
    let mut generation = 0;
    while run.scored.len() < config.budget && generation < max_generations {
        generation += 1;
        let room = config.budget - run.scored.len();
        let children: Vec<FbnetArch> = (0..config.batch.min(room))
            .map(|_| {
                let parent = run.tournament(&population, config.tournament);
                run.mutate(&parent.arch)
            })
            .collect();
        let scored = run.evaluate(&children)?;
        population.drain(..scored.len().min(population.len()));
        population.extend(scored);
    }
    run.outcome(ranked_limit)
}

/// One search's state.
struct Run<'s> {
    scorer: &'s dyn ArchScorer,
    quantile: f64,
    max_ms: f64,
    rng: StdRng,
    /// Position in `scored` of every architecture scored.
    seen: HashMap<FbnetArch, usize>,
    scored: Vec<ArchCandidate>,
}

impl Run<'_> {
    fn random_arch(&mut self) -> FbnetArch {
        let mut blocks = [FbnetBlock::Skip; FBNET_LAYERS];
        for b in &mut blocks {
            *b = FbnetBlock::ALL[self.rng.random_range(0..FbnetBlock::ALL.len())];
        }
        FbnetArch { blocks }
    }

    /// `arch` with one layer's block replaced by a different block.
    fn mutate(&mut self, arch: &FbnetArch) -> FbnetArch {
        let mut child = *arch;
        let layer = self.rng.random_range(0..FBNET_LAYERS);
        let shift = self.rng.random_range(1..FbnetBlock::ALL.len());
        let id = (usize::from(child.blocks[layer].id()) + shift) % FbnetBlock::ALL.len();
        child.blocks[layer] = FbnetBlock::ALL[id];
        child
    }

    /// The fittest of `size` members drawn uniformly (with replacement).
    fn tournament(&mut self, population: &[ArchCandidate], size: usize) -> ArchCandidate {
        let mut best = population[self.rng.random_range(0..population.len())];
        for _ in 1..size {
            let c = population[self.rng.random_range(0..population.len())];
            if self.fitter(&c, &best) {
                best = c;
            }
        }
        best
    }

    fn feasible(&self, c: &ArchCandidate) -> bool {
        c.upper_ms <= self.max_ms && c.objective.is_finite()
    }

    /// Whether `a` is strictly fitter than `b`.
    fn fitter(&self, a: &ArchCandidate, b: &ArchCandidate) -> bool {
        match (self.feasible(a), self.feasible(b)) {
            (true, false) => true,
            (false, true) => false,
            (true, true) => a.objective > b.objective,
            (false, false) => a.upper_ms < b.upper_ms,
        }
    }

    /// Scores the architectures not seen before in one batch; returns all
    /// of `archs` as candidates, in order.
    fn evaluate(&mut self, archs: &[FbnetArch]) -> Result<Vec<ArchCandidate>> {
        let mut fresh: Vec<FbnetArch> = Vec::new();
        for a in archs {
            if !self.seen.contains_key(a) && !fresh.contains(a) {
                fresh.push(*a);
            }
        }
        if !fresh.is_empty() {
            let scores = self.scorer.score(&fresh)?;
            if scores.len() != fresh.len() {
                return Err(PredictorError::internal(
                    "evolution scorer",
                    format!("{} scores for {} architectures", scores.len(), fresh.len()),
                ));
            }
            for (arch, (ms, objective)) in fresh.into_iter().zip(scores) {
                self.seen.insert(arch, self.scored.len());
                self.scored.push(ArchCandidate {
                    arch,
                    predicted_ms: ms,
                    upper_ms: upper_ms(ms, self.quantile),
                    objective,
                });
            }
        }
        Ok(archs
            .iter()
            .filter_map(|a| self.seen.get(a).map(|&i| self.scored[i]))
            .collect())
    }

    fn outcome(self, ranked_limit: usize) -> Result<EvolutionOutcome> {
        let mut feasible: Vec<ArchCandidate> = self
            .scored
            .iter()
            .filter(|c| self.feasible(c))
            .copied()
            .collect();
        feasible.sort_by(|a, b| {
            b.objective
                .total_cmp(&a.objective)
                .then(a.upper_ms.total_cmp(&b.upper_ms))
                .then(a.arch.cmp(&b.arch))
        });
        feasible.truncate(ranked_limit.max(1));
        let lowest = self
            .scored
            .iter()
            .map(|c| c.upper_ms)
            .fold(f64::INFINITY, f64::min);
        let chosen = feasible
            .first()
            .copied()
            .ok_or_else(|| PredictorError::NoFeasibleArchitecture {
                max_ms: self.max_ms,
                why: format!(
                    "the lowest upper latency bound among {} architectures evolved is {lowest:.3} ms",
                    self.scored.len()
                ),
            })?;
        Ok(EvolutionOutcome {
            chosen,
            ranked: feasible,
            evaluated: self.scored.len(),
            residual_quantile: self.quantile,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Latency = how many layers are `skip` (ms); objective = the sum of
    /// block ids. Under a budget of 3 ms the optimum is three skips (id 8)
    /// and 19 `k5_e6` (id 7): 3 * 8 + 19 * 7 = 157.
    struct Synthetic;

    impl ArchScorer for Synthetic {
        fn score(&self, archs: &[FbnetArch]) -> Result<Vec<(f64, f64)>> {
            Ok(archs
                .iter()
                .map(|a| {
                    let skips = a.blocks.iter().filter(|&&b| b == FbnetBlock::Skip).count();
                    let sum: u32 = a.ids().iter().map(|&i| u32::from(i)).sum();
                    (skips as f64, f64::from(sum))
                })
                .collect())
        }

        fn loo_log_residuals(&self) -> Vec<f64> {
            Vec::new()
        }
    }

    /// Objective = layers equal to a hidden target; latency free.
    struct Target(FbnetArch);

    impl ArchScorer for Target {
        fn score(&self, archs: &[FbnetArch]) -> Result<Vec<(f64, f64)>> {
            Ok(archs
                .iter()
                .map(|a| {
                    let hits = a.blocks.iter().zip(&self.0.blocks).filter(|(x, y)| x == y);
                    (1.0, hits.count() as f64)
                })
                .collect())
        }

        fn loo_log_residuals(&self) -> Vec<f64> {
            Vec::new()
        }
    }

    fn config(seed: u64) -> EvolutionConfig {
        EvolutionConfig {
            seed,
            budget: 10_000,
            ..EvolutionConfig::default()
        }
    }

    #[test]
    fn finds_the_known_constrained_optimum() {
        let c = Constraint::new(3.0, 0.1).unwrap();
        for seed in 0..5 {
            let out = evolve(&Synthetic, &c, &config(seed), 10).unwrap();
            assert_eq!(
                out.chosen.objective, 157.0,
                "seed {seed}: {}",
                out.chosen.arch
            );
            assert!(out.chosen.upper_ms <= 3.0);
            assert!(out.evaluated <= 10_000);
            assert!(out.ranked.iter().all(|r| r.upper_ms <= 3.0));
            assert!(
                out.ranked
                    .windows(2)
                    .all(|w| w[0].objective >= w[1].objective)
            );
        }
    }

    #[test]
    fn finds_a_hidden_target_architecture() {
        let target: FbnetArch = "7_8_1_8_4_8_8_8_7_4_1_4_7_3_2_7_3_2_4_2_4_5"
            .parse()
            .unwrap();
        let c = Constraint::new(2.0, 0.1).unwrap();
        let out = evolve(&Target(target), &c, &config(5), 10).unwrap();
        assert_eq!(out.chosen.arch, target);
    }

    #[test]
    fn answers_are_valid_architectures_and_deterministic_per_seed() {
        let c = Constraint::new(5.0, 0.1).unwrap();
        let a = evolve(&Synthetic, &c, &config(11), 10).unwrap();
        let b = evolve(&Synthetic, &c, &config(11), 10).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.ranked.len(), 10);
        for r in &a.ranked {
            let parsed: FbnetArch = r.arch.key().parse().unwrap();
            assert_eq!(parsed, r.arch);
            assert_eq!(FbnetArch::from_ids(&r.arch.ids()).unwrap(), r.arch);
        }
    }

    #[test]
    fn an_unmeetable_budget_and_bad_settings_are_errors() {
        let c = Constraint::new(2.0, 0.1).unwrap();
        struct Slow;
        impl ArchScorer for Slow {
            fn score(&self, archs: &[FbnetArch]) -> Result<Vec<(f64, f64)>> {
                Ok(archs.iter().map(|_| (10.0, 1.0)).collect())
            }
            fn loo_log_residuals(&self) -> Vec<f64> {
                Vec::new()
            }
        }
        let small = EvolutionConfig {
            budget: 200,
            ..config(0)
        };
        assert!(matches!(
            evolve(&Slow, &c, &small, 10),
            Err(PredictorError::NoFeasibleArchitecture { .. })
        ));
        for bad in [
            EvolutionConfig {
                population: 1,
                ..small
            },
            EvolutionConfig {
                tournament: 0,
                ..small
            },
            EvolutionConfig {
                tournament: 65,
                ..small
            },
            EvolutionConfig { batch: 0, ..small },
            EvolutionConfig {
                budget: 10,
                ..small
            },
        ] {
            assert!(matches!(
                evolve(&Synthetic, &c, &bad, 10),
                Err(PredictorError::InvalidInput { .. })
            ));
        }
    }
}
