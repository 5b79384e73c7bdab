//! Which runtime times the models (tract, compiled in; or onnxruntime,
//! opened from a shared library at run time), and what every sample records
//! about it.
//!
//! A latency belongs to a (board, runtime, runtime version, threads): a
//! predictor fitted on tract's latencies predicts tract's, not those of the
//! onnxruntime a team deploys with (`docs/agent-bench.md`: tract ranks 50
//! NB201 cells at Spearman 0.70 against onnxruntime).

use std::path::PathBuf;

pub use nasflat_shared::protocol::{RuntimeIdentity, RuntimeKind};
use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};

/// The runtime a measurement asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RuntimeChoice {
    /// tract.
    #[default]
    Tract,
    /// onnxruntime from this shared library (`--ort-lib`, `ORT_DYLIB_PATH`).
    Ort {
        /// `libonnxruntime.so.1.N`; `None` is an error naming how to give it.
        library: Option<PathBuf>,
    },
}

impl RuntimeChoice {
    /// The choice for a `--runtime` value and an optional `--ort-lib`.
    pub fn new(kind: RuntimeKind, library: Option<PathBuf>) -> RuntimeChoice {
        match kind {
            RuntimeKind::Tract => RuntimeChoice::Tract,
            RuntimeKind::Ort => RuntimeChoice::Ort { library },
        }
    }

    /// Which runtime this is.
    pub fn kind(&self) -> RuntimeKind {
        match self {
            RuntimeChoice::Tract => RuntimeKind::Tract,
            RuntimeChoice::Ort { .. } => RuntimeKind::Ort,
        }
    }
}

/// Graph optimisation the runtime applied before timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Optimization {
    /// tract's `into_optimized()` (its only optimising path).
    TractOptimized,
    /// tract's optimisation without its axis-change pass, for the rare model
    /// `into_optimized()` rejects (tract 0.23.9's `ChangeAxes` reshapes a
    /// folded conv bias wrongly in a few NB201 cells, docs/agent-bench.md,
    /// "Cells tract's axis pass rejects").
    TractWithoutAxisPass,
    /// onnxruntime's `ORT_ENABLE_ALL` (Python's default too).
    OrtEnableAll,
}

/// The runtime of one sample, in its provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeInfo {
    /// Which runtime.
    pub kind: RuntimeKind,
    /// Its version.
    pub version: String,
    /// The shared library it was loaded from (onnxruntime).
    pub library: Option<String>,
    /// Threads inside one operator (tract's matrix-product pool,
    /// onnxruntime's intra-op pool); 1 runs on the measuring thread.
    pub intra_threads: usize,
    /// Threads running independent operators side by side (onnxruntime's
    /// inter-op pool; tract has none): 1 here, execution is sequential.
    pub inter_threads: usize,
    /// Graph optimisation applied.
    pub optimization: Optimization,
}

impl RuntimeInfo {
    /// tract as built into this agent, on `threads` threads.
    pub fn tract(threads: usize) -> RuntimeInfo {
        RuntimeInfo {
            kind: RuntimeKind::Tract,
            version: env!("NASFLAT_TRACT_VERSION").to_string(),
            library: None,
            intra_threads: threads,
            inter_threads: 1,
            optimization: Optimization::TractOptimized,
        }
    }

    /// What identifies the device's latencies on the host.
    pub fn identity(&self) -> RuntimeIdentity {
        RuntimeIdentity {
            kind: self.kind,
            version: self.version.clone(),
            threads: u32::try_from(self.intra_threads).unwrap_or(u32::MAX),
        }
    }
}

/// Whether this build can run onnxruntime.
pub const ORT_SUPPORTED: bool = cfg!(with_ort);

/// Makes the runtime ready and describes it: for tract, sets its thread
/// pool; for onnxruntime, opens the library (once per process) and checks
/// its version. Every refusal names the path, version or feature at fault.
pub fn prepare(choice: &RuntimeChoice, threads: usize) -> Result<RuntimeInfo> {
    match choice {
        RuntimeChoice::Tract => {
            crate::threads::configure(threads)?;
            Ok(RuntimeInfo::tract(threads))
        }
        RuntimeChoice::Ort { library } => prepare_ort(library.as_deref(), threads),
    }
}

#[cfg(with_ort)]
fn prepare_ort(library: Option<&std::path::Path>, threads: usize) -> Result<RuntimeInfo> {
    let library = library.ok_or(AgentError::OrtLibraryNotGiven)?;
    let loaded = crate::ort_engine::load_library(library)?;
    Ok(RuntimeInfo {
        kind: RuntimeKind::Ort,
        version: loaded.version,
        library: Some(loaded.path.display().to_string()),
        intra_threads: threads,
        inter_threads: 1,
        optimization: Optimization::OrtEnableAll,
    })
}

#[cfg(not(with_ort))]
fn prepare_ort(_library: Option<&std::path::Path>, _threads: usize) -> Result<RuntimeInfo> {
    Err(AgentError::OrtUnavailable {
        target: env!("NASFLAT_TARGET").to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tract_needs_nothing_and_ort_needs_a_library() {
        let info = prepare(&RuntimeChoice::Tract, 1).unwrap();
        assert_eq!(info.kind, RuntimeKind::Tract);
        assert_eq!(info.identity().threads, 1);
        assert!(info.version.starts_with("0."), "{}", info.version);
        let err = prepare(&RuntimeChoice::Ort { library: None }, 1).unwrap_err();
        if ORT_SUPPORTED {
            assert!(matches!(err, AgentError::OrtLibraryNotGiven), "{err}");
            assert!(err.to_string().contains("--ort-lib"), "{err}");
        } else {
            assert!(matches!(err, AgentError::OrtUnavailable { .. }), "{err}");
        }
    }

    #[test]
    fn without_the_feature_ort_is_refused_naming_it() {
        let err = prepare(
            &RuntimeChoice::Ort {
                library: Some("/nonexistent/libonnxruntime.so.1.32.0".into()),
            },
            1,
        )
        .unwrap_err();
        let text = err.to_string();
        if ORT_SUPPORTED {
            assert!(
                matches!(err, AgentError::OrtLibraryMissing { .. }),
                "{text}"
            );
            assert!(
                text.contains("/nonexistent/libonnxruntime.so.1.32.0"),
                "{text}"
            );
        } else {
            assert!(text.contains("feature `ort`"), "{text}");
        }
    }
}
