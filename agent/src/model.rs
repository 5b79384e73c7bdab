//! Loading an ONNX model into tract with concrete input shapes.
//!
//! Any model, not only ours: float and integer inputs, symbolic dimensions
//! fixed by `--input name:shape[:dtype]`, and a retry that ignores stale
//! `value_info` shape annotations, which make some exported models fail
//! tract's analysis although the graph itself is fine.

use std::str::FromStr;
use std::time::Instant;

use prost::Message;
use rand::Rng;
use tract_onnx::pb;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::optim::Optimizer;

use crate::error::{AgentError, Result};

/// An `--input name:shape[:dtype]` override, e.g. `input:1x3x224x224:f32`.
/// The name may be omitted (`1x3x32x32`) for single-input models; `,` also
/// separates dimensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    /// Input name, or `None` for "the only input".
    pub name: Option<String>,
    /// Concrete shape.
    pub shape: Vec<usize>,
    /// Element type, if overridden.
    pub dtype: Option<DatumType>,
}

impl FromStr for InputSpec {
    type Err = AgentError;
    fn from_str(spec: &str) -> Result<Self> {
        let bad = |reason: &str| AgentError::BadInputSpec {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let is_shape = |s: &str| {
            !s.is_empty()
                && s.split(['x', ','])
                    .all(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        };
        let (name, shape, dtype) = match parts.as_slice() {
            [shape] if is_shape(shape) => (None, *shape, None),
            [name, shape] if is_shape(shape) => (Some(*name), *shape, None),
            [shape, dtype] if is_shape(shape) => (None, *shape, Some(*dtype)),
            [name, shape, dtype] => (Some(*name), *shape, Some(*dtype)),
            _ => {
                return Err(bad(
                    "expected [NAME:]SHAPE[:DTYPE], e.g. input:1x3x32x32:f32",
                ));
            }
        };
        if !is_shape(shape) {
            return Err(bad(&format!(
                "shape `{shape}` must be dimensions separated by `x`"
            )));
        }
        let shape = shape
            .split(['x', ','])
            .map(|d| d.parse::<usize>().map_err(|e| bad(&e.to_string())))
            .collect::<Result<Vec<_>>>()?;
        if shape.contains(&0) {
            return Err(bad("dimensions must be positive"));
        }
        let dtype = dtype.map(parse_dtype).transpose().map_err(|e| bad(&e))?;
        Ok(InputSpec {
            name: name.map(str::to_string),
            shape,
            dtype,
        })
    }
}

fn parse_dtype(s: &str) -> std::result::Result<DatumType, String> {
    Ok(match s {
        "f32" | "float" | "float32" => DatumType::F32,
        "f64" | "double" | "float64" => DatumType::F64,
        "f16" | "float16" => DatumType::F16,
        "i64" | "int64" => DatumType::I64,
        "i32" | "int32" => DatumType::I32,
        "i8" | "int8" => DatumType::I8,
        "u8" | "uint8" => DatumType::U8,
        "bool" => DatumType::Bool,
        other => {
            return Err(format!(
                "unknown dtype `{other}` (f32, f64, f16, i64, i32, i8, u8, bool)"
            ));
        }
    })
}

/// ONNX `TensorProto.DataType` to tract.
fn onnx_dtype(code: i32) -> Option<DatumType> {
    Some(match code {
        1 => DatumType::F32,
        2 => DatumType::U8,
        3 => DatumType::I8,
        6 => DatumType::I32,
        7 => DatumType::I64,
        9 => DatumType::Bool,
        10 => DatumType::F16,
        11 => DatumType::F64,
        _ => return None,
    })
}

/// One input of a loaded model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInput {
    /// Name in the graph.
    pub name: String,
    /// Element type.
    pub dtype: DatumType,
    /// Concrete shape.
    pub shape: Vec<usize>,
}

/// A model ready to run, with what loading it cost.
#[derive(Debug)]
pub struct LoadedModel {
    /// Display name (file name or arch).
    pub name: String,
    /// The optimised, runnable plan.
    pub plan: Arc<TypedSimplePlan>,
    /// Inputs with concrete shapes.
    pub inputs: Vec<ModelInput>,
    /// Names of the graph's outputs, in order.
    pub outputs: Vec<String>,
    /// Parse + analysis time, ms.
    pub load_ms: f64,
    /// Optimisation + planning time, ms.
    pub optimize_ms: f64,
    /// Whether the retry ignoring `value_info` was needed.
    pub ignored_value_info: bool,
    /// Whether tract's optimisation had to leave out its axis-change pass
    /// (see [`optimize`]).
    pub skipped_axis_pass: bool,
}

impl LoadedModel {
    /// Loads ONNX bytes with optional input overrides.
    pub fn from_bytes(name: &str, bytes: &[u8], overrides: &[InputSpec]) -> Result<LoadedModel> {
        let (proto, inputs) = parse(name, bytes, overrides)?;
        if let Some(graph) = &proto.graph {
            check_operators(name, graph)?;
        }
        match build(name, &proto, &inputs, false) {
            Ok(model) => Ok(model),
            Err(first) => build(name, &proto, &inputs, true).map_err(|_| first),
        }
    }

    /// Loads a file.
    pub fn from_path(path: &std::path::Path, overrides: &[InputSpec]) -> Result<LoadedModel> {
        let bytes = std::fs::read(path).map_err(|source| AgentError::Io {
            path: path.display().to_string(),
            source,
        })?;
        LoadedModel::from_bytes(&path.display().to_string(), &bytes, overrides)
    }

    /// Fresh random inputs of the right shapes and types (see [`random_inputs`]).
    pub fn random_inputs(&self, rng: &mut impl Rng) -> Result<TVec<TValue>> {
        Ok(random_inputs(&self.inputs, rng)?
            .into_iter()
            .map(TValue::from)
            .collect())
    }
}

/// Decodes ONNX bytes and resolves the graph's inputs to concrete shapes and
/// types, with the overrides applied: what every runtime needs before it
/// builds its own plan of the model.
pub fn parse(
    name: &str,
    bytes: &[u8],
    overrides: &[InputSpec],
) -> Result<(pb::ModelProto, Vec<ModelInput>)> {
    let proto = pb::ModelProto::decode(bytes).map_err(|e| AgentError::Corrupt {
        name: name.to_string(),
        reason: e.to_string(),
    })?;
    let graph = proto.graph.as_ref().ok_or_else(|| AgentError::Corrupt {
        name: name.to_string(),
        reason: "the model has no graph".into(),
    })?;
    if graph.node.is_empty() && bytes.len() < 16 {
        return Err(AgentError::Corrupt {
            name: name.to_string(),
            reason: "empty model".into(),
        });
    }
    let inputs = resolve_inputs(graph, overrides)?;
    Ok((proto, inputs))
}

/// Names of the graph's outputs, in order.
pub fn output_names(proto: &pb::ModelProto) -> Vec<String> {
    proto
        .graph
        .as_ref()
        .map(|g| g.output.iter().map(|o| o.name.clone()).collect())
        .unwrap_or_default()
}

/// Fresh random inputs of the right shapes and types: floats uniform in
/// [-1, 1), integers in [0, 8) (safe as indices for most gather ops). Every
/// runtime draws its inputs here, so one seed gives tract and onnxruntime
/// the same data.
pub fn random_inputs(inputs: &[ModelInput], rng: &mut impl Rng) -> Result<Vec<Tensor>> {
    inputs
        .iter()
        .map(|input| random_tensor(input, rng))
        .collect()
}

fn check_operators(name: &str, graph: &pb::GraphProto) -> Result<()> {
    let register = tract_onnx::onnx().op_register;
    let mut unknown: Vec<String> = graph
        .node
        .iter()
        .filter(|n| n.domain.is_empty() || n.domain == "ai.onnx")
        .filter(|n| !register.0.contains_key(&n.op_type))
        .map(|n| n.op_type.clone())
        .collect();
    unknown.sort();
    unknown.dedup();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(AgentError::UnsupportedOperator {
            name: name.to_string(),
            ops: unknown.join(", "),
        })
    }
}

/// Real graph inputs (initializers listed as inputs by old exporters are
/// skipped) with overrides applied.
fn resolve_inputs(graph: &pb::GraphProto, overrides: &[InputSpec]) -> Result<Vec<ModelInput>> {
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let declared: Vec<&pb::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains(i.name.as_str()))
        .collect();
    for spec in overrides {
        match &spec.name {
            Some(n) if !declared.iter().any(|d| &d.name == n) => {
                return Err(AgentError::BadInputSpec {
                    spec: n.clone(),
                    reason: format!(
                        "the model has no input `{n}` (inputs: {})",
                        declared
                            .iter()
                            .map(|d| d.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
            None if declared.len() != 1 => {
                return Err(AgentError::BadInputSpec {
                    spec: format!("{:?}", spec.shape),
                    reason: format!(
                        "the model has {} inputs: name the input (NAME:SHAPE)",
                        declared.len()
                    ),
                });
            }
            _ => {}
        }
    }
    declared
        .iter()
        .map(|d| {
            let spec = overrides
                .iter()
                .find(|s| s.name.as_deref() == Some(d.name.as_str()) || s.name.is_none());
            let tensor = d.r#type.as_ref().and_then(|t| match &t.value {
                Some(pb::type_proto::Value::TensorType(tt)) => Some(tt),
                _ => None,
            });
            let declared_dtype = tensor.and_then(|t| onnx_dtype(t.elem_type));
            let dtype = spec
                .and_then(|s| s.dtype)
                .or(declared_dtype)
                .unwrap_or(DatumType::F32);
            let shape = match spec {
                Some(s) => s.shape.clone(),
                None => declared_shape(&d.name, tensor)?,
            };
            Ok(ModelInput {
                name: d.name.clone(),
                dtype,
                shape,
            })
        })
        .collect()
}

fn declared_shape(name: &str, tensor: Option<&pb::type_proto::Tensor>) -> Result<Vec<usize>> {
    let dims = tensor
        .and_then(|t| t.shape.as_ref())
        .map(|s| s.dim.as_slice())
        .ok_or_else(|| AgentError::SymbolicInput {
            input: name.to_string(),
            dims: "(no shape)".into(),
        })?;
    let mut shape = Vec::with_capacity(dims.len());
    let mut symbolic = Vec::new();
    for (i, dim) in dims.iter().enumerate() {
        match &dim.value {
            Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) if *v > 0 => {
                shape.push(*v as usize)
            }
            Some(pb::tensor_shape_proto::dimension::Value::DimParam(p)) => {
                symbolic.push(format!("#{i}={p}"))
            }
            _ => symbolic.push(format!("#{i}=?")),
        }
    }
    if symbolic.is_empty() {
        Ok(shape)
    } else {
        Err(AgentError::SymbolicInput {
            input: name.to_string(),
            dims: symbolic.join(", "),
        })
    }
}

fn build(
    name: &str,
    proto: &pb::ModelProto,
    inputs: &[ModelInput],
    ignore_value_info: bool,
) -> Result<LoadedModel> {
    let analysis = |e: TractError| AgentError::Analysis {
        name: name.to_string(),
        reason: format!("{e:#}"),
    };
    let start = Instant::now();
    let mut model = tract_onnx::onnx()
        .with_ignore_value_info(ignore_value_info)
        .model_for_proto_model(proto)
        .map_err(analysis)?;
    for (i, input) in inputs.iter().enumerate() {
        model = model
            .with_input_fact(i, InferenceFact::dt_shape(input.dtype, input.shape.clone()))
            .map_err(analysis)?;
    }
    let typed = model.into_typed().map_err(analysis)?;
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    let start = Instant::now();
    let (optimized, skipped_axis_pass) = optimize(typed).map_err(analysis)?;
    let plan = optimized.into_runnable().map_err(analysis)?;
    let optimize_ms = start.elapsed().as_secs_f64() * 1e3;
    Ok(LoadedModel {
        name: name.to_string(),
        plan,
        inputs: inputs.to_vec(),
        outputs: output_names(proto),
        load_ms,
        optimize_ms,
        ignored_value_info: ignore_value_info,
        skipped_axis_pass,
    })
}

/// tract's `into_optimized()`, or, when that fails, the same passes without
/// the axis-change pass (decluttering then code generation), which runs the
/// same kernels on the rare graph whose axis rewrite tract gets wrong (a
/// few NB201 cells in tract 0.23.9, where a folded zero branch turns a conv
/// bias into a 64x1 tensor; docs/agent-bench.md). The first error is the
/// one reported when the retry fails too. The flag says whether the pass
/// was left out. The clone is shallow: constants are shared tensors.
fn optimize(typed: TypedModel) -> TractResult<(TypedModel, bool)> {
    let first = match typed.clone().into_optimized() {
        Ok(model) => return Ok((model, false)),
        Err(e) => e,
    };
    let mut declutter = Optimizer::declutter();
    declutter
        .passes
        .retain(|pass| format!("{pass:?}") != "ChangeAxes");
    let mut model = typed;
    let retried = declutter
        .session()
        .optimize(&mut model)
        .and_then(|()| model.optimize());
    match retried {
        Ok(()) => Ok((model, true)),
        Err(_) => Err(first),
    }
}

fn random_tensor(input: &ModelInput, rng: &mut impl Rng) -> Result<Tensor> {
    let n: usize = input.shape.iter().product();
    let shape = &input.shape;
    let tensor = match input.dtype {
        DatumType::F32 => {
            let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
            Tensor::from_shape(shape, &v)
        }
        DatumType::F64 => {
            let v: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
            Tensor::from_shape(shape, &v)
        }
        DatumType::I64 => {
            let v: Vec<i64> = (0..n).map(|_| rng.random_range(0..8)).collect();
            Tensor::from_shape(shape, &v)
        }
        DatumType::I32 => {
            let v: Vec<i32> = (0..n).map(|_| rng.random_range(0..8)).collect();
            Tensor::from_shape(shape, &v)
        }
        DatumType::Bool => {
            let v: Vec<bool> = (0..n).map(|_| rng.random_bool(0.5)).collect();
            Tensor::from_shape(shape, &v)
        }
        other => {
            // f16, i8, u8: draw as f32 and cast, tract knows the conversion.
            let v: Vec<f32> = (0..n).map(|_| rng.random_range(0.0..8.0)).collect();
            Tensor::from_shape(shape, &v).and_then(|t| t.cast_to_dt(other).map(|c| c.into_owned()))
        }
    };
    tensor.map_err(|e| AgentError::Run {
        name: input.name.clone(),
        reason: format!("cannot build a random input: {e:#}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_specs_parse() {
        let s: InputSpec = "input:1x3x32x32:f32".parse().unwrap();
        assert_eq!(s.name.as_deref(), Some("input"));
        assert_eq!(s.shape, vec![1, 3, 32, 32]);
        assert_eq!(s.dtype, Some(DatumType::F32));
        let s: InputSpec = "1,3,8,8".parse().unwrap();
        assert_eq!(s.name, None);
        assert_eq!(s.shape, vec![1, 3, 8, 8]);
        let s: InputSpec = "ids:1x16:i64".parse().unwrap();
        assert_eq!(s.dtype, Some(DatumType::I64));
        for bad in ["", "x:", "a:1xbx3", "a:1x0", "a:1x3:complex", "a:b:c:d"] {
            assert!(bad.parse::<InputSpec>().is_err(), "{bad}");
        }
    }

    fn nb201(index: usize) -> (Vec<u8>, LoadedModel) {
        let arch = nasflat_shared::Nb201Arch::from_index(index).unwrap();
        let config = nasflat_onnx::Nb201Config::default();
        let bytes = nasflat_onnx::encode(&nasflat_onnx::nb201_model(&arch, &config).unwrap());
        let model = LoadedModel::from_bytes(&format!("nb201-{index}"), &bytes, &[]).unwrap();
        (bytes, model)
    }

    /// NB201 cell 14551 (`|none~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|none~0|
    /// avg_pool_3x3~1|nor_conv_3x3~2|`) is one of the six tract 0.23.9's
    /// `into_optimized()` rejects; the retry without the axis pass must load
    /// it, say so, and compute what the unoptimised graph computes.
    #[test]
    fn cells_the_axis_pass_rejects_load_without_it_and_compute_the_same() {
        let (bytes, model) = nb201(14551);
        assert!(model.skipped_axis_pass);
        let (proto, inputs) = parse("ref", &bytes, &[]).unwrap();
        let reference = tract_onnx::onnx()
            .model_for_proto_model(&proto)
            .unwrap()
            .with_input_fact(
                0,
                InferenceFact::dt_shape(f32::datum_type(), inputs[0].shape.clone()),
            )
            .unwrap()
            .into_typed()
            .unwrap()
            .into_runnable()
            .unwrap();
        let x = model.random_inputs(&mut rand::rng()).unwrap();
        let ours = model.plan.run(x.clone()).unwrap();
        let want = reference.run(x).unwrap();
        let ours = ours[0].to_plain_array_view::<f32>().unwrap();
        let want = want[0].to_plain_array_view::<f32>().unwrap();
        assert_eq!(ours.len(), 10);
        for (a, b) in ours.iter().zip(want.iter()) {
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{a} vs {b}");
        }
        assert!(!nb201(0).1.skipped_axis_pass);
    }
}
