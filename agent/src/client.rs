//! HTTP client of the host protocol (`nasflat_shared::protocol`).
//!
//! Bodies are postcard; responses are decoded by their content type (postcard
//! or JSON), so a host behind a JSON-only proxy still works. Errors are split
//! into *transient* (retry with backoff: connection refused, timeouts, 5xx,
//! 429) and *permanent* (retrying cannot help: 4xx, undecodable bodies).

use std::time::Duration;

use nasflat_shared::protocol::{
    ErrorBody, Heartbeat, HeartbeatResponse, PLAN_KEY_HEADER, POSTCARD_MIME, PlanRequest,
    PlanResponse, RegisterRequest, RegisterResponse, ReleaseRequest, ResultAck, ResultBatch,
};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

/// A failed call.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Worth retrying later.
    #[error("host {url} unavailable: {reason}")]
    Transient { url: String, reason: String },
    /// Retrying the same request cannot succeed.
    #[error("host {url} rejected the request ({status}): {reason}")]
    Permanent {
        url: String,
        status: u16,
        reason: String,
    },
    /// The host refused some results of a batch as invalid (422 with the
    /// list) and stored none of it: drop those, upload the rest again.
    #[error("host {url} refused {} result(s): {reason}", rejected.len())]
    ResultsRefused {
        url: String,
        reason: String,
        /// (idempotency key, reason) per refused result.
        rejected: Vec<(String, String)>,
    },
    /// The host answered something that is not a protocol message.
    #[error("host {url} sent an undecodable response: {reason}")]
    Garbage { url: String, reason: String },
    /// The host's base URL (`--host`) cannot be used at all.
    #[error("host URL {url} is not usable: {reason}")]
    BadUrl { url: String, reason: String },
}

impl ClientError {
    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, ClientError::Transient { .. })
    }
}

/// A connection to one host.
#[derive(Debug, Clone)]
pub struct HostClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl HostClient {
    /// A client for `base` (e.g. `http://10.0.0.2:8080`) with a bearer token.
    pub fn new(base: &str, token: &str) -> Result<HostClient, ClientError> {
        let scheme = check_base_url(base)?;
        // reqwest is built without a TLS provider (no OpenSSL, no C
        // toolchain for the board): install ring's. This only fails when a
        // provider is already installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("nasflat-agent/", env!("CARGO_PKG_VERSION")));
        if scheme == Scheme::Http {
            // A plain-HTTP host needs no trust store. Building one reads and
            // decodes every certificate under /etc/ssl: most of the CPU of a
            // load generator starting 1,000 agents at once
            // (docs/experiments/host_hardening.md, "Registration storm"),
            // and startup time on a board. An https redirect from such a
            // host then fails verification instead of being followed.
            builder = builder.tls_certs_only(std::iter::empty());
        }
        let http = builder.build().map_err(|e| ClientError::Permanent {
            url: base.to_string(),
            status: 0,
            reason: format!("cannot build HTTP client: {e}"),
        })?;
        Ok(HostClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        })
    }

    /// Replaces the bearer token (after registration).
    pub fn set_token(&mut self, token: &str) {
        self.token = token.to_string();
    }

    /// Registers or re-attaches.
    pub async fn register(&self, req: &RegisterRequest) -> Result<RegisterResponse, ClientError> {
        self.post("/v1/agents/register", req).await
    }

    /// Asks for leases; a retry of the same attempt passes the same `key`
    /// ([`PLAN_KEY_HEADER`]).
    pub async fn plan(&self, req: &PlanRequest, key: &str) -> Result<PlanResponse, ClientError> {
        let url = format!("{}/v1/agents/plan", self.base);
        let response = self.send(&url, req, Some((PLAN_KEY_HEADER, key))).await?;
        let response = check_status(&url, response).await?;
        decode(&url, response).await
    }

    /// Renews leases.
    pub async fn heartbeat(&self, req: &Heartbeat) -> Result<HeartbeatResponse, ClientError> {
        self.post("/v1/agents/heartbeat", req).await
    }

    /// Uploads results.
    pub async fn upload(&self, req: &ResultBatch) -> Result<ResultAck, ClientError> {
        self.post("/v1/agents/results", req).await
    }

    /// Returns leases unmeasured.
    pub async fn release(&self, req: &ReleaseRequest) -> Result<(), ClientError> {
        let url = format!("{}/v1/agents/release", self.base);
        let response = self.send(&url, req, None).await?;
        check_status(&url, response).await.map(|_| ())
    }

    /// Downloads a user model's ONNX bytes.
    pub async fn model_bytes(&self, model_id: &str) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}/v1/models/{model_id}", self.base);
        let response = self
            .http
            .get(&url)
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
            .send()
            .await
            .map_err(|e| transport(&url, e))?;
        let response = check_status(&url, response).await?;
        let bytes = response.bytes().await.map_err(|e| transport(&url, e))?;
        Ok(bytes.to_vec())
    }

    async fn send<Q: Serialize>(
        &self,
        url: &str,
        req: &Q,
        header: Option<(&str, &str)>,
    ) -> Result<reqwest::Response, ClientError> {
        let body = postcard::to_allocvec(req).map_err(|e| ClientError::Permanent {
            url: url.to_string(),
            status: 0,
            reason: format!("cannot encode request: {e}"),
        })?;
        let mut request = self
            .http
            .post(url)
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
            .header(CONTENT_TYPE, POSTCARD_MIME)
            .header(reqwest::header::ACCEPT, POSTCARD_MIME);
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        request
            .body(body)
            .send()
            .await
            .map_err(|e| transport(url, e))
    }

    async fn post<Q: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        req: &Q,
    ) -> Result<R, ClientError> {
        let url = format!("{}{path}", self.base);
        let response = self.send(&url, req, None).await?;
        let response = check_status(&url, response).await?;
        decode(&url, response).await
    }
}

/// The two schemes a host URL may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

/// The scheme of a usable host URL, or why it is not one. Refuses a base
/// URL that no request could be sent to, before the first attempt:
/// otherwise each request would fail the same way and be retried as if the
/// host were down.
fn check_base_url(base: &str) -> Result<Scheme, ClientError> {
    let bad = |reason: String| ClientError::BadUrl {
        url: base.to_string(),
        reason,
    };
    let url = reqwest::Url::parse(base).map_err(|e| bad(e.to_string()))?;
    match url.scheme() {
        "http" => Ok(Scheme::Http),
        "https" => Ok(Scheme::Https),
        other => Err(bad(format!("scheme {other:?}: expected http or https"))),
    }
}

fn transport(url: &str, e: reqwest::Error) -> ClientError {
    ClientError::Transient {
        url: url.to_string(),
        reason: format!("{e}"),
    }
}

async fn check_status(
    url: &str,
    response: reqwest::Response,
) -> Result<reqwest::Response, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str::<ErrorBody>(&text).ok();
    let reason = body.as_ref().map_or_else(
        || text.chars().take(200).collect(),
        |b| format!("{}: {}", b.code, b.message),
    );
    if let Some(b) = body
        && status == StatusCode::UNPROCESSABLE_ENTITY
        && !b.rejected.is_empty()
    {
        return Err(ClientError::ResultsRefused {
            url: url.to_string(),
            reason,
            rejected: b.rejected,
        });
    }
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        Err(ClientError::Transient {
            url: url.to_string(),
            reason: format!("{status}: {reason}"),
        })
    } else {
        Err(ClientError::Permanent {
            url: url.to_string(),
            status: status.as_u16(),
            reason,
        })
    }
}

async fn decode<R: DeserializeOwned>(
    url: &str,
    response: reqwest::Response,
) -> Result<R, ClientError> {
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let bytes = response.bytes().await.map_err(|e| transport(url, e))?;
    let garbage = |reason: String| ClientError::Garbage {
        url: url.to_string(),
        reason,
    };
    if is_json {
        serde_json::from_slice(&bytes).map_err(|e| garbage(format!("bad JSON: {e}")))
    } else {
        postcard::from_bytes(&bytes)
            .map_err(|e| garbage(format!("bad postcard body ({} bytes): {e}", bytes.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_url_is_http_or_https() {
        assert_eq!(
            check_base_url("http://10.0.0.2:8080").unwrap(),
            Scheme::Http
        );
        assert_eq!(check_base_url("https://host.lab/").unwrap(), Scheme::Https);
        for bad in ["ftp://host", "host:8080", ""] {
            assert!(
                matches!(check_base_url(bad), Err(ClientError::BadUrl { .. })),
                "{bad}"
            );
        }
    }

    /// Both kinds of client build: the plain-HTTP one without a trust store,
    /// the https one with the system's.
    #[test]
    fn clients_build_for_both_schemes() {
        assert!(HostClient::new("http://127.0.0.1:9", "t").is_ok());
        assert!(HostClient::new("https://127.0.0.1:9", "t").is_ok());
    }
}
