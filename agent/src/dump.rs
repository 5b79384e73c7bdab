//! `--dump-output`: the first inference's inputs and outputs as JSON, so
//! another runtime (Python onnxruntime in CI) can run the same model on the
//! same input and compare.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tract_onnx::prelude::{DatumType, Tensor};

use crate::error::{AgentError, Result};

/// One tensor, values widened to f64 (exact for f32 and for the small
/// integers the agent draws).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorDump {
    /// Name in the graph.
    pub name: String,
    /// Element type as ONNX names it (`float`, `int64`, ...).
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Values in row-major order.
    pub values: Vec<f64>,
}

/// The first inference of a measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDump {
    /// The model.
    pub model: String,
    /// The runtime that produced `outputs` (`tract`, `ort`).
    pub runtime: String,
    /// Its inputs.
    pub inputs: Vec<TensorDump>,
    /// Its outputs, in the graph's output order.
    pub outputs: Vec<TensorDump>,
}

impl RunDump {
    /// Writes the dump as one JSON document.
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string(self).map_err(|e| AgentError::Dump {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        std::fs::write(path, text).map_err(|e| AgentError::Dump {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }
}

/// ONNX's name of a tract element type.
pub fn dtype_name(dt: DatumType) -> &'static str {
    match dt {
        DatumType::F32 => "float",
        DatumType::F64 => "double",
        DatumType::F16 => "float16",
        DatumType::I64 => "int64",
        DatumType::I32 => "int32",
        DatumType::I8 => "int8",
        DatumType::U8 => "uint8",
        DatumType::Bool => "bool",
        _ => "other",
    }
}

/// A tract tensor as a dump (inputs of every runtime, tract's outputs).
pub fn tensor_dump(name: &str, tensor: &Tensor) -> Result<TensorDump> {
    let widened = tensor.cast_to::<f64>().map_err(|e| AgentError::Dump {
        path: name.to_string(),
        reason: format!("cannot widen {:?} to f64: {e:#}", tensor.datum_type()),
    })?;
    let values = widened
        .to_plain_array_view::<f64>()
        .map_err(|e| AgentError::Dump {
            path: name.to_string(),
            reason: format!("{e:#}"),
        })?
        .iter()
        .copied()
        .collect();
    Ok(TensorDump {
        name: name.to_string(),
        dtype: dtype_name(tensor.datum_type()).to_string(),
        shape: tensor.shape().to_vec(),
        values,
    })
}
