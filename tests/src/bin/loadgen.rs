//! `nasflat-loadgen`: simulated agents against running hosts, for sizing a
//! host (issue 17, "Scale").
//!
//! Each simulated agent is [`nasflat_tests::sim_agent`] (the same one the
//! end-to-end tests run): it does what `nasflat-agent run` does on the
//! wire, through the agent's own client: register with the enrolment
//! token, then plan (with a plan key, reused on retries) / heartbeat /
//! upload until the host has no more work for it (idle) or `--secs` is up.
//! It measures nothing: `--think-ms` per job stands in for the measuring
//! (0: back-to-back requests, a saturation test). Transient failures are
//! retried with the same request, as the agent does, so nothing is lost.
//!
//! Agents are spread round-robin over the `--url`s (host replicas sharing
//! one PostgreSQL database). At the end it prints requests/s, latency per
//! route (p50 / p99 / max), whether every acknowledged result is stored
//! exactly once (the device's sample count read back through
//! `GET /v1/devices` with the viewer token, against the distinct keys the
//! host acknowledged), and each `--host-pid`'s peak RSS (`VmHWM`, the pid
//! and its child processes).
//!
//! ```sh
//! nasflat-loadgen --url http://127.0.0.1:8080 --agents 200 --secs 60 \
//!     --enrol-token ENROL --viewer-token VIEWER --host-pid "$(pgrep -o nasflat-host)"
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use nasflat_tests::sim_agent::{self, AgentLog, Route, SimAgentError, Workload};

/// Simulated agents against running hosts: throughput, latency per route,
/// exactly-once storage, host memory.
#[derive(Debug, Parser)]
#[command(name = "nasflat-loadgen")]
struct Args {
    /// Host base URL; repeat for replicas (agents are spread round-robin).
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// Simulated agents.
    #[arg(long, default_value_t = 50)]
    agents: usize,
    /// Seconds after which agents start no new plan (in-flight results
    /// are still delivered).
    #[arg(long, default_value_t = 60)]
    secs: u64,
    /// The hosts' enrolment token.
    #[arg(long, env = "NASFLAT_ENROL_TOKEN")]
    enrol_token: String,
    /// A viewer (or admin) token, to read the stored counts back.
    #[arg(long, env = "NASFLAT_VIEWER_TOKEN")]
    viewer_token: String,
    /// Jobs asked for per plan.
    #[arg(long, default_value_t = 4)]
    max_jobs: u32,
    /// Simulated measuring time per job, ms (0: requests back to back).
    #[arg(long, default_value_t = 0)]
    think_ms: u64,
    /// Seconds over which agents start (spreads the registrations).
    #[arg(long, default_value_t = 0.0)]
    ramp_secs: f64,
    /// Host process id whose peak RSS to report (its children included);
    /// repeat for replicas.
    #[arg(long = "host-pid")]
    host_pids: Vec<u32>,
    /// Longest time a request is retried before the agent gives up.
    #[arg(long, default_value_t = 120)]
    give_up_secs: u64,
}

/// One simulated agent, spread round-robin over the URLs.
async fn agent(urls: Arc<Vec<String>>, workload: Arc<Workload>, i: usize) -> AgentLog {
    let url = &urls[i % urls.len()];
    sim_agent::run(url, &format!("loadgen-{i}"), &workload).await
}

/// `p` quantile (0..1) of sorted values.
fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[i]
}

/// Stored samples per agent device, read through the first host's API.
async fn stored_counts(url: &str, viewer: &str) -> Result<HashMap<String, u64>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let response = http
        .get(format!(
            "{}/v1/devices?kind=agent",
            url.trim_end_matches('/')
        ))
        .bearer_auth(viewer)
        .send()
        .await?;
    let status = response.status();
    let body = response.bytes().await?;
    if !status.is_success() {
        bail!(
            "GET /v1/devices: {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let devices: Vec<serde_json::Value> =
        serde_json::from_slice(&body).context("GET /v1/devices: not a JSON list")?;
    Ok(devices
        .iter()
        .filter_map(|d| Some((d["id"].as_str()?.to_string(), d["samples"].as_u64()?)))
        .collect())
}

/// Peak and current RSS (KiB) of `pid` and its descendants.
fn memory(pid: u32) -> Vec<(u32, String, u64, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let dir = Path::new("/proc").join(p.to_string());
        let Ok(status) = std::fs::read_to_string(dir.join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        out.push((p, comm.trim().to_string(), field("VmHWM:"), field("VmRSS:")));
        let children = std::fs::read_to_string(dir.join(format!("task/{p}/children")));
        todo.extend(
            children
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    out
}

/// Load average and CPU count, for the report.
fn machine() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cpus} CPUs, load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// Prints the report; returns whether every acknowledged result is stored
/// exactly once and no agent failed.
fn report(args: &Args, logs: &[AgentLog], wall: f64, stored: &HashMap<String, u64>) -> bool {
    let mut by_route: BTreeMap<Route, (Vec<f64>, usize)> = BTreeMap::new();
    for log in logs {
        for (r, l) in &log.latencies {
            by_route.entry(*r).or_default().0.extend(l);
        }
        for (r, n) in &log.errors {
            by_route.entry(*r).or_default().1 += n;
        }
    }
    let requests: usize = by_route.values().map(|(l, _)| l.len()).sum();
    println!(
        "{} agents over {} host(s), {} s, think {} ms/job, {} jobs/plan",
        args.agents,
        args.urls.len(),
        args.secs,
        args.think_ms,
        args.max_jobs
    );
    println!(
        "{requests} requests in {wall:.1} s = {:.0} req/s",
        requests as f64 / wall
    );
    println!("\n| route | requests | retried errors | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|");
    let mut all = Vec::with_capacity(requests);
    for (route, (lat, errors)) in &mut by_route {
        lat.sort_by(f64::total_cmp);
        all.extend_from_slice(lat);
        println!(
            "| {} | {} | {errors} | {:.1} | {:.1} | {:.1} |",
            route.path(),
            lat.len(),
            quantile(lat, 0.5) * 1e3,
            quantile(lat, 0.99) * 1e3,
            lat.last().copied().unwrap_or(f64::NAN) * 1e3
        );
    }
    all.sort_by(f64::total_cmp);
    println!(
        "| all | {} | {} | {:.1} | {:.1} | {:.1} |",
        all.len(),
        by_route.values().map(|(_, e)| e).sum::<usize>(),
        quantile(&all, 0.5) * 1e3,
        quantile(&all, 0.99) * 1e3,
        all.last().copied().unwrap_or(f64::NAN) * 1e3
    );
    let measured: usize = logs.iter().map(|l| l.measured).sum();
    let acked: usize = logs.iter().map(|l| l.acked.len()).sum();
    let mut mismatched = Vec::new();
    let mut stored_total = 0;
    for log in logs {
        let Some(id) = &log.device_id else { continue };
        let n = stored.get(id).copied().unwrap_or(0);
        stored_total += n;
        if n != log.acked.len() as u64 {
            mismatched.push(format!(
                "{id}: {} acknowledged, {n} stored",
                log.acked.len()
            ));
        }
    }
    let failed: Vec<&SimAgentError> = logs.iter().filter_map(|l| l.failure.as_ref()).collect();
    println!(
        "\nresults: {measured} built, {acked} acknowledged, {stored_total} stored; \
         {} agents idle before the end, {} failed",
        logs.iter().filter(|l| l.idle).count(),
        failed.len()
    );
    for f in failed.iter().take(5) {
        println!("  agent failure: {f}");
    }
    let exact = mismatched.is_empty() && measured == acked;
    if exact {
        println!("stored exactly once: yes (every device's sample count = its acknowledged keys)");
    } else {
        println!(
            "stored exactly once: NO ({} devices differ, {} results built but not acknowledged)",
            mismatched.len(),
            measured - acked.min(measured)
        );
        for m in mismatched.iter().take(10) {
            println!("  {m}");
        }
    }
    for pid in &args.host_pids {
        for (p, comm, hwm, rss) in memory(*pid) {
            println!(
                "host pid {p} ({comm}): peak RSS {:.0} MiB, now {:.0} MiB",
                hwm as f64 / 1024.0,
                rss as f64 / 1024.0
            );
        }
    }
    println!("machine: {}", machine());
    exact && failed.is_empty()
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run() -> Result<bool> {
    let args = Args::parse();
    if args.agents == 0 || args.max_jobs == 0 {
        bail!("--agents and --max-jobs must be at least 1");
    }
    if !(args.ramp_secs.is_finite() && args.ramp_secs >= 0.0) {
        bail!("--ramp-secs must be a number of seconds >= 0");
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started = Instant::now();
    let workload = Arc::new(Workload {
        enrol_token: args.enrol_token.clone(),
        max_jobs: args.max_jobs,
        think_per_job: Duration::from_millis(args.think_ms),
        plan_until: Some(started + Duration::from_secs(args.secs)),
        give_up: Duration::from_secs(args.give_up_secs),
    });
    let urls = Arc::new(args.urls.clone());
    let mut tasks = Vec::with_capacity(args.agents);
    for i in 0..args.agents {
        let delay = args.ramp_secs * i as f64 / args.agents as f64;
        let (urls, workload) = (urls.clone(), workload.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(delay)).await;
            agent(urls, workload, i).await
        }));
    }
    let mut logs = Vec::with_capacity(tasks.len());
    for t in tasks {
        logs.push(t.await.context("a simulated agent panicked")?);
    }
    let wall = started.elapsed().as_secs_f64();
    let stored = stored_counts(&args.urls[0], &args.viewer_token).await?;
    Ok(report(&args, &logs, wall, &stored))
}
