//! Served predictions: a transfer computes a device's latency for every
//! architecture of the space once and stores the vector; a prediction
//! request is then a lookup (microseconds) instead of a GNN pass. The cache
//! keeps the decoded vector per (device, space) and reloads it when the
//! stored version changes (a newer transfer, possibly by another replica).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use nasflat_shared::SearchSpace;

use super::error::AppError;
use super::store::Store;
use super::store::transfers::PredictionRow;

/// Decoded predictions by (device, space), read through from the store.
pub struct PredictionCache {
    store: Store,
    map: Mutex<HashMap<(String, SearchSpace), Arc<PredictionRow>>>,
}

impl PredictionCache {
    /// An empty cache over `store`.
    pub fn new(store: Store) -> PredictionCache {
        PredictionCache {
            store,
            map: Mutex::default(),
        }
    }

    /// The current predictions of a device, or `None` before its first transfer.
    pub async fn get(
        &self,
        device_id: &str,
        space: SearchSpace,
    ) -> Result<Option<Arc<PredictionRow>>, AppError> {
        let key = (device_id.to_string(), space);
        let store = &self.store;
        let Some(version) = store.prediction_version(device_id, space).await? else {
            return Ok(None);
        };
        if let Some(hit) = self
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .filter(|p| p.version == version)
        {
            return Ok(Some(hit.clone()));
        }
        let Some(row) = store.predictions(device_id, space).await? else {
            return Ok(None);
        };
        let row = Arc::new(row);
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, row.clone());
        Ok(Some(row))
    }
}
