//! The agent's pull loop against a real HTTP server speaking the protocol:
//! nothing measured is lost or counted twice, whatever the host does.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::path::Path;
use std::time::Duration;

use nasflat_agent::runner::{RunError, RunOptions, RunSummary, run};
use nasflat_agent::spool::Spool;
use nasflat_shared::protocol::JobSpec;
use nasflat_shared::{Arch, SearchSpace};
use nasflat_tests::protocol_server::{Fault, TestHost, lock, new_state};

fn jobs(indices: &[usize]) -> Vec<JobSpec> {
    indices
        .iter()
        .map(|&i| JobSpec::Arch {
            arch: Arch::from_index(SearchSpace::Nb201, i).unwrap(),
            batch: 1,
            resolution: None,
        })
        .collect()
}

fn options(url: &str, state: &Path) -> RunOptions {
    RunOptions {
        host: url.to_string(),
        token: "enrol".into(),
        name: "test-board".into(),
        state_dir: state.to_path_buf(),
        max_jobs: None,
        max_retries: Some(3),
        exit_when_idle: true,
        backoff: (Duration::from_millis(5), Duration::from_millis(20)),
        pin_core: None,
        runtime: nasflat_agent::RuntimeChoice::Tract,
    }
}

async fn run_agent(opts: RunOptions) -> Result<RunSummary, RunError> {
    let (_tx, rx) = tokio::sync::watch::channel(false);
    run(opts, rx).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measures_every_job_once_and_reattaches() {
    let state = new_state("enrol", jobs(&[0, 1, 2]));
    let host = TestHost::start(state.clone(), 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let summary = run_agent(options(&host.url(), dir.path())).await.unwrap();
    assert_eq!(summary.measured, 3);
    assert_eq!(summary.uploaded, 3);
    {
        let s = lock(&state);
        assert_eq!(s.results.len(), 3);
        assert!(s.leases.is_empty());
        assert!(s.results.values().all(|r| r.median_ms > 0.0 && r.valid));
        assert_eq!(s.devices.len(), 1);
    }
    assert!(
        Spool::open(&dir.path().join("spool"))
            .unwrap()
            .is_empty()
            .unwrap()
    );
    // A restart re-attaches as the same device (no second registration of a new one).
    run_agent(options(&host.url(), dir.path())).await.unwrap();
    assert_eq!(lock(&state).devices.len(), 1);
    assert_eq!(lock(&state).registrations, 2);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_and_lost_acks_neither_lose_nor_duplicate() {
    let state = new_state("enrol", jobs(&[10, 11, 12, 13]));
    {
        let mut s = lock(&state);
        s.faults
            .insert("plan", [Fault::Unavailable, Fault::Unavailable].into());
        s.faults.insert(
            "results",
            [Fault::Unavailable, Fault::LoseResponse, Fault::LoseResponse].into(),
        );
    }
    let host = TestHost::start(state.clone(), 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let summary = run_agent(options(&host.url(), dir.path())).await.unwrap();
    assert_eq!(summary.measured, 4);
    {
        let s = lock(&state);
        assert_eq!(s.results.len(), 4, "every measurement stored exactly once");
        assert!(
            s.duplicate_uploads >= 2,
            "lost acks were retried: {}",
            s.duplicate_uploads
        );
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_down_keeps_results_spooled_until_restart() {
    let state = new_state("enrol", jobs(&[20, 21]));
    // Every upload fails: the agent gives up, with both results on disk.
    lock(&state).faults.insert(
        "results",
        std::iter::repeat_n(Fault::Unavailable, 50).collect(),
    );
    let host = TestHost::start(state.clone(), 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(&host.url(), dir.path());
    opts.max_retries = Some(2);
    let err = run_agent(opts).await.unwrap_err();
    assert!(matches!(err, RunError::Unreachable { .. }), "{err}");
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    let spooled = spool.len().unwrap();
    assert!(spooled >= 1, "results must survive in the spool");
    assert!(lock(&state).results.is_empty());

    // The host comes back (same database, new process on the same port).
    let port = host.addr.port();
    host.stop().await;
    lock(&state).faults.clear();
    let host = TestHost::start(state.clone(), port).await.unwrap();
    let summary = run_agent(options(&host.url(), dir.path())).await.unwrap();
    assert!(summary.uploaded >= spooled);
    {
        let s = lock(&state);
        assert_eq!(
            s.results.len(),
            2,
            "both measured results arrive exactly once"
        );
        assert_eq!(s.duplicate_uploads, 0);
    }
    assert!(spool.is_empty().unwrap());
    host.stop().await;
}

/// The host loses its database while results wait in the spool: the
/// restarted agent's device token is unknown (401), so it enrols again with
/// its enrolment token and delivers the spool as the new device's, instead
/// of exiting with the spool stuck (issue 17, item 7).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_device_enrols_again_and_delivers_the_spool() {
    let state = new_state("enrol", jobs(&[30]));
    lock(&state).faults.insert(
        "results",
        std::iter::repeat_n(Fault::Unavailable, 50).collect(),
    );
    let host = TestHost::start(state.clone(), 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(&host.url(), dir.path());
    opts.max_retries = Some(2);
    let err = run_agent(opts).await.unwrap_err();
    assert!(matches!(err, RunError::Unreachable { .. }), "{err}");
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    assert_eq!(spool.len().unwrap(), 1);
    let old_device = {
        let mut s = lock(&state);
        let old = s.devices.keys().next().unwrap().clone();
        // A fresh database: no devices, leases or results.
        s.devices.clear();
        s.leases.clear();
        s.faults.clear();
        s.queue = jobs(&[31]).into();
        old
    };
    let summary = run_agent(options(&host.url(), dir.path())).await.unwrap();
    assert_eq!(summary.uploaded, 2, "the spooled result and the new one");
    {
        let s = lock(&state);
        assert_eq!(s.devices.len(), 1);
        let new_device = s.devices.keys().next().unwrap();
        assert_ne!(new_device, &old_device);
        assert_eq!(s.results.len(), 2);
        assert!(s.results.values().all(|r| &r.device_id == new_device));
    }
    assert!(spool.is_empty().unwrap());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("device.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "device.json holds the device token");
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_results_are_dropped_and_the_rest_still_arrives() {
    // A first run registers the board and uploads one real measurement.
    let state = new_state("enrol", jobs(&[40]));
    let host = TestHost::start(state.clone(), 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    run_agent(options(&host.url(), dir.path())).await.unwrap();
    let stored = lock(&state).results.values().next().cloned().unwrap();
    // Then its spool holds a result the host can never accept (negative
    // latency, e.g. from a broken clock) next to a good one.
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    let mut good = stored.clone();
    good.idempotency_key = "good-key".into();
    good.lease_id = None;
    let mut bad = good.clone();
    bad.idempotency_key = "bad-key".into();
    bad.median_ms = -1.0;
    spool.push(&bad).unwrap();
    spool.push(&good).unwrap();
    let summary = run_agent(options(&host.url(), dir.path())).await.unwrap();
    assert_eq!((summary.rejected, summary.uploaded), (1, 1));
    {
        let s = lock(&state);
        assert!(s.results.contains_key("good-key"));
        assert!(!s.results.contains_key("bad-key"));
        assert_eq!(s.results.len(), 2);
    }
    assert!(spool.is_empty().unwrap(), "nothing left to retry forever");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_the_host_is_a_clear_error_and_spool_stays() {
    let state = new_state("enrol", jobs(&[30]));
    lock(&state)
        .faults
        .insert("results", [Fault::Garbage].into());
    let host = TestHost::start(state.clone(), 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = run_agent(options(&host.url(), dir.path()))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("undecodable"), "{text}");
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    assert_eq!(spool.len().unwrap(), 1, "the unacknowledged result is kept");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_enrolment_token_is_refused() {
    let state = new_state("enrol", jobs(&[1]));
    let host = TestHost::start(state.clone(), 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(&host.url(), dir.path());
    opts.token = "wrong".into();
    let err = run_agent(opts).await.unwrap_err().to_string();
    assert!(err.contains("401") && err.contains("enrolment"), "{err}");
    assert!(lock(&state).devices.is_empty());
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_models_are_fetched_and_measured() {
    let arch = nasflat_shared::Nb201Arch::from_index(3).unwrap();
    let bytes = nasflat_onnx::encode(
        &nasflat_onnx::nb201_model(&arch, &nasflat_onnx::Nb201Config::default()).unwrap(),
    );
    let state = new_state(
        "enrol",
        vec![JobSpec::Model {
            model_id: "m1".into(),
            inputs: vec!["input:1x3x32x32".into()],
        }],
    );
    lock(&state).models.insert("m1".into(), bytes);
    let host = TestHost::start(state.clone(), 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let summary = run_agent(options(&host.url(), dir.path())).await.unwrap();
    assert_eq!(summary.measured, 1);
    {
        let s = lock(&state);
        let r = s.results.values().next().unwrap();
        assert!(matches!(&r.job, JobSpec::Model { model_id, .. } if model_id == "m1"));
        let sample: serde_json::Value = serde_json::from_str(&r.sample_json).unwrap();
        assert_eq!(sample["timing"]["output_shapes"][0][1], 10);
    }
    host.stop().await;
}

/// A model no runtime can load fails its job at once with the reason
/// (`ReleaseRequest::permanent`), instead of going back to the queue to be
/// leased and failed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_cannot_load_fails_its_job_with_the_reason() {
    let state = new_state(
        "enrol",
        vec![JobSpec::Model {
            model_id: "junk".into(),
            inputs: vec![],
        }],
    );
    lock(&state)
        .models
        .insert("junk".into(), b"\xff\xff\xff\xffnot onnx at all".to_vec());
    let host = TestHost::start(state.clone(), 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let summary = run_agent(options(&host.url(), dir.path())).await.unwrap();
    assert_eq!(summary.measured, 0);
    {
        let s = lock(&state);
        assert!(s.queue.is_empty() && s.leases.is_empty());
        assert_eq!(s.failed.len(), 1, "{:?}", s.failed);
        let (job, reason) = &s.failed[0];
        assert!(matches!(job, JobSpec::Model { model_id, .. } if model_id == "junk"));
        assert!(reason.contains("not a valid ONNX model"), "{reason}");
        assert!(
            reason.contains("tract"),
            "the reason names the runtime: {reason}"
        );
    }
    host.stop().await;
}

/// `run --runtime ort` that cannot load onnxruntime stops before it
/// registers (the CLI exits 2): no device appears for a runtime that cannot
/// measure anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_an_unusable_runtime_never_registers() {
    let state = new_state("enrol", jobs(&[0]));
    let host = TestHost::start(state.clone(), 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(&host.url(), dir.path());
    opts.runtime = nasflat_agent::RuntimeChoice::Ort {
        library: Some(dir.path().join("libonnxruntime.so.1.32.0")),
    };
    let err = run_agent(opts).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RunError::Runtime(_)), "{text}");
    if nasflat_agent::runtime::ORT_SUPPORTED {
        assert!(text.contains("libonnxruntime.so.1.32.0"), "{text}");
    } else {
        assert!(text.contains("feature `ort`"), "{text}");
    }
    assert_eq!(lock(&state).registrations, 0);
    assert_eq!(lock(&state).queue.len(), 1);
    host.stop().await;
}
