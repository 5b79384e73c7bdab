//! `nasflat-host demo`: the whole loop on this machine. Serves on loopback
//! with an embedded SQLite database in a temporary directory, runs a local
//! agent that registers this machine as a new device and measures the k
//! sampler-chosen NB201 architectures, waits for the transfer, has the
//! agent measure fresh random architectures, and reports the Spearman
//! correlation between the served predictions and those fresh measurements.
//! It ends with a latency-constrained search at the median upper latency
//! bound (so half the space fits) whose chosen architecture the agent then
//! measures (the service's verify path): did the budget hold on this machine?

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nasflat_shared::SearchSpace;

use axum::extract::FromRef;
use nasflat_host::service::auth::new_token;
use nasflat_host::service::conditions::{ConditionsTally, SampleConditions};
use nasflat_host::service::domain::{Purpose, TransferState};
use nasflat_host::service::search::{SearchRequest, SearchView, Searcher};
use nasflat_host::service::store::jobs::NewJob;
use nasflat_host::service::transfer::{SampleSet, samples_of};
use nasflat_host::service::{AppState, ServiceConfig};
use nasflat_shared::stats::spearman;

/// Options of the demo.
#[derive(Debug, Clone)]
pub(crate) struct DemoOptions {
    /// Service settings (the database URL and tokens are replaced).
    pub config: ServiceConfig,
    /// The agent binary (default: next to this executable).
    pub agent: Option<PathBuf>,
    /// Fresh random archs measured after the transfer.
    pub fresh: usize,
    /// Seed of the fresh archs.
    pub fresh_seed: u64,
    /// Stop after printing instead of serving until Ctrl-C.
    pub exit: bool,
}

/// What the demo measured.
#[derive(Debug, Clone)]
pub(crate) struct DemoReport {
    /// Dashboard URL, with the viewer token that logs a browser in.
    pub url: String,
    /// The device registered for this machine.
    pub device_id: String,
    /// Fresh measurements compared.
    pub fresh: usize,
    /// Spearman between served predictions and fresh measurements.
    pub spearman: f64,
    /// Predictor version.
    pub version: String,
    /// Wall time of the whole loop.
    pub seconds: f64,
    /// The closing search, verified on this machine.
    pub search: SearchView,
    /// The measuring conditions of every sample of the run.
    pub conditions: ConditionsTally,
}

/// The local agent, run until its queue is empty.
struct LocalAgent {
    binary: PathBuf,
    url: String,
    token: String,
    state_dir: PathBuf,
}

impl LocalAgent {
    async fn measure(&self) -> Result<()> {
        let (agent, url, token, dir) = (
            self.binary.clone(),
            self.url.clone(),
            self.token.clone(),
            self.state_dir.clone(),
        );
        tokio::task::spawn_blocking(move || run_agent(&agent, &url, &token, &dir)).await?
    }
}

/// Risk of the closing search.
const DEMO_RISK: f64 = 0.1;

/// Searches at the median upper bound of the predicted latencies (half the
/// space fits the budget at the demo's risk, whatever the bound's width on
/// this machine), has the agent measure the chosen architecture, and
/// returns the search with that measurement.
async fn verified_search(
    state: &AppState,
    device: &str,
    predicted: &[f64],
    agent: &LocalAgent,
) -> Result<SearchView> {
    let searcher = Searcher::from_ref(state);
    let request = |max_latency_ms: f64, verify: usize| SearchRequest {
        space: Some(SearchSpace::Nb201),
        max_latency_ms,
        objective: None,
        risk: Some(DEMO_RISK),
        verify,
        probe: 0,
    };
    let median = median_finite(predicted).context("no predictions")?;
    let slowest = predicted
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(median, f64::max);
    // The bound's width (the transfer's residual quantile) is the same for
    // every architecture: read it from a preview under a budget every
    // architecture's bound meets, then set the budget from it.
    let widest = searcher.preview(device, &request(slowest * 1e3, 0)).await?;
    let budget = median * widest.residual_quantile.exp();
    let row = searcher.run(device, &request(budget, 1)).await?;
    eprintln!(
        "demo: search {} at {budget:.3} ms (the median upper bound); the agent measures its choice",
        row.id
    );
    agent.measure().await?;
    let row = searcher.get(&row.id).await?;
    Ok(searcher.view(row).await?)
}

/// The measuring conditions of every sample the device uploaded (read
/// from the samples' provenance), so the demo can say whether its numbers
/// were taken on a busy machine.
async fn conditions_of(state: &AppState, device: &str) -> Result<ConditionsTally> {
    let mut all = Vec::new();
    for m in state.store.measurements_of_device(device).await? {
        if let Some(text) = state.store.sample_json(device, &m.key).await? {
            all.push(SampleConditions::of_text(&text));
        }
    }
    Ok(ConditionsTally::of(&all))
}

/// Median of the finite values.
fn median_finite(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied()
}

/// The closing search's lines (checked by the demo's end-to-end test).
fn print_search(v: &SearchView) {
    let c = &v.chosen;
    println!(
        "search: budget {:.3} ms (median upper bound), risk {}: chosen {} (#{}), {} {:.2}%",
        v.max_latency_ms, v.risk, c.arch, c.index, v.objective, c.objective
    );
    println!(
        "search: predicted {:.3} ms, upper bound {:.3} ms",
        c.predicted_ms, c.upper_ms
    );
    match c.measured_ms {
        Some(ms) => println!(
            "search: measured {ms:.3} ms on this machine: budget {}",
            if ms <= v.max_latency_ms {
                "held"
            } else {
                "exceeded"
            }
        ),
        None => {
            println!("search: the agent returned no valid measurement of the chosen architecture")
        }
    }
}

/// The agent binary next to `exe` (cargo puts both in the same target dir).
pub(crate) fn sibling_agent(exe: &Path) -> Option<PathBuf> {
    let p = exe.parent()?.join("nasflat-agent");
    p.exists().then_some(p)
}

fn run_agent(agent: &Path, url: &str, token: &str, state_dir: &Path) -> Result<()> {
    let status = Command::new(agent)
        .args(["run", "--host", url, "--token", token, "--name"])
        .arg(format!(
            "demo-{}",
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "localhost".into())
        ))
        .arg("--state-dir")
        .arg(state_dir)
        .args([
            "--exit-when-idle",
            "--max-retries",
            "20",
            "--backoff-ms",
            "100",
            "--backoff-max-ms",
            "2000",
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("starting the agent {}", agent.display()))?;
    if !status.success() {
        bail!("the agent exited with {status}");
    }
    Ok(())
}

async fn wait_for_predictor(state: &AppState, device: &str, space: SearchSpace) -> Result<String> {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        if let Some(p) = state.predictions.get(device, space).await? {
            return Ok(p.version.clone());
        }
        let transfers = state.store.transfers(device).await?;
        if let Some(t) = transfers.first() {
            if t.state == TransferState::Failed {
                bail!("transfer failed: {}", t.message);
            }
            let line = format!(
                "transfer {} {:.0}%: {}",
                t.state,
                t.progress * 100.0,
                t.message
            );
            if line != last {
                eprintln!("  {line}");
                last = line;
            }
        } else if let Some(k) = state.spaces.get(&space) {
            let r = k.report();
            if let Some((d, t)) = r.progress {
                let line = format!("pretraining {d}/{t} epochs");
                if line != last {
                    eprintln!("  {line}");
                    last = line;
                }
            }
        }
        if started.elapsed() > Duration::from_secs(3600) {
            bail!("no predictor after an hour");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs the demo; serves until Ctrl-C unless `exit`.
pub(crate) async fn run(options: DemoOptions) -> Result<DemoReport> {
    let started = Instant::now();
    let agent = match &options.agent {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|e| sibling_agent(&e))
            .context(
                "no nasflat-agent binary next to nasflat-host: build it first \
                 (cargo build --release -p nasflat-agent) or pass --agent PATH",
            )?,
    };
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let mut config = options.config.clone();
    config.db_url = nasflat_host::service::store::sqlite_url(&tmp.path().join("nasflat.db"));
    config.admin_token = new_token();
    config.enrol_token = new_token();
    // The printed dashboard URL carries this (it logs the browser in), so
    // the dashboard opens for whoever ran the demo and no one else.
    let viewer = new_token();
    config.viewer_token = Some(viewer.clone());
    let space = SearchSpace::Nb201;
    config.spaces = vec![space];
    let listener = nasflat_host::service::net::bind(config.listen)
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let state = nasflat_host::service::build_state(config.clone()).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let state = state.clone();
        tokio::spawn(async move {
            nasflat_host::service::serve(state, listener, async {
                let _ = stop_rx.await;
            })
            .await
        })
    };
    let url = format!("http://{addr}");
    eprintln!(
        "demo: host at {url}; agent {} measures {} NB201 archs",
        agent.display(),
        config.samples
    );
    let local = LocalAgent {
        binary: agent.clone(),
        url: url.clone(),
        token: config.enrol_token.clone(),
        state_dir: tmp.path().join("agent"),
    };
    local.measure().await?;
    let devices = state.store.devices().await?;
    let device = devices
        .first()
        .context("the agent did not register")?
        .id
        .clone();
    eprintln!("demo: device {device} measured its samples; waiting for the transfer");
    let version = wait_for_predictor(&state, &device, space).await?;
    let k = state
        .spaces
        .served(space)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .clone();
    let measured = state.store.measurements_of_device(&device).await?;
    let done = samples_of(&measured, space, SampleSet::All).rows();
    let free: Vec<usize> = k
        .usable_rows
        .iter()
        .copied()
        .filter(|r| !done.contains(r))
        .collect();
    let fresh: Vec<usize> = {
        use rand::SeedableRng;
        use rand::seq::IndexedRandom;
        let mut rng = rand::rngs::StdRng::seed_from_u64(options.fresh_seed);
        free.choose_multiple(&mut rng, options.fresh)
            .copied()
            .collect()
    };
    let jobs: Vec<NewJob> = fresh
        .iter()
        .map(|&index| NewJob::Arch { space, index })
        .collect();
    state
        .store
        .insert_jobs(&device, Purpose::Extra, &jobs)
        .await?;
    eprintln!(
        "demo: predictor {version} ready; the agent measures {} fresh random archs (seed {})",
        fresh.len(),
        options.fresh_seed
    );
    local.measure().await?;
    let measured = state.store.measurements_of_device(&device).await?;
    let pred = state
        .predictions
        .get(&device, space)
        .await?
        .context("the predictor vanished")?;
    let (mut p, mut m) = (Vec::new(), Vec::new());
    for row in measured
        .iter()
        .filter(|r| r.purpose == Purpose::Extra && r.valid && r.settled != Some(false))
    {
        if let Some(i) = row.subject.row_in(space)
            && let Some(&v) = pred.latencies.get(i)
        {
            p.push(v);
            m.push(row.median_ms);
        }
    }
    let search = verified_search(&state, &device, &pred.latencies, &local).await?;
    let conditions = conditions_of(&state, &device).await?;
    let report = DemoReport {
        url: format!("{url}/?token={viewer}"),
        device_id: device,
        fresh: p.len(),
        spearman: spearman(&p, &m),
        version,
        seconds: started.elapsed().as_secs_f64(),
        search,
        conditions,
    };
    println!(
        "Spearman (served predictions vs {} fresh measurements on this machine): {:.3}",
        report.fresh, report.spearman
    );
    print_search(&report.search);
    println!("{}", report.conditions.summary_line());
    println!("dashboard: {}", report.url);
    if !options.exit {
        println!("serving until Ctrl-C");
        let _ = tokio::signal::ctrl_c().await;
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    drop(tmp);
    Ok(report)
}
