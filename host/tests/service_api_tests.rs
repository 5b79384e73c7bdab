//! The service's routes, in-process (`tower::ServiceExt::oneshot`, no
//! socket): the agent protocol, leases, and bad input of every kind ->
//! a 4xx with our JSON error body, nothing stored, and the server keeps
//! serving.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{ADMIN, ENROL, Reply, call, err, get, nb201, ok, postcard_req, raw, register};
use nasflat_host::service::domain::{TransferState, Trigger};
use nasflat_host::service::store::transfers::NewPredictions;
use nasflat_host::service::{AppState, ServiceConfig};
use nasflat_shared::protocol::{
    Fingerprint, Heartbeat, HeartbeatResponse, JobSpec, Lease, MeasurementResult, PLAN_KEY_HEADER,
    POSTCARD_MIME, PROTOCOL_VERSION, PlanRequest, PlanResponse, RegisterRequest, RegisterResponse,
    ReleaseRequest, ResultAck, ResultBatch, RuntimeIdentity, RuntimeKind,
};
use nasflat_shared::{Arch, SearchSpace};

async fn app(dir: &std::path::Path) -> (Router, AppState) {
    app_configured(dir, |_| {}).await
}

/// The app with test settings and a 64 KiB body limit, then `configure`'s.
async fn app_configured(
    dir: &std::path::Path,
    configure: impl FnOnce(&mut ServiceConfig),
) -> (Router, AppState) {
    common::app(dir, "api", |c| {
        c.max_body_bytes = 64 << 10;
        configure(c);
    })
    .await
}

/// A result under a fresh key, with a provenance in its sample.
fn result(device: &str, lease: Option<String>, job: JobSpec, ms: f64) -> MeasurementResult {
    MeasurementResult {
        lease_id: lease,
        sample_json: "{\"provenance\":{\"cpu\":\"test\"}}".into(),
        ..common::result(device, &format!("key-{}", rand_suffix()), job, ms)
    }
}

/// One result per lease, the `i`-th measured at `ms(i)`.
fn results_of(dev: &str, leases: &[Lease], ms: impl Fn(usize) -> f64) -> ResultBatch {
    ResultBatch {
        results: leases
            .iter()
            .enumerate()
            .map(|(i, l)| result(dev, Some(l.lease_id.clone()), l.job.clone(), ms(i)))
            .collect(),
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_flow_leases_and_idempotent_results() {
    let dir = tempfile::tempdir().unwrap();
    let (app, state) = app(dir.path()).await;
    let reg = register(&app).await;
    let dev = reg.device_id.clone();
    let tok = reg.device_token.clone();
    // The plan is the k = 20 sampler-chosen archs, at most 16 per call.
    let plan = |n| PlanRequest {
        device_id: dev.clone(),
        max_jobs: n,
    };
    let first: PlanResponse =
        ok(&app, postcard_req("/v1/agents/plan", Some(&tok), &plan(16))).await;
    let second: PlanResponse =
        ok(&app, postcard_req("/v1/agents/plan", Some(&tok), &plan(16))).await;
    assert_eq!((first.leases.len(), second.leases.len()), (16, 4));
    let mut leases: Vec<_> = first.leases.into_iter().chain(second.leases).collect();
    let distinct: std::collections::HashSet<String> =
        leases.iter().map(|l| format!("{:?}", l.job)).collect();
    assert_eq!(distinct.len(), 20);
    // Heartbeat renews ours; an unknown lease is lost.
    let hb = Heartbeat {
        device_id: dev.clone(),
        lease_ids: vec![leases[0].lease_id.clone(), "lease-nope".into()],
    };
    let r: HeartbeatResponse =
        ok(&app, postcard_req("/v1/agents/heartbeat", Some(&tok), &hb)).await;
    assert_eq!(r.renewed, vec![leases[0].lease_id.clone()]);
    assert_eq!(r.lost, vec!["lease-nope".to_string()]);
    // A released lease goes back to the queue and is handed out again.
    let released = leases.pop().unwrap();
    let rel = ReleaseRequest {
        device_id: dev.clone(),
        lease_ids: vec![released.lease_id.clone()],
        reason: "test".into(),
        permanent: false,
    };
    let Reply { status: s, .. } =
        call(&app, postcard_req("/v1/agents/release", Some(&tok), &rel)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let again: PlanResponse = ok(&app, postcard_req("/v1/agents/plan", Some(&tok), &plan(4))).await;
    assert_eq!(again.leases.len(), 1);
    assert_eq!(again.leases[0].job, released.job);
    leases.push(again.leases[0].clone());
    // Upload all 20; a retry of the same batch is acknowledged, not stored twice.
    let batch = results_of(&dev, &leases, |i| 1.0 + i as f64);
    let ack: ResultAck = ok(&app, postcard_req("/v1/agents/results", Some(&tok), &batch)).await;
    assert_eq!((ack.acked.len(), ack.rejected.len()), (20, 0));
    let ack: ResultAck = ok(&app, postcard_req("/v1/agents/results", Some(&tok), &batch)).await;
    assert_eq!(ack.acked.len(), 20);
    assert_eq!(state.store.count_measurements().await.unwrap(), 20);
    let c = state.store.queue_counts(Some(&dev)).await.unwrap();
    assert_eq!((c.done, c.queued, c.leased), (20, 0, 0));
    // JSON is accepted too (and answered in JSON when asked).
    let json = Request::post("/v1/agents/plan")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {tok}"))
        .body(Body::from(serde_json::to_vec(&plan(2)).unwrap()))
        .unwrap();
    let p: PlanResponse = ok(&app, json).await;
    assert!(p.leases.is_empty() && p.retry_after_secs > 0);
    // Re-attach keeps the id and the token.
    let reattach = RegisterRequest {
        protocol_version: PROTOCOL_VERSION,
        name: "board".into(),
        device_id: Some(dev.clone()),
        fingerprint: Fingerprint::simulated("test cpu", 2),
    };
    let r: RegisterResponse = ok(
        &app,
        postcard_req("/v1/agents/register", Some(&tok), &reattach),
    )
    .await;
    assert_eq!((r.device_id, r.device_token), (dev.clone(), tok.clone()));
    assert_eq!(state.store.devices().await.unwrap().len(), 1);
    // Device detail, metrics, no predictor before a transfer (409).
    let detail: serde_json::Value = ok(&app, get(&format!("/v1/devices/{dev}"))).await;
    assert_eq!(detail["samples"].as_array().unwrap().len(), 20);
    assert_eq!(detail["latest_provenance"]["cpu"], "test");
    let e = err(
        &app,
        get(&format!("/v1/devices/{dev}/predict?index=3")),
        StatusCode::CONFLICT,
    )
    .await;
    assert!(
        e.message.contains("no nb201 predictor yet"),
        "{}",
        e.message
    );
    let Reply {
        status: s,
        body: text,
        ..
    } = call(&app, get("/metrics")).await;
    let text = String::from_utf8(text).unwrap();
    assert_eq!(s, StatusCode::OK);
    assert!(text.contains("nasflat_results_stored_total 20"), "{text}");
    assert!(text.contains("nasflat_results_duplicate_total 20"));
    assert!(text.contains("route=\"/v1/agents/plan\""));
    // A built-in device answers from the vendored table.
    let b: serde_json::Value = ok(&app, get("/v1/devices/nb201:pixel3/predict?index=0")).await;
    assert_eq!(b["source"], "table");
    assert!(b["predictions"][0]["latency_ms"].as_f64().unwrap() > 0.0);
    // The OpenAPI document is JSON with schemas, and what the service
    // really answered conforms to them.
    let doc: serde_json::Value = ok(&app, get("/v1/openapi.json")).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "PlanResponse",
        "DeviceDetail",
        "PredictResponse",
        "ErrorBody",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    conforms(&doc, "get", "/v1/devices/{id}", &detail);
    conforms(&doc, "get", "/v1/devices/{id}/predict", &b);
    for path in ["/v1/devices", "/v1/leases", "/healthz", "/v1/models"] {
        let body: serde_json::Value = ok(&app, get(path)).await;
        conforms(&doc, "get", path, &body);
    }
}

/// A plan retried with the same key (its response was lost after the host
/// leased) answers the same leases again, renewed, instead of stranding
/// them until they expire; a new key leases the next jobs; a malformed key
/// is refused.
#[tokio::test]
async fn a_retried_plan_gets_its_leases_again() {
    let dir = tempfile::tempdir().unwrap();
    let (app, state) = app(dir.path()).await;
    let reg = register(&app).await;
    let (dev, tok) = (reg.device_id, reg.device_token);
    let keyed = |key: &str, n: u32| {
        let mut r = postcard_req(
            "/v1/agents/plan",
            Some(&tok),
            &PlanRequest {
                device_id: dev.clone(),
                max_jobs: n,
            },
        );
        r.headers_mut()
            .insert(PLAN_KEY_HEADER, key.parse().unwrap());
        r
    };
    let first: PlanResponse = ok(&app, keyed("attemptA1", 4)).await;
    let retry: PlanResponse = ok(&app, keyed("attemptA1", 4)).await;
    let ids = |p: &PlanResponse| {
        p.leases
            .iter()
            .map(|l| l.lease_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(first.leases.len(), 4);
    assert_eq!(ids(&retry), ids(&first));
    let c = state.store.queue_counts(Some(&dev)).await.unwrap();
    assert_eq!(c.leased, 4, "the retry leased nothing more");
    let next: PlanResponse = ok(&app, keyed("attemptB2", 4)).await;
    assert_eq!(next.leases.len(), 4);
    assert!(ids(&next).iter().all(|id| !ids(&first).contains(id)));
    // A key that shares a prefix with another is not its replay.
    let longer: PlanResponse = ok(&app, keyed("attemptA1x", 2)).await;
    assert!(ids(&longer).iter().all(|id| !ids(&first).contains(id)));
    for bad in ["short", "has space inside", "dash-is-not-allowed"] {
        let Reply {
            status: s, body, ..
        } = call(&app, keyed(bad, 1)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            String::from_utf8_lossy(&body).contains(PLAN_KEY_HEADER),
            "{bad}"
        );
    }
}

/// Asserts `body` validates against the 200 JSON schema the document gives
/// for `method path` (its `$ref`s resolved in the document's components).
fn conforms(doc: &serde_json::Value, method: &str, path: &str, body: &serde_json::Value) {
    let op = &doc["paths"][path][method];
    let mut schema = op["responses"]["200"]["content"]["application/json"]["schema"].clone();
    assert!(schema.is_object(), "{method} {path}: no 200 JSON schema");
    schema["components"] = doc["components"].clone();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(body).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{method} {path}: {errors:?}\n{body:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_json_errors_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (app, state) = app(dir.path()).await;
    let reg = register(&app).await;
    let (dev, tok) = (reg.device_id.clone(), reg.device_token.clone());
    let plan = PlanRequest {
        device_id: dev.clone(),
        max_jobs: 1,
    };
    // Tokens: missing, wrong, another device's id.
    err(
        &app,
        postcard_req("/v1/agents/plan", None, &plan),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    err(
        &app,
        postcard_req("/v1/agents/plan", Some("wrong"), &plan),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let reg_req = RegisterRequest {
        protocol_version: PROTOCOL_VERSION,
        name: "x".into(),
        device_id: None,
        fingerprint: Fingerprint::simulated("test cpu", 2),
    };
    err(
        &app,
        postcard_req("/v1/agents/register", Some("wrong"), &reg_req),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    err(
        &app,
        postcard_req("/v1/agents/register", None, &reg_req),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let other = PlanRequest {
        device_id: "dev-other".into(),
        max_jobs: 1,
    };
    err(
        &app,
        postcard_req("/v1/agents/plan", Some(&tok), &other),
        StatusCode::FORBIDDEN,
    )
    .await;
    let old = RegisterRequest {
        protocol_version: PROTOCOL_VERSION + 1,
        ..reg_req.clone()
    };
    err(
        &app,
        postcard_req("/v1/agents/register", Some(ENROL), &old),
        StatusCode::BAD_REQUEST,
    )
    .await;
    // Malformed postcard and JSON, a foreign content type, an oversize body.
    let e = err(
        &app,
        raw("/v1/agents/plan", Some(&tok), POSTCARD_MIME, vec![0xff; 9]),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(e.code, "malformed_body");
    let e = err(
        &app,
        raw(
            "/v1/agents/results",
            Some(&tok),
            "application/json",
            b"{\"results\": [".to_vec(),
        ),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(e.message.contains("JSON"), "{}", e.message);
    err(
        &app,
        raw("/v1/agents/plan", Some(&tok), "text/plain", b"hi".to_vec()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    let e = err(
        &app,
        raw(
            "/v1/agents/results",
            Some(&tok),
            POSTCARD_MIME,
            vec![0; 100 << 10],
        ),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert_eq!(e.code, "payload_too_large");
    // NaN, negative, zero, unknown space, unknown model, another device, bad key:
    // each rejected with its reason (so the agent drops it), nothing stored.
    let fbnet = JobSpec::Arch {
        arch: Arch::from_index(SearchSpace::Fbnet, 0).unwrap(),
        batch: 1,
        resolution: None,
    };
    let mut bad_key = result(&dev, None, nb201(1), 1.0);
    bad_key.idempotency_key = "../etc".into();
    let batch = ResultBatch {
        results: vec![
            result(&dev, None, nb201(1), f64::NAN),
            result(&dev, None, nb201(1), -3.0),
            result(&dev, None, nb201(1), 0.0),
            result(&dev, None, nb201(1), f64::INFINITY),
            result(&dev, None, fbnet, 1.0),
            result(
                &dev,
                None,
                JobSpec::Model {
                    model_id: "model-nope".into(),
                    inputs: vec![],
                },
                1.0,
            ),
            result("dev-other", None, nb201(1), 1.0),
            result(
                &dev,
                None,
                JobSpec::Arch {
                    arch: Arch::from_index(SearchSpace::Nb201, 1).unwrap(),
                    batch: 8,
                    resolution: None,
                },
                1.0,
            ),
            bad_key,
        ],
    };
    let e = err(
        &app,
        postcard_req("/v1/agents/results", Some(&tok), &batch),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(e.code, "invalid_results");
    assert!(e.message.contains("9 results refused"), "{}", e.message);
    assert_eq!(e.rejected.len(), 9);
    let reasons: Vec<&str> = e.rejected.iter().map(|(_, r)| r.as_str()).collect();
    assert!(
        reasons[0].contains("NaN") && reasons[1].contains("-3"),
        "{reasons:?}"
    );
    assert!(
        reasons[4].contains("not served") && reasons[5].contains("unknown model"),
        "{reasons:?}"
    );
    assert!(reasons[6].contains("dev-other"), "{reasons:?}");
    // One bad result refuses the whole batch: the good one beside it is not
    // stored either (the agent resends it alone), so a batch is all or nothing.
    let good = result(&dev, None, nb201(2), 1.5);
    let mixed = ResultBatch {
        results: vec![good.clone(), result(&dev, None, nb201(3), -1.0)],
    };
    let e = err(
        &app,
        raw(
            "/v1/agents/results",
            Some(&tok),
            "application/json",
            serde_json::to_vec(&mixed).unwrap(),
        ),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(e.rejected.len(), 1);
    assert!(e.rejected[0].1.contains("-1"), "{:?}", e.rejected);
    assert_eq!(state.store.count_measurements().await.unwrap(), 0);
    err(
        &app,
        postcard_req("/v1/agents/results", Some("wrong"), &batch),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(state.store.count_measurements().await.unwrap(), 0);
    // Unknown device, arch, route; admin endpoints without the admin token.
    err(&app, get("/v1/devices/dev-nope"), StatusCode::NOT_FOUND).await;
    err(
        &app,
        get("/v1/devices/dev-nope/predict?index=1"),
        StatusCode::NOT_FOUND,
    )
    .await;
    err(
        &app,
        get("/v1/devices/nb201:pixel3/predict?index=99999999"),
        StatusCode::NOT_FOUND,
    )
    .await;
    err(
        &app,
        get("/v1/devices/nb201:pixel3/predict?arch=garbage"),
        StatusCode::BAD_REQUEST,
    )
    .await;
    err(
        &app,
        get("/v1/devices/nb201:pixel3/predict?space=mobilenet&index=1"),
        StatusCode::BAD_REQUEST,
    )
    .await;
    err(&app, get("/no/such/route"), StatusCode::NOT_FOUND).await;
    let jobs = Request::post(format!("/v1/devices/{dev}/jobs"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {tok}"))
        .body(Body::from("{\"random\": 3}"))
        .unwrap();
    err(&app, jobs, StatusCode::UNAUTHORIZED).await;
    let upload = Request::post(format!("/v1/models?name=m&devices={dev}"))
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .body(Body::from("not onnx"))
        .unwrap();
    err(&app, upload, StatusCode::UNPROCESSABLE_ENTITY).await;
    err(&app, get("/v1/models/model-nope"), StatusCode::UNAUTHORIZED).await;
    // Still serving.
    let Reply {
        status: s, body, ..
    } = call(&app, get("/healthz")).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(state.store.models().await.unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_models_reach_agents_and_results_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let (app, state) = app(dir.path()).await;
    let reg = register(&app).await;
    let (dev, tok) = (reg.device_id.clone(), reg.device_token.clone());
    // A minimal ModelProto (the host checks its structure, not its ops):
    // ir_version 8, a graph with one node and one output, opset 17.
    let graph = [
        vec![0x0a, 0x06, 0x22, 0x04],
        b"Relu".to_vec(),
        vec![0x62, 0x03, 0x0a, 0x01, b'y'],
    ]
    .concat();
    let onnx = [
        vec![0x08, 0x08, 0x3a, graph.len() as u8],
        graph,
        vec![0x42, 0x02, 0x10, 0x11],
    ]
    .concat();
    let upload = Request::post(format!(
        "/v1/models?name=tiny&devices={dev}&inputs=input:1x3x8x8"
    ))
    .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
    .header(header::CONTENT_TYPE, "application/octet-stream")
    .body(Body::from(onnx.clone()))
    .unwrap();
    let up: serde_json::Value = ok(&app, upload).await;
    let model_id = up["model_id"].as_str().unwrap().to_string();
    // The model job comes after the 20 sample jobs.
    let mut model_lease = None;
    for _ in 0..3 {
        let p: PlanResponse = ok(
            &app,
            postcard_req(
                "/v1/agents/plan",
                Some(&tok),
                &PlanRequest {
                    device_id: dev.clone(),
                    max_jobs: 16,
                },
            ),
        )
        .await;
        model_lease = model_lease.or_else(|| {
            p.leases
                .into_iter()
                .find(|l| matches!(l.job, JobSpec::Model { .. }))
        });
    }
    let lease = model_lease.unwrap();
    assert_eq!(
        lease.job,
        JobSpec::Model {
            model_id: model_id.clone(),
            inputs: vec!["input:1x3x8x8".into()]
        }
    );
    let bytes = Request::get(format!("/v1/models/{model_id}"))
        .header(header::AUTHORIZATION, format!("Bearer {tok}"))
        .body(Body::empty())
        .unwrap();
    let Reply {
        status: s,
        body: got,
        ..
    } = call(&app, bytes).await;
    assert_eq!((s, got), (StatusCode::OK, onnx));
    let batch = ResultBatch {
        results: vec![result(&dev, Some(lease.lease_id), lease.job, 12.5)],
    };
    let ack: ResultAck = ok(&app, postcard_req("/v1/agents/results", Some(&tok), &batch)).await;
    assert_eq!(ack.acked.len(), 1);
    let res: serde_json::Value = ok(&app, get(&format!("/v1/models/{model_id}/results"))).await;
    assert_eq!(res["results"][0]["device_id"], dev.as_str());
    assert_eq!(res["results"][0]["median_ms"], 12.5);
    let doc: serde_json::Value = ok(&app, get("/v1/openapi.json")).await;
    conforms(&doc, "get", "/v1/models/{id}/results", &res);
    let models: serde_json::Value = ok(&app, get("/v1/models")).await;
    assert_eq!(models.as_array().unwrap().len(), 1);
    conforms(&doc, "get", "/v1/models", &models);
    assert_eq!(state.store.models().await.unwrap().len(), 1);
}

/// The router serves exactly the route table: each (method, path) of the
/// table reaches its handler (neither the fallback's "no route" nor a 405),
/// and a method the table does not list on one of its paths is a 405.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_serves_the_route_table() {
    let dir = tempfile::tempdir().unwrap();
    let (app, state) = app(dir.path()).await;
    let table = nasflat_host::service::api::routes(&state.config);
    assert_eq!(table.len(), 25);
    for r in &table {
        let path = r.path.replace("{id}", "nope").replace("{key}", "nope");
        let method = r.method.key().to_ascii_uppercase();
        let req = Request::builder()
            .method(method.as_str())
            .uri(&path)
            .body(Body::empty())
            .unwrap();
        let Reply {
            status,
            body: bytes,
            ..
        } = call(&app, req).await;
        let text = String::from_utf8_lossy(&bytes);
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(!text.contains("no route for"), "{method} {path}: {text}");
    }
    for (method, path) in [("GET", "/v1/agents/plan"), ("POST", "/v1/leases")] {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let Reply { status, .. } = call(&app, req).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
    }
    err(&app, get("/v1/nothing"), StatusCode::NOT_FOUND).await;
}

/// Library errors reach the API with the status of their kind and our
/// `{code, message}` body: an architecture the library cannot parse is a
/// 400, a row outside the table a 404, a batch over the limit a 422, a
/// device without a predictor a 409; a sampler the operator configured
/// that cannot plan for a new device is the service's 500, not the
/// client's 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_kinds_reach_the_api_with_their_status() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app(dir.path()).await;
    let dev = register(&app).await.device_id;
    let predict = |q: &str| get(&format!("/v1/devices/{dev}/predict?{q}"));
    let cases = [
        (
            predict("arch=%7Cconv_9x9~0%7C"),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "conv_9x9",
        ),
        (
            predict("space=nb999&index=1"),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "nb999",
        ),
        (
            predict("index=20000"),
            StatusCode::NOT_FOUND,
            "not_found",
            "index 20000",
        ),
        (
            predict("index=1"),
            StatusCode::CONFLICT,
            "conflict",
            "no nb201 predictor yet",
        ),
        (
            get("/v1/devices/dev-none/predict?index=1"),
            StatusCode::NOT_FOUND,
            "not_found",
            "no device `dev-none`",
        ),
    ];
    for (req, status, code, message) in cases {
        let e = err(&app, req, status).await;
        assert_eq!(e.code, code, "{}", e.message);
        assert!(e.message.contains(message), "{}", e.message);
    }
    let dir = tempfile::tempdir().unwrap();
    let (oracle, _) = app_configured(dir.path(), |c| {
        c.sampler = nasflat_predictor::sampler::Sampler::Oracle;
    })
    .await;
    let req = postcard_req(
        "/v1/agents/register",
        Some(ENROL),
        &RegisterRequest {
            protocol_version: PROTOCOL_VERSION,
            name: "board".into(),
            device_id: None,
            fingerprint: Fingerprint::simulated("test cpu", 2),
        },
    );
    let e = err(&oracle, req, StatusCode::INTERNAL_SERVER_ERROR).await;
    assert_eq!(e.code, "misconfigured", "{}", e.message);
    assert!(e.message.contains("unknown device"), "{}", e.message);
}

fn json_post(path: &str, token: Option<&str>, body: serde_json::Value) -> Request<Body> {
    raw(
        path,
        token,
        "application/json",
        serde_json::to_vec(&body).unwrap(),
    )
}

/// CIFAR-100 test accuracy of every NB201 row (`-inf` where missing).
fn cifar100() -> Vec<f64> {
    let table = nasflat_shared::data::nb201_accuracy().unwrap();
    table
        .column("cifar100_test")
        .unwrap()
        .iter()
        .map(|v| v.unwrap_or(f64::NEG_INFINITY))
        .collect()
}

/// The most accurate row whose `bound(row)` is within `budget`.
fn best_within(acc: &[f64], bound: impl Fn(usize) -> f64, budget: f64) -> usize {
    (0..acc.len())
        .filter(|&r| bound(r) <= budget && acc[r].is_finite())
        .max_by(|&a, &b| {
            acc[a]
                .total_cmp(&acc[b])
                .then(bound(b).total_cmp(&bound(a)))
        })
        .unwrap()
}

/// Leases `n` jobs of `dev` (one plan call) and returns them.
async fn lease(app: &Router, dev: &str, tok: &str, n: u32) -> Vec<Lease> {
    let plan = PlanRequest {
        device_id: dev.into(),
        max_jobs: n,
    };
    let p: PlanResponse = ok(app, postcard_req("/v1/agents/plan", Some(tok), &plan)).await;
    p.leases
}

/// Measures `dev`'s 20 plan samples at pixel2's latencies (so its next
/// leases are a search's)
/// and stores pixel2's true latencies as its served predictions, with 20
/// residuals from -0.05 to 0.14 (risk 0.1: quantile 0.13); returns them.
async fn serve_pixel2(app: &Router, state: &AppState, dev: &str, tok: &str) -> Vec<f64> {
    let k = state.spaces.served(SearchSpace::Nb201).unwrap().clone();
    let column = k.data.latency.position("pixel2").unwrap();
    let truth: Vec<f64> = (0..k.data.rows())
        .map(|r| k.data.latency(column, r).unwrap_or(1e9))
        .collect();
    // Plan samples report pixel2's true latency: a search's probes must
    // beat the best of them within the budget, as on a real board.
    let mut samples = lease(app, dev, tok, 16).await;
    samples.extend(lease(app, dev, tok, 16).await);
    let batch = results_of(dev, &samples, |i| match &samples[i].job {
        JobSpec::Arch { arch, .. } => truth[arch.index().unwrap()],
        other => panic!("{other:?}"),
    });
    let _: ResultAck = ok(app, postcard_req("/v1/agents/results", Some(tok), &batch)).await;
    let residuals: Vec<f64> = (0..20).map(|i| f64::from(i - 5) / 100.0).collect();
    let predictions = NewPredictions {
        device_id: dev,
        space: SearchSpace::Nb201,
        version: "v-test",
        transfer_id: "tr-test",
        base_version: "base",
        init_from: None,
        train_rows: &[1, 2],
        latencies: &truth,
        choice: None,
    };
    state.store.put_predictions(&predictions).await.unwrap();
    state
        .store
        .put_residuals(dev, SearchSpace::Nb201, "v-test", &residuals)
        .await
        .unwrap();
    truth
}

/// A search on an agent device ranks with its served predictions and the
/// residual bound of its transfer (here: pixel2's true latencies stored as
/// the device's predictions, residuals chosen), queues the top candidates
/// for its agent, and `GET /v1/searches/{id}` shows what the agent measured
/// and the best candidate that really met the budget. Every bad request
/// is a 4xx with our body and queues nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_ranks_verifies_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let (app, state) = app(dir.path()).await;
    let reg = register(&app).await;
    let (dev, tok) = (reg.device_id.clone(), reg.device_token.clone());
    let search = |body: serde_json::Value| {
        json_post(&format!("/v1/devices/{dev}/search"), Some(ADMIN), body)
    };
    // Before a transfer: 409; unknown device: 404; no admin token: 401.
    let e = err(
        &app,
        search(serde_json::json!({"max_latency_ms": 14.0})),
        StatusCode::CONFLICT,
    )
    .await;
    assert!(
        e.message.contains("no finished nb201 transfer"),
        "{}",
        e.message
    );
    let body = serde_json::json!({"max_latency_ms": 14.0});
    err(
        &app,
        json_post("/v1/devices/dev-none/search", Some(ADMIN), body.clone()),
        StatusCode::NOT_FOUND,
    )
    .await;
    err(
        &app,
        json_post(&format!("/v1/devices/{dev}/search"), None, body),
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // The 20 plan samples are measured first, so the next leases are the search's.
    let truth = serve_pixel2(&app, &state, &dev, &tok).await;
    let k = state.spaces.served(SearchSpace::Nb201).unwrap().clone();
    let column = k.data.latency.position("pixel2").unwrap();

    let jobs_before = state.store.jobs_of_device(&dev).await.unwrap().len();
    let bad = [
        (
            serde_json::json!({"max_latency_ms": 0.0}),
            "invalid",
            "latency constraint",
        ),
        (
            serde_json::json!({"max_latency_ms": -3.0}),
            "invalid",
            "latency constraint",
        ),
        (
            serde_json::json!({"max_latency_ms": 0.01}),
            "infeasible",
            "0.01",
        ),
        (
            serde_json::json!({"max_latency_ms": 14.0, "objective": "flops"}),
            "invalid",
            "flops",
        ),
        (
            serde_json::json!({"max_latency_ms": 14.0, "objective": "banana"}),
            "invalid",
            "banana",
        ),
        (
            serde_json::json!({"max_latency_ms": 14.0, "risk": 1.5}),
            "invalid",
            "1.5",
        ),
        (
            serde_json::json!({"max_latency_ms": 14.0, "verify": 11}),
            "invalid",
            "verify 11",
        ),
    ];
    for (body, code, needle) in bad {
        let e = err(&app, search(body.clone()), StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(e.code, code, "{body}: {}", e.message);
        assert!(
            e.message.to_lowercase().contains(needle),
            "{body}: {}",
            e.message
        );
    }
    assert_eq!(
        state.store.jobs_of_device(&dev).await.unwrap().len(),
        jobs_before
    );

    // The answer: the most accurate row whose bound is within 14 ms.
    let Reply {
        status,
        body: bytes,
        ..
    } = call(
        &app,
        search(serde_json::json!({"max_latency_ms": 14.0, "risk": 0.1, "verify": 2})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    // n = 20 residuals, risk 0.1: the 19th smallest, 0.13.
    let q = v["residual_quantile"].as_f64().unwrap();
    assert!((q - 0.13).abs() < 1e-12, "{q}");
    let acc = cifar100();
    let want = best_within(&acc, |r| truth[r] * q.exp(), 14.0);
    assert_eq!(v["chosen"]["index"], want);
    assert_eq!(v["objective"], "cifar100");
    assert_eq!(v["source"], "transfer");
    let candidates = v["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 10);
    for w in candidates.windows(2) {
        assert!(w[0]["objective"].as_f64() >= w[1]["objective"].as_f64());
    }
    for c in candidates {
        let (p, u) = (
            c["predicted_ms"].as_f64().unwrap(),
            c["upper_ms"].as_f64().unwrap(),
        );
        assert!(u <= 14.0 && (u - p * q.exp()).abs() < 1e-9, "{c}");
    }
    assert_eq!(v["verify_queued"], 2);
    assert!(candidates[2]["job_id"].is_null());

    // The agent gets the two candidates, in rank order, and measures them:
    // the chosen one over the budget, the runner-up within it.
    let leases = lease(&app, &dev, &tok, 16).await;
    let rows: Vec<usize> = leases
        .iter()
        .map(|l| match &l.job {
            JobSpec::Arch { arch, .. } => arch.index().unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    let top2: Vec<usize> = candidates[..2]
        .iter()
        .map(|c| c["index"].as_u64().unwrap() as usize)
        .collect();
    assert_eq!(rows, top2);
    let id = v["id"].as_str().unwrap().to_string();
    let pending: serde_json::Value = ok(&app, get(&format!("/v1/searches/{id}"))).await;
    assert_eq!(pending["verify_measured"], 0);
    assert_eq!(pending["candidates"][0]["job_state"], "leased");
    assert!(pending["best_within_budget"].is_null());
    let batch = ResultBatch {
        results: leases
            .iter()
            .zip([15.5, 12.25])
            .map(|(l, ms)| result(&dev, Some(l.lease_id.clone()), l.job.clone(), ms))
            .collect(),
    };
    let _: ResultAck = ok(&app, postcard_req("/v1/agents/results", Some(&tok), &batch)).await;
    let done: serde_json::Value = ok(&app, get(&format!("/v1/searches/{id}"))).await;
    assert_eq!(done["verify_measured"], 2);
    assert_eq!(done["candidates"][0]["measured_ms"], 15.5);
    assert_eq!(done["candidates"][0]["within_budget"], false);
    assert_eq!(done["candidates"][1]["within_budget"], true);
    assert_eq!(done["candidates"][0]["job_state"], "done");
    assert_eq!(done["best_within_budget"]["rank"], 1);
    assert_eq!(done["best_within_budget"]["measured_ms"], 12.25);
    let doc: serde_json::Value = ok(&app, get("/v1/openapi.json")).await;
    conforms(&doc, "get", "/v1/searches/{id}", &done);
    err(&app, get("/v1/searches/search-none"), StatusCode::NOT_FOUND).await;

    // The device page is the search view: the newest search with its
    // budget line, its choice and bound, and both verified measurements.
    let page = |q: &str| get(&format!("/dashboard/devices/{dev}{q}"));
    let Reply {
        status, body: html, ..
    } = call(&app, page("")).await;
    let html = String::from_utf8(html).unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("name=\"budget_ms\""), "no budget form");
    assert!(
        html.contains("class=\"budget\"") && html.contains("budget 14.0 ms"),
        "no budget line"
    );
    assert!(html.contains("class=\"bound\"") && html.contains("class=\"chosen\""));
    assert_eq!(
        html.matches("class=\"verified\"").count(),
        2,
        "verified markers"
    );
    assert!(html.contains("measured 12.250 ms"), "first within budget");
    let chosen_arch = done["chosen"]["arch"].as_str().unwrap();
    assert!(html.contains(chosen_arch), "chosen arch not shown");
    // A budget from the form: a fresh search, not stored, nothing verified.
    let Reply { body: html, .. } = call(&app, page("?budget_ms=20&risk=0.2")).await;
    let html = String::from_utf8(html).unwrap();
    assert!(html.contains("budget 20.0 ms") && !html.contains("class=\"verified\""));
    let Reply {
        status, body: html, ..
    } = call(&app, page("?budget_ms=0.01")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        String::from_utf8(html)
            .unwrap()
            .contains("id=\"search-error\"")
    );
    let fresh: serde_json::Value = ok(&app, get(&format!("/v1/searches/{id}"))).await;
    assert_eq!(
        fresh, done,
        "the page's searches are not stored over the API's"
    );

    // A built-in device is answered from its table: exactly the oracle.
    let builtin = |body| json_post("/v1/devices/nb201:pixel2/search", Some(ADMIN), body);
    let Reply {
        status,
        body: bytes,
        ..
    } = call(&app, builtin(serde_json::json!({"max_latency_ms": 14.0}))).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let t: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let oracle = best_within(
        &acc,
        |r| k.data.latency(column, r).unwrap_or(f64::INFINITY),
        14.0,
    );
    assert_eq!(
        (t["source"].as_str(), t["chosen"]["index"].as_u64()),
        (Some("table"), Some(oracle as u64))
    );
    assert_eq!(t["residual_quantile"], 0.0);
    let e = err(
        &app,
        builtin(serde_json::json!({"max_latency_ms": 14.0, "verify": 1})),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(e.message.contains("built-in"), "{}", e.message);
}

/// `probe: n` queues, beside the verified candidates, n architectures
/// beyond the bound (listed after the ranked ones, `beyond_bound`), chosen
/// because they may beat the answer: each is more accurate than the chosen
/// one. Once a probe measures within the budget it is the answer to
/// deploy (`best_within_budget`), over a verified candidate; a probe over
/// the budget is not. Probes on a built-in device or above 10 are refused.
#[tokio::test]
async fn search_probes_beyond_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (app, state) = app(dir.path()).await;
    let reg = register(&app).await;
    let (dev, tok) = (reg.device_id.clone(), reg.device_token.clone());
    serve_pixel2(&app, &state, &dev, &tok).await;
    let search = |body: serde_json::Value| {
        json_post(&format!("/v1/devices/{dev}/search"), Some(ADMIN), body)
    };
    let e = err(
        &app,
        search(serde_json::json!({"max_latency_ms": 14.0, "probe": 11})),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(e.message.contains("probe 11"), "{}", e.message);
    let builtin = json_post(
        "/v1/devices/nb201:pixel2/search",
        Some(ADMIN),
        serde_json::json!({"max_latency_ms": 14.0, "probe": 1}),
    );
    let e = err(&app, builtin, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(e.message.contains("built-in"), "{}", e.message);

    let v: serde_json::Value = {
        let Reply { status, body, .. } = call(
            &app,
            search(serde_json::json!({"max_latency_ms": 14.0, "verify": 1, "probe": 2})),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).unwrap()
    };
    let candidates = v["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 12, "10 ranked + 2 probes");
    let chosen = v["chosen"]["objective"].as_f64().unwrap();
    for (i, c) in candidates.iter().enumerate() {
        let probe = i >= 10;
        assert_eq!(c["beyond_bound"], probe, "{c}");
        assert_eq!(c["job_id"].is_null(), i != 0 && !probe, "{c}");
        if probe {
            assert!(c["upper_ms"].as_f64().unwrap() > 14.0, "{c}");
            assert!(c["objective"].as_f64().unwrap() > chosen, "{c}");
        }
    }
    assert_eq!(v["verify_queued"], 3);

    // The agent measures the chosen one within the budget, the first probe
    // within it too and the second over it.
    let leases = lease(&app, &dev, &tok, 16).await;
    assert_eq!(leases.len(), 3);
    let index_of = |l: &Lease| match &l.job {
        JobSpec::Arch { arch, .. } => arch.index().unwrap(),
        other => panic!("{other:?}"),
    };
    let row = |i: usize| candidates[i]["index"].as_u64().unwrap() as usize;
    let ms_of = |r: usize| {
        if r == row(0) || r == row(10) {
            13.5
        } else {
            14.5
        }
    };
    let batch = ResultBatch {
        results: leases
            .iter()
            .map(|l| {
                result(
                    &dev,
                    Some(l.lease_id.clone()),
                    l.job.clone(),
                    ms_of(index_of(l)),
                )
            })
            .collect(),
    };
    let _: ResultAck = ok(&app, postcard_req("/v1/agents/results", Some(&tok), &batch)).await;
    let id = v["id"].as_str().unwrap();
    let done: serde_json::Value = ok(&app, get(&format!("/v1/searches/{id}"))).await;
    assert_eq!(done["verify_measured"], 3);
    assert_eq!(done["best_within_budget"]["index"], row(10));
    assert_eq!(done["best_within_budget"]["beyond_bound"], true);
    assert_eq!(done["candidates"][11]["within_budget"], false);
    let doc: serde_json::Value = ok(&app, get("/v1/openapi.json")).await;
    conforms(&doc, "get", "/v1/searches/{id}", &done);

    // Searched again, nothing measured is probed again, and a probe must now
    // beat the first probe, measured within the budget.
    let again: serde_json::Value = ok(
        &app,
        search(serde_json::json!({"max_latency_ms": 14.0, "probe": 2})),
    )
    .await;
    let bar = candidates[10]["objective"].as_f64().unwrap();
    let probes: Vec<&serde_json::Value> = again["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["beyond_bound"] == true)
        .collect();
    assert_eq!(probes.len(), 2, "{again}");
    for p in probes {
        let index = p["index"].as_u64().unwrap() as usize;
        assert!(
            ![row(0), row(10), row(11)].contains(&index),
            "{p} measured already"
        );
        assert!(
            p["objective"].as_f64().unwrap() > bar,
            "{p} does not beat {bar}"
        );
    }
}

fn fingerprint_with(runtime: Option<RuntimeIdentity>) -> Fingerprint {
    Fingerprint {
        runtime,
        ..Fingerprint::simulated("test cpu", 2)
    }
}

fn ort_1_32() -> RuntimeIdentity {
    RuntimeIdentity {
        kind: RuntimeKind::Ort,
        version: "1.32.0".into(),
        threads: 1,
    }
}

/// One board, two runtimes: two devices, each showing its runtime; a
/// re-attach with another runtime is refused (409) so no device's samples
/// mix runtimes.
#[tokio::test]
async fn a_second_runtime_is_a_second_device() {
    let dir = tempfile::tempdir().unwrap();
    let (app, state) = app(dir.path()).await;
    let register_as =
        |device_id: Option<String>, runtime: Option<RuntimeIdentity>| RegisterRequest {
            protocol_version: PROTOCOL_VERSION,
            name: "board".into(),
            device_id,
            fingerprint: fingerprint_with(runtime),
        };
    let ort: RegisterResponse = ok(
        &app,
        postcard_req(
            "/v1/agents/register",
            Some(ENROL),
            &register_as(None, Some(ort_1_32())),
        ),
    )
    .await;
    // The same device re-attaching with tract (an old agent: no runtime field).
    let e = err(
        &app,
        postcard_req(
            "/v1/agents/register",
            Some(&ort.device_token),
            &register_as(Some(ort.device_id.clone()), None),
        ),
        StatusCode::CONFLICT,
    )
    .await;
    assert!(
        e.message.contains("ort 1.32.0") && e.message.contains("tract simulated"),
        "{}",
        e.message
    );
    // Re-attaching with the same runtime still works.
    let again: RegisterResponse = ok(
        &app,
        postcard_req(
            "/v1/agents/register",
            Some(&ort.device_token),
            &register_as(Some(ort.device_id.clone()), Some(ort_1_32())),
        ),
    )
    .await;
    assert_eq!(again.device_id, ort.device_id);
    let tract: RegisterResponse = ok(
        &app,
        postcard_req("/v1/agents/register", Some(ENROL), &register_as(None, None)),
    )
    .await;
    assert_ne!(tract.device_id, ort.device_id);
    assert_eq!(state.store.devices().await.unwrap().len(), 2);

    let list: serde_json::Value = ok(&app, get("/v1/devices?kind=agent")).await;
    let runtime_of = |id: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == id)
            .map(|d| d["runtime"].clone())
            .unwrap()
    };
    assert_eq!(runtime_of(&ort.device_id)["kind"], "ort");
    assert_eq!(runtime_of(&ort.device_id)["version"], "1.32.0");
    assert_eq!(runtime_of(&tract.device_id)["kind"], "tract");
    let detail: serde_json::Value = ok(&app, get(&format!("/v1/devices/{}", ort.device_id))).await;
    assert_eq!(detail["runtime"]["kind"], "ort");
    let Reply {
        status: s,
        body: page,
        ..
    } = call(&app, get("/")).await;
    assert_eq!(s, StatusCode::OK);
    let page = String::from_utf8_lossy(&page);
    assert!(
        page.contains("<td>ort 1.32.0, 1 thread</td>"),
        "the fleet lists the runtime"
    );
    assert!(
        page.contains("<td>tract simulated, 1 thread</td>"),
        "{page}"
    );
    let Reply {
        status: s,
        body: page,
        ..
    } = call(&app, get(&format!("/dashboard/devices/{}", ort.device_id))).await;
    assert_eq!(s, StatusCode::OK);
    assert!(String::from_utf8_lossy(&page).contains("runtime <b>ort 1.32.0, 1 thread</b>"));
}

/// A release marked permanent (the device's runtime cannot load the model)
/// fails the job at once with the reason; it is not leased again.
#[tokio::test]
async fn a_permanent_release_fails_the_job_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (app, state) = app(dir.path()).await;
    let reg = register(&app).await;
    let (dev, tok) = (reg.device_id, reg.device_token);
    let plan = PlanRequest {
        device_id: dev.clone(),
        max_jobs: 2,
    };
    let granted: PlanResponse = ok(&app, postcard_req("/v1/agents/plan", Some(&tok), &plan)).await;
    assert_eq!(granted.leases.len(), 2);
    let (failed, kept) = (&granted.leases[0], &granted.leases[1]);
    let release = |lease: &str, permanent: bool| ReleaseRequest {
        device_id: dev.clone(),
        lease_ids: vec![lease.to_string()],
        reason: "onnxruntime cannot load `model`: unknown op".into(),
        permanent,
    };
    for (lease, permanent) in [(failed, true), (kept, false)] {
        let Reply { status: s, .. } = call(
            &app,
            postcard_req(
                "/v1/agents/release",
                Some(&tok),
                &release(&lease.lease_id, permanent),
            ),
        )
        .await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
    let jobs = state.store.jobs_of_device(&dev).await.unwrap();
    let failed_jobs: Vec<_> = jobs
        .iter()
        .filter(|j| j.state == nasflat_host::service::domain::JobState::Failed)
        .collect();
    assert_eq!(
        failed_jobs.len(),
        1,
        "only the permanent release fails its job"
    );
    assert!(
        failed_jobs[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("onnxruntime cannot load")),
        "{:?}",
        failed_jobs[0].last_error
    );
    // The kept job comes back; the failed one never does.
    let all = PlanRequest {
        device_id: dev.clone(),
        max_jobs: 16,
    };
    let again: PlanResponse = ok(&app, postcard_req("/v1/agents/plan", Some(&tok), &all)).await;
    assert!(again.leases.iter().any(|l| l.job == kept.job));
    assert!(again.leases.iter().all(|l| l.job != failed.job));
}

/// A predictor stored before risk bounds existed (no residuals for its
/// version) cannot bound a search: the dashboard's preview says how to fix
/// it and starts nothing; a `POST` search answers 409 naming the transfer
/// it started to recompute them, and once that transfer is done the same
/// search is answered with a bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_predictor_without_residuals_gets_its_transfer_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let (app, state) = app(dir.path()).await;
    let reg = register(&app).await;
    let (dev, tok) = (reg.device_id.clone(), reg.device_token.clone());
    let mut samples = lease(&app, &dev, &tok, 16).await;
    samples.extend(lease(&app, &dev, &tok, 16).await);
    let batch = results_of(&dev, &samples, |i| 5.0 + i as f64);
    let _: ResultAck = ok(&app, postcard_req("/v1/agents/results", Some(&tok), &batch)).await;
    let rows = state.spaces.served(SearchSpace::Nb201).unwrap().data.rows();
    state
        .store
        .put_predictions(&NewPredictions {
            device_id: &dev,
            space: SearchSpace::Nb201,
            version: "v-before-0002",
            transfer_id: "tr-old",
            base_version: "base",
            init_from: None,
            train_rows: &[1, 2],
            latencies: &vec![10.0; rows],
            choice: None,
        })
        .await
        .unwrap();

    let Reply {
        status, body: html, ..
    } = call(&app, get(&format!("/dashboard/devices/{dev}?budget_ms=14"))).await;
    let html = String::from_utf8(html).unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("before risk bounds") && html.contains("/transfer"),
        "{html}"
    );
    assert!(
        state.store.transfers(&dev).await.unwrap().is_empty(),
        "a preview started a transfer"
    );

    let search = || {
        json_post(
            &format!("/v1/devices/{dev}/search"),
            Some(ADMIN),
            // The samples' latencies (5-36 ms) are unrelated to the
            // architectures, so the re-fit's bound is wide: a generous budget
            // keeps the check on the residuals, not on feasibility.
            serde_json::json!({"max_latency_ms": 1000.0}),
        )
    };
    let e = err(&app, search(), StatusCode::CONFLICT).await;
    assert!(
        e.message.contains("v-before-0002") && e.message.contains("no leave-one-out residuals"),
        "{}",
        e.message
    );
    let id = e
        .message
        .split("transfer `")
        .nth(1)
        .and_then(|s| s.split('`').next())
        .unwrap()
        .to_string();
    let started = state.store.transfers(&dev).await.unwrap();
    assert_eq!(started.len(), 1);
    assert_eq!(
        (started[0].id.as_str(), started[0].trigger),
        (id.as_str(), Trigger::Manual)
    );

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let t = state.store.transfer(&id).await.unwrap().unwrap();
        match t.state {
            TransferState::Done => break,
            TransferState::Failed => panic!("re-run transfer failed: {}", t.message),
            _ if std::time::Instant::now() > deadline => panic!("transfer still {:?}", t.state),
            _ => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
    let Reply {
        status,
        body: bytes,
        ..
    } = call(&app, search()).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert!(v["residual_quantile"].as_f64().unwrap().is_finite());
    assert_ne!(v["predictor_version"], "v-before-0002");

    // The re-fit's choices (served blend rule, its weight, the stack's
    // rules) are in the device's predictor quality, typed in the schema.
    let detail: serde_json::Value = ok(&app, get(&format!("/v1/devices/{dev}"))).await;
    let choice = &detail["predictors"][0]["quality"]["choice"];
    assert_eq!(choice["blend_rule"], "fixed", "{detail}");
    assert_eq!(
        choice["blend_weight"],
        nasflat_predictor::blend::SERVED_BLEND,
        "{choice}"
    );
    assert!(choice["blend_loo_mse"].is_null(), "{choice}");
    assert_eq!(choice["stack"]["one_se"], true, "{choice}");
    assert_eq!(choice["stack"]["anchor"], "average", "{choice}");
    let w = choice["stack"]["additive_weight"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&w), "{choice}");
    let doc: serde_json::Value = ok(&app, get("/v1/openapi.json")).await;
    conforms(&doc, "get", "/v1/devices/{id}", &detail);
}

/// A sample JSON as the agent writes it, with its settle verdict and what
/// disturbed the machine.
fn sample_json_settled(settled: bool, kinds: &[&str]) -> String {
    serde_json::json!({
        "timing": {
            "estimate": {"clock": "thread_cpu", "verdict": {"settled": settled, "label_ms": 2.0}},
            "disturbance": {"kinds": kinds, "load_before": [3.1, 2.0, 1.0], "load_after": [3.4, 2.0, 1.0]}
        },
        "provenance": {"machine": {"cores": 2}}
    })
    .to_string()
}

/// A sample whose label did not settle is stored for the record, never used
/// for a transfer, and its job is measured again until it settles or its
/// attempts are used up; the API and the dashboard count such samples. A
/// result of an agent from before the settle rule (no flag) is used as
/// before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsettled_sample_is_requeued_and_never_transferred() {
    use nasflat_host::service::domain::JobState;
    use nasflat_host::service::transfer::{SampleSet, samples_of};
    let dir = tempfile::tempdir().unwrap();
    let (app, state) = app_configured(dir.path(), |c| c.max_attempts = 3).await;
    let reg = register(&app).await;
    let (dev, tok) = (reg.device_id, reg.device_token);
    let leases = lease(&app, &dev, &tok, 3).await;
    let (busy, old, quiet) = (&leases[0], &leases[1], &leases[2]);
    // The agent marks it valid: the host must read the flag itself.
    let mut unsettled = result(&dev, Some(busy.lease_id.clone()), busy.job.clone(), 9.0);
    unsettled.sample_json = sample_json_settled(false, &["preempted", "loaded"]);
    let from_old_agent = result(&dev, Some(old.lease_id.clone()), old.job.clone(), 3.0);
    let mut settled = result(&dev, Some(quiet.lease_id.clone()), quiet.job.clone(), 2.0);
    settled.sample_json = sample_json_settled(true, &[]);
    let batch = ResultBatch {
        results: vec![unsettled, from_old_agent, settled],
    };
    let ack: ResultAck = ok(&app, postcard_req("/v1/agents/results", Some(&tok), &batch)).await;
    assert_eq!(ack.acked.len(), 3);

    let job_of = |jobs: &[nasflat_host::service::store::jobs::JobRow], spec: &JobSpec| {
        jobs.iter()
            .find(|j| nasflat_host::service::api::agents::job_spec(j).is_ok_and(|s| &s == spec))
            .cloned()
            .unwrap()
    };
    let jobs = state.store.jobs_of_device(&dev).await.unwrap();
    let requeued = job_of(&jobs, &busy.job);
    assert_eq!(requeued.state, JobState::Queued, "{requeued:?}");
    assert!(
        requeued
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("did not settle")),
        "{requeued:?}"
    );
    assert_eq!(job_of(&jobs, &old.job).state, JobState::Done);
    assert_eq!(job_of(&jobs, &quiet.job).state, JobState::Done);

    // Stored with its flag, left out of every transfer's samples.
    let rows = state.store.measurements_of_device(&dev).await.unwrap();
    let flags: Vec<Option<bool>> = rows.iter().map(|r| r.settled).collect();
    assert_eq!(flags.iter().filter(|f| **f == Some(false)).count(), 1);
    assert_eq!(flags.iter().filter(|f| f.is_none()).count(), 1, "old agent");
    for set in [SampleSet::Plan, SampleSet::All] {
        let samples = samples_of(&rows, SearchSpace::Nb201, set);
        assert_eq!(samples.len(), 2, "{set:?}");
        assert!(
            samples.iter().all(|s| s.ms < 9.0),
            "the unsettled 9 ms was used"
        );
    }

    // The API and the dashboard count it.
    let list: serde_json::Value = ok(&app, get("/v1/devices?kind=agent")).await;
    let mine = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == dev.as_str())
        .unwrap();
    assert_eq!(mine["unsettled"], 1, "{mine}");
    let detail: serde_json::Value = ok(&app, get(&format!("/v1/devices/{dev}"))).await;
    assert_eq!(detail["unsettled"], 1);
    let Reply {
        status: s,
        body: page,
        ..
    } = call(&app, get(&format!("/dashboard/devices/{dev}"))).await;
    assert_eq!(s, StatusCode::OK);
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains("1 of 3 samples did not settle"), "{page}");

    // Measured again while attempts remain; failed, saying why, after.
    for attempt in 2..=3 {
        let again = lease(&app, &dev, &tok, 16).await;
        let l = again
            .iter()
            .find(|l| l.job == busy.job)
            .unwrap_or_else(|| panic!("attempt {attempt}: the job did not come back"));
        let mut r = result(&dev, Some(l.lease_id.clone()), l.job.clone(), 9.0);
        r.sample_json = sample_json_settled(false, &["canary_changed"]);
        let batch = ResultBatch { results: vec![r] };
        let _: ResultAck = ok(&app, postcard_req("/v1/agents/results", Some(&tok), &batch)).await;
    }
    let jobs = state.store.jobs_of_device(&dev).await.unwrap();
    let given_up = job_of(&jobs, &busy.job);
    assert_eq!(given_up.state, JobState::Failed, "{given_up:?}");
    assert!(
        given_up
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("no sample settled")),
        "{given_up:?}"
    );
    let detail: serde_json::Value = ok(&app, get(&format!("/v1/devices/{dev}"))).await;
    assert_eq!(detail["unsettled"], 3);
}
