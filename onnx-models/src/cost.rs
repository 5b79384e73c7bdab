//! Parameter and FLOP counts read off a finished [`ModelProto`].
//!
//! The walker propagates static shapes through the operators the builders
//! emit and records per-node costs; it never looks at the builders' own
//! bookkeeping. Tests compare its totals with the published tables, which
//! therefore check the *graph* (every conv's shape, every skipped edge).
//!
//! "FLOPs" in the published tables follow the profiler that produced them;
//! [`FlopsConvention`] reproduces each exactly:
//!
//! * NB201 `nb201/zcp.csv` (NASLib / NAS-Bench-Suite-Zero): tensorwatch's
//!   `ModelStats`, a torchstat derivative. Conv = MACs (+ output elements if
//!   biased), Linear = in x out (bias ignored), BatchNorm = 2 per element,
//!   ReLU = 1 per element, AvgPool = k x k per output element, tensor adds
//!   free, and adaptive (global) average pooling = `N*C*(H+1)*(W+1)`:
//!   tensorwatch's `compute_adaptivepool_flops` counts each pooling window
//!   as `(end - start + 1)` rows and columns, one more than the window has.
//!   That off-by-one is the whole `32 * H` term (1,024 at 32x32, 512 at
//!   16x16 for 64 channels) a naive count misses.
//! * FBNet `fbnet/zcp.csv` (nasflat, `flopth`): same per-module rules, but
//!   pooling (global too) = input elements, and flopth stores one count per
//!   *module*, overwritten on every call. The reference block reuses one
//!   `nn.ReLU` after the expand conv and after the depthwise conv, so only
//!   the second call survives: the ReLU feeding a depthwise conv is not
//!   counted.

use std::collections::{HashMap, HashSet};

use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::dimension;
use tract_onnx::pb::{ModelProto, NodeProto, TensorProto, type_proto};

use crate::error::{OnnxError, Result};
use crate::op_cost::numel;
pub use crate::op_cost::{FlopsConvention, OpCost};
use crate::shapes::{attr_int, node_cost};

/// One node's output shape and cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCost {
    /// Node name.
    pub name: String,
    /// ONNX operator.
    pub op_type: String,
    /// Static output shape.
    pub output_shape: Vec<usize>,
    /// Convention-independent cost facts.
    pub cost: OpCost,
}

/// Totals and per-node costs of a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCost {
    /// Trainable parameters: conv and linear weights and biases, BatchNorm
    /// scale and shift (PyTorch's `parameters()`; running statistics and
    /// shape constants excluded).
    pub params: u64,
    /// Shape of the graph's (first) input.
    pub input_shape: Vec<usize>,
    /// Shape of the graph's (first) output.
    pub output_shape: Vec<usize>,
    /// Every node, in graph order.
    pub nodes: Vec<NodeCost>,
}

impl ModelCost {
    /// Total FLOPs under a convention.
    pub fn flops(&self, convention: FlopsConvention) -> u64 {
        self.nodes.iter().map(|n| n.cost.flops(convention)).sum()
    }
}

/// Walks a model and counts its parameters and per-node costs.
pub fn model_cost(model: &ModelProto) -> Result<ModelCost> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| OnnxError::Malformed("model has no graph".into()))?;
    let mut shapes: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut int_values: HashMap<&str, Vec<i64>> = HashMap::new();
    let mut initializers: HashMap<&str, &TensorProto> = HashMap::new();
    for t in &graph.initializer {
        let dims = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| {
                OnnxError::Malformed(format!("initializer `{}` has a negative dim", t.name))
            })?;
        shapes.insert(&t.name, dims);
        initializers.insert(&t.name, t);
        if t.data_type == DataType::Int64 as i32 {
            int_values.insert(&t.name, int64_values(t));
        }
    }
    let input_shape = graph
        .input
        .iter()
        .filter(|v| !initializers.contains_key(v.name.as_str()))
        .map(|v| Ok((v.name.as_str(), static_shape(v)?)))
        .collect::<Result<Vec<_>>>()?;
    let first_input = input_shape
        .first()
        .map(|(_, s)| s.clone())
        .ok_or_else(|| OnnxError::Malformed("graph has no input".into()))?;
    shapes.extend(input_shape);

    let mut params = 0u64;
    let mut counted: HashSet<&str> = HashSet::new();
    let mut nodes = Vec::with_capacity(graph.node.len());
    for node in &graph.node {
        let inputs = node
            .input
            .iter()
            .filter(|name| !name.is_empty())
            .map(|name| {
                shapes
                    .get(name.as_str())
                    .cloned()
                    .ok_or_else(|| OnnxError::UndefinedTensor {
                        node: node.name.clone(),
                        input: name.clone(),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let (output_shape, cost) = node_cost(node, &inputs, &int_values)?;
        let trainable = match node.op_type.as_str() {
            "Conv" | "Gemm" => 1..node.input.len(),
            "BatchNormalization" => 1..3,
            _ => 0..0,
        };
        for name in node.input.get(trainable).unwrap_or_default() {
            if initializers.contains_key(name.as_str()) && counted.insert(name.as_str()) {
                params += shapes.get(name.as_str()).map_or(0, |s| numel(s));
            }
        }
        if let Some(out) = node.output.first() {
            shapes.insert(out.as_str(), output_shape.clone());
        }
        nodes.push(NodeCost {
            name: node.name.clone(),
            op_type: node.op_type.clone(),
            output_shape,
            cost,
        });
    }
    mark_relus_feeding_depthwise(&graph.node, &mut nodes, &shapes);

    let output_name = graph
        .output
        .first()
        .map(|v| v.name.as_str())
        .ok_or_else(|| OnnxError::Malformed("graph has no output".into()))?;
    let output_shape = shapes
        .get(output_name)
        .cloned()
        .ok_or_else(|| OnnxError::Malformed(format!("output `{output_name}` is never produced")))?;
    Ok(ModelCost {
        params,
        input_shape: first_input,
        output_shape,
        nodes,
    })
}

fn static_shape(v: &tract_onnx::pb::ValueInfoProto) -> Result<Vec<usize>> {
    let bad = |why: &str| OnnxError::Malformed(format!("input `{}`: {why}", v.name));
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(bad("not a tensor"));
    };
    let shape = t.shape.as_ref().ok_or_else(|| bad("no shape"))?;
    shape
        .dim
        .iter()
        .map(|d| match d.value {
            Some(dimension::Value::DimValue(v)) if v >= 0 => Ok(v as usize),
            _ => Err(bad("dimensions must be static")),
        })
        .collect()
}

fn int64_values(t: &TensorProto) -> Vec<i64> {
    if t.raw_data.is_empty() {
        return t.int64_data.clone();
    }
    t.raw_data
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect()
}

/// Sets `feeds_depthwise` on every ReLU whose output reaches, through layout
/// ops only (a channel shuffle), a conv with one group per input channel.
fn mark_relus_feeding_depthwise(
    graph: &[NodeProto],
    costs: &mut [NodeCost],
    shapes: &HashMap<&str, Vec<usize>>,
) {
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, node) in graph.iter().enumerate() {
        for input in &node.input {
            consumers.entry(input.as_str()).or_default().push(i);
        }
    }
    let is_depthwise = |node: &NodeProto| {
        let group = attr_int(node, "group", 1);
        let channels = node
            .input
            .first()
            .and_then(|x| shapes.get(x.as_str()))
            .and_then(|s| s.get(1))
            .map_or(0, |&c| c as i64);
        node.op_type == "Conv" && group > 1 && group == channels
    };
    for (node, cost) in graph.iter().zip(costs.iter_mut()) {
        let OpCost::Relu {
            feeds_depthwise, ..
        } = &mut cost.cost
        else {
            continue;
        };
        let mut frontier: Vec<&str> = node.output.iter().map(String::as_str).collect();
        while let Some(tensor) = frontier.pop() {
            for &i in consumers.get(tensor).map_or(&[][..], Vec::as_slice) {
                let next = &graph[i];
                if is_depthwise(next) {
                    *feeds_depthwise = true;
                } else if matches!(next.op_type.as_str(), "Reshape" | "Transpose") {
                    frontier.extend(next.output.iter().map(String::as_str));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Nb201Config, WeightInit, nb201_model};
    use nasflat_shared::Nb201Arch;

    #[test]
    fn undefined_inputs_and_missing_graph_are_errors() {
        let arch = Nb201Arch::from_index(0).unwrap();
        let config = Nb201Config {
            weights: WeightInit::Zeros,
            ..Nb201Config::default()
        };
        let mut model = nb201_model(&arch, &config).unwrap();
        if let Some(graph) = model.graph.as_mut() {
            graph.node.swap(0, 1);
        }
        let err = model_cost(&model).unwrap_err();
        assert!(matches!(err, OnnxError::UndefinedTensor { .. }), "{err}");
        model.graph = None;
        assert!(matches!(model_cost(&model), Err(OnnxError::Malformed(_))));
    }

    #[test]
    fn conventions_differ_only_where_documented() {
        let relu = OpCost::Relu {
            elements: 10,
            feeds_depthwise: true,
        };
        assert_eq!(relu.flops(FlopsConvention::TensorWatch), 10);
        assert_eq!(relu.flops(FlopsConvention::Flopth), 0);
        let pool = OpCost::GlobalAvgPool {
            batch_channels: 64,
            height: 8,
            width: 8,
        };
        assert_eq!(pool.flops(FlopsConvention::TensorWatch), 64 * 81);
        assert_eq!(pool.flops(FlopsConvention::Flopth), 64 * 64);
        assert_eq!(pool.flops(FlopsConvention::Macs), 0);
        let gemm = OpCost::Gemm {
            macs: 640,
            bias: 10,
        };
        assert_eq!(gemm.flops(FlopsConvention::TensorWatch), 640);
    }
}
