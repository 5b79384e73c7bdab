//! Devices (agents and the built-in paper devices), transfer jobs and extra
//! measurement jobs; predictions are in [`super::predict`].

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use nasflat_predictor::PredictorError;
use nasflat_shared::{Arch, SearchSpace};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::service::auth::Admin;
use crate::service::domain::{Purpose, TransferState, Trigger};
use crate::service::error::{AppError, OptionalBody, Query, Wire};
use crate::service::knowledge::SpaceKnowledge;
use crate::service::knowledge::Spaces;
use crate::service::predictions::PredictionCache;
pub use crate::service::quality::{Quality, quality};
use crate::service::store::Store;
use crate::service::store::jobs::{JobRow, NewJob, QueueCounts};
use crate::service::store::measurements::MeasurementRow;
use crate::service::store::transfers::TransferRow;
use crate::service::transfer::{SampleSet, TransferRunner, samples_of};
use nasflat_shared::protocol::RuntimeIdentity;

/// A device in `GET /v1/devices`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DeviceSummary {
    /// Id (`dev-...` for agents, `SPACE:NAME` for built-ins).
    pub id: String,
    /// Name.
    pub name: String,
    /// `agent` or `builtin`.
    pub kind: String,
    /// The runtime its latencies come from (agents): one board measured
    /// with two runtimes is two devices, each with its own predictor.
    pub runtime: Option<RuntimeIdentity>,
    /// Measurements stored (agents) or architectures in the table (built-ins).
    pub samples: usize,
    /// Of them, measurements whose label did not settle (a busy or drifting
    /// machine): kept, never used for a transfer, their jobs measured again.
    pub unsettled: usize,
    /// Spaces with a served predictor (or the built-in's own space).
    pub spaces: Vec<SearchSpace>,
    /// Served predictor versions.
    pub predictor_versions: Vec<String>,
    /// State of the latest transfer.
    pub transfer_state: Option<TransferState>,
    /// Last request (agents), epoch ms.
    pub last_seen_ms: Option<i64>,
}

/// One served predictor in a device's detail.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PredictorView {
    /// Space.
    pub space: SearchSpace,
    /// Version served with predictions.
    pub version: String,
    /// Pretrained checkpoint.
    pub base_version: String,
    /// Source whose embedding initialised the device's.
    pub init_from: Option<String>,
    /// Creation, epoch ms.
    pub created_ms: i64,
    /// Quality on the device's measurements.
    pub quality: Quality,
}

/// `GET /v1/devices/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DeviceDetail {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// `agent` or `builtin`.
    pub kind: String,
    /// The runtime its latencies come from (agents; see [`DeviceSummary::runtime`]).
    pub runtime: Option<RuntimeIdentity>,
    /// The agent's machine fingerprint (agents) or the table's device info.
    pub fingerprint: serde_json::Value,
    /// Provenance of the newest sample (CPU, governor, frequencies, versions...).
    pub latest_provenance: Option<serde_json::Value>,
    /// Registration, epoch ms.
    pub created_ms: Option<i64>,
    /// Last request, epoch ms.
    pub last_seen_ms: Option<i64>,
    /// Measurements (agents).
    pub samples: Vec<MeasurementRow>,
    /// Of them, measurements whose label did not settle (see
    /// [`DeviceSummary::unsettled`]).
    pub unsettled: usize,
    /// The device's queue.
    pub queue: QueueCounts,
    /// Its jobs not yet measured.
    pub open_jobs: Vec<JobRow>,
    /// Transfer jobs, newest first.
    pub transfers: Vec<TransferRow>,
    /// Served predictors.
    pub predictors: Vec<PredictorView>,
}

/// Splits `SPACE:NAME` of a built-in device.
pub fn builtin<'a>(spaces: &'a Spaces, id: &str) -> Option<(&'a Arc<SpaceKnowledge>, usize)> {
    let (space, name) = id.split_once(':')?;
    let space: SearchSpace = space.parse().ok()?;
    let k = spaces.get(&space)?;
    let column = k.data.latency.position(name)?;
    Some((k, column))
}

/// Filter of the device list.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListQuery {
    /// `agent` or `builtin`; both when absent.
    pub kind: Option<String>,
}

/// `GET /v1/devices`.
pub async fn list(
    State(store): State<Store>,
    State(spaces): State<Spaces>,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Vec<DeviceSummary>>, AppError> {
    let mut out = Vec::new();
    let want = |k: &str| q.kind.as_deref().is_none_or(|w| w == k);
    if want("agent") {
        // Counted by the database, four queries for the whole fleet.
        for o in store.device_overviews(0, usize::MAX).await? {
            let (mut served, mut versions) = (Vec::new(), Vec::new());
            for space in spaces.keys() {
                if let Some((_, v)) = o.predictors.iter().find(|(s, _)| s == space) {
                    served.push(*space);
                    versions.push(v.clone());
                }
            }
            let d = o.device;
            out.push(DeviceSummary {
                runtime: d.runtime(),
                transfer_state: o.transfer.map(|t| t.state),
                id: d.id,
                name: d.name,
                kind: "agent".into(),
                samples: usize::try_from(o.measurements).unwrap_or(0),
                unsettled: usize::try_from(o.unsettled).unwrap_or(0),
                spaces: served,
                predictor_versions: versions,
                last_seen_ms: Some(d.last_seen_ms),
            });
        }
    }
    if want("builtin") {
        for (space, k) in spaces.iter() {
            for (c, name) in k.source_names().iter().enumerate() {
                out.push(DeviceSummary {
                    id: format!("{space}:{name}"),
                    name: name.clone(),
                    kind: "builtin".into(),
                    runtime: None,
                    samples: k.data.valid_rows(c).len(),
                    unsettled: 0,
                    spaces: vec![*space],
                    predictor_versions: vec![format!("{space}-table")],
                    transfer_state: None,
                    last_seen_ms: None,
                });
            }
        }
    }
    Ok(axum::Json(out))
}

/// `GET /v1/devices/{id}`.
pub async fn detail(
    State(store): State<Store>,
    State(spaces): State<Spaces>,
    State(predictions): State<Arc<PredictionCache>>,
    Path(id): Path<String>,
) -> Result<axum::Json<DeviceDetail>, AppError> {
    if let Some((k, column)) = builtin(&spaces, &id) {
        let name = k.source_names()[column].clone();
        let info = nasflat_shared::data::devices()
            .ok()
            .and_then(|all| {
                all.into_iter()
                    .find(|d| d.space == k.space.to_string() && d.device == name)
            })
            .map(|d| serde_json::to_value(d).unwrap_or_default())
            .unwrap_or_default();
        return Ok(axum::Json(DeviceDetail {
            id,
            name,
            kind: "builtin".into(),
            runtime: None,
            fingerprint: info,
            latest_provenance: None,
            created_ms: None,
            last_seen_ms: None,
            samples: Vec::new(),
            unsettled: 0,
            queue: QueueCounts::default(),
            open_jobs: Vec::new(),
            transfers: Vec::new(),
            predictors: Vec::new(),
        }));
    }
    let d = store
        .device(&id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no device `{id}`")))?;
    let samples = store.measurements_of_device(&id).await?;
    let latest_provenance = match samples.last() {
        Some(m) => store
            .sample_json(&id, &m.key)
            .await?
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("provenance").cloned()),
        None => None,
    };
    let mut predictors = Vec::new();
    for space in spaces.keys() {
        if let Some(p) = predictions.get(&id, *space).await? {
            predictors.push(PredictorView {
                space: *space,
                version: p.version.clone(),
                base_version: p.base_version.clone(),
                init_from: p.init_from.clone(),
                created_ms: p.created_ms,
                quality: quality(&p, &samples, *space),
            });
        }
    }
    let jobs = store.jobs_of_device(&id).await?;
    Ok(axum::Json(DeviceDetail {
        runtime: d.runtime(),
        fingerprint: serde_json::from_str(&d.fingerprint_json).unwrap_or_default(),
        latest_provenance,
        created_ms: Some(d.created_ms),
        last_seen_ms: Some(d.last_seen_ms),
        queue: store.queue_counts(Some(&id)).await?,
        open_jobs: jobs.into_iter().filter(|j| j.state.is_open()).collect(),
        transfers: store.transfers(&id).await?,
        predictors,
        unsettled: samples.iter().filter(|m| m.settled == Some(false)).count(),
        samples,
        id: d.id,
        name: d.name,
        kind: "agent".into(),
    }))
}

/// `GET /v1/devices/{id}/samples/{key}`: the full sample JSON (timing, provenance).
pub async fn sample(
    State(store): State<Store>,
    Path((id, key)): Path<(String, String)>,
) -> Result<axum::response::Response, AppError> {
    use axum::response::IntoResponse;
    let text = store
        .sample_json(&id, &key)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("device `{id}` has no sample `{key}`")))?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        text,
    )
        .into_response())
}

/// A query's space name, parsed (a body's is typed by serde).
pub(crate) fn parse_space(name: Option<&str>) -> Result<Option<SearchSpace>, AppError> {
    name.map(|n| n.parse().map_err(|e| AppError::BadRequest(format!("{e}"))))
        .transpose()
}

/// The asked space if served (400 otherwise), or the first served one.
pub(crate) fn space_of(
    spaces: &Spaces,
    asked: Option<SearchSpace>,
) -> Result<SearchSpace, AppError> {
    match asked {
        Some(s) => {
            spaces.served(s)?;
            Ok(s)
        }
        None => spaces
            .keys()
            .next()
            .copied()
            .ok_or_else(|| AppError::Internal("no space served".into())),
    }
}

/// The table rows a request names (architectures, indices or `all`).
pub(crate) fn resolve_rows(
    k: &SpaceKnowledge,
    archs: &[String],
    indices: &[usize],
    all: bool,
) -> Result<Vec<usize>, AppError> {
    if all {
        return Ok((0..k.data.rows()).collect());
    }
    let n = k.data.rows();
    if archs.len() + indices.len() > n {
        return Err(AppError::Invalid(format!(
            "at most {n} architectures per request"
        )));
    }
    let mut rows = Vec::with_capacity(archs.len() + indices.len());
    for a in archs {
        let arch = Arch::parse(k.space, a).map_err(PredictorError::from)?;
        let row = arch.index().filter(|&i| i < n).ok_or_else(|| {
            AppError::NotFound(format!(
                "architecture `{a}` is not in the {} table",
                k.space
            ))
        })?;
        rows.push(row);
    }
    for &i in indices {
        if i >= n {
            return Err(AppError::NotFound(format!(
                "index {i} is out of the {} table (0..{n})",
                k.space
            )));
        }
        rows.push(i);
    }
    if rows.is_empty() {
        return Err(AppError::BadRequest(
            "give `arch`/`archs`, `index`/`indices` or `all`".into(),
        ));
    }
    Ok(rows)
}

/// `POST /v1/devices/{id}/transfer` body (optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct TransferRequest {
    /// Space (default: the first served).
    #[serde(default)]
    pub space: Option<SearchSpace>,
    /// Fit on every valid measurement instead of the plan samples only.
    #[serde(default)]
    pub all_samples: bool,
}

/// Answer of a started transfer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TransferStarted {
    /// Transfer id (`GET /v1/transfers/{id}`).
    pub transfer_id: String,
}

/// `POST /v1/devices/{id}/transfer` (admin): start a transfer now.
pub async fn start_transfer(
    State(store): State<Store>,
    State(spaces): State<Spaces>,
    State(transfers): State<TransferRunner>,
    _admin: Admin,
    Path(id): Path<String>,
    OptionalBody(req): OptionalBody<TransferRequest>,
) -> Result<(StatusCode, axum::Json<TransferStarted>), AppError> {
    let space = space_of(&spaces, req.space)?;
    if store.device(&id).await?.is_none() {
        return Err(AppError::NotFound(format!("no agent device `{id}`")));
    }
    let set = if req.all_samples {
        SampleSet::All
    } else {
        SampleSet::Plan
    };
    let measured = store.measurements_of_device(&id).await?;
    let n = samples_of(&measured, space, set).len();
    if n < 2 {
        return Err(AppError::Conflict(format!(
            "device `{id}` has {n} valid {space} samples; a transfer needs at least 2"
        )));
    }
    let transfer_id = transfers.start(&id, space, set, Trigger::Manual).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(TransferStarted { transfer_id }),
    ))
}

/// `GET /v1/transfers/{id}`.
pub async fn transfer_status(
    State(store): State<Store>,
    Path(id): Path<String>,
) -> Result<axum::Json<TransferRow>, AppError> {
    store
        .transfer(&id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| AppError::NotFound(format!("no transfer `{id}`")))
}

/// `POST /v1/devices/{id}/jobs` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct AddJobs {
    /// Space (default: the first served).
    #[serde(default)]
    pub space: Option<SearchSpace>,
    /// Table rows to measure.
    #[serde(default)]
    pub indices: Vec<usize>,
    /// Architecture strings to measure.
    #[serde(default)]
    pub archs: Vec<String>,
    /// This many random archs not yet measured or queued on the device.
    #[serde(default)]
    pub random: Option<usize>,
    /// Seed of `random` (printed back).
    #[serde(default)]
    pub seed: Option<u64>,
}

/// Answer of queued jobs.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JobsQueued {
    /// New job ids.
    pub job_ids: Vec<String>,
    /// Table rows queued.
    pub indices: Vec<usize>,
    /// Seed used for `random`.
    pub seed: Option<u64>,
}

/// `POST /v1/devices/{id}/jobs` (admin): ask a device to measure more archs
/// (held out from automatic transfers: they judge the predictor).
pub async fn add_jobs(
    State(store): State<Store>,
    State(spaces): State<Spaces>,
    _admin: Admin,
    Path(id): Path<String>,
    Wire(req): Wire<AddJobs>,
) -> Result<axum::Json<JobsQueued>, AppError> {
    let space = space_of(&spaces, req.space)?;
    let k = spaces.served(space)?.clone();
    if store.device(&id).await?.is_none() {
        return Err(AppError::NotFound(format!("no agent device `{id}`")));
    }
    let mut rows = if req.archs.is_empty() && req.indices.is_empty() {
        Vec::new()
    } else {
        resolve_rows(&k, &req.archs, &req.indices, false)?
    };
    let seed = req.random.map(|_| req.seed.unwrap_or(0));
    if let Some(n) = req.random {
        let mut taken: HashSet<usize> = rows.iter().copied().collect();
        for j in store.jobs_of_device(&id).await? {
            if let Some(i) = j.subject.row_in(space) {
                taken.insert(i);
            }
        }
        let free: Vec<usize> = k
            .usable_rows
            .iter()
            .copied()
            .filter(|r| !taken.contains(r))
            .collect();
        if n > free.len() {
            return Err(AppError::Invalid(format!(
                "asked for {n} random archs but only {} are not yet measured or queued",
                free.len()
            )));
        }
        let mut rng = StdRng::seed_from_u64(seed.unwrap_or(0));
        rows.extend(free.choose_multiple(&mut rng, n).copied());
    }
    if rows.is_empty() {
        return Err(AppError::BadRequest(
            "give `indices`, `archs` or `random`".into(),
        ));
    }
    let jobs: Vec<NewJob> = rows
        .iter()
        .map(|&index| NewJob::Arch { space, index })
        .collect();
    let job_ids = store.insert_jobs(&id, Purpose::Extra, &jobs).await?;
    Ok(axum::Json(JobsQueued {
        job_ids,
        indices: rows,
        seed,
    }))
}

/// The queue across devices.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LeaseQueue {
    /// Counts by state.
    pub counts: QueueCounts,
    /// Open jobs (queued or leased), oldest first, at most 500.
    pub open: Vec<JobRow>,
}

/// `GET /v1/leases`.
pub async fn leases(State(store): State<Store>) -> Result<axum::Json<LeaseQueue>, AppError> {
    Ok(axum::Json(LeaseQueue {
        counts: store.queue_counts(None).await?,
        open: store.open_jobs(500).await?,
    }))
}
