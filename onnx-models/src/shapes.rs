//! Static shape propagation for the operators the builders emit, and the
//! convention-independent cost facts ([`OpCost`]) of each node.
//!
//! Only what our graphs use is supported (Conv, BatchNormalization, Relu,
//! AveragePool, GlobalAveragePool, Flatten, Gemm, Add, Mul, Reshape,
//! Transpose); anything else is an [`OnnxError::UnsupportedOp`], so a graph
//! change that the counts do not cover fails loudly instead of miscounting.

use std::collections::HashMap;

use tract_onnx::pb::{AttributeProto, NodeProto};

use crate::error::{OnnxError, Result};
use crate::op_cost::{OpCost, numel};

fn attribute<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<usize>> {
    attribute(node, name).map(|a| a.ints.iter().map(|&v| v.max(0) as usize).collect())
}

pub(crate) fn attr_int(node: &NodeProto, name: &str, default: i64) -> i64 {
    attribute(node, name).map_or(default, |a| a.i)
}

/// Output shape and cost of one node, from its input shapes.
pub(crate) fn node_cost(
    node: &NodeProto,
    inputs: &[Vec<usize>],
    int_values: &HashMap<&str, Vec<i64>>,
) -> Result<(Vec<usize>, OpCost)> {
    let err = |reason: String| OnnxError::Shape {
        node: node.name.clone(),
        op: node.op_type.clone(),
        reason,
    };
    let input = |i: usize| {
        inputs
            .get(i)
            .ok_or_else(|| err(format!("needs at least {} inputs", i + 1)))
    };
    let nchw = |shape: &Vec<usize>| -> Result<[usize; 4]> {
        <[usize; 4]>::try_from(shape.as_slice())
            .map_err(|_| err(format!("expected a 4-D input, got {shape:?}")))
    };
    match node.op_type.as_str() {
        "Conv" => {
            let [n, c, h, w] = nchw(input(0)?)?;
            let weight = input(1)?;
            let [m, cg, kh, kw] = nchw(weight)?;
            let group = usize::try_from(attr_int(node, "group", 1)).unwrap_or(0);
            if group == 0 || c != cg * group || m % group != 0 {
                return Err(err(format!(
                    "input channels {c} and weight {weight:?} do not fit group {group}"
                )));
            }
            if attribute(node, "auto_pad").is_some_and(|a| a.s != b"NOTSET") {
                return Err(err("auto_pad is not supported".into()));
            }
            let oh = window_out(node, h, kh, 0).map_err(&err)?;
            let ow = window_out(node, w, kw, 1).map_err(&err)?;
            let out = vec![n, m, oh, ow];
            let macs = numel(&out) * (cg * kh * kw) as u64;
            let bias = if inputs.len() > 2 { numel(&out) } else { 0 };
            Ok((out, OpCost::Conv { macs, bias }))
        }
        "BatchNormalization" => {
            let x = input(0)?;
            let c = x.get(1).copied().unwrap_or(0);
            if input(1)? != &vec![c] {
                return Err(err(format!(
                    "scale {:?} does not match {c} channels",
                    input(1)?
                )));
            }
            let elements = numel(x);
            Ok((x.clone(), OpCost::BatchNorm { elements }))
        }
        "Relu" => {
            let x = input(0)?;
            let elements = numel(x);
            let feeds_depthwise = false; // set once consumers are known
            Ok((
                x.clone(),
                OpCost::Relu {
                    elements,
                    feeds_depthwise,
                },
            ))
        }
        "AveragePool" => {
            let x = input(0)?;
            let [n, c, h, w] = nchw(x)?;
            let k = attr_ints(node, "kernel_shape")
                .filter(|k| k.len() == 2)
                .ok_or_else(|| err("needs a 2-D kernel_shape".into()))?;
            let oh = window_out(node, h, k[0], 0).map_err(&err)?;
            let ow = window_out(node, w, k[1], 1).map_err(&err)?;
            let out = vec![n, c, oh, ow];
            let window_reads = numel(&out) * (k[0] * k[1]) as u64;
            let input_elements = numel(x);
            Ok((
                out,
                OpCost::AvgPool {
                    input_elements,
                    window_reads,
                },
            ))
        }
        "GlobalAveragePool" => {
            let [n, c, h, w] = nchw(input(0)?)?;
            let cost = OpCost::GlobalAvgPool {
                batch_channels: (n * c) as u64,
                height: h as u64,
                width: w as u64,
            };
            Ok((vec![n, c, 1, 1], cost))
        }
        "Flatten" => {
            let x = input(0)?;
            let axis = usize::try_from(attr_int(node, "axis", 1)).unwrap_or(usize::MAX);
            if axis > x.len() {
                return Err(err(format!("axis {axis} out of range for {x:?}")));
            }
            let out = vec![x[..axis].iter().product(), x[axis..].iter().product()];
            Ok((out, OpCost::Layout))
        }
        "Gemm" => gemm(node, inputs).map_err(&err),
        "Add" | "Mul" => {
            let out = broadcast(input(0)?, input(1)?).map_err(&err)?;
            let elements = numel(&out);
            Ok((out, OpCost::Elementwise { elements }))
        }
        "Reshape" => {
            let x = input(0)?;
            let target = node
                .input
                .get(1)
                .and_then(|name| int_values.get(name.as_str()))
                .ok_or_else(|| err("shape must be an int64 initializer".into()))?;
            Ok((reshape(x, target).map_err(&err)?, OpCost::Layout))
        }
        "Transpose" => {
            let x = input(0)?;
            let perm = attr_ints(node, "perm").unwrap_or_else(|| (0..x.len()).rev().collect());
            let out = perm
                .iter()
                .map(|&p| x.get(p).copied())
                .collect::<Option<Vec<_>>>()
                .filter(|o| o.len() == x.len())
                .ok_or_else(|| err(format!("perm {perm:?} does not fit {x:?}")))?;
            Ok((out, OpCost::Layout))
        }
        op => Err(OnnxError::UnsupportedOp {
            node: node.name.clone(),
            op: op.to_string(),
        }),
    }
}

/// Output size along spatial axis `axis` of a conv or pool window.
fn window_out(
    node: &NodeProto,
    size: usize,
    kernel: usize,
    axis: usize,
) -> std::result::Result<usize, String> {
    let at = |name: &str, i: usize, default: usize| {
        attr_ints(node, name)
            .and_then(|v| v.get(i).copied())
            .unwrap_or(default)
    };
    let stride = at("strides", axis, 1).max(1);
    let dilation = at("dilations", axis, 1).max(1);
    let padded = size + at("pads", axis, 0) + at("pads", axis + 2, 0);
    let span = dilation * (kernel.max(1) - 1) + 1;
    if padded < span {
        return Err(format!("window {span} larger than padded input {padded}"));
    }
    let steps = padded - span;
    let out = if attr_int(node, "ceil_mode", 0) != 0 {
        steps.div_ceil(stride) + 1
    } else {
        steps / stride + 1
    };
    Ok(out)
}

fn gemm(
    node: &NodeProto,
    inputs: &[Vec<usize>],
) -> std::result::Result<(Vec<usize>, OpCost), String> {
    let two_d = |i: usize| -> std::result::Result<[usize; 2], String> {
        inputs
            .get(i)
            .and_then(|s| <[usize; 2]>::try_from(s.as_slice()).ok())
            .ok_or_else(|| format!("input {i} must be 2-D"))
    };
    let [a0, a1] = two_d(0)?;
    let [b0, b1] = two_d(1)?;
    let (m, k) = if attr_int(node, "transA", 0) != 0 {
        (a1, a0)
    } else {
        (a0, a1)
    };
    let (kb, n) = if attr_int(node, "transB", 0) != 0 {
        (b1, b0)
    } else {
        (b0, b1)
    };
    if k != kb {
        return Err(format!("inner dimensions differ: {k} vs {kb}"));
    }
    let out = vec![m, n];
    if let Some(c) = inputs.get(2) {
        broadcast(c, &out)?;
    }
    let macs = (m * k * n) as u64;
    let bias = if inputs.len() > 2 { (m * n) as u64 } else { 0 };
    Ok((out, OpCost::Gemm { macs, bias }))
}

/// Numpy-style broadcast of two shapes.
fn broadcast(a: &[usize], b: &[usize]) -> std::result::Result<Vec<usize>, String> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| (i + s.len()).checked_sub(rank).map_or(1, |j| s[j]);
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y || y == 1 => Ok(x),
            (1, y) => Ok(y),
            (x, y) => Err(format!("cannot broadcast {a:?} with {b:?} ({x} vs {y})")),
        })
        .collect()
}

/// ONNX `Reshape` with `0` (copy) and `-1` (infer) entries.
fn reshape(x: &[usize], target: &[i64]) -> std::result::Result<Vec<usize>, String> {
    let total = numel(x);
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            0 => out.push(
                *x.get(i)
                    .ok_or_else(|| format!("0 at {i} has no source dim"))?,
            ),
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            t if t > 0 => out.push(t as usize),
            t => return Err(format!("invalid target entry {t}")),
        }
    }
    let known = numel(&out);
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(format!("cannot infer -1 reshaping {x:?} to {target:?}"));
        }
        out[i] = (total / known) as usize;
    }
    if numel(&out) != total {
        return Err(format!("cannot reshape {x:?} to {target:?}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: &str, attribute: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            name: "n".into(),
            op_type: op.into(),
            attribute,
            ..NodeProto::default()
        }
    }

    fn ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            ints: v.to_vec(),
            ..AttributeProto::default()
        }
    }

    #[test]
    fn broadcasts_like_numpy() {
        assert_eq!(broadcast(&[1, 16, 8, 8], &[]).unwrap(), vec![1, 16, 8, 8]);
        assert_eq!(broadcast(&[4, 1], &[3]).unwrap(), vec![4, 3]);
        assert!(broadcast(&[2, 3], &[4]).is_err());
    }

    #[test]
    fn reshape_copies_and_infers() {
        assert_eq!(
            reshape(&[2, 6, 4, 4], &[0, 2, -1, 4, 4]).unwrap(),
            vec![2, 2, 3, 4, 4]
        );
        assert!(reshape(&[2, 6], &[5, -1]).is_err());
        assert!(reshape(&[2, 6], &[-1, -1]).is_err());
    }

    #[test]
    fn window_sizes_follow_onnx() {
        let conv = node(
            "Conv",
            vec![ints("strides", &[2, 2]), ints("pads", &[1, 1, 1, 1])],
        );
        assert_eq!(window_out(&conv, 32, 3, 0), Ok(16));
        assert_eq!(window_out(&conv, 7, 3, 1), Ok(4));
        let pool = node("AveragePool", vec![ints("strides", &[2, 2])]);
        assert_eq!(window_out(&pool, 7, 2, 0), Ok(3));
        assert!(window_out(&pool, 1, 2, 0).is_err());
    }

    #[test]
    fn conv_cost_counts_groups() {
        let conv = node(
            "Conv",
            vec![
                ints("pads", &[1, 1, 1, 1]),
                AttributeProto {
                    name: "group".into(),
                    i: 8,
                    ..AttributeProto::default()
                },
            ],
        );
        let inputs = vec![vec![1, 8, 4, 4], vec![8, 1, 3, 3]];
        let (shape, cost) = node_cost(&conv, &inputs, &HashMap::new()).unwrap();
        assert_eq!(shape, vec![1, 8, 4, 4]);
        assert_eq!(
            cost,
            OpCost::Conv {
                macs: 8 * 16 * 9,
                bias: 0
            }
        );
        let wrong = vec![vec![1, 8, 4, 4], vec![8, 2, 3, 3]];
        assert!(matches!(
            node_cost(&conv, &wrong, &HashMap::new()),
            Err(OnnxError::Shape { .. })
        ));
    }

    #[test]
    fn unknown_ops_are_errors() {
        let err = node_cost(&node("Softmax", vec![]), &[vec![1, 10]], &HashMap::new());
        assert!(matches!(err, Err(OnnxError::UnsupportedOp { .. })));
    }
}
