//! A simulated agent: what `nasflat-agent run` does on the wire, through the
//! agent's own [`HostClient`], measuring nothing. The one implementation
//! behind `nasflat-loadgen` (sizing a host) and the end-to-end test of
//! many concurrent agents, so both exercise the same protocol sequence.
//!
//! It registers with the enrolment token, then plans (with a plan key,
//! reused when that plan is retried, so a lost response does not strand
//! leases), heartbeats its leases, waits [`Workload::think_per_job`] per
//! lease in place of measuring, and uploads one result per lease, keyed by
//! the lease id (a re-sent batch is acknowledged, not stored twice). It
//! stops when the host has no more work for it (idle) or, if set, once
//! [`Workload::plan_until`] has passed. A transient failure is retried with
//! the same request and backoff, as the agent does, so nothing is lost.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nasflat_agent::client::{ClientError, HostClient};
use nasflat_shared::protocol::{
    Fingerprint, Heartbeat, Lease, MeasurementResult, PROTOCOL_VERSION, PlanRequest,
    RegisterRequest, RegisterResponse, ResultBatch,
};
use thiserror::Error;

/// First wait before retrying a transient failure; it doubles up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Longest wait between two attempts of one request.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The protocol calls an agent makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Route {
    Register,
    Plan,
    Heartbeat,
    Results,
}

impl Route {
    /// Method and path, as the host's route table names them.
    pub fn path(self) -> &'static str {
        match self {
            Route::Register => "POST /v1/agents/register",
            Route::Plan => "POST /v1/agents/plan",
            Route::Heartbeat => "POST /v1/agents/heartbeat",
            Route::Results => "POST /v1/agents/results",
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

/// Why a simulated agent stopped before it was idle or past its deadline.
#[derive(Debug, Error)]
pub enum SimAgentError {
    /// The client could not be built for this URL.
    #[error("client for {url}: {source}")]
    Client {
        url: String,
        #[source]
        source: ClientError,
    },
    /// A call failed permanently, or transiently for longer than
    /// [`Workload::give_up`].
    #[error("{route}: failed after {attempts} attempt(s): {source}")]
    Call {
        route: Route,
        attempts: usize,
        #[source]
        source: ClientError,
    },
    /// The host acknowledged a batch but rejected some of its results.
    #[error("{} result(s) rejected: {rejected:?}", rejected.len())]
    Rejected {
        /// (idempotency key, reason) per rejected result.
        rejected: Vec<(String, String)>,
    },
}

/// What every simulated agent of a run does.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The host's enrolment token.
    pub enrol_token: String,
    /// Jobs asked for per plan.
    pub max_jobs: u32,
    /// Stand-in for measuring one job (zero: requests back to back).
    pub think_per_job: Duration,
    /// No plan is started after this instant (in-flight results are still
    /// delivered); `None`: plan until the host has no more work.
    pub plan_until: Option<Instant>,
    /// Longest time one request is retried before the agent gives up.
    pub give_up: Duration,
}

/// What one simulated agent saw.
#[derive(Debug, Default)]
pub struct AgentLog {
    /// Latency (s) of each answered request, by route.
    pub latencies: BTreeMap<Route, Vec<f64>>,
    /// Failed attempts (retried or not), by route.
    pub errors: BTreeMap<Route, usize>,
    /// The device it registered as.
    pub device_id: Option<String>,
    /// Distinct result keys the host acknowledged.
    pub acked: HashSet<String>,
    /// Results it built from its leases.
    pub measured: usize,
    /// Whether it ran out of work (rather than time).
    pub idle: bool,
    /// Why it stopped early, if it did.
    pub failure: Option<SimAgentError>,
}

impl AgentLog {
    /// Every answered request's latency (s), all routes together.
    pub fn all_latencies(&self) -> impl Iterator<Item = f64> + '_ {
        self.latencies.values().flatten().copied()
    }

    /// Failed attempts over all routes.
    pub fn error_count(&self) -> usize {
        self.errors.values().sum()
    }

    /// Calls `f` until it answers, retrying transient errors with backoff
    /// for at most `give_up`; records each attempt under `route`.
    async fn call<T, F, Fut>(
        &mut self,
        route: Route,
        give_up: Duration,
        mut f: F,
    ) -> Result<T, SimAgentError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let first = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0;
        loop {
            let t = Instant::now();
            attempts += 1;
            match f().await {
                Ok(v) => {
                    let took = t.elapsed().as_secs_f64();
                    self.latencies.entry(route).or_default().push(took);
                    return Ok(v);
                }
                Err(source) => {
                    *self.errors.entry(route).or_default() += 1;
                    if !source.is_transient() || first.elapsed() > give_up {
                        return Err(SimAgentError::Call {
                            route,
                            attempts,
                            source,
                        });
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// A fresh plan key, unique in this process (the host takes 8-64
/// characters of `[A-Za-z0-9]`).
fn plan_key() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("simplan{:012}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Runs one simulated agent named `name` against the host at `url`, from
/// registration until it is idle, past the deadline, or failed (the
/// failure is in the log, with everything it saw before).
pub async fn run(url: &str, name: &str, workload: &Workload) -> AgentLog {
    let mut log = AgentLog::default();
    if let Err(e) = run_into(url, name, workload, &mut log).await {
        log.failure = Some(e);
    }
    log
}

async fn run_into(
    url: &str,
    name: &str,
    workload: &Workload,
    log: &mut AgentLog,
) -> Result<(), SimAgentError> {
    let mut client =
        HostClient::new(url, &workload.enrol_token).map_err(|source| SimAgentError::Client {
            url: url.to_string(),
            source,
        })?;
    let reg = register(&client, name, workload, log).await?;
    client.set_token(&reg.device_token);
    while workload.plan_until.is_none_or(|t| Instant::now() < t) {
        let leases = plan(&client, &reg.device_id, workload, log).await?;
        if leases.is_empty() {
            log.idle = true;
            break;
        }
        measure(&client, &reg.device_id, leases, workload, log).await?;
    }
    Ok(())
}

async fn register(
    client: &HostClient,
    name: &str,
    workload: &Workload,
    log: &mut AgentLog,
) -> Result<RegisterResponse, SimAgentError> {
    let request = RegisterRequest {
        protocol_version: PROTOCOL_VERSION,
        name: name.to_string(),
        device_id: None,
        fingerprint: Fingerprint::simulated(name, 4),
    };
    let reg = log
        .call(Route::Register, workload.give_up, || {
            client.register(&request)
        })
        .await?;
    log.device_id = Some(reg.device_id.clone());
    Ok(reg)
}

/// One plan, its retries under the same key.
async fn plan(
    client: &HostClient,
    device_id: &str,
    workload: &Workload,
    log: &mut AgentLog,
) -> Result<Vec<Lease>, SimAgentError> {
    let key = plan_key();
    let ask = PlanRequest {
        device_id: device_id.to_string(),
        max_jobs: workload.max_jobs,
    };
    let plan = log
        .call(Route::Plan, workload.give_up, || client.plan(&ask, &key))
        .await?;
    Ok(plan.leases)
}

/// Heartbeats the leases, "measures" them for the think time, uploads one
/// result each.
async fn measure(
    client: &HostClient,
    device_id: &str,
    leases: Vec<Lease>,
    workload: &Workload,
    log: &mut AgentLog,
) -> Result<(), SimAgentError> {
    let beat = Heartbeat {
        device_id: device_id.to_string(),
        lease_ids: leases.iter().map(|l| l.lease_id.clone()).collect(),
    };
    log.call(Route::Heartbeat, workload.give_up, || {
        client.heartbeat(&beat)
    })
    .await?;
    let jobs = u32::try_from(leases.len()).unwrap_or(u32::MAX);
    tokio::time::sleep(workload.think_per_job.saturating_mul(jobs)).await;
    let results: Vec<MeasurementResult> = leases
        .into_iter()
        .enumerate()
        .map(|(j, l)| MeasurementResult {
            idempotency_key: format!("{}-r", l.lease_id),
            device_id: device_id.to_string(),
            lease_id: Some(l.lease_id),
            job: l.job,
            median_ms: 1.0 + j as f64,
            valid: true,
            invalid_reasons: vec![],
            sample_json: "{}".into(),
        })
        .collect();
    log.measured += results.len();
    let batch = ResultBatch { results };
    let ack = log
        .call(Route::Results, workload.give_up, || client.upload(&batch))
        .await?;
    if !ack.rejected.is_empty() {
        return Err(SimAgentError::Rejected {
            rejected: ack.rejected,
        });
    }
    log.acked.extend(ack.acked);
    Ok(())
}
