//! The evaluation harness (paper Section 6.2, Table 7 protocol).
//!
//! For each task and trial: every target device "measures" k architectures
//! (sampled with a seed derived from the trial seed and the target's
//! position, identical for every method); each method predicts the target's
//! latency on all of its other measured architectures; we report Spearman
//! (the paper's metric), Kendall tau-b and the within-10% share of the
//! millisecond predictions, as mean and std over target devices x trials.

mod blend_spec;
pub mod reference;
pub mod report;

pub use blend_spec::{BlendSpec, LEGACY_BLEND};

use std::collections::BTreeMap;
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use nasflat_shared::data::{Task, TaskSet};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::baselines::{self, Method, SourceMatrix, Stack, StackRules, help_mlp::HelpMlp};
use crate::blend::{BlendChoice, BlendRule};
use crate::calibrate::LogLinearCalibration;
use crate::correlation::{kendall_tau_b, mape, mean_std, spearman, within_fraction};
use crate::dataset::SpaceData;
use crate::error::{PredictorError, Result};
use crate::fewshot::{self, FewShot, ServedChoice};
use crate::model::{Predictor, PredictorConfig, Recipe, TrainConfig};
use crate::sampler::Sampler;
use crate::samples::Samples;
use crate::train::{self, DeviceSamples, Phase, TransferOptions};

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Task names of the space, in order.
    pub tasks: Vec<String>,
    /// Task definitions.
    pub task_set: TaskSet,
    /// Trials per task.
    pub trials: usize,
    /// Target samples k.
    pub samples: usize,
    /// Base seed; trial t uses `seed + t`.
    pub seed: u64,
    /// Sample selection.
    pub sampler: Sampler,
    /// Methods to run.
    pub methods: Vec<Method>,
    /// Network shape of NASFLAT (and of the scratch GNN).
    pub predictor: PredictorConfig,
    /// Optimisation settings.
    pub train: TrainConfig,
    /// Epochs of the HELP-style MLP pretraining.
    pub help_mlp_epochs: usize,
    /// How the weight of the linear stack (additive + source regression,
    /// see [`baselines::Stack`]) blended into NASFLAT's GNN in log-ms space
    /// is set; weight 0 = the paper's predictor alone. Several are
    /// evaluated from one pretraining and reported as `nasflat@<spec>`; a
    /// single one is reported as plain `nasflat`.
    pub blend: Vec<BlendSpec>,
    /// Hide progress bars.
    pub quiet: bool,
    /// Trials run side by side (each on one thread; results do not depend
    /// on it: every trial has its own seed and model).
    pub jobs: usize,
}

/// Metrics of one (trial, target device).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceOutcome {
    /// Trial number.
    pub trial: usize,
    /// Target device.
    pub device: String,
    /// Spearman rho over the evaluated architectures.
    pub spearman: f64,
    /// Kendall tau-b (exact).
    pub kendall: f64,
    /// Share of predictions within +-10% of the true ms.
    pub within10: f64,
    /// Mean absolute percentage error of the ms predictions (a share).
    #[serde(default)]
    pub mape: f64,
    /// Architectures evaluated.
    pub evaluated: usize,
    /// Source whose embedding initialised the target (NASFLAT only).
    pub init_from: Option<String>,
    /// The blend weight and stack rules this outcome's fit chose (NASFLAT
    /// and `stacked`), from the k samples and the task's sources only.
    #[serde(default)]
    pub choice: Option<ServedChoice>,
    /// Table rows of the k measured samples (every other measured row of the
    /// target was evaluated): enough to recompute any outcome independently.
    #[serde(default)]
    pub samples: Vec<usize>,
    /// Seconds spent fitting to the target (transfer).
    pub fit_seconds: f64,
    /// Seconds spent predicting all evaluated architectures.
    pub predict_seconds: f64,
}

/// Per-device summary in the JSON report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceSummary {
    /// Mean Spearman over trials.
    pub spearman_mean: f64,
    /// Std over trials.
    pub spearman_std: f64,
    /// Mean Kendall tau-b.
    pub kendall_mean: f64,
    /// Mean within-10% share.
    pub within10_mean: f64,
    /// Mean MAPE (a share).
    #[serde(default)]
    pub mape_mean: f64,
}

/// One (space, task, method) result, the JSON `runs[]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// Search space.
    pub space: String,
    /// Task name.
    pub task: String,
    /// Method name.
    pub method: String,
    /// Sampler of the target's k architectures.
    #[serde(default)]
    pub sampler: String,
    /// Mean Spearman over targets x trials.
    pub spearman_mean: f64,
    /// Std over targets x trials.
    pub spearman_std: f64,
    /// Mean Kendall tau-b.
    pub kendall_mean: f64,
    /// Mean within-10% share after calibration.
    pub within10_mean: f64,
    /// Mean MAPE of the calibrated ms predictions (a share).
    #[serde(default)]
    pub mape_mean: f64,
    /// k.
    pub samples: usize,
    /// Trials.
    pub trials: usize,
    /// Wall-clock seconds of this method on this task.
    pub seconds: f64,
    /// Base seed.
    pub seed: u64,
    /// Seed of each trial.
    pub trial_seeds: Vec<u64>,
    /// Seconds of each pretraining (methods that pretrain).
    pub pretrain_seconds: Vec<f64>,
    /// Mean seconds to fit one target device.
    pub fit_seconds_mean: f64,
    /// Mean seconds to predict all of one target's architectures.
    pub predict_seconds_mean: f64,
    /// Per target device.
    pub per_device: BTreeMap<String, DeviceSummary>,
    /// Raw outcomes.
    pub outcomes: Vec<DeviceOutcome>,
}

/// Seed of trial `t`.
pub fn trial_seed(base: u64, trial: usize) -> u64 {
    base.wrapping_add(trial as u64)
}

/// The k target archs of a (trial, target): seeded by both, shared by all methods.
fn target_samples(
    data: &SpaceData,
    sampler: Sampler,
    sources: &SourceMatrix,
    target: &str,
    k: usize,
    seed: u64,
    position: usize,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let column = data.device_index(target)?;
    let valid = data.valid_rows(column);
    if k + 2 > valid.len() {
        return Err(PredictorError::NotEnoughSamples {
            device: target.to_string(),
            requested: k,
            available: valid.len().saturating_sub(2),
        });
    }
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(position as u64));
    let picked = sampler.pick_for_task(data, Some(sources), target, &valid, k, &mut rng)?;
    let chosen: std::collections::HashSet<usize> = picked.iter().copied().collect();
    let rest = valid.into_iter().filter(|r| !chosen.contains(r)).collect();
    Ok((picked, rest))
}

fn progress_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} ETA {eta} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Runs every (task, method) of `opts` on one space.
pub fn evaluate(data: &SpaceData, opts: &EvalOptions) -> Result<Vec<RunReport>> {
    opts.train.validate()?;
    for spec in &opts.blend {
        if let BlendSpec::Rule(rule) = spec {
            rule.validate()?;
        }
    }
    let multi = MultiProgress::with_draw_target(if opts.quiet {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    });
    // Validate encodings, tasks and devices before spending any time training.
    if let Some(kind) = opts.sampler.encoding() {
        data.encodings.get(kind)?;
    }
    if let Some(kind) = opts.predictor.supplementary.encoding()
        && !data
            .features
            .has_supplementary(opts.predictor.supplementary)
    {
        data.encodings.get(kind)?;
    }
    let mut plan = Vec::new();
    for name in &opts.tasks {
        let task = opts.task_set.task(data.space, name)?;
        for d in task.train.iter().chain(&task.test) {
            data.device_index(d)?;
        }
        plan.push((name.clone(), task.clone()));
    }
    let total: usize = plan
        .iter()
        .map(|(_, t)| t.test.len() * opts.trials * opts.methods.len())
        .sum();
    let main = multi.add(ProgressBar::new(total as u64));
    main.set_style(progress_style());
    main.set_prefix(data.space.to_string());
    let mut reports = Vec::new();
    for (name, task) in &plan {
        let sources = SourceMatrix::new(data, &task.train)?;
        // (label, outcomes, pretrain seconds, wall seconds), in method order.
        let mut per_method: Vec<MethodRecord> = Vec::new();
        let trials: Vec<usize> = (0..opts.trials).collect();
        let records = crate::parallel::map_in_groups(&trials, opts.jobs, "eval", |&trial| {
            let ctx = TrialContext {
                data,
                opts,
                task,
                sources: &sources,
                seed: trial_seed(opts.seed, trial),
                trial,
            };
            run_trial(&ctx, name, &multi, &main)
        })?;
        // Merge in trial order, so reports do not depend on `jobs`.
        for (label, mine, pretrain, seconds) in records {
            match per_method.iter_mut().find(|(l, ..)| *l == label) {
                Some(entry) => {
                    entry.1.extend(mine);
                    entry.2.extend(pretrain);
                    entry.3 += seconds;
                }
                None => per_method.push((label, mine, pretrain, seconds)),
            }
        }
        for (label, outcomes, pretrain, seconds) in per_method {
            reports.push(summarise(
                data, opts, name, &label, outcomes, pretrain, seconds,
            ));
        }
    }
    main.finish_and_clear();
    Ok(reports)
}

/// An outcome with the label it is reported under (`nasflat@0.85`, ...).
type Labelled = (String, DeviceOutcome);

/// One label's outcomes, pretraining seconds and wall seconds.
type MethodRecord = (String, Vec<DeviceOutcome>, Vec<f64>, f64);

/// The shared inputs of every method of one trial.
struct TrialContext<'a> {
    data: &'a SpaceData,
    opts: &'a EvalOptions,
    task: &'a Task,
    sources: &'a SourceMatrix,
    seed: u64,
    trial: usize,
}

/// One target device of a trial: its k samples (the same for every method)
/// and the held-out rows every method is scored on.
struct TargetCase {
    target: String,
    samples: Samples,
    rest: Vec<usize>,
    truth: Vec<f64>,
    /// Seed of this target's transfer or fit.
    seed: u64,
}

/// A model pretrained once per trial for the methods that pretrain.
enum Pretrained {
    Nothing,
    Nasflat(Box<Predictor>),
    HelpMlp(HelpMlp),
}

/// One method's predictions for one target, under the labels they are
/// reported as (several for NASFLAT at several blend weights), with the
/// choices each made.
struct Prediction {
    labelled: Vec<(String, Vec<f64>, Option<ServedChoice>)>,
    init_from: Option<String>,
    fit_seconds: f64,
    predict_seconds: f64,
}

impl Prediction {
    /// A closed-form method: no fit phase, one label.
    fn closed_form(method: Method, started: Instant, predicted: Vec<f64>) -> Self {
        Prediction {
            labelled: vec![(method.to_string(), predicted, None)],
            init_from: None,
            fit_seconds: 0.0,
            predict_seconds: started.elapsed().as_secs_f64(),
        }
    }
}

/// Every method of one trial of one task, one record per label in method order.
fn run_trial(
    ctx: &TrialContext<'_>,
    name: &str,
    multi: &MultiProgress,
    main: &ProgressBar,
) -> Result<Vec<MethodRecord>> {
    let cases = target_cases(ctx)?;
    let mut records: Vec<MethodRecord> = Vec::new();
    for &method in &ctx.opts.methods {
        main.set_message(format!("{name} trial {} {method}", ctx.trial));
        let started = Instant::now();
        let (pretrained, pretrain) = pretrain_for(ctx, method, multi)?;
        let mut outcomes: Vec<Labelled> = Vec::with_capacity(cases.len());
        for case in &cases {
            let prediction = predict_case(ctx, method, &pretrained, case)?;
            outcomes.extend(score(ctx.trial, case, prediction));
            main.inc(1);
        }
        let seconds = started.elapsed().as_secs_f64();
        for (label, outcome) in outcomes {
            match records.iter_mut().find(|(l, ..)| *l == label) {
                Some(entry) => entry.1.push(outcome),
                None => records.push((label, vec![outcome], pretrain.clone(), seconds)),
            }
        }
    }
    Ok(records)
}

/// The k samples and held-out rows of each target of the trial.
fn target_cases(ctx: &TrialContext<'_>) -> Result<Vec<TargetCase>> {
    let opts = ctx.opts;
    let mut cases = Vec::with_capacity(ctx.task.test.len());
    for (p, target) in ctx.task.test.iter().enumerate() {
        let (archs, rest) = target_samples(
            ctx.data,
            opts.sampler,
            ctx.sources,
            target,
            opts.samples,
            ctx.seed,
            p,
        )?;
        let column = ctx.data.device_index(target)?;
        let truth = rest
            .iter()
            .filter_map(|&r| ctx.data.latency(column, r))
            .collect();
        cases.push(TargetCase {
            target: target.clone(),
            samples: Samples::from_table(ctx.data, target, &archs)?,
            rest,
            truth,
            seed: ctx.seed.wrapping_mul(7919).wrapping_add(p as u64),
        });
    }
    Ok(cases)
}

/// Pretrains what `method` needs (NASFLAT's GNN, HELP's MLP), with the
/// seconds it took.
fn pretrain_for(
    ctx: &TrialContext<'_>,
    method: Method,
    multi: &MultiProgress,
) -> Result<(Pretrained, Vec<f64>)> {
    let started = Instant::now();
    let opts = ctx.opts;
    let model = match method {
        Method::Nasflat => {
            let bar = multi.add(ProgressBar::new(opts.train.epochs as u64));
            bar.set_style(progress_style());
            bar.set_prefix("pretrain");
            let model = train::pretrain(
                ctx.data,
                &ctx.task.train,
                &opts.predictor,
                &opts.train,
                ctx.seed,
                crate::parallel::cores_per_job(opts.jobs),
                Some(&bar),
            )?;
            bar.finish_and_clear();
            Pretrained::Nasflat(Box::new(model))
        }
        Method::HelpMlp => Pretrained::HelpMlp(HelpMlp::pretrain(
            ctx.data,
            &ctx.task.train,
            opts.train.source_samples,
            opts.help_mlp_epochs,
            ctx.seed,
        )?),
        _ => return Ok((Pretrained::Nothing, Vec::new())),
    };
    Ok((model, vec![started.elapsed().as_secs_f64()]))
}

/// Dispatches one target to the function of its method.
fn predict_case(
    ctx: &TrialContext<'_>,
    method: Method,
    pretrained: &Pretrained,
    case: &TargetCase,
) -> Result<Prediction> {
    match (method, pretrained) {
        (Method::Nasflat, Pretrained::Nasflat(model)) => predict_nasflat(ctx, model, case),
        (Method::HelpMlp, Pretrained::HelpMlp(model)) => predict_help(ctx, model, case),
        (Method::Scratch, _) => predict_scratch(ctx, case),
        (Method::Nasflat | Method::HelpMlp, _) => Err(PredictorError::internal(
            "eval",
            format!("{method} was not pretrained"),
        )),
        _ => predict_closed_form(ctx, method, case),
    }
}

/// NASFLAT: the few-shot pipeline, at every blend of the options.
fn predict_nasflat(
    ctx: &TrialContext<'_>,
    pretrained: &Predictor,
    case: &TargetCase,
) -> Result<Prediction> {
    let specs = &ctx.opts.blend;
    let options = fewshot::Options {
        transfer: TransferOptions {
            train: ctx.opts.train.clone(),
            seed: case.seed,
            progress: None,
        },
        // Fit the stack whenever some blend may use it; each blend's weight
        // is chosen below.
        blend: BlendRule::Fixed(if specs.iter().any(|s| s.needs_stack()) {
            1.0
        } else {
            0.0
        }),
        stack_rules: StackRules::SERVED,
    };
    let pipeline = FewShot {
        pretrained,
        data: ctx.data,
        sources: ctx.sources,
    };
    let fit_start = Instant::now();
    let fitted = pipeline.fit(&case.target, &case.samples, &options)?;
    let fit_seconds = fit_start.elapsed().as_secs_f64();
    let predict_start = Instant::now();
    let mut labelled = Vec::with_capacity(specs.len());
    for spec in specs {
        let label = if specs.len() > 1 {
            format!("nasflat@{spec}")
        } else {
            Method::Nasflat.to_string()
        };
        let (predicted, choice) = nasflat_at(&fitted, &case.rest, *spec)?;
        labelled.push((label, predicted, Some(choice)));
    }
    Ok(Prediction {
        labelled,
        init_from: fitted.init_from().map(str::to_string),
        fit_seconds,
        predict_seconds: predict_start.elapsed().as_secs_f64(),
    })
}

/// The fitted pipeline's ms of `rows` under one blend, and its choices.
fn nasflat_at(
    fitted: &fewshot::Fitted<'_>,
    rows: &[usize],
    spec: BlendSpec,
) -> Result<(Vec<f64>, ServedChoice)> {
    match spec {
        BlendSpec::Rule(rule) => {
            let blend = fitted.choose_blend(rule)?;
            let mut out = fitted.predict_blends(rows, &[blend.weight])?;
            Ok((out.pop().unwrap_or_default(), fitted.choice_at(blend)))
        }
        BlendSpec::Legacy => {
            let (predicted, stack) =
                fitted.predict_restacked(rows, &StackRules::LEGACY, LEGACY_BLEND)?;
            let blend = BlendChoice {
                rule: BlendRule::Fixed(LEGACY_BLEND),
                weight: LEGACY_BLEND,
                loo_mse: None,
            };
            Ok((
                predicted,
                ServedChoice {
                    blend,
                    stack: Some(stack),
                },
            ))
        }
    }
}

/// HELP: its MLP fine-tuned on the target and calibrated on the k samples.
fn predict_help(ctx: &TrialContext<'_>, model: &HelpMlp, case: &TargetCase) -> Result<Prediction> {
    let started = Instant::now();
    let archs = case.samples.rows();
    let ms = case.samples.latencies();
    let fit_rows: Vec<usize> = archs.iter().chain(case.rest.iter()).copied().collect();
    let scores =
        model.transfer_predict(ctx.data, &case.target, &archs, &fit_rows, 100, case.seed)?;
    let k = archs.len();
    let cal = LogLinearCalibration::fit(&scores[..k], &ms);
    Ok(Prediction::closed_form(
        Method::HelpMlp,
        started,
        cal.apply_all(&scores[k..]),
    ))
}

/// The GNN trained on the k target samples only.
fn predict_scratch(ctx: &TrialContext<'_>, case: &TargetCase) -> Result<Prediction> {
    if ctx.opts.train.recipe == Recipe::Paper {
        return predict_scratch_paper(ctx, case);
    }
    let (data, opts) = (ctx.data, ctx.opts);
    let fit_start = Instant::now();
    let supp = data
        .features
        .supplementary_dim(opts.predictor.supplementary);
    let target = std::slice::from_ref(&case.target);
    let model = Predictor::new(&opts.predictor, data.space, target, supp, case.seed)?;
    let set = DeviceSamples {
        row: 0,
        archs: case.samples.rows(),
        latencies: case.samples.latencies(),
    };
    let phase = Phase::pretraining(&opts.train);
    let mut rng = StdRng::seed_from_u64(case.seed);
    train::fit(
        &model,
        data,
        std::slice::from_ref(&set),
        phase,
        &mut rng,
        None,
    )?;
    let fit_seconds = fit_start.elapsed().as_secs_f64();
    let predict_start = Instant::now();
    let fit_scores = model.predict(&data.features, &set.archs, 0)?;
    let cal = LogLinearCalibration::fit(&fit_scores, &set.latencies);
    let predicted = cal.apply_all(&model.predict(&data.features, &case.rest, 0)?);
    Ok(Prediction {
        labelled: vec![(Method::Scratch.to_string(), predicted, None)],
        init_from: None,
        fit_seconds,
        predict_seconds: predict_start.elapsed().as_secs_f64(),
    })
}

/// The paper's "from scratch" (its `--sample_sizes 0` runs): the network
/// with the task's source rows left untrained, then the paper's transfer
/// (epochs, rate, INIT, readout) on the k target samples alone.
fn predict_scratch_paper(ctx: &TrialContext<'_>, case: &TargetCase) -> Result<Prediction> {
    let (data, opts) = (ctx.data, ctx.opts);
    let fit_start = Instant::now();
    let supp = data
        .features
        .supplementary_dim(opts.predictor.supplementary);
    let untrained = Predictor::new(
        &opts.predictor,
        data.space,
        &ctx.task.train,
        supp,
        case.seed,
    )?;
    let transfer = TransferOptions {
        train: opts.train.clone(),
        seed: case.seed,
        progress: None,
    };
    let transferred =
        train::transfer_measured(&untrained, data, &case.target, &case.samples, &transfer)?;
    let fit_seconds = fit_start.elapsed().as_secs_f64();
    let predict_start = Instant::now();
    let scores = transferred.scores(&data.features, &case.rest)?;
    Ok(Prediction {
        labelled: vec![(
            Method::Scratch.to_string(),
            transferred.calibration.apply_all(&scores),
            None,
        )],
        init_from: transferred.init_from.clone(),
        fit_seconds,
        predict_seconds: predict_start.elapsed().as_secs_f64(),
    })
}

/// The baselines fitted in closed form on the k samples.
fn predict_closed_form(
    ctx: &TrialContext<'_>,
    method: Method,
    case: &TargetCase,
) -> Result<Prediction> {
    let (data, sources, rest) = (ctx.data, ctx.sources, &case.rest);
    let started = Instant::now();
    let archs = case.samples.rows();
    let ms = case.samples.latencies();
    let predicted = match method {
        Method::Flops => baselines::flops_predict(data, &archs, &ms, rest),
        Method::Params => baselines::params_predict(data, &archs, &ms, rest),
        Method::Nearest => baselines::nearest_predict(sources, &archs, &ms, rest)?,
        Method::Ridge => baselines::ridge_predict(sources, &archs, &ms, rest)?,
        Method::RidgeCost => baselines::ridge_cost_predict(data, sources, &archs, &ms, rest)?,
        Method::Additive => baselines::additive_predict(data, &archs, &ms, rest)?,
        Method::Stacked => return predict_stacked(ctx, case, started),
        Method::Nasflat | Method::HelpMlp | Method::Scratch => {
            return Err(PredictorError::internal(
                "eval",
                format!("{method} is not a closed-form baseline"),
            ));
        }
    };
    Ok(Prediction::closed_form(method, started, predicted))
}

/// The linear stack alone under the served rules, with its choice.
fn predict_stacked(
    ctx: &TrialContext<'_>,
    case: &TargetCase,
    started: Instant,
) -> Result<Prediction> {
    let stack = Stack::fit(
        ctx.data,
        ctx.sources,
        &case.samples.rows(),
        &case.samples.latencies(),
        &StackRules::SERVED,
    )?;
    let predicted = stack.predict_rows(ctx.data, ctx.sources, &case.rest);
    let choice = ServedChoice {
        blend: BlendChoice {
            rule: BlendRule::Fixed(1.0),
            weight: 1.0,
            loo_mse: None,
        },
        stack: Some(stack.choice()),
    };
    let mut prediction = Prediction::closed_form(Method::Stacked, started, predicted);
    if let Some(first) = prediction.labelled.first_mut() {
        first.2 = Some(choice);
    }
    Ok(prediction)
}

/// The metrics of each labelled prediction of one target.
fn score(trial: usize, case: &TargetCase, prediction: Prediction) -> Vec<Labelled> {
    let truth = &case.truth;
    prediction
        .labelled
        .into_iter()
        .map(|(label, predicted, choice)| {
            let outcome = DeviceOutcome {
                trial,
                device: case.target.clone(),
                spearman: spearman(&predicted, truth),
                kendall: kendall_tau_b(&predicted, truth),
                within10: within_fraction(&predicted, truth, 0.1),
                mape: mape(&predicted, truth),
                evaluated: truth.len(),
                init_from: prediction.init_from.clone(),
                choice,
                samples: case.samples.rows(),
                fit_seconds: prediction.fit_seconds,
                predict_seconds: prediction.predict_seconds,
            };
            (label, outcome)
        })
        .collect()
}

fn summarise(
    data: &SpaceData,
    opts: &EvalOptions,
    task: &str,
    method: &str,
    outcomes: Vec<DeviceOutcome>,
    pretrain_seconds: Vec<f64>,
    seconds: f64,
) -> RunReport {
    let rho: Vec<f64> = outcomes.iter().map(|o| o.spearman).collect();
    let (spearman_mean, spearman_std) = mean_std(&rho);
    let kendall_mean = mean_std(&outcomes.iter().map(|o| o.kendall).collect::<Vec<_>>()).0;
    let within10_mean = mean_std(&outcomes.iter().map(|o| o.within10).collect::<Vec<_>>()).0;
    let mape_mean = mean_std(&outcomes.iter().map(|o| o.mape).collect::<Vec<_>>()).0;
    let fit_seconds_mean = mean_std(&outcomes.iter().map(|o| o.fit_seconds).collect::<Vec<_>>()).0;
    let predict_seconds_mean = mean_std(
        &outcomes
            .iter()
            .map(|o| o.predict_seconds)
            .collect::<Vec<_>>(),
    )
    .0;
    let mut per_device = BTreeMap::new();
    let names: std::collections::BTreeSet<&str> =
        outcomes.iter().map(|o| o.device.as_str()).collect();
    for name in names {
        let mine: Vec<&DeviceOutcome> = outcomes.iter().filter(|o| o.device == name).collect();
        let (m, s) = mean_std(&mine.iter().map(|o| o.spearman).collect::<Vec<_>>());
        per_device.insert(
            name.to_string(),
            DeviceSummary {
                spearman_mean: m,
                spearman_std: s,
                kendall_mean: mean_std(&mine.iter().map(|o| o.kendall).collect::<Vec<_>>()).0,
                within10_mean: mean_std(&mine.iter().map(|o| o.within10).collect::<Vec<_>>()).0,
                mape_mean: mean_std(&mine.iter().map(|o| o.mape).collect::<Vec<_>>()).0,
            },
        );
    }
    RunReport {
        space: data.space.to_string(),
        task: task.to_string(),
        method: method.to_string(),
        sampler: opts.sampler.to_string(),
        spearman_mean,
        spearman_std,
        kendall_mean,
        within10_mean,
        mape_mean,
        samples: opts.samples,
        trials: opts.trials,
        seconds,
        seed: opts.seed,
        trial_seeds: (0..opts.trials).map(|t| trial_seed(opts.seed, t)).collect(),
        pretrain_seconds,
        fit_seconds_mean,
        predict_seconds_mean,
        per_device,
        outcomes,
    }
}
