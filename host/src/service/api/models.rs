//! User models: an operator uploads any ONNX file and picks devices; their
//! agents receive it as `JobSpec::Model` (and only they may download it)
//! and the results are listed per device.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model_stream::{ModelBody, receive};
use crate::service::auth::{Admin, DeviceAuth};
use crate::service::config::ServiceConfig;
use crate::service::domain::Purpose;
use crate::service::error::{AppError, Query};
use crate::service::store::Store;
use crate::service::store::jobs::NewJob;
use crate::service::store::models::{ModelRow, NewModel};
use crate::service::store::new_id;

/// `POST /v1/models` query.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct UploadQuery {
    /// Name shown in listings.
    pub name: String,
    /// Comma-separated agent device ids that should measure it.
    pub devices: String,
    /// Comma-separated input overrides `NAME:SHAPE[:DTYPE]` (e.g. `input:1x3x224x224`).
    #[serde(default)]
    pub inputs: Option<String>,
}

/// Answer of an upload.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Uploaded {
    /// Model id.
    pub model_id: String,
    /// SHA-256 of the bytes.
    pub sha256: String,
    /// (device, job) pairs queued.
    pub jobs: Vec<(String, String)>,
}

/// Most devices one upload may name (like every other request list).
pub const MAX_MODEL_DEVICES: usize = 256;
/// Most input overrides one upload may name (as a result's model job).
pub const MAX_MODEL_INPUTS: usize = crate::service::api::agents::MAX_INPUTS;

/// A comma-separated list, trimmed, without empty items, at most `cap` long.
fn capped_list(text: &str, what: &str, cap: usize) -> Result<Vec<String>, AppError> {
    let items: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if items.len() > cap {
        return Err(AppError::Invalid(format!(
            "at most {cap} {what} per upload (got {})",
            items.len()
        )));
    }
    Ok(items)
}

/// `POST /v1/models?name=&devices=&inputs=` (admin), body: the ONNX bytes,
/// stored as they arrive and checked to be an ONNX model on the way.
pub async fn upload(
    State(store): State<Store>,
    State(config): State<Arc<ServiceConfig>>,
    _admin: Admin,
    Query(q): Query<UploadQuery>,
    req: Request,
) -> Result<(StatusCode, axum::Json<Uploaded>), AppError> {
    let name = q.name.trim().to_string();
    if name.is_empty() || name.len() > 200 {
        return Err(AppError::Invalid("name must be 1 to 200 characters".into()));
    }
    let devices = capped_list(&q.devices, "devices", MAX_MODEL_DEVICES)?;
    if devices.is_empty() {
        return Err(AppError::Invalid(
            "`devices` must name at least one agent device".into(),
        ));
    }
    for d in &devices {
        if store.device(d).await?.is_none() {
            return Err(AppError::NotFound(format!(
                "no agent device `{d}` (built-in devices cannot measure)"
            )));
        }
    }
    let inputs = capped_list(
        q.inputs.as_deref().unwrap_or(""),
        "input overrides",
        MAX_MODEL_INPUTS,
    )?;
    for i in &inputs {
        if i.split(':').count() < 2 {
            return Err(AppError::Invalid(format!(
                "input override `{i}` is not NAME:SHAPE[:DTYPE]"
            )));
        }
    }
    let model_id = new_id("model");
    let got = receive(&store, &model_id, req.into_body(), config.max_model_bytes).await?;
    store
        .insert_model(&NewModel {
            id: &model_id,
            name: &name,
            sha256: &got.sha256,
            size_bytes: got.size_bytes,
            inputs: &inputs,
        })
        .await?;
    let mut jobs = Vec::new();
    for d in &devices {
        let ids = store
            .insert_jobs(
                d,
                Purpose::Model,
                &[NewJob::Model {
                    model_id: model_id.clone(),
                    inputs: inputs.clone(),
                }],
            )
            .await?;
        jobs.extend(ids.into_iter().map(|j| (d.clone(), j)));
    }
    tracing::info!(model = %model_id, name = ?name, bytes = got.size_bytes, devices = devices.len(), "model uploaded");
    Ok((
        StatusCode::CREATED,
        axum::Json(Uploaded {
            model_id,
            sha256: got.sha256,
            jobs,
        }),
    ))
}

/// `GET /v1/models/{id}`: a user model's ONNX bytes, streamed: to the admin,
/// or to a device the model was given to measure (the route's gate let
/// only those two tokens through; another device gets 404, as if the model
/// did not exist).
pub async fn download(
    State(store): State<Store>,
    device: Option<Extension<DeviceAuth>>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let missing = || AppError::NotFound(format!("no model `{id}` for this token"));
    if let Some(Extension(d)) = &device
        && !store.model_assigned(&d.device_id, &id).await?
    {
        return Err(missing());
    }
    let model = store.model(&id).await?.ok_or_else(missing)?;
    let size = u64::try_from(model.size_bytes).unwrap_or(0);
    let body = ModelBody::new(store, model.id, size);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        Body::new(body),
    )
        .into_response())
}

/// `GET /v1/models`.
pub async fn list(State(store): State<Store>) -> Result<axum::Json<Vec<ModelRow>>, AppError> {
    Ok(axum::Json(store.models().await?))
}

/// One device's result for a model.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ModelResult {
    /// Device.
    pub device_id: String,
    /// Device name.
    pub device_name: String,
    /// Median latency, ms.
    pub median_ms: f64,
    /// Agent's verdict.
    pub valid: bool,
    /// Why not valid.
    pub invalid_reasons: Vec<String>,
    /// Measurement key (`GET /v1/devices/{id}/samples/{key}` for details).
    pub key: String,
    /// Receipt time, epoch ms.
    pub received_ms: i64,
}

/// `GET /v1/models/{id}/results`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ModelResults {
    /// The model.
    pub model: ModelRow,
    /// Results per device.
    pub results: Vec<ModelResult>,
}

/// `GET /v1/models/{id}/results`.
pub async fn results(
    State(store): State<Store>,
    Path(id): Path<String>,
) -> Result<axum::Json<ModelResults>, AppError> {
    let model = store
        .model(&id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no model `{id}`")))?;
    let names: std::collections::HashMap<String, String> = store
        .devices()
        .await?
        .into_iter()
        .map(|d| (d.id, d.name))
        .collect();
    let results = store
        .measurements_of_model(&id)
        .await?
        .into_iter()
        .map(|m| ModelResult {
            device_name: names.get(&m.device_id).cloned().unwrap_or_default(),
            device_id: m.device_id,
            median_ms: m.median_ms,
            valid: m.valid,
            invalid_reasons: m.invalid_reasons,
            key: m.key,
            received_ms: m.received_ms,
        })
        .collect();
    Ok(axum::Json(ModelResults { model, results }))
}
