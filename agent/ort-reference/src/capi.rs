//! The few calls of onnxruntime's C API a timing loop needs, made directly
//! through the function table the library hands out (`OrtGetApiBase` ->
//! `GetApi(22)`), with the struct layouts of `ort-sys`'s generated bindings.
//!
//! Nothing here goes through the `ort` crate, so a difference between this
//! loop and the agent's `--runtime ort` is the agent's own overhead. Session
//! settings are those of the agent and of `agent/benches/`: `ORT_ENABLE_ALL`,
//! sequential execution, one inter-op thread, N intra-op threads; everything
//! else stays at the library's default (the agent's `ort` crate also asks
//! for the "max efficiency" device policy, which picks the CPU provider here
//! as the default does).

use std::ffi::{CStr, CString, c_char, c_void};
use std::path::Path;
use std::ptr::{self, null, null_mut};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ort_sys::{
    ExecutionMode, GraphOptimizationLevel, ONNXTensorElementDataType, ORT_API_VERSION,
    OrtAllocatorType, OrtApi, OrtApiBase, OrtEnv, OrtLoggingLevel, OrtMemType, OrtMemoryInfo,
    OrtSession, OrtSessionOptions, OrtStatusPtr, OrtValue,
};

/// An opened library and its environment (one per process).
pub(crate) struct Runtime {
    api: *const OrtApi,
    env: *mut OrtEnv,
    /// What the library reports, e.g. `1.32.0`.
    pub(crate) version: String,
    // Dropped last: the function table lives in the library.
    _library: libloading::Library,
}

impl Runtime {
    /// Opens `path` and asks for C API version [`ORT_API_VERSION`] (22).
    pub(crate) fn open(path: &Path) -> Result<Runtime> {
        // SAFETY: loading onnxruntime runs its initialisers, which only set up
        // its own globals; the symbol has the C signature the header gives.
        let (library, base) = unsafe {
            let library = libloading::Library::new(path)
                .with_context(|| format!("cannot open onnxruntime library {}", path.display()))?;
            let get_base: libloading::Symbol<'_, unsafe extern "C" fn() -> *const OrtApiBase> =
                library
                    .get(b"OrtGetApiBase")
                    .with_context(|| format!("{} exports no OrtGetApiBase", path.display()))?;
            let base = get_base();
            (library, base)
        };
        if base.is_null() {
            bail!("{}: OrtGetApiBase returned null", path.display());
        }
        // SAFETY: `base` points to the library's static OrtApiBase.
        let (version, api) = unsafe {
            let version = CStr::from_ptr(((*base).GetVersionString)())
                .to_string_lossy()
                .into_owned();
            (version, ((*base).GetApi)(ORT_API_VERSION))
        };
        if api.is_null() {
            bail!(
                "{}: onnxruntime {version} does not offer C API version {ORT_API_VERSION}",
                path.display()
            );
        }
        let mut runtime = Runtime {
            api,
            env: null_mut(),
            version,
            _library: library,
        };
        let mut env = null_mut();
        // SAFETY: valid out-pointer and NUL-terminated id.
        let status = unsafe {
            (runtime.api().CreateEnv)(
                OrtLoggingLevel::ORT_LOGGING_LEVEL_WARNING,
                c"ort-reference".as_ptr(),
                &mut env,
            )
        };
        runtime.check(status, "CreateEnv")?;
        runtime.env = env;
        Ok(runtime)
    }

    fn api(&self) -> &OrtApi {
        // SAFETY: checked non-null in `open`; the table is static in the
        // library, which `self` keeps loaded.
        unsafe { &*self.api }
    }

    /// Turns a returned status into a `Result`, releasing it.
    fn check(&self, status: OrtStatusPtr, call: &str) -> Result<()> {
        if status.0.is_null() {
            return Ok(());
        }
        // SAFETY: a non-null status is an OrtStatus owned by us until released.
        let message = unsafe {
            let m = CStr::from_ptr((self.api().GetErrorMessage)(status.0))
                .to_string_lossy()
                .into_owned();
            (self.api().ReleaseStatus)(status.0);
            m
        };
        bail!("{call}: {message}")
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if !self.env.is_null() {
            // SAFETY: created by CreateEnv, released once.
            unsafe { (self.api().ReleaseEnv)(self.env) }
        }
    }
}

/// One float input of the model: its name and a fixed shape.
#[derive(Debug, Clone)]
pub(crate) struct Input {
    pub(crate) name: String,
    pub(crate) shape: Vec<i64>,
}

impl Input {
    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        self.shape.iter().map(|&d| d as usize).product()
    }
}

/// A session over one model, with its input and output names.
pub(crate) struct Session<'r> {
    rt: &'r Runtime,
    session: *mut OrtSession,
    memory: *mut OrtMemoryInfo,
    pub(crate) inputs: Vec<Input>,
    input_names: Vec<CString>,
    output_names: Vec<CString>,
}

/// One output of a run.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    pub(crate) shape: Vec<i64>,
    /// Empty when the output is not float32.
    pub(crate) values: Vec<f32>,
}

impl<'r> Session<'r> {
    /// Creates the session from ONNX bytes with the agent's settings.
    pub(crate) fn new(rt: &'r Runtime, bytes: &[u8], intra_threads: usize) -> Result<Session<'r>> {
        let options = session_options(rt, intra_threads)?;
        let mut session = null_mut();
        // SAFETY: valid env, options, buffer and out-pointer.
        let status = unsafe {
            (rt.api().CreateSessionFromArray)(
                rt.env,
                bytes.as_ptr().cast(),
                bytes.len(),
                options,
                &mut session,
            )
        };
        // SAFETY: the options were created above and are not used again.
        unsafe { (rt.api().ReleaseSessionOptions)(options) };
        rt.check(status, "CreateSessionFromArray")?;
        let mut memory = null_mut();
        // SAFETY: valid out-pointer.
        let status = unsafe {
            (rt.api().CreateCpuMemoryInfo)(
                OrtAllocatorType::OrtArenaAllocator,
                OrtMemType::OrtMemTypeDefault,
                &mut memory,
            )
        };
        let mut s = Session {
            rt,
            session,
            memory,
            inputs: vec![],
            input_names: vec![],
            output_names: vec![],
        };
        rt.check(status, "CreateCpuMemoryInfo")?;
        s.read_io()?;
        Ok(s)
    }

    /// The outputs' names, in the graph's order.
    pub(crate) fn output_names(&self) -> Vec<String> {
        self.output_names
            .iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect()
    }

    /// Reads the names of inputs and outputs and the inputs' shapes.
    fn read_io(&mut self) -> Result<()> {
        let api = self.rt.api();
        let (mut n_in, mut n_out) = (0usize, 0usize);
        // SAFETY: valid session and out-pointers.
        self.rt.check(
            unsafe { (api.SessionGetInputCount)(self.session, &mut n_in) },
            "SessionGetInputCount",
        )?;
        self.rt.check(
            unsafe { (api.SessionGetOutputCount)(self.session, &mut n_out) },
            "SessionGetOutputCount",
        )?;
        for i in 0..n_in {
            let name = self.name(i, api.SessionGetInputName)?;
            let shape = self.input_shape(i, &name)?;
            self.input_names.push(CString::new(name.clone())?);
            self.inputs.push(Input { name, shape });
        }
        for i in 0..n_out {
            let name = self.name(i, api.SessionGetOutputName)?;
            self.output_names.push(CString::new(name)?);
        }
        Ok(())
    }

    fn name(
        &self,
        index: usize,
        get: unsafe extern "system" fn(
            *const OrtSession,
            usize,
            *mut ort_sys::OrtAllocator,
            *mut *mut c_char,
        ) -> OrtStatusPtr,
    ) -> Result<String> {
        let api = self.rt.api();
        let mut allocator = null_mut();
        let mut raw: *mut c_char = null_mut();
        // SAFETY: the default allocator is static; the name it allocates is
        // copied, then freed with the same allocator.
        unsafe {
            self.rt.check(
                (api.GetAllocatorWithDefaultOptions)(&mut allocator),
                "GetAllocatorWithDefaultOptions",
            )?;
            self.rt.check(
                get(self.session, index, allocator, &mut raw),
                "SessionGet{Input,Output}Name",
            )?;
            let name = CStr::from_ptr(raw).to_string_lossy().into_owned();
            self.rt
                .check((api.AllocatorFree)(allocator, raw.cast()), "AllocatorFree")?;
            Ok(name)
        }
    }

    /// The input's shape; it must be float32 with fixed dimensions.
    fn input_shape(&self, index: usize, name: &str) -> Result<Vec<i64>> {
        let api = self.rt.api();
        let mut type_info = null_mut();
        // SAFETY: type_info is released below; tensor_info borrows from it.
        unsafe {
            self.rt.check(
                (api.SessionGetInputTypeInfo)(self.session, index, &mut type_info),
                "SessionGetInputTypeInfo",
            )?;
            let result = (|| {
                let mut tensor_info = null();
                self.rt.check(
                    (api.CastTypeInfoToTensorInfo)(type_info, &mut tensor_info),
                    "CastTypeInfoToTensorInfo",
                )?;
                if tensor_info.is_null() {
                    bail!("input `{name}` is not a tensor");
                }
                let (element, dims) = self.type_and_dims(tensor_info)?;
                if element != ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT {
                    bail!(
                        "input `{name}` has element type {element:?}; the reference feeds float32 only"
                    );
                }
                if dims.iter().any(|&d| d <= 0) {
                    bail!(
                        "input `{name}` has a free dimension ({dims:?}); the reference needs fixed shapes"
                    );
                }
                Ok(dims)
            })();
            (api.ReleaseTypeInfo)(type_info);
            result
        }
    }

    /// Runs once on `data` (one buffer per input, in input order) and
    /// returns the wall and thread-CPU time of the `Run` call alone. The
    /// input values are made before and the outputs released after the
    /// timed region, as the agent does.
    pub(crate) fn run(
        &mut self,
        data: &mut [Vec<f32>],
        keep: bool,
    ) -> Result<(Duration, Duration, Vec<Output>)> {
        let api = self.rt.api();
        let values = self.input_values(data)?;
        let mut outputs: Vec<*mut OrtValue> = vec![null_mut(); self.output_names.len()];
        let in_names: Vec<*const c_char> = self.input_names.iter().map(|n| n.as_ptr()).collect();
        let out_names: Vec<*const c_char> = self.output_names.iter().map(|n| n.as_ptr()).collect();
        let in_values: Vec<*const OrtValue> = values.iter().map(|&v| v.cast_const()).collect();
        let cpu0 = thread_cpu_time();
        let start = Instant::now();
        // SAFETY: names, values and output slots are valid for the call.
        let status = unsafe {
            (api.Run)(
                self.session,
                null(),
                in_names.as_ptr(),
                in_values.as_ptr(),
                in_values.len(),
                out_names.as_ptr(),
                out_names.len(),
                outputs.as_mut_ptr(),
            )
        };
        let wall = start.elapsed();
        let cpu = thread_cpu_time().saturating_sub(cpu0);
        let result = self.rt.check(status, "Run").and_then(|()| {
            if keep {
                outputs.iter().map(|&v| self.output_values(v)).collect()
            } else {
                Ok(vec![])
            }
        });
        // SAFETY: each value was created by CreateTensorWithDataAsOrtValue or
        // by Run, and is released once.
        unsafe {
            for v in values
                .into_iter()
                .chain(outputs.into_iter().filter(|v| !v.is_null()))
            {
                (api.ReleaseValue)(v);
            }
        }
        result.map(|s| (wall, cpu, s))
    }

    /// Wraps each buffer as a tensor (no copy), in input order.
    fn input_values(&self, data: &mut [Vec<f32>]) -> Result<Vec<*mut OrtValue>> {
        let api = self.rt.api();
        let mut values = Vec::with_capacity(self.inputs.len());
        for (input, buffer) in self.inputs.iter().zip(data.iter_mut()) {
            if buffer.len() != input.len() {
                bail!(
                    "input `{}`: {} values for shape {:?}",
                    input.name,
                    buffer.len(),
                    input.shape
                );
            }
            let mut value = null_mut();
            // SAFETY: the buffer outlives the value (released in `run`).
            let status = unsafe {
                (api.CreateTensorWithDataAsOrtValue)(
                    self.memory,
                    buffer.as_mut_ptr().cast::<c_void>(),
                    buffer.len() * size_of::<f32>(),
                    input.shape.as_ptr(),
                    input.shape.len(),
                    ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT,
                    &mut value,
                )
            };
            if let Err(e) = self.rt.check(status, "CreateTensorWithDataAsOrtValue") {
                // SAFETY: values made so far are released once.
                unsafe { values.iter().for_each(|&v| (api.ReleaseValue)(v)) };
                return Err(e);
            }
            values.push(value);
        }
        Ok(values)
    }

    /// Shape and values of a float output (values empty if not float32).
    /// Element type and dimensions of a tensor's type information.
    fn type_and_dims(
        &self,
        info: *const ort_sys::OrtTensorTypeAndShapeInfo,
    ) -> Result<(ONNXTensorElementDataType, Vec<i64>)> {
        let api = self.rt.api();
        let mut element = ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
        let mut rank = 0usize;
        // SAFETY: `info` is valid for the caller's scope; the out-pointers
        // and the dims buffer (of `rank` elements) are ours.
        unsafe {
            let e = (api.GetTensorElementType)(info, &mut element);
            self.rt.check(e, "GetTensorElementType")?;
            let r = (api.GetDimensionsCount)(info, &mut rank);
            self.rt.check(r, "GetDimensionsCount")?;
            let mut dims = vec![0i64; rank];
            let d = (api.GetDimensions)(info, dims.as_mut_ptr(), rank);
            self.rt.check(d, "GetDimensions")?;
            Ok((element, dims))
        }
    }

    fn output_values(&self, value: *mut OrtValue) -> Result<Output> {
        let api = self.rt.api();
        // SAFETY: `value` is a tensor returned by Run; its data has as many
        // elements as its shape says, of the type read.
        unsafe {
            let mut info = null_mut();
            self.rt.check(
                (api.GetTensorTypeAndShape)(value, &mut info),
                "GetTensorTypeAndShape",
            )?;
            let shape = self.type_and_dims(info);
            (api.ReleaseTensorTypeAndShapeInfo)(info);
            let (element, shape) = shape?;
            if element != ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT {
                return Ok(Output {
                    shape,
                    values: vec![],
                });
            }
            let count = shape
                .iter()
                .map(|&d| usize::try_from(d).unwrap_or(0))
                .product();
            let mut data: *mut c_void = ptr::null_mut();
            self.rt.check(
                (api.GetTensorMutableData)(value, &mut data),
                "GetTensorMutableData",
            )?;
            let values = std::slice::from_raw_parts(data.cast::<f32>(), count).to_vec();
            Ok(Output { shape, values })
        }
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        // SAFETY: both were created in `new` and are released once.
        unsafe {
            if !self.memory.is_null() {
                (self.rt.api().ReleaseMemoryInfo)(self.memory);
            }
            (self.rt.api().ReleaseSession)(self.session);
        }
    }
}

/// Session options as the agent sets them.
fn session_options(rt: &Runtime, intra_threads: usize) -> Result<*mut OrtSessionOptions> {
    let api = rt.api();
    let mut options = null_mut();
    // SAFETY: valid out-pointer; the options are released by the caller (or
    // here when a setter fails).
    unsafe {
        rt.check(
            (api.CreateSessionOptions)(&mut options),
            "CreateSessionOptions",
        )?;
        let set = (|| {
            let level = GraphOptimizationLevel::ORT_ENABLE_ALL;
            rt.check(
                (api.SetSessionGraphOptimizationLevel)(options, level),
                "SetSessionGraphOptimizationLevel",
            )?;
            let threads = i32::try_from(intra_threads).context("--threads")?;
            rt.check(
                (api.SetIntraOpNumThreads)(options, threads),
                "SetIntraOpNumThreads",
            )?;
            rt.check(
                (api.SetInterOpNumThreads)(options, 1),
                "SetInterOpNumThreads",
            )?;
            rt.check(
                (api.SetSessionExecutionMode)(options, ExecutionMode::ORT_SEQUENTIAL),
                "SetSessionExecutionMode",
            )
        })();
        if let Err(e) = set {
            (api.ReleaseSessionOptions)(options);
            return Err(e);
        }
    }
    Ok(options)
}

/// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`).
pub(crate) fn thread_cpu_time() -> Duration {
    use rustix::time::{ClockId, clock_gettime};
    Duration::try_from(clock_gettime(ClockId::ThreadCPUTime)).unwrap_or(Duration::ZERO)
}
