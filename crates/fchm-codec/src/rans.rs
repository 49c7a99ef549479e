//! 64-bit rANS with 32-bit renormalisation words and 16-bit probabilities.
//!
//! The byte stream is identical to the one written by CompressAI 1.2.8's
//! `compressai.ans.RansEncoder` / `BufferedRansEncoder` (ryg_rans `rans64.h`
//! underneath), so streams produced by a Python reference encoder decode here and
//! ours decode there. Layout of one coded symbol with table `t`
//! (`max_value = cdf_length - 2`, the sentinel slot):
//!
//! * `v = symbol - offset`; if `0 <= v < max_value` it is coded with the CDF;
//! * otherwise the sentinel is coded, followed by 4-bit "bypass" digits: the
//!   digit count `n`, then `n` digits (least significant first) of
//!   `raw = -2v - 1` for `v < 0` or `raw = 2(v - max_value)` for `v >= max_value`.
//!
//! Stream bytes: the final 64-bit state as two little-endian `u32` (low word
//! first), then the renormalisation words in the order the decoder consumes them.

use crate::entropy::{CdfTables, EntropyError, TableInfo, LUT_SHIFT};

/// Probability precision of every CDF, in bits (CompressAI's `precision`).
pub const PRECISION: u32 = 16;
/// Total of every CDF: `cdf[cdf_length - 1]` must equal this.
pub const PROB_SCALE: u32 = 1 << PRECISION;

const BYPASS_BITS: u32 = 4;
const BYPASS_MASK: u32 = (1 << BYPASS_BITS) - 1;
/// Lower bound of the normalised state interval `[L, L << 32)`.
const RANS_L: u64 = 1 << 31;
/// CompressAI counts bypass digits with `raw >> (4 * n)` on a `uint32_t`; at
/// n = 8 that shift is undefined behaviour in C++, so only raw values of at most
/// 7 digits are exchangeable. Refusing the rest keeps our streams decodable by it.
pub const MAX_BYPASS_DIGITS: u32 = 7;
const MAX_RAW: u64 = 1 << (MAX_BYPASS_DIGITS * BYPASS_BITS);

/// Smallest and largest symbol that table `t` can code (bypass included).
/// The bounds come from [`MAX_BYPASS_DIGITS`]: `raw < 2^28` on both sides.
pub fn symbol_range(tables: &CdfTables, index: i32) -> Option<(i64, i64)> {
    let t = tables.info(index)?;
    let offset = i64::from(t.offset);
    let max_value = i64::from(t.len) - 2;
    let lo = offset - (MAX_RAW as i64 / 2);
    let hi = offset + max_value + (MAX_RAW as i64 - 1) / 2;
    Some((lo.max(i64::from(i32::MIN)), hi.min(i64::from(i32::MAX))))
}

/// A buffered encoder: symbols are queued by `encode_*` and coded (in reverse,
/// as rANS requires) by [`RansEncoder::flush`].
///
/// Each queued entry packs `start | freq << 16`; `freq == 0` (never a valid
/// frequency) marks a 4-bit bypass digit stored in `start`. Four bytes per entry
/// keeps the queue small for multi-megasymbol tensors.
#[derive(Debug, Default, Clone)]
pub struct RansEncoder {
    queue: Vec<u32>,
}

impl RansEncoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of queued rANS operations (symbols plus bypass digits).
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Queues `symbols[i]` coded with table `indexes[i]`. On error nothing from
    /// this call stays queued, so the encoder remains usable.
    pub fn encode_with_indexes(
        &mut self,
        symbols: &[i32],
        indexes: &[i32],
        tables: &CdfTables,
    ) -> Result<(), EntropyError> {
        if symbols.len() != indexes.len() {
            return Err(EntropyError::LengthMismatch {
                symbols: symbols.len(),
                indexes: indexes.len(),
            });
        }
        let mark = self.queue.len();
        self.queue.reserve(symbols.len());
        for (position, (&symbol, &index)) in symbols.iter().zip(indexes).enumerate() {
            let pushed = match tables.info(index) {
                Some(t) => self.push(symbol, t, tables.flat()),
                None => Err(EntropyError::IndexOutOfRange {
                    position,
                    index,
                    tables: tables.len(),
                }),
            };
            if let Err(e) = pushed {
                self.queue.truncate(mark);
                return Err(e.at(position));
            }
        }
        Ok(())
    }

    /// Queues all `symbols` with the single table `index` (factorized models code
    /// a whole channel plane with one table; this avoids an index array).
    pub fn encode_with_index(
        &mut self,
        symbols: &[i32],
        index: i32,
        tables: &CdfTables,
    ) -> Result<(), EntropyError> {
        let t = tables.info(index).ok_or(EntropyError::IndexOutOfRange {
            position: 0,
            index,
            tables: tables.len(),
        })?;
        let mark = self.queue.len();
        self.queue.reserve(symbols.len());
        let cdf = tables.flat();
        for (position, &symbol) in symbols.iter().enumerate() {
            if let Err(e) = self.push(symbol, t, cdf) {
                self.queue.truncate(mark);
                return Err(e.at(position));
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn push(&mut self, symbol: i32, t: TableInfo, cdf: &[u32]) -> Result<(), EntropyError> {
        let max_value = t.len - 2;
        // i64: `symbol - offset` can leave the i32 range for extreme inputs.
        let value = i64::from(symbol) - i64::from(t.offset);
        let base = t.start as usize;
        if value >= 0 && value < i64::from(max_value) {
            let v = base + value as usize;
            let start = cdf[v];
            let freq = cdf[v + 1] - start;
            self.queue.push(start | (freq << 16));
            return Ok(());
        }
        self.push_bypass(value, t, cdf)
    }

    #[cold]
    fn push_bypass(&mut self, value: i64, t: TableInfo, cdf: &[u32]) -> Result<(), EntropyError> {
        let max_value = i64::from(t.len) - 2;
        let raw = if value < 0 {
            -2 * value - 1
        } else {
            2 * (value - max_value)
        } as u64;
        if raw >= MAX_RAW {
            return Err(EntropyError::ValueOutOfRange {
                position: 0,
                value: value + i64::from(t.offset),
                table: t.index,
            });
        }
        let sentinel = t.start as usize + max_value as usize;
        let start = cdf[sentinel];
        let freq = cdf[sentinel + 1] - start;
        self.queue.push(start | (freq << 16));
        let raw = raw as u32;
        let digits = (u32::BITS - raw.leading_zeros()).div_ceil(BYPASS_BITS);
        // CompressAI writes the count as a run of 15s plus a remainder; with at
        // most 7 digits the run is always empty and the count is a single digit.
        debug_assert!(digits < BYPASS_MASK);
        self.queue.push(digits);
        for j in 0..digits {
            self.queue.push((raw >> (j * BYPASS_BITS)) & BYPASS_MASK);
        }
        Ok(())
    }

    /// Codes everything queued and returns the stream; the encoder is empty
    /// afterwards and may be reused.
    pub fn flush(&mut self) -> Vec<u8> {
        // Renormalisation words in emission order; the stream holds them reversed.
        let mut words: Vec<u32> = Vec::with_capacity(self.queue.len() / 8 + 16);
        let mut x = RANS_L;
        for &op in self.queue.iter().rev() {
            let freq = op >> 16;
            if freq != 0 {
                let x_max = ((RANS_L >> PRECISION) << 32) * u64::from(freq);
                if x >= x_max {
                    words.push(x as u32);
                    x >>= 32;
                }
                let freq = u64::from(freq);
                x = ((x / freq) << PRECISION) + (x % freq) + u64::from(op & 0xffff);
            } else {
                // A 4-bit digit is a symbol of frequency 2^12 at 16-bit precision.
                const X_MAX: u64 = ((RANS_L >> PRECISION) << 32) << (PRECISION - BYPASS_BITS);
                if x >= X_MAX {
                    words.push(x as u32);
                    x >>= 32;
                }
                x = (x << BYPASS_BITS) | u64::from(op);
            }
        }
        self.queue.clear();
        let mut out = Vec::with_capacity(8 + 4 * words.len());
        out.extend_from_slice(&(x as u32).to_le_bytes());
        out.extend_from_slice(&((x >> 32) as u32).to_le_bytes());
        for w in words.iter().rev() {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }
}

/// Decodes a stream written by [`RansEncoder`] or by CompressAI.
///
/// The input is untrusted: every read is bounds-checked and each decoded symbol
/// costs at most `2 + MAX_BYPASS_DIGITS` steps, so work is linear in the number
/// of requested symbols whatever the bytes are. After an error the decoder's
/// position is unspecified; start a new one.
#[derive(Debug, Clone)]
pub struct RansDecoder<'a> {
    rest: &'a [u8],
    x: u64,
}

impl<'a> RansDecoder<'a> {
    pub fn new(data: &'a [u8]) -> Result<Self, EntropyError> {
        if data.len() & 3 != 0 {
            return Err(EntropyError::UnalignedStream { len: data.len() });
        }
        let Some((head, rest)) = data.split_first_chunk::<8>() else {
            return Err(EntropyError::StreamTooShort { len: data.len() });
        };
        let lo = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let hi = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        Ok(Self {
            rest,
            x: u64::from(lo) | (u64::from(hi) << 32),
        })
    }

    /// Unread renormalisation words.
    pub fn remaining_words(&self) -> usize {
        self.rest.len() / 4
    }

    /// Decodes one symbol per entry of `indexes` (continuing where the previous
    /// call stopped, like CompressAI's `decode_stream`).
    pub fn decode_with_indexes(
        &mut self,
        indexes: &[i32],
        tables: &CdfTables,
    ) -> Result<Vec<i32>, EntropyError> {
        let mut out = Vec::with_capacity(indexes.len());
        self.decode_with_indexes_into(indexes, tables, &mut out)?;
        Ok(out)
    }

    /// As [`Self::decode_with_indexes`], appending to `out` (which keeps the
    /// symbols decoded before an error).
    pub fn decode_with_indexes_into(
        &mut self,
        indexes: &[i32],
        tables: &CdfTables,
        out: &mut Vec<i32>,
    ) -> Result<(), EntropyError> {
        out.reserve(indexes.len());
        let cdf = tables.flat();
        for (position, &index) in indexes.iter().enumerate() {
            let t = tables.info(index).ok_or(EntropyError::IndexOutOfRange {
                position,
                index,
                tables: tables.len(),
            })?;
            let v = self
                .decode_one(t, cdf, tables.lut(t))
                .map_err(|e| e.at(position))?;
            out.push(v);
        }
        Ok(())
    }

    /// Decodes `count` symbols that all use table `index`, appending to `out`.
    pub fn decode_with_index_into(
        &mut self,
        count: usize,
        index: i32,
        tables: &CdfTables,
        out: &mut Vec<i32>,
    ) -> Result<(), EntropyError> {
        let t = tables.info(index).ok_or(EntropyError::IndexOutOfRange {
            position: 0,
            index,
            tables: tables.len(),
        })?;
        let (cdf, lut) = (tables.flat(), tables.lut(t));
        // `count` may come from a header; don't let it allocate up front.
        out.reserve(count.min(1 << 20));
        for position in 0..count {
            let v = self.decode_one(t, cdf, lut).map_err(|e| e.at(position))?;
            out.push(v);
        }
        Ok(())
    }

    /// Checks that the stream was consumed exactly: every word read and the state
    /// back at the encoder's initial value. Holds for every stream a correct
    /// encoder wrote for exactly the decoded symbols, so failing means the bytes or
    /// the indexes are wrong.
    pub fn finish(self) -> Result<(), EntropyError> {
        if !self.rest.is_empty() {
            return Err(EntropyError::TrailingData {
                words: self.remaining_words(),
            });
        }
        if self.x != RANS_L {
            return Err(EntropyError::Corrupt {
                position: 0,
                problem: "final rANS state does not match the encoder's initial state",
            });
        }
        Ok(())
    }

    #[inline(always)]
    fn read_word(&mut self) -> Result<u32, EntropyError> {
        match self.rest.split_first_chunk::<4>() {
            Some((w, rest)) => {
                self.rest = rest;
                Ok(u32::from_le_bytes(*w))
            }
            None => Err(EntropyError::Truncated { position: 0 }),
        }
    }

    #[inline(always)]
    fn decode_one(&mut self, t: TableInfo, flat: &[u32], lut: &[u16]) -> Result<i32, EntropyError> {
        let cdf = &flat[t.start as usize..t.start as usize + t.len as usize];
        let cum = (self.x & u64::from(PROB_SCALE - 1)) as u32;
        let s = find_slot(cdf, lut, cum);
        let start = cdf[s];
        let freq = cdf[s + 1] - start;
        // No overflow for any 64-bit state: freq < 2^16 and x >> 16 < 2^48, and
        // cum >= start by the search.
        let mut x = u64::from(freq) * (self.x >> PRECISION) + u64::from(cum - start);
        if x < RANS_L {
            x = (x << 32) | u64::from(self.read_word()?);
        }
        self.x = x;
        let max_value = t.len as usize - 2;
        if s < max_value {
            // s < 2^16 and the table's offset bounds keep this in i32 (checked
            // when the tables were built).
            return Ok(t.offset + s as i32);
        }
        self.decode_bypass(t)
    }

    #[inline(always)]
    fn get_bits(&mut self) -> Result<u32, EntropyError> {
        let val = (self.x as u32) & BYPASS_MASK;
        let mut x = self.x >> BYPASS_BITS;
        if x < RANS_L {
            x = (x << 32) | u64::from(self.read_word()?);
        }
        self.x = x;
        Ok(val)
    }

    #[cold]
    fn decode_bypass(&mut self, t: TableInfo) -> Result<i32, EntropyError> {
        // A count digit of 15 would continue the count in CompressAI, but no
        // encoder can produce more than MAX_BYPASS_DIGITS, so stop here: this also
        // bounds the work an adversarial stream can cause.
        let digits = self.get_bits()?;
        if digits > MAX_BYPASS_DIGITS {
            return Err(EntropyError::Corrupt {
                position: 0,
                problem: "bypass digit count exceeds 7",
            });
        }
        let mut raw: u32 = 0;
        for j in 0..digits {
            raw |= self.get_bits()? << (j * BYPASS_BITS);
        }
        let half = i64::from(raw >> 1);
        let value = if raw & 1 == 1 {
            -half - 1
        } else {
            half + i64::from(t.len) - 2
        };
        i32::try_from(value + i64::from(t.offset)).map_err(|_| EntropyError::Corrupt {
            position: 0,
            problem: "bypass-coded value overflows i32",
        })
    }
}

/// Index `s` with `cdf[s] <= cum < cdf[s + 1]`. Valid tables start at 0 and end
/// at 2^16 > cum, so `s` is in `0..cdf.len() - 1`.
#[inline(always)]
fn find_slot(cdf: &[u32], lut: &[u16], cum: u32) -> usize {
    // The LUT gives the slot of the bucket's first value; the scan then crosses
    // only boundaries inside the 256-wide bucket (at most 255, typically none,
    // since likely symbols are wider than a bucket). It stops at the last entry
    // (2^16 > cum) at the latest.
    let mut s = usize::from(lut[(cum >> LUT_SHIFT) as usize]);
    while cdf[s + 1] <= cum {
        s += 1;
    }
    s
}

/// One-shot helper: encode and flush.
pub fn encode(
    symbols: &[i32],
    indexes: &[i32],
    tables: &CdfTables,
) -> Result<Vec<u8>, EntropyError> {
    let mut enc = RansEncoder::new();
    enc.encode_with_indexes(symbols, indexes, tables)?;
    Ok(enc.flush())
}

/// One-shot helper: decode `indexes.len()` symbols and check the whole stream
/// was consumed (see [`RansDecoder::finish`]).
pub fn decode(data: &[u8], indexes: &[i32], tables: &CdfTables) -> Result<Vec<i32>, EntropyError> {
    let mut dec = RansDecoder::new(data)?;
    let out = dec.decode_with_indexes(indexes, tables)?;
    dec.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> CdfTables {
        CdfTables::new(
            &[
                vec![0, 1000, 40000, 65000, 65536],
                vec![0, 30000, 65536, 0, 0],
            ],
            &[5, 3],
            &[-1, 4],
        )
        .unwrap()
    }

    #[test]
    fn empty_stream_is_the_initial_state() {
        let t = tables();
        let bytes = encode(&[], &[], &t).unwrap();
        assert_eq!(bytes, [0, 0, 0, 0x80, 0, 0, 0, 0]);
        assert_eq!(decode(&bytes, &[], &t).unwrap(), Vec::<i32>::new());
    }

    #[test]
    fn find_slot_matches_linear_search() {
        let t = tables();
        for i in 0..2 {
            let cdf = t.cdf(i).unwrap();
            let lut = t.lut(t.info(i as i32).unwrap());
            for cum in 0..PROB_SCALE {
                let linear = cdf.iter().position(|&v| v > cum).unwrap() - 1;
                assert_eq!(find_slot(cdf, lut, cum), linear, "table {i} cum {cum}");
            }
        }
    }

    #[test]
    fn round_trip_with_bypass() {
        let t = tables();
        let symbols = [-1, 0, 1, 2, 3, -2, 1_000_000, -1_000_000, 4, 5, 6, 3, 100];
        let indexes = [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1];
        let bytes = encode(&symbols, &indexes, &t).unwrap();
        assert_eq!(decode(&bytes, &indexes, &t).unwrap(), symbols);
    }

    #[test]
    fn bypass_limit_is_enforced_and_exact() {
        let t = tables();
        let (lo, hi) = symbol_range(&t, 0).unwrap();
        for s in [lo, hi] {
            let s = s as i32;
            let bytes = encode(&[s], &[0], &t).unwrap();
            assert_eq!(decode(&bytes, &[0], &t).unwrap(), [s]);
        }
        for s in [lo - 1, hi + 1] {
            let err = encode(&[s as i32], &[0], &t).unwrap_err();
            assert!(
                matches!(err, EntropyError::ValueOutOfRange { table: 0, .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn encoder_is_unchanged_by_a_failed_call() {
        let t = tables();
        let mut enc = RansEncoder::new();
        enc.encode_with_indexes(&[1, 2], &[0, 0], &t).unwrap();
        let before = enc.queued();
        let err = enc
            .encode_with_indexes(&[1, 2, 3], &[0, 7, 0], &t)
            .unwrap_err();
        assert!(matches!(
            err,
            EntropyError::IndexOutOfRange {
                position: 1,
                index: 7,
                ..
            }
        ));
        assert_eq!(enc.queued(), before);
        let err = enc
            .encode_with_indexes(&[1, i32::MIN], &[0, 0], &t)
            .unwrap_err();
        assert!(matches!(
            err,
            EntropyError::ValueOutOfRange { position: 1, .. }
        ));
        assert_eq!(enc.queued(), before);
    }

    #[test]
    fn malformed_streams_are_typed_errors() {
        let t = tables();
        assert!(matches!(
            RansDecoder::new(&[0; 7]),
            Err(EntropyError::UnalignedStream { len: 7 })
        ));
        assert!(matches!(
            RansDecoder::new(&[0; 4]),
            Err(EntropyError::StreamTooShort { len: 4 })
        ));
        // State 0 needs a word at the first renormalisation.
        let mut dec = RansDecoder::new(&[0; 8]).unwrap();
        assert!(matches!(
            dec.decode_with_indexes(&[0], &t),
            Err(EntropyError::Truncated { position: 0 })
        ));
        let mut dec = RansDecoder::new(&[0; 8]).unwrap();
        assert!(matches!(
            dec.decode_with_indexes(&[2], &t),
            Err(EntropyError::IndexOutOfRange { index: 2, .. })
        ));
    }
}
