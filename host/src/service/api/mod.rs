//! HTTP routes. [`routes`] is the one table of the service's routes (method,
//! path, handler, auth, summary, types); [`router`] builds the app from it
//! and serves the OpenAPI document generated from the same table, so tests
//! can drive the app in-process (`tower::ServiceExt::oneshot`) or over a
//! socket.

pub mod agents;
pub mod devices;
pub mod model_stream;
pub mod models;
pub mod ops;
pub mod predict;
pub mod searches;

use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Extension, Router};
use nasflat_shared::protocol::{
    Heartbeat, HeartbeatResponse, PlanRequest, PlanResponse, RegisterRequest, RegisterResponse,
    ReleaseRequest, ResultAck, ResultBatch,
};

use super::auth::{self, Gate};
use super::config::ServiceConfig;
use super::dashboard;
use super::error::{method_not_allowed, not_found};
use super::metrics;
use super::net;
use super::openapi::{self, ApiDocument, Auth, Body, Method, Route, fields, schema};
use super::search::{SearchRequest, SearchView};
use super::state::AppState;
use super::store::models::ModelRow;
use super::store::transfers::TransferRow;

/// A route of this service: its handler, routed on [`AppState`].
pub type ServiceRoute = Route<MethodRouter<AppState>>;

const OCTET_STREAM: &str = "application/octet-stream";
const HTML: &str = "text/html; charset=utf-8";

/// A table entry: `handler` routed under exactly the documented `method`.
fn route<H, T>(
    method: Method,
    path: &'static str,
    auth: Auth,
    summary: &'static str,
    handler: H,
) -> ServiceRoute
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = match method {
        Method::Get => MethodFilter::GET,
        Method::Post => MethodFilter::POST,
    };
    Route::new(method, path, auth, summary, on(filter, handler))
}

/// Every route of the service. The router and the OpenAPI document are both
/// built from this table; `config` sets per-route body limits.
pub fn routes(config: &ServiceConfig) -> Vec<ServiceRoute> {
    let mut all = agent_routes();
    all.extend(model_routes(config.max_model_bytes));
    all.extend(device_routes());
    all.extend(search_routes());
    all.extend(ops_routes());
    all
}

/// The agent protocol.
fn agent_routes() -> Vec<ServiceRoute> {
    use Method::Post;
    vec![
        route(
            Post,
            "/v1/agents/register",
            Auth::EnrolmentOrDevice,
            "Register a device or re-attach it",
            agents::register,
        )
        .takes(Body::Wire(schema::<RegisterRequest>))
        .answers(200, Body::Wire(schema::<RegisterResponse>)),
        route(
            Post,
            "/v1/agents/plan",
            Auth::Device,
            "Lease jobs to measure",
            agents::plan,
        )
        .takes(Body::Wire(schema::<PlanRequest>))
        .answers(200, Body::Wire(schema::<PlanResponse>)),
        route(
            Post,
            "/v1/agents/heartbeat",
            Auth::Device,
            "Renew leases",
            agents::heartbeat,
        )
        .takes(Body::Wire(schema::<Heartbeat>))
        .answers(200, Body::Wire(schema::<HeartbeatResponse>)),
        route(
            Post,
            "/v1/agents/results",
            Auth::Device,
            "Upload measurements (idempotent)",
            agents::results,
        )
        .takes(Body::Wire(schema::<ResultBatch>))
        .answers(200, Body::Wire(schema::<ResultAck>)),
        route(
            Post,
            "/v1/agents/release",
            Auth::Device,
            "Return leases unmeasured",
            agents::release,
        )
        .takes(Body::Wire(schema::<ReleaseRequest>))
        .answers(204, Body::Empty),
    ]
}

/// User models: upload, download (agents), results.
fn model_routes(max_model_bytes: usize) -> Vec<ServiceRoute> {
    use Method::{Get, Post};
    let mut upload = route(
        Post,
        "/v1/models",
        Auth::Admin,
        "Upload an ONNX model (the body) for some devices",
        models::upload,
    )
    .query(fields::<models::UploadQuery>)
    .takes(Body::Raw(OCTET_STREAM))
    .answers(201, Body::Json(schema::<models::Uploaded>));
    upload.handler = upload.handler.layer(DefaultBodyLimit::max(max_model_bytes));
    vec![
        route(
            Get,
            "/v1/models/{id}",
            Auth::DeviceOrAdmin,
            "Download a user model's ONNX bytes",
            models::download,
        )
        .answers(200, Body::Raw(OCTET_STREAM)),
        route(
            Get,
            "/v1/models",
            Auth::Viewer,
            "List user models",
            models::list,
        )
        .answers(200, Body::Json(schema::<Vec<ModelRow>>)),
        upload,
        route(
            Get,
            "/v1/models/{id}/results",
            Auth::Viewer,
            "A user model's results per device",
            models::results,
        )
        .answers(200, Body::Json(schema::<models::ModelResults>)),
    ]
}

/// Devices, predictions, transfers and the queue.
fn device_routes() -> Vec<ServiceRoute> {
    use Method::{Get, Post};
    vec![
        route(
            Get,
            "/v1/devices",
            Auth::Viewer,
            "Agent and built-in devices",
            devices::list,
        )
        .query(fields::<devices::ListQuery>)
        .answers(200, Body::Json(schema::<Vec<devices::DeviceSummary>>)),
        route(
            Get,
            "/v1/devices/{id}",
            Auth::Viewer,
            "Device detail: samples, fingerprint, queue, predictor quality",
            devices::detail,
        )
        .answers(200, Body::Json(schema::<devices::DeviceDetail>)),
        route(
            Get,
            "/v1/devices/{id}/samples/{key}",
            Auth::Viewer,
            "One sample's timing and provenance (the agent's sample JSON)",
            devices::sample,
        )
        .answers(200, Body::Json(schema::<serde_json::Value>)),
        route(
            Get,
            "/v1/devices/{id}/predict",
            Auth::Viewer,
            "Predict one architecture",
            predict::predict_one,
        )
        .query(fields::<predict::PredictQuery>)
        .answers(200, Body::Json(schema::<predict::PredictResponse>)),
        route(
            Post,
            "/v1/devices/{id}/predict",
            Auth::Viewer,
            "Predict a batch (up to the whole space)",
            predict::predict_batch,
        )
        .takes(Body::Wire(schema::<predict::PredictRequest>))
        .answers(200, Body::Wire(schema::<predict::PredictResponse>)),
        route(
            Post,
            "/v1/devices/{id}/transfer",
            Auth::Admin,
            "Start a transfer job",
            devices::start_transfer,
        )
        .takes(Body::OptionalWire(schema::<devices::TransferRequest>))
        .answers(202, Body::Json(schema::<devices::TransferStarted>)),
        route(
            Post,
            "/v1/devices/{id}/jobs",
            Auth::Admin,
            "Ask a device to measure more architectures",
            devices::add_jobs,
        )
        .takes(Body::Wire(schema::<devices::AddJobs>))
        .answers(200, Body::Json(schema::<devices::JobsQueued>)),
        route(
            Get,
            "/v1/transfers/{id}",
            Auth::Viewer,
            "Transfer status and progress",
            devices::transfer_status,
        )
        .answers(200, Body::Json(schema::<TransferRow>)),
        route(
            Get,
            "/v1/leases",
            Auth::Viewer,
            "The lease queue",
            devices::leases,
        )
        .answers(200, Body::Json(schema::<devices::LeaseQueue>)),
    ]
}

/// Latency-constrained searches and their verification.
fn search_routes() -> Vec<ServiceRoute> {
    use Method::{Get, Post};
    vec![
        route(
            Post,
            "/v1/devices/{id}/search",
            Auth::Admin,
            "Search the best architecture under a latency budget; optionally measure the top candidates",
            searches::start,
        )
        .takes(Body::Wire(schema::<SearchRequest>))
        .answers(201, Body::Json(schema::<SearchView>)),
        route(
            Get,
            "/v1/searches/{id}",
            Auth::Viewer,
            "A search with its candidates' measured latencies so far",
            searches::show,
        )
        .answers(200, Body::Json(schema::<SearchView>)),
    ]
}

/// Operations and the dashboard.
fn ops_routes() -> Vec<ServiceRoute> {
    use Method::Get;
    vec![
        route(
            Get,
            "/v1/openapi.json",
            Auth::Public,
            "This document",
            ops::openapi,
        )
        .answers(200, Body::Json(schema::<serde_json::Value>)),
        route(
            Get,
            "/healthz",
            Auth::Public,
            "Health (database, pretrained predictors)",
            ops::healthz,
        )
        .answers(200, Body::Json(schema::<ops::Health>))
        .also(503, Body::Json(schema::<ops::Health>)),
        route(
            Get,
            "/metrics",
            Auth::Viewer,
            "Prometheus metrics",
            ops::metrics,
        )
        .answers(200, Body::Raw("text/plain; version=0.0.4")),
        route(
            Get,
            "/",
            Auth::Dashboard,
            "Dashboard (HTML): one page of the device list, the lease queue, models",
            dashboard::index,
        )
        .query(fields::<dashboard::FleetPage>)
        .answers(200, Body::Raw(HTML)),
        route(
            Get,
            "/dashboard/devices/{id}",
            Auth::Dashboard,
            "Dashboard of one device (HTML): plots and the search view at a budget",
            dashboard::device_page,
        )
        .query(fields::<dashboard::SearchForm>)
        .answers(200, Body::Raw(HTML)),
    ]
}

/// The app: every route of [`routes`], the OpenAPI document of the same
/// table, request metrics, the request deadline and the body limit.
pub fn router(state: AppState) -> Router {
    let table = routes(&state.config);
    let document = ApiDocument::new(openapi::document(&table));
    let app = table.into_iter().fold(Router::new(), |app, r| {
        let gate = Gate {
            auth: r.auth,
            config: state.config.clone(),
            store: state.store.clone(),
        };
        let handler = r
            .handler
            .route_layer(axum::middleware::from_fn_with_state(gate, auth::require));
        app.route(r.path, handler)
    });
    app.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.config.request_timeout,
            net::deadline,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn(net::head_limits))
        .layer(Extension(document))
        .with_state(state)
}
