//! `nasflat-host nas --mode evolution`: FBNet's whole 9^22 space searched by
//! evolution with the open-space predictor (`nas::arch_latency`: the GNN
//! blended with the additive model, no source-latency regression since
//! sources have no latency off the table), beside the same predictor's
//! exhaustive search over the 5,000 measured architectures under the same
//! bound, so the proxy each reaches is compared on equal terms. The
//! objective is a stated proxy (FLOPs or params); an answer off the table
//! has no true latency: only its prediction and bound are known.

use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use nasflat_predictor::PredictorError;
use nasflat_predictor::dataset::SpaceData;
use nasflat_predictor::fewshot::Fitted;
use nasflat_predictor::nas::arch_latency::{ArchLatency, PipelineScorer};
use nasflat_predictor::nas::evolution::{self, EvolutionConfig};
use nasflat_predictor::nas::{Constraint, Mode, Objective, RANKED_LIMIT, exhaustive};
use nasflat_shared::{Arch, FbnetArch, SearchSpace};

/// Settings of `--mode evolution` (flattened into `nas`'s arguments).
#[derive(Args, Debug, Clone)]
pub(crate) struct EvolutionArgs {
    /// Evolution: distinct architectures scored per search (its budget).
    #[arg(long, default_value_t = EvolutionConfig::default().budget)]
    evaluations: usize,
    /// Evolution: population size.
    #[arg(long, default_value_t = EvolutionConfig::default().population)]
    population: usize,
    /// Evolution: members per tournament.
    #[arg(long, default_value_t = EvolutionConfig::default().tournament)]
    tournament: usize,
}

impl EvolutionArgs {
    /// The library's settings for one search seeded with `seed`.
    fn config(&self, seed: u64) -> EvolutionConfig {
        EvolutionConfig {
            population: self.population,
            tournament: self.tournament,
            budget: self.evaluations,
            seed,
            ..EvolutionConfig::default()
        }
    }
}

/// Rejects `--mode evolution` where it cannot run, before any training.
pub(crate) fn check(
    space: SearchSpace,
    objective: Objective,
    modes: &[Mode],
    args: &EvolutionArgs,
) -> Result<()> {
    if !modes.contains(&Mode::Evolution) {
        return Ok(());
    }
    if space != SearchSpace::Fbnet {
        bail!(
            "--mode evolution searches FBNet's open space; NB201 has 15,625 architectures, all in the table: use --mode exhaustive"
        );
    }
    if !matches!(objective, Objective::Flops | Objective::Params) {
        bail!(
            "--mode evolution needs an objective computable for any architecture (flops or params), not `{objective}`"
        );
    }
    args.config(0).validate()?;
    Ok(())
}

/// One answer of the open-space predictor.
pub(crate) struct OpenAnswer {
    /// `evolution`, or `exhaustive` over the table with the same predictor.
    pub(crate) mode: Mode,
    /// `nasflat-open@w`.
    pub(crate) predictor: String,
    /// Index of the budget in the plan's constraints.
    pub(crate) constraint: usize,
    /// The architecture, its prediction, bound and objective (none when
    /// nothing fits).
    pub(crate) chosen: Option<evolution::ArchCandidate>,
    /// Distinct architectures scored.
    pub(crate) evaluated: usize,
    /// Seconds of transfer + search.
    pub(crate) seconds: f64,
}

/// What one device of one trial searches with.
pub(crate) struct OpenSearch<'a> {
    pub(crate) data: &'a SpaceData,
    pub(crate) objective: Objective,
    pub(crate) constraints: &'a [Constraint],
    pub(crate) blends: &'a [f64],
    pub(crate) args: &'a EvolutionArgs,
    pub(crate) seed: u64,
    pub(crate) transfer_seconds: f64,
}

impl OpenSearch<'_> {
    /// Evolution and the table-exhaustive search at every blend and budget.
    pub(crate) fn answers(&self, fitted: &Fitted<'_>) -> Result<Vec<OpenAnswer>> {
        let mut out = Vec::new();
        for &w in self.blends {
            let started = Instant::now();
            let latency = ArchLatency::new(fitted, self.data, w)?;
            let scorer = PipelineScorer {
                latency: &latency,
                objective: self.objective,
            };
            let table = self.table_predictions(&latency)?;
            let setup = self.transfer_seconds + started.elapsed().as_secs_f64();
            for (i, c) in self.constraints.iter().enumerate() {
                let predictor = format!("nasflat-open@{w}");
                let started = Instant::now();
                let evolved =
                    match evolution::evolve(&scorer, c, &self.args.config(self.seed), RANKED_LIMIT)
                    {
                        Ok(o) => (Some(o.chosen), o.evaluated),
                        Err(PredictorError::NoFeasibleArchitecture { .. }) => {
                            (None, self.args.evaluations)
                        }
                        Err(e) => return Err(e.into()),
                    };
                out.push(OpenAnswer {
                    mode: Mode::Evolution,
                    predictor: predictor.clone(),
                    constraint: i,
                    chosen: evolved.0,
                    evaluated: evolved.1,
                    seconds: setup + started.elapsed().as_secs_f64(),
                });
                out.push(self.table_answer(&table, &latency, c, i, predictor)?);
            }
        }
        Ok(out)
    }

    /// The open-space predictor on every table row, and each row's objective.
    fn table_predictions(&self, latency: &ArchLatency<'_, '_>) -> Result<(Vec<f64>, Vec<f64>)> {
        let archs: Vec<Arch> = FbnetArch::table()
            .iter()
            .copied()
            .map(Arch::Fbnet)
            .collect();
        let ms = latency.predict_archs(&archs)?;
        let objective = self.objective.scores(self.data)?;
        Ok((ms, objective))
    }

    /// The same predictor and bound, exhaustive over the 5,000 table rows.
    fn table_answer(
        &self,
        (ms, objective): &(Vec<f64>, Vec<f64>),
        latency: &ArchLatency<'_, '_>,
        c: &Constraint,
        constraint: usize,
        predictor: String,
    ) -> Result<OpenAnswer> {
        let q = nasflat_predictor::nas::bound::conformal_quantile(
            latency.loo_log_residuals(),
            c.risk(),
        );
        let best = exhaustive::rank_feasible(ms, objective, q, c.max_ms(), 1);
        let chosen = match best.first() {
            Some(b) => Some(evolution::ArchCandidate {
                arch: FbnetArch::from_index(b.row)?,
                predicted_ms: b.predicted_ms,
                upper_ms: b.upper_ms,
                objective: b.objective,
            }),
            None => None,
        };
        Ok(OpenAnswer {
            mode: Mode::Exhaustive,
            predictor,
            constraint,
            chosen,
            evaluated: ms.len(),
            seconds: self.transfer_seconds,
        })
    }
}
