//! What the timing loop needs of a runtime: a model made runnable, fed
//! inputs prepared outside the timed region.
//!
//! Written once per runtime (tract in [`crate::tract_engine`], onnxruntime in
//! `ort_engine`), so both are timed by the same loop on the same inputs.

use std::time::Duration;

use tract_onnx::prelude::Tensor;

use crate::dump::TensorDump;
use crate::error::Result;
use crate::model::ModelInput;

/// A model ready to run on one runtime.
pub trait Engine {
    /// Inputs in the runtime's own form.
    type Inputs;

    /// Display name of the model.
    fn name(&self) -> &str;

    /// The model's inputs, with concrete shapes and types.
    fn model_inputs(&self) -> &[ModelInput];

    /// Converts freshly drawn inputs into the runtime's form (not timed).
    fn prepare(&self, drawn: Vec<Tensor>) -> Result<Self::Inputs>;

    /// Runs one inference; the duration covers the run alone (outputs are
    /// freed after the clock stops).
    fn timed_run(&mut self, inputs: Self::Inputs) -> Result<Duration>;

    /// Runs one inference and returns its duration and its outputs.
    fn run_with_outputs(&mut self, inputs: Self::Inputs) -> Result<(Duration, Vec<TensorDump>)>;
}
