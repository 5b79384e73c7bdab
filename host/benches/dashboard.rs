//! Server time of the dashboard at fleet scale (issue 17, item 8): a store
//! of 1,000 devices with 300 measurements each (all answering leased jobs),
//! 20 more queued jobs each, a finished transfer and a served NB201
//! predictor each, filled by direct store calls; then the home page (first
//! and last page, with the predictor and quality caches cold and warm), a
//! device page and `GET /v1/devices` through the router, auth included.
//!
//! ```sh
//! cargo bench -p nasflat-host --bench dashboard --profile dev
//! ```
//!
//! The fixture is built once into `$CARGO_TARGET_TMPDIR/dashboard-fleet/`
//! (about a minute) and reused. Figures: docs/experiments/host_hardening.md.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark's setup

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use nasflat_host::service::api::router;
use nasflat_host::service::domain::{Purpose, Subject, TransferState, Trigger};
use nasflat_host::service::knowledge::ModelState;
use nasflat_host::service::predictions::PredictionCache;
use nasflat_host::service::store::Store;
use nasflat_host::service::store::jobs::NewJob;
use nasflat_host::service::store::measurements::NewMeasurement;
use nasflat_host::service::store::transfers::NewPredictions;
use nasflat_host::service::{AppState, ServiceConfig, build_state};
use nasflat_shared::SearchSpace;
use nasflat_shared::protocol::Fingerprint;
use tower::ServiceExt;

const DEVICES: usize = 1000;
const MEASUREMENTS: usize = 300;
const QUEUED: usize = 20;
const VIEWER: &str = "viewer-token-for-bench";

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-fleet")
}

async fn state(dir: &Path) -> AppState {
    let mut c = ServiceConfig::new(
        nasflat_host::service::store::sqlite_url(
            &dir.join(format!("fleet-{DEVICES}x{MEASUREMENTS}.db")),
        ),
        dir.join("ckpt"),
    );
    c.admin_token = "admin-token-for-bench".into();
    c.enrol_token = "enrol-token-for-bench".into();
    c.viewer_token = Some(VIEWER.into());
    c.pretrain_epochs = Some(1);
    c.source_samples = Some(2);
    c.auto_transfer = false;
    build_state(c).await.unwrap()
}

/// Fills the store (once: a marker file records a finished fixture).
async fn fill(store: &Store, dir: &Path) {
    let done = dir.join(format!("fleet-{DEVICES}x{MEASUREMENTS}.done"));
    if done.exists() {
        return;
    }
    let started = Instant::now();
    let table = nasflat_shared::data::latency_table(SearchSpace::Nb201).unwrap();
    let column = table.position("raspi4").unwrap();
    let rows = table.rows();
    let truth: Vec<f64> = (0..rows)
        .map(|r| table.get(column, r).unwrap_or(1.0))
        .collect();
    let fingerprint = serde_json::to_string(&Fingerprint::simulated("bench cpu", 4)).unwrap();
    for d in 0..DEVICES {
        let id = format!("dev-bench-{d:04}");
        store
            .insert_device(
                &id,
                &format!("board-{d}"),
                &format!("hash-{d}"),
                &fingerprint,
            )
            .await
            .unwrap();
        // Each device its own rows of the space, spread over the table.
        let arch = |i: usize| (d * 7919 + i * 52) % rows;
        let jobs: Vec<NewJob> = (0..MEASUREMENTS + QUEUED)
            .map(|i| NewJob::Arch {
                space: SearchSpace::Nb201,
                index: arch(i),
            })
            .collect();
        store
            .insert_jobs(&id, Purpose::Sample, &jobs)
            .await
            .unwrap();
        let granted = store
            .claim_jobs(&id, MEASUREMENTS, 600_000, None)
            .await
            .unwrap();
        let results: Vec<NewMeasurement> = granted
            .iter()
            .map(|g| {
                let Subject::Arch { arch_index, .. } = g.job.subject else {
                    unreachable!("arch jobs only")
                };
                NewMeasurement {
                    key: g.lease_id.clone(),
                    lease_id: Some(g.lease_id.clone()),
                    subject: g.job.subject.clone(),
                    median_ms: truth[arch_index] * (1.0 + (d % 10) as f64 / 10.0),
                    valid: true,
                    invalid_reasons: Vec::new(),
                    sample_json: "{}".into(),
                    // Every 20th sample unsettled, as a busy fleet reports.
                    settled: Some(arch_index % 20 != 0),
                }
            })
            .collect();
        store.store_measurements(&id, &results).await.unwrap();
        let transfer = format!("tr-bench-{d:04}");
        store
            .insert_transfer(&transfer, &id, SearchSpace::Nb201, Trigger::Auto)
            .await
            .unwrap();
        store
            .update_transfer(&transfer, TransferState::Done, 1.0, "done", 20)
            .await
            .unwrap();
        let predicted: Vec<f64> = truth
            .iter()
            .enumerate()
            .map(|(r, t)| t * (1.0 + ((r * 31 + d) % 17) as f64 / 40.0))
            .collect();
        let train: Vec<usize> = (0..20).map(arch).collect();
        store
            .put_predictions(&NewPredictions {
                device_id: &id,
                space: SearchSpace::Nb201,
                version: &format!("v-{transfer}"),
                transfer_id: &transfer,
                base_version: "bench",
                init_from: Some("raspi4"),
                train_rows: &train,
                latencies: &predicted,
                choice: None,
            })
            .await
            .unwrap();
    }
    std::fs::write(&done, b"").unwrap();
    eprintln!(
        "fixture: {DEVICES} devices x {MEASUREMENTS} measurements in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

/// GET `path` as the viewer; panics unless 200. Returns the body's size.
async fn get(app: &Router, path: &str) -> usize {
    let req = Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {VIEWER}"))
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(
        status,
        StatusCode::OK,
        "{path}: {}",
        String::from_utf8_lossy(&body)
    );
    body.len()
}

/// The router over `state` with empty prediction and quality caches, as
/// after a restart.
fn cold(state: &AppState) -> Router {
    let mut s = state.clone();
    s.predictions = Arc::new(PredictionCache::new(s.store.clone()));
    s.qualities = Arc::default();
    router(s)
}

fn dashboard(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = fixture_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let state = rt.block_on(async {
        let state = state(&dir).await;
        fill(&state.store, &dir).await;
        // Pretraining (1 epoch) runs in the background: wait, so it takes
        // no CPU from the timings.
        while state
            .spaces
            .values()
            .any(|k| k.report().state == ModelState::Pretraining)
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        state
    });
    let app = router(state.clone());
    let last = DEVICES.div_ceil(50);
    let device = "/dashboard/devices/dev-bench-0500";
    for path in ["/", &format!("/?page={last}"), device, "/v1/devices"] {
        let bytes = rt.block_on(get(&app, path));
        eprintln!("{path}: {bytes} bytes");
    }
    let mut g = c.benchmark_group(format!("dashboard_{DEVICES}x{MEASUREMENTS}"));
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    g.bench_function("home_page_cold_caches", |b| {
        b.iter_batched(
            || cold(&state),
            |app| rt.block_on(get(&app, "/")),
            BatchSize::PerIteration,
        );
    });
    g.bench_function("home_page", |b| b.iter(|| rt.block_on(get(&app, "/"))));
    g.bench_function("home_page_last", |b| {
        let path = format!("/?page={last}");
        b.iter(|| rt.block_on(get(&app, &path)));
    });
    g.bench_function("device_page", |b| b.iter(|| rt.block_on(get(&app, device))));
    g.bench_function("v1_devices", |b| {
        b.iter(|| rt.block_on(get(&app, "/v1/devices")));
    });
    g.finish();
}

criterion_group!(benches, dashboard);
criterion_main!(benches);
