//! `nasflat-host serve` and `nasflat-host demo` arguments.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::demo::{self, DemoOptions};
use anyhow::{Context, Result};
use clap::Args;
use nasflat_host::service::auth::new_token;
use nasflat_host::service::store::sqlite_url;
use nasflat_host::service::{self, ServiceConfig};
use nasflat_predictor::model::{PredictorConfig, Recipe};
use nasflat_predictor::sampler::Sampler;
use nasflat_shared::SearchSpace;
use nasflat_shared::protocol::JobLimits;

/// Settings shared by `serve` and `demo`.
#[derive(Args, Debug, Clone)]
pub(crate) struct ServiceArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory of the default SQLite database, tokens and checkpoint cache.
    #[arg(long, env = "NASFLAT_DATA_DIR", default_value = "nasflat-data")]
    data_dir: PathBuf,
    /// Pretrained checkpoints are read from and cached here (default: DATA_DIR/checkpoints).
    #[arg(long)]
    checkpoints: Option<PathBuf>,
    /// Served search spaces, comma-separated (nb201, fbnet).
    #[arg(long, default_value = "nb201", value_delimiter = ',')]
    spaces: Vec<SearchSpace>,
    /// k: sampler-chosen architectures a new device measures before its transfer.
    #[arg(long, default_value_t = 20)]
    samples: usize,
    /// How the k architectures are chosen (seeded by the device id).
    #[arg(long, default_value = "random")]
    sampler: Sampler,
    /// Lease length, s (heartbeats every quarter of it).
    #[arg(long, default_value_t = 120)]
    lease_secs: u32,
    /// Poll interval told to idle agents, s.
    #[arg(long, default_value_t = 5)]
    poll_secs: u32,
    /// Minimum timed runs per measurement (sent with every lease).
    #[arg(long, default_value_t = JobLimits::default().min_runs)]
    min_runs: u32,
    /// Minimum timed duration per measurement, ms.
    #[arg(long, default_value_t = JobLimits::default().min_ms)]
    min_ms: u32,
    /// Maximum timed duration per measurement, ms.
    #[arg(long, default_value_t = JobLimits::default().max_ms)]
    max_ms: u32,
    /// Largest JSON/postcard request body, MiB.
    #[arg(long, default_value_t = 16)]
    max_body_mb: usize,
    /// Largest ONNX upload, MiB.
    #[arg(long, default_value_t = 256)]
    max_model_mb: usize,
    /// Measurements one device may store, MiB (sample JSON, reasons and 256
    /// bytes per row); past it its uploads get 507 and wait in its spool.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    device_quota_mb: u64,
    /// Training recipe: `served` or `paper` (the paper's released code:
    /// cosine rate decay, mixed-device pretraining batches, 150 epochs,
    /// last-4-epoch readout, embedded supplementary input, no per-node
    /// costs; docs/experiments/paper_recipe.md). Cached checkpoints are
    /// kept apart per recipe.
    #[arg(long, default_value = "served")]
    recipe: Recipe,
    /// Pretraining epochs (default: per space, see TrainConfig).
    #[arg(long)]
    pretrain_epochs: Option<usize>,
    /// Source samples per built-in device in pretraining.
    #[arg(long)]
    source_samples: Option<usize>,
    /// Transfer epochs.
    #[arg(long)]
    transfer_epochs: Option<usize>,
    /// How the weight of the linear stack (additive cost model + source
    /// regression) blended into the served prediction is set: a fixed
    /// weight in [0, 1] (0 = GNN alone; default 0.85), or `loo` / `loo-min`
    /// (per device by leave-one-out on its samples).
    #[arg(long, default_value = "0.85")]
    blend: nasflat_predictor::blend::BlendRule,
    /// Seed of pretraining (transfers mix in the device id).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Do not start transfers by themselves (only `POST /v1/devices/{id}/transfer`).
    #[arg(long)]
    no_auto_transfer: bool,
    /// Longest wait for a client's whole request head, s; also how long an
    /// idle keep-alive connection is kept. Stalled clients are disconnected.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout_secs: u64,
    /// Longest time one request may take, body upload included, s (503 after).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout_secs: u64,
    /// Connections served at once; more wait until one closes. Keep it
    /// below the open-file limit (`ulimit -n`, often 1024).
    #[arg(long, default_value_t = 768,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_connections: usize,
    /// Serve the dashboard pages (`/`, `/dashboard/...`) without a token.
    /// Off by default: the dashboard shows every device's hostname,
    /// hardware and measurements. The JSON API's reads still need the
    /// viewer or admin token.
    #[arg(long)]
    public_dashboard: bool,
    /// SQLite only: `full` syncs every commit to disk before it is
    /// acknowledged; `normal` (WAL) syncs at checkpoints, several times the
    /// write rate, and a killed host still loses nothing, but a power loss
    /// can roll back the last commits (their jobs are then measured again).
    #[arg(long, default_value = "full")]
    sqlite_sync: nasflat_host::service::store::SqliteSync,
}

impl ServiceArgs {
    fn config(&self, db_url: String) -> ServiceConfig {
        let mut c = ServiceConfig::new(
            db_url,
            self.checkpoints
                .clone()
                .unwrap_or_else(|| self.data_dir.join("checkpoints")),
        );
        c.listen = self.listen;
        c.spaces = self.spaces.clone();
        c.spaces.dedup();
        c.samples = self.samples;
        c.sampler = self.sampler;
        c.lease_secs = self.lease_secs.max(4);
        c.poll_secs = self.poll_secs.max(1);
        c.limits = JobLimits {
            min_runs: self.min_runs,
            min_ms: self.min_ms,
            max_ms: self.max_ms,
            threads: 1,
        };
        c.max_body_bytes = self.max_body_mb.max(1) << 20;
        c.max_model_bytes = self.max_model_mb.max(1) << 20;
        c.device_quota_bytes = self.device_quota_mb.saturating_mul(1 << 20);
        c.recipe = self.recipe;
        c.predictor = PredictorConfig::for_recipe(self.recipe);
        c.pretrain_epochs = self.pretrain_epochs;
        c.source_samples = self.source_samples;
        c.transfer_epochs = self.transfer_epochs;
        c.blend = self.blend;
        c.seed = self.seed;
        c.auto_transfer = !self.no_auto_transfer;
        c.header_timeout = Duration::from_secs(self.header_timeout_secs);
        c.request_timeout = Duration::from_secs(self.request_timeout_secs);
        c.max_connections = self.max_connections;
        c.public_dashboard = self.public_dashboard;
        c.sqlite_sync = self.sqlite_sync;
        c
    }
}

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    service: ServiceArgs,
    /// Database URL: sqlite://PATH or postgres://USER:PASS@HOST/DB (default: SQLite in DATA_DIR).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    db: Option<String>,
    /// Token of management endpoints (default: DATA_DIR/admin-token, created once).
    #[arg(long, env = "NASFLAT_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Token agents present to register (default: DATA_DIR/enrol-token, created once).
    #[arg(long, env = "NASFLAT_ENROL_TOKEN", hide_env_values = true)]
    enrol_token: Option<String>,
    /// Read-only token of the API's reads, the dashboard and /metrics
    /// (default: DATA_DIR/viewer-token, created once). The admin token reads too.
    #[arg(long, env = "NASFLAT_VIEWER_TOKEN", hide_env_values = true)]
    viewer_token: Option<String>,
}

#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    #[command(flatten)]
    service: ServiceArgs,
    /// The agent binary (default: nasflat-agent next to this executable).
    #[arg(long)]
    agent: Option<PathBuf>,
    /// Fresh random architectures measured after the transfer.
    #[arg(long, default_value_t = 50)]
    fresh: usize,
    /// Seed of the fresh architectures.
    #[arg(long, default_value_t = 1)]
    fresh_seed: u64,
    /// Stop after printing the result instead of serving until Ctrl-C.
    #[arg(long)]
    exit: bool,
}

/// A token from the flag, or the one kept in `path` (created on first use).
fn token(given: Option<String>, path: &Path) -> Result<String> {
    if let Some(t) = given {
        return Ok(t);
    }
    if let Ok(t) = std::fs::read_to_string(path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let t = new_token();
    write_secret(path, &t)?;
    tracing::info!("created token file {}", path.display());
    Ok(t)
}

/// Writes a new secret file readable by its owner only from the start
/// (created 0600, never world-readable in between).
fn write_secret(path: &Path, secret: &str) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(secret.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn shutdown_signal() {
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
    tracing::info!("shutting down");
}

pub(crate) fn serve(args: ServeArgs) -> Result<()> {
    let dir = &args.service.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let db = args
        .db
        .clone()
        .unwrap_or_else(|| sqlite_url(&dir.join("nasflat.db")));
    let mut config = args.service.config(db);
    config.admin_token = token(args.admin_token, &dir.join("admin-token"))?;
    config.enrol_token = token(args.enrol_token, &dir.join("enrol-token"))?;
    config.viewer_token = Some(token(args.viewer_token, &dir.join("viewer-token"))?);
    runtime()?.block_on(async move {
        let listener = service::net::bind(config.listen)
            .with_context(|| format!("binding {}", config.listen))?;
        let state = service::build_state(config).await?;
        service::serve(state, listener, shutdown_signal()).await
    })
}

pub(crate) fn demo(args: DemoArgs) -> Result<()> {
    let mut service = args.service.clone();
    if service.checkpoints.is_none() {
        // Keep the pretrained predictor between demos: the first one trains it.
        let cache = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join(".cache/nasflat/checkpoints");
        service.checkpoints = Some(cache);
    }
    let mut config = service.config(String::new());
    // Quick timing limits: the demo measures ~70 archs.
    if args.service.min_runs == JobLimits::default().min_runs {
        config.limits.min_runs = 10;
    }
    if args.service.min_ms == JobLimits::default().min_ms {
        config.limits.min_ms = 200;
    }
    let options = DemoOptions {
        config,
        agent: args.agent,
        fresh: args.fresh,
        fresh_seed: args.fresh_seed,
        exit: args.exit,
    };
    let report = runtime()?.block_on(demo::run(options))?;
    tracing::info!(
        device = %report.device_id,
        version = %report.version,
        seconds = format!("{:.0}", report.seconds),
        "demo finished"
    );
    Ok(())
}
