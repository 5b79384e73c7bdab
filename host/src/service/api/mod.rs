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
use nasflat_shared::protocol::{
    Heartbeat, HeartbeatResponse, PlanRequest, PlanResponse, RegisterRequest, RegisterResponse,
    ReleaseRequest, ResultAck, ResultBatch,
};
use serde::de::DeserializeOwned;

use super::dashboard;
use super::error::{AppError, Format, decode, not_found, read_body};
use super::metrics;
use super::openapi::{Body, Route, fields, schema};
use super::state::AppState;
use super::store::models::ModelRow;
use super::store::transfers::TransferRow;

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

/// Every route with its auth, summary and the types of its query, request
/// and success response. The OpenAPI document is generated from this table,
/// and tests check it against the `.route(...)` calls below and against the
/// handlers' extractors.
pub const ROUTES: &[Route] = &[
    Route::post(
        "/v1/agents/register",
        "enrolment or device token",
        "Register a device or re-attach it",
    )
    .takes(Body::Wire(schema::<RegisterRequest>))
    .answers(200, Body::Wire(schema::<RegisterResponse>)),
    Route::post("/v1/agents/plan", "device token", "Lease jobs to measure")
        .takes(Body::Wire(schema::<PlanRequest>))
        .answers(200, Body::Wire(schema::<PlanResponse>)),
    Route::post("/v1/agents/heartbeat", "device token", "Renew leases")
        .takes(Body::Wire(schema::<Heartbeat>))
        .answers(200, Body::Wire(schema::<HeartbeatResponse>)),
    Route::post(
        "/v1/agents/results",
        "device token",
        "Upload measurements (idempotent)",
    )
    .takes(Body::Wire(schema::<ResultBatch>))
    .answers(200, Body::Wire(schema::<ResultAck>)),
    Route::post(
        "/v1/agents/release",
        "device token",
        "Return leases unmeasured",
    )
    .takes(Body::Wire(schema::<ReleaseRequest>))
    .answers(204, Body::Empty),
    Route::get(
        "/v1/models/{id}",
        "device or admin token",
        "Download a user model's ONNX bytes",
    )
    .answers(200, Body::Raw(OCTET_STREAM)),
    Route::get("/v1/models", "public", "List user models")
        .answers(200, Body::Json(schema::<Vec<ModelRow>>)),
    Route::post(
        "/v1/models",
        "admin token",
        "Upload an ONNX model (the body) for some devices",
    )
    .query(fields::<models::UploadQuery>)
    .takes(Body::Raw(OCTET_STREAM))
    .answers(201, Body::Json(schema::<models::Uploaded>)),
    Route::get(
        "/v1/models/{id}/results",
        "public",
        "A user model's results per device",
    )
    .answers(200, Body::Json(schema::<models::ModelResults>)),
    Route::get("/v1/devices", "public", "Agent and built-in devices")
        .query(fields::<devices::ListQuery>)
        .answers(200, Body::Json(schema::<Vec<devices::DeviceSummary>>)),
    Route::get(
        "/v1/devices/{id}",
        "public",
        "Device detail: samples, fingerprint, queue, predictor quality",
    )
    .answers(200, Body::Json(schema::<devices::DeviceDetail>)),
    Route::get(
        "/v1/devices/{id}/samples/{key}",
        "public",
        "One sample's timing and provenance (the agent's sample JSON)",
    )
    .answers(200, Body::Json(schema::<serde_json::Value>)),
    Route::get(
        "/v1/devices/{id}/predict",
        "public",
        "Predict one architecture",
    )
    .query(fields::<devices::PredictQuery>)
    .answers(200, Body::Json(schema::<devices::PredictResponse>)),
    Route::post(
        "/v1/devices/{id}/predict",
        "public",
        "Predict a batch (up to the whole space)",
    )
    .takes(Body::Wire(schema::<devices::PredictRequest>))
    .answers(200, Body::Wire(schema::<devices::PredictResponse>)),
    Route::post(
        "/v1/devices/{id}/transfer",
        "admin token",
        "Start a transfer job",
    )
    .takes(Body::OptionalWire(schema::<devices::TransferRequest>))
    .answers(202, Body::Json(schema::<devices::TransferStarted>)),
    Route::post(
        "/v1/devices/{id}/jobs",
        "admin token",
        "Ask a device to measure more architectures",
    )
    .takes(Body::Wire(schema::<devices::AddJobs>))
    .answers(200, Body::Json(schema::<devices::JobsQueued>)),
    Route::get(
        "/v1/transfers/{id}",
        "public",
        "Transfer status and progress",
    )
    .answers(200, Body::Json(schema::<TransferRow>)),
    Route::get("/v1/leases", "public", "The lease queue")
        .answers(200, Body::Json(schema::<devices::LeaseQueue>)),
    Route::get("/v1/openapi.json", "public", "This document")
        .answers(200, Body::Json(schema::<serde_json::Value>)),
    Route::get(
        "/healthz",
        "public",
        "Health (database, pretrained predictors)",
    )
    .answers(200, Body::Json(schema::<ops::Health>))
    .also(503, Body::Json(schema::<ops::Health>)),
    Route::get("/metrics", "public", "Prometheus metrics")
        .answers(200, Body::Raw("text/plain; version=0.0.4")),
    Route::get("/", "public", "Dashboard (HTML)").answers(200, Body::Raw(HTML)),
    Route::get(
        "/dashboard/devices/{id}",
        "public",
        "Dashboard of one device (HTML)",
    )
    .answers(200, Body::Raw(HTML)),
];

const OCTET_STREAM: &str = "application/octet-stream";
const HTML: &str = "text/html; charset=utf-8";

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
