//! Helpers shared by the integration tests: running a model with tract.

// Test helpers panic on failure: that is the report.
#![allow(dead_code, clippy::unwrap_used)]

use nasflat_onnx::{ModelProto, encode, model_cost};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tract_onnx::prelude::*;

/// Loads `model` from its encoded bytes with tract exactly as the agent
/// does (read, optimise, plan), runs it once on a seeded random input and
/// returns the output shape. Panics if any output value is not finite.
pub(crate) fn run_with_tract(model: &ModelProto) -> Vec<usize> {
    let input_shape = model_cost(model).unwrap().input_shape;
    let bytes = encode(model);
    let plan = tract_onnx::onnx()
        .model_for_read(&mut bytes.as_slice())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let mut rng = StdRng::seed_from_u64(42);
    let input: Tensor =
        tract_ndarray::ArrayD::from_shape_fn(input_shape, |_| rng.random_range(-1.0f32..1.0))
            .into();
    let outputs = plan.run(tvec!(input.into())).unwrap();
    let view = outputs[0].to_plain_array_view::<f32>().unwrap();
    assert!(view.iter().all(|v| v.is_finite()), "non-finite output");
    view.shape().to_vec()
}
