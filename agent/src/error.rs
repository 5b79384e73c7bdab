//! Errors of the measurement library.

use thiserror::Error;

/// What can go wrong loading or timing a model.
#[derive(Debug, Error)]
pub enum AgentError {
    /// The file could not be read.
    #[error("cannot read model `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not an ONNX protobuf (empty, truncated or corrupt).
    #[error("`{name}` is not a valid ONNX model (truncated or corrupt protobuf): {reason}")]
    Corrupt { name: String, reason: String },
    /// The model uses operators tract does not implement.
    #[error("`{name}` uses operator(s) tract does not support: {ops}")]
    UnsupportedOperator { name: String, ops: String },
    /// An `--input` override is malformed or names no input.
    #[error("bad input spec `{spec}`: {reason}")]
    BadInputSpec { spec: String, reason: String },
    /// An input's shape is unknown and no override gave it.
    #[error(
        "input `{input}` has symbolic or unknown dimension(s) {dims}: pass --input {input}:SHAPE"
    )]
    SymbolicInput { input: String, dims: String },
    /// tract could not analyse or optimise the model.
    #[error("tract cannot analyse `{name}`: {reason}")]
    Analysis { name: String, reason: String },
    /// Running the model failed (e.g. wrong input shape or dtype).
    #[error("running `{name}` failed: {reason}")]
    Run { name: String, reason: String },
    /// Measurement limits that contradict each other.
    #[error("invalid measurement limits: {0}")]
    Limits(String),
    /// More than one thread asked of a build without the `multithread`
    /// feature (the board build).
    #[error(
        "--threads {threads}: this agent was built without the `multithread` feature (the board build), so it runs tract on one thread only; rebuild it with default features to time on several"
    )]
    SingleThreadBuild { threads: usize },
    /// Building one of our own architectures failed.
    #[error(transparent)]
    Build(#[from] nasflat_onnx::OnnxError),
    /// `--runtime ort` on a build without onnxruntime support.
    #[error(
        "--runtime ort: this agent ({target}) was built without onnxruntime support; it needs the cargo feature `ort` on a glibc x86_64 or aarch64 target (the static musl and the armv7 agents are tract-only)"
    )]
    OrtUnavailable { target: String },
    /// `--runtime ort` without a library to load.
    #[error(
        "--runtime ort needs the onnxruntime shared library: pass --ort-lib PATH (e.g. .../onnxruntime/capi/libonnxruntime.so.1.32.0 from the onnxruntime wheel) or set ORT_DYLIB_PATH"
    )]
    OrtLibraryNotGiven,
    /// The library file does not exist or cannot be read.
    #[error("onnxruntime library `{path}` cannot be read: {reason}")]
    OrtLibraryMissing { path: String, reason: String },
    /// The file is not a loadable shared library.
    #[error("`{path}` is not a usable onnxruntime library: {reason}")]
    OrtLibraryInvalid { path: String, reason: String },
    /// The library is older than the C API this agent was built against.
    #[error(
        "onnxruntime {found} at `{path}` is too old: this agent needs onnxruntime >= 1.{required_minor} (ort API level {required_minor})"
    )]
    OrtLibraryTooOld {
        path: String,
        found: String,
        required_minor: u32,
    },
    /// The library needs a newer glibc than the board has.
    #[error(
        "onnxruntime library `{path}` needs {required}, newer than this system's glibc ({system}): use a library built for this system (a distro package, JetPack's) or a newer OS"
    )]
    OrtGlibcTooOld {
        path: String,
        required: String,
        system: String,
    },
    /// A process loads one onnxruntime library; another was asked for.
    #[error(
        "onnxruntime is already loaded from `{loaded}` in this process; cannot switch to `{asked}`"
    )]
    OrtLibraryConflict { loaded: String, asked: String },
    /// onnxruntime refused the model (unsupported operator, invalid graph).
    #[error("onnxruntime cannot load `{name}`: {reason}")]
    OrtLoad { name: String, reason: String },
    /// `--dump-output` could not be written.
    #[error("cannot write the output dump `{path}`: {reason}")]
    Dump { path: String, reason: String },
}

impl AgentError {
    /// Whether measuring the same job again on this agent must fail the same
    /// way: a model that cannot be parsed or loaded, bad inputs, a runtime
    /// that is missing or unusable. `run` mode fails such a job at once
    /// instead of handing it back to the queue.
    pub fn is_permanent(&self) -> bool {
        !matches!(
            self,
            AgentError::Io { .. } | AgentError::Run { .. } | AgentError::Dump { .. }
        )
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, AgentError>;
