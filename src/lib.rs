//! fchm: feature coding for humans and machines on edge cameras.
//!
//! Data flows one way. On the camera: capture → [`model`] (detector front) →
//! [`codec`] (IVN, latents, entropy coding) → rate → transport. On the
//! server: transport → [`codec`] → [`model`] (detector back) → detections.
//! The byte-level codec core that must agree across CPUs is the separate
//! `fchm-codec` crate, re-exported as [`core`].

pub use fchm_codec as core;

pub mod bench;
pub mod capture;
pub mod cli;
pub mod clock;
pub mod codec;
pub mod config;
pub mod edge;
pub mod eval;
pub mod human;
pub mod model;
pub mod npy;
pub mod rate;
pub mod server;
pub mod telemetry;
pub mod transport;
