//! `nasflat-agent`: measure models on this board.
//!
//! Machine interface: with `--json`, stdout carries only JSON lines; logs
//! and errors go to stderr. Errors exit with code 2.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use nasflat_agent::dump::RunDump;
use nasflat_agent::runner::{self, RunOptions};
use nasflat_agent::{
    BenchLimits, InputSpec, MeasureOptions, ModelSource, RuntimeChoice, RuntimeKind,
    measure_with_first_run, report,
};
use nasflat_shared::{Arch, SearchSpace};

// build.rs links the `dist` board agent without unwind tables, which is only
// sound when nothing unwinds.
#[cfg(all(no_unwind_tables, not(panic = "abort")))]
compile_error!(
    "the `dist` profile links the agent without unwind tables (agent/build.rs) and needs panic = \"abort\""
);

#[derive(Parser)]
#[command(
    name = "nasflat-agent",
    version,
    about = "Measure neural-network latency on this device with tract or onnxruntime"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Time one model: an ONNX file, or an NB201/FBNet architecture built in-process.
    Measure(MeasureArgs),
    /// Connect to a host and measure what it asks for, until stopped.
    Run(RunArgs),
}

#[derive(Args)]
struct RunArgs {
    /// Host base URL, e.g. http://10.0.0.2:8080.
    #[arg(long)]
    host: String,
    /// Enrolment token given by the host's operator.
    #[arg(long, env = "NASFLAT_TOKEN", hide_env_values = true)]
    token: String,
    /// Device name shown on the host (default: this machine's host name).
    #[arg(long)]
    name: Option<String>,
    /// Where the spool and the device identity are kept.
    #[arg(long, default_value = "nasflat-agent-state")]
    state_dir: PathBuf,
    /// Stop after this many measurements.
    #[arg(long)]
    max_jobs: Option<usize>,
    /// Give up after this many consecutive failed attempts to reach the host (default: never).
    #[arg(long)]
    max_retries: Option<u32>,
    /// Exit when the host has no work instead of polling.
    #[arg(long)]
    exit_when_idle: bool,
    /// Pin measurements to this core.
    #[arg(long)]
    pin: Option<usize>,
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// First retry delay, ms (doubles up to --backoff-max-ms, with jitter).
    #[arg(long, default_value_t = 500)]
    backoff_ms: u64,
    /// Longest retry delay, ms.
    #[arg(long, default_value_t = 60_000)]
    backoff_max_ms: u64,
}

/// Which runtime times the models.
#[derive(Args)]
struct RuntimeArgs {
    /// Runtime: tract (built in) or ort (onnxruntime, from --ort-lib).
    #[arg(long, default_value = "tract", value_parser = parse_runtime)]
    runtime: RuntimeKind,
    /// The onnxruntime shared library (libonnxruntime.so.1.N) for --runtime ort.
    #[arg(long, env = "ORT_DYLIB_PATH")]
    ort_lib: Option<PathBuf>,
}

impl RuntimeArgs {
    fn choice(&self) -> RuntimeChoice {
        RuntimeChoice::new(self.runtime, self.ort_lib.clone())
    }
}

fn parse_runtime(s: &str) -> Result<RuntimeKind, String> {
    s.parse()
}

#[derive(Args)]
struct MeasureArgs {
    /// ONNX file to measure (any model).
    #[arg(conflicts_with_all = ["space"])]
    model: Option<PathBuf>,
    /// Build an architecture of this search space instead (nb201 | fbnet).
    #[arg(long)]
    space: Option<String>,
    /// Architecture string (NB201) or arch key (FBNet).
    #[arg(long, requires = "space", conflicts_with = "index")]
    arch: Option<String>,
    /// Row of the space's latency table.
    #[arg(long, requires = "space")]
    index: Option<usize>,
    /// Batch size of generated models.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Input resolution of generated models (default: the space's own).
    #[arg(long)]
    resolution: Option<usize>,
    /// Input override NAME:SHAPE[:DTYPE], e.g. input:1x3x224x224:f32 (repeatable).
    #[arg(long = "input")]
    inputs: Vec<String>,
    /// Inference threads (tract: more than 1 needs the default `multithread`
    /// feature; ort: the intra-op pool).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Write the first inference's inputs and outputs to this JSON file.
    #[arg(long)]
    dump_output: Option<PathBuf>,
    /// Pin the measuring thread to this core.
    #[arg(long)]
    pin: Option<usize>,
    /// Maximum warm-up runs.
    #[arg(long, default_value_t = 5)]
    warmup_runs: usize,
    /// Maximum warm-up time, ms.
    #[arg(long, default_value_t = 1000)]
    warmup_ms: u64,
    /// Minimum timed runs.
    #[arg(long, default_value_t = 20)]
    min_runs: usize,
    /// Minimum timed duration, ms.
    #[arg(long, default_value_t = 1000)]
    min_ms: u64,
    /// Maximum timed duration, ms.
    #[arg(long, default_value_t = 10_000)]
    max_ms: u64,
    /// Maximum timed runs.
    #[arg(long, default_value_t = 100_000)]
    max_runs: usize,
    /// Sleep between timed runs, ms.
    #[arg(long, default_value_t = 0)]
    cooldown_ms: u64,
    /// Timings of the model at most: one that did not settle, or was
    /// disturbed in a way its clock cannot correct, is repeated.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    attempts: u64,
    /// Seed of random inputs and generated weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON line on stdout instead of a table.
    #[arg(long)]
    json: bool,
    /// Include every run's wall and thread CPU time in the JSON (always
    /// included in the samples sent to a host).
    #[arg(long)]
    raw: bool,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Measure(args) => measure_cmd(args),
        Command::Run(args) => run_cmd(args),
    }
}

/// Log level from `RUST_LOG` (`error`, `warn`, `info`, `debug`, `trace`;
/// default `info`). A plain level rather than per-module directives keeps
/// regex out of the board binary.
fn log_level() -> tracing::Level {
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.trim().parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO)
}

fn run_cmd(args: RunArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(log_level())
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let name = args.name.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "board".into())
    });
    let options = RunOptions {
        host: args.host,
        token: args.token,
        name,
        state_dir: args.state_dir,
        max_jobs: args.max_jobs,
        max_retries: args.max_retries,
        exit_when_idle: args.exit_when_idle,
        backoff: (
            Duration::from_millis(args.backoff_ms.max(1)),
            Duration::from_millis(args.backoff_max_ms.max(args.backoff_ms.max(1))),
        ),
        pin_core: args.pin,
        runtime: args.runtime.choice(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let summary = runtime.block_on(async move {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            // SIGINT (Ctrl-C) and SIGTERM (systemd, docker stop) both stop
            // the loop after the current measurement; the spool is kept.
            let ctrl_c = tokio::signal::ctrl_c();
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = ctrl_c.await;
                }
            }
            tracing::info!("stopping after the current measurement");
            let _ = tx.send(true);
        });
        match runner::run(options, rx).await {
            Err(runner::RunError::Interrupted) => {
                tracing::info!("interrupted; unsent results stay in the spool");
                Ok(runner::RunSummary::default())
            }
            other => other,
        }
    })?;
    tracing::info!(
        measured = summary.measured,
        uploaded = summary.uploaded,
        rejected = summary.rejected,
        "done"
    );
    Ok(())
}

fn measure_cmd(args: MeasureArgs) -> Result<()> {
    let source = match (&args.model, &args.space) {
        (Some(path), None) => ModelSource::File(path.clone()),
        (None, Some(space)) => {
            let space: SearchSpace = space.parse()?;
            let arch = match (&args.arch, args.index) {
                (Some(text), None) => Arch::parse(space, text)?,
                (None, Some(index)) => Arch::from_index(space, index)?,
                _ => bail!("with --space, give exactly one of --arch or --index"),
            };
            ModelSource::Arch {
                arch,
                batch: args.batch,
                resolution: args.resolution,
            }
        }
        _ => bail!("give an ONNX file, or --space with --arch/--index"),
    };
    let inputs = args
        .inputs
        .iter()
        .map(|s| s.parse::<InputSpec>())
        .collect::<Result<Vec<_>, _>>()?;
    let options = MeasureOptions {
        limits: BenchLimits {
            warmup_loops: args.warmup_runs,
            warmup_time: Duration::from_millis(args.warmup_ms),
            min_runs: args.min_runs,
            min_time: Duration::from_millis(args.min_ms),
            max_time: Duration::from_millis(args.max_ms),
            max_runs: args.max_runs,
            cooldown: Duration::from_millis(args.cooldown_ms),
            attempts: usize::try_from(args.attempts).unwrap_or(1),
            ..BenchLimits::default()
        },
        runtime: args.runtime.choice(),
        threads: args.threads.max(1),
        pin_core: args.pin,
        inputs,
        seed: args.seed,
    };
    let (mut sample, first) = measure_with_first_run(&source, &options)?;
    if let Some(path) = &args.dump_output {
        RunDump {
            model: sample.model.clone(),
            runtime: options.runtime.kind().to_string(),
            inputs: first.inputs,
            outputs: first.outputs,
        }
        .write(path)?;
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        if !args.raw {
            sample.timing.times_ms.clear();
            sample.timing.cpu_times_ms.clear();
        }
        let line = serde_json::to_string(&sample).context("serialising the sample")?;
        writeln!(stdout, "{line}")?;
    } else {
        write!(stdout, "{}", report::table(&sample))?;
    }
    Ok(())
}
