//! Set-up shared by the service's in-process tests (`service_*_tests.rs`):
//! the app on a fresh SQLite file with test tokens, requests in the agent
//! protocol's postcard, one call through the router (`oneshot`, no socket),
//! a registered device and the results it posts. One copy, so a change to
//! the service's configuration or protocol is made once for every test.
#![allow(clippy::unwrap_used, dead_code)] // helpers outside #[test] fns; not every file uses all

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use nasflat_host::service::api::router;
use nasflat_host::service::{AppState, ServiceConfig, build_state};
use nasflat_shared::protocol::{
    ErrorBody, Fingerprint, JobSpec, MeasurementResult, POSTCARD_MIME, PROTOCOL_VERSION,
    RegisterRequest, RegisterResponse,
};
use nasflat_shared::{Arch, SearchSpace};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::ServiceExt;

pub(crate) const ADMIN: &str = "admin-token-for-tests";
pub(crate) const ENROL: &str = "enrol-token-for-tests";
pub(crate) const VIEWER: &str = "viewer-token-for-tests";

/// The service's settings for a test: a SQLite file `dir/NAME.db`, the
/// test tokens, tiny pretraining (checkpoints cached per test file under
/// `ckpt-NAME`) and no automatic transfers.
pub(crate) fn config(dir: &std::path::Path, name: &str) -> ServiceConfig {
    let mut c = ServiceConfig::new(
        nasflat_host::service::store::sqlite_url(&dir.join(format!("{name}.db"))),
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("ckpt-{name}")),
    );
    c.admin_token = ADMIN.into();
    c.enrol_token = ENROL.into();
    c.viewer_token = Some(VIEWER.into());
    c.pretrain_epochs = Some(1);
    c.source_samples = Some(2);
    c.auto_transfer = false;
    c
}

/// The app on [`config`], then `configure`'s changes.
pub(crate) async fn app(
    dir: &std::path::Path,
    name: &str,
    configure: impl FnOnce(&mut ServiceConfig),
) -> (Router, AppState) {
    let mut c = config(dir, name);
    configure(&mut c);
    let state = build_state(c).await.unwrap();
    (router(state.clone()), state)
}

/// A POST of `body` as `mime`, answered in postcard where the route can.
pub(crate) fn raw(path: &str, token: Option<&str>, mime: &str, body: Vec<u8>) -> Request<Body> {
    let mut b = Request::post(path)
        .header(header::CONTENT_TYPE, mime)
        .header(header::ACCEPT, POSTCARD_MIME);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    b.body(Body::from(body)).unwrap()
}

/// A POST of `body` in postcard, as an agent sends it.
pub(crate) fn postcard_req<T: Serialize>(
    path: &str,
    token: Option<&str>,
    body: &T,
) -> Request<Body> {
    raw(
        path,
        token,
        POSTCARD_MIME,
        postcard::to_allocvec(body).unwrap(),
    )
}

/// A GET with the viewer token.
pub(crate) fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {VIEWER}"))
        .body(Body::empty())
        .unwrap()
}

/// A whole response.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    /// The content type, empty if none.
    pub(crate) fn mime(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_default()
    }

    /// The body as text (for pages and failure messages).
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `req` through the router, no socket.
pub(crate) async fn call(app: &Router, req: Request<Body>) -> Reply {
    let resp = app.clone().oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

/// Asserts a success and decodes its body (JSON or postcard, by its type).
pub(crate) async fn ok<T: DeserializeOwned>(app: &Router, req: Request<Body>) -> T {
    let reply = call(app, req).await;
    assert!(
        reply.status.is_success(),
        "{}: {}",
        reply.status,
        reply.text()
    );
    if reply.mime().starts_with("application/json") {
        serde_json::from_slice(&reply.body).unwrap()
    } else {
        postcard::from_bytes(&reply.body).unwrap()
    }
}

/// Asserts a `{code, message}` JSON error with status `want` and returns it.
pub(crate) async fn err(app: &Router, req: Request<Body>, want: StatusCode) -> ErrorBody {
    let reply = call(app, req).await;
    assert_eq!(reply.status, want, "{}", reply.text());
    assert!(
        reply.mime().starts_with("application/json"),
        "{want}: content type `{}`",
        reply.mime()
    );
    let body: ErrorBody = serde_json::from_slice(&reply.body).unwrap();
    assert!(!body.code.is_empty() && !body.message.is_empty());
    body
}

/// A new device's registration.
pub(crate) fn registration(name: &str, fingerprint: Fingerprint) -> RegisterRequest {
    RegisterRequest {
        protocol_version: PROTOCOL_VERSION,
        name: name.into(),
        device_id: None,
        fingerprint,
    }
}

/// Registers a simulated device named `name` with the enrolment token.
pub(crate) async fn register_named(app: &Router, name: &str) -> RegisterResponse {
    let req = registration(name, Fingerprint::simulated("test cpu", 2));
    let reply = call(app, postcard_req("/v1/agents/register", Some(ENROL), &req)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    postcard::from_bytes(&reply.body).unwrap()
}

/// Registers a simulated device named `board`.
pub(crate) async fn register(app: &Router) -> RegisterResponse {
    register_named(app, "board").await
}

/// NB201 architecture `i` at batch 1.
pub(crate) fn nb201(i: usize) -> JobSpec {
    JobSpec::Arch {
        arch: Arch::from_index(SearchSpace::Nb201, i).unwrap(),
        batch: 1,
        resolution: None,
    }
}

/// A valid result of `job` posted without a lease, with an empty sample.
pub(crate) fn result(device: &str, key: &str, job: JobSpec, ms: f64) -> MeasurementResult {
    MeasurementResult {
        idempotency_key: key.into(),
        device_id: device.into(),
        lease_id: None,
        job,
        median_ms: ms,
        valid: true,
        invalid_reasons: vec![],
        sample_json: "{}".into(),
    }
}
