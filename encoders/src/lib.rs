//! Architecture encodings of paper Section 4 that nasflat learns or computes
//! itself: Arch2Vec (variational graph autoencoder), CATE (transformer with a
//! masked-op objective on computationally similar pairs), and the NB201
//! zero-cost proxies at random initialisation. All in candle on the CPU,
//! deterministic from a seed.
//!
//! Layering: [`graphs`] + [`params`] -> [`arch2vec`] / [`cate`] ->
//! [`cache`] (the `data/encodings/` file format); [`zcp`] builds the NB201
//! network in candle and scores it. [`cli`] is `nasflat-host encode`.

pub mod arch2vec;
pub mod cache;
pub mod cate;
pub mod cli;
pub mod error;
pub mod graphs;
pub mod params;
pub mod training;
pub mod zcp;

pub use error::{EncodeError, Result};
