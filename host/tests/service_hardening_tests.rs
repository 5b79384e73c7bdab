//! A hostile client against the service, in-process: invented methods and
//! paths do not grow `/metrics`, request lists are capped, physically
//! impossible latencies are refused; over a socket, stalled clients are
//! disconnected and cannot starve `/healthz`.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{
    ENROL, Reply, app, call, config, err, get, nb201, ok, postcard_req, register, result,
};
use nasflat_host::service::api::agents::{MAX_BATCH, MAX_REASONS};
use nasflat_host::service::build_state;
use nasflat_shared::SearchSpace;
use nasflat_shared::protocol::{
    Fingerprint, JobSpec, PlanRequest, PlanResponse, ReleaseRequest, ResultAck, ResultBatch,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn metrics_text(app: &Router) -> String {
    let Reply { status, body, .. } = call(app, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    String::from_utf8(body).unwrap()
}

/// 200 requests with invented methods and paths leave `/metrics` as small
/// as one such request does: they all count under `method="other"` and
/// `route="unmatched"`, and no invented name becomes a label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_methods_and_paths_do_not_grow_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app(dir.path(), "hard", |_| {}).await;
    let invented = |i: usize| {
        let method = format!("M{i}{}", "X".repeat(1000));
        let path = format!("/invented/{i}/{}", "p".repeat(1000));
        Request::builder()
            .method(method.as_str())
            .uri(path)
            .body(Body::empty())
            .unwrap()
    };
    call(&app, invented(0)).await;
    let after_one = metrics_text(&app).await.len();
    for i in 1..200 {
        call(&app, invented(i)).await;
        call(
            &app,
            Request::get(format!("/nope/{i}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    }
    let text = metrics_text(&app).await;
    assert!(!text.contains("XXXX") && !text.contains("/invented/") && !text.contains("/nope/"));
    assert!(
        text.contains("method=\"other\",route=\"unmatched\""),
        "{text}"
    );
    assert!(
        text.contains("method=\"GET\",route=\"unmatched\""),
        "{text}"
    );
    // Only the counts' digits and the GET bucket (plus /metrics itself) may grow.
    assert!(
        text.len() < after_one + 4096,
        "{} -> {}",
        after_one,
        text.len()
    );
}

/// A release of more than `MAX_BATCH` lease ids is refused with 422 and
/// releases nothing; a full batch mixing real, unknown and repeated ids
/// releases exactly the device's leases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_is_capped_and_releases_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (app, state) = app(dir.path(), "hard", |_| {}).await;
    let reg = register(&app).await;
    let (dev, tok) = (reg.device_id, reg.device_token);
    let plan = PlanRequest {
        device_id: dev.clone(),
        max_jobs: 16,
    };
    let granted: PlanResponse = ok(&app, postcard_req("/v1/agents/plan", Some(&tok), &plan)).await;
    let real: Vec<String> = granted.leases.iter().map(|l| l.lease_id.clone()).collect();
    assert_eq!(real.len(), 16);
    let release = |ids: Vec<String>| ReleaseRequest {
        device_id: dev.clone(),
        lease_ids: ids,
        reason: "test".into(),
        permanent: false,
    };
    let mut too_many: Vec<String> = (0..MAX_BATCH).map(|i| format!("lease-{i}")).collect();
    too_many.push(real[0].clone());
    let e = err(
        &app,
        postcard_req("/v1/agents/release", Some(&tok), &release(too_many)),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        e.message.contains("at most 256 leases per release"),
        "{}",
        e.message
    );
    assert_eq!(
        state.store.queue_counts(Some(&dev)).await.unwrap().leased,
        16
    );
    let mut batch: Vec<String> = real[..5].to_vec();
    batch.extend(real[..2].iter().cloned());
    batch.extend((batch.len()..MAX_BATCH).map(|i| format!("lease-{i}")));
    assert_eq!(batch.len(), MAX_BATCH);
    let Reply { status, .. } = call(
        &app,
        postcard_req("/v1/agents/release", Some(&tok), &release(batch)),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let c = state.store.queue_counts(Some(&dev)).await.unwrap();
    assert_eq!((c.leased, c.queued), (11, 9));
}

/// Latencies no network can have (1e300, 1e-300, the smallest subnormal)
/// are refused like NaN: 422 naming the bound, nothing stored. Values at
/// the bounds are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_latencies_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (app, state) = app(dir.path(), "hard", |_| {}).await;
    let reg = register(&app).await;
    let (dev, tok) = (reg.device_id, reg.device_token);
    for (i, ms) in [1e300, 1e-300, 5e-324, 3.7e6, 9e-7].into_iter().enumerate() {
        let batch = ResultBatch {
            results: vec![result(&dev, &format!("bad-{i}"), nb201(i), ms)],
        };
        let e = err(
            &app,
            postcard_req("/v1/agents/results", Some(&tok), &batch),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(e.code, "invalid_results");
        assert!(
            e.message.contains("physically possible"),
            "{ms}: {}",
            e.message
        );
    }
    assert_eq!(state.store.count_measurements().await.unwrap(), 0);
    let batch = ResultBatch {
        results: vec![
            result(&dev, "low", nb201(1), 1e-6),
            result(&dev, "high", nb201(2), 3.6e6),
        ],
    };
    let Reply {
        status,
        body: bytes,
        ..
    } = call(&app, postcard_req("/v1/agents/results", Some(&tok), &batch)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let ack: ResultAck = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(ack.acked.len(), 2);
}

/// Every list inside a result is capped: too many invalid reasons or model
/// input overrides make the result invalid (422), nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_inside_results_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let (app, state) = app(dir.path(), "hard", |_| {}).await;
    let reg = register(&app).await;
    let (dev, tok) = (reg.device_id, reg.device_token);
    let mut r = result(&dev, "reasons", nb201(1), 5.0);
    r.valid = false;
    r.invalid_reasons = vec!["noisy".into(); MAX_REASONS + 1];
    let mut m = result(&dev, "inputs", nb201(2), 5.0);
    m.job = JobSpec::Model {
        model_id: "model-x".into(),
        inputs: vec!["x:1".into(); 10_000],
    };
    for (r, want) in [(r, "invalid_reasons"), (m, "input overrides")] {
        let batch = ResultBatch { results: vec![r] };
        let e = err(
            &app,
            postcard_req("/v1/agents/results", Some(&tok), &batch),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert!(e.message.contains(want), "{}", e.message);
    }
    assert_eq!(state.store.count_measurements().await.unwrap(), 0);
}

/// The service on a loopback socket with short connection limits.
async fn serve_limited(dir: &std::path::Path) -> std::net::SocketAddr {
    let mut c = config(dir, "hard");
    c.header_timeout = Duration::from_secs(1);
    c.request_timeout = Duration::from_secs(2);
    c.max_connections = 2;
    let state = build_state(c).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(nasflat_host::service::serve(
        state,
        listener,
        std::future::pending(),
    ));
    addr
}

/// A connection that has sent `head` and then stalls.
async fn stalled(addr: std::net::SocketAddr, head: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

/// Everything the server sends until it closes the connection, or `None`
/// if it keeps it open past `within`.
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> Option<String> {
    let mut buf = Vec::new();
    tokio::time::timeout(within, s.read_to_end(&mut buf))
        .await
        .ok()
        .map(|_| String::from_utf8_lossy(&buf).into_owned())
}

/// What the server sends until `needle` appears, it closes, or `within` passes.
async fn read_until(s: &mut TcpStream, needle: &str, within: Duration) -> String {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&buf).contains(needle) {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// A client that sends half its headers is disconnected after the header
/// timeout; one that sends its head but stalls its body gets a 503 after
/// the request timeout; with both connection slots held by stalled
/// clients, `/healthz` waits for a slot (no more than the header timeout
/// and a little) and is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_are_cut_off_and_do_not_starve_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve_limited(dir.path()).await;
    let half = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
    let mut a = stalled(addr, half).await;
    let mut b = stalled(addr, half).await;
    let started = Instant::now();
    let mut health = stalled(
        addr,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let answer = read_until_closed(&mut health, Duration::from_secs(10)).await;
    let waited = started.elapsed();
    let answer = answer.expect("/healthz starved behind stalled clients");
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    assert!(
        waited >= Duration::from_millis(500),
        "no connection limit: {waited:?}"
    );
    assert!(
        read_until_closed(&mut a, Duration::from_secs(3))
            .await
            .is_some()
    );
    assert!(
        read_until_closed(&mut b, Duration::from_secs(3))
            .await
            .is_some()
    );
    let mut slow_body = stalled(
        addr,
        &format!(
            "POST /v1/agents/register HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ENROL}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"dev"
        ),
    )
    .await;
    let answer = read_until(&mut slow_body, "request timeout", Duration::from_secs(6)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("request timeout"), "{answer}");
}

/// A dashboard page as the viewer: (status, body).
async fn dashboard(app: &Router, path: &str) -> (StatusCode, String) {
    let Reply { status, body, .. } = call(app, get(path)).await;
    (status, String::from_utf8(body).unwrap())
}

/// The `<tr class="device">` rows of a home page.
fn device_rows(page: &str) -> Vec<&str> {
    page.split("<tr class=\"device\">")
        .skip(1)
        .map(|r| &r[..r.find("</tr>").unwrap()])
        .collect()
}

/// Item 8: the home page lists one page of devices (50 by default) with
/// links to the others, and each listed device's counts (samples, queued /
/// leased / done jobs) are its own, counted by the database; bad page
/// arguments are a JSON 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_home_page_is_paginated_with_each_devices_counts() {
    use nasflat_host::service::domain::{Purpose, Subject};
    use nasflat_host::service::store::jobs::NewJob;
    use nasflat_host::service::store::measurements::NewMeasurement;
    let dir = tempfile::tempdir().unwrap();
    let (app, state) = app(dir.path(), "hard", |_| {}).await;
    let store = &state.store;
    let fingerprint = serde_json::to_string(&Fingerprint::simulated("test cpu", 2)).unwrap();
    let measurement = |key: String, lease: Option<String>, index: usize| NewMeasurement {
        key,
        lease_id: lease,
        subject: Subject::Arch {
            space: SearchSpace::Nb201,
            arch_index: index,
        },
        median_ms: 5.0,
        valid: true,
        invalid_reasons: vec![],
        sample_json: "{}".into(),
        settled: None,
    };
    // Device i: 2 jobs measured (done), i % 5 queued, i % 4 ad-hoc samples.
    let expected = |i: usize| (2 + i % 4, usize::from(i % 4 >= 2), i % 5, 2);
    let mut queued_total = 0;
    for i in 0..120 {
        let id = format!("dev-page-{i:03}");
        store
            .insert_device(
                &id,
                &format!("board {i}"),
                &format!("hash-{i}"),
                &fingerprint,
            )
            .await
            .unwrap();
        let jobs: Vec<NewJob> = (0..2 + i % 5)
            .map(|j| NewJob::Arch {
                space: SearchSpace::Nb201,
                index: i * 10 + j,
            })
            .collect();
        store
            .insert_jobs(&id, Purpose::Sample, &jobs)
            .await
            .unwrap();
        let granted = store.claim_jobs(&id, 2, 600_000, None).await.unwrap();
        let mut batch: Vec<NewMeasurement> = granted
            .iter()
            .map(|g| {
                let Subject::Arch { arch_index, .. } = g.job.subject else {
                    panic!("arch jobs only")
                };
                measurement(g.lease_id.clone(), Some(g.lease_id.clone()), arch_index)
            })
            .collect();
        batch.extend((0..i % 4).map(|k| measurement(format!("adhoc-{k}"), None, 5000 + k)));
        // The second ad-hoc sample of a device did not settle.
        for m in batch.iter_mut().filter(|m| m.key == "adhoc-1") {
            m.settled = Some(false);
        }
        store.store_measurements(&id, &batch).await.unwrap();
        queued_total += i % 5;
    }
    let check = |page: &str, first: usize, count: usize| {
        let rows = device_rows(page);
        assert_eq!(rows.len(), count, "devices listed");
        for (n, row) in rows.iter().enumerate() {
            let i = first + n;
            let (samples, unsettled, queued, done) = expected(i);
            assert!(
                row.contains(&format!(">dev-page-{i:03}</a></td><td>board {i}</td>")),
                "row {n} should be device {i}: {row}"
            );
            assert!(
                row.contains(&format!(
                    "<td>{samples}</td><td class=\"unsettled\">{unsettled}</td><td>{queued}/0/{done}</td>"
                )),
                "device {i}: {samples} samples ({unsettled} unsettled), {queued}/0/{done} jobs: {row}"
            );
        }
    };
    let (status, first) = dashboard(&app, "/").await;
    assert_eq!(status, StatusCode::OK);
    check(&first, 0, 50);
    assert!(first.contains("devices 1&#8211;50 of 120, page 1 of 3"));
    assert!(first.contains("href=\"/?page=2\">next"));
    assert!(first.contains("href=\"/?page=3\">last"));
    assert!(
        !first.contains("rel=\"prev\""),
        "no previous page on page 1"
    );
    assert!(first.contains(&format!(
        "<p>{queued_total} queued, 0 leased, 0 expired (back in the queue), 240 done, 0 failed</p>"
    )));
    let (_, last) = dashboard(&app, "/?page=3").await;
    check(&last, 100, 20);
    assert!(last.contains("devices 101&#8211;120 of 120, page 3 of 3"));
    assert!(last.contains("href=\"/?page=2\">&lsaquo; previous"));
    assert!(
        !last.contains("rel=\"next\""),
        "no next page on the last page"
    );
    let (_, wide) = dashboard(&app, "/?page=2&per_page=70").await;
    check(&wide, 70, 50);
    assert!(wide.contains("href=\"/?page=1&amp;per_page=70\""));
    let (status, past) = dashboard(&app, "/?page=9").await;
    assert_eq!(status, StatusCode::OK);
    assert!(device_rows(&past).is_empty() && past.contains("no devices on this page"));
    for bad in ["/?page=0", "/?per_page=0", "/?per_page=501", "/?page=x"] {
        let e = err(&app, get(bad), StatusCode::BAD_REQUEST).await;
        assert!(
            e.message.contains("page"),
            "{bad}: the error names the argument: {}",
            e.message
        );
    }
}

/// A fleet connecting in the same second: the kernel queues 1,200 pending
/// connections for the host (listen backlog 4,096) while it accepts none,
/// so none of them waits out a SYN retransmission. With
/// `tokio::net::TcpListener::bind` instead, 129 of the 1,200 got in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_queues_a_fleet_connecting_at_once() {
    let listener = nasflat_host::service::net::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let attempts: Vec<_> = (0..1200)
        .map(|_| {
            tokio::spawn(async move {
                tokio::time::timeout(Duration::from_millis(700), TcpStream::connect(addr)).await
            })
        })
        .collect();
    let mut connected = Vec::new();
    for a in attempts {
        if let Ok(Ok(stream)) = a.await.unwrap() {
            connected.push(stream);
        }
    }
    assert_eq!(
        connected.len(),
        1200,
        "connections left waiting for a SYN retransmission"
    );
    drop(listener);
}
