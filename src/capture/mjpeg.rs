//! JPEG frames from cameras (MJPEG) → RGB.
//!
//! Many USB webcams send "abbreviated" JPEG frames without a DHT (Huffman table) segment: the
//! AVI MJPEG convention says the decoder must assume the example tables of ITU-T T.81 Annex K.3.
//! Ordinary JPEG decoders reject such frames, so when a frame has no DHT before its first scan
//! those tables are inserted in front of the SOS marker before decoding.

use std::borrow::Cow;

use image::{ImageFormat, RgbImage};

#[derive(Debug, thiserror::Error)]
pub enum MjpegError {
    #[error("not a JPEG frame: it does not start with the SOI marker (FF D8)")]
    NotJpeg,
    #[error("JPEG frame ends inside its headers at byte {offset} (frame is {len} bytes)")]
    Truncated { offset: usize, len: usize },
    #[error("JPEG frame: expected a marker at byte {offset}, found 0x{byte:02X}")]
    BadMarker { offset: usize, byte: u8 },
    #[error("JPEG frame: segment FF{marker:02X} at byte {offset} has invalid length {length}")]
    BadSegmentLength {
        marker: u8,
        offset: usize,
        length: u16,
    },
    #[error("JPEG frame has no image data (no SOS marker before EOI)")]
    NoScan,
    #[error("JPEG frame does not decode: {0}")]
    Decode(#[from] image::ImageError),
}

const MARKER_PREFIX: u8 = 0xFF;
const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const DHT: u8 = 0xC4;
const TEM: u8 = 0x01;

/// Decodes one JPEG/MJPEG frame, supplying the standard Huffman tables when it lacks its own.
pub fn decode_jpeg(data: &[u8]) -> Result<RgbImage, MjpegError> {
    let complete = with_default_huffman_tables(data)?;
    let image = image::load_from_memory_with_format(&complete, ImageFormat::Jpeg)?;
    Ok(image.into_rgb8())
}

/// The frame itself when it defines Huffman tables before its first scan, otherwise a copy with
/// the Annex K.3 tables inserted right before the SOS marker.
pub(crate) fn with_default_huffman_tables(data: &[u8]) -> Result<Cow<'_, [u8]>, MjpegError> {
    let headers = scan_headers(data)?;
    if headers.has_dht {
        return Ok(Cow::Borrowed(data));
    }
    let dht = default_dht_segment();
    let mut out = Vec::with_capacity(data.len() + dht.len());
    out.extend_from_slice(&data[..headers.sos_offset]);
    out.extend_from_slice(&dht);
    out.extend_from_slice(&data[headers.sos_offset..]);
    Ok(Cow::Owned(out))
}

struct Headers {
    has_dht: bool,
    /// Offset of the first byte (0xFF) of the first SOS marker.
    sos_offset: usize,
}

/// Walks the marker segments from SOI to the first SOS.
fn scan_headers(data: &[u8]) -> Result<Headers, MjpegError> {
    if data.len() < 2 || data[0] != MARKER_PREFIX || data[1] != SOI {
        return Err(MjpegError::NotJpeg);
    }
    let truncated = |offset| MjpegError::Truncated {
        offset,
        len: data.len(),
    };
    let mut has_dht = false;
    let mut i = 2;
    loop {
        let start = i;
        match data.get(i) {
            None => return Err(truncated(i)),
            Some(&MARKER_PREFIX) => {}
            Some(&byte) => return Err(MjpegError::BadMarker { offset: i, byte }),
        }
        // Any number of 0xFF fill bytes may precede the marker code.
        while data.get(i) == Some(&MARKER_PREFIX) {
            i += 1;
        }
        let marker = *data.get(i).ok_or_else(|| truncated(i))?;
        i += 1;
        match marker {
            SOS => {
                return Ok(Headers {
                    has_dht,
                    sos_offset: start,
                })
            }
            EOI => return Err(MjpegError::NoScan),
            // Markers without a length field.
            SOI | TEM | 0xD0..=0xD7 => {}
            0x00 => {
                return Err(MjpegError::BadMarker {
                    offset: i - 1,
                    byte: 0,
                })
            }
            _ => {
                let len_bytes = data.get(i..i + 2).ok_or_else(|| truncated(i))?;
                let length = u16::from_be_bytes([len_bytes[0], len_bytes[1]]);
                if length < 2 {
                    return Err(MjpegError::BadSegmentLength {
                        marker,
                        offset: start,
                        length,
                    });
                }
                has_dht |= marker == DHT;
                i += usize::from(length);
            }
        }
    }
}

/// One Huffman table as stored in a DHT segment: code counts per length 1..=16, then the values
/// in code order.
struct HuffmanTable {
    /// Table class (0 = DC, 1 = AC) in the high nibble, destination id in the low nibble.
    class_and_id: u8,
    counts: [u8; 16],
    values: &'static [u8],
}

// ITU-T T.81 Annex K.3, tables K.3 to K.6 (the example tables MJPEG assumes).
const LUMA_DC: HuffmanTable = HuffmanTable {
    class_and_id: 0x00,
    counts: [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
    values: &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
};

const CHROMA_DC: HuffmanTable = HuffmanTable {
    class_and_id: 0x01,
    counts: [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
    values: &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
};

const LUMA_AC: HuffmanTable = HuffmanTable {
    class_and_id: 0x10,
    counts: [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 125],
    values: &[
        0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61,
        0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52,
        0xD1, 0xF0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25,
        0x26, 0x27, 0x28, 0x29, 0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45,
        0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64,
        0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x83,
        0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
        0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6,
        0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3,
        0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8,
        0xE9, 0xEA, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
    ],
};

const CHROMA_AC: HuffmanTable = HuffmanTable {
    class_and_id: 0x11,
    counts: [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 119],
    values: &[
        0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61,
        0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09, 0x23, 0x33,
        0x52, 0xF0, 0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25, 0xF1, 0x17, 0x18,
        0x19, 0x1A, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44,
        0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63,
        0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A,
        0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
        0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4,
        0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA,
        0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7,
        0xE8, 0xE9, 0xEA, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
    ],
};

const DEFAULT_TABLES: [HuffmanTable; 4] = [LUMA_DC, LUMA_AC, CHROMA_DC, CHROMA_AC];

/// A complete DHT marker segment holding all four default tables.
fn default_dht_segment() -> Vec<u8> {
    let payload: usize = DEFAULT_TABLES.iter().map(|t| 17 + t.values.len()).sum();
    // The length field counts itself; 2 + 4 * 17 + 2 * 12 + 2 * 162 = 418 fits easily.
    let length = (payload + 2) as u16;
    let mut seg = Vec::with_capacity(payload + 4);
    seg.extend_from_slice(&[MARKER_PREFIX, DHT]);
    seg.extend_from_slice(&length.to_be_bytes());
    for table in &DEFAULT_TABLES {
        seg.push(table.class_and_id);
        seg.extend_from_slice(&table.counts);
        seg.extend_from_slice(table.values);
    }
    seg
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::codecs::jpeg::JpegEncoder;
    use std::collections::BTreeMap;

    fn test_image(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (x * 7 % 256) as u8,
                (y * 5 % 256) as u8,
                ((x ^ y) * 3 % 256) as u8,
            ])
        })
    }

    fn encode(img: &RgbImage, quality: u8) -> Vec<u8> {
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, quality)
            .encode_image(img)
            .unwrap();
        out
    }

    /// (offset, marker, whole segment length incl. marker) of each segment before SOS.
    fn segments(data: &[u8]) -> Vec<(usize, u8, usize)> {
        let mut out = Vec::new();
        let mut i = 2;
        while data[i + 1] != SOS {
            let len = u16::from_be_bytes([data[i + 2], data[i + 3]]) as usize;
            out.push((i, data[i + 1], len + 2));
            i += len + 2;
        }
        out
    }

    fn strip_dht(data: &[u8]) -> Vec<u8> {
        let mut out = data.to_vec();
        for (off, marker, len) in segments(data).into_iter().rev() {
            if marker == DHT {
                out.drain(off..off + len);
            }
        }
        out
    }

    /// Table id → (counts, values) parsed from every DHT segment of a JPEG.
    fn dht_tables(data: &[u8]) -> BTreeMap<u8, (Vec<u8>, Vec<u8>)> {
        let mut tables = BTreeMap::new();
        for (off, marker, len) in segments(data) {
            if marker != DHT {
                continue;
            }
            let mut body = &data[off + 4..off + len];
            while !body.is_empty() {
                let counts = body[1..17].to_vec();
                let n: usize = counts.iter().map(|&c| c as usize).sum();
                tables.insert(body[0], (counts, body[17..17 + n].to_vec()));
                body = &body[17 + n..];
            }
        }
        tables
    }

    #[test]
    fn default_tables_are_annex_k_as_written_by_an_independent_encoder() {
        // The `image` crate's encoder writes the Annex K tables too: an independent copy to
        // check every count and value typed in above.
        let reference = dht_tables(&encode(&test_image(16, 16), 90));
        let ours = dht_tables(&default_dht_segment_as_jpeg());
        assert_eq!(reference.len(), 4);
        assert_eq!(ours, reference);
        for t in &DEFAULT_TABLES {
            let n: usize = t.counts.iter().map(|&c| c as usize).sum();
            assert_eq!(n, t.values.len());
        }
        assert_eq!(default_dht_segment().len(), 420);
    }

    /// Our DHT segment wrapped as SOI + DHT + SOS so the test parser can read it.
    fn default_dht_segment_as_jpeg() -> Vec<u8> {
        let mut v = vec![MARKER_PREFIX, SOI];
        v.extend(default_dht_segment());
        v.extend([MARKER_PREFIX, SOS]);
        v
    }

    #[test]
    fn a_frame_without_huffman_tables_decodes_like_the_original() {
        let img = test_image(67, 45); // odd sizes: partial MCUs
        let jpeg = encode(&img, 85);
        let stripped = strip_dht(&jpeg);
        assert!(stripped.len() < jpeg.len());
        assert!(dht_tables(&stripped).is_empty());
        // Without the insertion a plain decoder refuses it: the case this module exists for.
        assert!(image::load_from_memory_with_format(&stripped, ImageFormat::Jpeg).is_err());
        let want = decode_jpeg(&jpeg).unwrap();
        let got = decode_jpeg(&stripped).unwrap();
        assert_eq!(got.dimensions(), (67, 45));
        assert_eq!(got, want);
    }

    #[test]
    fn frames_with_tables_are_passed_through_untouched() {
        let jpeg = encode(&test_image(8, 8), 85);
        assert!(matches!(
            with_default_huffman_tables(&jpeg).unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn broken_frames_are_errors() {
        let jpeg = strip_dht(&encode(&test_image(8, 8), 85));
        assert!(matches!(decode_jpeg(b""), Err(MjpegError::NotJpeg)));
        assert!(matches!(decode_jpeg(b"\x89PNG"), Err(MjpegError::NotJpeg)));
        assert!(matches!(
            decode_jpeg(&jpeg[..10]),
            Err(MjpegError::Truncated { .. })
        ));
        assert!(matches!(
            decode_jpeg(&[0xFF, 0xD8, 0xFF, 0xD9]),
            Err(MjpegError::NoScan)
        ));
        assert!(matches!(
            decode_jpeg(&[0xFF, 0xD8, 0x12]),
            Err(MjpegError::BadMarker { offset: 2, .. })
        ));
        assert!(matches!(
            decode_jpeg(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x01]),
            Err(MjpegError::BadSegmentLength { length: 1, .. })
        ));
        // Headers intact but the entropy-coded data cut short: whatever the decoder makes of
        // it, it must not panic.
        let _ = decode_jpeg(&jpeg[..jpeg.len() - 40]);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(mut data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = decode_jpeg(&data);
            if data.len() >= 2 {
                data[0] = 0xFF;
                data[1] = 0xD8;
            }
            let _ = decode_jpeg(&data);
        }
    }
}
