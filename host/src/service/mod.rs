//! The host service (`nasflat-host serve`): agents register and measure,
//! the host transfers its pretrained predictor to each new device and
//! serves latency predictions; a dashboard shows it all.
//!
//! | module | holds |
//! |---|---|
//! | [`store`] | SQLite/PostgreSQL persistence (sqlx `Any`, embedded migrations) |
//! | [`api`] | routes: agent protocol, devices, predictions, models, ops |
//! | [`auth`] | admin, enrolment and per-device bearer tokens (hashed) |
//! | [`config`] | `ServiceConfig`: every flag of `serve` |
//! | [`state`] | the router's state and its `FromRef` sub-states |
//! | [`domain`] | typed purposes, states, subjects and samples (text only in `store`) |
//! | [`error`] | `AppError` (one JSON error format; every error kind's status in one place) and the body extractors |
//! | [`knowledge`] | vendored data + pretrained predictor per space (cached checkpoints) |
//! | [`transfer`] | background transfer jobs with progress |
//! | [`predictions`] | served prediction vectors, cached by version |
//! | [`fleet_totals`] | the home page's fleet-wide queue counts (done jobs counted once a minute) |
//! | [`quality`] | a predictor's Spearman / MAPE on the device's measurements, memoised |
//! | [`search`] | latency-constrained search on a device, its verification jobs |
//! | [`dashboard`] | server-rendered HTML + SVG plots |
//! | [`metrics`] | Prometheus counters |
//! | [`net`] | the accept loop (header timeout, connection limit) and the request deadline |
//! | [`onnx_check`] | the streaming check that an upload is an ONNX model |
//! | [`openapi`] | `/v1/openapi.json` |

pub mod api;
pub mod auth;
pub mod conditions;
pub mod config;
pub mod dashboard;
pub mod domain;
pub mod error;
pub mod fit_choice;
pub mod fleet_totals;
pub mod knowledge;
pub mod metrics;
pub mod net;
pub mod onnx_check;
pub mod openapi;
pub mod predictions;
pub mod quality;
pub mod search;
pub mod state;
pub mod store;
pub mod transfer;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

pub use config::ServiceConfig;
pub use error::AppError;
pub use state::AppState;

use knowledge::{SpaceKnowledge, Spaces};
use metrics::Metrics;
use predictions::PredictionCache;
use store::Store;
use transfer::TransferRunner;

/// Connects the store, loads the vendored data of every served space, and
/// starts loading or pretraining the predictors in the background.
pub async fn build_state(config: ServiceConfig) -> anyhow::Result<AppState> {
    use anyhow::Context;
    if config.admin_token.len() < 8 || config.enrol_token.len() < 8 {
        anyhow::bail!("the admin and enrolment tokens must be at least 8 characters");
    }
    let store = Store::connect_with(&config.db_url, config.sqlite_sync)
        .await
        .with_context(|| format!("opening the database {}", store::redact(&config.db_url)))?
        .with_device_quota(config.device_quota_bytes)
        .with_max_attempts(config.max_attempts);
    let abandoned = store
        .delete_abandoned_chunks(
            i64::try_from(config.request_timeout.as_millis()).unwrap_or(i64::MAX),
        )
        .await?;
    if abandoned > 0 {
        tracing::warn!(abandoned, "chunks of unfinished model uploads removed");
    }
    let interrupted = store.fail_interrupted_transfers().await?;
    if interrupted > 0 {
        tracing::warn!(
            interrupted,
            "transfers interrupted by the last shutdown were marked failed"
        );
    }
    let mut spaces = BTreeMap::new();
    for &space in &config.spaces {
        let k = tokio::task::spawn_blocking(move || SpaceKnowledge::load(space))
            .await
            .context("loading the vendored data")?
            .with_context(|| format!("loading the vendored {space} data"))?;
        spaces.insert(space, Arc::new(k));
    }
    let config = Arc::new(config);
    let spaces = Spaces::new(spaces);
    let metrics = Arc::new(Metrics::default());
    let state = AppState {
        transfers: TransferRunner::new(
            store.clone(),
            metrics.clone(),
            config.clone(),
            spaces.clone(),
        ),
        predictions: Arc::new(PredictionCache::new(store.clone())),
        qualities: Arc::default(),
        fleet_totals: Arc::default(),
        config,
        store,
        spaces,
        metrics,
    };
    for (space, k) in state.spaces.iter() {
        let (k, space, config) = (k.clone(), *space, state.config.clone());
        let (store, transfers) = (state.store.clone(), state.transfers.clone());
        tokio::spawn(async move {
            let train = config.train_config(space);
            let result = tokio::task::spawn_blocking(move || {
                k.prepare(
                    &config.predictor,
                    &train,
                    config.seed,
                    &config.checkpoint_dir,
                )
            })
            .await;
            match result {
                Ok(Ok(())) => resume_transfers(&store, &transfers, space).await,
                Ok(Err(e)) => tracing::error!(%space, "pretraining failed: {e}"),
                Err(e) => tracing::error!(%space, "pretraining crashed: {e}"),
            }
        });
    }
    Ok(state)
}

/// After a restart: devices that reached k samples but have no transfer
/// (it was interrupted) get their automatic transfer now.
async fn resume_transfers(
    store: &Store,
    transfers: &TransferRunner,
    space: nasflat_shared::SearchSpace,
) {
    let Ok(devices) = store.devices().await else {
        return;
    };
    for d in devices {
        transfers.maybe_auto(&d.id, space).await;
    }
}

/// Serves until `shutdown` resolves, within the configured header timeout
/// and connection limit ([`net`]). Prints `nasflat-host listening on
/// http://ADDR` on stdout once bound (tests and scripts read it).
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    println!("nasflat-host listening on http://{addr}");
    tracing::info!(
        "dashboard: http://{addr}/ (open /?token=VIEWER_TOKEN once{})",
        if state.config.public_dashboard {
            "; --public-dashboard: no token needed"
        } else {
            ""
        }
    );
    let limits = net::ConnectionLimits::of(&state.config);
    let app = api::router(state);
    net::serve_connections(listener, app, limits, shutdown).await;
    Ok(())
}
