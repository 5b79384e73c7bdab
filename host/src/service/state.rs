//! The state the router holds, and the sub-states handlers take from it
//! (axum `FromRef`): a handler names only the parts it reads (`State<Store>`,
//! `State<Spaces>`, ...), so no module below the router depends on the
//! whole.

use std::sync::Arc;

use axum::extract::FromRef;

use super::config::ServiceConfig;
use super::fleet_totals::FleetTotals;
use super::knowledge::Spaces;
use super::metrics::Metrics;
use super::predictions::PredictionCache;
use super::quality::QualityMemo;
use super::store::Store;
use super::transfer::TransferRunner;

/// Shared by all handlers (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    /// Configuration.
    pub config: Arc<ServiceConfig>,
    /// Database.
    pub store: Store,
    /// Data and pretrained predictor per served space.
    pub spaces: Spaces,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Background transfer jobs.
    pub transfers: TransferRunner,
    /// Served predictions, cached by version.
    pub predictions: Arc<PredictionCache>,
    /// Predictor quality per device, memoised for the fleet page.
    pub qualities: Arc<QualityMemo>,
    /// The fleet's done-job count, kept a minute for the home page.
    pub fleet_totals: Arc<FleetTotals>,
}

/// `FromRef<AppState>` for each field type: `State<T>` then extracts it.
macro_rules! substate {
    ($($field:ident: $ty:ty),* $(,)?) => {
        $(impl FromRef<AppState> for $ty {
            fn from_ref(state: &AppState) -> $ty {
                state.$field.clone()
            }
        })*
    };
}

substate!(
    config: Arc<ServiceConfig>,
    store: Store,
    spaces: Spaces,
    metrics: Arc<Metrics>,
    transfers: TransferRunner,
    predictions: Arc<PredictionCache>,
    qualities: Arc<QualityMemo>,
    fleet_totals: Arc<FleetTotals>,
);
