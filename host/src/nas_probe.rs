//! `nasflat-host nas --mode probed`: the exhaustive search with part of the
//! k measurements spent near each budget (`nas::probe`). The table plays
//! the measuring board: a probe reads the device's true latency, as the
//! spread samples do, so the k measurements in all stay k.

use anyhow::{Result, bail};
use clap::Args;
use nasflat_predictor::dataset::SpaceData;
use nasflat_predictor::fewshot::{self, FewShot};
use nasflat_predictor::nas::probe::{ProbeDevice, ProbeOutcome, ProbePlan, ProbeSearch};
use nasflat_predictor::nas::{AtBlend, Mode, TrivialFit};
use nasflat_predictor::{PredictorError, Samples};

/// Settings of `--mode probed` (flattened into `nas`'s arguments).
#[derive(Args, Debug, Clone)]
pub(crate) struct ProbeArgs {
    /// Probed mode: how many of the --samples measurements go near each
    /// budget (the rest are spread). Default chosen on task ND's source
    /// devices (docs/experiments/nas.md).
    #[arg(long, default_value_t = DEFAULT_PLAN.probes)]
    probes: usize,
    /// Probed mode: rounds the probes are split into; each ends with a
    /// refit on every measurement so far.
    #[arg(long, default_value_t = DEFAULT_PLAN.rounds)]
    probe_rounds: usize,
    /// Probed mode: keep the last probe to measure the answer, and answer
    /// only with measured architectures (true or false).
    #[arg(long, default_value_t = DEFAULT_PLAN.verify, action = clap::ArgAction::Set)]
    probe_verify: bool,
}

/// The probe plan of `nas --mode probed`: 16 of k = 20 near the budget in
/// 4 rounds, the last probe verifying the answer. Chosen on task ND's
/// source devices only (leave one source out, 9 sources x 5 seeds x 3
/// budgets: the lowest mean regret among plans with at most 5 %
/// violations; docs/experiments/nas.md, "Probed search").
pub(crate) const DEFAULT_PLAN: ProbePlan = ProbePlan {
    probes: 16,
    rounds: 4,
    verify: true,
};

impl ProbeArgs {
    /// The plan, checked against k before any training.
    pub(crate) fn plan(&self, modes: &[Mode], k: usize) -> Result<ProbePlan> {
        let plan = ProbePlan {
            probes: self.probes,
            rounds: self.probe_rounds,
            verify: self.probe_verify,
        };
        if modes.contains(&Mode::Probed) {
            if plan.probes == 0 {
                bail!("--mode probed with --probes 0 is --mode exhaustive: give --probes >= 1");
            }
            plan.validate(k)?;
        }
        Ok(plan)
    }
}

/// The device's table as the measuring board.
#[derive(Clone, Copy)]
pub(crate) struct TableBoard<'a> {
    pub(crate) data: &'a SpaceData,
    pub(crate) device: &'a str,
}

impl TableBoard<'_> {
    fn measure(&self, rows: &[usize]) -> Result<Vec<f64>, PredictorError> {
        Ok(Samples::from_table(self.data, self.device, rows)?.latencies())
    }
}

/// The few-shot pipeline at one blend weight, refitted on the table board.
pub(crate) struct PipelineBoard<'p, 'a> {
    pub(crate) board: TableBoard<'a>,
    pub(crate) pipeline: &'p FewShot<'a>,
    pub(crate) opts: &'p fewshot::Options,
    pub(crate) blend: f64,
}

impl<'a> ProbeDevice for PipelineBoard<'_, 'a> {
    type Model = AtBlend<'a>;

    fn measure(&mut self, rows: &[usize]) -> Result<Vec<f64>, PredictorError> {
        self.board.measure(rows)
    }

    fn fit(&mut self, samples: &Samples) -> Result<AtBlend<'a>, PredictorError> {
        let fitted = self.pipeline.fit(self.board.device, samples, self.opts)?;
        Ok(AtBlend {
            fitted,
            blend: self.blend,
        })
    }
}

/// The trivial FLOPs/params fit under the same protocol.
pub(crate) struct TrivialBoard<'a> {
    pub(crate) board: TableBoard<'a>,
}

impl<'a> ProbeDevice for TrivialBoard<'a> {
    type Model = TrivialFit<'a>;

    fn measure(&mut self, rows: &[usize]) -> Result<Vec<f64>, PredictorError> {
        self.board.measure(rows)
    }

    fn fit(&mut self, samples: &Samples) -> Result<TrivialFit<'a>, PredictorError> {
        TrivialFit::fit(self.board.data, samples)
    }
}

/// A probed answer, or none when nothing measured or bounded meets the
/// budget.
pub(crate) fn answer<D: ProbeDevice>(
    search: &ProbeSearch<'_>,
    device: &mut D,
    model: &D::Model,
    spread: &Samples,
) -> Result<Option<ProbeOutcome>> {
    match search.run(device, model, spread) {
        Ok(o) => Ok(Some(o)),
        Err(PredictorError::NoFeasibleArchitecture { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
