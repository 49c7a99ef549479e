//! The model side: bundle manifest, inference runtime (tract; ONNX Runtime with
//! the `ort` feature), pre- and post-processing.

pub mod bundle;
pub mod detect;
pub mod manifest;
#[cfg(feature = "ort")]
pub mod ort_backend;
pub mod preprocess;
pub mod runtime;

pub use bundle::{Bundle, BundleError, Role};
pub use detect::{Detection, LabelledBox, PostProcess};
pub use manifest::Manifest;
pub use runtime::Backend;
