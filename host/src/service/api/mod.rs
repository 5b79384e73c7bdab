//! HTTP routes. [`router`] builds the whole app from an [`AppState`], so
//! tests can drive it in-process (`tower::ServiceExt::oneshot`) or over a
//! socket.

pub mod agents;
pub mod devices;
pub mod models;
pub mod ops;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

use super::dashboard;
use super::error::{AppError, Format, decode, not_found, read_body};
use super::metrics;
use super::state::AppState;

/// A JSON/postcard body that may be empty (then `T::default()`).
#[derive(Debug, Clone)]
pub struct OptionalBody<T>(pub T);

impl<S, T> FromRequest<S> for OptionalBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let format = Format::of_content_type(req.headers()).unwrap_or(Format::Json);
        let bytes = read_body(req, state).await?;
        if bytes.is_empty() {
            return Ok(OptionalBody(T::default()));
        }
        decode(format, &bytes).map(OptionalBody)
    }
}

/// Every route: (method, path, who may call it, summary). The OpenAPI
/// document is generated from this table, and a test checks it against the
/// `.route(...)` calls below.
pub const ROUTES: &[(&str, &str, &str, &str)] = &[
    (
        "post",
        "/v1/agents/register",
        "enrolment or device token",
        "Register a device or re-attach it",
    ),
    (
        "post",
        "/v1/agents/plan",
        "device token",
        "Lease jobs to measure",
    ),
    (
        "post",
        "/v1/agents/heartbeat",
        "device token",
        "Renew leases",
    ),
    (
        "post",
        "/v1/agents/results",
        "device token",
        "Upload measurements (idempotent)",
    ),
    (
        "post",
        "/v1/agents/release",
        "device token",
        "Return leases unmeasured",
    ),
    (
        "get",
        "/v1/models/{id}",
        "device or admin token",
        "Download a user model's ONNX bytes",
    ),
    ("get", "/v1/models", "public", "List user models"),
    (
        "post",
        "/v1/models",
        "admin token",
        "Upload an ONNX model for some devices",
    ),
    (
        "get",
        "/v1/models/{id}/results",
        "public",
        "A user model's results per device",
    ),
    ("get", "/v1/devices", "public", "Agent and built-in devices"),
    (
        "get",
        "/v1/devices/{id}",
        "public",
        "Device detail: samples, fingerprint, queue, predictor quality",
    ),
    (
        "get",
        "/v1/devices/{id}/samples/{key}",
        "public",
        "One sample's timing and provenance",
    ),
    (
        "get",
        "/v1/devices/{id}/predict",
        "public",
        "Predict one architecture",
    ),
    (
        "post",
        "/v1/devices/{id}/predict",
        "public",
        "Predict a batch (up to the whole space)",
    ),
    (
        "post",
        "/v1/devices/{id}/transfer",
        "admin token",
        "Start a transfer job",
    ),
    (
        "post",
        "/v1/devices/{id}/jobs",
        "admin token",
        "Ask a device to measure more architectures",
    ),
    (
        "get",
        "/v1/transfers/{id}",
        "public",
        "Transfer status and progress",
    ),
    ("get", "/v1/leases", "public", "The lease queue"),
    ("get", "/v1/openapi.json", "public", "This document"),
    (
        "get",
        "/healthz",
        "public",
        "Health (database, pretrained predictors)",
    ),
    ("get", "/metrics", "public", "Prometheus metrics"),
    ("get", "/", "public", "Dashboard (HTML)"),
    (
        "get",
        "/dashboard/devices/{id}",
        "public",
        "Dashboard of one device (HTML)",
    ),
];

/// The app.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    let model_limit = state.config.max_model_bytes;
    Router::new()
        .route("/v1/agents/register", post(agents::register))
        .route("/v1/agents/plan", post(agents::plan))
        .route("/v1/agents/heartbeat", post(agents::heartbeat))
        .route("/v1/agents/results", post(agents::results))
        .route("/v1/agents/release", post(agents::release))
        .route("/v1/models/{id}", get(agents::model_bytes))
        .route(
            "/v1/models",
            get(models::list)
                .post(models::upload)
                .layer(DefaultBodyLimit::max(model_limit)),
        )
        .route("/v1/models/{id}/results", get(models::results))
        .route("/v1/devices", get(devices::list))
        .route("/v1/devices/{id}", get(devices::detail))
        .route("/v1/devices/{id}/samples/{key}", get(devices::sample))
        .route(
            "/v1/devices/{id}/predict",
            get(devices::predict_one).post(devices::predict_batch),
        )
        .route("/v1/devices/{id}/transfer", post(devices::start_transfer))
        .route("/v1/devices/{id}/jobs", post(devices::add_jobs))
        .route("/v1/transfers/{id}", get(devices::transfer_status))
        .route("/v1/leases", get(devices::leases))
        .route("/v1/openapi.json", get(ops::openapi))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/", get(dashboard::index))
        .route("/dashboard/devices/{id}", get(dashboard::device_page))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}
