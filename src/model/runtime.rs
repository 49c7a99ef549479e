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

/// One graph input: its name in the ONNX file and its static shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphInput {
    pub name: String,
    pub shape: Vec<usize>,
}

impl GraphInput {
    fn len(&self) -> usize {
        self.shape.iter().product()
    }
}

/// One runnable graph with f32 inputs of static shapes, in the graph's order.
pub struct Graph {
    name: String,
    inputs: Vec<GraphInput>,
    backend: Backend,
    plan: Plan,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("name", &self.name)
            .field("inputs", &self.inputs)
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
    /// Load a single-input graph in tract with the input shape pinned, then
    /// optimise: tract only picks its fast kernels once every shape is known.
    pub fn load(name: &str, path: &Path, input_shape: &[usize]) -> Result<Self, RuntimeError> {
        Self::load_with(name, path, input_shape, &Backend::Tract)
    }

    /// Load a single-input graph for `backend`; the input shape is fixed either way.
    pub fn load_with(
        name: &str,
        path: &Path,
        input_shape: &[usize],
        backend: &Backend,
    ) -> Result<Self, RuntimeError> {
        Self::load_inputs(name, path, &[(None, input_shape.to_vec())], backend)
    }

    /// Load a graph whose inputs are given by name (the manifest's map); the
    /// order is the ONNX file's, which a name-keyed map cannot carry.
    pub fn load_named<'a>(
        name: &str,
        path: &Path,
        inputs: impl IntoIterator<Item = (&'a String, &'a Vec<usize>)>,
        backend: &Backend,
    ) -> Result<Self, RuntimeError> {
        let wanted: Vec<(Option<String>, Vec<usize>)> = inputs
            .into_iter()
            .map(|(n, s)| (Some(n.clone()), s.clone()))
            .collect();
        Self::load_inputs(name, path, &wanted, backend)
    }

    /// `wanted`: shapes by input name; a single unnamed entry fits a
    /// single-input graph whatever its input is called.
    fn load_inputs(
        name: &str,
        path: &Path,
        wanted: &[(Option<String>, Vec<usize>)],
        backend: &Backend,
    ) -> Result<Self, RuntimeError> {
        let err = |message: String| RuntimeError::Load {
            graph: name.to_owned(),
            message: format!("{}: {message}", path.display()),
        };
        let (plan, inputs) = match backend {
            Backend::Tract => {
                let model = tract_onnx::onnx()
                    .model_for_path(path)
                    .map_err(|e| err(format!("{e:#}")))?;
                let names = model
                    .input_outlets()
                    .map_err(|e| err(format!("{e:#}")))?
                    .iter()
                    .map(|o| model.node(o.node).name.clone())
                    .collect::<Vec<_>>();
                let inputs = Self::order_inputs(&names, wanted).map_err(err)?;
                let plan = Self::tract_plan(model, &inputs).map_err(err)?;
                (Plan::Tract(plan), inputs)
            }
            #[cfg(feature = "ort")]
            Backend::Ort { providers } => {
                let plan = super::ort_backend::OrtPlan::load(name, path, providers)?;
                let inputs = Self::order_inputs(&plan.input_names(), wanted).map_err(err)?;
                plan.check_inputs(&inputs).map_err(err)?;
                (Plan::Ort(plan), inputs)
            }
        };
        Ok(Self {
            name: name.to_owned(),
            inputs,
            backend: backend.clone(),
            plan,
        })
    }

    /// Pair the graph's input names (in order) with the shapes asked for.
    fn order_inputs(
        names: &[String],
        wanted: &[(Option<String>, Vec<usize>)],
    ) -> Result<Vec<GraphInput>, String> {
        if let [(None, shape)] = wanted {
            return match names {
                [only] => Ok(vec![GraphInput {
                    name: only.clone(),
                    shape: shape.clone(),
                }]),
                _ => Err(format!(
                    "expected one input, the graph has {}: {names:?}",
                    names.len()
                )),
            };
        }
        if names.len() != wanted.len() {
            return Err(format!(
                "the graph has inputs {names:?}, the manifest names {} inputs",
                wanted.len()
            ));
        }
        names
            .iter()
            .map(|n| {
                wanted
                    .iter()
                    .find(|(w, _)| w.as_deref() == Some(n.as_str()))
                    .map(|(_, shape)| GraphInput {
                        name: n.clone(),
                        shape: shape.clone(),
                    })
                    .ok_or_else(|| format!("graph input {n:?} has no shape in the manifest"))
            })
            .collect()
    }

    fn tract_plan(
        mut model: InferenceModel,
        inputs: &[GraphInput],
    ) -> Result<std::sync::Arc<TypedRunnableModel>, String> {
        for (i, input) in inputs.iter().enumerate() {
            model = model
                .with_input_fact(i, f32::fact(&input.shape).into())
                .map_err(|e| format!("{e:#}"))?;
        }
        model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| format!("{e:#}"))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The first input's shape (the only one of a single-input graph).
    pub fn input_shape(&self) -> &[usize] {
        &self.inputs[0].shape
    }

    pub fn inputs(&self) -> &[GraphInput] {
        &self.inputs
    }

    /// The backend this graph was loaded for.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Run a single-input graph; returns every output.
    pub fn run(&self, input: &[f32]) -> Result<Vec<Array>, RuntimeError> {
        match self.inputs.as_slice() {
            [only] => self.run_named(&[(only.name.as_str(), input)]),
            _ => Err(RuntimeError::Run {
                graph: self.name.clone(),
                message: format!("needs {} named inputs", self.inputs.len()),
            }),
        }
    }

    /// Run with inputs given by name, in any order; returns every output in the graph's order.
    pub fn run_named(&self, given: &[(&str, &[f32])]) -> Result<Vec<Array>, RuntimeError> {
        let mut ordered: Vec<&[f32]> = Vec::with_capacity(self.inputs.len());
        for spec in &self.inputs {
            let data = given
                .iter()
                .find(|(n, _)| *n == spec.name)
                .map(|(_, d)| *d)
                .ok_or_else(|| RuntimeError::Run {
                    graph: self.name.clone(),
                    message: format!("input {:?} not given", spec.name),
                })?;
            if data.len() != spec.len() {
                return Err(RuntimeError::InputShape {
                    graph: format!("{} (input {})", self.name, spec.name),
                    expected: spec.shape.clone(),
                    got: data.len(),
                });
            }
            ordered.push(data);
        }
        if given.len() != self.inputs.len() {
            return Err(RuntimeError::Run {
                graph: self.name.clone(),
                message: format!(
                    "{} inputs given, the graph takes {}",
                    given.len(),
                    self.inputs.len()
                ),
            });
        }
        match &self.plan {
            Plan::Tract(plan) => self.run_tract(plan, &ordered),
            #[cfg(feature = "ort")]
            Plan::Ort(plan) => plan.run(&self.name, &self.inputs, &ordered),
        }
    }

    fn run_tract(
        &self,
        plan: &std::sync::Arc<TypedRunnableModel>,
        inputs: &[&[f32]],
    ) -> Result<Vec<Array>, RuntimeError> {
        let run_err = |e: TractError| RuntimeError::Run {
            graph: self.name.clone(),
            message: format!("{e:#}"),
        };
        let tensors = inputs
            .iter()
            .zip(&self.inputs)
            .map(|(data, spec)| Ok(Tensor::from_shape(&spec.shape, data)?.into()))
            .collect::<TractResult<TVec<TValue>>>()
            .map_err(run_err)?;
        let outputs = plan.run(tensors).map_err(run_err)?;
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
