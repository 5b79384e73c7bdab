//! `nasflat-host encode`: retrains a learned encoding or runs the NB201
//! proxies, writing the files the samplers read (`data/encodings/`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use nasflat_shared::SearchSpace;
use nasflat_shared::data::zcp_table;

use crate::arch2vec::{Arch2VecConfig, train_arch2vec};
use crate::cache::{ENCODING_VERSION, EncodingMeta, cache_paths, read_text, write_embeddings};
use crate::cate::{CateConfig, flops_buckets, train_cate};
use crate::error::{EncodeError, Result};
use crate::graphs::SpaceGraphs;
use crate::training::TrainReport;
use crate::zcp::ZcpConfig;
use crate::zcp::run::{pack, read_rows, run_zcp, subset_indices, validate_against_subset};

/// Which encoding to (re)compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EncoderKind {
    /// Variational graph autoencoder.
    Arch2vec,
    /// Transformer with a masked-op objective on similar pairs.
    Cate,
    /// NB201 zero-cost proxies at random init (resumable).
    Zcp,
}

/// Options of `nasflat-host encode`.
#[derive(Debug, Clone, Args)]
pub struct EncodeArgs {
    /// Search space: nb201 or fbnet.
    #[arg(long)]
    pub space: SearchSpace,
    /// arch2vec, cate or zcp (zcp: nb201 only).
    #[arg(long)]
    pub encoder: EncoderKind,
    /// Seed of the weights, batches and noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Training epochs (default: per space, a few minutes on one core).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Output folder.
    #[arg(short = 'o', long, default_value = "data/encodings")]
    pub out: PathBuf,
    /// zcp: which architectures: `subset` (the ~725 of the public proxy
    /// subset), `all`, a range `A..B`, or a comma-separated list.
    #[arg(long, default_value = "subset")]
    pub archs: String,
    /// zcp: stop after this many newly scored architectures.
    #[arg(long)]
    pub limit: Option<usize>,
    /// zcp: images in the synthetic batch.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// zcp: also compute GraSP (two more passes per arch). Off by default:
    /// on the public subset it does not reproduce NAS-Bench-Suite-Zero's
    /// values (docs/experiments/encodings.md), and the shipped file was run
    /// without it.
    #[arg(long)]
    pub grasp: bool,
    /// zcp: GraSP's finite-difference step relative to the weight norm.
    #[arg(long, default_value_t = 1e-2)]
    pub grasp_step: f64,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs the command; returns the human-readable report.
pub fn run(args: &EncodeArgs) -> Result<String> {
    match args.encoder {
        EncoderKind::Arch2vec | EncoderKind::Cate => learned(args),
        EncoderKind::Zcp => zcp(args),
    }
}

fn command_line(args: &EncodeArgs, epochs: usize) -> String {
    let name = match args.encoder {
        EncoderKind::Arch2vec => "arch2vec",
        EncoderKind::Cate => "cate",
        EncoderKind::Zcp => "zcp",
    };
    format!(
        "nasflat-host encode --space {} --encoder {name} --seed {} --epochs {epochs} -o {}",
        args.space,
        args.seed,
        args.out.display()
    )
}

fn learned(args: &EncodeArgs) -> Result<String> {
    let graphs = SpaceGraphs::load(args.space)?;
    let show = !args.quiet;
    let (name, epochs, embeddings, report): (&str, usize, Vec<Vec<f32>>, TrainReport) =
        match args.encoder {
            EncoderKind::Arch2vec => {
                let mut config = Arch2VecConfig::for_space(&graphs, args.seed);
                if let Some(e) = args.epochs {
                    config.epochs = e;
                }
                eprintln!(
                    "arch2vec {}: {} archs, seed {}, {config:?}",
                    args.space,
                    graphs.len(),
                    args.seed
                );
                let (model, report) = train_arch2vec(&graphs, &config, show)?;
                ("arch2vec", config.epochs, model.embed(&graphs)?, report)
            }
            _ => {
                let mut config = CateConfig::for_space(&graphs, args.seed);
                if let Some(e) = args.epochs {
                    config.epochs = e;
                }
                let buckets = cost_buckets(args.space, config.bucket_size)?;
                eprintln!(
                    "cate {}: {} archs, seed {}, {config:?}",
                    args.space,
                    graphs.len(),
                    args.seed
                );
                let (model, report) = train_cate(&graphs, &buckets, &config, show)?;
                ("cate", config.epochs, model.embed(&graphs)?, report)
            }
        };
    let dim = embeddings.first().map_or(0, Vec::len);
    let mut made_by = serde_json::Map::new();
    made_by.insert("dim".into(), dim.into());
    made_by.insert("seed".into(), args.seed.into());
    let seconds = (report.seconds * 10.0).round() / 10.0;
    made_by.insert("train_seconds".into(), seconds.into());
    made_by.insert("command".into(), command_line(args, epochs).into());
    let meta = EncodingMeta {
        name: name.into(),
        space: args.space,
        version: ENCODING_VERSION.to_string(),
        made_by,
    };
    let path = write_embeddings(&args.out, &embeddings, &meta)?;
    let mut text = format!(
        "{name} {}: {} archs x {dim}, seed {}, {epochs} epochs, trained in {:.1} s\n",
        args.space,
        embeddings.len(),
        args.seed,
        report.seconds
    );
    let losses: Vec<String> = report
        .epoch_losses
        .iter()
        .map(|l| format!("{l:.4}"))
        .collect();
    let _ = writeln!(text, "loss per epoch: {}", losses.join(" "));
    for (what, v) in &report.accuracies {
        let _ = writeln!(text, "{what}: {:.4}", v);
    }
    let _ = writeln!(text, "wrote {}", path.display());
    Ok(text)
}

/// CATE's "computationally similar" buckets from the space's FLOPs and params.
fn cost_buckets(space: SearchSpace, bucket_size: usize) -> Result<Vec<usize>> {
    let table = zcp_table(space)?;
    let (f, p) = match space {
        SearchSpace::Nb201 => ("cifar10_flops", "cifar10_params"),
        SearchSpace::Fbnet => ("flops", "params"),
    };
    let col = |name: &str| -> Result<Vec<f64>> {
        Ok(table
            .column(name)?
            .iter()
            .map(|v| v.unwrap_or(0.0))
            .collect())
    };
    Ok(flops_buckets(&col(f)?, &col(p)?, bucket_size))
}

/// Parses `--archs`.
pub fn parse_archs(spec: &str) -> Result<Vec<usize>> {
    let bad = |reason: String| EncodeError::Invalid {
        what: "--archs",
        reason,
    };
    let n = nasflat_shared::NB201_SIZE;
    let list: Vec<usize> = match spec {
        "subset" => subset_indices()?,
        "all" => (0..n).collect(),
        s if s.contains("..") => {
            let (a, b) = s.split_once("..").ok_or_else(|| bad(s.to_string()))?;
            let a: usize = a
                .parse()
                .map_err(|_| bad(format!("bad range start `{a}`")))?;
            let b: usize = b.parse().map_err(|_| bad(format!("bad range end `{b}`")))?;
            (a..b).collect()
        }
        s => s
            .split(',')
            .map(|t| {
                t.trim()
                    .parse()
                    .map_err(|_| bad(format!("not an index: `{t}`")))
            })
            .collect::<Result<_>>()?,
    };
    if let Some(&i) = list.iter().find(|&&i| i >= n) {
        return Err(bad(format!("index {i} is outside 0..{n}")));
    }
    Ok(list)
}

fn zcp(args: &EncodeArgs) -> Result<String> {
    if args.space != SearchSpace::Nb201 {
        return Err(EncodeError::Invalid {
            what: "--encoder zcp",
            reason: "only nb201: FBNet's 13 proxies ship complete in data/fbnet/zcp.csv".into(),
        });
    }
    let config = ZcpConfig {
        batch: args.batch,
        seed: args.seed,
        grasp: args.grasp,
        grasp_step: args.grasp_step,
        ..ZcpConfig::default()
    };
    let indices = parse_archs(&args.archs)?;
    let (gz, _) = cache_paths(&args.out, SearchSpace::Nb201, "zcp_computed");
    let csv = gz.with_extension("");
    seed_from_packed(&csv, &gz)?;
    eprintln!(
        "zcp nb201: {} archs requested, seed {}, batch {}, grasp {}; appending to {}",
        indices.len(),
        config.seed,
        config.batch,
        config.grasp,
        csv.display()
    );
    let summary = run_zcp(&indices, &csv, &config, args.limit, !args.quiet)?;
    let packed = pack(&csv, &gz)?;
    let rows = read_rows(&csv)?;
    let mut text = format!(
        "scored {} archs ({} already done), {:.3} s/arch; {} archs in {}\n",
        summary.computed,
        summary.skipped,
        summary.seconds_per_arch,
        packed,
        gz.display()
    );
    let mean_all: f64 = rows.values().map(|r| r.seconds).sum::<f64>() / rows.len().max(1) as f64;
    let remaining = nasflat_shared::NB201_SIZE.saturating_sub(rows.len());
    let _ = writeln!(
        text,
        "mean cost {:.3} s/arch over the file; the remaining {} of {} archs: ~{:.1} h on one core",
        mean_all,
        remaining,
        nasflat_shared::NB201_SIZE,
        mean_all * remaining as f64 / 3600.0
    );
    let _ = writeln!(
        text,
        "| proxy | archs | Spearman vs NAS-Bench-Suite-Zero (cifar10) |\n|---|---:|---:|"
    );
    for (name, n, rho) in validate_against_subset(&rows)? {
        let _ = writeln!(text, "| {name} | {n} | {rho:.3} |");
    }
    Ok(text)
}

/// A fresh run folder that has only the packed (shipped) results starts from
/// them, so `--archs all` finishes the shipped run instead of redoing it.
fn seed_from_packed(csv: &Path, gz: &Path) -> Result<()> {
    if csv.exists() || !gz.exists() {
        return Ok(());
    }
    let text = read_text(gz)?;
    std::fs::write(csv, text).map_err(|e| EncodeError::io(csv, e))
}
