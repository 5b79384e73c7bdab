//! nasflat host library: the NASFLAT few-shot latency predictor (Akhauri &
//! Abdelfattah, MLSys 2024), its trivial and learned baselines, and the
//! evaluation harness that reproduces the paper's Table 7 protocol.
//!
//! Layering: [`dataset`] + [`features`] -> [`predictor`] -> [`train`] ->
//! [`baselines`] / [`eval`].

pub mod additive;
pub mod calibrate;
pub mod dataset;
pub mod encoding;
pub mod error;
pub mod features;
pub mod fewshot;
pub mod metrics;
pub mod parallel;
pub mod predictor;
pub mod train;

pub use error::{HostError, Result};
pub mod baselines;
pub mod eval;
pub mod partition;
pub mod sampler;
pub mod service;
