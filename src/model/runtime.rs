//! Runnable plans for the bundle's ONNX graphs: loaded once, shapes fixed.
//!
//! tract is the default and, without the cargo feature `ort`, the only
//! backend. With the feature, ONNX Runtime (CPU, CUDA or TensorRT execution
//! providers) can be chosen at run time; see [`Backend`] and docs/backends.md.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use thiserror::Error;
use tract_onnx::prelude::*;

#[cfg(feature = "ort")]
pub use super::ort_backend::ExecutionProvider;

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

/// Which inference engine runs the graphs, chosen at run time.
///
/// Parsed from `tract`, `ort` (ONNX Runtime on the CPU), `ort-cuda` and
/// `ort-tensorrt` (TensorRT, with CUDA for what TensorRT does not take); the
/// `ort*` names need a binary built with the cargo feature `ort`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Backend {
    #[default]
    Tract,
    /// ONNX Runtime; `providers` in order of preference, empty for CPU only.
    /// Nodes no provider takes run on ONNX Runtime's CPU kernels.
    #[cfg(feature = "ort")]
    Ort { providers: Vec<ExecutionProvider> },
}

/// A backend name that this binary cannot use.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseBackendError {
    #[error("unknown inference backend {0:?}: expected one of {names}", names = Backend::NAMES.join(", "))]
    Unknown(String),
    #[error(
        "inference backend {0:?} needs ONNX Runtime, but this binary was built without \
         the `ort` feature (rebuild with `cargo build --features ort`)"
    )]
    NotBuilt(String),
}

impl Backend {
    /// Every name [`FromStr`] accepts (`ort*` only work with the feature).
    pub const NAMES: [&'static str; 4] = ["tract", "ort", "ort-cuda", "ort-tensorrt"];

    /// The name this backend parses from.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Tract => "tract",
            #[cfg(feature = "ort")]
            Backend::Ort { providers } => match providers.first() {
                None => "ort",
                Some(ExecutionProvider::Cuda) => "ort-cuda",
                Some(ExecutionProvider::TensorRt) => "ort-tensorrt",
            },
        }
    }
}

impl FromStr for Backend {
    type Err = ParseBackendError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim().to_ascii_lowercase();
        match name.as_str() {
            "tract" => Ok(Backend::Tract),
            #[cfg(feature = "ort")]
            "ort" => Ok(Backend::Ort { providers: vec![] }),
            #[cfg(feature = "ort")]
            "ort-cuda" => Ok(Backend::Ort {
                providers: vec![ExecutionProvider::Cuda],
            }),
            #[cfg(feature = "ort")]
            "ort-tensorrt" => Ok(Backend::Ort {
                providers: vec![ExecutionProvider::TensorRt, ExecutionProvider::Cuda],
            }),
            #[cfg(not(feature = "ort"))]
            "ort" | "ort-cuda" | "ort-tensorrt" => Err(ParseBackendError::NotBuilt(s.to_owned())),
            _ => Err(ParseBackendError::Unknown(s.to_owned())),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

enum Plan {
    Tract(std::sync::Arc<TypedRunnableModel>),
    #[cfg(feature = "ort")]
    Ort(super::ort_backend::OrtPlan),
}

/// One runnable graph with a single f32 input of static shape.
pub struct Graph {
    name: String,
    input_shape: Vec<usize>,
    backend: Backend,
    plan: Plan,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("name", &self.name)
            .field("input_shape", &self.input_shape)
            .field("backend", &self.backend)
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
    /// Load in tract with the input shape pinned, then optimise: tract only
    /// picks its fast kernels once every shape is known.
    pub fn load(name: &str, path: &Path, input_shape: &[usize]) -> Result<Self, RuntimeError> {
        Self::load_with(name, path, input_shape, &Backend::Tract)
    }

    /// Load for `backend`; the input shape is fixed either way.
    pub fn load_with(
        name: &str,
        path: &Path,
        input_shape: &[usize],
        backend: &Backend,
    ) -> Result<Self, RuntimeError> {
        let plan = match backend {
            Backend::Tract => Plan::Tract(Self::tract_plan(name, path, input_shape)?),
            #[cfg(feature = "ort")]
            Backend::Ort { providers } => Plan::Ort(super::ort_backend::OrtPlan::load(
                name,
                path,
                input_shape,
                providers,
            )?),
        };
        Ok(Self {
            name: name.to_owned(),
            input_shape: input_shape.to_vec(),
            backend: backend.clone(),
            plan,
        })
    }

    fn tract_plan(
        name: &str,
        path: &Path,
        input_shape: &[usize],
    ) -> Result<std::sync::Arc<TypedRunnableModel>, RuntimeError> {
        let err = |e: TractError| RuntimeError::Load {
            graph: name.to_owned(),
            message: format!("{}: {e:#}", path.display()),
        };
        tract_onnx::onnx()
            .model_for_path(path)
            .map_err(err)?
            .with_input_fact(0, f32::fact(input_shape).into())
            .map_err(err)?
            .into_optimized()
            .map_err(err)?
            .into_runnable()
            .map_err(err)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// The backend this graph was loaded for.
    pub fn backend(&self) -> &Backend {
        &self.backend
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
        match &self.plan {
            Plan::Tract(plan) => self.run_tract(plan, input),
            #[cfg(feature = "ort")]
            Plan::Ort(plan) => plan.run(&self.name, &self.input_shape, input),
        }
    }

    fn run_tract(
        &self,
        plan: &std::sync::Arc<TypedRunnableModel>,
        input: &[f32],
    ) -> Result<Vec<Array>, RuntimeError> {
        let run_err = |e: TractError| RuntimeError::Run {
            graph: self.name.clone(),
            message: format!("{e:#}"),
        };
        let tensor = Tensor::from_shape(&self.input_shape, input).map_err(run_err)?;
        let outputs = plan.run(tvec!(tensor.into())).map_err(run_err)?;
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

#[cfg(test)]
mod tests {
    use super::{Backend, ParseBackendError};

    #[test]
    fn backend_names_parse_and_print_back() {
        assert_eq!("tract".parse::<Backend>(), Ok(Backend::Tract));
        assert_eq!(" Tract ".parse::<Backend>(), Ok(Backend::Tract));
        assert_eq!(Backend::default(), Backend::Tract);
        for name in Backend::NAMES {
            let parsed = name.parse::<Backend>();
            #[cfg(feature = "ort")]
            assert_eq!(parsed.map(|b| b.to_string()).as_deref(), Ok(name));
            #[cfg(not(feature = "ort"))]
            if name != "tract" {
                let e = parsed.unwrap_err();
                assert_eq!(e, ParseBackendError::NotBuilt(name.to_owned()));
                assert!(e.to_string().contains("without the `ort` feature"), "{e}");
            }
        }
    }

    #[test]
    fn unknown_backend_is_refused_listing_the_names() {
        let e = "onnx".parse::<Backend>().unwrap_err();
        assert_eq!(e, ParseBackendError::Unknown("onnx".to_owned()));
        let msg = e.to_string();
        assert!(
            msg.contains("\"onnx\"") && msg.contains("ort-tensorrt"),
            "{msg}"
        );
    }
}
