//! The NASFLAT few-shot latency predictor (Akhauri & Abdelfattah, MLSys
//! 2024) as a library: the dataset and features it reads, the GNN and its
//! training and transfer, calibration, the baselines, samplers, device-set
//! partitioning and the evaluation harness of the paper's Table 7 protocol.
//!
//! Layering inside the crate: [`dataset`] + [`features`] + [`encoding`] ->
//! [`model`] -> [`train`] -> [`fewshot`] -> [`baselines`] / [`sampler`] ->
//! [`eval`]. No service dependency (axum, sqlx, tokio): the host builds on
//! this crate, never the other way round.

pub mod additive;
pub mod baselines;
pub mod blend;
pub mod calibrate;
pub mod correlation;
pub mod dataset;
pub mod encoding;
pub mod error;
pub mod eval;
pub mod features;
pub mod fewshot;
pub mod keywords;
pub mod model;
pub mod nas;
pub mod parallel;
pub mod partition;
pub mod recipe;
pub mod run_env;
pub mod sampler;
pub mod samples;
pub mod step;
pub mod train;

pub use dataset::SpaceData;
pub use error::{PredictorError, Result};
pub use fewshot::{FewShot, Fitted};
pub use model::{Predictor, PredictorConfig, TrainConfig};
pub use sampler::Sampler;
pub use samples::{Sample, Samples};
