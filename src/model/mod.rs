//! The model side: bundle manifest, tract runtime, pre- and post-processing.

pub mod bundle;
pub mod detect;
pub mod manifest;
pub mod preprocess;
pub mod runtime;

pub use bundle::{Bundle, BundleError, Role};
pub use detect::{Detection, PostProcess};
pub use manifest::Manifest;
