//! `nasflat-agent run`: the pull loop that connects a board to the host.
//!
//! register (or re-attach) -> flush the spool -> ask for leases -> for each:
//! measure (heartbeating meanwhile), spool durably, upload -> repeat.
//! Network trouble never loses a result: it stays in the spool and is
//! uploaded when the host is back; a restarted agent starts by flushing it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nasflat_shared::protocol::{
    Fingerprint, Heartbeat, JobLimits, JobSpec, Lease, MeasurementResult, PROTOCOL_VERSION,
    PlanRequest, RegisterRequest, RegisterResponse, ReleaseRequest, ResultAck, ResultBatch,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::backoff::Backoff;
use crate::client::{ClientError, HostClient};
use crate::limits::BenchLimits;
use crate::measure::{MeasureOptions, ModelSource, Sample, measure};
use crate::model::InputSpec;
use crate::provenance::MachineInfo;
use crate::runtime::{RuntimeChoice, RuntimeIdentity, RuntimeInfo, RuntimeKind};
use crate::spool::{Spool, SpoolError, new_key};

/// Why the loop stopped.
#[derive(Debug, Error)]
pub enum RunError {
    /// The host could not be reached within the retry budget.
    #[error("gave up after {attempts} attempts: {last}")]
    Unreachable { attempts: u32, last: ClientError },
    /// The host refused or sent garbage: retrying cannot help.
    #[error(transparent)]
    Host(ClientError),
    /// The spool failed; nothing was removed from it.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// A shutdown signal arrived while waiting to retry; the spool is kept.
    #[error("interrupted while waiting for the host; unsent results stay in the spool")]
    Interrupted,
    /// The runtime cannot be used (no library, too old, not built in): no
    /// job could be measured, so the agent does not register.
    #[error(transparent)]
    Runtime(crate::error::AgentError),
    /// The state file could not be written.
    #[error("state file {path}: {reason}")]
    State { path: String, reason: String },
}

/// Options of the loop.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Host base URL.
    pub host: String,
    /// Enrolment token (first registration).
    pub token: String,
    /// Device name.
    pub name: String,
    /// Where the spool and the device identity live.
    pub state_dir: PathBuf,
    /// Stop after this many measured jobs (`None`: run forever).
    pub max_jobs: Option<usize>,
    /// Give up after this many consecutive failed attempts (`None`: never).
    pub max_retries: Option<u32>,
    /// Stop when the host has no work instead of polling.
    pub exit_when_idle: bool,
    /// Backoff base and cap.
    pub backoff: (Duration, Duration),
    /// Pin measurements to this core.
    pub pin_core: Option<usize>,
    /// The runtime every job is timed with.
    pub runtime: RuntimeChoice,
}

/// The device identity kept across restarts. One file per runtime kind
/// ([`state_file`]): a board measured with tract and with onnxruntime is two
/// devices on the host, and each keeps its own id and token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct DeviceState {
    host: String,
    device_id: String,
    device_token: String,
    /// The runtime the device was registered with (absent in files written
    /// before runtimes were told apart: tract).
    #[serde(default)]
    runtime: Option<RuntimeIdentity>,
}

/// The state file of a runtime kind: `device.json` for tract (as before
/// onnxruntime existed, so tract boards keep their identity), `device-ort.json`
/// for onnxruntime.
fn state_file(kind: RuntimeKind) -> &'static str {
    match kind {
        RuntimeKind::Tract => "device.json",
        RuntimeKind::Ort => "device-ort.json",
    }
}

/// What a finished loop did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Jobs measured in this run.
    pub measured: usize,
    /// Results acknowledged by the host in this run (spooled ones included).
    pub uploaded: usize,
    /// Results the host rejected (dropped from the spool).
    pub rejected: usize,
}

struct Agent {
    /// The prepared runtime (library opened, version known).
    runtime: RuntimeInfo,
    client: HostClient,
    spool: Spool,
    options: RunOptions,
    device_id: String,
    /// The device id this agent had before the host lost it (re-enrolled
    /// this run): its spooled results are delivered as the new device's.
    successor_of: Option<String>,
    heartbeat: Duration,
    backoff: Backoff,
    rng: StdRng,
    summary: RunSummary,
    stop: watch::Receiver<bool>,
}

/// Runs the loop until `max_jobs`, idleness (with `exit_when_idle`), a
/// shutdown signal on `stop`, or an unrecoverable error.
pub async fn run(options: RunOptions, stop: watch::Receiver<bool>) -> Result<RunSummary, RunError> {
    let spool = Spool::open(&options.state_dir.join("spool"))?;
    let (pending, problems) = spool.pending()?;
    for p in problems {
        warn!("{p}");
    }
    if !pending.is_empty() {
        info!(count = pending.len(), "resuming spooled results");
    }
    let client = HostClient::new(&options.host, &options.token).map_err(RunError::Host)?;
    let runtime = crate::runtime::prepare(&options.runtime, 1).map_err(RunError::Runtime)?;
    let mut agent = Agent {
        runtime,
        client,
        spool,
        backoff: Backoff::new(options.backoff.0, options.backoff.1),
        rng: StdRng::from_os_rng(),
        options,
        device_id: String::new(),
        successor_of: None,
        heartbeat: Duration::from_secs(15),
        summary: RunSummary::default(),
        stop: stop.clone(),
    };
    let mut stop = stop;
    agent.attach().await?;
    loop {
        agent.flush().await?;
        if *stop.borrow()
            || agent
                .options
                .max_jobs
                .is_some_and(|m| agent.summary.measured >= m)
        {
            break;
        }
        let want = agent
            .options
            .max_jobs
            .map_or(4, |m| (m - agent.summary.measured).min(4));
        // One key per attempt, reused by its retries: leases the host
        // granted before a lost response come back instead of being stranded.
        let key = format!(
            "{:016x}{:016x}",
            agent.rng.random::<u64>(),
            agent.rng.random::<u64>()
        );
        let plan = agent
            .retry(|c, id| {
                let req = PlanRequest {
                    device_id: id,
                    max_jobs: u32::try_from(want).unwrap_or(4),
                };
                let key = key.clone();
                async move { c.plan(&req, &key).await }
            })
            .await?;
        if plan.leases.is_empty() {
            if agent.options.exit_when_idle {
                break;
            }
            let wait = Duration::from_secs(u64::from(plan.retry_after_secs.max(1)));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let mut leases = plan.leases.into_iter();
        while let Some(lease) = leases.next() {
            if *stop.borrow() {
                let rest: Vec<String> = std::iter::once(lease.lease_id)
                    .chain(leases.by_ref().map(|l| l.lease_id))
                    .collect();
                agent.release(rest, "agent shutting down").await;
                break;
            }
            agent.work(lease).await?;
        }
    }
    agent.flush().await?;
    Ok(agent.summary)
}

impl Agent {
    /// Retries a call on transient errors with backoff, up to `max_retries`.
    async fn retry<T, F, Fut>(&mut self, call: F) -> Result<T, RunError>
    where
        F: Fn(HostClient, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        loop {
            match call(self.client.clone(), self.device_id.clone()).await {
                Ok(v) => {
                    self.backoff.reset();
                    return Ok(v);
                }
                Err(e) if e.is_transient() => {
                    if self
                        .options
                        .max_retries
                        .is_some_and(|m| self.backoff.attempts() >= m)
                    {
                        return Err(RunError::Unreachable {
                            attempts: self.backoff.attempts() + 1,
                            last: e,
                        });
                    }
                    let delay = self.backoff.next_delay(&mut self.rng);
                    warn!("{e}; retrying in {delay:.1?}");
                    if *self.stop.borrow() {
                        return Err(RunError::Interrupted);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.stop.changed() => return Err(RunError::Interrupted),
                    }
                }
                Err(e) => return Err(RunError::Host(e)),
            }
        }
    }

    fn state_path(&self) -> PathBuf {
        self.options
            .state_dir
            .join(state_file(self.options.runtime.kind()))
    }

    /// Registers, or re-attaches as the device of the last run when the host
    /// and the runtime identity (kind, version, threads) are the same. A new
    /// runtime version is a new device: its latencies are not the old ones.
    async fn attach(&mut self) -> Result<(), RunError> {
        let identity = self.runtime.identity();
        let previous = read_state(&self.state_path()).filter(|s| s.host == self.options.host);
        let previous = match previous {
            Some(s) if s.runtime.as_ref().is_none_or(|r| *r == identity) => Some(s),
            Some(s) => {
                warn!(
                    "device {} was measured with {}; this agent runs {identity}: registering a new device",
                    s.device_id,
                    s.runtime
                        .as_ref()
                        .map_or_else(String::new, ToString::to_string)
                );
                None
            }
            None => None,
        };
        let machine = MachineInfo::read();
        let req = RegisterRequest {
            protocol_version: PROTOCOL_VERSION,
            name: self.options.name.clone(),
            device_id: previous.as_ref().map(|s| s.device_id.clone()),
            fingerprint: Fingerprint {
                cpu_model: machine.cpu_model,
                cores: u32::try_from(machine.cores).unwrap_or(u32::MAX),
                target: machine.target,
                kernel: machine.kernel,
                mem_total_kb: machine.mem_total_kb,
                agent_version: machine.agent_version,
                tract_version: machine.tract_version,
                runtime: Some(identity.clone()),
            },
        };
        if let Some(state) = &previous {
            // Re-attaching authenticates with the device's own token.
            self.client.set_token(&state.device_token);
        }
        let response = match self.register(&req).await {
            // The host keeps one runtime per device (an older state file
            // without the runtime named one device for another version).
            Err(RunError::Host(ClientError::Permanent {
                status: 409,
                reason,
                ..
            })) if req.device_id.is_some() => {
                warn!("{reason}; registering a new device");
                self.register_fresh(req).await?
            }
            // The host no longer knows this device (e.g. it lost its
            // database): enrol again with the enrolment token this agent was
            // started with; the spool is then delivered as the new device's.
            Err(RunError::Host(ClientError::Permanent { status: 401, .. }))
                if previous.is_some() =>
            {
                warn!(
                    device = ?req.device_id,
                    "the host does not know this device's token any more; enrolling again"
                );
                self.successor_of.clone_from(&req.device_id);
                self.register_fresh(req).await?
            }
            other => other?,
        };
        self.device_id = response.device_id.clone();
        self.heartbeat = Duration::from_secs(u64::from(response.heartbeat_secs.max(1)));
        self.client.set_token(&response.device_token);
        write_state(
            &self.state_path(),
            &DeviceState {
                host: self.options.host.clone(),
                device_id: response.device_id,
                device_token: response.device_token,
                runtime: Some(identity),
            },
        )?;
        info!(device = %self.device_id, "attached to {}", self.options.host);
        Ok(())
    }

    /// Registers as a new device with the enrolment token.
    async fn register_fresh(&mut self, req: RegisterRequest) -> Result<RegisterResponse, RunError> {
        self.client.set_token(&self.options.token);
        let fresh = RegisterRequest {
            device_id: None,
            ..req
        };
        self.register(&fresh).await
    }

    async fn register(&mut self, req: &RegisterRequest) -> Result<RegisterResponse, RunError> {
        self.retry(|c, _| {
            let req = req.clone();
            async move { c.register(&req).await }
        })
        .await
    }

    /// Uploads every spooled result; removes each only once acknowledged.
    /// The spool holds this board's results only: those measured under an
    /// earlier device id (before a re-enrolment) are sent as the current
    /// device's.
    async fn flush(&mut self) -> Result<(), RunError> {
        let (mut pending, problems) = self.spool.pending()?;
        for p in problems {
            warn!("{p}");
        }
        // Results measured under the id this agent had before the host lost
        // it are this board's, with this runtime: sent as the current
        // device's.
        if let Some(old) = &self.successor_of {
            let mut moved = 0;
            for r in pending.iter_mut().filter(|r| &r.device_id == old) {
                r.device_id.clone_from(&self.device_id);
                moved += 1;
            }
            if moved > 0 {
                info!(count = moved, from = %old, device = %self.device_id,
                    "spooled results of the earlier registration are sent as this device's");
            }
        }
        // Results of another device (measured before a runtime upgrade
        // made this a new device) stay spooled: this device's token cannot
        // upload them, and the host would refuse them.
        let before = pending.len();
        pending.retain(|r| r.device_id == self.device_id);
        if pending.len() < before {
            warn!(
                count = before - pending.len(),
                "spooled results of another device are kept, not uploaded"
            );
        }
        for chunk in pending.chunks(32) {
            let mut batch = ResultBatch {
                results: chunk.to_vec(),
            };
            let ack = loop {
                let upload = self
                    .retry(|c, _| {
                        let batch = batch.clone();
                        async move { c.upload(&batch).await }
                    })
                    .await;
                match upload {
                    // The host stored none of the batch: drop what it can
                    // never accept, then upload the rest again.
                    Err(RunError::Host(ClientError::ResultsRefused { rejected, .. })) => {
                        let before = batch.results.len();
                        for (key, reason) in &rejected {
                            if batch.results.iter().any(|r| &r.idempotency_key == key) {
                                warn!(key = %key, "host rejected result: {reason}");
                                self.spool.remove(key)?;
                                self.summary.rejected += 1;
                            }
                        }
                        batch
                            .results
                            .retain(|r| !rejected.iter().any(|(k, _)| k == &r.idempotency_key));
                        if batch.results.len() == before {
                            // Refusals naming nothing we sent: retrying
                            // would loop forever.
                            return Err(RunError::Host(ClientError::ResultsRefused {
                                url: self.options.host.clone(),
                                reason: "the host refused results this batch does not hold".into(),
                                rejected,
                            }));
                        }
                        if batch.results.is_empty() {
                            break ResultAck {
                                acked: Vec::new(),
                                rejected: Vec::new(),
                            };
                        }
                    }
                    other => break other?,
                }
            };
            for key in &ack.acked {
                self.spool.remove(key)?;
                self.summary.uploaded += 1;
            }
            for (key, reason) in &ack.rejected {
                warn!(key = %key, "host rejected result: {reason}");
                self.spool.remove(key)?;
                self.summary.rejected += 1;
            }
        }
        Ok(())
    }

    async fn release(&mut self, lease_ids: Vec<String>, reason: &str) {
        self.give_back(lease_ids, reason, false).await;
    }

    /// Returns leases to the host; `permanent` fails their jobs at once
    /// (measuring them again here would fail the same way).
    async fn give_back(&mut self, lease_ids: Vec<String>, reason: &str, permanent: bool) {
        if lease_ids.is_empty() {
            return;
        }
        let req = ReleaseRequest {
            device_id: self.device_id.clone(),
            lease_ids,
            reason: reason.to_string(),
            permanent,
        };
        if let Err(e) = self.client.release(&req).await {
            warn!("could not release leases (they will expire): {e}");
        }
    }

    /// Measures one lease, heartbeating while busy, and spools the result.
    async fn work(&mut self, lease: Lease) -> Result<(), RunError> {
        let source = match self.source(&lease.job).await {
            Ok(s) => s,
            Err(e) if e.is_transient() => {
                self.release(vec![lease.lease_id], &e.to_string()).await;
                return Ok(());
            }
            Err(e) => return Err(RunError::Host(e)),
        };
        let options = measure_options(
            &lease.job,
            &lease.limits,
            self.options.pin_core,
            &self.options.runtime,
        );
        let options = match options {
            Ok(o) => o,
            Err(reason) => {
                self.give_back(vec![lease.lease_id], &reason, true).await;
                return Ok(());
            }
        };
        let beat = self.spawn_heartbeat(lease.lease_id.clone());
        let measured = tokio::task::spawn_blocking(move || measure(&source, &options)).await;
        beat.abort();
        let sample = match measured {
            Ok(Ok(sample)) => sample,
            Ok(Err(e)) => {
                warn!(lease = %lease.lease_id, permanent = e.is_permanent(), "measurement failed: {e}");
                let reason = format!("measurement failed on {}: {e}", self.runtime.identity());
                self.give_back(vec![lease.lease_id], &reason, e.is_permanent())
                    .await;
                return Ok(());
            }
            Err(join) => {
                self.release(
                    vec![lease.lease_id],
                    &format!("measurement crashed: {join}"),
                )
                .await;
                return Ok(());
            }
        };
        let result = to_result(&self.device_id, Some(lease.lease_id), lease.job, &sample);
        self.spool.push(&result)?;
        self.summary.measured += 1;
        info!(
            key = %result.idempotency_key,
            median_ms = result.median_ms,
            valid = result.valid,
            "measured {}", sample.model
        );
        Ok(())
    }

    async fn source(&self, job: &JobSpec) -> Result<ModelSource, ClientError> {
        Ok(match job {
            JobSpec::Arch {
                arch,
                batch,
                resolution,
            } => ModelSource::Arch {
                arch: *arch,
                batch: *batch as usize,
                resolution: resolution.map(|r| r as usize),
            },
            JobSpec::Model { model_id, .. } => ModelSource::Bytes {
                name: format!("model {model_id}"),
                bytes: self.client.model_bytes(model_id).await?,
            },
        })
    }

    fn spawn_heartbeat(&self, lease_id: String) -> tokio::task::JoinHandle<()> {
        let client = self.client.clone();
        let req = Arc::new(Heartbeat {
            device_id: self.device_id.clone(),
            lease_ids: vec![lease_id],
        });
        let every = self.heartbeat;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match client.heartbeat(&req).await {
                    Ok(r) if !r.lost.is_empty() => {
                        warn!("lease {:?} lost; the result will still be uploaded", r.lost);
                    }
                    Ok(_) => {}
                    Err(e) => warn!("heartbeat failed: {e}"),
                }
            }
        })
    }
}

fn measure_options(
    job: &JobSpec,
    limits: &JobLimits,
    pin_core: Option<usize>,
    runtime: &RuntimeChoice,
) -> Result<MeasureOptions, String> {
    let inputs = match job {
        JobSpec::Model { inputs, .. } => inputs
            .iter()
            .map(|s| s.parse::<InputSpec>().map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?,
        JobSpec::Arch { .. } => Vec::new(),
    };
    let limits = BenchLimits {
        min_runs: limits.min_runs.max(1) as usize,
        min_time: Duration::from_millis(u64::from(limits.min_ms)),
        max_time: Duration::from_millis(u64::from(limits.max_ms.max(limits.min_ms))),
        ..BenchLimits::default()
    };
    Ok(MeasureOptions {
        limits,
        runtime: runtime.clone(),
        threads: 1,
        pin_core,
        inputs,
        seed: 0,
    })
}

/// Per-run times an uploaded sample carries at most. The settle rule can
/// time a sub-millisecond model thousands of times; the label, its rounds and
/// the summaries describe those runs, and without this bound a batch of such
/// samples outgrew a host's request body limit and was refused for good.
pub const MAX_UPLOADED_RUNS: usize = 1_000;

/// Wraps a sample as an upload with a fresh idempotency key. The per-run
/// CPU times stay local (`measure --json --raw` shows them), and the wall
/// times travel only up to [`MAX_UPLOADED_RUNS`].
pub fn to_result(
    device_id: &str,
    lease_id: Option<String>,
    job: JobSpec,
    sample: &Sample,
) -> MeasurementResult {
    let mut sample = sample.clone();
    sample.timing.cpu_times_ms.clear();
    if sample.timing.times_ms.len() > MAX_UPLOADED_RUNS {
        sample.timing.times_ms.clear();
    }
    let sample = &sample;
    MeasurementResult {
        idempotency_key: new_key(),
        device_id: device_id.to_string(),
        lease_id,
        job,
        median_ms: sample.label_ms(),
        valid: sample.valid,
        invalid_reasons: sample.invalid_reasons.clone(),
        sample_json: serde_json::to_string(sample).unwrap_or_default(),
    }
}

fn read_state(path: &Path) -> Option<DeviceState> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_state(path: &Path, state: &DeviceState) -> Result<(), RunError> {
    let err = |reason: String| RunError::State {
        path: path.display().to_string(),
        reason,
    };
    let text = serde_json::to_string_pretty(state).map_err(|e| err(e.to_string()))?;
    let tmp = path.with_extension("tmp");
    write_private(&tmp, text.as_bytes()).map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
}

/// Writes a file that holds a secret (the device token) readable by its
/// owner only from the moment it exists.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    // A leftover from an interrupted write may carry other permissions.
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
