//! tract plans for the bundle's ONNX graphs: loaded once, optimised, shapes fixed.

use std::path::Path;

use thiserror::Error;
use tract_onnx::prelude::*;

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("graph {graph}: {message}")]
    Load { graph: String, message: String },
    #[error("graph {graph}: input has {got} values, expected shape {expected:?}")]
    InputShape {
        graph: String,
        expected: Vec<usize>,
        got: usize,
    },
    #[error("graph {graph}: inference failed: {message}")]
    Run { graph: String, message: String },
}

/// One optimised, runnable graph with a single f32 input of static shape.
pub struct Graph {
    name: String,
    input_shape: Vec<usize>,
    plan: std::sync::Arc<TypedRunnableModel>,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("name", &self.name)
            .field("input_shape", &self.input_shape)
            .finish()
    }
}

/// A dense f32 tensor in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Graph {
    /// Load with the input shape pinned, then optimise: tract only picks its
    /// fast kernels once every shape is known.
    pub fn load(name: &str, path: &Path, input_shape: &[usize]) -> Result<Self, RuntimeError> {
        let err = |e: TractError| RuntimeError::Load {
            graph: name.to_owned(),
            message: format!("{}: {e:#}", path.display()),
        };
        let plan = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(err)?
            .with_input_fact(0, f32::fact(input_shape).into())
            .map_err(err)?
            .into_optimized()
            .map_err(err)?
            .into_runnable()
            .map_err(err)?;
        Ok(Self {
            name: name.to_owned(),
            input_shape: input_shape.to_vec(),
            plan,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Run on one input; returns every output.
    pub fn run(&self, input: &[f32]) -> Result<Vec<Array>, RuntimeError> {
        if input.len() != self.input_shape.iter().product::<usize>() {
            return Err(RuntimeError::InputShape {
                graph: self.name.clone(),
                expected: self.input_shape.clone(),
                got: input.len(),
            });
        }
        let run_err = |e: TractError| RuntimeError::Run {
            graph: self.name.clone(),
            message: format!("{e:#}"),
        };
        let tensor = Tensor::from_shape(&self.input_shape, input).map_err(run_err)?;
        let outputs = self.plan.run(tvec!(tensor.into())).map_err(run_err)?;
        outputs
            .iter()
            .map(|t| {
                let view = t.to_plain_array_view::<f32>().map_err(run_err)?;
                Ok(Array {
                    shape: view.shape().to_vec(),
                    data: view.iter().copied().collect(),
                })
            })
            .collect()
    }

    /// Run and return the first output.
    pub fn run1(&self, input: &[f32]) -> Result<Array, RuntimeError> {
        let mut out = self.run(input)?;
        Ok(out.swap_remove(0))
    }
}
