//! One error format for every endpoint: [`AppError`] renders as the
//! protocol's [`ErrorBody`] JSON with the matching status code, and the
//! [`Wire`] extractor turns malformed, oversize or wrongly typed bodies into
//! it (instead of axum's plain-text rejections); [`OptionalBody`] does the
//! same for bodies that may be left out.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nasflat_shared::protocol::{ErrorBody, POSTCARD_MIME};
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

use nasflat_predictor::PredictorError;
use nasflat_shared::SpaceError;

use super::store::StoreError;

/// An API failure. The message names what is wrong.
#[derive(Debug, Error)]
pub enum AppError {
    /// 400: a well-formed request asking for something invalid.
    #[error("{0}")]
    BadRequest(String),
    /// 400: the body does not decode.
    #[error("{0}")]
    Malformed(String),
    /// 401: no or unknown bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: a valid token that may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists, the method does not.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409: not possible in the current state (e.g. no predictor yet).
    #[error("{0}")]
    Conflict(String),
    /// 413.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 414: the request target is too long.
    #[error("{0}")]
    UriTooLong(String),
    /// 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 431: too many or too large request headers.
    #[error("{0}")]
    HeadersTooLarge(String),
    /// 422: decodes, but values are out of range.
    #[error("{0}")]
    Invalid(String),
    /// 422: a result batch with results that can never be stored; nothing
    /// of the batch is stored. Lists (idempotency key, reason) per result.
    #[error("{message}")]
    RejectedResults {
        /// Summary naming the first refused result.
        message: String,
        /// Every refused result.
        rejected: Vec<(String, String)>,
    },
    /// 503: a dependency (the database) is down; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected failure (logged).
    #[error("{0}")]
    Internal(String),
    /// A predictor-library failure on values the request brought; its kind
    /// decides the status (see [`predictor_status`]).
    #[error("{0}")]
    Predictor(#[from] PredictorError),
    /// 500: the service's own configuration cannot serve this (e.g. a
    /// sampler that needs latencies a new device does not have): the
    /// library's complaint is about the operator's input, not the client's.
    #[error("the service's configuration cannot do this: {0}")]
    Misconfigured(#[source] PredictorError),
    /// A database failure: 503 while the database is unreachable, else 500.
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl AppError {
    /// Status code and machine-readable code.
    pub fn status_code(&self) -> (StatusCode, &'static str) {
        match self {
            AppError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            AppError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed_body"),
            AppError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AppError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            AppError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            AppError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            AppError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            AppError::UriTooLong(_) => (StatusCode::URI_TOO_LONG, "uri_too_long"),
            AppError::HeadersTooLarge(_) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
            ),
            AppError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            AppError::RejectedResults { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_results")
            }
            AppError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            AppError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            AppError::Predictor(e) => predictor_status(e),
            AppError::Misconfigured(_) => (StatusCode::INTERNAL_SERVER_ERROR, "misconfigured"),
            AppError::Store(e) => store_status(e),
        }
    }
}

/// The status of a library error on request values: the caller's bad
/// input is a 4xx, the library's own failure a 500.
fn predictor_status(e: &PredictorError) -> (StatusCode, &'static str) {
    match e {
        PredictorError::InvalidInput { .. }
        | PredictorError::NotEnoughSamples { .. }
        | PredictorError::InvalidSample { .. }
        | PredictorError::TooFewSamples { .. }
        | PredictorError::BadConstraint { .. }
        | PredictorError::BadRisk { .. }
        | PredictorError::ObjectiveNotInSpace { .. } => {
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid")
        }
        PredictorError::NoFeasibleArchitecture { .. } => {
            (StatusCode::UNPROCESSABLE_ENTITY, "infeasible")
        }
        PredictorError::MissingLatency { .. } => (StatusCode::NOT_FOUND, "not_found"),
        PredictorError::UnknownDevice { .. } | PredictorError::DeviceNotInModel { .. } => {
            (StatusCode::NOT_FOUND, "not_found")
        }
        PredictorError::Space(s) => space_status(s),
        PredictorError::Tensor(_)
        | PredictorError::Internal { .. }
        | PredictorError::Checkpoint { .. }
        | PredictorError::Io { .. }
        | PredictorError::Json { .. }
        | PredictorError::Poisoned(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

/// Architectures, spaces, devices and tasks the request named; the
/// vendored tables' own failures are a 500.
fn space_status(e: &SpaceError) -> (StatusCode, &'static str) {
    match e {
        SpaceError::UnknownToken { .. }
        | SpaceError::Malformed { .. }
        | SpaceError::UnknownSpace(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        SpaceError::IndexOutOfRange { .. }
        | SpaceError::UnknownDevice { .. }
        | SpaceError::UnknownTask { .. } => (StatusCode::NOT_FOUND, "not_found"),
        SpaceError::Table { .. } | SpaceError::Io { .. } | SpaceError::Json { .. } => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
    }
}

/// An unreachable database is a 503 (retry later); anything else a 500.
fn store_status(e: &StoreError) -> (StatusCode, &'static str) {
    match e {
        StoreError::Db(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) => {
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
        StoreError::Db(sqlx::Error::Database(db)) if is_locked(db.as_ref()) => {
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
        // 507 is a 5xx: the agent keeps the results in its spool and
        // retries until an operator raises the quota.
        StoreError::QuotaExceeded { .. } => (StatusCode::INSUFFICIENT_STORAGE, "quota_exceeded"),
        StoreError::NotCommitted { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

/// SQLite's "database is locked" / "busy" (another process holds the write
/// lock past the busy timeout) and PostgreSQL's lock timeout: the database
/// is there but cannot take the write now, so retry later.
fn is_locked(db: &dyn sqlx::error::DatabaseError) -> bool {
    matches!(
        db.code().as_deref(),
        // SQLITE_BUSY, SQLITE_LOCKED and their extended codes; PostgreSQL
        // lock_not_available and deadlock_detected.
        Some("5" | "6" | "261" | "517" | "262" | "55P03" | "40P01")
    )
}

impl AppError {
    /// The 422 for a batch whose `rejected` results can never be stored.
    pub fn rejected_results(rejected: Vec<(String, String)>) -> AppError {
        let message = match rejected.first() {
            Some((key, reason)) if rejected.len() == 1 => {
                format!("result `{key}` refused: {reason}; nothing of the batch was stored")
            }
            Some((key, reason)) => format!(
                "{} results refused (first: `{key}`: {reason}); nothing of the batch was stored",
                rejected.len()
            ),
            None => "results refused; nothing of the batch was stored".to_string(),
        };
        AppError::RejectedResults { message, rejected }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_code();
        if status.is_server_error() {
            tracing::error!(code, "{self}");
        }
        let message = self.to_string();
        let rejected = match self {
            AppError::RejectedResults { rejected, .. } => rejected,
            _ => Vec::new(),
        };
        let body = ErrorBody {
            code: code.to_string(),
            message,
            rejected,
        };
        (status, axum::Json(body)).into_response()
    }
}

/// Body encodings of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/x-postcard` (the agent's default).
    Postcard,
    /// `application/json`.
    Json,
}

impl Format {
    /// Encoding of a request body from its `Content-Type` (none: postcard,
    /// as the agent protocol says).
    pub fn of_content_type(headers: &HeaderMap) -> Result<Format, AppError> {
        let Some(value) = headers.get(header::CONTENT_TYPE) else {
            return Ok(Format::Postcard);
        };
        let text = value.to_str().unwrap_or("");
        let mime = text.split(';').next().unwrap_or("").trim();
        if mime.eq_ignore_ascii_case("application/json") {
            Ok(Format::Json)
        } else if mime.eq_ignore_ascii_case(POSTCARD_MIME) {
            Ok(Format::Postcard)
        } else {
            Err(AppError::UnsupportedMediaType(format!(
                "content type `{text}` is not supported (use application/json or {POSTCARD_MIME})"
            )))
        }
    }

    /// Encoding of a response from `Accept`: postcard only when asked for.
    pub fn of_accept(headers: &HeaderMap) -> Format {
        let postcard = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains(POSTCARD_MIME));
        if postcard {
            Format::Postcard
        } else {
            Format::Json
        }
    }
}

/// Decodes `bytes` as `T` in `format`.
pub fn decode<T: DeserializeOwned>(format: Format, bytes: &[u8]) -> Result<T, AppError> {
    match format {
        Format::Json => serde_json::from_slice(bytes)
            .map_err(|e| AppError::Malformed(format!("malformed JSON body: {e}"))),
        Format::Postcard => match postcard::take_from_bytes(bytes) {
            Ok((value, [])) => Ok(value),
            Ok((_, rest)) => Err(AppError::Malformed(format!(
                "malformed postcard body ({} bytes): {} bytes after the end of the message",
                bytes.len(),
                rest.len()
            ))),
            Err(e) => Err(AppError::Malformed(format!(
                "malformed postcard body ({} bytes): {e}",
                bytes.len()
            ))),
        },
    }
}

/// Query parameters decoded to `T`; a query that does not decode is our
/// JSON 400 (axum's own `Query` answers plain text).
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AppError> {
        axum::extract::Query::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|e| AppError::BadRequest(format!("bad query string: {}", e.body_text())))
    }
}

/// 405 for a known path under another method, in our format.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> AppError {
    AppError::MethodNotAllowed(format!("{} does not take {method}", uri.path()))
}

/// A request body in JSON or postcard (by `Content-Type`), decoded to `T`.
#[derive(Debug, Clone)]
pub struct Wire<T>(pub T);

/// Reads the raw body, mapping axum's rejections (over the size limit,
/// aborted upload) to [`AppError`].
pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, AppError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge(format!("request body too large: {}", e.body_text()))
        } else {
            AppError::Malformed(format!("cannot read request body: {}", e.body_text()))
        }
    })
}

impl<S, T> FromRequest<S> for Wire<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let format = Format::of_content_type(req.headers())?;
        let bytes = read_body(req, state).await?;
        decode(format, &bytes).map(Wire)
    }
}

/// A JSON/postcard body that may be empty (then `T::default()`).
#[derive(Debug, Clone)]
pub struct OptionalBody<T>(pub T);

impl<S, T> FromRequest<S> for OptionalBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let format = Format::of_content_type(req.headers()).unwrap_or(Format::Json);
        let bytes = read_body(req, state).await?;
        if bytes.is_empty() {
            return Ok(OptionalBody(T::default()));
        }
        decode(format, &bytes).map(OptionalBody)
    }
}

/// A response body in the format the client accepts.
#[derive(Debug)]
pub struct Reply<T> {
    format: Format,
    value: T,
}

impl<T> Reply<T> {
    /// Answers `value` in the format `headers` accept.
    pub fn new(headers: &HeaderMap, value: T) -> Self {
        Reply {
            format: Format::of_accept(headers),
            value,
        }
    }
}

impl<T: Serialize> IntoResponse for Reply<T> {
    fn into_response(self) -> Response {
        match self.format {
            Format::Json => axum::Json(self.value).into_response(),
            Format::Postcard => match postcard::to_allocvec(&self.value) {
                Ok(bytes) => ([(header::CONTENT_TYPE, POSTCARD_MIME)], bytes).into_response(),
                Err(e) => {
                    AppError::Internal(format!("cannot encode response: {e}")).into_response()
                }
            },
        }
    }
}

/// 404 for unknown paths, in our format.
pub async fn not_found(uri: axum::http::Uri) -> AppError {
    AppError::NotFound(format!("no route for {}", uri.path()))
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// The status, code and message of an error's response.
    async fn answer(e: AppError) -> (StatusCode, ErrorBody) {
        let response = e.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or(ErrorBody {
            code: "not an ErrorBody".into(),
            message: String::new(),
            rejected: Vec::new(),
        });
        (status, body)
    }

    /// Every kind of library and store error gets its status and code, and
    /// the `{code, message}` body carries the library's message; the
    /// library error stays reachable as the source.
    #[tokio::test]
    async fn each_library_error_kind_maps_to_its_status() {
        let cases: Vec<(AppError, u16, &str, &str)> = vec![
            (
                PredictorError::input("sampler", "random or params", "`x`").into(),
                422,
                "invalid",
                "invalid sampler: expected random or params, got `x`",
            ),
            (
                PredictorError::NotEnoughSamples {
                    device: "d".into(),
                    requested: 5,
                    available: 2,
                }
                .into(),
                422,
                "invalid",
                "asked for 5",
            ),
            (
                PredictorError::UnknownDevice {
                    space: "nb201".into(),
                    device: "nope".into(),
                }
                .into(),
                404,
                "not_found",
                "unknown device `nope`",
            ),
            (
                PredictorError::from(SpaceError::UnknownSpace("nb999".into())).into(),
                400,
                "bad_request",
                "nb999",
            ),
            (
                PredictorError::from(SpaceError::IndexOutOfRange {
                    space: "nb201",
                    index: 20_000,
                    len: 15_625,
                })
                .into(),
                404,
                "not_found",
                "index 20000",
            ),
            (
                PredictorError::internal("sampler", "ran out of candidates").into(),
                500,
                "internal",
                "internal error in sampler: ran out of candidates",
            ),
            (
                AppError::Misconfigured(PredictorError::input("sampler", "a", "b")),
                500,
                "misconfigured",
                "configuration cannot do this: invalid sampler",
            ),
            (
                StoreError::Db(sqlx::Error::PoolTimedOut).into(),
                503,
                "unavailable",
                "database",
            ),
            (
                StoreError::Corrupt("row 3".into()).into(),
                500,
                "internal",
                "corrupt row: row 3",
            ),
        ];
        for (e, status, code, message) in cases {
            let has_source = e.source().is_some();
            let shown = e.to_string();
            let (got, body) = answer(e).await;
            assert_eq!(got.as_u16(), status, "{shown}");
            assert_eq!(body.code, code, "{shown}");
            assert!(body.message.contains(message), "{shown}: {}", body.message);
            assert!(has_source, "{shown}: the library error is not the source");
        }
    }
}
