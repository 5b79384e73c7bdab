//! A small ONNX graph builder over the prost messages of `tract_onnx::pb`.
//!
//! It only knows names, nodes and initializers; the CNN layers live in
//! `layers.rs`. Models are written in the form every runtime we target reads:
//! IR version 8, default-domain opset 17, float initializers as little-endian
//! `raw_data` (verified with `onnx.checker` full_check, onnxruntime and tract,
//! see `docs/STACK.md`).

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension};
use tract_onnx::pb::type_proto::{self, Tensor as TensorType};
use tract_onnx::pb::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// ONNX IR version written into every model (ONNX 1.10+ readers).
pub const IR_VERSION: i64 = 8;
/// Default-domain opset every model imports. 17 has every operator we emit in
/// its current form (BatchNormalization-15, Reshape-14, AveragePool-11, ...).
pub const OPSET_VERSION: i64 = 17;

/// How initializer values are chosen. The graph (nodes, shapes, parameter
/// count) is the same for both; only the numbers differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightInit {
    /// Uniform He-style weights and slightly perturbed BatchNorm statistics
    /// from `StdRng::seed_from_u64(seed)`: the same seed gives byte-identical
    /// files, and the numbers look like a trained network's to a runtime
    /// (no all-zero shortcuts, no denormals).
    Random {
        /// Seed of the generator.
        seed: u64,
    },
    /// Conv/Gemm weights 0 and identity BatchNorm (scale 1, bias 0, mean 0,
    /// var 1). Building skips the random number generator, which makes
    /// exhaustive structural checks over all 15,625 NB201 cells cheap.
    Zeros,
}

impl Default for WeightInit {
    fn default() -> Self {
        WeightInit::Random { seed: 0 }
    }
}

/// The values of one float initializer, before [`WeightInit`] is applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Fill {
    /// `U(-bound, bound)`; zeros under [`WeightInit::Zeros`].
    Uniform { bound: f32 },
    /// `center + U(-spread, spread)`; exactly `center` under [`WeightInit::Zeros`].
    Around { center: f32, spread: f32 },
}

/// Accumulates nodes and initializers with unique names, then assembles a
/// [`ModelProto`]. Node outputs carry the node's name, so a tensor and the
/// node producing it are found by the same string in any viewer.
pub(crate) struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    used: HashSet<String>,
    rng: Option<StdRng>,
    zero_scalar: Option<String>,
}

impl GraphBuilder {
    pub(crate) fn new(init: WeightInit) -> Self {
        let rng = match init {
            WeightInit::Random { seed } => Some(StdRng::seed_from_u64(seed)),
            WeightInit::Zeros => None,
        };
        GraphBuilder {
            nodes: Vec::new(),
            initializers: Vec::new(),
            used: HashSet::new(),
            rng,
            zero_scalar: None,
        }
    }

    /// `hint` if unused, else `hint_2`, `hint_3`, ...: ONNX requires every
    /// value name to be assigned once (SSA).
    pub(crate) fn fresh_name(&mut self, hint: &str) -> String {
        let mut name = hint.to_string();
        let mut n = 1;
        while self.used.contains(&name) {
            n += 1;
            name = format!("{hint}_{n}");
        }
        self.used.insert(name.clone());
        name
    }

    /// Adds a float initializer of shape `dims` and returns its name.
    pub(crate) fn float_initializer(&mut self, hint: &str, dims: &[usize], fill: Fill) -> String {
        let count: usize = dims.iter().product();
        let raw_data = match (&mut self.rng, fill) {
            (None, Fill::Uniform { .. }) => vec![0u8; count * 4],
            (None, Fill::Around { center, .. }) => repeat_f32(center, count),
            (Some(rng), Fill::Uniform { bound }) => random_f32(rng, count, 0.0, bound),
            (Some(rng), Fill::Around { center, spread }) => random_f32(rng, count, center, spread),
        };
        let name = self.fresh_name(hint);
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: dims.iter().map(|&d| to_i64(d)).collect(),
            data_type: DataType::Float as i32,
            raw_data,
            ..TensorProto::default()
        });
        name
    }

    /// Adds an int64 initializer (shapes for `Reshape`) and returns its name.
    pub(crate) fn int64_initializer(&mut self, hint: &str, values: &[i64]) -> String {
        let name = self.fresh_name(hint);
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: vec![to_i64(values.len())],
            data_type: DataType::Int64 as i32,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..TensorProto::default()
        });
        name
    }

    /// The shared scalar `0.0` used to build all-zero tensors (`none` nodes).
    pub(crate) fn zero_scalar(&mut self) -> String {
        if let Some(name) = &self.zero_scalar {
            return name.clone();
        }
        let name = self.fresh_name("zero");
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: Vec::new(),
            data_type: DataType::Float as i32,
            raw_data: 0f32.to_le_bytes().to_vec(),
            ..TensorProto::default()
        });
        self.zero_scalar = Some(name.clone());
        name
    }

    /// Appends a node with one output and returns the output's name.
    pub(crate) fn node(
        &mut self,
        op_type: &str,
        hint: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) -> String {
        let name = self.fresh_name(hint);
        self.nodes.push(NodeProto {
            name: name.clone(),
            op_type: op_type.to_string(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![name.clone()],
            attribute,
            ..NodeProto::default()
        });
        name
    }

    /// Assembles the model. `input` and `output` are `(name, static shape)`.
    pub(crate) fn into_model(
        self,
        graph_name: &str,
        doc: &str,
        input: (&str, &[usize]),
        output: (&str, &[usize]),
        metadata: &[(&str, String)],
    ) -> ModelProto {
        let graph = GraphProto {
            name: graph_name.to_string(),
            node: self.nodes,
            initializer: self.initializers,
            input: vec![value_info(input.0, input.1)],
            output: vec![value_info(output.0, output.1)],
            doc_string: doc.to_string(),
            ..GraphProto::default()
        };
        ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET_VERSION,
            }],
            producer_name: env!("CARGO_PKG_NAME").to_string(),
            producer_version: env!("CARGO_PKG_VERSION").to_string(),
            doc_string: doc.to_string(),
            graph: Some(graph),
            metadata_props: metadata
                .iter()
                .map(|(key, value)| StringStringEntryProto {
                    key: key.to_string(),
                    value: value.clone(),
                })
                .collect(),
            ..ModelProto::default()
        }
    }
}

/// `usize` dimension as ONNX's `int64`. Network sizes are far below
/// `i64::MAX`; saturating keeps this total without a panic path.
pub(crate) fn to_i64(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// An `INT` attribute.
pub(crate) fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Int as i32,
        i,
        ..AttributeProto::default()
    }
}

/// An `INTS` attribute.
pub(crate) fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Ints as i32,
        ints: ints.to_vec(),
        ..AttributeProto::default()
    }
}

/// A `FLOAT` attribute.
pub(crate) fn attr_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Float as i32,
        f,
        ..AttributeProto::default()
    }
}

fn value_info(name: &str, dims: &[usize]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| Dimension {
            value: Some(dimension::Value::DimValue(to_i64(d))),
            ..Dimension::default()
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(TensorType {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..TypeProto::default()
        }),
        ..ValueInfoProto::default()
    }
}

fn repeat_f32(value: f32, count: usize) -> Vec<u8> {
    let bytes = value.to_le_bytes();
    let mut out = Vec::with_capacity(count * 4);
    for _ in 0..count {
        out.extend_from_slice(&bytes);
    }
    out
}

/// `count` floats `center + U(-spread, spread)` as little-endian bytes.
///
/// Why not `rng.random_range` per element: generating all 15,625 NB201
/// models writes ~8e9 floats. Filling the buffer with the generator's bytes
/// in one call and mapping each 32-bit word to a float through the mantissa
/// (`1.m` in `[1, 2)`) is several times faster and still uniform to 2^-23.
fn random_f32(rng: &mut StdRng, count: usize, center: f32, spread: f32) -> Vec<u8> {
    let mut out = vec![0u8; count * 4];
    rng.fill_bytes(&mut out);
    for chunk in out.chunks_exact_mut(4) {
        let word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        let unit = f32::from_bits((word >> 9) | 0x3f80_0000) - 1.5; // [-0.5, 0.5)
        let value = center + 2.0 * spread * unit;
        chunk.copy_from_slice(&value.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut b = GraphBuilder::new(WeightInit::Zeros);
        assert_eq!(b.fresh_name("conv"), "conv");
        assert_eq!(b.fresh_name("conv"), "conv_2");
        assert_eq!(b.fresh_name("conv"), "conv_3");
    }

    #[test]
    fn random_values_stay_in_range_and_repeat_per_seed() {
        let mut rng = StdRng::seed_from_u64(7);
        let bytes = random_f32(&mut rng, 1000, 1.0, 0.1);
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert!(values.iter().all(|v| (0.9..1.1).contains(v)));
        let mean = values.iter().sum::<f32>() / 1000.0;
        assert!((mean - 1.0).abs() < 0.01, "{mean}");
        let again = random_f32(&mut StdRng::seed_from_u64(7), 1000, 1.0, 0.1);
        assert_eq!(bytes, again);
    }
}
