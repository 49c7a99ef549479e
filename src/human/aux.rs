//! The aux layer's bitstream: ACN on the camera, entropy decoding on the server.
//!
//! An aux frame is a frame of layer `Aux` whose `sequence` is that of the
//! machine frame it enhances and whose `bundle_id` is the human-layer
//! bundle's; `gain` is the aux quantiser gain. Its `feature_min`/`feature_max`
//! repeat the machine frame's normalisation (informational: the server takes
//! P̂ from the machine frame).

use fchm_codec::container::{Frame, FrameHeader, FrameRef, Layer, Substream, SubstreamKind};
use image::RgbImage;

use super::bundle::HumanBundle;
use crate::codec::{
    check_gain, check_identity, shape_of, substream, CodedLatent, DecodeError, DecodedLatent,
    EncodeError, EncodedFrame, Features, FrameMeta, Normalisation,
};
use crate::model::preprocess;

/// Camera side: (image, features P) -> aux frame payload.
pub struct AuxEncoder<'b> {
    bundle: &'b HumanBundle,
}

impl<'b> AuxEncoder<'b> {
    pub fn new(bundle: &'b HumanBundle) -> Result<Self, EncodeError> {
        bundle.require(&bundle.graphs.acn_enc, "acn_enc")?;
        bundle.require(&bundle.graphs.acn_hyper_enc, "acn_hyper_enc")?;
        Ok(Self { bundle })
    }

    /// The aux latent before the gain: the expensive, gain-independent part.
    pub fn analyse(&self, img: &RgbImage, features: &Features) -> Result<Vec<f32>, EncodeError> {
        let input = preprocess::to_input(img, &self.bundle.manifest.input);
        let norm = Normalisation::of(&features.data, 1.0);
        let pbar = norm.forward(&features.data);
        let acn = self
            .bundle
            .graphs
            .acn_enc
            .as_ref()
            .expect("checked in new()");
        let out = acn.run_named(&[("image", &input), ("pbar", &pbar)])?;
        Ok(out.into_iter().next().map(|a| a.data).unwrap_or_default())
    }

    /// Code an analysed aux latent at `gain` into one aux frame.
    pub fn encode(
        &self,
        ya: &[f32],
        features: &Features,
        gain: f32,
        meta: FrameMeta,
    ) -> Result<EncodedFrame, EncodeError> {
        let b = self.bundle;
        let aux = &b.manifest.aux;
        check_gain(gain, aux.gain_min, aux.gain_max)?;
        let y: Vec<f32> = ya.iter().map(|v| v * gain).collect();
        let z = b.graphs.acn_hyper_enc.as_ref().expect("checked").run1(&y)?;
        let coded: CodedLatent = b.latent_codec().encode::<EncodeError>(&y, &z.data)?;
        let norm = Normalisation::of(&features.data, 1.0);
        let frame = Frame {
            header: FrameHeader {
                layer: Layer::Aux,
                bundle_id: b.manifest.id(),
                sequence: meta.sequence,
                timestamp_us: meta.timestamp_us,
                gain,
                feature_min: norm.min,
                feature_max: norm.max,
                source_width: features.source_width,
                source_height: features.source_height,
            },
            substreams: vec![
                Substream {
                    kind: SubstreamKind::AuxZ,
                    shape: shape_of(aux.latent.z),
                    data: coded.z_bytes,
                },
                Substream {
                    kind: SubstreamKind::AuxY,
                    shape: shape_of(aux.latent.y),
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

/// A decoded aux frame: ŷa / gain, what the fusion networks take.
#[derive(Debug, Clone)]
pub struct AuxLatent {
    pub header: FrameHeader,
    pub z_symbols: Vec<i32>,
    pub y_symbols: Vec<i32>,
    pub ya_hat: Vec<f32>,
}

/// Server side: aux payload -> aux latent. Needs no graph.
pub struct AuxDecoder<'b> {
    bundle: &'b HumanBundle,
}

impl<'b> AuxDecoder<'b> {
    pub fn new(bundle: &'b HumanBundle) -> Self {
        Self { bundle }
    }

    pub fn decode(&self, payload: &[u8]) -> Result<AuxLatent, DecodeError> {
        self.decode_frame(&FrameRef::parse(payload)?)
    }

    pub fn decode_frame(&self, frame: &FrameRef<'_>) -> Result<AuxLatent, DecodeError> {
        let b = self.bundle;
        check_identity(frame, b.manifest.id(), Layer::Aux)?;
        let lat = &b.manifest.aux.latent;
        let z = substream(frame, SubstreamKind::AuxZ, lat.z)?;
        let y = substream(frame, SubstreamKind::AuxY, lat.y)?;
        let d: DecodedLatent = b.latent_codec().decode::<DecodeError>(z, y)?;
        let gain = frame.header.gain;
        Ok(AuxLatent {
            header: frame.header,
            ya_hat: d.y_hat.iter().map(|v| v / gain).collect(),
            z_symbols: d.z_symbols,
            y_symbols: d.y_symbols,
        })
    }
}
