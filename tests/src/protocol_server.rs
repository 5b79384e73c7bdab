//! An in-memory host for the agent protocol, with fault injection.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nasflat_shared::protocol::{
    ErrorBody, Heartbeat, HeartbeatResponse, JobLimits, JobSpec, Lease, MeasurementResult,
    POSTCARD_MIME, PROTOCOL_VERSION, PlanRequest, PlanResponse, RegisterRequest, RegisterResponse,
    ReleaseRequest, ResultAck, ResultBatch,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

/// An injected failure for the next request(s) to one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer 503 without doing anything.
    Unavailable,
    /// Answer 200 with bytes that decode as nothing.
    Garbage,
    /// Do the work (store results), then answer 503: the agent never sees
    /// the ack and must retry; the retry must not duplicate anything.
    LoseResponse,
}

/// Everything the server knows.
#[derive(Debug, Default)]
pub struct ServerState {
    /// Token a new device must present.
    pub enrolment_token: String,
    /// Registered devices: id -> (name, token).
    pub devices: BTreeMap<String, (String, String)>,
    /// Jobs not yet leased.
    pub queue: VecDeque<JobSpec>,
    /// Outstanding leases: id -> (device, job).
    pub leases: HashMap<String, (String, JobSpec)>,
    /// Stored results by idempotency key.
    pub results: BTreeMap<String, MeasurementResult>,
    /// Upload attempts that carried a key already stored.
    pub duplicate_uploads: usize,
    /// Registrations seen (re-attaches included).
    pub registrations: usize,
    /// Pending faults per endpoint name (`register`, `plan`, `results`, ...).
    pub faults: HashMap<&'static str, VecDeque<Fault>>,
    /// User models: id -> ONNX bytes.
    pub models: HashMap<String, Vec<u8>>,
    /// Jobs released as permanently failed, with the agent's reason (not
    /// queued again, as the real host fails them).
    pub failed: Vec<(JobSpec, String)>,
    next_id: u64,
}

impl ServerState {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }
}

/// Shared handle on the server's state.
pub type Shared = Arc<Mutex<ServerState>>;

/// Locks the state, recovering from a poisoned lock (a panicking handler
/// must not take the whole test server down).
pub fn lock(state: &Shared) -> MutexGuard<'_, ServerState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running server.
pub struct TestHost {
    /// Bound address (loopback).
    pub addr: SocketAddr,
    /// Its state.
    pub state: Shared,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestHost {
    /// Starts a server on `127.0.0.1:port` (0 = any free port) with an
    /// existing state (to simulate a restart keeping its database).
    pub async fn start(state: Shared, port: u16) -> std::io::Result<TestHost> {
        let listener = bind(port).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let app = router(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(TestHost {
            addr,
            state,
            shutdown: Some(tx),
            task,
        })
    }

    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections and waits for the server task.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Binds loopback `port` (0: any). A restart on the port it had retries for
/// a while: until the old listener's socket is gone, or while a client socket
/// of a concurrent test holds the same number, the bind fails with
/// `AddrInUse`, which on a busy machine is a matter of milliseconds.
async fn bind(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let mut tries = 0;
    loop {
        match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Err(e) if port != 0 && e.kind() == std::io::ErrorKind::AddrInUse && tries < 50 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// A fresh state with an enrolment token and queued jobs.
pub fn new_state(token: &str, jobs: Vec<JobSpec>) -> Shared {
    Arc::new(Mutex::new(ServerState {
        enrolment_token: token.to_string(),
        queue: jobs.into(),
        ..ServerState::default()
    }))
}

/// The axum app.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/v1/agents/register", post(register))
        .route("/v1/agents/plan", post(plan))
        .route("/v1/agents/heartbeat", post(heartbeat))
        .route("/v1/agents/results", post(results))
        .route("/v1/agents/release", post(release))
        .route("/v1/models/{id}", get(model))
        .with_state(state)
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    let body = ErrorBody {
        code: code.to_string(),
        message,
        rejected: Vec::new(),
    };
    (status, axum::Json(body)).into_response()
}

/// Decodes a body by its content type; the error is the 400 response to send
/// (boxed: a `Response` is large and errors are the cold path).
fn decode<T: DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Result<T, Box<Response>> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let parsed = if json {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    } else {
        postcard::from_bytes(body).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("malformed body: {e}"),
        ))
    })
}

fn encode<T: Serialize>(headers: &HeaderMap, value: &T) -> Response {
    let postcard = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(POSTCARD_MIME));
    if postcard {
        match postcard::to_allocvec(value) {
            Ok(bytes) => ([(header::CONTENT_TYPE, POSTCARD_MIME)], bytes).into_response(),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        }
    } else {
        axum::Json(value).into_response()
    }
}

fn take_fault(state: &mut ServerState, endpoint: &'static str) -> Option<Fault> {
    state.faults.get_mut(endpoint).and_then(VecDeque::pop_front)
}

fn fault_response(fault: Fault) -> Option<Response> {
    match fault {
        Fault::Unavailable => Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "injected outage".into(),
        )),
        Fault::Garbage => {
            Some(([(header::CONTENT_TYPE, POSTCARD_MIME)], vec![0xffu8; 7]).into_response())
        }
        Fault::LoseResponse => None,
    }
}

/// The device a bearer token belongs to.
fn device_of(state: &ServerState, headers: &HeaderMap) -> Option<String> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())?
        .strip_prefix("Bearer ")?;
    state
        .devices
        .iter()
        .find(|(_, (_, t))| t == token)
        .map(|(id, _)| id.clone())
}

async fn register(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let req: RegisterRequest = match decode(&headers, &body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let mut s = lock(&state);
    if let Some(f) = take_fault(&mut s, "register").and_then(fault_response) {
        return f;
    }
    if req.protocol_version != PROTOCOL_VERSION {
        return error(
            StatusCode::BAD_REQUEST,
            "protocol_version",
            format!(
                "protocol {} not supported (host speaks {PROTOCOL_VERSION})",
                req.protocol_version
            ),
        );
    }
    s.registrations += 1;
    let known = device_of(&s, &headers);
    let device_id = match (known, req.device_id) {
        (Some(id), Some(asked)) if id == asked => id,
        _ => {
            let presented = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if presented != Some(s.enrolment_token.as_str()) {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "bad enrolment token".into(),
                );
            }
            let id = s.id("dev-");
            let token = s.id("tok-");
            s.devices.insert(id.clone(), (req.name, token));
            id
        }
    };
    let token = s
        .devices
        .get(&device_id)
        .map(|(_, t)| t.clone())
        .unwrap_or_default();
    encode(
        &headers,
        &RegisterResponse {
            device_id,
            device_token: token,
            heartbeat_secs: 1,
        },
    )
}

async fn plan(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let req: PlanRequest = match decode(&headers, &body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let mut s = lock(&state);
    if let Some(f) = take_fault(&mut s, "plan").and_then(fault_response) {
        return f;
    }
    if device_of(&s, &headers).as_deref() != Some(req.device_id.as_str()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "token does not match device".into(),
        );
    }
    let mut leases = Vec::new();
    while leases.len() < req.max_jobs as usize {
        let Some(job) = s.queue.pop_front() else {
            break;
        };
        let lease_id = s.id("lease-");
        s.leases
            .insert(lease_id.clone(), (req.device_id.clone(), job.clone()));
        leases.push(Lease {
            lease_id,
            job,
            limits: JobLimits {
                min_runs: 3,
                min_ms: 1,
                max_ms: 2000,
                threads: 1,
            },
            expires_in_secs: 30,
        });
    }
    encode(
        &headers,
        &PlanResponse {
            leases,
            retry_after_secs: 1,
        },
    )
}

async fn heartbeat(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let req: Heartbeat = match decode(&headers, &body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let s = lock(&state);
    let (renewed, lost) = req
        .lease_ids
        .into_iter()
        .partition(|id| s.leases.get(id).is_some_and(|(d, _)| d == &req.device_id));
    encode(&headers, &HeartbeatResponse { renewed, lost })
}

async fn results(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let req: ResultBatch = match decode(&headers, &body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let mut s = lock(&state);
    let fault = take_fault(&mut s, "results");
    if let Some(f) = fault.and_then(fault_response) {
        return f;
    }
    let Some(device) = device_of(&s, &headers) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown token".into(),
        );
    };
    // Like the real host: a batch with an invalid result is refused as a
    // whole (422 listing each), nothing of it stored.
    let rejected: Vec<(String, String)> = req
        .results
        .iter()
        .filter_map(|r| {
            if r.device_id != device {
                Some((r.idempotency_key.clone(), "device mismatch".to_string()))
            } else if !(r.median_ms.is_finite() && r.median_ms > 0.0) {
                Some((
                    r.idempotency_key.clone(),
                    format!("latency {} is not positive", r.median_ms),
                ))
            } else {
                None
            }
        })
        .collect();
    if !rejected.is_empty() {
        let body = ErrorBody {
            code: "invalid_results".into(),
            message: format!("{} results refused", rejected.len()),
            rejected,
        };
        return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response();
    }
    let mut ack = ResultAck {
        acked: Vec::new(),
        rejected: Vec::new(),
    };
    for r in req.results {
        if s.results.contains_key(&r.idempotency_key) {
            s.duplicate_uploads += 1;
        } else {
            if let Some(lease) = &r.lease_id {
                s.leases.remove(lease);
            }
            s.results.insert(r.idempotency_key.clone(), r.clone());
        }
        ack.acked.push(r.idempotency_key);
    }
    if fault == Some(Fault::LoseResponse) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "injected lost ack".into(),
        );
    }
    encode(&headers, &ack)
}

async fn release(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let req: ReleaseRequest = match decode(&headers, &body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let mut s = lock(&state);
    for id in req.lease_ids {
        if let Some((_, job)) = s.leases.remove(&id) {
            if req.permanent {
                s.failed.push((job, req.reason.clone()));
            } else {
                s.queue.push_back(job);
            }
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn model(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    let s = lock(&state);
    match s.models.get(&id) {
        Some(bytes) => bytes.clone().into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no model `{id}`"),
        ),
    }
}
