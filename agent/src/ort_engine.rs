//! onnxruntime as an [`Engine`], through the `ort` crate with the library
//! opened at run time (`load-dynamic`): nothing of onnxruntime is linked
//! into the agent, the board brings its own `libonnxruntime.so.1.N`.
//!
//! Session settings match what a deployment (and the Python benchmark in
//! `agent/benches/`) uses: `ORT_ENABLE_ALL`, sequential execution, one
//! inter-op thread, `intra_threads` intra-op threads, CPU provider.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{DynValue, Tensor as OrtTensor};
use tract_onnx::prelude::{DatumType, Tensor};

use crate::dump::TensorDump;
use crate::engine::Engine;
use crate::error::{AgentError, Result};
use crate::model::ModelInput;
use crate::ort_library::{self, MIN_ORT_MINOR};

/// The library this process opened (a process can hold one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedLibrary {
    /// Path as given.
    pub path: PathBuf,
    /// Its version, e.g. `1.32.0`.
    pub version: String,
}

/// The library and the onnxruntime environment every session is made in.
static LOADED: Mutex<Option<(LoadedLibrary, Environment)>> = Mutex::new(None);

/// Opens the onnxruntime library once per process and checks its version.
pub fn load_library(path: &Path) -> Result<LoadedLibrary> {
    loaded(path).map(|(lib, _)| lib)
}

/// The library of `path` and its environment, opening it on first use.
fn loaded(path: &Path) -> Result<(LoadedLibrary, Environment)> {
    let mut loaded = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((lib, env)) = loaded.as_ref() {
        return if lib.path == path {
            Ok((lib.clone(), env.clone()))
        } else {
            Err(AgentError::OrtLibraryConflict {
                loaded: lib.path.display().to_string(),
                asked: path.display().to_string(),
            })
        };
    }
    ort_library::precheck(path)?;
    let env = ort::init_from(path)
        .map_err(|e| load_error(path, e))?
        .with_name("nasflat-agent")
        .build()
        .map_err(|e| AgentError::OrtLibraryInvalid {
            path: path.display().to_string(),
            reason: format!("cannot create an onnxruntime environment: {e}"),
        })?;
    let version = library_version(path, ort::info());
    let lib = LoadedLibrary {
        path: path.to_path_buf(),
        version,
    };
    *loaded = Some((lib.clone(), env.clone()));
    Ok((lib, env))
}

fn load_error(path: &Path, e: ort::LoadDynamicError) -> AgentError {
    use ort::LoadDynamicError as E;
    match e {
        E::Dlopen { error, .. } => ort_library::dlopen_error(path, &error.to_string()),
        E::MissingApi { .. } => AgentError::OrtLibraryInvalid {
            path: path.display().to_string(),
            reason: "it does not export `OrtGetApiBase` (not an onnxruntime library)".into(),
        },
        E::InvalidVersionString => AgentError::OrtLibraryInvalid {
            path: path.display().to_string(),
            reason: "its version string is malformed".into(),
        },
        E::BadVersion { version_str, .. } => AgentError::OrtLibraryTooOld {
            path: path.display().to_string(),
            found: version_str,
            required_minor: MIN_ORT_MINOR,
        },
    }
}

/// The library's version. The `ort` crate checks the version the library
/// reports (>= 1.22) but does not hand it out, and reading it ourselves
/// would take `unsafe` FFI; onnxruntime names its library file
/// `libonnxruntime.so.MAJOR.MINOR.PATCH` (wheels, release tarballs, distro
/// packages), so the version is read from the file name, links resolved;
/// then from the build-info string of release builds
/// (`git-branch=rel-1.32.0`); else it is recorded as unknown.
pub fn library_version(path: &Path, info: &str) -> String {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let from_name = [real.as_path(), path].into_iter().find_map(|p| {
        let name = p.file_name()?.to_str()?;
        let version = name.split_once(".so.")?.1;
        (version.split('.').count() == 3 && ort_library::minor_version(version).is_some())
            .then(|| version.to_string())
    });
    let from_info = || {
        let branch = info.split("git-branch=").nth(1)?.split([',', ' ']).next()?;
        let version = branch.strip_prefix("rel-")?;
        ort_library::minor_version(version).map(|_| version.to_string())
    };
    from_name
        .or_else(from_info)
        .unwrap_or_else(|| format!("unknown (>= 1.{MIN_ORT_MINOR})"))
}

/// A model loaded into an onnxruntime session.
pub struct OrtModel {
    name: String,
    session: Session,
    inputs: Vec<ModelInput>,
    outputs: Vec<String>,
    /// Session creation (parse, graph optimisation, kernel setup), ms.
    pub session_ms: f64,
}

impl OrtModel {
    /// Creates the session from ONNX bytes; `inputs` are the resolved inputs
    /// ([`crate::model::parse`]).
    pub fn load(
        library: &Path,
        name: &str,
        bytes: &[u8],
        inputs: Vec<ModelInput>,
        outputs: Vec<String>,
        intra_threads: usize,
    ) -> Result<OrtModel> {
        let refused = |reason: String| AgentError::OrtLoad {
            name: name.to_string(),
            reason,
        };
        if let Some(bad) = inputs
            .iter()
            .find(|i| ort_dtype_supported(i.dtype).is_none())
        {
            return Err(refused(format!(
                "input `{}` has element type {:?}, which the agent cannot feed to onnxruntime yet",
                bad.name, bad.dtype
            )));
        }
        let (_, env) = loaded(library)?;
        let start = Instant::now();
        let session = Session::builder(&env)
            .map_err(|e| refused(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| refused(e.to_string()))?
            .with_intra_threads(intra_threads)
            .map_err(|e| refused(e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| refused(e.to_string()))?
            .with_parallel_execution(false)
            .map_err(|e| refused(e.to_string()))?
            .commit_from_memory(bytes)
            .map_err(|e| refused(e.to_string()))?;
        Ok(OrtModel {
            name: name.to_string(),
            session,
            inputs,
            outputs,
            session_ms: start.elapsed().as_secs_f64() * 1e3,
        })
    }
}

fn ort_dtype_supported(dt: DatumType) -> Option<()> {
    matches!(
        dt,
        DatumType::F32
            | DatumType::F64
            | DatumType::I64
            | DatumType::I32
            | DatumType::I8
            | DatumType::U8
            | DatumType::Bool
    )
    .then_some(())
}

fn to_ort(t: &Tensor) -> std::result::Result<DynValue, String> {
    let shape: Vec<i64> = t.shape().iter().map(|&d| d as i64).collect();
    fn make<T>(shape: Vec<i64>, t: &Tensor) -> std::result::Result<DynValue, String>
    where
        T: ort::value::PrimitiveTensorElementType + tract_onnx::prelude::Datum,
    {
        let data: Vec<T> = t
            .to_plain_array_view::<T>()
            .map_err(|e| format!("{e:#}"))?
            .iter()
            .cloned()
            .collect();
        OrtTensor::from_array((shape, data))
            .map(|v| v.into_dyn())
            .map_err(|e| e.to_string())
    }
    match t.datum_type() {
        DatumType::F32 => make::<f32>(shape, t),
        DatumType::F64 => make::<f64>(shape, t),
        DatumType::I64 => make::<i64>(shape, t),
        DatumType::I32 => make::<i32>(shape, t),
        DatumType::I8 => make::<i8>(shape, t),
        DatumType::U8 => make::<u8>(shape, t),
        DatumType::Bool => make::<bool>(shape, t),
        other => Err(format!("element type {other:?} is not supported")),
    }
}

/// An output value widened to f64, if it is a numeric tensor.
fn output_dump(name: &str, value: &DynValue) -> Option<TensorDump> {
    fn widen<T: ort::value::PrimitiveTensorElementType + Copy + Into<f64>>(
        value: &DynValue,
    ) -> Option<(Vec<usize>, Vec<f64>)> {
        let (shape, data) = value.try_extract_tensor::<T>().ok()?;
        let shape = shape
            .iter()
            .map(|&d| usize::try_from(d).unwrap_or(0))
            .collect();
        Some((shape, data.iter().map(|&v| v.into()).collect()))
    }
    let (dtype, (shape, values)) = widen::<f32>(value)
        .map(|v| ("float", v))
        .or_else(|| widen::<f64>(value).map(|v| ("double", v)))
        .or_else(|| widen::<i32>(value).map(|v| ("int32", v)))
        .or_else(|| widen::<i8>(value).map(|v| ("int8", v)))
        .or_else(|| widen::<u8>(value).map(|v| ("uint8", v)))
        .or_else(|| {
            let (shape, data) = value.try_extract_tensor::<i64>().ok()?;
            let shape = shape
                .iter()
                .map(|&d| usize::try_from(d).unwrap_or(0))
                .collect();
            Some(("int64", (shape, data.iter().map(|&v| v as f64).collect())))
        })?;
    Some(TensorDump {
        name: name.to_string(),
        dtype: dtype.to_string(),
        shape,
        values,
    })
}

impl Engine for OrtModel {
    type Inputs = Vec<(String, DynValue)>;

    fn name(&self) -> &str {
        &self.name
    }

    fn model_inputs(&self) -> &[ModelInput] {
        &self.inputs
    }

    fn prepare(&self, drawn: Vec<Tensor>) -> Result<Self::Inputs> {
        self.inputs
            .iter()
            .zip(&drawn)
            .map(|(input, t)| {
                to_ort(t)
                    .map(|v| (input.name.clone(), v))
                    .map_err(|reason| AgentError::Run {
                        name: self.name.clone(),
                        reason: format!("input `{}`: {reason}", input.name),
                    })
            })
            .collect()
    }

    fn timed_run(&mut self, inputs: Self::Inputs) -> Result<Duration> {
        let start = Instant::now();
        let outputs = self.session.run(inputs).map_err(|e| AgentError::Run {
            name: self.name.clone(),
            reason: e.to_string(),
        })?;
        let elapsed = start.elapsed();
        drop(outputs);
        Ok(elapsed)
    }

    fn run_with_outputs(&mut self, inputs: Self::Inputs) -> Result<(Duration, Vec<TensorDump>)> {
        let start = Instant::now();
        let outputs = self.session.run(inputs).map_err(|e| AgentError::Run {
            name: self.name.clone(),
            reason: e.to_string(),
        })?;
        let elapsed = start.elapsed();
        let mut dumps = Vec::with_capacity(outputs.len());
        for (i, (name, value)) in outputs.iter().enumerate() {
            let shown = self.outputs.get(i).map_or(name, String::as_str);
            dumps.push(output_dump(shown, &value).ok_or_else(|| AgentError::Run {
                name: self.name.clone(),
                reason: format!("output `{name}` is not a numeric tensor"),
            })?);
        }
        Ok((elapsed, dumps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_the_file_name_then_the_build_info() {
        let wheel = "ORT Build Info: git-branch=HEAD, git-commit-id=fab30a4, build type=Release";
        let p = Path::new("/nonexistent/onnxruntime/capi/libonnxruntime.so.1.32.0");
        assert_eq!(library_version(p, wheel), "1.32.0");
        let release =
            "ORT Build Info: git-branch=rel-1.31.1, git-commit-id=abc, build type=Release";
        let bare = Path::new("/nonexistent/libonnxruntime.so");
        assert_eq!(library_version(bare, release), "1.31.1");
        assert_eq!(library_version(bare, wheel), "unknown (>= 1.22)");
        let major_only = Path::new("/nonexistent/libonnxruntime.so.1");
        assert_eq!(library_version(major_only, wheel), "unknown (>= 1.22)");
    }
}
