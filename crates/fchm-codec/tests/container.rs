//! Frame container: round trip, one test per header field and descriptor field
//! asserting that field's own error, and no-panic properties over hostile input.

use fchm_codec::container::*;
use proptest::prelude::*;

// Byte offsets of the fixed header, as specified in docs/bitstream.md. Written
// out here (not taken from the module) so the tests pin the wire layout.
const OFF_VERSION: usize = 4;
const OFF_LAYER: usize = 5;
const OFF_FLAGS: usize = 6;
const OFF_BUNDLE: usize = 8;
const OFF_SEQUENCE: usize = 24;
const OFF_TIMESTAMP: usize = 32;
const OFF_GAIN: usize = 40;
const OFF_MIN: usize = 44;
const OFF_MAX: usize = 48;
const OFF_SRC_W: usize = 52;
const OFF_SRC_H: usize = 54;
const OFF_COUNT: usize = 56;
const OFF_DESC: usize = 57;
// Within a descriptor.
const D_KIND: usize = 0;
const D_CHANNELS: usize = 1;
const D_HEIGHT: usize = 3;
const D_WIDTH: usize = 5;
const D_LEN: usize = 7;

fn header(layer: Layer) -> FrameHeader {
    FrameHeader {
        layer,
        bundle_id: "0123456789abcdef0123456789abcdef".parse().unwrap(),
        sequence: 42,
        timestamp_us: 1_700_000_000_000_000,
        gain: 1.5,
        feature_min: -3.25,
        feature_max: 7.5,
        source_width: 1920,
        source_height: 1080,
    }
}

/// Machine frame with z (3 bytes) then y (5 bytes).
fn sample() -> Frame {
    Frame {
        header: header(Layer::Machine),
        substreams: vec![
            Substream {
                kind: SubstreamKind::Z,
                shape: Shape::new(192, 4, 6),
                data: vec![1, 2, 3],
            },
            Substream {
                kind: SubstreamKind::Y,
                shape: Shape::new(320, 16, 24),
                data: vec![9, 8, 7, 6, 5],
            },
        ],
    }
}

fn sample_bytes() -> Vec<u8> {
    sample().encode().unwrap()
}

fn fix_crc(b: &mut [u8]) {
    let n = b.len() - 4;
    let crc = crc32fast::hash(&b[..n]);
    b[n..].copy_from_slice(&crc.to_le_bytes());
}

/// Overwrites `value` at `off`, recomputes the CRC, and parses.
fn patched(off: usize, value: &[u8]) -> Result<Frame, ContainerError> {
    let mut b = sample_bytes();
    b[off..off + value.len()].copy_from_slice(value);
    fix_crc(&mut b);
    Frame::parse(&b)
}

fn desc(index: usize, field: usize) -> usize {
    OFF_DESC + index * 11 + field
}

#[test]
fn sample_round_trips_and_pins_layout() {
    let f = sample();
    let b = f.encode().unwrap();
    assert_eq!(b.len(), 57 + 2 * 11 + 3 + 5 + 4);
    assert_eq!(&b[..4], b"FCHM");
    assert_eq!(b[OFF_VERSION], 1);
    assert_eq!(b[OFF_COUNT], 2);
    assert_eq!(&b[OFF_SEQUENCE..OFF_SEQUENCE + 8], &42u64.to_le_bytes());
    assert_eq!(&b[desc(1, D_CHANNELS)..][..2], &320u16.to_le_bytes());
    assert_eq!(&b[desc(1, D_LEN)..][..4], &5u32.to_le_bytes());
    assert_eq!(&b[b.len() - 12..b.len() - 4], &[1, 2, 3, 9, 8, 7, 6, 5]);
    let back = Frame::parse(&b).unwrap();
    assert_eq!(back, f);
    assert_eq!(
        back.substream(SubstreamKind::Y).unwrap().data,
        [9, 8, 7, 6, 5]
    );
    assert!(back.substream(SubstreamKind::AuxY).is_none());
    let r = FrameRef::parse(&b).unwrap();
    assert_eq!(r.substream(SubstreamKind::Z).unwrap().data, &[1, 2, 3]);
    assert_eq!(r.to_frame(), f);
}

#[test]
fn magic() {
    let mut b = sample_bytes();
    b[0] = b'X';
    assert_eq!(
        Frame::parse(&b),
        Err(ContainerError::BadMagic { found: *b"XCHM" })
    );
}

#[test]
fn version() {
    assert_eq!(
        patched(OFF_VERSION, &[2]),
        Err(ContainerError::UnsupportedVersion { found: 2 })
    );
    assert_eq!(
        patched(OFF_VERSION, &[0]),
        Err(ContainerError::UnsupportedVersion { found: 0 })
    );
}

#[test]
fn layer() {
    assert_eq!(
        patched(OFF_LAYER, &[2]),
        Err(ContainerError::UnknownLayer { found: 2 })
    );
    // A valid layer that does not match the substreams' kinds.
    assert_eq!(
        patched(OFF_LAYER, &[1]),
        Err(ContainerError::KindLayerMismatch {
            index: 0,
            kind: SubstreamKind::Z,
            layer: Layer::Aux
        })
    );
}

#[test]
fn flags() {
    assert_eq!(
        patched(OFF_FLAGS, &0x0100u16.to_le_bytes()),
        Err(ContainerError::NonZeroFlags { found: 0x0100 })
    );
}

#[test]
fn bundle_id_sequence_timestamp_any_value_is_legal_but_crc_protected() {
    // These fields have no invalid values, so only the CRC can catch a flip.
    for (off, len) in [(OFF_BUNDLE, 16), (OFF_SEQUENCE, 8), (OFF_TIMESTAMP, 8)] {
        let mut b = sample_bytes();
        b[off + len - 1] ^= 0x80;
        assert!(matches!(
            Frame::parse(&b),
            Err(ContainerError::CrcMismatch { .. })
        ));
        fix_crc(&mut b);
        let f = Frame::parse(&b).unwrap();
        assert_ne!(f.header, sample().header);
    }
    let f = patched(OFF_BUNDLE, &[0xff; 16]).unwrap();
    assert_eq!(f.header.bundle_id, BundleId([0xff; 16]));
    let f = patched(OFF_SEQUENCE, &u64::MAX.to_le_bytes()).unwrap();
    assert_eq!(f.header.sequence, u64::MAX);
    let f = patched(OFF_TIMESTAMP, &7u64.to_le_bytes()).unwrap();
    assert_eq!(f.header.timestamp_us, 7);
}

#[test]
fn gain() {
    for bad in [
        0.0f32,
        -0.0,
        -1.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ] {
        match patched(OFF_GAIN, &bad.to_le_bytes()) {
            Err(ContainerError::InvalidGain { value }) => {
                assert_eq!(value.to_bits(), bad.to_bits())
            }
            other => panic!("gain {bad}: {other:?}"),
        }
    }
    // Subnormal but positive is a legal (if useless) gain.
    assert!(patched(OFF_GAIN, &f32::from_bits(1).to_le_bytes()).is_ok());
}

#[test]
fn feature_min() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        assert!(matches!(
            patched(OFF_MIN, &bad.to_le_bytes()),
            Err(ContainerError::NonFiniteFeatureMin { .. })
        ));
    }
}

#[test]
fn feature_max() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        assert!(matches!(
            patched(OFF_MAX, &bad.to_le_bytes()),
            Err(ContainerError::NonFiniteFeatureMax { .. })
        ));
    }
    // Equal to min, and below min.
    for bad in [-3.25f32, -4.0] {
        assert_eq!(
            patched(OFF_MAX, &bad.to_le_bytes()),
            Err(ContainerError::EmptyFeatureRange {
                min: -3.25,
                max: bad
            })
        );
    }
}

#[test]
fn source_size() {
    assert_eq!(
        patched(OFF_SRC_W, &[0, 0]),
        Err(ContainerError::ZeroSourceWidth)
    );
    assert_eq!(
        patched(OFF_SRC_H, &[0, 0]),
        Err(ContainerError::ZeroSourceHeight)
    );
    let f = patched(OFF_SRC_W, &[0xff, 0xff]).unwrap();
    assert_eq!(f.header.source_width, u16::MAX);
}

#[test]
fn substream_count() {
    for bad in [0u8, 9, 255] {
        assert_eq!(
            patched(OFF_COUNT, &[bad]),
            Err(ContainerError::BadSubstreamCount {
                count: usize::from(bad)
            })
        );
    }
    // 8 descriptors (88 bytes) + CRC do not fit in this 91-byte payload.
    let len = sample_bytes().len();
    assert_eq!(
        patched(OFF_COUNT, &[8]),
        Err(ContainerError::TruncatedDescriptors {
            count: 8,
            needed: 57 + 88 + 4,
            len
        })
    );
    // With more data, three descriptors fit; the third is read from the data
    // bytes, and its kind (z's first data byte, 1) repeats y.
    let mut f = sample();
    f.substreams[1].data = vec![0; 16];
    let mut b = f.encode().unwrap();
    b[OFF_COUNT] = 3;
    fix_crc(&mut b);
    assert_eq!(
        Frame::parse(&b),
        Err(ContainerError::DuplicateSubstreamKind {
            index: 2,
            kind: SubstreamKind::Y
        })
    );
}

#[test]
fn substream_kind() {
    for bad in [4u8, 0xff] {
        assert_eq!(
            patched(desc(1, D_KIND), &[bad]),
            Err(ContainerError::UnknownSubstreamKind {
                index: 1,
                found: bad
            })
        );
    }
    assert_eq!(
        patched(desc(1, D_KIND), &[0]),
        Err(ContainerError::DuplicateSubstreamKind {
            index: 1,
            kind: SubstreamKind::Z
        })
    );
    assert_eq!(
        patched(desc(1, D_KIND), &[3]),
        Err(ContainerError::KindLayerMismatch {
            index: 1,
            kind: SubstreamKind::AuxY,
            layer: Layer::Machine
        })
    );
}

#[test]
fn substream_channels() {
    for bad in [0u16, 1025, u16::MAX] {
        assert_eq!(
            patched(desc(0, D_CHANNELS), &bad.to_le_bytes()),
            Err(ContainerError::ChannelsOutOfRange {
                index: 0,
                value: bad
            })
        );
    }
}

#[test]
fn substream_height() {
    for bad in [0u16, 4097, u16::MAX] {
        assert_eq!(
            patched(desc(1, D_HEIGHT), &bad.to_le_bytes()),
            Err(ContainerError::HeightOutOfRange {
                index: 1,
                value: bad
            })
        );
    }
}

#[test]
fn substream_width() {
    for bad in [0u16, 4097, u16::MAX] {
        assert_eq!(
            patched(desc(1, D_WIDTH), &bad.to_le_bytes()),
            Err(ContainerError::WidthOutOfRange {
                index: 1,
                value: bad
            })
        );
    }
}

#[test]
fn substream_elements() {
    // Each dimension within its own cap, product above 16 Mi.
    let mut b = sample_bytes();
    b[desc(0, D_CHANNELS)..][..2].copy_from_slice(&1024u16.to_le_bytes());
    b[desc(0, D_HEIGHT)..][..2].copy_from_slice(&128u16.to_le_bytes());
    b[desc(0, D_WIDTH)..][..2].copy_from_slice(&129u16.to_le_bytes());
    fix_crc(&mut b);
    assert_eq!(
        Frame::parse(&b),
        Err(ContainerError::TooManyElements {
            index: 0,
            elements: 1024 * 128 * 129
        })
    );
    // Exactly at the cap is accepted.
    b[desc(0, D_WIDTH)..][..2].copy_from_slice(&128u16.to_le_bytes());
    fix_crc(&mut b);
    let f = Frame::parse(&b).unwrap();
    assert_eq!(f.substreams[0].shape.elements(), MAX_ELEMENTS);
}

#[test]
fn substream_length() {
    // z claims 4 bytes, y 5: one byte short overall, so y overruns.
    assert_eq!(
        patched(desc(0, D_LEN), &4u32.to_le_bytes()),
        Err(ContainerError::SubstreamTooLong {
            index: 1,
            len: 5,
            remaining: 4
        })
    );
    // A huge first length is caught at once, not after an overflowing sum.
    assert_eq!(
        patched(desc(0, D_LEN), &u32::MAX.to_le_bytes()),
        Err(ContainerError::SubstreamTooLong {
            index: 0,
            len: u64::from(u32::MAX),
            remaining: 8
        })
    );
    // Declared total shorter than the payload.
    let len = sample_bytes().len();
    assert_eq!(
        patched(desc(1, D_LEN), &4u32.to_le_bytes()),
        Err(ContainerError::TrailingBytes {
            len,
            declared: len - 1
        })
    );
}

#[test]
fn trailing_bytes() {
    let mut b = sample_bytes();
    b.insert(b.len() - 4, 0);
    fix_crc(&mut b);
    assert_eq!(
        Frame::parse(&b),
        Err(ContainerError::TrailingBytes {
            len: b.len(),
            declared: b.len() - 1
        })
    );
}

#[test]
fn crc() {
    let good = sample_bytes();
    let n = good.len();
    let stored = u32::from_le_bytes(good[n - 4..].try_into().unwrap());
    let mut b = good.clone();
    b[n - 1] ^= 1;
    assert_eq!(
        Frame::parse(&b),
        Err(ContainerError::CrcMismatch {
            stored: stored ^ 0x0100_0000,
            computed: stored
        })
    );
    // Corrupt substream data: no field check can see it, the CRC must.
    let mut b = good;
    b[n - 6] ^= 0x10;
    assert!(matches!(
        Frame::parse(&b),
        Err(ContainerError::CrcMismatch { .. })
    ));
}

#[test]
fn size_limits() {
    assert_eq!(
        Frame::parse(&[]),
        Err(ContainerError::TooShort { len: 0, min: 72 })
    );
    let big = vec![0u8; MAX_FRAME_LEN + 1];
    assert_eq!(
        Frame::parse(&big),
        Err(ContainerError::TooLarge {
            len: MAX_FRAME_LEN + 1,
            max: MAX_FRAME_LEN
        })
    );
    // The encoder enforces the same cap, and an exactly-at-cap frame parses.
    let mut f = sample();
    let fixed = 57 + 2 * 11 + 4 + 3;
    f.substreams[1].data = vec![0xa5; MAX_FRAME_LEN - fixed];
    let b = f.encode().unwrap();
    assert_eq!(b.len(), MAX_FRAME_LEN);
    assert_eq!(Frame::parse(&b).unwrap(), f);
    f.substreams[1].data.push(0);
    assert_eq!(
        f.encode(),
        Err(ContainerError::TooLarge {
            len: MAX_FRAME_LEN + 1,
            max: MAX_FRAME_LEN
        })
    );
}

#[test]
fn smallest_frame_is_accepted() {
    let f = Frame {
        header: header(Layer::Aux),
        substreams: vec![Substream {
            kind: SubstreamKind::AuxY,
            shape: Shape::new(1, 1, 1),
            data: vec![],
        }],
    };
    let b = f.encode().unwrap();
    assert_eq!(b.len(), MIN_FRAME_LEN);
    assert_eq!(Frame::parse(&b).unwrap(), f);
}

#[test]
fn encoder_rejects_what_the_parser_would() {
    let mut f = sample();
    f.header.gain = f32::NAN;
    assert!(matches!(
        f.encode(),
        Err(ContainerError::InvalidGain { .. })
    ));

    let mut f = sample();
    f.substreams.clear();
    assert_eq!(
        f.encode(),
        Err(ContainerError::BadSubstreamCount { count: 0 })
    );

    let mut f = sample();
    let z = f.substreams[0].clone();
    f.substreams.extend(vec![z; 8]);
    assert_eq!(
        f.encode(),
        Err(ContainerError::BadSubstreamCount { count: 10 })
    );

    let mut f = sample();
    f.substreams[1].kind = SubstreamKind::Z;
    assert_eq!(
        f.encode(),
        Err(ContainerError::DuplicateSubstreamKind {
            index: 1,
            kind: SubstreamKind::Z
        })
    );

    let mut f = sample();
    f.substreams[0].shape.channels = 0;
    assert_eq!(
        f.encode(),
        Err(ContainerError::ChannelsOutOfRange { index: 0, value: 0 })
    );

    let mut f = sample();
    f.header.layer = Layer::Aux;
    assert!(matches!(
        f.encode(),
        Err(ContainerError::KindLayerMismatch { index: 0, .. })
    ));
}

#[test]
fn every_truncation_is_an_error() {
    let b = sample_bytes();
    for n in 0..b.len() {
        assert!(Frame::parse(&b[..n]).is_err(), "prefix of {n} bytes parsed");
    }
}

#[test]
fn error_messages_name_field_and_value() {
    let e = patched(desc(1, D_HEIGHT), &5000u16.to_le_bytes()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "substream 1: height is 5000, must be 1..=4096"
    );
    let e = patched(OFF_GAIN, &(-2.0f32).to_le_bytes()).unwrap_err();
    assert_eq!(e.to_string(), "gain is -2, must be finite and > 0");
}

// ---- properties ------------------------------------------------------------

fn finite_f32() -> impl Strategy<Value = f32> {
    any::<f32>().prop_filter("finite", |v| v.is_finite())
}

fn arb_header(layer: Layer) -> impl Strategy<Value = FrameHeader> {
    (
        any::<[u8; 16]>(),
        any::<u64>(),
        any::<u64>(),
        finite_f32().prop_filter("gain > 0", |g| *g > 0.0),
        (finite_f32(), finite_f32()).prop_filter("min != max", |(a, b)| a != b),
        1..=u16::MAX,
        1..=u16::MAX,
    )
        .prop_map(
            move |(id, sequence, timestamp_us, gain, (a, b), w, h)| FrameHeader {
                layer,
                bundle_id: BundleId(id),
                sequence,
                timestamp_us,
                gain,
                feature_min: a.min(b),
                feature_max: a.max(b),
                source_width: w,
                source_height: h,
            },
        )
}

/// Shapes within every cap, including the element cap.
fn arb_shape() -> impl Strategy<Value = Shape> {
    (1..=MAX_CHANNELS, 1..=MAX_SPATIAL).prop_flat_map(|(c, h)| {
        let w_max = (MAX_ELEMENTS / (u64::from(c) * u64::from(h))).min(u64::from(MAX_SPATIAL));
        (1..=w_max as u16).prop_map(move |w| Shape::new(c, h, w))
    })
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![Just(Layer::Machine), Just(Layer::Aux)].prop_flat_map(|layer| {
        let kinds: Vec<SubstreamKind> = SubstreamKind::ALL
            .into_iter()
            .filter(|k| k.layer() == layer)
            .collect();
        let subs = prop::sample::subsequence(kinds, 1..=2)
            .prop_shuffle()
            .prop_flat_map(|kinds| {
                kinds
                    .into_iter()
                    .map(|kind| {
                        (arb_shape(), prop::collection::vec(any::<u8>(), 0..64))
                            .prop_map(move |(shape, data)| Substream { kind, shape, data })
                    })
                    .collect::<Vec<_>>()
            });
        (arb_header(layer), subs).prop_map(|(header, substreams)| Frame { header, substreams })
    })
}

proptest! {
    #[test]
    fn round_trip(f in arb_frame()) {
        let b = f.encode().unwrap();
        let back = Frame::parse(&b).unwrap();
        // Bytes, not just values: -0.0 == 0.0 would hide a sign flip.
        prop_assert_eq!(back.encode().unwrap(), b.clone());
        prop_assert_eq!(&back, &f);
        prop_assert_eq!(FrameRef::parse(&b).unwrap().to_frame(), f);
    }

    #[test]
    fn any_single_byte_change_is_rejected(
        f in arb_frame(),
        pos in any::<prop::sample::Index>(),
        flip in 1..=255u8,
    ) {
        let mut b = f.encode().unwrap();
        let i = pos.index(b.len());
        b[i] ^= flip;
        prop_assert!(Frame::parse(&b).is_err());
    }

    #[test]
    fn truncated_random_frames_are_rejected(f in arb_frame(), cut in any::<prop::sample::Index>()) {
        let b = f.encode().unwrap();
        let n = cut.index(b.len());
        prop_assert!(Frame::parse(&b[..n]).is_err());
    }

    #[test]
    fn random_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Frame::parse(&b);
    }

    // Random bytes behind a valid prefix get past the magic/version checks and
    // so exercise the field and descriptor paths.
    #[test]
    fn random_bytes_after_valid_prefix_never_panic(
        layer in 0..=2u8,
        rest in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut b = b"FCHM\x01".to_vec();
        b.push(layer);
        b.extend_from_slice(&rest);
        if let Ok(f) = Frame::parse(&b) {
            prop_assert_eq!(f.encode().unwrap(), b);
        }
    }
}
