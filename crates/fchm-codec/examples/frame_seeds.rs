//! Writes a few valid frames as a fuzzing seed corpus:
//! `cargo run -p fchm-codec --example frame_seeds -- fuzz/corpus/frame_parse`.
//!
//! The trailing CRC makes valid frames practically unreachable from random
//! mutation alone, so without seeds the fuzzer would never reach the
//! accept-and-re-encode path.

use fchm_codec::container::*;

fn frame(layer: Layer, subs: &[(SubstreamKind, [u16; 3], usize)]) -> Frame {
    Frame {
        header: FrameHeader {
            layer,
            bundle_id: BundleId(*b"fchm-seed-bundle"),
            sequence: 7,
            timestamp_us: 1_700_000_000_000_000,
            gain: 1.0,
            feature_min: -1.0,
            feature_max: 1.0,
            source_width: 640,
            source_height: 480,
        },
        substreams: subs
            .iter()
            .map(|&(kind, shape, len)| Substream {
                kind,
                shape: shape.into(),
                data: (0..len).map(|i| (i * 31 % 251) as u8).collect(),
            })
            .collect(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: frame_seeds <output dir>")?;
    std::fs::create_dir_all(&dir)?;
    use SubstreamKind::*;
    let frames = [
        frame(
            Layer::Machine,
            &[(Z, [192, 4, 6], 40), (Y, [320, 16, 24], 200)],
        ),
        frame(Layer::Machine, &[(Y, [1024, 128, 128], 3)]),
        frame(Layer::Aux, &[(AuxY, [1, 1, 1], 0)]),
        frame(
            Layer::Aux,
            &[(AuxZ, [64, 8, 8], 16), (AuxY, [128, 32, 32], 64)],
        ),
    ];
    for (i, f) in frames.iter().enumerate() {
        std::fs::write(format!("{dir}/seed-{i}.bin"), f.encode()?)?;
    }
    println!("wrote {} seeds to {dir}", frames.len());
    Ok(())
}
