//! HVCN, the human layer: what a person sees, rebuilt from the machine
//! features plus a small auxiliary stream (docs/human-layer.md).
//!
//! On the camera the ACN codes an aux latent ([`aux::AuxEncoder`]); on the
//! server the aux frame is decoded ([`aux::AuxDecoder`]) and fused with the
//! decoded features P̂ into a picture ([`view::HumanDecoder`]): the fast,
//! deterministic fusion decoder, or the diffusion path (FCN + denoiser,
//! sampled by [`scheduler`]). The human layer is a bundle of its own
//! ([`bundle::HumanBundle`]) that names the machine bundle it was trained on.

pub mod aux;
pub mod bundle;
pub mod manifest;
pub mod scheduler;
pub mod view;

pub use aux::{AuxDecoder, AuxEncoder, AuxLatent};
pub use bundle::HumanBundle;
pub use manifest::HumanManifest;
pub use view::{HumanDecoder, ViewMode};
