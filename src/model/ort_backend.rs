//! ONNX Runtime plans (cargo feature `ort`), for the server on GPU machines.
//!
//! The runtime library is loaded at run time, never linked or downloaded at
//! build time (docs/backends.md). It is looked for, in order:
//!
//! 1. `ORT_DYLIB_PATH`, if set: that file and nothing else;
//! 2. the Python `onnxruntime` (or `onnxruntime-gpu`) wheel that `python3`
//!    imports: `<package>/capi/libonnxruntime.so*`;
//! 3. `libonnxruntime.so` on the system loader's path (`LD_LIBRARY_PATH`, ldconfig).
//!
//! One ONNX Runtime environment is created per process, on first use, and kept.
//! Sessions use ONNX Runtime's default intra-op thread count (one per physical
//! core) unless `FCHM_ORT_THREADS` is a positive number.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use ort::environment::Environment;
use ort::ep;
use ort::session::{Session, SessionInputValue};
use ort::value::{TensorRef, ValueType};

use super::runtime::{Array, GraphInput, RuntimeError};

/// Environment variable naming the ONNX Runtime library to load.
pub const DYLIB_ENV: &str = "ORT_DYLIB_PATH";
/// Environment variable: intra-op threads per session (unset or 0: ONNX Runtime's default).
pub const THREADS_ENV: &str = "FCHM_ORT_THREADS";

/// Execution providers ONNX Runtime may use beside its CPU kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionProvider {
    Cuda,
    TensorRt,
}

/// The process-wide environment: ONNX Runtime allows exactly one per process,
/// so it is built once (after the library loaded) and kept for the process's life.
static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);

fn environment() -> Result<Environment, String> {
    let mut env = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(env) = env.as_ref() {
        return Ok(env.clone());
    }
    let builder = load_library()?;
    let built = builder
        .with_name("fchm")
        .with_telemetry(false)
        .build()
        .map_err(|e| format!("creating the ONNX Runtime environment: {e}"))?;
    *env = Some(built.clone());
    Ok(built)
}

/// Load the library from the first place that has one (see the module docs).
fn load_library() -> Result<ort::environment::EnvironmentBuilder, String> {
    if let Some(path) = std::env::var_os(DYLIB_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return init_from(&path).map_err(|e| {
            format!(
                "cannot load ONNX Runtime from {DYLIB_ENV}={}: {e}",
                path.display()
            )
        });
    }
    let mut tried = Vec::new();
    match python_wheel_library() {
        Ok(path) => match init_from(&path) {
            Ok(b) => return Ok(b),
            Err(e) => tried.push(format!("the Python wheel's library: {e}")),
        },
        Err(why) => tried.push(format!("the Python onnxruntime wheel: {why}")),
    }
    let system = format!(
        "{}onnxruntime{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    match init_from(Path::new(&system)) {
        Ok(b) => return Ok(b),
        Err(e) => tried.push(format!("the system library path: {e}")),
    }
    Err(format!(
        "ONNX Runtime library not found; set {DYLIB_ENV} to the path of {system} \
         (e.g. from `pip install onnxruntime`, or `onnxruntime-gpu` for CUDA/TensorRT). Tried {}",
        tried.join("; ")
    ))
}

/// `ort::init_from` with the loader's own reason in the message: `ort` shows a
/// failed `dlopen` as just "dlopen failed", the cause is the error's source.
fn init_from(path: &Path) -> Result<ort::environment::EnvironmentBuilder, String> {
    // `ort` looks for a relative path next to the executable first and panics
    // if the executable's path is unknown; only hand it relative paths it can resolve.
    if path.is_relative() && std::env::current_exe().is_err() {
        return Err(format!(
            "{}: relative path, and the executable's location is unknown",
            path.display()
        ));
    }
    ort::init_from(path).map_err(|e| match &e {
        ort::LoadDynamicError::Dlopen { error, path } => {
            let why = std::error::Error::source(error)
                .map_or_else(|| error.to_string(), |s| s.to_string());
            // dlerror() usually names the file already.
            let file = path.display().to_string();
            if why.contains(&file) {
                why
            } else {
                format!("{file}: {why}")
            }
        }
        _ => e.to_string(),
    })
}

/// `<onnxruntime package>/capi/libonnxruntime.so*` of the wheel `python3` would import.
fn python_wheel_library() -> Result<PathBuf, String> {
    // find_spec locates the package without importing it (and numpy with it).
    let out = Command::new("python3")
        .args([
            "-c",
            "import importlib.util as u; s = u.find_spec('onnxruntime'); \
             print(s.submodule_search_locations[0] if s and s.submodule_search_locations else '')",
        ])
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || dir.is_empty() {
        return Err("python3 has no onnxruntime package".to_owned());
    }
    let capi = Path::new(&dir).join("capi");
    let entries =
        std::fs::read_dir(&capi).map_err(|e| format!("cannot list {}: {e}", capi.display()))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_runtime_library_name)
        })
        .collect();
    found.sort();
    found
        .into_iter()
        .next()
        .ok_or_else(|| format!("no ONNX Runtime library in {}", capi.display()))
}

/// `libonnxruntime.so`, `libonnxruntime.so.1.32.0`, `libonnxruntime.1.32.0.dylib`,
/// `onnxruntime.dll`; not the provider libraries (`libonnxruntime_providers_*.so`).
fn is_runtime_library_name(name: &str) -> bool {
    let stem = format!("{}onnxruntime", std::env::consts::DLL_PREFIX);
    let Some(rest) = name.strip_prefix(&stem) else {
        return false;
    };
    let suffix = std::env::consts::DLL_SUFFIX;
    rest.starts_with(&format!("{suffix}."))
        || rest == suffix
        || (rest.starts_with('.') && rest.ends_with(suffix))
}

/// `FCHM_ORT_THREADS`: `None` keeps ONNX Runtime's default.
fn intra_threads() -> Result<Option<usize>, String> {
    match std::env::var(THREADS_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Ok(s) if s.trim().is_empty() => Ok(None),
        Ok(s) => match s.trim().parse::<usize>() {
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(format!(
                "{THREADS_ENV}={s:?}: expected a thread count (0 for the default)"
            )),
        },
        Err(e) => Err(format!("{THREADS_ENV}: {e}")),
    }
}

/// One ONNX Runtime session. `Session::run` needs `&mut`: runs on one graph
/// are serialised (each may use many intra-op threads).
pub(crate) struct OrtPlan {
    session: Mutex<Session>,
}

impl OrtPlan {
    pub(crate) fn load(
        name: &str,
        path: &Path,
        providers: &[ExecutionProvider],
    ) -> Result<Self, RuntimeError> {
        let err = |message: String| RuntimeError::Load {
            graph: name.to_owned(),
            message,
        };
        let env = environment().map_err(err)?;
        let in_file = |e: &dyn std::fmt::Display| err(format!("{}: {e}", path.display()));

        let mut builder = Session::builder(&env).map_err(|e| in_file(&e))?;
        if let Some(n) = intra_threads().map_err(err)? {
            builder = builder.with_intra_threads(n).map_err(|e| in_file(&e))?;
        }
        if !providers.is_empty() {
            // The first provider asked for must register (a CPU-only library
            // refuses CUDA: an error, not a silent CPU fallback); later ones are
            // fallbacks. Nodes no provider takes run on the CPU.
            let eps: Vec<_> = providers
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let d = match p {
                        ExecutionProvider::Cuda => ep::CUDA::default().build(),
                        ExecutionProvider::TensorRt => ep::TensorRT::default().build(),
                    };
                    if i == 0 {
                        d.error_on_failure()
                    } else {
                        d
                    }
                })
                .collect();
            builder = builder.with_execution_providers(eps).map_err(|e| {
                in_file(&format!(
                    "execution provider {:?} unavailable (needs a GPU build of ONNX Runtime, \
                     e.g. the onnxruntime-gpu wheel, and its CUDA libraries): {e}",
                    providers[0]
                ))
            })?;
        }
        let session = builder.commit_from_file(path).map_err(|e| in_file(&e))?;
        Ok(Self {
            session: Mutex::new(session),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn input_names(&self) -> Vec<String> {
        self.lock()
            .inputs()
            .iter()
            .map(|i| i.name().to_owned())
            .collect()
    }

    /// The manifest's shapes must fit the graph's f32 inputs.
    pub(crate) fn check_inputs(&self, wanted: &[GraphInput]) -> Result<(), String> {
        let session = self.lock();
        for (input, want) in session.inputs().iter().zip(wanted) {
            let ValueType::Tensor { ty, shape, .. } = input.dtype() else {
                return Err(format!("input {} is not a tensor", input.name()));
            };
            let fits = shape.len() == want.shape.len()
                && shape
                    .iter()
                    .zip(&want.shape)
                    .all(|(&d, &w)| d < 0 || d as usize == w);
            if *ty != ort::value::TensorElementType::Float32 || !fits {
                return Err(format!(
                    "input {} is {ty:?} {:?}, the manifest says f32 {:?}",
                    input.name(),
                    &shape[..],
                    want.shape
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn run(
        &self,
        name: &str,
        specs: &[GraphInput],
        inputs: &[&[f32]],
    ) -> Result<Vec<Array>, RuntimeError> {
        let run_err = |e: ort::Error| RuntimeError::Run {
            graph: name.to_owned(),
            message: e.to_string(),
        };
        let mut values = Vec::with_capacity(inputs.len());
        for (spec, data) in specs.iter().zip(inputs) {
            let tensor =
                TensorRef::from_array_view((spec.shape.as_slice(), *data)).map_err(run_err)?;
            values.push((spec.name.clone(), SessionInputValue::from(tensor)));
        }
        let mut session = self.lock();
        let outputs = session.run(values).map_err(run_err)?;
        outputs
            .values()
            .map(|v| {
                let (shape, data) = v.try_extract_tensor::<f32>().map_err(run_err)?;
                Ok(Array {
                    shape: shape.iter().map(|&d| d as usize).collect(),
                    data: data.to_vec(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::is_runtime_library_name;

    #[test]
    #[cfg(target_os = "linux")]
    fn runtime_library_names() {
        assert!(is_runtime_library_name("libonnxruntime.so"));
        assert!(is_runtime_library_name("libonnxruntime.so.1.32.0"));
        assert!(!is_runtime_library_name(
            "libonnxruntime_providers_shared.so"
        ));
        assert!(!is_runtime_library_name("libonnxruntime_providers_cuda.so"));
        assert!(!is_runtime_library_name("onnxruntime_pybind11_state.so"));
    }
}
