//! User models: an operator uploads any ONNX file and picks devices; their
//! agents receive it as `JobSpec::Model` and the results are listed per device.

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::service::auth::Admin;
use crate::service::domain::Purpose;
use crate::service::error::{AppError, read_body};
use crate::service::store::Store;
use crate::service::store::jobs::NewJob;
use crate::service::store::models::ModelRow;
use crate::service::store::{hex, new_id};

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

/// `POST /v1/models?name=&devices=&inputs=` (admin), body: the ONNX bytes.
pub async fn upload(
    State(store): State<Store>,
    _admin: Admin,
    Query(q): Query<UploadQuery>,
    req: Request,
) -> Result<(StatusCode, axum::Json<Uploaded>), AppError> {
    let name = q.name.trim().to_string();
    if name.is_empty() || name.len() > 200 {
        return Err(AppError::Invalid("name must be 1 to 200 characters".into()));
    }
    let devices: Vec<String> = q
        .devices
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
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
    let inputs: Vec<String> = q
        .inputs
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    for i in &inputs {
        if i.split(':').count() < 2 {
            return Err(AppError::Invalid(format!(
                "input override `{i}` is not NAME:SHAPE[:DTYPE]"
            )));
        }
    }
    let bytes = read_body(req, &()).await?;
    if bytes.is_empty() {
        return Err(AppError::BadRequest(
            "empty body: send the ONNX file".into(),
        ));
    }
    // An ONNX file is a protobuf ModelProto; its first field is ir_version
    // (field 1, varint: tag byte 0x08). Anything else is not an ONNX model.
    if bytes.first() != Some(&0x08) {
        return Err(AppError::Invalid(
            "the body is not an ONNX model (a ModelProto starts with ir_version)".into(),
        ));
    }
    let model_id = new_id("model");
    let sha = hex(&Sha256::digest(&bytes));
    store
        .insert_model(&model_id, &name, &sha, &bytes, &inputs)
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
    tracing::info!(model = %model_id, name, bytes = bytes.len(), devices = devices.len(), "model uploaded");
    Ok((
        StatusCode::CREATED,
        axum::Json(Uploaded {
            model_id,
            sha256: sha,
            jobs,
        }),
    ))
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
