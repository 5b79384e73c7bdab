//! Predictor speed (issue 4, section 6), one run so the ratios are comparable:
//!
//! - `pretrain_1_epoch`: one pretraining epoch on a paper task's sources at
//!   the space's default source samples (a task's pretraining = this x the
//!   default epochs; the eval JSON records whole pretrainings too);
//! - `transfer_k20`: transfer to one target with 20 samples (default epochs);
//! - `predict_all`: the GNN's batch prediction of every arch of the space;
//! - `stacked_fit_predict_all`: the linear stack (additive + source ridge)
//!   fitted on 20 samples and predicting every arch;
//! - `fewshot_fit_exhaustive_search`: the served pipeline fitted on 20
//!   samples (transfer + stack) and the exhaustive risk-aware search of the
//!   whole space under one budget (the NAS answer's wall clock).
//!
//! - `fewshot_fit_evolution_search` (FBNet): the same fit and the
//!   evolutionary search over FBNet's whole space (3,000 architectures).
//!
//! - `paper_pretrain_1_epoch/<task>`: one epoch of the paper recipe's
//!   pretraining (`--recipe paper`: 25 / 800 source samples per device,
//!   128-graph mixed batches, the code's network, each step's two halves
//!   on their own cores); x 150 = a task's pretraining; `/1_thread`: the
//!   same on one thread;
//! - `paper_step_dense` / `paper_step_memo`: forward + backward of one
//!   128-graph mixed-device batch of the text's network through the dense
//!   forward and through the memoised pass (same scores, see
//!   `predictor/tests/recipe_tests.rs`); `paper_step_code_network`: the
//!   same batch through the code's network, which the recipe trains (on
//!   FBNet each graph grouped into its distinct ops);
//!   `paper_step_code_network_dense`: that step through the dense forward;
//!   `paper_step_code_network_halves/{1,2}_threads`: that step in the
//!   recipe's two halves, on one thread and on two.
//!
//! `cargo bench -p nasflat-predictor --bench predictor`

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group};
use nasflat_predictor::baselines::{SourceMatrix, StackRules, stacked_predict};
use nasflat_predictor::dataset::SpaceData;
use nasflat_predictor::features::Supplementary;
use nasflat_predictor::fewshot::{self, FewShot};
use nasflat_predictor::model::{
    GraphBatch, NetworkForm, PredictorConfig, Readout, Recipe, TrainConfig,
};
use nasflat_predictor::nas::arch_latency::{ArchLatency, PipelineScorer};
use nasflat_predictor::nas::evolution::{EvolutionConfig, evolve};
use nasflat_predictor::nas::{self, Constraint, Mode, Objective, Problem};
use nasflat_predictor::step::{PAPER_STEP_PARTS, StepBatch, split_gradients};
use nasflat_predictor::train;
use nasflat_predictor::train::TransferOptions;
use nasflat_predictor::{Predictor, Samples};
use nasflat_shared::SearchSpace;
use nasflat_shared::data::paper_tasks;

fn space_benches(c: &mut Criterion, space: SearchSpace, task: &str) {
    let Ok(data) = SpaceData::load(space) else {
        eprintln!("cannot load {space}");
        return;
    };
    let Ok(tasks) = paper_tasks() else { return };
    let Ok(task) = tasks.task(space, task) else {
        return;
    };
    let config = PredictorConfig::default();
    let train_config = TrainConfig::for_space(space);
    let target = task.test[0].clone();
    let Ok(column) = data.device_index(&target) else {
        return;
    };
    let valid = data.valid_rows(column);
    let archs: Vec<usize> = valid
        .iter()
        .step_by(valid.len() / 20)
        .take(20)
        .copied()
        .collect();
    let ms: Vec<f64> = archs
        .iter()
        .filter_map(|&a| data.latency(column, a))
        .collect();
    let all: Vec<usize> = (0..data.rows()).collect();

    let mut group = c.benchmark_group(format!("{space}"));
    group.sample_size(10);
    let mut one_epoch = train_config.clone();
    one_epoch.epochs = 1;
    group.bench_function("pretrain_1_epoch", |b| {
        b.iter(|| train::pretrain(&data, &task.train, &config, &one_epoch, 0, 1, None))
    });
    let Ok(pretrained) = train::pretrain(&data, &task.train, &config, &one_epoch, 0, 1, None)
    else {
        return;
    };
    group.bench_function("transfer_k20", |b| {
        b.iter(|| train::transfer(&pretrained, &data, &target, &archs, &train_config, 0))
    });
    nas_bench(&mut group, &data, &pretrained, &task.train, &target, &archs);
    group.bench_function("predict_all", |b| {
        b.iter(|| pretrained.predict(&data.features, &all, 0))
    });
    let Ok(sources) = SourceMatrix::new(&data, &task.train) else {
        return;
    };
    group.bench_function("stacked_fit_predict_all", |b| {
        b.iter(|| stacked_predict(&data, &sources, &archs, &ms, &all, &StackRules::SERVED))
    });
    group.finish();
}

/// Transfer + exhaustive search at the served blend, budget = the median
/// latency of the samples (any budget costs the same: every arch is scored).
fn nas_bench(
    group: &mut BenchmarkGroup<'_, WallTime>,
    data: &SpaceData,
    pretrained: &Predictor,
    sources: &[String],
    target: &str,
    archs: &[usize],
) {
    let (Ok(samples), Ok(matrix)) = (
        Samples::from_table(data, target, archs),
        SourceMatrix::new(data, sources),
    ) else {
        return;
    };
    let objective = match data.space {
        SearchSpace::Nb201 => Objective::Cifar100,
        SearchSpace::Fbnet => Objective::Flops,
    };
    let Ok(scores) = objective.scores(data) else {
        return;
    };
    let mut ms = samples.latencies();
    ms.sort_by(f64::total_cmp);
    let Ok(budget) = Constraint::new(ms[ms.len() / 2], 0.1) else {
        return;
    };
    let opts = fewshot::Options::served(TransferOptions {
        train: TrainConfig::for_space(data.space),
        seed: 0,
        progress: None,
    });
    let pipeline = FewShot {
        pretrained,
        data,
        sources: &matrix,
    };
    let problem = Problem {
        objective: &scores,
        candidates: &[],
    };
    group.bench_function("fewshot_fit_exhaustive_search", |b| {
        b.iter(|| {
            let fitted = pipeline.fit(target, &samples, &opts)?;
            nas::search(&fitted, &problem, &budget, Mode::Exhaustive)
        })
    });
    if data.space == SearchSpace::Fbnet {
        evolution_bench(group, data, &pipeline, target, &samples, &opts, &budget);
    }
}

/// FBNet: transfer + the evolutionary search over the whole space at the
/// default settings (3,000 distinct architectures scored).
fn evolution_bench(
    group: &mut BenchmarkGroup<'_, WallTime>,
    data: &SpaceData,
    pipeline: &FewShot<'_>,
    target: &str,
    samples: &Samples,
    opts: &fewshot::Options,
    budget: &Constraint,
) {
    let config = EvolutionConfig::default();
    group.bench_function("fewshot_fit_evolution_search", |b| {
        b.iter(|| {
            let fitted = pipeline.fit(target, samples, opts)?;
            let latency = ArchLatency::new(&fitted, data, fitted.blend())?;
            let scorer = PipelineScorer {
                latency: &latency,
                objective: Objective::Flops,
            };
            evolve(&scorer, budget, &config, nas::RANKED_LIMIT)
        })
    });
}

/// The paper recipe's pretraining cost: one epoch per task (x 150 = the
/// task's pretraining), and one training step dense against memoised.
fn paper_benches(c: &mut Criterion, space: SearchSpace, tasks: &[&str]) {
    let Ok(data) = SpaceData::load(space) else {
        eprintln!("cannot load {space}");
        return;
    };
    let Ok(task_set) = paper_tasks() else { return };
    let config = PredictorConfig {
        supplementary: Supplementary::paper_final(space),
        ..PredictorConfig::for_recipe(Recipe::Paper)
    };
    let mut one_epoch = TrainConfig::for_recipe(space, Recipe::Paper);
    one_epoch.epochs = 1;
    let mut group = c.benchmark_group(format!("{space}"));
    group.sample_size(10);
    for name in tasks {
        let Ok(task) = task_set.task(space, name) else {
            return;
        };
        // The product's setting (every core: each step's two parts side by
        // side) and one thread, in the same run.
        let cores = nasflat_predictor::parallel::cores_per_job(1);
        for (suffix, threads) in [("", cores), ("/1_thread", 1)] {
            group.bench_function(format!("paper_pretrain_1_epoch/{name}{suffix}"), |b| {
                b.iter(|| {
                    train::pretrain(&data, &task.train, &config, &one_epoch, 0, threads, None)
                })
            });
        }
    }
    let devices: Vec<String> = (0..5).map(|d| format!("d{d}")).collect();
    let supp = data.features.supplementary_dim(config.supplementary);
    let Ok(model) = Predictor::new(&config, space, &devices, supp, 0) else {
        return;
    };
    let rows: Vec<usize> = (0..128).map(|i| i * 37 % data.rows()).collect();
    let rows_devices: Vec<usize> = (0..128).map(|i| i % devices.len()).collect();
    // The memoised step runs the network of the paper's text; with the
    // output-node readout (before session 14) it reads one node's cone.
    let text = PredictorConfig {
        network: NetworkForm::Text,
        ..config.clone()
    };
    let Ok(text_model) = Predictor::new(&text, space, &devices, supp, 0) else {
        return;
    };
    group.bench_function("paper_step_dense", |b| {
        b.iter(|| {
            let batch = GraphBatch::build_mixed(&data.features, &text, &rows, &rows_devices)?;
            text_model.forward(&batch)?.sqr()?.mean_all()?.backward()?;
            Ok::<(), Box<dyn std::error::Error>>(())
        })
    });
    let output = PredictorConfig {
        readout: Readout::Output,
        ..text.clone()
    };
    let Ok(output_model) = Predictor::new(&output, space, &devices, supp, 0) else {
        return;
    };
    // The recipe's network since session 15, the code's, has no memoised
    // form: `forward_rows` runs it densely on NB201 and on each graph's
    // distinct ops on edgeless FBNet; `_dense` is the same step through
    // the dense forward, every node state per graph.
    group.bench_function("paper_step_code_network_dense", |b| {
        b.iter(|| {
            let batch = GraphBatch::build_mixed(&data.features, &config, &rows, &rows_devices)?;
            model.forward(&batch)?.sqr()?.mean_all()?.backward()?;
            Ok::<(), Box<dyn std::error::Error>>(())
        })
    });
    for (name, model) in [
        ("paper_step_memo", &text_model),
        ("paper_step_memo_output_readout", &output_model),
        ("paper_step_code_network", &model),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let scores = model.forward_rows(&data.features, &rows, &rows_devices)?;
                scores.sqr()?.mean_all()?.backward()?;
                Ok::<(), Box<dyn std::error::Error>>(())
            })
        });
    }
    // The same step in the recipe's two halves (`step::split_gradients`),
    // on one thread and side by side.
    let batch = StepBatch {
        features: &data.features,
        rows: &rows,
        devices: &rows_devices,
    };
    for threads in [1, 2] {
        group.bench_function(
            format!("paper_step_code_network_halves/{threads}_threads"),
            |b| {
                b.iter(|| {
                    split_gradients(&model, &batch, PAPER_STEP_PARTS, threads, |s| {
                        Ok(s.sqr()?.mean_all()?)
                    })
                })
            },
        );
    }
    group.finish();
}

fn predictor(c: &mut Criterion) {
    space_benches(c, SearchSpace::Nb201, "N1");
    space_benches(c, SearchSpace::Fbnet, "F1");
    paper_benches(c, SearchSpace::Nb201, &["N1", "NA"]);
    paper_benches(c, SearchSpace::Fbnet, &["F1", "FA"]);
}

criterion_group!(benches, predictor);

/// Benchmarks the configuration `nasflat-host` runs in: the environment of
/// [`nasflat_predictor::run_env`] (candle on one thread per op, glibc's
/// malloc keeping activations on the heap), whole-space prediction
/// splitting its passes over the cores itself.
fn main() {
    if !nasflat_predictor::run_env::is_configured()
        && let Ok(exe) = std::env::current_exe()
    {
        // Candle reads the variable once, at its first op: run ourselves again with it set.
        let mut command = std::process::Command::new(exe);
        command.args(std::env::args_os().skip(1));
        match nasflat_predictor::run_env::configure(&mut command).status() {
            Ok(status) => std::process::exit(status.code().unwrap_or(1)),
            Err(error) => eprintln!("cannot re-run with RAYON_NUM_THREADS=1 ({error}); continuing"),
        }
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
