//! What a client sends cannot corrupt what others stored or read (issue 17,
//! items 9-14 and 17), in-process: idempotency keys are per device; sample
//! JSON, fingerprints and a device's stored bytes are bounded; a locked
//! database is a 503 and `/healthz` says so; every error is `{code,
//! message}` JSON; postcard bodies with trailing bytes are refused; client
//! text is logged escaped; the documented `sqlite://PATH` creates a new
//! database.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{
    ENROL, Reply, VIEWER, app, call, err, nb201, postcard_req, raw, register, registration,
};
use nasflat_host::service::api::agents::MAX_FINGERPRINT_FIELD;
use nasflat_host::service::store::Store;
use nasflat_shared::protocol::{
    Fingerprint, MeasurementResult, POSTCARD_MIME, PlanRequest, RegisterResponse, ReleaseRequest,
    ResultAck, ResultBatch,
};
use sqlx::Connection;

/// A result of NB201 architecture 5 carrying `sample_json`.
fn result(device: &str, key: &str, sample_json: &str) -> MeasurementResult {
    MeasurementResult {
        sample_json: sample_json.into(),
        ..common::result(device, key, nb201(5), 3.0)
    }
}

fn upload(dev: &RegisterResponse, results: Vec<MeasurementResult>) -> Request<Body> {
    postcard_req(
        "/v1/agents/results",
        Some(&dev.device_token),
        &ResultBatch { results },
    )
}

/// Device B posting the key device A used is stored as B's own
/// measurement (it was acknowledged and nothing stored for B).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_are_scoped_by_device() {
    let dir = tempfile::tempdir().unwrap();
    let (app, state) = app(dir.path(), "integrity", |_| {}).await;
    let (a, b) = (register(&app).await, register(&app).await);
    for dev in [&a, &b] {
        let r = upload(dev, vec![result(&dev.device_id, "shared-key", "{}")]);
        let Reply {
            status,
            body: bytes,
            ..
        } = call(&app, r).await;
        assert_eq!(status, StatusCode::OK);
        let ack: ResultAck = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(ack.acked, ["shared-key"]);
    }
    for dev in [&a, &b] {
        let stored = state
            .store
            .measurements_of_device(&dev.device_id)
            .await
            .unwrap();
        assert_eq!(stored.len(), 1, "{}", dev.device_id);
    }
    // The same device re-posting its key is still a duplicate.
    call(
        &app,
        upload(&a, vec![result(&a.device_id, "shared-key", "{}")]),
    )
    .await;
    assert_eq!(state.store.count_measurements().await.unwrap(), 2);
}

/// Non-JSON or oversize `sample_json`, a fingerprint field of 1 MB, and a
/// device past its storage quota are refused; over the quota is a 507 the
/// agent retries (its results stay in its spool).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_client_data_is_validated_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (app, state) = app(dir.path(), "integrity", |c| c.device_quota_bytes = 10_000).await;
    let dev = register(&app).await;
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(5 << 20));
    for (key, sample) in [
        ("not-json", "timing: fast"),
        ("array", "[1,2]"),
        ("big", big.as_str()),
    ] {
        let e = err(
            &app,
            upload(&dev, vec![result(&dev.device_id, key, sample)]),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert!(
            e.rejected[0].1.contains("sample_json"),
            "{key}: {:?}",
            e.rejected
        );
    }
    let mut fingerprint = Fingerprint::simulated("test cpu", 2);
    fingerprint.kernel = Some("k".repeat(1 << 20));
    let e = err(
        &app,
        postcard_req(
            "/v1/agents/register",
            Some(ENROL),
            &registration("board", fingerprint),
        ),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        e.message
            .contains(&format!("at most {MAX_FINGERPRINT_FIELD}")),
        "{}",
        e.message
    );
    // 4 KB samples: two fit in 10,000 bytes, the third does not.
    let sample = format!("{{\"pad\":\"{}\"}}", "y".repeat(4000));
    for i in 0..2 {
        let Reply { status, .. } = call(
            &app,
            upload(
                &dev,
                vec![result(&dev.device_id, &format!("q{i}"), &sample)],
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    let e = err(
        &app,
        upload(&dev, vec![result(&dev.device_id, "q2", &sample)]),
        StatusCode::INSUFFICIENT_STORAGE,
    )
    .await;
    assert_eq!(e.code, "quota_exceeded");
    assert_eq!(state.store.count_measurements().await.unwrap(), 2);
}

/// Another process holding SQLite's write lock: an upload gets 503
/// `unavailable` (it was 500 `internal`) and `/healthz` reports the
/// database degraded (it said ok); both recover once the lock goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_is_503_and_healthz_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app(dir.path(), "integrity", |_| {}).await;
    let dev = register(&app).await;
    let url = format!("sqlite://{}", dir.path().join("integrity.db").display());
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let health = || Request::get("/healthz").body(Body::empty()).unwrap();
    let Reply { status, body, .. } = call(&app, health()).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let e = err(
        &app,
        upload(&dev, vec![result(&dev.device_id, "locked", "{}")]),
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(e.code, "unavailable", "{}", e.message);
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    let Reply { status, .. } = call(&app, health()).await;
    assert_eq!(status, StatusCode::OK);
    let Reply { status, .. } = call(
        &app,
        upload(&dev, vec![result(&dev.device_id, "locked", "{}")]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

/// 405, 414, 431 and a query string that does not decode answer our JSON
/// error body (they were empty or plain text).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_json() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app(dir.path(), "integrity", |_| {}).await;
    let viewer = |b: axum::http::request::Builder| {
        b.header(header::AUTHORIZATION, format!("Bearer {VIEWER}"))
            .body(Body::empty())
            .unwrap()
    };
    let e = err(
        &app,
        viewer(Request::delete("/v1/devices")),
        StatusCode::METHOD_NOT_ALLOWED,
    )
    .await;
    assert_eq!(e.code, "method_not_allowed");
    err(
        &app,
        viewer(Request::get(
            "/v1/devices/nb201:pixel3/predict?index=not-a-number",
        )),
        StatusCode::BAD_REQUEST,
    )
    .await;
    let long = format!("/v1/devices?kind={}", "a".repeat(9000));
    err(&app, viewer(Request::get(long)), StatusCode::URI_TOO_LONG).await;
    let mut many = Request::get("/healthz");
    for i in 0..120 {
        many = many.header(format!("x-h{i}"), "v");
    }
    err(
        &app,
        many.body(Body::empty()).unwrap(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    )
    .await;
}

/// A valid postcard body followed by more bytes is malformed (it was
/// taken, the rest ignored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postcard_bodies_with_trailing_bytes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app(dir.path(), "integrity", |_| {}).await;
    let dev = register(&app).await;
    let plan = PlanRequest {
        device_id: dev.device_id.clone(),
        max_jobs: 1,
    };
    let mut bytes = postcard::to_allocvec(&plan).unwrap();
    bytes.extend_from_slice(b"trailing");
    let e = err(
        &app,
        raw(
            "/v1/agents/plan",
            Some(&dev.device_token),
            POSTCARD_MIME,
            bytes,
        ),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(e.message.contains("8 bytes after the end"), "{}", e.message);
}

/// Log output written to a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A release reason and a result's device id with newlines cannot forge
/// log lines: they are logged escaped.
#[tokio::test]
async fn client_text_is_logged_escaped() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app(dir.path(), "integrity", |_| {}).await;
    let dev = register(&app).await;
    let release = ReleaseRequest {
        device_id: dev.device_id.clone(),
        lease_ids: vec![],
        reason: "done\nERROR forged: the host is compromised".into(),
        permanent: false,
    };
    call(
        &app,
        postcard_req("/v1/agents/release", Some(&dev.device_token), &release),
    )
    .await;
    let forged = result("x\nERROR forged: device", "k1", "{}");
    call(&app, upload(&dev, vec![forged])).await;
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("leases released"), "{text}");
    assert!(text.contains("result rejected"), "{text}");
    assert!(
        text.lines().all(|l| !l.starts_with("ERROR forged")),
        "a forged line:\n{text}"
    );
}

/// `sqlite:///ABSOLUTE/new.db`, the form the README and `--help` give,
/// creates the database (it failed with "unable to open database file"
/// unless `?mode=rwc` was added), readable by its owner only.
#[tokio::test]
async fn the_documented_sqlite_url_creates_a_private_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    store.ping().await.unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the database holds token hashes");
    }
}
