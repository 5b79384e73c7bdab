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

use super::config::ServiceConfig;
use super::domain::{Purpose, TransferState, Trigger};
use super::error::AppError;
use super::fit_choice::FitChoice;
use super::knowledge::{Pretrained, SpaceKnowledge, Spaces};
use super::metrics::Metrics;
use super::store::measurements::MeasurementRow;
use super::store::transfers::NewPredictions;
use super::store::{Store, new_id};
use nasflat_predictor::baselines::StackRules;
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

/// Starts and runs transfer jobs. It owns what a transfer touches (the
/// store, the counters, the configuration, the served spaces), so a
/// transfer needs nothing of the router's state; cheap to clone.
#[derive(Clone)]
pub struct TransferRunner {
    /// Transfers in flight in this process (one per device and space).
    active: Arc<Mutex<HashSet<(String, SearchSpace)>>>,
    store: Store,
    metrics: Arc<Metrics>,
    config: Arc<ServiceConfig>,
    spaces: Spaces,
}

/// The samples of a device in a space; repeated measurements of one arch
/// are merged by their median. Invalid samples and samples whose label did
/// not settle are left out (an agent from before the settle rule reports
/// nothing: its valid samples count).
pub fn samples_of(measurements: &[MeasurementRow], space: SearchSpace, set: SampleSet) -> Samples {
    let mut by_row: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for m in measurements {
        let wanted = match set {
            SampleSet::Plan => m.purpose == Purpose::Sample,
            SampleSet::All => true,
        };
        if !(wanted && m.valid && m.settled != Some(false)) {
            continue;
        }
        if let Some(row) = m.subject.row_in(space) {
            by_row.entry(row).or_default().push(m.median_ms);
        }
    }
    Samples::usable(by_row.into_iter().map(|(row, mut v)| {
        v.sort_by(f64::total_cmp);
        Sample {
            row,
            ms: v[v.len() / 2],
        }
    }))
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
    /// A runner with no transfer in flight.
    pub fn new(
        store: Store,
        metrics: Arc<Metrics>,
        config: Arc<ServiceConfig>,
        spaces: Spaces,
    ) -> TransferRunner {
        TransferRunner {
            active: Arc::default(),
            store,
            metrics,
            config,
            spaces,
        }
    }

    /// Starts a transfer unless one is running for this device and space.
    /// Returns the transfer id.
    pub async fn start(
        &self,
        device_id: &str,
        space: SearchSpace,
        set: SampleSet,
        trigger: Trigger,
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
        if let Err(e) = self
            .store
            .insert_transfer(&id, device_id, space, trigger)
            .await
        {
            self.finish(&key);
            return Err(e.into());
        }
        let runner = self.clone();
        let transfer_id = id.clone();
        tokio::spawn(async move {
            let outcome = runner.run(&transfer_id, &key.0, space, set).await;
            runner.record_end(&transfer_id, outcome).await;
            runner.finish(&key);
        });
        Ok(id)
    }

    /// Counts a finished transfer and stores how it ended.
    async fn record_end(&self, transfer_id: &str, outcome: Result<(String, usize), RunError>) {
        let (status, message, samples) = match outcome {
            Ok((message, samples)) => {
                Metrics::inc(&self.metrics.transfers_done);
                (TransferState::Done, message, samples)
            }
            Err((e, samples)) => {
                Metrics::inc(&self.metrics.transfers_failed);
                tracing::warn!(transfer = %transfer_id, "transfer failed: {e}");
                (TransferState::Failed, e.to_string(), samples)
            }
        };
        let progress = if status == TransferState::Done {
            1.0
        } else {
            0.0
        };
        if let Err(e) = self
            .store
            .update_transfer(transfer_id, status, progress, &message, samples)
            .await
        {
            tracing::error!(transfer = %transfer_id, "cannot record the transfer's end: {e}");
        }
    }

    fn finish(&self, key: &(String, SearchSpace)) {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Whether a device has k valid plan samples and has never been
    /// transferred (nor is being) in `space`.
    async fn wants_auto(&self, device_id: &str, space: SearchSpace) -> Result<bool, AppError> {
        let measured = self.store.measurements_of_device(device_id).await?;
        if samples_of(&measured, space, SampleSet::Plan).len() < self.config.samples {
            return Ok(false);
        }
        let earlier = self.store.transfers(device_id).await?;
        Ok(!earlier
            .iter()
            .any(|t| t.space == space && t.state != TransferState::Failed))
    }

    /// Starts the automatic transfer of a device once it has k valid plan
    /// samples and has never been transferred (nor is being).
    pub async fn maybe_auto(&self, device_id: &str, space: SearchSpace) {
        if !self.config.auto_transfer {
            return;
        }
        match self.wants_auto(device_id, space).await {
            Ok(true) => match self
                .start(device_id, space, SampleSet::Plan, Trigger::Auto)
                .await
            {
                Ok(id) => {
                    tracing::info!(device = %device_id, transfer = %id, "automatic transfer started")
                }
                Err(AppError::Conflict(_)) => {}
                Err(e) => tracing::warn!(device = %device_id, "cannot start transfer: {e}"),
            },
            Ok(false) => {}
            Err(e) => tracing::warn!(device = %device_id, "transfer check failed: {e}"),
        }
    }

    /// Records a transfer's progress (best effort: a lost update only
    /// delays what the status shows).
    async fn progress(
        &self,
        id: &str,
        state: TransferState,
        progress: f64,
        message: String,
        n: usize,
    ) {
        let _ = self
            .store
            .update_transfer(id, state, progress, &message, n)
            .await;
    }

    /// Waits for the pretrained predictor of a space (first start).
    async fn pretrained(
        &self,
        id: &str,
        knowledge: &SpaceKnowledge,
        n: usize,
    ) -> Result<Arc<Pretrained>, AppError> {
        loop {
            if let Some(p) = knowledge.pretrained() {
                return Ok(p);
            }
            if let Some(e) = knowledge.failure() {
                return Err(AppError::Unavailable(format!(
                    "no pretrained predictor: {e}"
                )));
            }
            self.progress(
                id,
                TransferState::Queued,
                0.0,
                "waiting for the pretrained predictor".into(),
                n,
            )
            .await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// One transfer: fit on the device's samples, predict the space, store it.
    async fn run(
        &self,
        id: &str,
        device_id: &str,
        space: SearchSpace,
        set: SampleSet,
    ) -> Result<(String, usize), RunError> {
        let knowledge = self.spaces.served(space).map_err(|e| (e, 0))?.clone();
        let measured = self
            .store
            .measurements_of_device(device_id)
            .await
            .map_err(|e| (e.into(), 0))?;
        let measured_samples = samples_of(&measured, space, set);
        let outliers = fewshot::outliers(&knowledge.sources, &measured_samples);
        let samples = measured_samples.without(&outliers);
        let n = samples.len();
        if n < 2 {
            return Err((
                AppError::Conflict(format!(
                    "`{device_id}` has {n} valid {space} samples; a transfer needs at least 2"
                )),
                n,
            ));
        }
        let pretrained = self
            .pretrained(id, &knowledge, n)
            .await
            .map_err(|e| (e, n))?;
        self.progress(
            id,
            TransferState::Running,
            0.0,
            format!("fitting on {n} samples"),
            n,
        )
        .await;
        let computed = self
            .fit_and_predict(id, device_id, &knowledge, &pretrained, &samples)
            .await
            .map_err(|e| (e, n))?;
        let version = format!("{}/{device_id}/{id}", pretrained.version);
        self.store
            .put_predictions(&NewPredictions {
                device_id,
                space,
                version: &version,
                transfer_id: id,
                base_version: &pretrained.version,
                init_from: computed.init_from.as_deref(),
                train_rows: &samples.rows(),
                latencies: &computed.latencies,
                choice: Some(&computed.choice),
            })
            .await
            .map_err(|e| (e.into(), n))?;
        self.store
            .put_residuals(device_id, space, &version, &computed.residuals)
            .await
            .map_err(|e| (e.into(), n))?;
        let message = format!(
            "fitted on {n} samples in {:.1} s; hardware embedding initialised from {}; Spearman on the fit samples {:.3}{}",
            computed.seconds,
            computed.init_from.as_deref().unwrap_or("the mean row"),
            computed.fit_spearman,
            outlier_note(&outliers)
        );
        tracing::info!(device = %device_id, %version, "{message}");
        Ok((message, n))
    }

    /// Runs [`compute`] on a blocking thread, reporting its progress.
    async fn fit_and_predict(
        &self,
        id: &str,
        device_id: &str,
        knowledge: &Arc<SpaceKnowledge>,
        pretrained: &Arc<Pretrained>,
        samples: &Samples,
    ) -> Result<Computed, AppError> {
        let n = samples.len();
        let train = self.config.train_config(knowledge.space);
        let bar = ProgressBar::hidden();
        bar.set_length(train.transfer_epochs.max(1) as u64);
        let predicted = Arc::new(AtomicUsize::new(0));
        let opts = fewshot::Options {
            transfer: TransferOptions {
                train,
                seed: device_seed(self.config.seed, device_id),
                progress: Some(bar.clone()),
            },
            blend: self.config.blend,
            stack_rules: StackRules::SERVED,
        };
        let job = {
            let (k, p, samples, predicted, device) = (
                knowledge.clone(),
                pretrained.clone(),
                samples.clone(),
                predicted.clone(),
                device_id.to_string(),
            );
            tokio::task::spawn_blocking(move || {
                compute(&k, &p, &device, &samples, &opts, &predicted)
            })
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
                    self.progress(id, TransferState::Running, 0.7 * fit + 0.3 * pred, format!("{stage} ({n} samples)"), n).await;
                }
            }
        };
        match outcome {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(AppError::Predictor(e)),
            Err(join) => Err(AppError::Internal(format!("transfer crashed: {join}"))),
        }
    }
}

type RunError = (AppError, usize);

/// What a transfer message says about the samples [`fewshot::outliers`]
/// left out (they count as held-out samples in the predictor quality).
fn outlier_note(outliers: &[Sample]) -> String {
    if outliers.is_empty() {
        return String::new();
    }
    let listed: Vec<String> = outliers
        .iter()
        .map(|s| format!("row {} ({:e} ms)", s.row, s.ms))
        .collect();
    format!(
        "; left out {} outlier sample(s), more than {:e}x off the others: {}",
        outliers.len(),
        fewshot::OUTLIER_FACTOR,
        listed.join(", ")
    )
}

struct Computed {
    latencies: Vec<f64>,
    /// Out-of-sample log residuals on the samples (the search's bound).
    residuals: Vec<f64>,
    init_from: Option<String>,
    choice: FitChoice,
    fit_spearman: f64,
    seconds: f64,
}

/// Fits the few-shot pipeline (the one `eval` measures) to the device's
/// samples and predicts every architecture of the space, counting the
/// predicted architectures in `predicted` (the job's progress), and keeps
/// its out-of-sample residuals for the searches' risk bound and its
/// choices for the predictor quality.
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
        residuals: fitted.loo_log_residuals()?,
        latencies,
        init_from: fitted.init_from().map(str::to_string),
        choice: FitChoice::from(&fitted.choice()),
        seconds: started.elapsed().as_secs_f64(),
    })
}
