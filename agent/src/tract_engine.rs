//! tract as an [`Engine`]: the optimised plan of a [`LoadedModel`] and its
//! running state.

use std::time::{Duration, Instant};

use tract_onnx::prelude::*;

use crate::dump::{TensorDump, tensor_dump};
use crate::engine::Engine;
use crate::error::{AgentError, Result};
use crate::model::{LoadedModel, ModelInput};

/// A loaded model with its state, ready to run.
pub struct TractEngine<'m> {
    model: &'m LoadedModel,
    state: TypedSimpleState,
}

impl<'m> TractEngine<'m> {
    /// Spawns the plan's state.
    pub fn new(model: &'m LoadedModel) -> Result<Self> {
        let state = model.plan.spawn().map_err(|e| run_error(model, e))?;
        Ok(TractEngine { model, state })
    }
}

fn run_error(model: &LoadedModel, e: TractError) -> AgentError {
    AgentError::Run {
        name: model.name.clone(),
        reason: format!("{e:#}"),
    }
}

impl Engine for TractEngine<'_> {
    type Inputs = TVec<TValue>;

    fn name(&self) -> &str {
        &self.model.name
    }

    fn model_inputs(&self) -> &[ModelInput] {
        &self.model.inputs
    }

    fn prepare(&self, drawn: Vec<Tensor>) -> Result<Self::Inputs> {
        Ok(drawn.into_iter().map(TValue::from).collect())
    }

    fn timed_run(&mut self, inputs: Self::Inputs) -> Result<Duration> {
        let start = Instant::now();
        let outputs = self
            .state
            .run(inputs)
            .map_err(|e| run_error(self.model, e))?;
        let elapsed = start.elapsed();
        drop(outputs);
        Ok(elapsed)
    }

    fn run_with_outputs(&mut self, inputs: Self::Inputs) -> Result<(Duration, Vec<TensorDump>)> {
        let start = Instant::now();
        let outputs = self
            .state
            .run(inputs)
            .map_err(|e| run_error(self.model, e))?;
        let elapsed = start.elapsed();
        let dumps = outputs
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let name = self
                    .model
                    .outputs
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("output {i}"));
                tensor_dump(&name, t)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((elapsed, dumps))
    }
}
