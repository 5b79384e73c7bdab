//! The service's configuration: every flag of `nasflat-host serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use nasflat_predictor::model::{PredictorConfig, Recipe, TrainConfig};
use nasflat_predictor::sampler::Sampler;
use nasflat_shared::SearchSpace;
use nasflat_shared::protocol::JobLimits;

use super::store::SqliteSync;

/// Everything `nasflat-host serve` can be told.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// `sqlite://PATH` or `postgres://...`.
    pub db_url: String,
    /// Pretrained checkpoints are looked up and cached here.
    pub checkpoint_dir: PathBuf,
    /// Token of management endpoints.
    pub admin_token: String,
    /// Token a new device presents to register.
    pub enrol_token: String,
    /// Read-only token: API reads, the dashboard and metrics (the admin
    /// token reads too). `None`: only the admin token reads.
    pub viewer_token: Option<String>,
    /// Serve the dashboard pages without a token (`--public-dashboard`);
    /// the JSON API's reads still need one.
    pub public_dashboard: bool,
    /// Spaces served (each is pretrained and sampled for new devices).
    pub spaces: Vec<SearchSpace>,
    /// k: sampler-chosen archs a new device measures before transfer.
    pub samples: usize,
    /// How the k archs are chosen (seeded by the device id).
    pub sampler: Sampler,
    /// Lease length; a lease not renewed by a heartbeat within it returns to the queue.
    pub lease_secs: u32,
    /// Poll interval told to idle agents.
    pub poll_secs: u32,
    /// Timing bounds sent with every lease.
    pub limits: JobLimits,
    /// Largest request body of JSON/postcard endpoints.
    pub max_body_bytes: usize,
    /// Largest ONNX upload.
    pub max_model_bytes: usize,
    /// Bytes of measurements one device may store (sample JSON, reasons and
    /// 256 per row); past it uploads get 507 and stay in the agent's spool.
    pub device_quota_bytes: u64,
    /// Leases of one job before it is given up.
    pub max_attempts: i64,
    /// Network shape of the predictor.
    pub predictor: PredictorConfig,
    /// Training recipe (served or the paper's); with the network shape,
    /// part of the checkpoint cache key.
    pub recipe: Recipe,
    /// Pretraining epochs override.
    pub pretrain_epochs: Option<usize>,
    /// Source samples per device override.
    pub source_samples: Option<usize>,
    /// Transfer epochs override.
    pub transfer_epochs: Option<usize>,
    /// How the weight of the linear stack in the served blend is set.
    pub blend: nasflat_predictor::blend::BlendRule,
    /// Seed of pretraining (and, mixed with the device id, of transfer).
    pub seed: u64,
    /// Start a transfer by itself once a device has k valid plan samples.
    pub auto_transfer: bool,
    /// Longest wait for a whole request head, idle keep-alive included:
    /// a client that stalls mid-headers is disconnected after it.
    pub header_timeout: Duration,
    /// Longest time a request may take, body upload included (503 after).
    pub request_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// When SQLite commits reach the disk (`--sqlite-sync`).
    pub sqlite_sync: SqliteSync,
}

impl ServiceConfig {
    /// Defaults for a database URL and a checkpoint directory; tokens must be set.
    pub fn new(db_url: String, checkpoint_dir: PathBuf) -> ServiceConfig {
        ServiceConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            db_url,
            checkpoint_dir,
            admin_token: String::new(),
            enrol_token: String::new(),
            viewer_token: None,
            public_dashboard: false,
            spaces: vec![SearchSpace::Nb201],
            samples: 20,
            sampler: Sampler::Random,
            lease_secs: 120,
            poll_secs: 5,
            limits: JobLimits::default(),
            max_body_bytes: 16 << 20,
            max_model_bytes: 256 << 20,
            device_quota_bytes: 256 << 20,
            max_attempts: 5,
            predictor: PredictorConfig::default(),
            recipe: Recipe::Served,
            pretrain_epochs: None,
            source_samples: None,
            transfer_epochs: None,
            blend: nasflat_predictor::blend::BlendRule::SERVED,
            seed: 0,
            auto_transfer: true,
            header_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(300),
            max_connections: 768,
            sqlite_sync: SqliteSync::Full,
        }
    }

    /// Training settings of a space with the overrides applied.
    pub fn train_config(&self, space: SearchSpace) -> TrainConfig {
        let mut t = TrainConfig::for_recipe(space, self.recipe);
        if let Some(v) = self.pretrain_epochs {
            t.epochs = v;
        }
        if let Some(v) = self.source_samples {
            t.source_samples = v;
        }
        if let Some(v) = self.transfer_epochs {
            t.transfer_epochs = v;
        }
        t
    }
}
