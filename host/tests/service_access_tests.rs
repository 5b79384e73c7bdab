//! Who may read and fetch what (issue 17, items 5, 6 and 16), in-process:
//! every route the table does not mark public refuses a request without its
//! token before the handler reads the body; the viewer token reads but
//! cannot write; the dashboard logs a browser in with `?token=` or is
//! public with `--public-dashboard`; a user model reaches only the devices
//! it was given to, streamed, and only ONNX models are taken.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{ADMIN, ENROL, Reply, VIEWER, app, call, err, register, register_named};
use nasflat_host::service::api::models::MAX_MODEL_DEVICES;
use nasflat_host::service::api::routes;
use nasflat_host::service::openapi::{Auth, Method};

fn request(method: &str, path: &str, token: Option<&str>, body: Vec<u8>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    b.body(Body::from(body)).unwrap()
}

/// The table's path with each `{param}` filled in.
fn concrete(path: &str, device: &str) -> String {
    path.replace("{id}", device).replace("{key}", "key-1")
}

/// Every route the table does not mark public refuses a request without a
/// token, and one with the enrolment token or another kind's token, with
/// a JSON 401; only health and the API document are public. The viewer
/// token reads every viewer route and is refused by every route that
/// changes something.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_non_public_route_needs_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let (app, state) = app(dir.path(), "access", |_| {}).await;
    let dev = register(&app).await;
    let table = routes(&state.config);
    let public: Vec<&str> = table
        .iter()
        .filter(|r| r.auth == Auth::Public)
        .map(|r| r.path)
        .collect();
    assert_eq!(public, ["/v1/openapi.json", "/healthz"]);
    for r in &table {
        let method = match r.method {
            Method::Get => "GET",
            Method::Post => "POST",
        };
        let path = concrete(r.path, &dev.device_id);
        let wrong: &[Option<&str>] = match r.auth {
            Auth::Public => continue,
            Auth::Viewer | Auth::Dashboard => &[None, Some(ENROL), Some(&dev.device_token)],
            Auth::Admin => &[None, Some(ENROL), Some(VIEWER), Some(&dev.device_token)],
            Auth::Device => &[None, Some(ENROL), Some(VIEWER), Some(ADMIN)],
            Auth::DeviceOrAdmin => &[None, Some(ENROL), Some(VIEWER)],
            Auth::EnrolmentOrDevice => &[None, Some(VIEWER), Some(ADMIN)],
        };
        for token in wrong {
            let e = err(
                &app,
                request(method, &path, *token, Vec::new()),
                StatusCode::UNAUTHORIZED,
            )
            .await;
            assert_eq!(e.code, "unauthorized", "{method} {path} {token:?}");
        }
        if matches!(r.auth, Auth::Viewer | Auth::Dashboard) && r.method == Method::Get {
            let Reply { status, body, .. } =
                call(&app, request(method, &path, Some(VIEWER), Vec::new())).await;
            assert!(
                status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                "{method} {path}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    let Reply { status, .. } =
        call(&app, request("GET", "/v1/devices", Some(ADMIN), Vec::new())).await;
    assert_eq!(status, StatusCode::OK, "the admin token reads too");
    let Reply { status, .. } = call(&app, request("GET", "/healthz", None, Vec::new())).await;
    assert_eq!(status, StatusCode::OK);
}

/// `?token=` on a dashboard page sets an HttpOnly cookie and redirects to
/// the page without the token; the cookie then opens every dashboard page
/// and API read. A wrong token is a 401. With `--public-dashboard` the
/// pages open without a token, the JSON API still needs one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_logs_in_with_its_url_or_is_public_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let (router, _) = app(dir.path(), "access", |_| {}).await;
    let dev = register(&router).await;
    let page = format!("/dashboard/devices/{}", dev.device_id);
    let Reply {
        status, headers, ..
    } = call(
        &router,
        request(
            "GET",
            &format!("{page}?budget_ms=3&token={VIEWER}&risk=0.2"),
            None,
            vec![],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        headers[header::LOCATION].to_str().unwrap(),
        format!("{page}?budget_ms=3&risk=0.2")
    );
    let cookie = headers[header::SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        cookie.starts_with(&format!("nasflat_viewer={VIEWER};")),
        "{cookie}"
    );
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let with_cookie = |path: &str| {
        Request::get(path)
            .header(header::COOKIE, format!("other=1; nasflat_viewer={VIEWER}"))
            .body(Body::empty())
            .unwrap()
    };
    for path in ["/", page.as_str(), "/v1/devices"] {
        let Reply { status, .. } = call(&router, with_cookie(path)).await;
        assert_eq!(status, StatusCode::OK, "{path} with the cookie");
    }
    err(
        &router,
        request("GET", "/?token=not-the-token", None, vec![]),
        StatusCode::UNAUTHORIZED,
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let (public, _) = app(dir.path(), "access", |c| c.public_dashboard = true).await;
    let Reply { status, body, .. } = call(&public, request("GET", "/", None, vec![])).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    err(
        &public,
        request("GET", "/v1/devices", None, vec![]),
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

/// A 17 MB registration without a token, or with a wrong one, is refused
/// with 401 before its body is read (it was a 413: the body was read
/// first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_checks_the_token_before_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app(dir.path(), "access", |_| {}).await;
    for token in [None, Some("wrong-token-123")] {
        let big = vec![0u8; 17 << 20];
        let e = err(
            &app,
            request("POST", "/v1/agents/register", token, big),
            StatusCode::UNAUTHORIZED,
        )
        .await;
        assert_eq!(e.code, "unauthorized");
    }
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn field(number: u64, body: &[u8], out: &mut Vec<u8>) {
    varint(number << 3 | 2, out);
    varint(body.len() as u64, out);
    out.extend_from_slice(body);
}

/// A protobuf ModelProto of `size` bytes or a little more: ir_version 8,
/// opset 17, a graph with one node, an initializer of filler and an output.
fn onnx_model(size: usize) -> Vec<u8> {
    let mut node = Vec::new();
    field(4, b"Relu", &mut node);
    let mut graph = Vec::new();
    field(1, &node, &mut graph);
    field(5, &vec![7u8; size], &mut graph);
    let mut output = Vec::new();
    field(1, b"y", &mut output);
    field(12, &output, &mut graph);
    let mut model = vec![0x08];
    varint(8, &mut model);
    field(7, &graph, &mut model);
    field(8, &[0x10, 17], &mut model);
    model
}

fn upload(devices: &str, body: Vec<u8>) -> Request<Body> {
    request(
        "POST",
        &format!("/v1/models?name=m&devices={devices}"),
        Some(ADMIN),
        body,
    )
}

/// A model goes to the devices it was uploaded for: the admin and those
/// devices download it (the bytes round-trip across chunks), another
/// device gets 404. Uploads that are not ONNX (text, a truncated model),
/// over `--max-model-mb`, or naming too many devices are refused and leave
/// nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_downloads_are_scoped_and_uploads_must_be_onnx() {
    let dir = tempfile::tempdir().unwrap();
    let (app, state) = app(dir.path(), "access", |c| c.max_model_bytes = 4 << 20).await;
    let a = register_named(&app, "a").await;
    let b = register_named(&app, "b").await;
    let model = onnx_model((2 << 20) + 12_345);
    let Reply { status, body, .. } = call(&app, upload(&a.device_id, model.clone())).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let up: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let id = up["model_id"].as_str().unwrap().to_string();
    for token in [ADMIN, a.device_token.as_str()] {
        let Reply {
            status,
            headers,
            body: bytes,
        } = call(
            &app,
            request("GET", &format!("/v1/models/{id}"), Some(token), vec![]),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers[header::CONTENT_LENGTH],
            model.len().to_string().as_str()
        );
        assert!(bytes == model, "the downloaded bytes differ");
    }
    err(
        &app,
        request(
            "GET",
            &format!("/v1/models/{id}"),
            Some(&b.device_token),
            vec![],
        ),
        StatusCode::NOT_FOUND,
    )
    .await;

    let before = state.store.models().await.unwrap().len();
    let mut truncated = model.clone();
    truncated.truncate(model.len() - 3);
    let not_onnx = b"\x08not a model, only text that starts like one".to_vec();
    for bad in [not_onnx, truncated] {
        let e = err(
            &app,
            upload(&a.device_id, bad),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert!(e.message.contains("not an ONNX model"), "{}", e.message);
    }
    err(
        &app,
        upload(&a.device_id, onnx_model(5 << 20)),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    let many = vec![a.device_id.as_str(); MAX_MODEL_DEVICES + 1].join(",");
    let e = err(&app, upload(&many, model), StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(e.message.contains("at most 256 devices"), "{}", e.message);
    assert_eq!(state.store.models().await.unwrap().len(), before);
    let chunks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM model_chunks")
        .fetch_one(state.store.pool())
        .await
        .unwrap();
    assert_eq!(chunks, 3, "only the stored model's chunks remain");
}
