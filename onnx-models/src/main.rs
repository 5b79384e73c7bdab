//! `nasflat-onnx`: export NB201 / FBNet architectures as ONNX files, or print
//! their parameter and FLOP counts.
//!
//! Errors are printed with their full cause chain and exit with code 2, like
//! clap's own usage errors, so scripts can tell "bad request" from success.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use nasflat_onnx::{
    FbnetConfig, FlopsConvention, ModelProto, Nb201Config, Nb201Dataset, WeightInit, encode,
    fbnet_model, model_cost, nb201_model,
};
use nasflat_shared::{FbnetArch, FbnetVariant, Nb201Arch, SearchSpace};

#[derive(Parser)]
#[command(
    name = "nasflat-onnx",
    version,
    about = "ONNX models of NB201 and FBNet architectures"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write one architecture (or all of a space) as .onnx files.
    Export(ExportArgs),
    /// Print the parameter and FLOP counts of one architecture.
    Info(InfoArgs),
}

/// Which network, at which input shape.
#[derive(Args)]
struct ModelArgs {
    /// Search space: nb201 or fbnet.
    #[arg(long)]
    space: SearchSpace,
    /// Architecture string (NB201 `|op~0|+|...|`) or FBNet key (`7_8_..._5`).
    #[arg(long, conflicts_with = "index")]
    arch: Option<String>,
    /// Row of the benchmark table (NB201 API index, or FBNet table row).
    #[arg(long)]
    index: Option<usize>,
    /// Batch size of the input.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Input height and width [default: the dataset's].
    #[arg(long)]
    resolution: Option<usize>,
    /// NB201: cifar10, cifar100, imagenet16_120; FBNet: cifar100, imagenet.
    #[arg(long)]
    dataset: Option<String>,
}

#[derive(Args)]
struct ExportArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Export every architecture of the space's table (needs --out-dir).
    #[arg(long, conflicts_with_all = ["arch", "index", "output"], requires = "out_dir")]
    all: bool,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output file.
    #[arg(short, long, required_unless_present = "all")]
    output: Option<PathBuf>,
    /// Output directory for --all.
    #[arg(long, requires = "all")]
    out_dir: Option<PathBuf>,
    /// With --all: only the first N architectures of the table.
    #[arg(long, requires = "all")]
    limit: Option<usize>,
}

#[derive(Args)]
struct InfoArgs {
    #[command(flatten)]
    model: ModelArgs,
}

/// A resolved request: space-specific arch and build options.
enum Request {
    Nb201(Nb201Arch, Nb201Config),
    Fbnet(FbnetArch, FbnetConfig),
}

impl Request {
    fn build(&self) -> nasflat_onnx::Result<ModelProto> {
        match self {
            Request::Nb201(arch, config) => nb201_model(arch, config),
            Request::Fbnet(arch, config) => fbnet_model(arch, config),
        }
    }

    fn describe(&self) -> (String, Option<usize>) {
        match self {
            Request::Nb201(arch, _) => (arch.to_string(), Some(arch.index())),
            Request::Fbnet(arch, _) => (arch.to_string(), arch.index()),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Export(args) => export(args),
        Command::Info(args) => info(&args.model),
    }
}

fn nb201_config(model: &ModelArgs, weights: WeightInit) -> anyhow::Result<Nb201Config> {
    let dataset = match &model.dataset {
        Some(name) => name.parse::<Nb201Dataset>().context("invalid --dataset")?,
        None => Nb201Dataset::Cifar10,
    };
    let config = Nb201Config {
        dataset,
        batch: model.batch,
        resolution: model.resolution,
        weights,
    };
    config.validate().context("invalid model options")?;
    Ok(config)
}

fn fbnet_config(model: &ModelArgs, weights: WeightInit) -> anyhow::Result<FbnetConfig> {
    let variant = match model.dataset.as_deref() {
        None | Some("cifar100") => FbnetVariant::Cifar100,
        Some("imagenet") => FbnetVariant::Imagenet,
        Some(other) => bail!(
            "invalid --dataset: unknown FBNet variant `{other}` (expected one of: cifar100, imagenet)"
        ),
    };
    let config = FbnetConfig {
        variant,
        batch: model.batch,
        resolution: model.resolution,
        weights,
    };
    config.validate().context("invalid model options")?;
    Ok(config)
}

/// Resolves `--space` with `--arch` or `--index` into one request.
fn request(model: &ModelArgs, weights: WeightInit) -> anyhow::Result<Request> {
    if model.arch.is_none() && model.index.is_none() {
        bail!("missing architecture: give --arch STR or --index N");
    }
    Ok(match model.space {
        SearchSpace::Nb201 => {
            let config = nb201_config(model, weights)?;
            let arch = match (&model.arch, model.index) {
                (Some(arch), _) => arch.parse::<Nb201Arch>().context("invalid --arch")?,
                (None, index) => {
                    Nb201Arch::from_index(index.unwrap_or_default()).context("invalid --index")?
                }
            };
            Request::Nb201(arch, config)
        }
        SearchSpace::Fbnet => {
            let config = fbnet_config(model, weights)?;
            let arch = match (&model.arch, model.index) {
                (Some(arch), _) => arch.parse::<FbnetArch>().context("invalid --arch")?,
                (None, index) => {
                    FbnetArch::from_index(index.unwrap_or_default()).context("invalid --index")?
                }
            };
            Request::Fbnet(arch, config)
        }
    })
}

fn export(args: ExportArgs) -> anyhow::Result<()> {
    let weights = WeightInit::Random { seed: args.seed };
    if args.all {
        let dir = args
            .out_dir
            .as_deref()
            .context("--all needs --out-dir DIR")?;
        return export_all(&args.model, weights, dir, args.limit);
    }
    let output = args.output.as_deref().context("missing -o FILE")?;
    let model = request(&args.model, weights)?.build()?;
    write_model(output, &model)
}

fn write_model(path: &Path, model: &ModelProto) -> anyhow::Result<()> {
    std::fs::write(path, encode(model)).with_context(|| format!("cannot write {}", path.display()))
}

/// Exports every table architecture on all cores; files are named by index
/// (`nb201_00000.onnx`, `fbnet_0000.onnx`) so they sort like the tables.
fn export_all(
    model: &ModelArgs,
    weights: WeightInit,
    dir: &Path,
    limit: Option<usize>,
) -> anyhow::Result<()> {
    if model.arch.is_some() || model.index.is_some() {
        bail!("--all exports every architecture; drop --arch/--index");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (nb201, fbnet, count) = match model.space {
        SearchSpace::Nb201 => (
            Some(nb201_config(model, weights)?),
            None,
            Nb201Arch::all().len(),
        ),
        SearchSpace::Fbnet => (
            None,
            Some(fbnet_config(model, weights)?),
            FbnetArch::table().len(),
        ),
    };
    let count = limit.map_or(count, |n| n.min(count));
    let job = |i: usize| -> anyhow::Result<()> {
        let (model, name) = match (&nb201, &fbnet) {
            (Some(config), _) => (
                nb201_model(&Nb201Arch::from_index(i)?, config)?,
                format!("nb201_{i:05}.onnx"),
            ),
            (_, Some(config)) => (
                fbnet_model(&FbnetArch::from_index(i)?, config)?,
                format!("fbnet_{i:04}.onnx"),
            ),
            (None, None) => bail!("no configuration for space {}", model.space),
        };
        write_model(&dir.join(name), &model)
    };
    let start = Instant::now();
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            return Ok(());
                        }
                        job(i)?;
                    }
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .map_err(|_| anyhow::anyhow!("an export worker panicked"))?
        })
    })?;
    eprintln!(
        "wrote {count} {} models to {} in {:.1} s",
        model.space,
        dir.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn info(model: &ModelArgs) -> anyhow::Result<()> {
    // Weights do not change any count; zeros skip the random generator.
    let request = request(model, WeightInit::Zeros)?;
    let onnx = request.build()?;
    let cost = model_cost(&onnx)?;
    let (arch, index) = request.describe();
    let mut out = std::io::stdout().lock();
    writeln!(out, "space: {}", model.space)?;
    writeln!(out, "arch: {arch}")?;
    if let Some(index) = index {
        writeln!(out, "index: {index}")?;
    }
    writeln!(out, "input: {:?}", cost.input_shape)?;
    writeln!(out, "output: {:?}", cost.output_shape)?;
    writeln!(out, "nodes: {}", cost.nodes.len())?;
    writeln!(out, "params: {}", cost.params)?;
    writeln!(out, "macs: {}", cost.flops(FlopsConvention::Macs))?;
    writeln!(
        out,
        "flops_tensorwatch: {}",
        cost.flops(FlopsConvention::TensorWatch)
    )?;
    writeln!(out, "flops_flopth: {}", cost.flops(FlopsConvention::Flopth))?;
    Ok(())
}
