//! The document against the route table, its references, and real serde
//! bodies validated against its schemas with a JSON Schema validator. (That
//! the router serves exactly the table is tested through the app in
//! `tests/service_api_tests.rs`.)
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use super::*;

/// The document of the service's route table.
fn service_document() -> Value {
    document(&crate::service::api::routes(&config()))
}

fn config() -> crate::service::config::ServiceConfig {
    crate::service::config::ServiceConfig::new("sqlite::memory:".into(), "unused".into())
}

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

/// Each (method, path) of the table is in the document once, with the
/// table's auth; the document has nothing else.
#[test]
fn every_route_is_documented() {
    let table = crate::service::api::routes(&config());
    let documented: BTreeSet<(&str, &str)> =
        table.iter().map(|r| (r.method.key(), r.path)).collect();
    assert_eq!(
        documented.len(),
        table.len(),
        "a (method, path) is listed twice"
    );
    assert_eq!(table.len(), 25);
    let doc = document(&table);
    let mut in_doc = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            in_doc += 1;
            let r = table
                .iter()
                .find(|r| r.method.key() == method && r.path == path)
                .unwrap_or_else(|| panic!("{method} {path} is not in the table"));
            let public = r.auth == Auth::Public;
            assert_eq!(op["security"] == json!([]), public, "{method} {path}");
        }
    }
    assert_eq!(in_doc, table.len());
}

/// Request bodies: required unless optional, typed JSON + postcard for
/// wire bodies, octet-stream for the ONNX upload; the upload's query
/// parameters come from its `Query` type.
#[test]
fn bodies_and_queries_are_documented() {
    let table = crate::service::api::routes(&config());
    let doc = document(&table);
    let mut with_body = 0;
    for r in &table {
        let op = &doc["paths"][r.path][r.method.key()];
        let body = &op["requestBody"];
        assert_eq!(
            body.is_object(),
            !matches!(r.request, Body::Empty),
            "{}",
            r.path
        );
        let queries = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query");
        assert_eq!(queries.count() > 0, r.query.is_some(), "{}", r.path);
        let c = match r.request {
            Body::Empty => continue,
            Body::OptionalWire(_) => {
                assert_eq!(body["required"], false, "{}", r.path);
                body["content"].as_object().unwrap()
            }
            _ => {
                assert_eq!(body["required"], true, "{}", r.path);
                body["content"].as_object().unwrap()
            }
        };
        with_body += 1;
        if let Body::Raw(mime) = r.request {
            assert!(c.contains_key(mime), "{}", r.path);
        } else {
            assert!(
                c["application/json"]["schema"]["$ref"].is_string(),
                "{}: {c:?}",
                r.path
            );
            assert!(c.contains_key(POSTCARD_MIME), "{}", r.path);
        }
    }
    assert_eq!(with_body, 10);
    let upload = &doc["paths"]["/v1/models"]["post"]["parameters"];
    let names: Vec<(&str, bool)> = upload
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["required"] == true))
        .collect();
    assert_eq!(
        names,
        [("devices", true), ("inputs", false), ("name", true)]
    );
    assert_eq!(upload[1]["schema"]["type"], "string");
}

/// Every `$ref` points into `components.schemas` and resolves there,
/// every schema there is used, and success bodies are typed.
#[test]
fn every_ref_resolves() {
    let doc = service_document();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 40, "{}", all.len());
    let mut used = BTreeSet::new();
    for r in &all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("`{r}` is not a components.schemas reference"));
        assert!(schemas.contains_key(name), "`{r}` does not resolve");
        used.insert(name.to_string());
    }
    let defined: BTreeSet<String> = schemas.keys().cloned().collect();
    assert_eq!(used, defined);
    for name in [
        "RegisterRequest",
        "PlanResponse",
        "JobSpec",
        "Arch",
        "Nb201Arch",
        "DeviceDetail",
        "ErrorBody",
    ] {
        assert!(defined.contains(name), "{name} missing: {defined:?}");
    }
    let plan = &doc["paths"]["/v1/agents/plan"]["post"]["responses"]["200"]["content"];
    assert_eq!(
        plan["application/json"]["schema"]["$ref"],
        "#/components/schemas/PlanResponse"
    );
    let metrics = &doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"];
    assert_eq!(metrics, &json!({"text/plain; version=0.0.4": {}}));
    let release = &doc["paths"]["/v1/agents/release"]["post"]["responses"];
    assert!(release["204"].is_object() && release["204"].get("content").is_none());
}

/// A validator for the schema of `pointer` (a JSON pointer into the
/// document), resolving its `$ref`s against the document's components.
fn validator(doc: &Value, pointer: &str) -> jsonschema::Validator {
    let mut root = doc
        .pointer(pointer)
        .unwrap_or_else(|| panic!("no schema at {pointer}"))
        .clone();
    root["components"] = doc["components"].clone();
    jsonschema::draft202012::new(&root).unwrap_or_else(|e| panic!("{pointer}: {e}"))
}

/// JSON pointer of a route's body schema (`~1` escapes `/`).
fn body_at(method: &str, path: &str, at: &str) -> String {
    format!(
        "/paths/{}/{method}/{at}/content/application~1json/schema",
        path.replace('~', "~0").replace('/', "~1")
    )
}

fn assert_valid(doc: &Value, pointer: &str, value: &impl serde::Serialize) {
    let v = validator(doc, pointer);
    let json = serde_json::to_value(value).unwrap();
    let errors: Vec<String> = v.iter_errors(&json).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{pointer}: {errors:?}\n{json:#}");
}

fn assert_invalid(doc: &Value, pointer: &str, json: &Value) {
    assert!(
        !validator(doc, pointer).is_valid(json),
        "{pointer} accepts {json:#}"
    );
}

/// Real bodies of the agent protocol, as serde writes them, validate
/// against the document; near misses (an architecture in postcard's id form
/// or with a bad op, a missing field, a 3-tuple) do not.
#[test]
fn protocol_bodies_validate() {
    use nasflat_shared::protocol::*;
    use nasflat_shared::{Arch, SearchSpace};

    let doc = service_document();
    let arch = |space, i| JobSpec::Arch {
        arch: Arch::from_index(space, i).unwrap(),
        batch: 1,
        resolution: None,
    };
    let model = JobSpec::Model {
        model_id: "model-1".into(),
        inputs: vec!["input:1x3x8x8".into()],
    };
    let register = RegisterRequest {
        protocol_version: PROTOCOL_VERSION,
        name: "board".into(),
        device_id: None,
        fingerprint: Fingerprint {
            cpu_model: Some("Cortex-A72".into()),
            cores: 4,
            target: "aarch64-unknown-linux-musl".into(),
            kernel: None,
            mem_total_kb: Some(4_000_000),
            agent_version: "0.1.0".into(),
            tract_version: "0.23.9".into(),
            runtime: Some(RuntimeIdentity {
                kind: RuntimeKind::Ort,
                version: "1.32.0".into(),
                threads: 1,
            }),
        },
    };
    let at = |m, p| body_at(m, p, "requestBody");
    let ok = |m, p| body_at(m, p, "responses/200");
    assert_valid(&doc, &at("post", "/v1/agents/register"), &register);
    let plan = PlanResponse {
        leases: [
            arch(SearchSpace::Nb201, 7),
            arch(SearchSpace::Fbnet, 3),
            model.clone(),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, job)| Lease {
            lease_id: format!("lease-{i}"),
            job,
            limits: JobLimits::default(),
            expires_in_secs: 60,
        })
        .collect(),
        retry_after_secs: 5,
    };
    assert_valid(&doc, &ok("post", "/v1/agents/plan"), &plan);
    let batch = ResultBatch {
        results: plan
            .leases
            .iter()
            .map(|l| MeasurementResult {
                idempotency_key: format!("key-{}", l.lease_id),
                device_id: "dev-1".into(),
                lease_id: Some(l.lease_id.clone()),
                job: l.job.clone(),
                median_ms: 9.5,
                valid: true,
                invalid_reasons: vec![],
                sample_json: "{}".into(),
            })
            .collect(),
    };
    let results = at("post", "/v1/agents/results");
    assert_valid(&doc, &results, &batch);
    let ack = ResultAck {
        acked: vec!["key-lease-0".into()],
        rejected: vec![("key-x".into(), "median_ms NaN".into())],
    };
    assert_valid(&doc, &ok("post", "/v1/agents/results"), &ack);
    let error = "/paths/~1v1~1agents~1results/post/responses/4XX/content/application~1json/schema";
    assert_valid(
        &doc,
        error,
        &ErrorBody {
            code: "invalid_results".into(),
            message: "1 result refused".into(),
            rejected: vec![("key-x".into(), "unknown model".into())],
        },
    );

    // Near misses.
    let mut json = serde_json::to_value(&batch).unwrap();
    json["results"][0]["job"]["Arch"]["arch"]["nb201"] = json!([0, 1, 2, 3, 4, 0]);
    assert_invalid(&doc, &results, &json);
    json["results"][0]["job"]["Arch"]["arch"]["nb201"] =
        json!("|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|");
    assert_invalid(&doc, &results, &json);
    let mut json = serde_json::to_value(&batch).unwrap();
    json["results"][1]["job"]["Arch"]["arch"]["fbnet"] = json!("0_0_0");
    assert_invalid(&doc, &results, &json);
    let mut json = serde_json::to_value(&register).unwrap();
    json.as_object_mut().unwrap().remove("fingerprint");
    assert_invalid(&doc, &at("post", "/v1/agents/register"), &json);
    assert_invalid(
        &doc,
        error,
        &json!({"code": "c", "message": "m", "rejected": [["k", "r", "extra"]]}),
    );
}

/// The service's own bodies (devices, predictions, transfer jobs, health)
/// validate against the document.
#[test]
fn service_bodies_validate() {
    use crate::service::api::devices::*;
    use crate::service::api::ops::{Health, HealthStatus};
    use crate::service::api::predict::*;
    use crate::service::domain::{JobState, Purpose, Subject, TransferState, Trigger};
    use crate::service::knowledge::{ModelReport, ModelState};
    use crate::service::store::jobs::{JobRow, QueueCounts};
    use crate::service::store::measurements::MeasurementRow;
    use crate::service::store::transfers::TransferRow;
    use nasflat_shared::SearchSpace;

    let doc = service_document();
    let at = |m, p| body_at(m, p, "requestBody");
    let ok = |m, p| body_at(m, p, "responses/200");
    let transfer = TransferRow {
        id: "tr-1".into(),
        device_id: "dev-1".into(),
        space: SearchSpace::Nb201,
        state: TransferState::Running,
        progress: 0.5,
        message: "fine-tuning".into(),
        samples: 20,
        trigger: Trigger::Auto,
        created_ms: 1,
        finished_ms: None,
    };
    let job = JobRow {
        id: "job-1".into(),
        device_id: "dev-1".into(),
        purpose: Purpose::Sample,
        subject: Subject::Arch {
            space: SearchSpace::Nb201,
            arch_index: 12,
        },
        inputs_json: "[]".into(),
        state: JobState::Leased,
        lease_id: Some("lease-1".into()),
        lease_expires_ms: Some(2),
        attempts: 1,
        last_error: None,
        created_ms: 1,
    };
    let detail = DeviceDetail {
        id: "dev-1".into(),
        name: "board".into(),
        kind: "agent".into(),
        runtime: Some(nasflat_shared::protocol::RuntimeIdentity {
            kind: nasflat_shared::protocol::RuntimeKind::Ort,
            version: "1.32.0".into(),
            threads: 1,
        }),
        fingerprint: json!({"cores": 4}),
        latest_provenance: None,
        created_ms: Some(1),
        last_seen_ms: Some(2),
        samples: vec![MeasurementRow {
            key: "k".into(),
            device_id: "dev-1".into(),
            job_id: Some("job-0".into()),
            purpose: Purpose::Sample,
            subject: Subject::Arch {
                space: SearchSpace::Nb201,
                arch_index: 3,
            },
            median_ms: 4.5,
            valid: true,
            invalid_reasons: vec![],
            settled: Some(true),
            received_ms: 3,
        }],
        unsettled: 0,
        queue: QueueCounts::default(),
        open_jobs: vec![job.clone()],
        transfers: vec![transfer.clone()],
        predictors: vec![PredictorView {
            space: SearchSpace::Nb201,
            version: "nb201-abc-dev-1".into(),
            base_version: "nb201-abc".into(),
            init_from: Some("pixel3".into()),
            created_ms: 4,
            quality: Quality {
                fit_spearman: Some(0.9),
                fit_samples: 20,
                ..Quality::default()
            },
        }],
    };
    assert_valid(&doc, &ok("get", "/v1/devices/{id}"), &detail);
    assert_valid(&doc, &ok("get", "/v1/transfers/{id}"), &transfer);
    // The subject flattens into the row: clients read `arch_index` there.
    let json = serde_json::to_value(&detail.samples[0]).unwrap();
    assert_eq!(
        (&json["kind"], &json["arch_index"]),
        (&json!("arch"), &json!(3))
    );
    assert_eq!(json["purpose"], "sample");
    assert_valid(
        &doc,
        &ok("get", "/v1/leases"),
        &LeaseQueue {
            counts: QueueCounts::default(),
            open: vec![job],
        },
    );
    let predict = PredictRequest {
        space: Some(SearchSpace::Nb201),
        archs: vec![],
        indices: vec![1, 2],
        all: false,
    };
    assert_valid(&doc, &at("post", "/v1/devices/{id}/predict"), &predict);
    // Every field has a default: `{}` is a valid (if useless) request.
    assert_valid(&doc, &at("post", "/v1/devices/{id}/predict"), &json!({}));
    let answer = PredictResponse {
        device_id: "nb201:pixel3".into(),
        space: SearchSpace::Nb201,
        predictor_version: "nb201-table".into(),
        source: "table".into(),
        elapsed_us: 12,
        predictions: vec![Prediction {
            index: 1,
            arch: "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|".into(),
            latency_ms: None,
        }],
    };
    assert_valid(&doc, &ok("post", "/v1/devices/{id}/predict"), &answer);
    assert_valid(&doc, &ok("get", "/v1/devices/{id}/predict"), &answer);
    assert_invalid(
        &doc,
        &ok("get", "/v1/devices/{id}/predict"),
        &json!({"device_id": "d", "space": "nb201"}),
    );
    let health = Health {
        status: HealthStatus::Ok,
        database: "ok".into(),
        backend: "sqlite",
        journal_mode: Some("wal".into()),
        spaces: [(
            "nb201".to_string(),
            ModelReport {
                state: ModelState::Pretraining,
                progress: Some((3, 60)),
                version: None,
                from_cache: None,
                error: None,
            },
        )]
        .into(),
        version: "0.1.0",
    };
    assert_valid(&doc, &ok("get", "/healthz"), &health);
    assert_valid(&doc, &body_at("get", "/healthz", "responses/503"), &health);
}

/// A search's request and answer validate; a request without its budget
/// or with a negative `verify` does not.
#[test]
fn search_bodies_validate() {
    use crate::service::search::{CandidateView, SearchRequest, SearchView};
    use crate::service::store::searches::SearchSource;

    let doc = service_document();
    let request = body_at("post", "/v1/devices/{id}/search", "requestBody");
    let answer = body_at("post", "/v1/devices/{id}/search", "responses/201");
    let req = SearchRequest {
        space: Some(nasflat_shared::SearchSpace::Nb201),
        max_latency_ms: 14.0,
        objective: Some("cifar100".into()),
        risk: Some(0.1),
        verify: 2,
        probe: 1,
    };
    assert_valid(&doc, &request, &req);
    assert_valid(&doc, &request, &json!({"max_latency_ms": 3.5}));
    assert_invalid(&doc, &request, &json!({"objective": "cifar10"}));
    assert_invalid(
        &doc,
        &request,
        &json!({"max_latency_ms": 3.5, "verify": -1}),
    );
    assert_invalid(
        &doc,
        &request,
        &json!({"max_latency_ms": 3.5, "probe": "some"}),
    );
    let chosen = CandidateView {
        rank: 0,
        index: 123,
        arch: "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|".into(),
        predicted_ms: 11.0,
        upper_ms: 12.5,
        objective: 70.1,
        job_id: Some("job-1".into()),
        job_state: Some(crate::service::domain::JobState::Done),
        measured_ms: Some(11.4),
        within_budget: Some(true),
        beyond_bound: false,
    };
    let probe = CandidateView {
        rank: 1,
        index: 456,
        upper_ms: 14.6,
        objective: 71.0,
        job_id: Some("job-2".into()),
        measured_ms: Some(13.9),
        beyond_bound: true,
        ..chosen.clone()
    };
    let view = SearchView {
        id: "search-1".into(),
        device_id: "dev-1".into(),
        space: nasflat_shared::SearchSpace::Nb201,
        objective: "cifar100".into(),
        objective_is_accuracy: true,
        max_latency_ms: 14.0,
        risk: 0.1,
        predictor_version: "v".into(),
        source: SearchSource::Transfer,
        residual_quantile: 0.13,
        created_ms: 1,
        chosen: chosen.clone(),
        candidates: vec![chosen.clone(), probe.clone()],
        verify_queued: 2,
        verify_measured: 2,
        best_within_budget: Some(probe),
    };
    assert_valid(&doc, &answer, &view);
    assert_valid(
        &doc,
        &body_at("get", "/v1/searches/{id}", "responses/200"),
        &view,
    );
    let mut wrong = serde_json::to_value(&view).unwrap();
    wrong["source"] = json!("guess");
    assert_invalid(&doc, &answer, &wrong);
}
