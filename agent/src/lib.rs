//! The nasflat measurement agent: builds or loads ONNX models, times them
//! with tract or (feature `ort`, glibc x86_64 / aarch64) onnxruntime, and
//! records where and how each sample was measured.
//!
//! ```no_run
//! use nasflat_agent::{MeasureOptions, ModelSource, measure};
//! use nasflat_shared::{Arch, SearchSpace};
//! let arch = Arch::from_index(SearchSpace::Nb201, 0)?;
//! let source = ModelSource::Arch { arch, batch: 1, resolution: None };
//! let sample = measure(&source, &MeasureOptions::default())?;
//! println!("{} ms (valid: {})", sample.label_ms(), sample.valid);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod backoff;
pub mod client;
pub mod cpu_clock;
pub mod disturbance;
pub mod dump;
pub mod engine;
pub mod error;
pub mod label;
pub mod limits;
pub mod measure;
pub mod model;
#[cfg(with_ort)]
pub mod ort_engine;
pub mod ort_library;
pub mod provenance;
pub mod report;
pub mod runner;
pub mod runtime;
pub mod spool;
pub mod stats;
pub mod threads;
pub mod timing;
pub mod tract_engine;

pub use error::{AgentError, Result};
pub use limits::BenchLimits;
pub use measure::{MeasureOptions, ModelSource, Sample, measure, measure_with_first_run};
pub use model::{InputSpec, LoadedModel};
pub use runtime::{RuntimeChoice, RuntimeInfo, RuntimeKind};
pub use stats::Summary;
