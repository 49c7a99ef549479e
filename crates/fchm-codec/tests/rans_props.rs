//! Property tests: round trips over random valid tables, and the decoder's
//! behaviour on hostile input (never a panic, always a typed error or a value).

mod common;

use common::{quantize_pmf, RawTables};
use fchm_codec::entropy::{CdfTables, EntropyError};
use fchm_codec::rans::{self, symbol_range, RansDecoder, RansEncoder};
use proptest::prelude::*;

/// One table: raw weights (quantised to a 16-bit CDF with every freq >= 1), an
/// offset and row padding.
fn table() -> impl Strategy<Value = (Vec<f64>, i32, usize)> {
    let weights = prop_oneof![
        4 => prop::collection::vec(0.0f64..1.0, 2..12),
        2 => prop::collection::vec(0.0f64..1.0, 2..400),
        // One dominant slot: frequencies of 1 next to one close to 2^16.
        1 => (2usize..40).prop_map(|k| (0..k).map(|i| if i == 0 { 1.0 } else { 0.0 }).collect()),
    ];
    (weights, -100i32..100, 0usize..4)
}

fn tables() -> impl Strategy<Value = RawTables> {
    prop::collection::vec(table(), 1..8).prop_map(|ts| {
        let mut raw = RawTables::default();
        for (w, offset, pad) in ts {
            let w: Vec<f64> = w.iter().map(|x| x + 1e-6).collect();
            raw.push(quantize_pmf(&w), offset, pad);
        }
        raw
    })
}

/// A symbol request: (table selector, kind, payload) turned into a concrete
/// (symbol, index) once the tables are known.
fn requests() -> impl Strategy<Value = Vec<(usize, u8, i64)>> {
    prop::collection::vec((any::<usize>(), 0u8..5, -1_000_000i64..=1_000_000), 0..600)
}

fn materialise(raw: &RawTables, t: &CdfTables, reqs: &[(usize, u8, i64)]) -> (Vec<i32>, Vec<i32>) {
    let mut symbols = Vec::with_capacity(reqs.len());
    let mut indexes = Vec::with_capacity(reqs.len());
    for &(sel, kind, payload) in reqs {
        let i = sel % raw.cdfs.len();
        let offset = i64::from(raw.offsets[i]);
        let max_value = i64::from(raw.cdf_lengths[i]) - 2;
        let (lo, hi) = symbol_range(t, i as i32).unwrap();
        let s = match kind {
            // In range.
            0 | 1 => offset + payload.rem_euclid(max_value),
            // Around both edges and the sentinel.
            2 => offset - 3 + payload.rem_euclid(max_value + 6),
            // Far out: +-1e6.
            3 => payload,
            // At the bypass limit.
            _ => {
                if payload % 2 == 0 {
                    lo + payload.rem_euclid(3)
                } else {
                    hi - payload.rem_euclid(3)
                }
            }
        };
        symbols.push(s as i32);
        indexes.push(i as i32);
    }
    (symbols, indexes)
}

/// Splits `n` into chunk sizes driven by `cuts`.
fn chunks(n: usize, cuts: &[usize]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut left = n;
    for &c in cuts {
        if left == 0 {
            break;
        }
        let size = c % (left + 1);
        out.push(size);
        left -= size;
    }
    out.push(left);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn round_trip(raw in tables(), reqs in requests(),
                  enc_cuts in prop::collection::vec(any::<usize>(), 0..4),
                  dec_cuts in prop::collection::vec(any::<usize>(), 0..4)) {
        let t = raw.build();
        let (symbols, indexes) = materialise(&raw, &t, &reqs);

        let mut enc = RansEncoder::new();
        let mut at = 0;
        for size in chunks(symbols.len(), &enc_cuts) {
            enc.encode_with_indexes(&symbols[at..at + size], &indexes[at..at + size], &t).unwrap();
            at += size;
        }
        let bytes = enc.flush();
        prop_assert_eq!(&bytes, &rans::encode(&symbols, &indexes, &t).unwrap());
        prop_assert_eq!(bytes.len() & 3, 0);

        let mut dec = RansDecoder::new(&bytes).unwrap();
        let mut decoded = Vec::new();
        let mut at = 0;
        for size in chunks(indexes.len(), &dec_cuts) {
            decoded.extend(dec.decode_with_indexes(&indexes[at..at + size], &t).unwrap());
            at += size;
        }
        dec.finish().unwrap();
        prop_assert_eq!(decoded, symbols);
    }

    /// Every word of a valid stream is needed, so any shortening is detected.
    #[test]
    fn truncation_and_trailing_data_are_errors(raw in tables(), reqs in requests(), cut in any::<usize>()) {
        let t = raw.build();
        let (symbols, indexes) = materialise(&raw, &t, &reqs);
        let bytes = rans::encode(&symbols, &indexes, &t).unwrap();

        let keep = cut % bytes.len();
        let err = rans::decode(&bytes[..keep], &indexes, &t).unwrap_err();
        if keep & 3 != 0 {
            prop_assert!(matches!(err, EntropyError::UnalignedStream { .. }), "{}", err);
        } else if keep < 8 {
            prop_assert!(matches!(err, EntropyError::StreamTooShort { .. }), "{}", err);
        } else {
            prop_assert!(matches!(err, EntropyError::Truncated { .. }), "{}", err);
        }

        let mut longer = bytes.clone();
        longer.extend_from_slice(&[1, 2, 3, 4]);
        let err = rans::decode(&longer, &indexes, &t).unwrap_err();
        prop_assert!(matches!(err, EntropyError::TrailingData { words: 1 }), "{}", err);
    }

    /// Arbitrary bytes and indexes (some out of range) never panic.
    #[test]
    fn arbitrary_input_never_panics(raw in tables(),
                                    data in prop::collection::vec(any::<u8>(), 0..512),
                                    indexes in prop::collection::vec(-2i32..10, 0..2000)) {
        let t = raw.build();
        let _ = rans::decode(&data, &indexes, &t);
        if let Ok(mut dec) = RansDecoder::new(&data) {
            let mid = indexes.len() / 2;
            let _ = dec.decode_with_indexes(&indexes[..mid], &t);
            let _ = dec.decode_with_indexes(&indexes[mid..], &t);
        }
    }

    /// Corrupting one byte of a valid stream never panics either (it exercises
    /// deeper paths than pure noise: large bypass counts, states below 2^31).
    #[test]
    fn corrupted_streams_never_panic(raw in tables(), reqs in requests(), at in any::<usize>(), flip in 1u8..=255) {
        let t = raw.build();
        let (symbols, indexes) = materialise(&raw, &t, &reqs);
        let mut bytes = rans::encode(&symbols, &indexes, &t).unwrap();
        let at = at % bytes.len();
        bytes[at] ^= flip;
        let _ = rans::decode(&bytes, &indexes, &t);
    }

    #[test]
    fn out_of_range_indexes_are_rejected(raw in tables(), bad in prop_oneof![i32::MIN..0, 8i32..i32::MAX]) {
        let t = raw.build();
        let err = rans::encode(&[0, 0], &[0, bad], &t).unwrap_err();
        prop_assert!(matches!(err, EntropyError::IndexOutOfRange { position: 1, .. }), "{}", err);
        let bytes = rans::encode(&[0], &[0], &t).unwrap();
        let err = rans::decode(&bytes, &[bad], &t).unwrap_err();
        prop_assert!(matches!(err, EntropyError::IndexOutOfRange { position: 0, .. }), "{}", err);
    }
}
