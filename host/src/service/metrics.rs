//! Counters for `/metrics` (Prometheus text format, written by hand: a few
//! counters and one latency histogram do not need a metrics framework).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

/// Upper bounds (seconds) of the request-duration histogram.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default, Clone)]
struct RouteStats {
    by_status: BTreeMap<u16, u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<(String, String), RouteStats>>,
    /// Measurements stored (new keys).
    pub results_stored: AtomicU64,
    /// Uploads of keys already stored (retries after a lost ack).
    pub results_duplicate: AtomicU64,
    /// Results refused by validation.
    pub results_rejected: AtomicU64,
    /// Leases granted.
    pub leases_granted: AtomicU64,
    /// Leases granted on jobs whose previous lease had expired.
    pub leases_reclaimed: AtomicU64,
    /// Devices registered.
    pub registrations: AtomicU64,
    /// Transfers finished, ok.
    pub transfers_done: AtomicU64,
    /// Transfers failed.
    pub transfers_failed: AtomicU64,
    /// Single or batch predictions served.
    pub predictions_served: AtomicU64,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let s = routes
            .entry((method.to_string(), route.to_string()))
            .or_default();
        *s.by_status.entry(status).or_default() += 1;
        s.count += 1;
        s.sum += seconds;
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                s.buckets[i] += 1;
            }
        }
    }

    /// The Prometheus exposition, with gauges computed by the caller appended.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, &AtomicU64); 9] = [
            (
                "nasflat_results_stored_total",
                "Measurements stored",
                &self.results_stored,
            ),
            (
                "nasflat_results_duplicate_total",
                "Uploads of already stored keys",
                &self.results_duplicate,
            ),
            (
                "nasflat_results_rejected_total",
                "Results refused by validation",
                &self.results_rejected,
            ),
            (
                "nasflat_leases_granted_total",
                "Leases granted",
                &self.leases_granted,
            ),
            (
                "nasflat_leases_reclaimed_total",
                "Leases granted on expired leases",
                &self.leases_reclaimed,
            ),
            (
                "nasflat_registrations_total",
                "Devices registered",
                &self.registrations,
            ),
            (
                "nasflat_transfers_done_total",
                "Transfers finished",
                &self.transfers_done,
            ),
            (
                "nasflat_transfers_failed_total",
                "Transfers failed",
                &self.transfers_failed,
            ),
            (
                "nasflat_predictions_served_total",
                "Prediction requests served",
                &self.predictions_served,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let routes = self
            .routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        out.push_str("# HELP nasflat_http_requests_total HTTP requests by route and status\n# TYPE nasflat_http_requests_total counter\n");
        for ((method, route), s) in &routes {
            for (status, n) in &s.by_status {
                let _ = writeln!(
                    out,
                    "nasflat_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP nasflat_http_request_duration_seconds Request latency\n# TYPE nasflat_http_request_duration_seconds histogram\n");
        for ((method, route), s) in &routes {
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "nasflat_http_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {}",
                    s.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "nasflat_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "nasflat_http_request_duration_seconds_sum{{{labels}}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "nasflat_http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
        out
    }
}

/// The route label of every request that matched no route: a client picks
/// the path, so paths outside the route table must not become labels.
pub const UNMATCHED: &str = "unmatched";
/// The method label of every method outside [`KNOWN_METHODS`].
pub const OTHER_METHOD: &str = "other";
/// Methods that get their own label; a client can send any token as a
/// method, and each distinct label costs memory in every scrape.
static KNOWN_METHODS: [Method; 9] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::HEAD,
    Method::OPTIONS,
    Method::PATCH,
    Method::CONNECT,
    Method::TRACE,
];

/// The label of a request method: the standard ones by name, the rest folded
/// into [`OTHER_METHOD`] so the label set stays bounded.
fn method_label(method: &Method) -> &'static str {
    KNOWN_METHODS
        .iter()
        .find(|m| *m == method)
        .map_or(OTHER_METHOD, Method::as_str)
}

/// Middleware: counts every request by matched route and status. Route
/// labels come from the route table ([`MatchedPath`]) and method labels from
/// a fixed list, so no request can add labels without bound.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_string(), |p| p.as_str().to_string());
    let method = method_label(req.method());
    let started = Instant::now();
    let response = next.run(req).await;
    metrics.observe(
        method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
