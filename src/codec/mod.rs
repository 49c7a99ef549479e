//! Image -> frame payload -> features and detections: the model graphs around
//! the deterministic codec core (`fchm_codec`).
//!
//! Encoding is split in two so a rate controller can code one captured frame
//! at several gains while running the expensive detector front only once.

mod decoder;
mod encoder;
mod ivn;
mod latent;

pub(crate) use decoder::{check_identity, substream};
pub use decoder::{DecodeError, DecodedFrame, DecodedLatents, FeatureDecoder};
pub(crate) use encoder::{check_gain, shape_of};
pub use encoder::{EncodeError, EncodedFrame, FeatureEncoder, Features, FrameMeta};
pub use ivn::Normalisation;
pub use latent::{CodedLatent, DecodedLatent, LatentCodec};
