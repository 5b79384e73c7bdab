//! `nasflat-host`: a thin CLI over the `nasflat_host` library.

mod demo;
mod nas_cli;
mod nas_evolution;
mod nas_probe;
mod service_cli;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use nasflat_predictor::baselines::Method;
use nasflat_predictor::dataset::SpaceData;
use nasflat_predictor::eval::{self, BlendSpec, EvalOptions, report};
use nasflat_predictor::features::Supplementary;
use nasflat_predictor::model::{
    GnnKind, LossKind, NetworkForm, PredictorConfig, Readout, Recipe, TrainConfig,
};
use nasflat_predictor::partition::{self, EdgeWeight};
use nasflat_predictor::sampler::Sampler;
use nasflat_shared::SearchSpace;
use nasflat_shared::data::{self, Task, TaskSet, paper_tasks};
use rand::SeedableRng;
use rand::rngs::StdRng;

#[derive(Parser)]
#[command(
    name = "nasflat-host",
    version,
    about = "NASFLAT few-shot latency predictor: train, transfer, evaluate"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate predictors and baselines on the paper's few-shot tasks.
    Eval(EvalArgs),
    /// Latency-constrained NAS on a table device: the architecture to deploy under a budget.
    Nas(nas_cli::NasArgs),
    /// Device-set tasks (source/target splits).
    #[command(subcommand)]
    Tasks(TasksCommand),
    /// Retrain a learned encoding (arch2vec, cate) or run the NB201 proxies (zcp).
    Encode(nasflat_encoders::cli::EncodeArgs),
    /// Run the host service: agents register and measure, the host transfers and predicts.
    Serve(service_cli::ServeArgs),
    /// The whole loop on this machine: host + local agent, transfer, Spearman on fresh measurements.
    Demo(service_cli::DemoArgs),
}

#[derive(Subcommand)]
enum TasksCommand {
    /// Split a space's devices into m sources and n targets with low mutual
    /// correlation (paper Algorithm 1: Kernighan-Lin bisection + trimming).
    Generate(GenerateArgs),
}

#[derive(Args)]
struct GenerateArgs {
    /// Search space: nb201 or fbnet.
    #[arg(long)]
    space: SearchSpace,
    /// Number of source (training) devices m.
    #[arg(long)]
    train: usize,
    /// Number of target (test) devices n.
    #[arg(long)]
    test: usize,
    /// Seed of the Kernighan-Lin initial split and of the random baseline.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Edge weights of the bisected graph: negative (-rho, the paper's) or
    /// positive (rho: minimum cut = least source-target correlation).
    #[arg(long, default_value = "negative")]
    weights: EdgeWeight,
    /// Task name in the output file.
    #[arg(long)]
    name: Option<String>,
    /// Random splits averaged for the comparison line.
    #[arg(long, default_value_t = 1000)]
    random_splits: usize,
    /// Write the task file (tasks.json format) here instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct EvalArgs {
    /// Search space (nb201 or fbnet); omitted: every space that has the tasks.
    #[arg(long)]
    space: Option<SearchSpace>,
    /// Task names, comma-separated (ND, N1..N4, NA, FD, F1..F4, FA), or `all`.
    #[arg(long, default_value = "all")]
    task: String,
    /// Task file in tasks.json format (default: the paper's 12 tasks).
    #[arg(long)]
    tasks_file: Option<PathBuf>,
    /// Trials per task.
    #[arg(long, default_value_t = 3)]
    trials: usize,
    /// Target samples k.
    #[arg(long, default_value_t = 20)]
    samples: usize,
    /// Source samples per training device (default: per space, see TrainConfig).
    #[arg(long)]
    source_samples: Option<usize>,
    /// Sample selection for the target: random, params, oracle (reads true
    /// latencies: reference only), <zcp|arch2vec|cate|caz>-<cosine|kmeans|cosine-spread|kmeans-cosine>,
    /// uncertainty or uncertainty:<static sampler>. Default: random; with
    /// `--recipe paper` the paper's final configuration (NB201
    /// caz-kmeans-cosine, FBNet cate-kmeans-cosine).
    #[arg(long)]
    sampler: Option<Sampler>,
    /// Supplementary encoding: none, zcp, cost, all, arch2vec, cate or caz.
    /// Default: cost; with `--recipe paper` the paper's final configuration
    /// (NB201 zcp, FBNet arch2vec).
    #[arg(long)]
    supplementary: Option<Supplementary>,
    /// Graph readout: `output` (the output node's state) or `mean` (every
    /// node's but the input's, as the paper's code). Default: output; with
    /// `--recipe paper`, mean.
    #[arg(long)]
    readout: Option<Readout>,
    /// Network: `text` (as the paper's text describes it) or `code` (as its
    /// released code computes it: shared node embeddings, ops and
    /// hardware as gates, the op GNN's output state sent to every node,
    /// DGF and GAT averaged per layer, attention over every node, edgeless
    /// FBNet graphs; ops only, so no per-node costs).
    /// docs/experiments/paper_recipe.md. Default: text; with `--recipe paper`, code.
    #[arg(long)]
    network: Option<NetworkForm>,
    /// Training recipe: `served` (what `serve` uses) or `paper` (the
    /// paper's released code: cosine rate decay, mixed-device pretraining
    /// batches, 150 epochs x 25 / 800 source samples, last-4-epoch readout,
    /// embedded supplementary input, no per-node costs;
    /// docs/experiments/paper_recipe.md).
    #[arg(long, default_value = "served")]
    recipe: Recipe,
    /// Folder of retrained encodings, read instead of the ones compiled
    /// into this binary (default: $NASFLAT_ENCODINGS_DIR when set).
    #[arg(long)]
    encodings_dir: Option<PathBuf>,
    /// Disable the operation-wise hardware embedding.
    #[arg(long)]
    no_ophw: bool,
    /// Disable hardware-embedding initialisation from the nearest source.
    #[arg(long)]
    no_hw_init: bool,
    /// Disable per-node analytic cost features.
    #[arg(long)]
    no_node_costs: bool,
    /// Main GNN: dgf, gat or ensemble.
    #[arg(long, default_value = "ensemble")]
    gnn: GnnKind,
    /// Width of the hardware embedding (default 96, Table 20's hidden
    /// dim; the paper's code uses 8).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    hw_dim: Option<u16>,
    /// Width of the op embedding (default 48; the paper's code uses 40
    /// when the hardware embedding is per node).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    op_dim: Option<u16>,
    /// Loss: hinge or mse.
    #[arg(long)]
    loss: Option<LossKind>,
    /// Methods: nasflat, flops, params, nearest, ridge, help, scratch or all (comma-separated).
    #[arg(long, default_value = "nasflat")]
    method: String,
    /// Base seed; trial t uses seed + t.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Pretraining epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Transfer epochs.
    #[arg(long)]
    transfer_epochs: Option<usize>,
    /// Pretraining learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Transfer learning rate.
    #[arg(long)]
    transfer_lr: Option<f64>,
    /// Batch size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Epochs of the HELP-style MLP baseline's pretraining (method `help`).
    #[arg(long, default_value_t = 40)]
    help_mlp_epochs: usize,
    /// How the weight of the linear stack (additive cost model + source
    /// regression) blended into NASFLAT's GNN in log-ms space is set: a
    /// weight in [0, 1] (0 = the paper's predictor alone; 0.85 is served),
    /// `loo` (per target by leave-one-out on the k samples,
    /// one-standard-error rule), `loo-min` (the same without the rule) or
    /// `legacy` (0.85 and the stack rules chosen on the test tasks, the
    /// served predictor before issue 15). Comma-separated values evaluate
    /// several blends from one pretraining (reported as `nasflat@<value>`).
    #[arg(long, default_value = "0.85", value_delimiter = ',')]
    blend: Vec<BlendSpec>,
    /// Write the runs as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    /// Trials run side by side, one thread each (default: the CPU count;
    /// results are the same for any value).
    #[arg(long)]
    jobs: Option<usize>,
}

fn parse_methods(text: &str) -> Result<Vec<Method>> {
    if text.eq_ignore_ascii_case("all") {
        return Ok(Method::ALL.to_vec());
    }
    text.split(',')
        .map(|m| m.trim().parse::<Method>().map_err(anyhow::Error::from))
        .collect()
}

/// The tasks of `spec` (`all` or comma-separated names) per space, in the
/// spaces' order, restricted to `only` when given. A name found in no
/// (allowed) space is an error naming it.
fn select_tasks(
    task_set: &TaskSet,
    spec: &str,
    only: Option<SearchSpace>,
) -> Result<Vec<(SearchSpace, Vec<String>)>> {
    let spaces: Vec<SearchSpace> = match only {
        Some(s) => vec![s],
        None => SearchSpace::ALL.to_vec(),
    };
    let all = spec.trim() == "all";
    let names: Vec<&str> = spec
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if !all {
        if names.is_empty() {
            bail!("--task: no task named (give names such as N1,F2 or `all`)");
        }
        let unknown: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| spaces.iter().all(|&s| task_set.task(s, n).is_err()))
            .collect();
        if !unknown.is_empty() {
            let within = only.map_or(String::new(), |s| format!(" in {}", s.name()));
            bail!(
                "unknown task{} `{}`{within}",
                if unknown.len() > 1 { "s" } else { "" },
                unknown.join("`, `")
            );
        }
    }
    Ok(spaces
        .into_iter()
        .map(|s| {
            if all {
                return (s, task_set.tasks(s).map(|(n, _)| n.to_string()).collect());
            }
            let mut mine: Vec<String> = Vec::new();
            for n in &names {
                if task_set.task(s, n).is_ok() && !mine.iter().any(|m| m == n) {
                    mine.push(n.to_string());
                }
            }
            (s, mine)
        })
        .filter(|(_, t)| !t.is_empty())
        .collect())
}

fn run_eval(args: EvalArgs) -> Result<()> {
    let task_set = match &args.tasks_file {
        Some(path) => TaskSet::from_path(path)?,
        None => paper_tasks()?,
    };
    let methods = parse_methods(&args.method)?;
    let selected = select_tasks(&task_set, &args.task, args.space)?;
    if selected.is_empty() {
        bail!("no tasks to evaluate (task file or --space has none)");
    }
    let mut all_runs = Vec::new();
    for (space, tasks) in selected {
        let mut train = TrainConfig::for_recipe(space, args.recipe);
        if let Some(v) = args.source_samples {
            train.source_samples = v;
        }
        if let Some(v) = args.epochs {
            train.epochs = v;
        }
        if let Some(v) = args.transfer_epochs {
            train.transfer_epochs = v;
        }
        if let Some(v) = args.lr {
            train.lr = v;
        }
        if let Some(v) = args.transfer_lr {
            train.transfer_lr = v;
        }
        if let Some(v) = args.batch_size {
            train.batch_size = v;
        }
        if let Some(v) = args.loss {
            train.loss = v;
        }
        train.hw_init = !args.no_hw_init;
        let base = PredictorConfig::for_recipe(args.recipe);
        let network = args.network.unwrap_or(base.network);
        let mut predictor = PredictorConfig {
            gnn_kind: args.gnn,
            ophw: !args.no_ophw,
            node_costs: base.node_costs && !args.no_node_costs && network == NetworkForm::Text,
            readout: args.readout.unwrap_or(base.readout),
            network,
            hw_dim: args.hw_dim.map_or(base.hw_dim, usize::from),
            op_dim: args.op_dim.map_or(base.op_dim, usize::from),
            ..base
        };
        predictor.supplementary = match (args.supplementary, args.recipe) {
            (Some(s), _) => s,
            (None, Recipe::Paper) => Supplementary::paper_final(space),
            (None, Recipe::Served) => predictor.supplementary,
        };
        let sampler = match (args.sampler, args.recipe) {
            (Some(s), _) => s,
            (None, Recipe::Paper) => Sampler::paper_final(space),
            (None, Recipe::Served) => Sampler::Random,
        };
        let data = SpaceData::load_with(space, args.encodings_dir.as_deref())
            .with_context(|| format!("loading {space}"))?;
        for note in data.encodings.notes() {
            eprintln!("note: {note}");
        }
        let opts = EvalOptions {
            tasks,
            task_set: task_set.clone(),
            trials: args.trials,
            samples: args.samples,
            seed: args.seed,
            sampler,
            methods: methods.clone(),
            predictor,
            train,
            help_mlp_epochs: args.help_mlp_epochs,
            blend: args.blend.clone(),
            quiet: args.quiet,
            jobs: args
                .jobs
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)),
        };
        let seeds: Vec<String> = (0..opts.trials)
            .map(|t| eval::trial_seed(opts.seed, t).to_string())
            .collect();
        eprintln!(
            "{space}: tasks {:?}, recipe {}, network {}, sampler {}, supplementary {}, readout {}, trial seeds [{}], train {:?}",
            opts.tasks,
            opts.train.recipe,
            opts.predictor.network,
            opts.sampler,
            opts.predictor.supplementary,
            opts.predictor.readout,
            seeds.join(", "),
            opts.train
        );
        if opts.sampler.is_oracle() {
            eprintln!(
                "note: sampler `oracle` reads each target's true latencies before choosing; \
                 its results are a reference, not an achievable protocol"
            );
        }
        all_runs.extend(eval::evaluate(&data, &opts)?);
    }
    if args.sampler.is_some_and(Sampler::is_oracle) {
        println!("(sampler `oracle`: uses the targets' true latencies; reference only)\n");
    }
    println!("{}", report::markdown(&all_runs));
    println!("{}", report::timings(&all_runs));
    if let Some(path) = &args.json {
        report::write_json(&all_runs, path)?;
    }
    Ok(())
}

fn run_tasks_generate(args: GenerateArgs) -> Result<()> {
    let table = data::latency_table(args.space)?;
    let names = table.names().to_vec();
    let devices = names.len();
    if args.train == 0 || args.test == 0 || args.train + args.test > devices {
        bail!(
            "--train {} --test {}: need at least one of each and at most {devices} in all \
             ({} has {devices} devices)",
            args.train,
            args.test,
            args.space
        );
    }
    let columns: Vec<usize> = (0..devices).collect();
    let rho = partition::device_correlations(&table, &columns);
    let mut rng = StdRng::seed_from_u64(args.seed);
    let split = partition::generate(&rho, args.train, args.test, args.weights, &mut rng)?;
    let mut random_rng = StdRng::seed_from_u64(args.seed.wrapping_add(1));
    let (random_mean, random_std) = partition::random_baseline(
        &rho,
        args.train,
        args.test,
        args.random_splits.max(1),
        &mut random_rng,
    )?;
    let pick = |idx: &[usize]| idx.iter().map(|&i| names[i].clone()).collect::<Vec<_>>();
    let task = Task {
        task_index: None,
        train: pick(&split.train),
        test: pick(&split.test),
    };
    let name = args.name.clone().unwrap_or_else(|| {
        format!(
            "G{}-{}x{}-s{}",
            if args.space == SearchSpace::Nb201 {
                "N"
            } else {
                "F"
            },
            args.train,
            args.test,
            args.seed
        )
    });
    let mut tasks = std::collections::BTreeMap::new();
    tasks.insert(name.clone(), task);
    let mut spaces = std::collections::BTreeMap::new();
    spaces.insert(args.space, tasks);
    let json = serde_json::to_string_pretty(&TaskSet(spaces))?;
    eprintln!(
        "{}: task {name} (seed {}, {} weights): {} sources, {} targets",
        args.space, args.seed, args.weights, args.train, args.test
    );
    eprintln!(
        "mean train-test Spearman: {:.3} (Kernighan-Lin + trimming) vs {:.3} ± {:.3} \
         ({} random splits of the same sizes, seed {})",
        split.mean_cross,
        random_mean,
        random_std,
        args.random_splits.max(1),
        args.seed.wrapping_add(1)
    );
    match &args.output {
        Some(path) => {
            std::fs::write(path, json + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => println!("{json}"),
    }
    Ok(())
}

/// Candle and glibc read their settings from the environment only, at
/// start-up: re-execute ourselves with them set
/// ([`nasflat_predictor::run_env`]).
fn ensure_single_thread() -> Option<ExitCode> {
    if nasflat_predictor::run_env::is_configured() {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let mut command = std::process::Command::new(exe);
    command.args(std::env::args_os().skip(1));
    nasflat_predictor::run_env::configure(&mut command);
    // Replace this process rather than wait for a child: signals (Ctrl-C,
    // SIGTERM, a supervisor's SIGKILL) and the process id then belong to
    // the process that does the work (`serve` must not outlive its parent).
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let error = command.exec();
        eprintln!("warning: cannot re-execute with RAYON_NUM_THREADS=1: {error}");
        return None;
    }
    #[allow(unreachable_code)]
    let status = command.status().ok()?;
    Some(ExitCode::from(
        status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(2),
    ))
}

fn main() -> ExitCode {
    if let Some(code) = ensure_single_thread() {
        return code;
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Eval(args) => run_eval(args),
        Command::Nas(args) => nas_cli::run(args),
        Command::Tasks(TasksCommand::Generate(args)) => run_tasks_generate(args),
        Command::Encode(args) => nasflat_encoders::cli::run(&args)
            .map(|report| print!("{report}"))
            .map_err(anyhow::Error::from),
        Command::Serve(args) => service_cli::serve(args),
        Command::Demo(args) => service_cli::demo(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
