//! Server side: frame payload -> latents -> P̂ -> detections.
//!
//! Everything here consumes bytes from the network: each failure is a typed
//! error that costs one frame, never a panic.

use fchm_codec::container::{
    BundleId, ContainerError, FrameHeader, FrameRef, Layer, Shape, SubstreamKind,
};
use fchm_codec::entropy::EntropyError;
use fchm_codec::hyper::HyperError;
use thiserror::Error;

use super::ivn::Normalisation;
use super::latent::DecodedLatent;
use crate::model::bundle::{Bundle, BundleError};
use crate::model::detect::{Detection, PostProcess};
use crate::model::runtime::RuntimeError;

#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("malformed frame: {0}")]
    Container(#[from] ContainerError),
    #[error("frame was coded with bundle {got}, this decoder has {expected}")]
    BundleMismatch { got: BundleId, expected: BundleId },
    #[error("frame is an {got:?}-layer frame; this decoder handles the {expected:?} layer")]
    Layer { got: Layer, expected: Layer },
    #[error("substream {kind:?} missing from the frame")]
    MissingSubstream { kind: SubstreamKind },
    #[error("substream {kind:?} has shape {got:?}, the bundle codes {expected:?}")]
    Shape {
        kind: SubstreamKind,
        got: Shape,
        expected: [usize; 3],
    },
    #[error("entropy decoding: {0}")]
    Entropy(#[from] EntropyError),
    #[error("hyper-synthesis: {0}")]
    Hyper(#[from] HyperError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

impl DecodeError {
    /// A short, stable label for counters (`/metrics`, stats).
    pub fn cause(&self) -> &'static str {
        match self {
            DecodeError::Container(_) => "malformed",
            DecodeError::BundleMismatch { .. } => "wrong_bundle",
            DecodeError::Layer { .. } => "wrong_layer",
            DecodeError::MissingSubstream { .. } | DecodeError::Shape { .. } => "shape",
            DecodeError::Entropy(_) | DecodeError::Hyper(_) => "bitstream",
            DecodeError::Runtime(_) | DecodeError::Bundle(_) => "internal",
        }
    }
}

/// The deterministic half of decoding: what the bitstream says, before any float network.
#[derive(Debug, Clone)]
pub struct DecodedLatents {
    pub header: FrameHeader,
    pub z_symbols: Vec<i32>,
    pub y_symbols: Vec<i32>,
    /// ŷ = symbols + integer-network means, exactly as the encoder had it.
    pub y_hat: Vec<f32>,
}

#[derive(Debug, Clone)]
pub struct DecodedFrame {
    pub header: FrameHeader,
    pub z_symbols: Vec<i32>,
    pub y_symbols: Vec<i32>,
    /// Decoded features P̂, `[C][H][W]`.
    pub features: Vec<f32>,
    /// Boxes in source-image pixels.
    pub detections: Vec<Detection>,
    /// Raw `[100, 6]` detector output in detector-input pixels.
    pub raw_detections: Vec<f32>,
}

/// The frame was coded by bundle `expected` and belongs to `layer`.
pub(crate) fn check_identity(
    frame: &FrameRef<'_>,
    expected: BundleId,
    layer: Layer,
) -> Result<(), DecodeError> {
    if frame.header.bundle_id != expected {
        return Err(DecodeError::BundleMismatch {
            got: frame.header.bundle_id,
            expected,
        });
    }
    if frame.header.layer != layer {
        return Err(DecodeError::Layer {
            got: frame.header.layer,
            expected: layer,
        });
    }
    Ok(())
}

/// The bytes of substream `kind`, checked to have the shape the bundle codes.
pub(crate) fn substream<'a>(
    frame: &FrameRef<'a>,
    kind: SubstreamKind,
    expected: [usize; 3],
) -> Result<&'a [u8], DecodeError> {
    let s = frame
        .substream(kind)
        .ok_or(DecodeError::MissingSubstream { kind })?;
    if s.shape.to_array() != expected {
        return Err(DecodeError::Shape {
            kind,
            got: s.shape,
            expected,
        });
    }
    Ok(s.data)
}

pub struct FeatureDecoder<'b> {
    bundle: &'b Bundle,
    pub post: PostProcess,
}

impl<'b> FeatureDecoder<'b> {
    pub fn new(bundle: &'b Bundle) -> Result<Self, DecodeError> {
        bundle.require(&bundle.graphs.vfcn_dec, "vfcn_dec")?;
        bundle.require(&bundle.graphs.task_back, "task_back")?;
        Ok(Self {
            bundle,
            post: PostProcess::default(),
        })
    }

    /// Parse and entropy-decode: the deterministic half (no float network).
    pub fn decode_latents(&self, payload: &[u8]) -> Result<DecodedLatents, DecodeError> {
        self.latents_of(&FrameRef::parse(payload)?)
    }

    /// Entropy-decode a frame already parsed (and so validated).
    fn latents_of(&self, frame: &FrameRef<'_>) -> Result<DecodedLatents, DecodeError> {
        let b = self.bundle;
        check_identity(frame, b.manifest.id(), Layer::Machine)?;
        let lat = &b.manifest.latent;
        let z_bytes = substream(frame, SubstreamKind::Z, lat.z)?;
        let y_bytes = substream(frame, SubstreamKind::Y, lat.y)?;
        let d: DecodedLatent = b.latent_codec().decode::<DecodeError>(z_bytes, y_bytes)?;
        Ok(DecodedLatents {
            header: frame.header,
            z_symbols: d.z_symbols,
            y_symbols: d.y_symbols,
            y_hat: d.y_hat,
        })
    }

    pub fn decode(&self, payload: &[u8]) -> Result<DecodedFrame, DecodeError> {
        self.decode_frame(&FrameRef::parse(payload)?)
    }

    /// Latents and the features P̂ (`[C][H][W]`), without the detector back:
    /// what the human layer needs.
    pub fn decode_features(
        &self,
        frame: &FrameRef<'_>,
    ) -> Result<(DecodedLatents, Vec<f32>), DecodeError> {
        let latents = self.latents_of(frame)?;
        let header = latents.header;
        let mut features = self
            .bundle
            .graphs
            .vfcn_dec
            .as_ref()
            .expect("checked")
            .run1(&latents.y_hat)?
            .data;
        Normalisation {
            min: header.feature_min,
            max: header.feature_max,
            gain: header.gain,
        }
        .inverse(&mut features);
        Ok((latents, features))
    }

    /// [`FeatureDecoder::decode`] of a frame the caller parsed already (the
    /// server parses once to pick the bundle, then decodes).
    pub fn decode_frame(&self, frame: &FrameRef<'_>) -> Result<DecodedFrame, DecodeError> {
        let b = self.bundle;
        let (latents, features) = self.decode_features(frame)?;
        let DecodedLatents {
            header,
            z_symbols,
            y_symbols,
            ..
        } = latents;
        let raw = b
            .graphs
            .task_back
            .as_ref()
            .expect("checked")
            .run1(&features)?
            .data;
        let input = &b.manifest.input;
        let sx = header.source_width as f32 / input.width as f32;
        let sy = header.source_height as f32 / input.height as f32;
        let detections = self
            .post
            .apply(&raw)
            .iter()
            .map(|d| d.scaled(sx, sy))
            .collect();
        Ok(DecodedFrame {
            header,
            z_symbols,
            y_symbols,
            features,
            detections,
            raw_detections: raw,
        })
    }
}
