//! The agent <-> host wire protocol, version [`PROTOCOL_VERSION`].
//!
//! Pull-based over plain HTTP(S) requests from the agent, so a board behind
//! NAT needs only outbound access. Bodies are postcard by default
//! (`Content-Type: application/x-postcard`, compact on slow links and fast on
//! small CPUs); JSON (`application/json`) is accepted for the same types.
//!
//! | call | request | response |
//! |---|---|---|
//! | `POST /v1/agents/register` (bearer: enrolment token) | [`RegisterRequest`] | [`RegisterResponse`] |
//! | `POST /v1/agents/plan` (bearer: device token) | [`PlanRequest`] | [`PlanResponse`] |
//! | `POST /v1/agents/heartbeat` | [`Heartbeat`] | [`HeartbeatResponse`] |
//! | `POST /v1/agents/results` | [`ResultBatch`] | [`ResultAck`] |
//! | `POST /v1/agents/release` | [`ReleaseRequest`] | empty |
//! | `GET /v1/models/{id}` | - | ONNX bytes |
//!
//! Every result carries an idempotency key chosen by the agent before it is
//! spooled; the host stores a key at most once and acknowledges keys it
//! already has, so retrying after a lost response never counts a
//! measurement twice.
//!
//! With the feature `schema` every type here derives `schemars::JsonSchema`
//! (the host's OpenAPI document); the agent builds without it.

use serde::{Deserialize, Serialize};

use crate::arch::Arch;

/// Version of this protocol. The host rejects other major versions.
pub const PROTOCOL_VERSION: u32 = 1;

/// MIME type of postcard bodies.
pub const POSTCARD_MIME: &str = "application/x-postcard";

/// Header of a plan request naming the agent's attempt: a retried plan
/// (the host died or the response was lost after the host leased) carries
/// the same key, and the host answers with the leases it already granted
/// under it instead of leasing more jobs the agent never hears of.
pub const PLAN_KEY_HEADER: &str = "x-nasflat-plan-key";

/// Whether `key` is a valid [`PLAN_KEY_HEADER`] value: 8-64 characters of
/// `[A-Za-z0-9]` (it becomes part of the lease ids).
pub fn valid_plan_key(key: &str) -> bool {
    (8..=64).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Agent -> host: register a new device or re-attach an existing one.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// [`PROTOCOL_VERSION`] of the agent.
    pub protocol_version: u32,
    /// Human name of the device (`--name`, default: host name).
    pub name: String,
    /// Set when re-attaching: the id the host gave before.
    pub device_id: Option<String>,
    /// Machine fingerprint: CPU, cores, target triple, kernel, memory.
    pub fingerprint: Fingerprint,
}

/// What identifies a machine across restarts.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// CPU model.
    pub cpu_model: Option<String>,
    /// Logical cores.
    pub cores: u32,
    /// Target triple of the agent binary.
    pub target: String,
    /// Kernel release.
    pub kernel: Option<String>,
    /// Total memory, kB.
    pub mem_total_kb: Option<u64>,
    /// Agent version.
    pub agent_version: String,
    /// tract version.
    pub tract_version: String,
}

impl Fingerprint {
    /// A machine that exists only in a simulation (the service's tests, the
    /// end-to-end load test's simulated agents): its CPU named `cpu_model`,
    /// nothing read from the machine running it.
    pub fn simulated(cpu_model: &str, cores: u32) -> Self {
        Fingerprint {
            cpu_model: Some(cpu_model.to_string()),
            cores,
            target: "x86_64-unknown-linux-gnu".into(),
            kernel: None,
            mem_total_kb: None,
            agent_version: "simulated".into(),
            tract_version: "simulated".into(),
        }
    }
}

/// Host -> agent: the device's identity and its own bearer token.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    /// Device id.
    pub device_id: String,
    /// Bearer token for all further calls of this device.
    pub device_token: String,
    /// Seconds between heartbeats while busy.
    pub heartbeat_secs: u32,
}

/// Agent -> host: ask for work.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRequest {
    /// The asking device.
    pub device_id: String,
    /// At most this many leases.
    pub max_jobs: u32,
}

/// What to measure.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobSpec {
    /// One of our architectures, built on the board.
    Arch {
        /// The architecture.
        arch: Arch,
        /// Batch size.
        batch: u32,
        /// Input resolution (`None`: the space's own).
        resolution: Option<u32>,
    },
    /// A user model, fetched from `GET /v1/models/{model_id}`.
    Model {
        /// Model id on the host.
        model_id: String,
        /// Input overrides `NAME:SHAPE[:DTYPE]`.
        inputs: Vec<String>,
    },
}

/// Measurement bounds the host asks for (see the agent's `BenchLimits`).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct JobLimits {
    /// Minimum timed runs.
    pub min_runs: u32,
    /// Minimum timed duration, ms.
    pub min_ms: u32,
    /// Maximum timed duration, ms.
    pub max_ms: u32,
    /// tract threads.
    pub threads: u32,
}

impl Default for JobLimits {
    fn default() -> Self {
        JobLimits {
            min_runs: 20,
            min_ms: 1000,
            max_ms: 10_000,
            threads: 1,
        }
    }
}

/// A job handed to one device until `expires_in_secs` pass without a heartbeat.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    /// Lease id.
    pub lease_id: String,
    /// What to measure.
    pub job: JobSpec,
    /// Bounds of the measurement.
    pub limits: JobLimits,
    /// Seconds until the lease returns to the queue unless renewed.
    pub expires_in_secs: u32,
}

/// Host -> agent: leases (possibly none: then poll again after `retry_after_secs`).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanResponse {
    /// Granted leases.
    pub leases: Vec<Lease>,
    /// When there is no work: seconds until asking again.
    pub retry_after_secs: u32,
}

/// Agent -> host: still working on these leases.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The device.
    pub device_id: String,
    /// Leases being worked on.
    pub lease_ids: Vec<String>,
}

/// Host -> agent: which leases were renewed and which are lost (expired and
/// re-issued, or cancelled): the agent stops work on lost ones.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// Renewed.
    pub renewed: Vec<String>,
    /// No longer held.
    pub lost: Vec<String>,
}

/// One measured result as uploaded.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasurementResult {
    /// Chosen by the agent before spooling; unique per measurement.
    pub idempotency_key: String,
    /// The device that measured.
    pub device_id: String,
    /// The lease it was measured for (`None`: measured on the agent's own initiative).
    pub lease_id: Option<String>,
    /// What was measured.
    pub job: JobSpec,
    /// The label: median latency, ms.
    pub median_ms: f64,
    /// Whether the agent judged the sample valid.
    pub valid: bool,
    /// Why not, when not.
    pub invalid_reasons: Vec<String>,
    /// The full sample (timing statistics, provenance) as JSON text, so the
    /// host keeps everything without the protocol fixing every field.
    pub sample_json: String,
}

/// Agent -> host: results to store.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultBatch {
    /// The results.
    pub results: Vec<MeasurementResult>,
}

/// Host -> agent: keys now durably stored (including ones stored before).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultAck {
    /// Acknowledged keys.
    pub acked: Vec<String>,
    /// Rejected keys with the reason (the agent drops them from its spool
    /// and logs why: retrying cannot fix them). This host refuses a batch
    /// with an invalid result as a whole (422, [`ErrorBody::rejected`]), so
    /// it always sends this empty; agents still honour it for hosts that
    /// accept batches partially.
    pub rejected: Vec<(String, String)>,
}

/// Agent -> host: give leases back unmeasured (shutdown, failure).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRequest {
    /// The device.
    pub device_id: String,
    /// Leases returned to the queue.
    pub lease_ids: Vec<String>,
    /// Why (logged by the host).
    pub reason: String,
}

/// The error body of every non-2xx response.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `unauthorized`, `bad_request`.
    pub code: String,
    /// Human-readable message naming what is wrong.
    pub message: String,
    /// For a refused result batch (422 `invalid_results`): each refused
    /// result's idempotency key and the reason. Nothing of the batch was
    /// stored; the agent drops these from its spool (retrying cannot make
    /// them valid) and uploads the rest again.
    #[serde(default)]
    pub rejected: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::SearchSpace;

    #[test]
    fn postcard_and_json_round_trip() {
        let arch = Arch::from_index(SearchSpace::Nb201, 5).unwrap();
        let plan = PlanResponse {
            leases: vec![Lease {
                lease_id: "l1".into(),
                job: JobSpec::Arch {
                    arch,
                    batch: 1,
                    resolution: None,
                },
                limits: JobLimits::default(),
                expires_in_secs: 60,
            }],
            retry_after_secs: 0,
        };
        let bytes = postcard::to_allocvec(&plan).unwrap();
        let back: PlanResponse = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, plan);
        let json = serde_json::to_string(&plan).unwrap();
        let back: PlanResponse = serde_json::from_str(&json).unwrap();
        assert_eq!(back, plan);
        let fb = Arch::from_index(SearchSpace::Fbnet, 3).unwrap();
        let bytes = postcard::to_allocvec(&fb).unwrap();
        assert_eq!(postcard::from_bytes::<Arch>(&bytes).unwrap(), fb);
    }
}
