//! Operations: health, Prometheus metrics, the OpenAPI document.

use std::sync::Arc;

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;

use crate::service::knowledge::ModelReport;
use crate::service::knowledge::Spaces;
use crate::service::metrics::Metrics;
use crate::service::openapi::ApiDocument;
use crate::service::store::Store;

/// Whether the service can do its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// The database answers and takes writes.
    Ok,
    /// The database does not answer, or is locked for writing.
    Degraded,
}

/// `GET /healthz` body.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Health {
    /// Whether the database answers.
    pub status: HealthStatus,
    /// `ok` or the error.
    pub database: String,
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// SQLite journal mode (`wal`).
    pub journal_mode: Option<String>,
    /// Pretrained predictor per space.
    pub spaces: BTreeMap<String, ModelReport>,
    /// Host version.
    pub version: &'static str,
}

/// `GET /healthz`: 200 when the database answers, 503 otherwise.
pub async fn healthz(
    State(store): State<Store>,
    State(spaces): State<Spaces>,
) -> (StatusCode, axum::Json<Health>) {
    let (status, database) = match store.ping().await.and(store.writable().await) {
        Ok(()) => (HealthStatus::Ok, "ok".to_string()),
        Err(e) => (HealthStatus::Degraded, e.to_string()),
    };
    let journal_mode = store.journal_mode().await.ok().flatten();
    let spaces = spaces
        .iter()
        .map(|(s, k)| (s.to_string(), k.report()))
        .collect();
    let code = if status == HealthStatus::Ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        axum::Json(Health {
            status,
            database,
            backend: match store.backend() {
                crate::service::store::Backend::Sqlite => "sqlite",
                crate::service::store::Backend::Postgres => "postgres",
            },
            journal_mode,
            spaces,
            version: env!("CARGO_PKG_VERSION"),
        }),
    )
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(
    State(store): State<Store>,
    State(spaces): State<Spaces>,
    State(metrics): State<Arc<Metrics>>,
) -> Response {
    let mut gauges: Vec<(&str, &str, f64)> = Vec::new();
    let devices = store.devices().await.map(|d| d.len()).unwrap_or(0);
    gauges.push((
        "nasflat_devices",
        "Registered agent devices",
        devices as f64,
    ));
    if let Ok(c) = store.queue_counts(None).await {
        gauges.push((
            "nasflat_jobs_queued",
            "Jobs waiting for a device",
            c.queued as f64,
        ));
        gauges.push((
            "nasflat_jobs_leased",
            "Jobs leased and not expired",
            c.leased as f64,
        ));
        gauges.push((
            "nasflat_jobs_expired",
            "Leased jobs whose lease expired",
            c.expired as f64,
        ));
        gauges.push(("nasflat_jobs_done", "Jobs measured", c.done as f64));
        gauges.push(("nasflat_jobs_failed", "Jobs given up", c.failed as f64));
    }
    if let Ok(n) = store.count_measurements().await {
        gauges.push(("nasflat_measurements", "Measurements stored", n as f64));
    }
    let ready = spaces.values().filter(|k| k.pretrained().is_some()).count();
    gauges.push((
        "nasflat_pretrained_spaces_ready",
        "Spaces whose pretrained predictor is ready",
        ready as f64,
    ));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(&gauges),
    )
        .into_response()
}

/// `GET /v1/openapi.json`: the document the router was built with.
pub async fn openapi(Extension(document): Extension<ApiDocument>) -> axum::Json<serde_json::Value> {
    axum::Json(document.value().clone())
}
