//! Camera side: image -> P (detector front) -> IVN -> latents -> frame payload.

use fchm_codec::container::{
    ContainerError, Frame, FrameHeader, Layer, Shape, Substream, SubstreamKind,
};
use fchm_codec::entropy::EntropyError;
use image::RgbImage;
use thiserror::Error;

use super::ivn::Normalisation;
use super::latent::CodedLatent;
use crate::model::bundle::{Bundle, BundleError};
use crate::model::preprocess;
use crate::model::runtime::RuntimeError;

#[derive(Debug, Error)]
pub enum EncodeError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("entropy coding: {0}")]
    Entropy(#[from] EntropyError),
    #[error("hyper-synthesis: {0}")]
    Hyper(#[from] fchm_codec::hyper::HyperError),
    #[error("frame container: {0}")]
    Container(#[from] ContainerError),
    #[error("gain {gain} outside the bundle's range {min}..={max}")]
    Gain { gain: f32, min: f32, max: f32 },
    #[error("image is {width}x{height}; frames carry sizes up to 65535")]
    ImageSize { width: u32, height: u32 },
}

/// The detector front's output for one captured image, ready to code at any gain.
#[derive(Debug, Clone)]
pub struct Features {
    pub data: Vec<f32>,
    pub source_width: u16,
    pub source_height: u16,
}

/// Per-frame identity carried in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta {
    pub sequence: u64,
    pub timestamp_us: u64,
}

#[derive(Debug, Clone)]
pub struct EncodedFrame {
    pub bytes: Vec<u8>,
    pub gain: f32,
    /// Latent symbols as coded, for tests and the determinism check.
    pub z_symbols: Vec<i32>,
    pub y_symbols: Vec<i32>,
}

pub struct FeatureEncoder<'b> {
    bundle: &'b Bundle,
}

/// `gain` is finite and inside the bundle's range.
pub(crate) fn check_gain(gain: f32, min: f32, max: f32) -> Result<(), EncodeError> {
    if gain.is_finite() && gain >= min && gain <= max {
        Ok(())
    } else {
        Err(EncodeError::Gain { gain, min, max })
    }
}

pub(crate) fn shape_of(s: [usize; 3]) -> Shape {
    // Manifest shapes are small; the container validates them again on parse.
    Shape::new(s[0] as u16, s[1] as u16, s[2] as u16)
}

impl<'b> FeatureEncoder<'b> {
    pub fn new(bundle: &'b Bundle) -> Result<Self, EncodeError> {
        let g = &bundle.graphs;
        bundle.require(&g.front, "front")?;
        bundle.require(&g.vfcn_enc, "vfcn_enc")?;
        bundle.require(&g.vfcn_hyper_enc, "vfcn_hyper_enc")?;
        Ok(Self { bundle })
    }

    /// Run the detector front: the expensive, gain-independent part.
    pub fn features(&self, img: &RgbImage) -> Result<Features, EncodeError> {
        let (width, height) = img.dimensions();
        let (Ok(w), Ok(h)) = (u16::try_from(width), u16::try_from(height)) else {
            return Err(EncodeError::ImageSize { width, height });
        };
        if w == 0 || h == 0 {
            return Err(EncodeError::ImageSize { width, height });
        }
        let input = preprocess::to_input(img, &self.bundle.manifest.input);
        let front = self.bundle.graphs.front.as_ref().expect("checked in new()");
        Ok(Features {
            data: front.run1(&input)?.data,
            source_width: w,
            source_height: h,
        })
    }

    /// Code features at `gain` into one frame payload.
    pub fn encode(
        &self,
        f: &Features,
        gain: f32,
        meta: FrameMeta,
    ) -> Result<EncodedFrame, EncodeError> {
        let b = self.bundle;
        let ivn = &b.manifest.ivn;
        check_gain(gain, ivn.gain_min, ivn.gain_max)?;
        let norm = Normalisation::of(&f.data, gain);
        let x = norm.forward(&f.data);
        let y = b.graphs.vfcn_enc.as_ref().expect("checked").run1(&x)?;
        let z = b
            .graphs
            .vfcn_hyper_enc
            .as_ref()
            .expect("checked")
            .run1(&y.data)?;

        let coded: CodedLatent = b.latent_codec().encode::<EncodeError>(&y.data, &z.data)?;
        let frame = Frame {
            header: FrameHeader {
                layer: Layer::Machine,
                bundle_id: b.manifest.id(),
                sequence: meta.sequence,
                timestamp_us: meta.timestamp_us,
                gain,
                feature_min: norm.min,
                feature_max: norm.max,
                source_width: f.source_width,
                source_height: f.source_height,
            },
            substreams: vec![
                Substream {
                    kind: SubstreamKind::Z,
                    shape: shape_of(b.manifest.latent.z),
                    data: coded.z_bytes,
                },
                Substream {
                    kind: SubstreamKind::Y,
                    shape: shape_of(b.manifest.latent.y),
                    data: coded.y_bytes,
                },
            ],
        };
        Ok(EncodedFrame {
            bytes: frame.encode()?,
            gain,
            z_symbols: coded.z_symbols,
            y_symbols: coded.y_symbols,
        })
    }
}
