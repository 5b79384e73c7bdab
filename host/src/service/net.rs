//! The accept loop of `serve` and the per-request deadline: the limits
//! that keep slow or idle clients from holding the host's sockets.
//!
//! `axum::serve` exposes neither a header-read timeout nor a connection
//! limit, so the loop is the same hyper-util glue it uses, with both: a
//! connection that has not sent a whole request head within
//! [`ConnectionLimits::header_read`] is closed (hyper starts that clock
//! whenever a connection waits for a request head, so it also bounds how
//! long a keep-alive connection may sit idle), and at most
//! [`ConnectionLimits::max_connections`] are served at once; further ones
//! wait in the listen backlog until a slot frees (at the latest after the
//! header timeout), so a flood of stalled clients delays `/healthz` by at
//! most that timeout instead of starving it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;

use super::config::ServiceConfig;
use super::error::AppError;

/// How long to wait before accepting again after `accept` failed (out of
/// file descriptors, typically): retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Pending connections the kernel queues before `accept`. tokio's
/// `TcpListener::bind` leaves a small backlog (measured in
/// docs/experiments/host_hardening.md, "Scale"); with a fleet connecting in
/// the same second (agents enrolled at once, or reconnecting after a
/// restart), a full queue drops SYNs and each dropped client waits out the
/// SYN retransmission timeout. Linux caps the value at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` for [`serve_connections`] with a listen backlog of
/// [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as `TcpListener::bind` sets).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The connection limits of `serve` (flags `--header-timeout-secs`,
/// `--max-connections`; the request deadline is [`deadline`]'s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Longest wait for a whole request head, idle keep-alive included.
    pub header_read: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl ConnectionLimits {
    /// The limits configured for the service.
    pub fn of(config: &ServiceConfig) -> ConnectionLimits {
        ConnectionLimits {
            header_read: config.header_timeout,
            max_connections: config.max_connections.max(1),
        }
    }
}

/// Serves `app` on `listener` (HTTP/1.1) within `limits` until `shutdown`
/// resolves, then lets open connections finish their requests.
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        // Above [`MAX_HEADERS`], so that [`head_limits`] answers an oversize
        // head with our JSON error; hyper's own (empty) 431 is left for
        // heads past this count or its ~400 KB read buffer.
        .max_headers(4 * MAX_HEADERS);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let stream = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match stream {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection closed: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Longest request target (path and query) served; longer gets 414.
pub const MAX_URI_BYTES: usize = 8 << 10;
/// Most request headers; more gets 431.
pub const MAX_HEADERS: usize = 100;
/// Most bytes of all request headers (names and values); more gets 431.
pub const MAX_HEADER_BYTES: usize = 64 << 10;

/// Middleware: refuses an oversize request target (414) or head (431)
/// with the service's JSON error body.
pub async fn head_limits(req: Request, next: Next) -> Response {
    let uri = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri > MAX_URI_BYTES {
        return AppError::UriTooLong(format!(
            "the request target is {uri} bytes (at most {MAX_URI_BYTES})"
        ))
        .into_response();
    }
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return AppError::HeadersTooLarge(format!(
            "{} headers of {bytes} bytes (at most {MAX_HEADERS} headers, {MAX_HEADER_BYTES} bytes)",
            headers.len()
        ))
        .into_response();
    }
    next.run(req).await
}

/// Middleware: a request not answered within `limit` (a slow body upload,
/// a stuck handler) gets 503 `unavailable` and its work is dropped.
pub async fn deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => AppError::Unavailable(format!(
            "the request was not finished within the {} s request timeout",
            limit.as_secs_f64()
        ))
        .into_response(),
    }
}
