//! The host service end to end, with real processes on loopback: the
//! `nasflat-host` binary on a temporary SQLite database and the
//! `nasflat-agent` binary measuring this machine with tract.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nasflat_agent::client::HostClient;
use nasflat_shared::protocol::{
    Fingerprint, MeasurementResult, PROTOCOL_VERSION, PlanRequest, RegisterRequest, ResultBatch,
};
use nasflat_shared::stats::spearman;
use nasflat_tests::sim_agent::{self, Workload};
use serde_json::json;
use support::{ADMIN, Api, ENROL, HostProcess, VIEWER, agent_command, run_agent, serial};

/// Timing bounds for the e2e agent: quick, but long enough for a stable median.
const LIMITS: [&str; 6] = ["--min-runs", "5", "--min-ms", "100", "--max-ms", "1000"];

/// (a) A real agent registers this machine, measures the 20 sampler-chosen
/// NB201 archs, the host transfers; then 50 fresh random archs are measured
/// and compared with the served predictions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_agent_transfer_then_fresh_measurements_agree() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let host = HostProcess::start(&dir.path().join("host"), 0, &LIMITS);
    let api = Api::new(&host.url);
    let log = run_agent(&host.url, &dir.path().join("agent"));
    let device = api.agent_device().await.unwrap();
    let id = device["id"].as_str().unwrap().to_string();
    // A sample whose label did not settle is stored and measured again.
    let settled = device["samples"].as_u64().unwrap() - device["unsettled"].as_u64().unwrap();
    assert_eq!(settled, 20, "{device}\nagent log:\n{log}");
    let version = api.wait_predictor(&id, Duration::from_secs(900)).await;
    let measured_k = started.elapsed().as_secs_f64();
    let (s, queued) = api
        .post(
            &format!("/v1/devices/{id}/jobs"),
            Some(ADMIN),
            &json!({"random": 50, "seed": 1}),
        )
        .await;
    assert_eq!(s, 200, "{queued}");
    run_agent(&host.url, &dir.path().join("agent"));
    let (_, detail) = api.get(&format!("/v1/devices/{id}")).await;
    let fresh: Vec<(usize, f64)> = detail["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["purpose"] == "extra" && m["valid"] == true)
        .map(|m| {
            (
                m["arch_index"].as_u64().unwrap() as usize,
                m["median_ms"].as_f64().unwrap(),
            )
        })
        .collect();
    assert!(
        fresh.len() >= 45,
        "only {} valid fresh measurements",
        fresh.len()
    );
    let indices: Vec<usize> = fresh.iter().map(|f| f.0).collect();
    let (s, pred) = api
        .post(
            &format!("/v1/devices/{id}/predict"),
            None,
            &json!({"indices": indices}),
        )
        .await;
    assert_eq!(s, 200, "{pred}");
    assert_eq!(pred["predictor_version"], version.as_str());
    let predicted: Vec<f64> = pred["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["latency_ms"].as_f64().unwrap())
        .collect();
    let measured: Vec<f64> = fresh.iter().map(|f| f.1).collect();
    let rho = spearman(&predicted, &measured);
    let quality = &detail["predictors"][0]["quality"];
    println!(
        "e2e: {} fresh NB201 archs on this machine: Spearman(served prediction, tract median) = {rho:.3} \
         (fit {:.3}); k=20 measured + transferred in {measured_k:.0} s, total {:.0} s; predictor {version}",
        fresh.len(),
        quality["fit_spearman"].as_f64().unwrap_or(f64::NAN),
        started.elapsed().as_secs_f64()
    );
    assert!((quality["heldout_spearman"].as_f64().unwrap() - rho).abs() < 1e-9);
    assert!(
        rho > 0.5,
        "served predictions barely rank the fresh measurements: {rho:.3}"
    );
    // The whole space in one call.
    let (s, all) = api
        .post(
            &format!("/v1/devices/{id}/predict"),
            None,
            &json!({"all": true}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(all["predictions"].as_array().unwrap().len(), 15_625);
    println!(
        "e2e: whole-space prediction served in {} us",
        all["elapsed_us"]
    );
}

/// (a') The verify loop: after the transfer, a search at the median served
/// prediction queues its top 3 candidates; the real agent measures them;
/// the search then shows each measured latency beside its prediction, and
/// the first candidate that really met the budget is the first whose
/// measurement is within it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_agent_verifies_a_search() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let host = HostProcess::start(&dir.path().join("host"), 0, &LIMITS);
    let api = Api::new(&host.url);
    run_agent(&host.url, &dir.path().join("agent"));
    let id = api.agent_device().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    api.wait_predictor(&id, Duration::from_secs(900)).await;
    let (_, all) = api
        .post(
            &format!("/v1/devices/{id}/predict"),
            None,
            &json!({"all": true}),
        )
        .await;
    let mut predicted: Vec<f64> = all["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["latency_ms"].as_f64().unwrap())
        .collect();
    predicted.sort_by(f64::total_cmp);
    let budget = predicted[predicted.len() / 2];
    let body = json!({"max_latency_ms": budget, "risk": 0.1, "verify": 3});
    let (s, search) = api
        .post(&format!("/v1/devices/{id}/search"), Some(ADMIN), &body)
        .await;
    assert_eq!(s, 201, "{search}");
    assert_eq!(search["verify_queued"], 3);
    assert!(search["chosen"]["upper_ms"].as_f64().unwrap() <= budget);
    run_agent(&host.url, &dir.path().join("agent"));
    let sid = search["id"].as_str().unwrap();
    let (s, done) = api.get(&format!("/v1/searches/{sid}")).await;
    assert_eq!(s, 200, "{done}");
    assert_eq!(done["verify_measured"], 3, "{done}");
    let candidates = done["candidates"].as_array().unwrap();
    let mut first = None;
    for c in &candidates[..3] {
        let ms = c["measured_ms"].as_f64().unwrap();
        assert!(ms > 0.0 && c["job_state"] == "done", "{c}");
        assert_eq!(c["within_budget"], ms <= budget, "{c}");
        if first.is_none() && ms <= budget {
            first = Some(c["rank"].clone());
        }
        println!(
            "e2e: search at {budget:.3} ms (median prediction): rank {} #{} predicted {:.3} ms, bound {:.3} ms, measured {ms:.3} ms",
            c["rank"],
            c["index"],
            c["predicted_ms"].as_f64().unwrap(),
            c["upper_ms"].as_f64().unwrap()
        );
    }
    assert_eq!(
        done["best_within_budget"]["rank"],
        first.unwrap_or(json!(null))
    );
    // Verification measurements are held out of the plan samples: they
    // judge the predictor, as the device detail's held-out quality shows.
    let (_, detail) = api.get(&format!("/v1/devices/{id}")).await;
    let verified = detail["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["purpose"] == "verify" && m["settled"] != false)
        .count();
    assert_eq!(verified, 3);
}

/// (b) kill -9 the host while the agent uploads (three times), restart it
/// on the same SQLite database: every measured result is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_killed_during_uploads_loses_and_duplicates_nothing() {
    let _serial = serial().await;
    host_killed_during_uploads(None).await;
}

/// (b) on PostgreSQL (`NASFLAT_TEST_PG_URL`, a fresh database): the same
/// three kills, the same exactly-once check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_killed_during_uploads_on_postgres_loses_and_duplicates_nothing() {
    let Some(db) = fresh_pg_database().await else {
        eprintln!(
            "\n!!! SKIPPED: NASFLAT_TEST_PG_URL not set (source .ci/postgres.sh; pg_start) !!!\n"
        );
        return;
    };
    let _serial = serial().await;
    host_killed_during_uploads(Some(&db)).await;
}

/// A new database on the server of `NASFLAT_TEST_PG_URL`, if set.
async fn fresh_pg_database() -> Option<String> {
    let url = std::env::var("NASFLAT_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())?;
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&url).await.unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("chaos_{}_{nanos}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    Some(format!("{base}/{name}"))
}

/// Kills the host (-9) three times, each time as soon as more results were
/// stored since it (re)started, restarts it on the same database, and
/// checks what the agent measured is stored exactly once.
async fn host_killed_during_uploads(db: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("host");
    let mut extra = vec![
        "--no-auto-transfer",
        "--min-runs",
        "3",
        "--min-ms",
        "30",
        "--max-ms",
        "300",
    ];
    if let Some(db) = db {
        extra.extend(["--db", db]);
    }
    let started = Instant::now();
    let mut host = HostProcess::start_fixed(&data, &extra);
    let port = host.port;
    let api = Api::new(&host.url);
    let agent_dir = dir.path().join("agent");
    let agent = agent_command(&host.url, &agent_dir)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut kills = 0;
    let mut last = 0;
    while kills < 3 {
        assert!(Instant::now() < deadline, "agent made no progress");
        let stored = match api.agent_device().await {
            Some(d) => d["samples"].as_u64().unwrap_or(0),
            None => 0,
        };
        assert!(stored < 20, "the agent finished before the third kill");
        if stored > last {
            host.kill9();
            kills += 1;
            println!("e2e: killed the host (-9) with {stored} results stored");
            host = HostProcess::restart(&data, port, &extra);
            last = stored;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = agent.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "agent failed: {log}");
    let device = api.agent_device().await.unwrap();
    let id = device["id"].as_str().unwrap();
    let (_, detail) = api.get(&format!("/v1/devices/{id}")).await;
    let samples = detail["samples"].as_array().unwrap();
    let keys: HashSet<&str> = samples.iter().map(|m| m["key"].as_str().unwrap()).collect();
    let archs: HashSet<u64> = samples
        .iter()
        .map(|m| m["arch_index"].as_u64().unwrap())
        .collect();
    let spool: Vec<_> = std::fs::read_dir(agent_dir.join("spool"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".result"))
        .collect();
    println!(
        "e2e: after {kills} kills: {} results stored, {} distinct keys, {} archs, spool left {}",
        samples.len(),
        keys.len(),
        archs.len(),
        spool.len()
    );
    // A label that did not settle is stored and its job measured again
    // (by design, more likely on a loaded machine), so there may be more
    // samples than archs; but no result is stored twice, and each arch has
    // exactly one settled sample.
    assert_eq!(keys.len(), samples.len(), "a result was stored twice");
    assert_eq!(archs.len(), 20);
    let settled: Vec<u64> = samples
        .iter()
        .filter(|m| m["settled"] != false)
        .map(|m| m["arch_index"].as_u64().unwrap())
        .collect();
    let settled_archs: HashSet<u64> = settled.iter().copied().collect();
    assert_eq!(settled.len(), 20, "an arch was settled twice: {settled:?}");
    assert_eq!(settled_archs.len(), 20);
    assert!(spool.is_empty());
    assert_eq!(detail["queue"]["done"], 20);
    let plain = strip_ansi(&log);
    let done = plain
        .lines()
        .rev()
        .find(|l| l.contains(" done"))
        .unwrap_or("");
    let n = samples.len();
    assert!(
        done.contains(&format!("measured={n}")) && done.contains(&format!("uploaded={n}")),
        "{done}"
    );
    println!(
        "e2e: {kills} kills on {}, {:.1} s",
        if db.is_some() { "PostgreSQL" } else { "SQLite" },
        started.elapsed().as_secs_f64()
    );
    drop(host);
}

/// Removes terminal colour codes from a log.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// (c) 50 concurrent simulated agents over loopback: throughput and p99.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_agents() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let host = HostProcess::start(
        &dir.path().join("host"),
        0,
        &["--no-auto-transfer", "--samples", "12"],
    );
    let workload = Arc::new(Workload {
        enrol_token: ENROL.into(),
        max_jobs: 4,
        think_per_job: Duration::ZERO,
        plan_until: None,
        give_up: Duration::from_secs(60),
    });
    let started = Instant::now();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (url, workload) = (host.url.clone(), workload.clone());
            tokio::spawn(async move { sim_agent::run(&url, &format!("sim-{i}"), &workload).await })
        })
        .collect();
    let mut lat = Vec::new();
    let mut stored = 0;
    for t in tasks {
        let log = t.await.unwrap();
        // Every call answered at the first attempt, none rejected.
        assert!(log.failure.is_none(), "{:?}", log.failure);
        assert_eq!(log.error_count(), 0, "{:?}", log.errors);
        lat.extend(log.all_latencies());
        stored += log.acked.len();
    }
    let wall = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)] * 1e3;
    println!(
        "e2e: 50 concurrent agents, {} requests in {wall:.2} s = {:.0} req/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lat.len(),
        lat.len() as f64 / wall,
        p(0.5),
        p(0.99),
        lat.last().unwrap() * 1e3
    );
    assert_eq!(stored, 50 * 12);
    let api = Api::new(&host.url);
    let (_, devices) = api.get("/v1/devices?kind=agent").await;
    assert_eq!(devices.as_array().unwrap().len(), 50);
    assert!(
        devices
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["samples"] == 12)
    );
}

/// The dashboard in Debian's headless Chromium: the registered device and
/// both SVG plots are in the rendered DOM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_renders_in_headless_chromium() {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
    else {
        eprintln!(
            "\n!!! SKIPPED: no chromium binary (apt-get install chromium; .ci/run installs it) !!!\n"
        );
        return;
    };
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let host = HostProcess::start(&dir.path().join("host"), 0, &LIMITS);
    let api = Api::new(&host.url);
    // A simulated board whose latencies are a real device's, so the transfer has signal.
    let mut client = HostClient::new(&host.url, ENROL).unwrap();
    let reg = client
        .register(&RegisterRequest {
            protocol_version: PROTOCOL_VERSION,
            name: "dashboard-board".into(),
            device_id: None,
            fingerprint: Fingerprint::simulated("sim-0", 4),
        })
        .await
        .unwrap();
    client.set_token(&reg.device_token);
    let table = nasflat_shared::data::latency_table(nasflat_shared::SearchSpace::Nb201).unwrap();
    let column = table.position("raspi4").unwrap();
    for _ in 0..6 {
        let plan = client
            .plan(
                &PlanRequest {
                    device_id: reg.device_id.clone(),
                    max_jobs: 4,
                },
                &fresh_plan_key(),
            )
            .await
            .unwrap();
        let results: Vec<MeasurementResult> = plan
            .leases
            .into_iter()
            .map(|l| {
                let nasflat_shared::protocol::JobSpec::Arch { arch, .. } = &l.job else {
                    panic!()
                };
                MeasurementResult {
                    idempotency_key: l.lease_id.clone(),
                    device_id: reg.device_id.clone(),
                    lease_id: Some(l.lease_id.clone()),
                    median_ms: table.get(column, arch.index().unwrap()).unwrap_or(1.0) * 1.3,
                    job: l.job,
                    valid: true,
                    invalid_reasons: vec![],
                    sample_json: "{}".into(),
                }
            })
            .collect();
        client.upload(&ResultBatch { results }).await.unwrap();
    }
    api.wait_predictor(&reg.device_id, Duration::from_secs(900))
        .await;
    let out = std::process::Command::new("timeout")
        .args([
            "120",
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--dump-dom",
        ])
        .arg(format!("{}/?token={VIEWER}", host.url))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dom.contains(&reg.device_id), "device not in the DOM");
    assert!(dom.contains("dashboard-board"));
    assert!(dom.contains("<svg id=\"scatter-"), "scatter plot missing");
    assert!(dom.contains("<svg id=\"pareto-"), "Pareto plot missing");
    assert!(dom.contains("class=\"front\""), "Pareto front missing");
    assert_eq!(
        dom.matches("class=\"pt\"").count(),
        40,
        "20 scatter + 20 Pareto points"
    );
    println!(
        "e2e: dashboard DOM {} bytes rendered by {chromium}",
        dom.len()
    );
    // The device page as the search view, at a budget set in its form (the
    // slowest prediction: some architecture's bound is within it).
    let (_, all) = api
        .post(
            &format!("/v1/devices/{}/predict", reg.device_id),
            None,
            &json!({"all": true}),
        )
        .await;
    let budget = all["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["latency_ms"].as_f64().unwrap())
        .fold(0.0, f64::max);
    let page = format!(
        "{}/dashboard/devices/{}?budget_ms={budget:.3}&risk=0.2&token={VIEWER}",
        host.url, reg.device_id
    );
    let out = std::process::Command::new("timeout")
        .args([
            "120",
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
        ])
        .args(["--disable-dev-shm-usage", "--dump-dom", &page])
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "chromium failed on {page}");
    assert!(dom.contains("name=\"budget_ms\""), "budget form missing");
    assert!(dom.contains("class=\"budget\""), "budget line missing");
    assert!(
        dom.contains(&format!("value=\"{budget:.3}\"")),
        "budget value missing"
    );
    assert!(dom.contains("class=\"chosen\"") && dom.contains("class=\"bound\""));
    assert!(dom.contains("id=\"chosen\"") && dom.contains("id=\"candidates\""));
}

/// `nasflat-host demo --exit`: the README's main command, end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_command_prints_spearman_and_dashboard() {
    let _serial = serial().await;
    let out = std::process::Command::new(support::bin("nasflat-host"))
        .args([
            "demo",
            "--exit",
            "--listen",
            "127.0.0.1:0",
            "--fresh",
            "10",
            "--samples",
            "12",
        ])
        .args(["--pretrain-epochs", "20", "--source-samples", "25"])
        .args(["--min-runs", "3", "--min-ms", "50", "--max-ms", "500"])
        .arg("--checkpoints")
        .arg(support::checkpoint_dir())
        .arg("--agent")
        .arg(support::bin("nasflat-agent"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().find(|l| l.starts_with("Spearman")).unwrap();
    let rho: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(line.contains("10 fresh measurements"), "{line}");
    assert!(rho.is_finite() && rho > 0.0, "{line}");
    // The printed URL carries the viewer token that opens the dashboard.
    let dashboard = stdout
        .lines()
        .find_map(|l| l.strip_prefix("dashboard: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(dashboard.starts_with("http://127.0.0.1:"), "{dashboard}");
    assert!(dashboard.contains("/?token="), "{dashboard}");
    println!("e2e: demo: {line}");
    // It says whether its numbers were taken on a busy machine.
    let conditions = stdout
        .lines()
        .find(|l| l.starts_with("measuring conditions: "))
        .unwrap_or_else(|| panic!("no measuring-conditions line: {stdout}"));
    assert!(
        conditions.contains("none disturbed") || conditions.contains("WARNING"),
        "{conditions}"
    );
    println!("e2e: demo: {conditions}");
    // The closing search: chosen architecture, prediction and bound within
    // the budget, and the agent's measurement with whether the budget held.
    let search: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("search: "))
        .collect();
    assert_eq!(search.len(), 3, "{stdout}");
    let number_after = |line: &str, key: &str| -> f64 {
        let rest = &line[line.find(key).unwrap() + key.len()..];
        rest.split(' ').next().unwrap().parse().unwrap()
    };
    let budget = number_after(search[0], "budget ");
    assert!(search[0].contains("chosen |"), "{}", search[0]);
    let predicted = number_after(search[1], "predicted ");
    let upper = number_after(search[1], "upper bound ");
    assert!(predicted <= upper && upper <= budget, "{}", search[1]);
    let measured = number_after(search[2], "measured ");
    let verdict = if measured <= budget {
        "budget held"
    } else {
        "budget exceeded"
    };
    assert!(
        measured > 0.0 && search[2].ends_with(verdict),
        "{}",
        search[2]
    );
    for l in &search {
        println!("e2e: demo: {l}");
    }
}

/// A plan key never used before in this test binary.
fn fresh_plan_key() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("testplan{:08}", NEXT.fetch_add(1, Ordering::Relaxed))
}
