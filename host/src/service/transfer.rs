//! Transfer jobs: fine-tune the pretrained predictor to a device from its
//! measured samples (paper Section 5.2), then compute and store its
//! predictions for the whole space. Runs on a blocking thread; status and
//! progress live in the `transfers` table, so every replica and the
//! dashboard see them. Started automatically once a device has k valid
//! sampler-chosen samples, or by `POST /v1/devices/{id}/transfer`.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::ProgressBar;
use nasflat_shared::SearchSpace;
use sha2::{Digest, Sha256};

use super::error::AppError;
use super::knowledge::{Pretrained, SpaceKnowledge};
use super::metrics::Metrics;
use super::state::AppState;
use super::store::measurements::MeasurementRow;
use super::store::new_id;
use nasflat_predictor::error::Result as PredictorResult;
use nasflat_predictor::fewshot::{self, FewShot};
use nasflat_predictor::train::TransferOptions;
use nasflat_predictor::{Sample, Samples};
use nasflat_shared::stats::spearman;

/// Which samples a transfer fits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleSet {
    /// Only the sampler-chosen plan samples (automatic transfers): other
    /// measurements stay held out to judge the predictor.
    Plan,
    /// Every valid arch measurement of the device.
    All,
}

/// Transfers in flight in this process (one per device and space).
#[derive(Default)]
pub struct TransferRunner {
    active: Mutex<HashSet<(String, SearchSpace)>>,
}

/// The (row, median ms) samples of a device in a space; repeated
/// measurements of one arch are merged by their median.
pub fn samples_of(
    measurements: &[MeasurementRow],
    space: SearchSpace,
    set: SampleSet,
) -> (Vec<usize>, Vec<f64>) {
    let mut by_row: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let name = space.to_string();
    for m in measurements {
        let wanted = match set {
            SampleSet::Plan => m.purpose == "sample",
            SampleSet::All => true,
        };
        if !(wanted && m.valid && m.kind == "arch" && m.space.as_deref() == Some(name.as_str())) {
            continue;
        }
        if let Some(row) = m.arch_index.and_then(|i| usize::try_from(i).ok()) {
            by_row.entry(row).or_default().push(m.median_ms);
        }
    }
    by_row
        .into_iter()
        .map(|(row, mut v)| {
            v.sort_by(f64::total_cmp);
            (row, v[v.len() / 2])
        })
        .unzip()
}

/// Seed of a device's transfer (and plan): the service seed mixed with a
/// hash of the device id, so it is stable across restarts and replicas.
pub fn device_seed(base: u64, device_id: &str) -> u64 {
    let h = Sha256::digest(device_id.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    u64::from_le_bytes(b) ^ base
}

impl TransferRunner {
    /// Starts a transfer unless one is running for this device and space.
    /// Returns the transfer id.
    pub async fn start(
        &self,
        state: &AppState,
        device_id: &str,
        space: SearchSpace,
        set: SampleSet,
        trigger: &str,
    ) -> Result<String, AppError> {
        let key = (device_id.to_string(), space);
        if !self
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone())
        {
            return Err(AppError::Conflict(format!(
                "a transfer of `{device_id}` on {space} is already running"
            )));
        }
        let id = new_id("xfer");
        if let Err(e) = state
            .store
            .insert_transfer(&id, device_id, &space.to_string(), trigger)
            .await
        {
            self.finish(&key);
            return Err(e.into());
        }
        let state = state.clone();
        let transfer_id = id.clone();
        tokio::spawn(async move {
            let outcome = run(&state, &transfer_id, &key.0, space, set).await;
            let (status, message, samples) = match outcome {
                Ok((message, samples)) => {
                    Metrics::inc(&state.metrics.transfers_done);
                    ("done", message, samples)
                }
                Err((e, samples)) => {
                    Metrics::inc(&state.metrics.transfers_failed);
                    tracing::warn!(transfer = %transfer_id, "transfer failed: {e}");
                    ("failed", e.to_string(), samples)
                }
            };
            let progress = if status == "done" { 1.0 } else { 0.0 };
            if let Err(e) = state
                .store
                .update_transfer(&transfer_id, status, progress, &message, samples, true)
                .await
            {
                tracing::error!(transfer = %transfer_id, "cannot record the transfer's end: {e}");
            }
            state.transfers.finish(&key);
        });
        Ok(id)
    }

    fn finish(&self, key: &(String, SearchSpace)) {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Starts the automatic transfer of a device once it has k valid plan
    /// samples and has never been transferred (nor is being).
    pub async fn maybe_auto(&self, state: &AppState, device_id: &str, space: SearchSpace) {
        if !state.config.auto_transfer {
            return;
        }
        let check = async {
            let measured = state.store.measurements_of_device(device_id).await?;
            let (rows, _) = samples_of(&measured, space, SampleSet::Plan);
            if rows.len() < state.config.samples {
                return Ok::<bool, AppError>(false);
            }
            let earlier = state.store.transfers(device_id).await?;
            Ok(!earlier
                .iter()
                .any(|t| t.space == space.to_string() && t.state != "failed"))
        };
        match check.await {
            Ok(true) => {
                match self
                    .start(state, device_id, space, SampleSet::Plan, "auto")
                    .await
                {
                    Ok(id) => {
                        tracing::info!(device = %device_id, transfer = %id, "automatic transfer started")
                    }
                    Err(AppError::Conflict(_)) => {}
                    Err(e) => tracing::warn!(device = %device_id, "cannot start transfer: {e}"),
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(device = %device_id, "transfer check failed: {e}"),
        }
    }
}

type RunError = (AppError, usize);

async fn run(
    state: &AppState,
    id: &str,
    device_id: &str,
    space: SearchSpace,
    set: SampleSet,
) -> Result<(String, usize), RunError> {
    let knowledge = state.space(space).map_err(|e| (e, 0))?.clone();
    let measured = state
        .store
        .measurements_of_device(device_id)
        .await
        .map_err(|e| (e.into(), 0))?;
    let (rows, ms) = samples_of(&measured, space, set);
    let n = rows.len();
    if n < 2 {
        return Err((
            AppError::Conflict(format!(
                "`{device_id}` has {n} valid {space} samples; a transfer needs at least 2"
            )),
            n,
        ));
    }
    let update = |state_name: &'static str, progress: f64, message: String| {
        let store = state.store.clone();
        let id = id.to_string();
        async move {
            let _ = store
                .update_transfer(&id, state_name, progress, &message, n, false)
                .await;
        }
    };
    // Wait for the pretrained predictor (first start).
    let pretrained = loop {
        if let Some(p) = knowledge.pretrained() {
            break p;
        }
        if let Some(e) = knowledge.failure() {
            return Err((
                AppError::Unavailable(format!("no pretrained predictor: {e}")),
                n,
            ));
        }
        update("queued", 0.0, "waiting for the pretrained predictor".into()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    update("running", 0.0, format!("fitting on {n} samples")).await;
    let samples = match Samples::new(
        rows.iter()
            .zip(&ms)
            .map(|(&row, &ms)| Sample { row, ms })
            .collect(),
    ) {
        Ok(s) => s,
        Err(e) => return Err((AppError::Conflict(format!("`{device_id}`: {e}")), n)),
    };
    let train = state.config.train_config(space);
    let bar = ProgressBar::hidden();
    bar.set_length(train.transfer_epochs.max(1) as u64);
    let predicted = Arc::new(AtomicUsize::new(0));
    let opts = fewshot::Options {
        transfer: TransferOptions {
            train,
            seed: device_seed(state.config.seed, device_id),
            progress: Some(bar.clone()),
        },
        blend: state.config.blend,
    };
    let job = {
        let (k, p, device, counter) = (
            knowledge.clone(),
            pretrained.clone(),
            device_id.to_string(),
            predicted.clone(),
        );
        tokio::task::spawn_blocking(move || compute(&k, &p, &device, &samples, &opts, &counter))
    };
    tokio::pin!(job);
    let total = knowledge.data.rows().max(1);
    let outcome = loop {
        tokio::select! {
            r = &mut job => break r,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                let fit = bar.position() as f64 / bar.length().unwrap_or(1).max(1) as f64;
                let pred = predicted.load(Ordering::Relaxed) as f64 / total as f64;
                let stage = if pred > 0.0 { "predicting the space" } else { "fine-tuning" };
                update("running", 0.7 * fit + 0.3 * pred, format!("{stage} ({n} samples)")).await;
            }
        }
    };
    let computed = match outcome {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err((AppError::Internal(format!("transfer: {e}")), n)),
        Err(join) => return Err((AppError::Internal(format!("transfer crashed: {join}")), n)),
    };
    let version = format!("{}/{device_id}/{id}", pretrained.version);
    state
        .store
        .put_predictions(
            device_id,
            &space.to_string(),
            &version,
            id,
            &pretrained.version,
            computed.init_from.as_deref(),
            &rows,
            &computed.latencies,
        )
        .await
        .map_err(|e| (e.into(), n))?;
    let message = format!(
        "fitted on {n} samples in {:.1} s; hardware embedding initialised from {}; Spearman on the fit samples {:.3}",
        computed.seconds,
        computed.init_from.as_deref().unwrap_or("the mean row"),
        computed.fit_spearman
    );
    tracing::info!(device = %device_id, %version, "{message}");
    Ok((message, n))
}

struct Computed {
    latencies: Vec<f64>,
    init_from: Option<String>,
    fit_spearman: f64,
    seconds: f64,
}

/// Fits the few-shot pipeline (the one `eval` measures) to the device's
/// samples and predicts every architecture of the space, counting the
/// predicted architectures in `predicted` (the job's progress).
fn compute(
    k: &SpaceKnowledge,
    pretrained: &Pretrained,
    device: &str,
    samples: &Samples,
    opts: &fewshot::Options,
    predicted: &AtomicUsize,
) -> PredictorResult<Computed> {
    let started = std::time::Instant::now();
    let pipeline = FewShot {
        pretrained: &pretrained.predictor,
        data: &k.data,
        sources: &k.sources,
    };
    let fitted = pipeline.fit(device, samples, opts)?;
    let all: Vec<usize> = (0..k.data.rows()).collect();
    let mut latencies = Vec::with_capacity(all.len());
    for chunk in all.chunks(1024) {
        latencies.extend(fitted.predict(chunk)?);
        predicted.fetch_add(chunk.len(), Ordering::Relaxed);
    }
    let fitted_ms: Vec<f64> = samples.iter().map(|s| latencies[s.row]).collect();
    Ok(Computed {
        fit_spearman: spearman(&fitted_ms, &samples.latencies()),
        latencies,
        init_from: fitted.init_from().map(str::to_string),
        seconds: started.elapsed().as_secs_f64(),
    })
}
