//! nasflat host library: the service that agents report to and that serves
//! latency predictions (`nasflat-host serve`). The predictor it serves lives
//! in `nasflat-predictor`; the CLI and the `demo` loop live in the binary.

pub mod service;
