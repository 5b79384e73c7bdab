//! Built-in knowledge of one search space: the vendored latency table (its
//! devices are the paper's source devices, served as built-in devices), the
//! features, and the predictor pretrained on every source device.
//!
//! On first start the pretrained predictor is loaded from the checkpoint
//! cache when one with the same settings exists (shipped or left by an
//! earlier start), otherwise it is pretrained in the background (progress
//! in the logs and in `/healthz`) and saved there. Agents can register and
//! measure meanwhile; transfers wait for it.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use nasflat_shared::SearchSpace;
use schemars::JsonSchema;
use serde::Serialize;
use sha2::{Digest, Sha256};

use nasflat_predictor::baselines::SourceMatrix;
use nasflat_predictor::dataset::SpaceData;
use nasflat_predictor::error::{PredictorError, Result};
use nasflat_predictor::model::checkpoint::FORMAT_VERSION;
use nasflat_predictor::model::{
    Predictor, PredictorConfig, TrainConfig, load_checkpoint, save_checkpoint,
};
use nasflat_predictor::train;

use super::error::AppError;
use super::store::hex;

/// A pretrained predictor ready to transfer.
pub struct Pretrained {
    /// The network (source devices only).
    pub predictor: Predictor,
    /// `<space>-<settings hash>`: part of every served predictor version.
    pub version: String,
    /// Whether it came from the checkpoint cache.
    pub from_cache: bool,
    /// Seconds spent loading or training it.
    pub seconds: f64,
}

/// Where the pretrained predictor stands.
pub enum ModelStatus {
    /// Training; the bar counts epochs.
    Pretraining(ProgressBar),
    /// Ready.
    Ready(Arc<Pretrained>),
    /// Pretraining failed (the service keeps serving everything else).
    Failed(String),
}

/// Where a space's pretrained predictor stands, as `/healthz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelState {
    /// Training.
    Pretraining,
    /// Ready to transfer.
    Ready,
    /// Pretraining failed.
    Failed,
}

/// `/healthz` view of a [`ModelStatus`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ModelReport {
    /// Where it stands.
    pub state: ModelState,
    /// Epochs done / total while pretraining.
    pub progress: Option<(u64, u64)>,
    /// Version when ready.
    pub version: Option<String>,
    /// Whether it was loaded from the cache.
    pub from_cache: Option<bool>,
    /// Error when failed.
    pub error: Option<String>,
}

/// Everything the host knows about one search space.
pub struct SpaceKnowledge {
    /// The space.
    pub space: SearchSpace,
    /// Vendored table and features.
    pub data: SpaceData,
    /// Source devices (every table column) as ridge features.
    pub sources: SourceMatrix,
    /// Rows a new device may be asked to measure (measured on every source).
    pub usable_rows: Vec<usize>,
    /// NB201 CIFAR-10 test accuracy per row (the Pareto plot), if known.
    pub accuracy: Option<Vec<Option<f64>>>,
    model: RwLock<ModelStatus>,
}

impl SpaceKnowledge {
    /// Loads the vendored data of a space (no training).
    pub fn load(space: SearchSpace) -> Result<SpaceKnowledge> {
        let data = SpaceData::load(space)?;
        let names: Vec<String> = data.latency.names().to_vec();
        let sources = SourceMatrix::new(&data, &names)?;
        let mut usable: Vec<usize> = (0..data.rows())
            .filter(|&r| (0..names.len()).all(|c| data.latency(c, r).is_some_and(|v| v > 0.0)))
            .collect();
        if usable.len() < 100 {
            usable = data.valid_rows(0);
        }
        let accuracy = match space {
            SearchSpace::Nb201 => {
                let table = nasflat_shared::data::nb201_accuracy()?;
                Some(table.column("cifar10_test")?.to_vec())
            }
            SearchSpace::Fbnet => None,
        };
        Ok(SpaceKnowledge {
            space,
            data,
            sources,
            usable_rows: usable,
            accuracy,
            model: RwLock::new(ModelStatus::Failed("not started".into())),
        })
    }

    /// Source device names (the built-in devices).
    pub fn source_names(&self) -> &[String] {
        &self.sources.names
    }

    /// The pretrained predictor, when ready.
    pub fn pretrained(&self) -> Option<Arc<Pretrained>> {
        match &*self.model.read().unwrap_or_else(|p| p.into_inner()) {
            ModelStatus::Ready(p) => Some(p.clone()),
            _ => None,
        }
    }

    /// Whether pretraining failed (transfers then fail at once).
    pub fn failure(&self) -> Option<String> {
        match &*self.model.read().unwrap_or_else(|p| p.into_inner()) {
            ModelStatus::Failed(e) => Some(e.clone()),
            _ => None,
        }
    }

    /// Status for `/healthz`.
    pub fn report(&self) -> ModelReport {
        match &*self.model.read().unwrap_or_else(|p| p.into_inner()) {
            ModelStatus::Pretraining(bar) => ModelReport {
                state: ModelState::Pretraining,
                progress: Some((bar.position(), bar.length().unwrap_or(0))),
                version: None,
                from_cache: None,
                error: None,
            },
            ModelStatus::Ready(p) => ModelReport {
                state: ModelState::Ready,
                progress: None,
                version: Some(p.version.clone()),
                from_cache: Some(p.from_cache),
                error: None,
            },
            ModelStatus::Failed(e) => ModelReport {
                state: ModelState::Failed,
                progress: None,
                version: None,
                from_cache: None,
                error: Some(e.clone()),
            },
        }
    }

    fn set(&self, status: ModelStatus) {
        *self.model.write().unwrap_or_else(|p| p.into_inner()) = status;
    }

    /// Loads or pretrains the predictor (blocking; run it off the async
    /// runtime). Logs progress every few seconds while training.
    pub fn prepare(
        &self,
        config: &PredictorConfig,
        train: &TrainConfig,
        seed: u64,
        cache_dir: &Path,
    ) -> Result<()> {
        let started = Instant::now();
        let key = settings_key(self.space, config, train, self.source_names(), seed);
        let version = format!("{}-{}", self.space, &key[..12]);
        let prefix = cache_dir.join(&version);
        if prefix.with_extension("json").exists() {
            match load_checkpoint(&prefix) {
                Ok((predictor, _)) => {
                    tracing::info!(space = %self.space, %version, "loaded pretrained predictor from {}", prefix.display());
                    self.set(ModelStatus::Ready(Arc::new(Pretrained {
                        predictor,
                        version,
                        from_cache: true,
                        seconds: started.elapsed().as_secs_f64(),
                    })));
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!("ignoring unreadable checkpoint {}: {e}", prefix.display())
                }
            }
        }
        let bar = ProgressBar::hidden();
        bar.set_length(train.epochs as u64);
        self.set(ModelStatus::Pretraining(bar.clone()));
        tracing::info!(
            space = %self.space,
            sources = self.source_names().len(),
            epochs = train.epochs,
            source_samples = train.source_samples,
            seed,
            "no cached checkpoint {version}: pretraining"
        );
        let logger = spawn_progress_logger(self.space, bar.clone());
        let result = train::pretrain(
            &self.data,
            self.source_names(),
            config,
            train,
            seed,
            nasflat_predictor::parallel::cores_per_job(1),
            Some(&bar),
        );
        logger.finish();
        let predictor = match result {
            Ok(p) => p,
            Err(e) => {
                self.set(ModelStatus::Failed(e.to_string()));
                return Err(e);
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(space = %self.space, %version, "pretrained in {seconds:.1} s");
        if let Err(e) = save_atomically(&predictor, cache_dir, &version) {
            tracing::warn!(
                "could not cache the checkpoint in {}: {e}",
                cache_dir.display()
            );
        }
        self.set(ModelStatus::Ready(Arc::new(Pretrained {
            predictor,
            version,
            from_cache: false,
            seconds,
        })));
        Ok(())
    }
}

/// Hash of everything that changes the pretrained weights.
fn settings_key(
    space: SearchSpace,
    config: &PredictorConfig,
    train: &TrainConfig,
    sources: &[String],
    seed: u64,
) -> String {
    let text = serde_json::json!({
        "format": FORMAT_VERSION,
        "space": space.to_string(),
        "config": config,
        "train": train,
        "sources": sources,
        "seed": seed,
    })
    .to_string();
    hex(&Sha256::digest(text.as_bytes()))
}

/// Writes the checkpoint under a temporary name, then renames weights and
/// metadata into place (metadata last: a reader that sees it sees both).
fn save_atomically(predictor: &Predictor, dir: &Path, version: &str) -> Result<()> {
    let io = |path: &Path, source| PredictorError::Io {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let tmp = dir.join(format!(".{version}.{}", std::process::id()));
    save_checkpoint(predictor, &[], &tmp)?;
    let final_prefix: PathBuf = dir.join(version);
    for ext in ["safetensors", "json"] {
        let from = tmp.with_extension(ext);
        let to = final_prefix.with_extension(ext);
        std::fs::rename(&from, &to).map_err(|e| io(&to, e))?;
    }
    Ok(())
}

/// Logs a training bar's position every 5 s until finished.
struct ProgressLogger {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl ProgressLogger {
    fn finish(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn spawn_progress_logger(space: SearchSpace, bar: ProgressBar) -> ProgressLogger {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let mut last = u64::MAX;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(250));
            let pos = bar.position();
            if pos != last && (pos.is_multiple_of(5) || pos + 1 >= bar.length().unwrap_or(0)) {
                tracing::info!(%space, "pretraining epoch {pos}/{}", bar.length().unwrap_or(0));
                last = pos;
            }
        }
    });
    ProgressLogger { stop }
}

/// The served spaces and their knowledge, shared by handlers and the
/// transfer runner (cheap to clone). Reads like the map it wraps.
#[derive(Clone, Default)]
pub struct Spaces(Arc<BTreeMap<SearchSpace, Arc<SpaceKnowledge>>>);

impl Spaces {
    /// Wraps the loaded spaces.
    pub fn new(spaces: BTreeMap<SearchSpace, Arc<SpaceKnowledge>>) -> Spaces {
        Spaces(Arc::new(spaces))
    }

    /// The knowledge of a served space, or a 400 naming the served ones.
    pub fn served(
        &self,
        space: SearchSpace,
    ) -> std::result::Result<&Arc<SpaceKnowledge>, AppError> {
        self.0.get(&space).ok_or_else(|| {
            AppError::BadRequest(format!(
                "space `{space}` is not served by this host (served: {})",
                self.0
                    .keys()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }
}

impl Deref for Spaces {
    type Target = BTreeMap<SearchSpace, Arc<SpaceKnowledge>>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nasflat_predictor::model::Recipe;

    fn key(config: &PredictorConfig, train: &TrainConfig) -> String {
        let sources = vec!["a".to_string(), "b".to_string()];
        settings_key(SearchSpace::Nb201, config, train, &sources, 0)
    }

    /// Two recipes never share a cached checkpoint, even with every other
    /// setting equal; the served key is what it was before recipes existed
    /// (no `recipe` field), so served caches stay valid.
    #[test]
    fn the_recipe_is_part_of_the_checkpoint_key() {
        let config = PredictorConfig::default();
        let served = TrainConfig::for_space(SearchSpace::Nb201);
        let paper = TrainConfig {
            recipe: Recipe::Paper,
            ..served.clone()
        };
        assert_ne!(key(&config, &served), key(&config, &paper));
        let paper_full = TrainConfig::for_recipe(SearchSpace::Nb201, Recipe::Paper);
        let paper_config = PredictorConfig::for_recipe(Recipe::Paper);
        assert_ne!(key(&config, &served), key(&paper_config, &paper_full));
        let text = serde_json::to_string(&served).unwrap_or_default();
        assert!(!text.contains("recipe"), "{text}");
        assert!(
            !serde_json::to_string(&config)
                .unwrap_or_default()
                .contains("supplementary_embedder")
        );
    }
}
