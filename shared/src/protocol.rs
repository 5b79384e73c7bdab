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
    /// The runtime this agent times models with. Part of the device's
    /// identity: one board measured with tract and with onnxruntime is two
    /// devices to the host, whose samples never meet in one transfer. `None`
    /// from agents older than this field: they ran tract
    /// ([`Fingerprint::runtime_identity`]).
    #[serde(default, deserialize_with = "trailing_field")]
    pub runtime: Option<RuntimeIdentity>,
}

/// Which inference runtime times the models.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeKind {
    /// tract (pure Rust, compiled into the agent).
    Tract,
    /// onnxruntime, loaded from a shared library at run time.
    Ort,
}

impl RuntimeKind {
    /// The name used on the command line, in provenance and on the dashboard.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Tract => "tract",
            RuntimeKind::Ort => "ort",
        }
    }
}

impl std::fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RuntimeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tract" => Ok(RuntimeKind::Tract),
            "ort" | "onnxruntime" => Ok(RuntimeKind::Ort),
            other => Err(format!("unknown runtime `{other}` (tract, ort)")),
        }
    }
}

/// What makes two sets of latencies of one board comparable: the runtime,
/// its version and the thread count. A device on the host is one
/// (hardware, [`RuntimeIdentity`]).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RuntimeIdentity {
    /// The runtime.
    pub kind: RuntimeKind,
    /// Its version (`0.23.9` for tract, `1.32.0` for onnxruntime).
    pub version: String,
    /// Threads inference runs on.
    pub threads: u32,
}

impl std::fmt::Display for RuntimeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = if self.threads == 1 { "" } else { "s" };
        write!(
            f,
            "{} {}, {} thread{s}",
            self.kind, self.version, self.threads
        )
    }
}

/// A field appended to a struct after agents were deployed. JSON bodies
/// without it get the default through `#[serde(default)]`; postcard is not
/// self-describing, so an old agent's postcard body simply ends before the
/// field and the deserializer reports the end of its input: that one error
/// means "absent" too. Any other error (a present but malformed value) is
/// still an error.
fn trailing_field<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    match Option::<T>::deserialize(d) {
        Ok(v) => Ok(v),
        Err(e) if is_end_of_input(&e.to_string()) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether a deserializer's message is postcard's end-of-input error.
fn is_end_of_input(message: &str) -> bool {
    message == postcard::Error::DeserializeUnexpectedEnd.to_string()
}

impl Fingerprint {
    /// The runtime identity of this fingerprint; agents from before the
    /// `runtime` field ran tract on one thread.
    pub fn runtime_identity(&self) -> RuntimeIdentity {
        self.runtime.clone().unwrap_or_else(|| RuntimeIdentity {
            kind: RuntimeKind::Tract,
            version: self.tract_version.clone(),
            threads: 1,
        })
    }

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
            runtime: None,
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
    /// Retrying cannot help (the model cannot be loaded by this device's
    /// runtime, its inputs are malformed): the host fails the jobs at once
    /// with `reason` instead of queueing them again. Absent (old agents):
    /// `false`.
    #[serde(default, deserialize_with = "trailing_bool")]
    pub permanent: bool,
}

fn trailing_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match bool::deserialize(d) {
        Ok(v) => Ok(v),
        Err(e) if is_end_of_input(&e.to_string()) => Ok(false),
        Err(e) => Err(e),
    }
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

    /// The register body of an agent from before `Fingerprint::runtime`.
    #[derive(Serialize)]
    struct OldFingerprint {
        cpu_model: Option<String>,
        cores: u32,
        target: String,
        kernel: Option<String>,
        mem_total_kb: Option<u64>,
        agent_version: String,
        tract_version: String,
    }

    #[derive(Serialize)]
    struct OldRegister {
        protocol_version: u32,
        name: String,
        device_id: Option<String>,
        fingerprint: OldFingerprint,
    }

    #[derive(Serialize)]
    struct OldRelease {
        device_id: String,
        lease_ids: Vec<String>,
        reason: String,
    }

    fn old_register() -> OldRegister {
        OldRegister {
            protocol_version: PROTOCOL_VERSION,
            name: "pi".into(),
            device_id: None,
            fingerprint: OldFingerprint {
                cpu_model: Some("Cortex-A72".into()),
                cores: 4,
                target: "aarch64-unknown-linux-musl".into(),
                kernel: None,
                mem_total_kb: None,
                agent_version: "0.1.0".into(),
                tract_version: "0.23.9".into(),
            },
        }
    }

    #[test]
    fn old_agents_bodies_still_parse_as_tract() {
        let old = old_register();
        let bytes = postcard::to_allocvec(&old).unwrap();
        let req: RegisterRequest = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(req.fingerprint.runtime, None);
        let id = req.fingerprint.runtime_identity();
        assert_eq!(id.kind, RuntimeKind::Tract);
        assert_eq!(id.version, "0.23.9");
        let json = serde_json::to_string(&old).unwrap();
        let req: RegisterRequest = serde_json::from_str(&json).unwrap();
        assert_eq!(req.fingerprint.runtime, None);

        let rel = OldRelease {
            device_id: "dev-1".into(),
            lease_ids: vec!["l1".into()],
            reason: "shutdown".into(),
        };
        let back: ReleaseRequest =
            postcard::from_bytes(&postcard::to_allocvec(&rel).unwrap()).unwrap();
        assert!(!back.permanent);
        let back: ReleaseRequest =
            serde_json::from_str(&serde_json::to_string(&rel).unwrap()).unwrap();
        assert!(!back.permanent);
    }

    #[test]
    fn runtime_identity_round_trips_and_bad_values_are_errors() {
        let mut fp = Fingerprint::simulated("cpu", 2);
        fp.runtime = Some(RuntimeIdentity {
            kind: RuntimeKind::Ort,
            version: "1.32.0".into(),
            threads: 1,
        });
        let bytes = postcard::to_allocvec(&fp).unwrap();
        assert_eq!(postcard::from_bytes::<Fingerprint>(&bytes).unwrap(), fp);
        let json = serde_json::to_string(&fp).unwrap();
        assert!(json.contains(r#""kind":"ort""#), "{json}");
        assert_eq!(serde_json::from_str::<Fingerprint>(&json).unwrap(), fp);
        assert_eq!(fp.runtime_identity().to_string(), "ort 1.32.0, 1 thread");
        // A present but malformed runtime is not taken for an old agent.
        let bad = json.replace(r#""kind":"ort""#, r#""kind":"tflite""#);
        assert!(serde_json::from_str::<Fingerprint>(&bad).is_err());
        assert_eq!("onnxruntime".parse::<RuntimeKind>(), Ok(RuntimeKind::Ort));
        assert!("tflite".parse::<RuntimeKind>().is_err());
    }
}
