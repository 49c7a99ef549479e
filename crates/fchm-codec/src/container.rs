//! The frame container: one MQTT payload carries exactly one frame, and every
//! frame decodes on its own (no state is shared between payloads).
//!
//! Layout and validation rules are specified in `docs/bitstream.md`; this
//! module is the reference implementation. Payloads come straight off the
//! network, so parsing never panics and never allocates more than the payload
//! itself: every length is checked against the bytes actually present before it
//! is used, and the caps below bound what a decoder will later allocate for a
//! substream's tensor.
//!
//! Validation order: structure and field values are checked first and the CRC
//! last. Checking the CRC first would be equally safe (nothing is indexed
//! without a bounds check either way), but it would turn every corruption into
//! the same `CrcMismatch`; checking fields first makes the error say *which*
//! field is wrong, which is what an operator reading the counters needs.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// `b"FCHM"`: lets a subscriber reject foreign payloads on the topic cheaply.
pub const MAGIC: [u8; 4] = *b"FCHM";
/// The only version this code reads or writes.
pub const VERSION: u8 = 1;
/// Fixed part of the header, up to and including the substream count.
pub const HEADER_LEN: usize = 57;
/// One substream descriptor: kind u8, channels/height/width u16, length u32.
pub const DESCRIPTOR_LEN: usize = 11;
/// Trailing CRC32.
pub const CRC_LEN: usize = 4;
/// Smallest frame that can be valid: header, one descriptor, empty data, CRC.
pub const MIN_FRAME_LEN: usize = HEADER_LEN + DESCRIPTOR_LEN + CRC_LEN;

/// Substreams per frame. v1 defines four kinds and a frame holds each at most
/// once, so this leaves room for kinds added by later versions without letting
/// the descriptor table grow unbounded.
pub const MAX_SUBSTREAMS: usize = 8;
/// Channels per substream tensor.
pub const MAX_CHANNELS: u16 = 1024;
/// Spatial height/width of a substream tensor (latent grids are far smaller
/// than the image; this is a sanity bound, not a design limit).
pub const MAX_SPATIAL: u16 = 4096;
/// Elements per substream tensor (16 Mi). The decoder allocates one symbol per
/// element, so this bounds the memory a tiny payload can make it reserve.
pub const MAX_ELEMENTS: u64 = 16 * 1024 * 1024;
/// Whole payload (16 MiB). Far above any real frame; stops the CRC and copy
/// work a hostile broker client could otherwise demand.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Which model bundle coded the frame; decoding with another bundle's entropy
/// tables would produce garbage silently, so the decoder must compare this.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct BundleId(pub [u8; 16]);

impl fmt::Display for BundleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

// Hex in Debug too: a byte-array dump is unreadable next to manifests and logs.
impl fmt::Debug for BundleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BundleId({self})")
    }
}

/// Why a string is not a bundle id.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BundleIdParseError {
    #[error("bundle_id must be 32 hex digits, got {len} characters")]
    WrongLength { len: usize },
    #[error("bundle_id has non-hex character {ch:?} at position {index}")]
    InvalidDigit { index: usize, ch: char },
}

impl FromStr for BundleId {
    type Err = BundleIdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Count chars, not bytes, so a multi-byte character reports a sane length.
        let len = s.chars().count();
        if len != 32 {
            return Err(BundleIdParseError::WrongLength { len });
        }
        let mut out = [0u8; 16];
        for (index, ch) in s.chars().enumerate() {
            let digit = ch
                .to_digit(16)
                .ok_or(BundleIdParseError::InvalidDigit { index, ch })?;
            let shift = if index & 1 == 0 { 4 } else { 0 };
            out[index / 2] |= (digit as u8) << shift;
        }
        Ok(BundleId(out))
    }
}

// Manifests store the id as a hex string, so serde uses the same form.
impl serde::Serialize for BundleId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for BundleId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Which layer of the scalable stream a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// Base layer: what the detector needs.
    Machine = 0,
    /// Human-viewing enhancement; only decodable together with the machine
    /// frame of the same `sequence`.
    Aux = 1,
}

impl Layer {
    pub fn from_u8(v: u8) -> Option<Layer> {
        match v {
            0 => Some(Layer::Machine),
            1 => Some(Layer::Aux),
            _ => None,
        }
    }
}

/// What a substream holds, which selects its entropy model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubstreamKind {
    /// Machine-layer hyper-latent.
    Z = 0,
    /// Machine-layer latent.
    Y = 1,
    /// Aux-layer hyper-latent.
    AuxZ = 2,
    /// Aux-layer latent.
    AuxY = 3,
}

impl SubstreamKind {
    pub const ALL: [SubstreamKind; 4] = [
        SubstreamKind::Z,
        SubstreamKind::Y,
        SubstreamKind::AuxZ,
        SubstreamKind::AuxY,
    ];

    pub fn from_u8(v: u8) -> Option<SubstreamKind> {
        Self::ALL.get(usize::from(v)).copied()
    }

    /// The layer whose frames may carry this kind.
    pub fn layer(self) -> Layer {
        match self {
            SubstreamKind::Z | SubstreamKind::Y => Layer::Machine,
            SubstreamKind::AuxZ | SubstreamKind::AuxY => Layer::Aux,
        }
    }
}

/// Tensor shape of a substream's symbols, channels-first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    pub channels: u16,
    pub height: u16,
    pub width: u16,
}

impl Shape {
    pub const fn new(channels: u16, height: u16, width: u16) -> Shape {
        Shape {
            channels,
            height,
            width,
        }
    }

    /// Element count; u64 because the product of three u16 overflows u32.
    pub fn elements(self) -> u64 {
        u64::from(self.channels) * u64::from(self.height) * u64::from(self.width)
    }

    pub fn to_array(self) -> [usize; 3] {
        [
            usize::from(self.channels),
            usize::from(self.height),
            usize::from(self.width),
        ]
    }
}

impl From<[u16; 3]> for Shape {
    fn from([c, h, w]: [u16; 3]) -> Shape {
        Shape::new(c, h, w)
    }
}

/// Everything in the fixed header that a decoder uses. `version` and `flags`
/// are not here: v1 has exactly one legal value for each, so the writer
/// supplies them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameHeader {
    pub layer: Layer,
    pub bundle_id: BundleId,
    /// Frame counter of the camera; pairs aux frames with machine frames.
    pub sequence: u64,
    /// Capture time, microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// IVN gain the encoder applied; finite and > 0.
    pub gain: f32,
    /// Feature range used to normalise P before coding; finite, min < max.
    pub feature_min: f32,
    pub feature_max: f32,
    /// Size of the camera image the features came from; both > 0.
    pub source_width: u16,
    pub source_height: u16,
}

/// One coded tensor, owning its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Substream {
    pub kind: SubstreamKind,
    pub shape: Shape,
    pub data: Vec<u8>,
}

/// One coded tensor borrowing its bytes from the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubstreamRef<'a> {
    pub kind: SubstreamKind,
    pub shape: Shape,
    pub data: &'a [u8],
}

impl SubstreamRef<'_> {
    pub fn to_substream(&self) -> Substream {
        Substream {
            kind: self.kind,
            shape: self.shape,
            data: self.data.to_vec(),
        }
    }
}

impl Substream {
    pub fn as_substream_ref(&self) -> SubstreamRef<'_> {
        SubstreamRef {
            kind: self.kind,
            shape: self.shape,
            data: &self.data,
        }
    }
}

/// A frame owning its substream bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub header: FrameHeader,
    pub substreams: Vec<Substream>,
}

/// A frame borrowing substream bytes from the payload (no copy on parse).
#[derive(Debug, Clone, PartialEq)]
pub struct FrameRef<'a> {
    pub header: FrameHeader,
    pub substreams: Vec<SubstreamRef<'a>>,
}

/// Everything that can be wrong with a payload (or with a frame handed to the
/// encoder). One variant per problem so each can be counted separately.
///
/// `PartialEq` compares the offending float values as floats, so an error
/// carrying a NaN is not equal to itself; match on the variant instead.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ContainerError {
    #[error("payload is {len} bytes, shorter than the minimum frame of {min} bytes")]
    TooShort { len: usize, min: usize },
    #[error("payload is {len} bytes, above the cap of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("magic is {found:02x?}, expected \"FCHM\"")]
    BadMagic { found: [u8; 4] },
    #[error("version is {found}, only version {VERSION} is supported")]
    UnsupportedVersion { found: u8 },
    #[error("layer is {found}, expected 0 (machine) or 1 (aux)")]
    UnknownLayer { found: u8 },
    #[error("flags is {found:#06x}, must be 0 in version {VERSION}")]
    NonZeroFlags { found: u16 },
    #[error("gain is {value}, must be finite and > 0")]
    InvalidGain { value: f32 },
    #[error("feature_min is {value}, must be finite")]
    NonFiniteFeatureMin { value: f32 },
    #[error("feature_max is {value}, must be finite")]
    NonFiniteFeatureMax { value: f32 },
    #[error("feature range is empty: feature_min {min} >= feature_max {max}")]
    EmptyFeatureRange { min: f32, max: f32 },
    #[error("source_width is 0")]
    ZeroSourceWidth,
    #[error("source_height is 0")]
    ZeroSourceHeight,
    #[error("substream count is {count}, must be 1..={MAX_SUBSTREAMS}")]
    BadSubstreamCount { count: usize },
    #[error(
        "{count} substream descriptors need {needed} bytes before the data, payload has {len}"
    )]
    TruncatedDescriptors {
        count: usize,
        needed: usize,
        len: usize,
    },
    #[error("substream {index}: kind is {found}, expected 0..=3")]
    UnknownSubstreamKind { index: usize, found: u8 },
    #[error("substream {index}: kind {kind:?} appears twice")]
    DuplicateSubstreamKind { index: usize, kind: SubstreamKind },
    #[error("substream {index}: kind {kind:?} does not belong in a {layer:?}-layer frame")]
    KindLayerMismatch {
        index: usize,
        kind: SubstreamKind,
        layer: Layer,
    },
    #[error("substream {index}: channels is {value}, must be 1..={MAX_CHANNELS}")]
    ChannelsOutOfRange { index: usize, value: u16 },
    #[error("substream {index}: height is {value}, must be 1..={MAX_SPATIAL}")]
    HeightOutOfRange { index: usize, value: u16 },
    #[error("substream {index}: width is {value}, must be 1..={MAX_SPATIAL}")]
    WidthOutOfRange { index: usize, value: u16 },
    #[error("substream {index}: shape has {elements} elements, above the cap of {MAX_ELEMENTS}")]
    TooManyElements { index: usize, elements: u64 },
    #[error(
        "substream {index}: byte length is {len}, only {remaining} bytes remain before the CRC"
    )]
    SubstreamTooLong {
        index: usize,
        len: u64,
        remaining: usize,
    },
    #[error("payload is {len} bytes, the header declares {declared}: trailing bytes")]
    TrailingBytes { len: usize, declared: usize },
    #[error("CRC32 is {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
}

fn check_header(h: &FrameHeader) -> Result<(), ContainerError> {
    if !h.gain.is_finite() || h.gain <= 0.0 {
        return Err(ContainerError::InvalidGain { value: h.gain });
    }
    if !h.feature_min.is_finite() {
        return Err(ContainerError::NonFiniteFeatureMin {
            value: h.feature_min,
        });
    }
    if !h.feature_max.is_finite() {
        return Err(ContainerError::NonFiniteFeatureMax {
            value: h.feature_max,
        });
    }
    if h.feature_min >= h.feature_max {
        return Err(ContainerError::EmptyFeatureRange {
            min: h.feature_min,
            max: h.feature_max,
        });
    }
    if h.source_width == 0 {
        return Err(ContainerError::ZeroSourceWidth);
    }
    if h.source_height == 0 {
        return Err(ContainerError::ZeroSourceHeight);
    }
    Ok(())
}

fn check_count(count: usize) -> Result<(), ContainerError> {
    if count == 0 || count > MAX_SUBSTREAMS {
        return Err(ContainerError::BadSubstreamCount { count });
    }
    Ok(())
}

/// `seen` is a bitmask of kinds already present in the frame.
fn check_descriptor(
    index: usize,
    kind: SubstreamKind,
    shape: Shape,
    layer: Layer,
    seen: &mut u8,
) -> Result<(), ContainerError> {
    let bit = 1u8 << (kind as u8);
    if *seen & bit != 0 {
        return Err(ContainerError::DuplicateSubstreamKind { index, kind });
    }
    *seen |= bit;
    if kind.layer() != layer {
        return Err(ContainerError::KindLayerMismatch { index, kind, layer });
    }
    if shape.channels == 0 || shape.channels > MAX_CHANNELS {
        return Err(ContainerError::ChannelsOutOfRange {
            index,
            value: shape.channels,
        });
    }
    if shape.height == 0 || shape.height > MAX_SPATIAL {
        return Err(ContainerError::HeightOutOfRange {
            index,
            value: shape.height,
        });
    }
    if shape.width == 0 || shape.width > MAX_SPATIAL {
        return Err(ContainerError::WidthOutOfRange {
            index,
            value: shape.width,
        });
    }
    let elements = shape.elements();
    if elements > MAX_ELEMENTS {
        return Err(ContainerError::TooManyElements { index, elements });
    }
    Ok(())
}

// Fixed-width reads; callers guarantee `off + width <= b.len()` by the length
// checks in `parse`, so indexing here is a bug check, not input validation.
fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}
fn f32_at(b: &[u8], off: usize) -> f32 {
    f32::from_bits(u32_at(b, off))
}

impl<'a> FrameRef<'a> {
    /// Validates `bytes` as one complete frame and borrows its substreams.
    pub fn parse(bytes: &'a [u8]) -> Result<FrameRef<'a>, ContainerError> {
        let len = bytes.len();
        if len < MIN_FRAME_LEN {
            return Err(ContainerError::TooShort {
                len,
                min: MIN_FRAME_LEN,
            });
        }
        if len > MAX_FRAME_LEN {
            return Err(ContainerError::TooLarge {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        // From here on the fixed header (57 bytes) is known to be present.
        let mut magic = [0u8; 4];
        magic.copy_from_slice(&bytes[0..4]);
        if magic != MAGIC {
            return Err(ContainerError::BadMagic { found: magic });
        }
        if bytes[4] != VERSION {
            return Err(ContainerError::UnsupportedVersion { found: bytes[4] });
        }
        let layer =
            Layer::from_u8(bytes[5]).ok_or(ContainerError::UnknownLayer { found: bytes[5] })?;
        let flags = u16_at(bytes, 6);
        if flags != 0 {
            return Err(ContainerError::NonZeroFlags { found: flags });
        }
        let mut bundle = [0u8; 16];
        bundle.copy_from_slice(&bytes[8..24]);
        let header = FrameHeader {
            layer,
            bundle_id: BundleId(bundle),
            sequence: u64_at(bytes, 24),
            timestamp_us: u64_at(bytes, 32),
            gain: f32_at(bytes, 40),
            feature_min: f32_at(bytes, 44),
            feature_max: f32_at(bytes, 48),
            source_width: u16_at(bytes, 52),
            source_height: u16_at(bytes, 54),
        };
        check_header(&header)?;

        let count = usize::from(bytes[56]);
        check_count(count)?;
        // count <= 8, so this cannot overflow.
        let data_start = HEADER_LEN + count * DESCRIPTOR_LEN;
        if data_start + CRC_LEN > len {
            return Err(ContainerError::TruncatedDescriptors {
                count,
                needed: data_start + CRC_LEN,
                len,
            });
        }

        // Whole descriptor table first, then the lengths, so a bad kind or
        // shape is reported as such even when lengths are also off.
        let mut descriptors = [(SubstreamKind::Z, Shape::new(0, 0, 0), 0u32); MAX_SUBSTREAMS];
        let mut seen = 0u8;
        for (index, slot) in descriptors[..count].iter_mut().enumerate() {
            let d = HEADER_LEN + index * DESCRIPTOR_LEN;
            let kind =
                SubstreamKind::from_u8(bytes[d]).ok_or(ContainerError::UnknownSubstreamKind {
                    index,
                    found: bytes[d],
                })?;
            let shape = Shape::new(
                u16_at(bytes, d + 1),
                u16_at(bytes, d + 3),
                u16_at(bytes, d + 5),
            );
            check_descriptor(index, kind, shape, layer, &mut seen)?;
            *slot = (kind, shape, u32_at(bytes, d + 7));
        }

        let crc_at = len - CRC_LEN;
        let mut substreams = Vec::with_capacity(count);
        let mut offset = data_start;
        for (index, &(kind, shape, sub_len)) in descriptors[..count].iter().enumerate() {
            // offset <= crc_at is an invariant: data_start was checked above and
            // each step below advances by at most the remaining span.
            let remaining = crc_at - offset;
            let sub_len = usize::try_from(sub_len)
                .ok()
                .filter(|&l| l <= remaining)
                .ok_or(ContainerError::SubstreamTooLong {
                    index,
                    len: u64::from(sub_len),
                    remaining,
                })?;
            substreams.push(SubstreamRef {
                kind,
                shape,
                data: &bytes[offset..offset + sub_len],
            });
            offset += sub_len;
        }
        if offset != crc_at {
            return Err(ContainerError::TrailingBytes {
                len,
                declared: offset + CRC_LEN,
            });
        }

        let stored = u32_at(bytes, crc_at);
        let computed = crc32fast::hash(&bytes[..crc_at]);
        if stored != computed {
            return Err(ContainerError::CrcMismatch { stored, computed });
        }
        Ok(FrameRef { header, substreams })
    }

    pub fn substream(&self, kind: SubstreamKind) -> Option<&SubstreamRef<'a>> {
        self.substreams.iter().find(|s| s.kind == kind)
    }

    pub fn to_frame(&self) -> Frame {
        Frame {
            header: self.header,
            substreams: self
                .substreams
                .iter()
                .map(SubstreamRef::to_substream)
                .collect(),
        }
    }

    /// Serialises the frame; fails with the same error `parse` would give, so
    /// the encoder can never publish a payload that decoders reject.
    pub fn encode(&self) -> Result<Vec<u8>, ContainerError> {
        encode(&self.header, &self.substreams)
    }
}

impl Frame {
    /// Validates `bytes` as one complete frame and copies its substreams out.
    pub fn parse(bytes: &[u8]) -> Result<Frame, ContainerError> {
        FrameRef::parse(bytes).map(|f| f.to_frame())
    }

    pub fn substream(&self, kind: SubstreamKind) -> Option<&Substream> {
        self.substreams.iter().find(|s| s.kind == kind)
    }

    pub fn as_frame_ref(&self) -> FrameRef<'_> {
        FrameRef {
            header: self.header,
            substreams: self
                .substreams
                .iter()
                .map(Substream::as_substream_ref)
                .collect(),
        }
    }

    /// Serialises the frame; fails with the same error `parse` would give, so
    /// the encoder can never publish a payload that decoders reject.
    pub fn encode(&self) -> Result<Vec<u8>, ContainerError> {
        self.as_frame_ref().encode()
    }
}

fn encode(header: &FrameHeader, subs: &[SubstreamRef<'_>]) -> Result<Vec<u8>, ContainerError> {
    check_header(header)?;
    let count = subs.len();
    check_count(count)?;
    let mut seen = 0u8;
    let mut total = HEADER_LEN + count * DESCRIPTOR_LEN + CRC_LEN;
    for (index, s) in subs.iter().enumerate() {
        check_descriptor(index, s.kind, s.shape, header.layer, &mut seen)?;
        // Saturating: a sum near usize::MAX is rejected by the cap just below.
        total = total.saturating_add(s.data.len());
    }
    // The cap (16 MiB) is below u32::MAX, so it also guarantees every length
    // fits its u32 field.
    if total > MAX_FRAME_LEN {
        return Err(ContainerError::TooLarge {
            len: total,
            max: MAX_FRAME_LEN,
        });
    }

    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(header.layer as u8);
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&header.bundle_id.0);
    out.extend_from_slice(&header.sequence.to_le_bytes());
    out.extend_from_slice(&header.timestamp_us.to_le_bytes());
    out.extend_from_slice(&header.gain.to_bits().to_le_bytes());
    out.extend_from_slice(&header.feature_min.to_bits().to_le_bytes());
    out.extend_from_slice(&header.feature_max.to_bits().to_le_bytes());
    out.extend_from_slice(&header.source_width.to_le_bytes());
    out.extend_from_slice(&header.source_height.to_le_bytes());
    out.push(count as u8);
    for s in subs {
        out.push(s.kind as u8);
        out.extend_from_slice(&s.shape.channels.to_le_bytes());
        out.extend_from_slice(&s.shape.height.to_le_bytes());
        out.extend_from_slice(&s.shape.width.to_le_bytes());
        out.extend_from_slice(&(s.data.len() as u32).to_le_bytes());
    }
    for s in subs {
        out.extend_from_slice(s.data);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len(), total);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_id_hex_round_trip() {
        let id = BundleId([
            0x00, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76,
            0x54, 0x32,
        ]);
        let s = id.to_string();
        assert_eq!(s, "000123456789abcdeffedcba98765432");
        assert_eq!(s.parse::<BundleId>().unwrap(), id);
        assert_eq!(s.to_uppercase().parse::<BundleId>().unwrap(), id);
        assert_eq!(
            "00".parse::<BundleId>(),
            Err(BundleIdParseError::WrongLength { len: 2 })
        );
        assert_eq!(
            "000123456789abcdeffedcba9876543g".parse::<BundleId>(),
            Err(BundleIdParseError::InvalidDigit { index: 31, ch: 'g' })
        );
        // 32 chars but multi-byte: must be an error, not a slicing panic.
        assert!("é".repeat(32).parse::<BundleId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{s}\""));
        assert_eq!(serde_json::from_str::<BundleId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<BundleId>("\"zz\"").is_err());
    }

    #[test]
    fn header_layout_constants_agree() {
        assert_eq!(MIN_FRAME_LEN, 72);
        assert!(MAX_FRAME_LEN < u32::MAX as usize);
    }
}
