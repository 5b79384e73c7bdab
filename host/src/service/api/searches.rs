//! Latency-constrained searches: run one on a device (optionally queueing
//! its top candidates for measurement), read one back with what was
//! measured. The search itself is [`crate::service::search`].

use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::service::auth::Admin;
use crate::service::error::{AppError, Wire};
use crate::service::search::{SearchRequest, SearchView, Searcher};

/// `POST /v1/devices/{id}/search` (admin: it stores the search and may
/// queue jobs).
pub async fn start(
    State(searcher): State<Searcher>,
    _admin: Admin,
    Path(id): Path<String>,
    Wire(req): Wire<SearchRequest>,
) -> Result<(StatusCode, axum::Json<SearchView>), AppError> {
    let row = searcher.run(&id, &req).await?;
    Ok((StatusCode::CREATED, axum::Json(searcher.view(row).await?)))
}

/// `GET /v1/searches/{id}`: the search with its verification so far.
pub async fn show(
    State(searcher): State<Searcher>,
    Path(id): Path<String>,
) -> Result<axum::Json<SearchView>, AppError> {
    let row = searcher.get(&id).await?;
    Ok(axum::Json(searcher.view(row).await?))
}
