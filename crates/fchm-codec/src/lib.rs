//! fchm's codec core: everything that must decode the same on every CPU.
//!
//! - [`rans`]: a rANS coder byte-compatible with CompressAI's;
//! - [`entropy`]: the factorized (hyper-latent) and Gaussian-conditional (latent)
//!   entropy models over a bundle's integer CDF tables;
//! - [`hyper`]: the integer hyper-synthesis that picks each latent's table and mean;
//! - [`container`]: the frame container, one MQTT payload per frame.
//!
//! Nothing here runs a float network: that lives in the `fchm` crate's model
//! runtime. This split keeps the bytes-from-the-network code small, fast to
//! build and easy to fuzz.

pub mod container;
pub mod entropy;
pub mod hyper;
pub mod rans;
