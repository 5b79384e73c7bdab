//! `nasflat-host nas`: latency-constrained NAS on a table device (paper
//! Section 6.8, Table 8, and the exhaustive risk-aware mode). Per trial:
//! pretrain on the task's sources, sample k target architectures, fit the
//! few-shot pipeline, search under every budget; the answer's *true* latency
//! and accuracy are read from the tables. The trivial FLOPs/params fit, the
//! rule on true latencies and the full-space oracle run on the same samples.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use nasflat_predictor::baselines::{SourceMatrix, StackRules};
use nasflat_predictor::blend::BlendRule;
use nasflat_predictor::correlation::mean_std;
use nasflat_predictor::dataset::{SpaceData, sample_rows};
use nasflat_predictor::fewshot::{self, FewShot};
use nasflat_predictor::model::{
    Predictor, PredictorConfig, Recipe, TrainConfig, load_checkpoint, save_checkpoint,
};
use nasflat_predictor::nas::{
    self, Blended, BoundOptions, Constraint, LatencyModel, Mode, Objective, Problem, TableLatency,
    TrivialFit, bound,
};
use nasflat_predictor::train::{self, TransferOptions};
use nasflat_predictor::{PredictorError, Samples};
use nasflat_shared::data::{self, Task, TaskSet, paper_tasks};
use nasflat_shared::{Arch, SearchSpace};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use crate::nas_evolution::{self, EvolutionArgs, OpenSearch};
use crate::nas_probe::{self, PipelineBoard, ProbeArgs, TableBoard, TrivialBoard};
use nasflat_predictor::nas::probe::{ProbeOutcome, ProbePlan, ProbeSearch};

/// Arguments of `nas`.
#[derive(Args)]
pub(crate) struct NasArgs {
    /// Search space: nb201 or fbnet.
    #[arg(long, default_value = "nb201")]
    space: SearchSpace,
    /// Task whose source devices pretrain the predictor (e.g. ND).
    #[arg(long)]
    task: String,
    /// Task file in tasks.json format (default: the paper's 12 tasks).
    #[arg(long)]
    tasks_file: Option<PathBuf>,
    /// Target device(s), comma-separated; each must be a test device of the task.
    #[arg(long, value_delimiter = ',', required = true)]
    device: Vec<String>,
    /// Latency budgets C (ms), comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    latency_ms: Vec<f64>,
    /// Objective: cifar10, cifar100 or imagenet16_120 (NB201 accuracy);
    /// flops, params or synflow (FBNet: stated proxies, no accuracy exists).
    #[arg(long, alias = "objective", default_value = "cifar100")]
    dataset: Objective,
    /// metad2a500 (the paper's rule), exhaustive, probed (exhaustive with
    /// --probes of the --samples measured near each budget) and/or
    /// evolution (FBNet), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "metad2a500")]
    mode: Vec<Mode>,
    /// Accepted chance of exceeding the budget (exhaustive mode).
    #[arg(long, default_value_t = 0.1)]
    risk: f64,
    /// The exhaustive bound's conformal quantile is taken at level
    /// risk x this factor (>= 1; capped at 0.5). Default chosen on task ND's
    /// source devices (docs/experiments/nas.md).
    #[arg(long, default_value_t = bound::DEFAULT_RISK_FACTOR)]
    risk_factor: f64,
    /// Treat a device whose k samples are all whole ms as reporting whole ms
    /// (its budget then holds up to the next integer): true or false.
    #[arg(long, default_value_t = bound::DEFAULT_QUANTISED, action = clap::ArgAction::Set)]
    quantised: bool,
    /// Target samples k.
    #[arg(long, default_value_t = 20)]
    samples: usize,
    /// Trials; trial t uses seed + t.
    #[arg(long, default_value_t = 10)]
    trials: usize,
    /// Base seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Weight(s) of the linear stack in the pipeline, comma-separated; 0 =
    /// the paper's GNN alone (Table 8's predictor). Default: the NAS blend
    /// chosen on ND's sources (the service serves 0.85).
    #[arg(long, value_delimiter = ',', default_values_t = [nas::SEARCH_BLEND])]
    blend: Vec<f64>,
    /// Pretraining epochs (default: the recipe's for the space).
    #[arg(long)]
    epochs: Option<usize>,
    /// Training recipe: `served` or `paper` (docs/experiments/paper_recipe.md).
    #[arg(long, default_value = "served")]
    recipe: Recipe,
    /// Write every run as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    evolution: EvolutionArgs,
    #[command(flatten)]
    probe: ProbeArgs,
    /// Write, per (trial, device), the fitted pipeline's predictions of
    /// every architecture (GNN alone and linear stack) and their
    /// leave-one-out log predictions on the k samples into this folder, for
    /// offline study of bounds (docs/experiments/nas.md).
    #[arg(long)]
    dump_dir: Option<PathBuf>,
    /// Keep each trial's pretrained predictor here (one checkpoint per task,
    /// source list, seed and epochs) and reuse it: runs of several devices
    /// under the same seeds then pretrain once. Off by default.
    #[arg(long)]
    pretrained_cache: Option<PathBuf>,
}

/// One answer of one predictor, the JSON `runs[]` entry.
#[derive(Debug, Clone, Serialize)]
struct NasRun {
    space: String,
    task: String,
    device: String,
    constraint_ms: f64,
    mode: String,
    /// `nasflat@w`, `trivial`, `true-latency` (the rule on true latencies)
    /// or `oracle`.
    predictor: String,
    trial: usize,
    seed: u64,
    /// Empty when the predictor found nothing within the budget.
    arch: String,
    arch_index: Option<usize>,
    predicted_ms: Option<f64>,
    upper_ms: Option<f64>,
    true_ms: Option<f64>,
    /// Objective value (accuracy % for NB201, the proxy for FBNet).
    accuracy: Option<f64>,
    violated: bool,
    oracle_accuracy: f64,
    /// Seconds of transfer + search for this answer (with `probed`, the
    /// spread transfer, every refit and the searches).
    seconds: f64,
    /// Of the k samples, how many were measured near this budget
    /// (`--mode probed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    probes: Option<usize>,
    /// Whether the answer was one of the measured architectures (`--mode
    /// probed`); otherwise it rests on the bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    measured: Option<bool>,
    /// Distinct architectures the evolution scored (`--mode evolution`).
    #[serde(skip_serializing_if = "Option::is_none")]
    evaluations: Option<usize>,
}

/// Everything fixed before the first trial.
struct Plan {
    args: NasArgs,
    data: SpaceData,
    task: Task,
    sources: SourceMatrix,
    constraints: Vec<Constraint>,
    objective: Vec<f64>,
    metad2a: Vec<usize>,
    probe_plan: ProbePlan,
    /// Oracle accuracy per (device, constraint index).
    oracle: BTreeMap<(String, usize), f64>,
}

/// Runs `nas`.
pub(crate) fn run(args: NasArgs) -> Result<()> {
    let plan = Plan::new(args)?;
    let mut runs = Vec::new();
    for trial in 0..plan.args.trials {
        let seed = plan.args.seed.wrapping_add(trial as u64);
        eprintln!("trial {trial}: seed {seed}");
        runs.extend(run_trial(&plan, trial, seed)?);
    }
    print!("{}", summary_table(&plan, &runs));
    if let Some(path) = &plan.args.json {
        let json = serde_json::to_string_pretty(&serde_json::json!({ "runs": runs }))?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

impl Plan {
    /// Loads the data and checks every input before any training.
    fn new(args: NasArgs) -> Result<Self> {
        let task_set = match &args.tasks_file {
            Some(path) => TaskSet::from_path(path)?,
            None => paper_tasks()?,
        };
        let task = task_set.task(args.space, &args.task)?.clone();
        check_devices(&task, &args)?;
        if args.samples < 2 {
            bail!("--samples {}: a transfer needs at least 2", args.samples);
        }
        if !(args.risk_factor.is_finite() && args.risk_factor >= 1.0) {
            bail!(
                "--risk-factor {}: must be a number >= 1 (1 = the plain conformal rank)",
                args.risk_factor
            );
        }
        if let Some(w) = args.blend.iter().find(|w| !(0.0..=1.0).contains(*w)) {
            bail!("--blend {w}: weights must lie in [0, 1]");
        }
        let constraints = args
            .latency_ms
            .iter()
            .map(|&c| Constraint::new(c, args.risk))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let data = SpaceData::load(args.space)?;
        let objective = args.dataset.scores(&data)?;
        nas_evolution::check(args.space, args.dataset, &args.mode, &args.evolution)?;
        let metad2a = metad2a_list(&args)?;
        let probe_plan = args.probe.plan(&args.mode, args.samples)?;
        let oracle = oracles(&data, &args.device, &constraints, &objective)?;
        let sources = SourceMatrix::new(&data, &task.train)?;
        Ok(Plan {
            args,
            data,
            task,
            sources,
            constraints,
            objective,
            metad2a,
            probe_plan,
            oracle,
        })
    }

    fn bound_options(&self) -> BoundOptions {
        BoundOptions {
            risk_factor: self.args.risk_factor,
            quantised: self.args.quantised,
        }
    }

    fn train_config(&self) -> TrainConfig {
        let mut t = TrainConfig::for_recipe(self.args.space, self.args.recipe);
        if let Some(e) = self.args.epochs {
            t.epochs = e;
        }
        t
    }
}

/// Every device must be a test device of the task (a source would be
/// searched with the predictor it trained).
fn check_devices(task: &Task, args: &NasArgs) -> Result<()> {
    for d in &args.device {
        if !task.test.contains(d) {
            bail!(
                "device `{d}` is not a test device of task {} (test devices: {})",
                args.task,
                task.test.join(", ")
            );
        }
    }
    Ok(())
}

/// MetaD2A's list exists for NB201 only.
fn metad2a_list(args: &NasArgs) -> Result<Vec<usize>> {
    if !args.mode.contains(&Mode::Metad2a500) {
        return Ok(Vec::new());
    }
    if args.space != SearchSpace::Nb201 {
        bail!("--mode metad2a500: MetaD2A's candidate list is NB201's; use --mode exhaustive");
    }
    Ok(data::metad2a_candidates()?
        .iter()
        .map(|c| c.index)
        .collect())
}

/// The full-space oracle of each (device, constraint); a budget below every
/// measured latency of the device is an input error.
fn oracles(
    data: &SpaceData,
    devices: &[String],
    constraints: &[Constraint],
    objective: &[f64],
) -> Result<BTreeMap<(String, usize), f64>> {
    let problem = Problem {
        objective,
        candidates: &[],
    };
    let mut out = BTreeMap::new();
    for d in devices {
        let truth = TableLatency::new(data, d)?;
        for (i, c) in constraints.iter().enumerate() {
            let best = nas::search(&truth, &problem, c, Mode::Exhaustive)
                .with_context(|| format!("{d} at {} ms", c.max_ms()))?;
            out.insert((d.clone(), i), best.chosen.objective);
        }
    }
    Ok(out)
}

/// One trial: pretrain once, then every device, mode and budget.
fn run_trial(plan: &Plan, trial: usize, seed: u64) -> Result<Vec<NasRun>> {
    let train_config = plan.train_config();
    let pretrained = pretrained(plan, &train_config, seed)?;
    let pipeline = FewShot {
        pretrained: &pretrained,
        data: &plan.data,
        sources: &plan.sources,
    };
    let mut runs = Vec::new();
    for (p, device) in plan.args.device.iter().enumerate() {
        let ctx = TrialDevice {
            plan,
            device,
            trial,
            seed,
        };
        runs.extend(ctx.run(&pipeline, &train_config, p)?);
    }
    Ok(runs)
}

/// The trial's pretrained predictor: from `--pretrained-cache` when a
/// checkpoint of the same sources, seed and epochs is there, else trained
/// (and saved there when the flag is given).
fn pretrained(plan: &Plan, train_config: &TrainConfig, seed: u64) -> Result<Predictor> {
    let fresh = || {
        train::pretrain(
            &plan.data,
            &plan.task.train,
            &PredictorConfig::for_recipe(train_config.recipe),
            train_config,
            seed,
            nasflat_predictor::parallel::cores_per_job(1),
            None,
        )
    };
    let Some(dir) = &plan.args.pretrained_cache else {
        return Ok(fresh()?);
    };
    let prefix = cache_prefix(dir, plan.args.space, &plan.task.train, seed, train_config);
    if prefix.with_extension("json").exists() {
        let (predictor, _) =
            load_checkpoint(&prefix).with_context(|| format!("reading {}", prefix.display()))?;
        return Ok(predictor);
    }
    let predictor = fresh()?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    save_checkpoint(&predictor, &[], &prefix)
        .with_context(|| format!("writing {}", prefix.display()))?;
    Ok(predictor)
}

/// Where [`pretrained`] keeps the checkpoint of these sources, seed, epochs
/// and recipe (a paper-recipe checkpoint is never read for a served run,
/// nor the other way round; served names are those of earlier versions).
fn cache_prefix(
    dir: &std::path::Path,
    space: SearchSpace,
    sources: &[String],
    seed: u64,
    train: &TrainConfig,
) -> PathBuf {
    let recipe = match train.recipe {
        Recipe::Served => String::new(),
        other => format!("-{other}"),
    };
    dir.join(format!(
        "{space}-{}-seed{seed}-e{}{recipe}",
        sources.join("+"),
        train.epochs
    ))
}

/// One device of one trial.
struct TrialDevice<'a> {
    plan: &'a Plan,
    device: &'a str,
    trial: usize,
    seed: u64,
}

impl TrialDevice<'_> {
    /// Samples k architectures, fits every predictor and searches.
    fn run(&self, pipeline: &FewShot<'_>, train: &TrainConfig, p: usize) -> Result<Vec<NasRun>> {
        let data = &self.plan.data;
        let samples = self.samples(p)?;
        let blends = &self.plan.args.blend;
        let opts = fewshot::Options {
            transfer: TransferOptions {
                train: train.clone(),
                seed: self.seed.wrapping_mul(7919).wrapping_add(p as u64),
                progress: None,
            },
            blend: BlendRule::Fixed(blends.iter().copied().fold(0.0, f64::max)),
            stack_rules: StackRules::SERVED,
        };
        let started = Instant::now();
        let fitted = pipeline.fit(self.device, &samples, &opts)?;
        let transfer_seconds = started.elapsed().as_secs_f64();
        if let Some(dir) = &self.plan.args.dump_dir {
            self.dump(dir, &fitted)?;
        }
        let trivial = TrivialFit::fit(data, &samples)?;
        let truth = TableLatency::new(data, self.device)?;
        let mut models: Vec<(String, Box<dyn LatencyModel + '_>, f64)> = blends
            .iter()
            .map(|&w| {
                let m: Box<dyn LatencyModel> = Box::new(Blended {
                    fitted: &fitted,
                    blend: w,
                });
                (format!("nasflat@{w}"), m, transfer_seconds)
            })
            .collect();
        models.push(("trivial".into(), Box::new(trivial), 0.0));
        let mut runs = Vec::new();
        for &mode in &self.plan.args.mode {
            if mode == Mode::Evolution {
                runs.extend(self.open_runs(&fitted, transfer_seconds)?);
                continue;
            }
            if mode == Mode::Probed {
                runs.extend(self.probed_runs(pipeline, &samples, &opts)?);
                continue;
            }
            for (name, model, fit_s) in &models {
                runs.extend(self.search_all(name, model.as_ref(), mode, *fit_s)?);
            }
            if mode == Mode::Metad2a500 {
                runs.extend(self.search_all("true-latency", &truth, mode, 0.0)?);
            }
        }
        Ok(runs)
    }

    /// `--mode evolution`: the open-space predictor's answers (evolution
    /// and its table-exhaustive twin), true latency only for table rows.
    fn open_runs(
        &self,
        fitted: &fewshot::Fitted<'_>,
        transfer_seconds: f64,
    ) -> Result<Vec<NasRun>> {
        let plan = self.plan;
        let search = OpenSearch {
            data: &plan.data,
            objective: plan.args.dataset,
            constraints: &plan.constraints,
            blends: &plan.args.blend,
            args: &plan.args.evolution,
            seed: self.seed,
            transfer_seconds,
        };
        let column = plan.data.device_index(self.device)?;
        Ok(search
            .answers(fitted)?
            .into_iter()
            .map(|a| {
                let max_ms = plan.constraints[a.constraint].max_ms();
                let index = a.chosen.and_then(|c| c.arch.index());
                let true_ms = index.and_then(|r| plan.data.latency(column, r));
                NasRun {
                    space: plan.args.space.to_string(),
                    task: plan.args.task.clone(),
                    device: self.device.to_string(),
                    constraint_ms: max_ms,
                    mode: a.mode.to_string(),
                    predictor: a.predictor,
                    trial: self.trial,
                    seed: self.seed,
                    arch: a.chosen.map(|c| c.arch.key()).unwrap_or_default(),
                    arch_index: index,
                    predicted_ms: a.chosen.map(|c| c.predicted_ms),
                    upper_ms: a.chosen.map(|c| c.upper_ms),
                    true_ms,
                    accuracy: a.chosen.map(|c| c.objective),
                    violated: true_ms.is_some_and(|t| t > max_ms),
                    oracle_accuracy: plan.oracle[&(self.device.to_string(), a.constraint)],
                    seconds: a.seconds,
                    evaluations: (a.mode == Mode::Evolution).then_some(a.evaluated),
                    probes: None,
                    measured: None,
                }
            })
            .collect())
    }

    /// Writes `fitted`'s predictions for offline study (`--dump-dir`).
    fn dump(&self, dir: &std::path::Path, fitted: &fewshot::Fitted<'_>) -> Result<()> {
        let all: Vec<usize> = (0..self.plan.data.rows()).collect();
        let parts = fitted.predict_blends(&all, &[0.0, 1.0])?;
        let samples = fitted.samples();
        let logs: Vec<f64> = samples.iter().map(|s| s.ms.ln()).collect();
        let loo = |w: f64| -> Result<Vec<f64>> {
            let r = fitted.loo_log_residuals_at(w)?;
            Ok(logs.iter().zip(&r).map(|(l, r)| l - r).collect())
        };
        let json = serde_json::json!({
            "device": self.device,
            "seed": self.seed,
            "rows": samples.rows(),
            "ms": samples.latencies(),
            "gnn_loo_log": loo(0.0)?,
            "stack_loo_log": loo(1.0)?,
            "gnn_ms": parts[0],
            "stack_ms": parts[1],
        });
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{}-seed{}.json", self.device, self.seed));
        std::fs::write(&path, serde_json::to_string(&json)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The k target samples of this device (seeded by trial and position).
    fn samples(&self, p: usize) -> Result<Samples> {
        let data = &self.plan.data;
        let valid = data.valid_rows(data.device_index(self.device)?);
        let mut rng =
            StdRng::seed_from_u64(self.seed.wrapping_mul(1_000_003).wrapping_add(p as u64));
        let rows = sample_rows(self.device, &valid, self.plan.args.samples, &mut rng)?;
        Ok(Samples::from_table(data, self.device, &rows)?)
    }

    /// One model's answer under every budget.
    fn search_all(
        &self,
        name: &str,
        model: &dyn LatencyModel,
        mode: Mode,
        fit_seconds: f64,
    ) -> Result<Vec<NasRun>> {
        let problem = Problem {
            objective: &self.plan.objective,
            candidates: &self.plan.metad2a,
        };
        let mut runs = Vec::new();
        for (i, c) in self.plan.constraints.iter().enumerate() {
            let started = Instant::now();
            let outcome =
                match nas::search_with(model, &problem, c, mode, &self.plan.bound_options()) {
                    Ok(o) => Some(o.chosen),
                    Err(PredictorError::NoFeasibleArchitecture { .. }) => None,
                    Err(e) => return Err(e.into()),
                };
            let seconds = fit_seconds + started.elapsed().as_secs_f64();
            runs.push(self.record(name, mode, i, outcome, seconds)?);
        }
        Ok(runs)
    }

    fn record(
        &self,
        name: &str,
        mode: Mode,
        constraint: usize,
        chosen: Option<nas::Candidate>,
        seconds: f64,
    ) -> Result<NasRun> {
        let plan = self.plan;
        let data = &plan.data;
        let column = data.device_index(self.device)?;
        let max_ms = plan.constraints[constraint].max_ms();
        let true_ms = chosen.and_then(|c| data.latency(column, c.row));
        let arch = match chosen {
            Some(c) => Arch::from_index(plan.args.space, c.row)?.to_string(),
            None => String::new(),
        };
        Ok(NasRun {
            space: plan.args.space.to_string(),
            task: plan.args.task.clone(),
            device: self.device.to_string(),
            constraint_ms: max_ms,
            mode: mode.to_string(),
            predictor: name.to_string(),
            trial: self.trial,
            seed: self.seed,
            arch,
            arch_index: chosen.map(|c| c.row),
            predicted_ms: chosen.map(|c| c.predicted_ms),
            upper_ms: chosen.map(|c| c.upper_ms),
            true_ms,
            accuracy: chosen.map(|c| c.objective),
            violated: true_ms.is_some_and(|t| t > max_ms),
            oracle_accuracy: plan.oracle[&(self.device.to_string(), constraint)],
            seconds,
            evaluations: None,
            probes: None,
            measured: None,
        })
    }

    /// `--mode probed`: the first k - probes samples are the spread ones
    /// (the same draw the other modes use all of), the rest are measured
    /// near each budget; every blend and the trivial fit under the same
    /// plan.
    fn probed_runs(
        &self,
        pipeline: &FewShot<'_>,
        samples: &Samples,
        opts: &fewshot::Options,
    ) -> Result<Vec<NasRun>> {
        let plan = self.plan;
        let rows = samples.rows();
        let spread_rows = &rows[..rows.len() - plan.probe_plan.probes];
        let spread = Samples::from_table(&plan.data, self.device, spread_rows)?;
        let started = Instant::now();
        let fitted = pipeline.fit(self.device, &spread, opts)?;
        let spread_seconds = started.elapsed().as_secs_f64();
        let board = TableBoard {
            data: &plan.data,
            device: self.device,
        };
        let problem = Problem {
            objective: &plan.objective,
            candidates: &[],
        };
        let options = plan.bound_options();
        let mut spread_fit = nas::AtBlend { fitted, blend: 0.0 };
        let trivial = TrivialFit::fit(&plan.data, &spread)?;
        let mut runs = Vec::new();
        for (i, c) in plan.constraints.iter().enumerate() {
            let search = ProbeSearch {
                problem: &problem,
                constraint: c,
                options: &options,
                plan: plan.probe_plan,
            };
            for &w in &plan.args.blend {
                spread_fit.blend = w;
                let mut device = PipelineBoard {
                    board,
                    pipeline,
                    opts,
                    blend: w,
                };
                let started = Instant::now();
                let got = nas_probe::answer(&search, &mut device, &spread_fit, &spread)?;
                let seconds = spread_seconds + started.elapsed().as_secs_f64();
                runs.push(self.probed_record(&format!("nasflat@{w}"), i, got, seconds)?);
            }
            let started = Instant::now();
            let got = nas_probe::answer(&search, &mut TrivialBoard { board }, &trivial, &spread)?;
            let seconds = started.elapsed().as_secs_f64();
            runs.push(self.probed_record("trivial", i, got, seconds)?);
        }
        Ok(runs)
    }

    fn probed_record(
        &self,
        name: &str,
        constraint: usize,
        got: Option<ProbeOutcome>,
        seconds: f64,
    ) -> Result<NasRun> {
        let chosen = got.as_ref().map(|o| o.outcome.chosen);
        let mut run = self.record(name, Mode::Probed, constraint, chosen, seconds)?;
        run.probes = Some(self.plan.probe_plan.probes);
        run.measured = got.map(|o| o.measured);
        Ok(run)
    }
}

/// Markdown: one row per (device, budget, mode, predictor), then the mean
/// over budgets per (mode, predictor).
fn summary_table(plan: &Plan, runs: &[NasRun]) -> String {
    let mut groups: BTreeMap<(String, String, String, String), Vec<&NasRun>> = BTreeMap::new();
    for r in runs {
        let key = (
            r.mode.clone(),
            r.predictor.clone(),
            r.device.clone(),
            format!("{:08.3}", r.constraint_ms),
        );
        groups.entry(key).or_default().push(r);
    }
    let unit = if plan.args.dataset.is_accuracy() {
        "accuracy %"
    } else {
        "objective (proxy)"
    };
    let mut out = format!(
        "\n| mode | predictor | device | C ms | true ms | {unit} | oracle | regret | worst regret | violated | no answer | s/answer |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    let mut overall: BTreeMap<(String, String), Vec<GroupStats>> = BTreeMap::new();
    for ((mode, predictor, device, _), rs) in &groups {
        let g = GroupStats::of(rs);
        out.push_str(&format!(
            "| {mode} | {predictor} | {device} | {} | {:.2} ± {:.2} | {:.2} ± {:.2} | {:.2} | {:.2} | {:.2} | {:.0}% | {} | {:.2} |\n",
            rs[0].constraint_ms, g.ms.0, g.ms.1, g.acc.0, g.acc.1, g.oracle, g.regret, g.worst,
            100.0 * g.violation, g.unanswered, g.seconds
        ));
        overall
            .entry((mode.clone(), predictor.clone()))
            .or_default()
            .push(g);
    }
    out.push_str("\n| mode | predictor | pairs | mean regret | worst pair regret | violation rate |\n|---|---|---|---|---|---|\n");
    for ((mode, predictor), gs) in &overall {
        let n = gs.len() as f64;
        let regret = gs.iter().map(|g| g.regret).sum::<f64>() / n;
        let worst = gs.iter().map(|g| g.regret).fold(f64::MIN, f64::max);
        let violation = gs.iter().map(|g| g.violation).sum::<f64>() / n;
        out.push_str(&format!(
            "| {mode} | {predictor} | {} | {regret:.2} | {worst:.2} | {:.1}% |\n",
            gs.len(),
            100.0 * violation
        ));
    }
    out
}

/// Summary of one (mode, predictor, device, budget) over trials. A trial
/// whose predictor puts nothing within the budget has no architecture to
/// score: it is counted apart (`no answer`) and left out of the means.
struct GroupStats {
    ms: (f64, f64),
    acc: (f64, f64),
    oracle: f64,
    regret: f64,
    worst: f64,
    violation: f64,
    unanswered: usize,
    seconds: f64,
}

impl GroupStats {
    fn of(rs: &[&NasRun]) -> Self {
        let answered: Vec<&&NasRun> = rs.iter().filter(|r| !r.arch.is_empty()).collect();
        let ms: Vec<f64> = answered.iter().filter_map(|r| r.true_ms).collect();
        let acc: Vec<f64> = answered.iter().filter_map(|r| r.accuracy).collect();
        let oracle = rs[0].oracle_accuracy;
        let regrets: Vec<f64> = acc.iter().map(|a| oracle - a).collect();
        let seconds: Vec<f64> = rs.iter().map(|r| r.seconds).collect();
        GroupStats {
            ms: mean_std(&ms),
            acc: mean_std(&acc),
            oracle,
            regret: mean_std(&regrets).0,
            worst: regrets.iter().copied().fold(0.0, f64::max),
            violation: rs.iter().filter(|r| r.violated).count() as f64 / rs.len() as f64,
            unanswered: rs.len() - answered.len(),
            seconds: mean_std(&seconds).0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A paper-recipe checkpoint is never read for a served run (nor the
    /// other way round); served names are unchanged.
    #[test]
    fn cache_prefix_keeps_recipes_apart() {
        let dir = std::path::Path::new("/c");
        let sources = vec!["a".to_string(), "b".to_string()];
        let served = TrainConfig::for_space(SearchSpace::Nb201);
        let paper = TrainConfig {
            recipe: Recipe::Paper,
            ..served.clone()
        };
        let a = cache_prefix(dir, SearchSpace::Nb201, &sources, 3, &served);
        let b = cache_prefix(dir, SearchSpace::Nb201, &sources, 3, &paper);
        assert_ne!(a, b);
        assert_eq!(a, dir.join("nb201-a+b-seed3-e60"));
    }
}
