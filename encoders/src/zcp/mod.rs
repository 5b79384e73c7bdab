//! NB201 zero-cost proxies computed in candle at random initialisation on a
//! fixed synthetic batch ([`proxies`]), on the network of [`network`], with
//! a resumable run over many architectures ([`run`]).

mod kernels;
pub mod linalg;
pub mod network;
pub mod proxies;
pub mod run;

pub use proxies::{PROXY_NAMES, ProxyScores, SyntheticBatch, ZcpConfig, score_arch};
