//! The NASFLAT latency predictor: configuration, layers, model, checkpoints.

pub mod checkpoint;
pub mod code_net;
pub mod config;
pub mod edgeless;
pub mod fused;
pub mod gnn;
pub mod layers;
pub mod memo;
pub mod network;

pub use checkpoint::{CheckpointMeta, load_checkpoint, save_checkpoint};
pub use config::{GnnKind, LossKind, NetworkForm, PredictorConfig, Readout, Recipe, TrainConfig};
pub use network::{GraphBatch, Predictor};
