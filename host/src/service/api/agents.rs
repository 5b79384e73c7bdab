//! The agent protocol (`nasflat_shared::protocol`): register, plan, heartbeat,
//! results, release (model downloads: `models`). Postcard by default, JSON accepted; the
//! agent binary talks to these routes unchanged.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use nasflat_shared::protocol::{
    Fingerprint, Heartbeat, HeartbeatResponse, JobSpec, Lease, MeasurementResult, PLAN_KEY_HEADER,
    PROTOCOL_VERSION, PlanRequest, PlanResponse, RegisterRequest, RegisterResponse, ReleaseRequest,
    ResultAck, ResultBatch, valid_plan_key,
};
use nasflat_shared::{Arch, SearchSpace};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::service::auth::{self, DeviceAuth, bearer, expect_device, hash_token, same_secret};
use crate::service::conditions::SampleConditions;
use crate::service::config::ServiceConfig;
use crate::service::domain::{Purpose, Subject};
use crate::service::error::{AppError, Reply, Wire};
use crate::service::knowledge::Spaces;
use crate::service::metrics::Metrics;
use crate::service::store::jobs::{JobRow, NewJob};
use crate::service::store::measurements::{NewMeasurement, StoreOutcome};
use crate::service::store::{Store, new_id};
use crate::service::transfer::{TransferRunner, device_seed};

/// Most results accepted in one batch (the agent sends 32).
pub const MAX_BATCH: usize = 256;
/// Most leases handed out per plan.
pub const MAX_LEASES: usize = 16;
/// Most invalid-sample reasons kept per result (the agent gives a few).
pub const MAX_REASONS: usize = 32;
/// Most input overrides a result's model job may name.
pub const MAX_INPUTS: usize = 64;
/// Shortest latency a result may report, ms (1 ns): below a clock tick no
/// network runs, so such a value is a broken or forged timer, and one of
/// them among k samples would poison the device's predictor.
pub const MIN_LATENCY_MS: f64 = 1e-6;
/// Longest latency a result may report, ms (1 h): far beyond any network
/// the agent is told to time (`JobLimits::max_ms` bounds a whole run).
pub const MAX_LATENCY_MS: f64 = 3.6e6;
/// Largest `sample_json` of one result: the agent's sample lists every
/// timed run, and its most runs (100,000, `BenchLimits::max_runs`) take
/// about 2.2 MB of JSON.
pub const MAX_SAMPLE_JSON_BYTES: usize = 4 << 20;
/// Longest text field of a device fingerprint (CPU model, kernel, target,
/// versions): real ones are under 100 characters.
pub const MAX_FINGERPRINT_FIELD: usize = 256;

/// `POST /v1/agents/register`: a new device (enrolment token) or a
/// re-attach (the device's own token and its id).
pub async fn register(
    State(config): State<Arc<ServiceConfig>>,
    State(store): State<Store>,
    State(spaces): State<Spaces>,
    State(metrics): State<Arc<Metrics>>,
    headers: HeaderMap,
    Wire(req): Wire<RegisterRequest>,
) -> Result<Reply<RegisterResponse>, AppError> {
    if req.protocol_version != PROTOCOL_VERSION {
        return Err(AppError::BadRequest(format!(
            "protocol version {} is not supported (this host speaks {PROTOCOL_VERSION})",
            req.protocol_version
        )));
    }
    let name = req.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(AppError::Invalid(
            "device name must be 1 to 200 characters".into(),
        ));
    }
    check_fingerprint(&req.fingerprint)?;
    let fingerprint = serde_json::to_string(&req.fingerprint)
        .map_err(|e| AppError::Internal(format!("cannot encode fingerprint: {e}")))?;
    let token =
        bearer(&headers).ok_or_else(|| AppError::Unauthorized("missing bearer token".into()))?;
    let heartbeat_secs = (config.lease_secs / 4).max(1);
    if let Some(asked) = &req.device_id
        && store.device_by_token(&hash_token(token)).await?.as_deref() == Some(asked)
    {
        same_runtime(&store, asked, &req.fingerprint).await?;
        store.reattach_device(asked, name, &fingerprint).await?;
        tracing::info!(device = ?asked, "device re-attached");
        return Ok(Reply::new(
            &headers,
            RegisterResponse {
                device_id: asked.clone(),
                device_token: token.to_string(),
                heartbeat_secs,
            },
        ));
    }
    if !same_secret(token, &config.enrol_token) {
        return Err(AppError::Unauthorized(
            "bad enrolment token (or a device token that does not match device_id)".into(),
        ));
    }
    let device_id = new_id("dev");
    let device_token = auth::new_token();
    let plan = plan_jobs(&config, &spaces, &device_id)?;
    store
        .enrol_device(
            &device_id,
            name,
            &hash_token(&device_token),
            &fingerprint,
            &plan,
        )
        .await?;
    Metrics::inc(&metrics.registrations);
    tracing::info!(device = %device_id, name = ?name, jobs = plan.len(), "device registered");
    Ok(Reply::new(
        &headers,
        RegisterResponse {
            device_id,
            device_token,
            heartbeat_secs,
        },
    ))
}

/// A device's latencies all come from one runtime (kind, version, threads):
/// re-attaching with another would mix two runtimes' samples in its next
/// transfer, so it is refused; the agent registers a new device instead.
async fn same_runtime(store: &Store, device_id: &str, fp: &Fingerprint) -> Result<(), AppError> {
    let stored = store.device(device_id).await?.and_then(|d| d.runtime());
    let asked = fp.runtime_identity();
    match stored {
        Some(stored) if stored != asked => Err(AppError::Conflict(format!(
            "device `{device_id}` measures with {stored}; this agent runs {asked}: another runtime is another device, register without device_id"
        ))),
        _ => Ok(()),
    }
}

/// Refuses a fingerprint with a text field longer than [`MAX_FINGERPRINT_FIELD`].
fn check_fingerprint(f: &Fingerprint) -> Result<(), AppError> {
    let fields = [
        ("cpu_model", f.cpu_model.as_deref().unwrap_or("")),
        ("target", f.target.as_str()),
        ("kernel", f.kernel.as_deref().unwrap_or("")),
        ("agent_version", f.agent_version.as_str()),
        ("tract_version", f.tract_version.as_str()),
        (
            "runtime.version",
            f.runtime.as_ref().map_or("", |r| r.version.as_str()),
        ),
    ];
    for (name, value) in fields {
        if value.len() > MAX_FINGERPRINT_FIELD {
            return Err(AppError::Invalid(format!(
                "fingerprint field `{name}` is {} bytes (at most {MAX_FINGERPRINT_FIELD})",
                value.len()
            )));
        }
    }
    Ok(())
}

/// The sampler-chosen k archs of every served space, seeded by the device id.
fn plan_jobs(
    config: &ServiceConfig,
    spaces: &Spaces,
    device_id: &str,
) -> Result<Vec<NewJob>, AppError> {
    let mut jobs = Vec::new();
    for (space, k) in spaces.iter() {
        let mut rng = StdRng::seed_from_u64(device_seed(config.seed, device_id));
        let n = config.samples.min(k.usable_rows.len());
        let rows = config
            .sampler
            .pick(&k.data, device_id, &k.usable_rows, n, &mut rng)
            .map_err(AppError::Misconfigured)?;
        jobs.extend(rows.into_iter().map(|index| NewJob::Arch {
            space: *space,
            index,
        }));
    }
    Ok(jobs)
}

/// The wire job of a stored job row.
pub fn job_spec(job: &JobRow) -> Result<JobSpec, AppError> {
    match &job.subject {
        Subject::Arch { space, arch_index } => {
            let arch = Arch::from_index(*space, *arch_index)
                .map_err(|e| AppError::Internal(format!("job {}: {e}", job.id)))?;
            Ok(JobSpec::Arch {
                arch,
                batch: 1,
                resolution: None,
            })
        }
        Subject::Model { model_id } => Ok(JobSpec::Model {
            model_id: model_id.clone(),
            inputs: serde_json::from_str(&job.inputs_json).unwrap_or_default(),
        }),
    }
}

/// The plan request's [`PLAN_KEY_HEADER`], if any, checked.
fn plan_key(headers: &HeaderMap) -> Result<Option<String>, AppError> {
    let Some(value) = headers.get(PLAN_KEY_HEADER) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if valid_plan_key(key) => Ok(Some(key.to_string())),
        _ => Err(AppError::BadRequest(format!(
            "header {PLAN_KEY_HEADER} must be 8-64 characters of [A-Za-z0-9]"
        ))),
    }
}

/// `POST /v1/agents/plan`: lease up to `max_jobs` queued jobs of the device.
pub async fn plan(
    State(config): State<Arc<ServiceConfig>>,
    State(store): State<Store>,
    State(metrics): State<Arc<Metrics>>,
    auth: DeviceAuth,
    headers: HeaderMap,
    Wire(req): Wire<PlanRequest>,
) -> Result<Reply<PlanResponse>, AppError> {
    expect_device(&auth, &req.device_id)?;
    let want = (req.max_jobs as usize).clamp(0, MAX_LEASES);
    let lease_ms = i64::from(config.lease_secs) * 1000;
    let key = plan_key(&headers)?;
    let granted = store
        .claim_jobs(&auth.device_id, want, lease_ms, key.as_deref())
        .await?;
    let mut leases = Vec::with_capacity(granted.len());
    for g in granted {
        if !g.replayed {
            Metrics::inc(&metrics.leases_granted);
        }
        if g.reclaimed {
            Metrics::inc(&metrics.leases_reclaimed);
        }
        leases.push(Lease {
            lease_id: g.lease_id,
            job: job_spec(&g.job)?,
            limits: config.limits,
            expires_in_secs: config.lease_secs,
        });
    }
    Ok(Reply::new(
        &headers,
        PlanResponse {
            leases,
            retry_after_secs: config.poll_secs,
        },
    ))
}

/// `POST /v1/agents/heartbeat`: renew leases; report the ones no longer held.
pub async fn heartbeat(
    State(config): State<Arc<ServiceConfig>>,
    State(store): State<Store>,
    auth: DeviceAuth,
    headers: HeaderMap,
    Wire(req): Wire<Heartbeat>,
) -> Result<Reply<HeartbeatResponse>, AppError> {
    expect_device(&auth, &req.device_id)?;
    if req.lease_ids.len() > MAX_BATCH {
        return Err(AppError::Invalid(format!(
            "at most {MAX_BATCH} leases per heartbeat (got {})",
            req.lease_ids.len()
        )));
    }
    let lease_ms = i64::from(config.lease_secs) * 1000;
    let (renewed, lost) = store
        .renew_leases(&auth.device_id, &req.lease_ids, lease_ms)
        .await?;
    Ok(Reply::new(&headers, HeartbeatResponse { renewed, lost }))
}

/// `POST /v1/agents/release`: return leases to the queue unmeasured.
pub async fn release(
    State(config): State<Arc<ServiceConfig>>,
    State(store): State<Store>,
    auth: DeviceAuth,
    Wire(req): Wire<ReleaseRequest>,
) -> Result<StatusCode, AppError> {
    expect_device(&auth, &req.device_id)?;
    if req.lease_ids.len() > MAX_BATCH {
        return Err(AppError::Invalid(format!(
            "at most {MAX_BATCH} leases per release (got {})",
            req.lease_ids.len()
        )));
    }
    let reason: String = req.reason.chars().take(500).collect();
    // A permanent failure (the device's runtime cannot load the model)
    // fails the job now: every attempt has been used up.
    let max_attempts = if req.permanent {
        0
    } else {
        config.max_attempts
    };
    let n = store
        .release_leases(&auth.device_id, &req.lease_ids, &reason, max_attempts)
        .await?;
    // `reason` is the client's text: logged escaped, it cannot forge lines.
    tracing::info!(device = %auth.device_id, released = n, reason = ?reason, "leases released");
    Ok(StatusCode::NO_CONTENT)
}

/// Why a result cannot be stored, or what to store.
async fn validate(
    spaces: &Spaces,
    store: &Store,
    device_id: &str,
    r: &MeasurementResult,
) -> Result<NewMeasurement, String> {
    if r.device_id != device_id {
        return Err(format!(
            "result names device `{}` but the token belongs to `{device_id}`",
            r.device_id
        ));
    }
    let key_ok = !r.idempotency_key.is_empty()
        && r.idempotency_key.len() <= 128
        && r.idempotency_key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !key_ok {
        return Err("idempotency key must be 1-128 characters of [A-Za-z0-9_-]".into());
    }
    check_latency(r.median_ms)?;
    let sample = check_sample_json(&r.sample_json)?;
    if r.invalid_reasons.len() > MAX_REASONS {
        return Err(format!(
            "at most {MAX_REASONS} invalid_reasons per result (got {})",
            r.invalid_reasons.len()
        ));
    }
    if let JobSpec::Model { inputs, .. } = &r.job
        && inputs.len() > MAX_INPUTS
    {
        return Err(format!(
            "at most {MAX_INPUTS} input overrides per model job (got {})",
            inputs.len()
        ));
    }
    Ok(NewMeasurement {
        key: r.idempotency_key.clone(),
        lease_id: r.lease_id.clone(),
        subject: subject_of(spaces, store, &r.job).await?,
        median_ms: r.median_ms,
        valid: r.valid,
        invalid_reasons: r.invalid_reasons.clone(),
        sample_json: r.sample_json.clone(),
        settled: SampleConditions::of(&sample).settled,
    })
}

/// Why a reported latency cannot be a real one: not finite, not positive,
/// or outside [`MIN_LATENCY_MS`] ..= [`MAX_LATENCY_MS`].
fn check_latency(median_ms: f64) -> Result<(), String> {
    if !(median_ms.is_finite() && median_ms > 0.0) {
        return Err(format!(
            "median_ms {median_ms} is not a finite positive latency"
        ));
    }
    if !(MIN_LATENCY_MS..=MAX_LATENCY_MS).contains(&median_ms) {
        return Err(format!(
            "median_ms {median_ms:e} is outside the physically possible range \
             {MIN_LATENCY_MS:e} ms (1 ns) to {MAX_LATENCY_MS:e} ms (1 h)"
        ));
    }
    Ok(())
}

/// A result's `sample_json`, parsed, or why it cannot be stored: over
/// [`MAX_SAMPLE_JSON_BYTES`], or not a JSON object.
fn check_sample_json(text: &str) -> Result<serde_json::Value, String> {
    if text.len() > MAX_SAMPLE_JSON_BYTES {
        return Err(format!(
            "sample_json is {} bytes (at most {MAX_SAMPLE_JSON_BYTES})",
            text.len()
        ));
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        Ok(_) => Err("sample_json is not a JSON object".into()),
        Err(e) => Err(format!("sample_json is not JSON: {e}")),
    }
}

/// What a result measured, or why it names nothing this host knows.
async fn subject_of(spaces: &Spaces, store: &Store, job: &JobSpec) -> Result<Subject, String> {
    match job {
        JobSpec::Arch {
            arch,
            batch,
            resolution,
        } => {
            let space = arch.space();
            let k = spaces
                .get(&space)
                .ok_or_else(|| format!("space {space} is not served by this host"))?;
            let index = arch
                .index()
                .filter(|&i| i < k.data.rows())
                .ok_or_else(|| format!("architecture {arch} is not in the {space} table"))?;
            if *batch != 1 || resolution.is_some() {
                return Err(format!(
                    "only batch 1 at the space's own resolution is modelled (got batch {batch}, resolution {resolution:?})"
                ));
            }
            Ok(Subject::Arch {
                space,
                arch_index: index,
            })
        }
        JobSpec::Model { model_id, .. } => match store.model(model_id).await {
            Ok(Some(_)) => Ok(Subject::Model {
                model_id: model_id.clone(),
            }),
            Ok(None) => Err(format!("unknown model `{model_id}`")),
            Err(e) => Err(format!("cannot check model `{model_id}`: {e}")),
        },
    }
}

/// `POST /v1/agents/results`: store a batch in one transaction, then
/// acknowledge. Keys stored before are acknowledged again (idempotent).
/// A batch holding any result that can never be stored (not finite or not
/// positive, unknown architecture or model, another device's, not the job
/// of its lease) is refused as a whole with 422 `invalid_results` listing
/// each refused key and why, and nothing of it is stored: the agent drops
/// those from its spool and uploads the rest again.
pub async fn results(
    State(store): State<Store>,
    State(spaces): State<Spaces>,
    State(metrics): State<Arc<Metrics>>,
    State(transfers): State<TransferRunner>,
    auth: DeviceAuth,
    headers: HeaderMap,
    Wire(batch): Wire<ResultBatch>,
) -> Result<Reply<ResultAck>, AppError> {
    if batch.results.len() > MAX_BATCH {
        return Err(AppError::Invalid(format!(
            "at most {MAX_BATCH} results per batch (got {})",
            batch.results.len()
        )));
    }
    let mut rejected = Vec::new();
    let mut accepted = Vec::new();
    for r in &batch.results {
        match validate(&spaces, &store, &auth.device_id, r).await {
            Ok(m) => accepted.push(m),
            Err(reason) => rejected.push((r.idempotency_key.clone(), reason)),
        }
    }
    if rejected.is_empty() {
        let outcomes = store.store_measurements(&auth.device_id, &accepted).await?;
        rejected = accepted
            .iter()
            .zip(&outcomes)
            .filter_map(|(m, o)| match o {
                StoreOutcome::Rejected(reason) => Some((m.key.clone(), reason.clone())),
                _ => None,
            })
            .collect();
        if rejected.is_empty() {
            return Ok(Reply::new(
                &headers,
                acknowledge(&metrics, &transfers, &auth.device_id, &accepted, &outcomes).await,
            ));
        }
    }
    for (key, reason) in &rejected {
        Metrics::inc(&metrics.results_rejected);
        // Keys and reasons quote the client's text: logged escaped.
        tracing::warn!(device = %auth.device_id, key = ?key, reason = ?reason, "result rejected");
    }
    Err(AppError::rejected_results(rejected))
}

/// Counts a committed batch, starts automatic transfers for spaces that got
/// new samples, and lists the acknowledged keys.
async fn acknowledge(
    metrics: &Metrics,
    transfers: &TransferRunner,
    device_id: &str,
    accepted: &[NewMeasurement],
    outcomes: &[StoreOutcome],
) -> ResultAck {
    let mut ack = ResultAck {
        acked: Vec::new(),
        rejected: Vec::new(),
    };
    let mut new_samples: Vec<SearchSpace> = Vec::new();
    for (m, outcome) in accepted.iter().zip(outcomes) {
        match outcome {
            StoreOutcome::New { purpose, requeued } => {
                Metrics::inc(&metrics.results_stored);
                if *requeued {
                    tracing::info!(device = %device_id, key = ?m.key,
                        "the sample did not settle; its job is queued again");
                }
                if *purpose == Purpose::Sample
                    && m.valid
                    && let Subject::Arch { space, .. } = m.subject
                    && !new_samples.contains(&space)
                {
                    new_samples.push(space);
                }
            }
            StoreOutcome::Duplicate => Metrics::inc(&metrics.results_duplicate),
            StoreOutcome::Rejected(_) => continue,
        }
        ack.acked.push(m.key.clone());
    }
    for space in new_samples {
        transfers.maybe_auto(device_id, space).await;
    }
    ack
}
