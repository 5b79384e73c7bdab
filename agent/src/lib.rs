//! The nasflat measurement agent: builds or loads ONNX models, times them
//! with tract, and records where and how each sample was measured.
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
pub mod error;
pub mod limits;
pub mod measure;
pub mod model;
pub mod provenance;
pub mod report;
pub mod runner;
pub mod spool;
pub mod stats;
pub mod threads;
pub mod timing;

pub use error::{AgentError, Result};
pub use limits::BenchLimits;
pub use measure::{MeasureOptions, ModelSource, Sample, measure};
pub use model::{InputSpec, LoadedModel};
pub use stats::Summary;
