//! `nasflat-host`: a thin CLI over the `nasflat_host` library.

mod service_cli;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use nasflat_host::baselines::Method;
use nasflat_host::dataset::SpaceData;
use nasflat_host::eval::{self, EvalOptions, report};
use nasflat_host::features::Supplementary;
use nasflat_host::predictor::{GnnKind, LossKind, PredictorConfig, TrainConfig};
use nasflat_host::sampler::Sampler;
use nasflat_shared::SearchSpace;
use nasflat_shared::data::{TaskSet, paper_tasks};

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
    /// Run the host service: agents register and measure, the host transfers and predicts.
    Serve(service_cli::ServeArgs),
    /// The whole loop on this machine: host + local agent, transfer, Spearman on fresh measurements.
    Demo(service_cli::DemoArgs),
}

#[derive(Args)]
struct EvalArgs {
    /// Search space (nb201 or fbnet); omitted: every space that has the tasks.
    #[arg(long)]
    space: Option<SearchSpace>,
    /// Task name (ND, N1..N4, NA, FD, F1..F4, FA) or `all`.
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
    /// Sample selection for the target: random or params.
    #[arg(long, default_value = "random")]
    sampler: Sampler,
    /// Supplementary encoding: none, zcp, cost or all.
    #[arg(long)]
    supplementary: Option<Supplementary>,
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
    /// Epochs of the HELP-style baseline's pretraining.
    #[arg(long, default_value_t = 40)]
    help_epochs: usize,
    /// Weight of the ridge (sources + analytic cost) prediction blended into
    /// NASFLAT's, in log-ms space; 0 = the paper's predictor alone.
    #[arg(long, default_value_t = 0.5)]
    blend: f64,
    /// Write the runs as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

fn parse_methods(text: &str) -> Result<Vec<Method>> {
    if text.eq_ignore_ascii_case("all") {
        return Ok(Method::ALL.to_vec());
    }
    text.split(',')
        .map(|m| m.trim().parse::<Method>().map_err(anyhow::Error::from))
        .collect()
}

fn run_eval(args: EvalArgs) -> Result<()> {
    let task_set = match &args.tasks_file {
        Some(path) => TaskSet::from_path(path)?,
        None => paper_tasks()?,
    };
    let methods = parse_methods(&args.method)?;
    let spaces: Vec<SearchSpace> = match args.space {
        Some(s) => vec![s],
        None => SearchSpace::ALL
            .into_iter()
            .filter(|&s| args.task == "all" || task_set.task(s, &args.task).is_ok())
            .collect(),
    };
    if spaces.is_empty() {
        bail!("unknown task `{}`", args.task);
    }
    let mut all_runs = Vec::new();
    for space in spaces {
        let tasks: Vec<String> = if args.task == "all" {
            task_set.tasks(space).map(|(n, _)| n.to_string()).collect()
        } else {
            task_set.task(space, &args.task)?;
            vec![args.task.clone()]
        };
        let mut train = TrainConfig::for_space(space);
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
        let mut predictor = PredictorConfig {
            gnn_kind: args.gnn,
            ophw: !args.no_ophw,
            node_costs: !args.no_node_costs,
            ..PredictorConfig::default()
        };
        if let Some(s) = args.supplementary {
            predictor.supplementary = s;
        }
        let data = SpaceData::load(space).with_context(|| format!("loading {space}"))?;
        let opts = EvalOptions {
            tasks,
            task_set: task_set.clone(),
            trials: args.trials,
            samples: args.samples,
            seed: args.seed,
            sampler: args.sampler,
            methods: methods.clone(),
            predictor,
            train,
            help_epochs: args.help_epochs,
            blend: args.blend,
            quiet: args.quiet,
        };
        let seeds: Vec<String> = (0..opts.trials)
            .map(|t| eval::trial_seed(opts.seed, t).to_string())
            .collect();
        eprintln!(
            "{space}: tasks {:?}, trial seeds [{}], train {:?}",
            opts.tasks,
            seeds.join(", "),
            opts.train
        );
        all_runs.extend(eval::evaluate(&data, &opts)?);
    }
    println!("{}", report::markdown(&all_runs));
    println!("{}", report::timings(&all_runs));
    if let Some(path) = &args.json {
        report::write_json(&all_runs, path)?;
    }
    Ok(())
}

/// Candle reads its thread count from the environment only; small models
/// train fastest on one thread (STACK.md), so re-execute ourselves with it set.
/// glibc's default mmap threshold makes every ~1 MB activation a fresh
/// mmap + page faults (half the run time in the kernel); raising it keeps
/// those buffers on the heap.
fn ensure_single_thread() -> Option<ExitCode> {
    if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let mut command = std::process::Command::new(exe);
    command
        .args(std::env::args_os().skip(1))
        .env("RAYON_NUM_THREADS", "1");
    if std::env::var_os("GLIBC_TUNABLES").is_none() {
        command.env(
            "GLIBC_TUNABLES",
            "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456",
        );
    }
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
