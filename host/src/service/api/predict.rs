//! Predictions: one architecture (`GET`) or a batch up to the whole space
//! (`POST`), from a built-in device's table or an agent device's served
//! predictor.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRef, Path, State};
use axum::http::HeaderMap;
use nasflat_shared::{Arch, SearchSpace};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::devices::{builtin, parse_space, resolve_rows, space_of};
use crate::service::config::ServiceConfig;
use crate::service::error::{AppError, Query, Reply, Wire};
use crate::service::knowledge::Spaces;
use crate::service::metrics::Metrics;
use crate::service::predictions::PredictionCache;
use crate::service::store::Store;
use crate::service::transfer::{SampleSet, samples_of};

/// `GET /v1/devices/{id}/predict` query.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct PredictQuery {
    /// Space (default: the first served).
    pub space: Option<String>,
    /// Architecture string (NB201) or key (FBNet).
    pub arch: Option<String>,
    /// Table row.
    pub index: Option<usize>,
}

/// `POST /v1/devices/{id}/predict` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct PredictRequest {
    /// Space (default: the first served).
    #[serde(default)]
    pub space: Option<SearchSpace>,
    /// Architecture strings.
    #[serde(default)]
    pub archs: Vec<String>,
    /// Table rows.
    #[serde(default)]
    pub indices: Vec<usize>,
    /// Every architecture of the space.
    #[serde(default)]
    pub all: bool,
}

/// One predicted latency.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Prediction {
    /// Table row.
    pub index: usize,
    /// Architecture string.
    pub arch: String,
    /// Predicted latency, ms (`None`: a built-in device without this measurement).
    pub latency_ms: Option<f64>,
}

/// Prediction response.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PredictResponse {
    /// Device.
    pub device_id: String,
    /// Space.
    pub space: SearchSpace,
    /// Version of the predictor that answered.
    pub predictor_version: String,
    /// `transfer` (a fine-tuned predictor) or `table` (a built-in device's measurements).
    pub source: String,
    /// Server time spent, microseconds.
    pub elapsed_us: u64,
    /// Predictions, in request order.
    pub predictions: Vec<Prediction>,
}

/// What answering a prediction reads: the served spaces (and the built-in
/// devices' tables), the store and the served predictions, the plan size
/// (for the "no predictor yet" answer) and the counters.
pub struct PredictLookup {
    spaces: Spaces,
    store: Store,
    predictions: Arc<PredictionCache>,
    metrics: Arc<Metrics>,
    plan_samples: usize,
}

impl<S> FromRef<S> for PredictLookup
where
    Spaces: FromRef<S>,
    Store: FromRef<S>,
    Arc<PredictionCache>: FromRef<S>,
    Arc<Metrics>: FromRef<S>,
    Arc<ServiceConfig>: FromRef<S>,
{
    fn from_ref(state: &S) -> PredictLookup {
        PredictLookup {
            spaces: Spaces::from_ref(state),
            store: Store::from_ref(state),
            predictions: Arc::<PredictionCache>::from_ref(state),
            metrics: Arc::<Metrics>::from_ref(state),
            plan_samples: Arc::<ServiceConfig>::from_ref(state).samples,
        }
    }
}

async fn predict_rows(
    lookup: &PredictLookup,
    id: &str,
    space: SearchSpace,
    rows: Vec<usize>,
) -> Result<PredictResponse, AppError> {
    let started = Instant::now();
    let k = lookup.spaces.served(space)?.clone();
    let arch_name = |r: usize| {
        Arch::from_index(space, r)
            .map(|a| a.to_string())
            .unwrap_or_default()
    };
    let (version, source, values): (String, &str, Vec<Option<f64>>) = if let Some((bk, column)) =
        builtin(&lookup.spaces, id)
    {
        if bk.space != space {
            return Err(AppError::BadRequest(format!(
                "built-in device `{id}` belongs to {}",
                bk.space
            )));
        }
        let v = rows.iter().map(|&r| bk.data.latency(column, r)).collect();
        (format!("{space}-table"), "table", v)
    } else {
        if lookup.store.device(id).await?.is_none() {
            return Err(AppError::NotFound(format!("no device `{id}`")));
        }
        let Some(p) = lookup.predictions.get(id, space).await? else {
            let measured = lookup.store.measurements_of_device(id).await?;
            let have = samples_of(&measured, space, SampleSet::Plan);
            return Err(AppError::Conflict(format!(
                "device `{id}` has no {space} predictor yet ({} of {} samples measured; the transfer starts at {})",
                have.len(),
                lookup.plan_samples,
                lookup.plan_samples
            )));
        };
        let v = rows.iter().map(|&r| p.latencies.get(r).copied()).collect();
        (p.version.clone(), "transfer", v)
    };
    let predictions = rows
        .iter()
        .zip(values)
        .map(|(&index, latency_ms)| Prediction {
            index,
            arch: arch_name(index),
            latency_ms,
        })
        .collect();
    drop(k);
    Metrics::inc(&lookup.metrics.predictions_served);
    Ok(PredictResponse {
        device_id: id.to_string(),
        space,
        predictor_version: version,
        source: source.into(),
        elapsed_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        predictions,
    })
}

/// `GET /v1/devices/{id}/predict?space=&arch=|index=`.
pub async fn predict_one(
    State(lookup): State<PredictLookup>,
    Path(id): Path<String>,
    Query(q): Query<PredictQuery>,
) -> Result<axum::Json<PredictResponse>, AppError> {
    let space = space_of(&lookup.spaces, parse_space(q.space.as_deref())?)?;
    let k = lookup.spaces.served(space)?.clone();
    let archs: Vec<String> = q.arch.into_iter().collect();
    let indices: Vec<usize> = q.index.into_iter().collect();
    let rows = resolve_rows(&k, &archs, &indices, false)?;
    Ok(axum::Json(predict_rows(&lookup, &id, space, rows).await?))
}

/// `POST /v1/devices/{id}/predict`: a batch (up to the whole space).
pub async fn predict_batch(
    State(lookup): State<PredictLookup>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Wire(req): Wire<PredictRequest>,
) -> Result<Reply<PredictResponse>, AppError> {
    let space = space_of(&lookup.spaces, req.space)?;
    let k = lookup.spaces.served(space)?.clone();
    let rows = resolve_rows(&k, &req.archs, &req.indices, req.all)?;
    Ok(Reply::new(
        &headers,
        predict_rows(&lookup, &id, space, rows).await?,
    ))
}
