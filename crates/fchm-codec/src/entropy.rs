//! Quantised CDF tables and the two entropy models of a bundle (`entropy.json`):
//! a factorized prior for the hyper-latent `z` and a Gaussian conditional for
//! `y`. Tables use CompressAI's layout (`cdf`, `cdf_length`, `offset`, 16-bit
//! precision) and code through [`crate::rans`], so bundles exported from a
//! CompressAI model keep producing CompressAI-identical streams.

use std::path::Path;

use serde::Deserialize;

use crate::rans::{self, RansDecoder, RansEncoder, PROB_SCALE};

#[derive(Debug, thiserror::Error)]
pub enum EntropyError {
    #[error("cdf table {table}: {problem}")]
    InvalidTable { table: usize, problem: String },
    #[error("cdf tables: {0}")]
    InconsistentTables(String),
    #[error("entropy model: {0}")]
    InvalidModel(String),
    #[error("{symbols} symbols but {indexes} table indexes")]
    LengthMismatch { symbols: usize, indexes: usize },
    #[error("symbol {position}: table index {index} out of range ({tables} tables)")]
    IndexOutOfRange {
        position: usize,
        index: i32,
        tables: usize,
    },
    #[error(
        "symbol {position}: value {value} is too far outside table {table} to bypass-code \
         (CompressAI's limit is 7 bypass digits)"
    )]
    ValueOutOfRange {
        position: usize,
        value: i64,
        table: usize,
    },
    #[error("shape {shape:?} does not fit {len} symbols / {channels} channel tables")]
    ShapeMismatch {
        shape: (usize, usize, usize),
        len: usize,
        channels: usize,
    },
    #[error("rANS stream length {len} is not a multiple of 4 bytes")]
    UnalignedStream { len: usize },
    #[error("rANS stream of {len} bytes is shorter than its 8-byte state")]
    StreamTooShort { len: usize },
    #[error("rANS stream truncated while decoding symbol {position}")]
    Truncated { position: usize },
    #[error("rANS stream corrupt at symbol {position}: {problem}")]
    Corrupt {
        position: usize,
        problem: &'static str,
    },
    #[error("rANS stream has {words} unread words after the last symbol")]
    TrailingData { words: usize },
    #[error("entropy.json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl EntropyError {
    fn position_mut(&mut self) -> Option<&mut usize> {
        match self {
            Self::IndexOutOfRange { position, .. }
            | Self::ValueOutOfRange { position, .. }
            | Self::Truncated { position }
            | Self::Corrupt { position, .. } => Some(position),
            _ => None,
        }
    }

    /// Sets the symbol position on errors raised below the loop that knows it.
    pub(crate) fn at(mut self, pos: usize) -> Self {
        if let Some(p) = self.position_mut() {
            *p = pos;
        }
        self
    }

    /// Shifts a position relative to a chunk to one relative to the tensor.
    fn at_offset(mut self, base: usize) -> Self {
        if let Some(p) = self.position_mut() {
            *p += base;
        }
        self
    }
}

/// Where one table lives in the flat CDF array; copied into the hot loops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableInfo {
    pub start: u32,
    /// `cdf_length`; at least 3.
    pub len: u32,
    pub offset: i32,
    pub index: usize,
}

/// A validated set of quantised CDFs.
///
/// Guarantees relied on by the coder (so it needs no checks per symbol):
/// every table has `cdf_length >= 3`, `cdf[0] == 0`, strictly increasing values
/// and `cdf[cdf_length - 1] == 2^16` (hence every frequency is in `1..2^16`,
/// which CompressAI stores as `uint16_t`), and `offset + cdf_length - 2` fits
/// in `i32`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdfTables {
    cdf: Vec<u32>,
    tables: Vec<TableInfo>,
    /// Per table, `LUT_SIZE` entries: the slot containing cumulative frequency
    /// `b << LUT_SHIFT`. The decoder starts its search there instead of
    /// bisecting, which removes a chain of dependent loads per symbol.
    lut: Vec<u16>,
}

pub(crate) const LUT_BITS: u32 = 8;
pub(crate) const LUT_SHIFT: u32 = rans::PRECISION - LUT_BITS;
const LUT_SIZE: usize = 1 << LUT_BITS;

impl CdfTables {
    /// Builds tables from CompressAI's arrays. Rows may be longer than their
    /// `cdf_length` (CompressAI pads `_quantized_cdf` to the longest table); the
    /// padding is ignored.
    pub fn new<R: AsRef<[i32]>>(
        cdfs: &[R],
        cdf_lengths: &[i32],
        offsets: &[i32],
    ) -> Result<Self, EntropyError> {
        if cdfs.len() != cdf_lengths.len() || cdfs.len() != offsets.len() {
            return Err(EntropyError::InconsistentTables(format!(
                "{} cdfs, {} cdf_lengths, {} offsets",
                cdfs.len(),
                cdf_lengths.len(),
                offsets.len()
            )));
        }
        if cdfs.is_empty() {
            return Err(EntropyError::InconsistentTables("no tables".into()));
        }
        let total: usize = cdf_lengths.iter().map(|&l| l.max(0) as usize).sum();
        if total > u32::MAX as usize {
            return Err(EntropyError::InconsistentTables(
                "more than 2^32 cdf entries in total".into(),
            ));
        }
        let mut cdf = Vec::with_capacity(total);
        let mut tables = Vec::with_capacity(cdfs.len());
        let mut lut = Vec::with_capacity(cdfs.len() * LUT_SIZE);
        for (i, ((row, &len), &offset)) in cdfs.iter().zip(cdf_lengths).zip(offsets).enumerate() {
            let row = row.as_ref();
            let bad = |problem: String| EntropyError::InvalidTable { table: i, problem };
            if len < 3 {
                return Err(bad(format!(
                    "cdf_length {len} < 3 (a table needs one symbol plus the bypass sentinel)"
                )));
            }
            let len_us = len as usize;
            if len_us > row.len() {
                return Err(bad(format!(
                    "cdf_length {len} exceeds the row's {} entries",
                    row.len()
                )));
            }
            let row = &row[..len_us];
            if row[0] != 0 {
                return Err(bad(format!("cdf[0] is {}, must be 0", row[0])));
            }
            if let Some(j) = row.windows(2).position(|w| w[1] <= w[0]) {
                return Err(bad(format!(
                    "not strictly increasing: cdf[{}] = {} after cdf[{j}] = {}",
                    j + 1,
                    row[j + 1],
                    row[j]
                )));
            }
            let last = row[len_us - 1];
            if last != PROB_SCALE as i32 {
                return Err(bad(format!(
                    "cdf[{}] (last) is {last}, must be {PROB_SCALE} (16-bit precision)",
                    len_us - 1
                )));
            }
            if i64::from(offset) + i64::from(len) - 2 > i64::from(i32::MAX) {
                return Err(bad(format!(
                    "offset {offset} + cdf_length {len} overflows i32"
                )));
            }
            tables.push(TableInfo {
                start: cdf.len() as u32,
                len: len as u32,
                offset,
                index: i,
            });
            let mut slot = 0usize;
            for b in 0..LUT_SIZE as i32 {
                let cum = b << LUT_SHIFT;
                while row[slot + 1] <= cum {
                    slot += 1;
                }
                // Strictly increasing values below 2^16 + 1 mean slot < 2^16.
                lut.push(slot as u16);
            }
            // Strictly increasing from 0 means no negative entries.
            cdf.extend(row.iter().map(|&v| v as u32));
        }
        Ok(Self { cdf, tables, lut })
    }

    pub fn len(&self) -> usize {
        self.tables.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// The `cdf_length` entries of table `i`.
    pub fn cdf(&self, i: usize) -> Option<&[u32]> {
        let t = self.tables.get(i)?;
        Some(&self.cdf[t.start as usize..(t.start + t.len) as usize])
    }

    pub fn offset(&self, i: usize) -> Option<i32> {
        self.tables.get(i).map(|t| t.offset)
    }

    pub fn cdf_length(&self, i: usize) -> Option<usize> {
        self.tables.get(i).map(|t| t.len as usize)
    }

    #[inline(always)]
    pub(crate) fn info(&self, index: i32) -> Option<TableInfo> {
        // Negative indexes become huge and fail the lookup.
        self.tables.get(index as u32 as usize).copied()
    }

    #[inline(always)]
    pub(crate) fn flat(&self) -> &[u32] {
        &self.cdf
    }

    #[inline(always)]
    pub(crate) fn lut(&self, t: TableInfo) -> &[u16] {
        &self.lut[t.index * LUT_SIZE..(t.index + 1) * LUT_SIZE]
    }
}

/// CompressAI's `EntropyBottleneck` at inference: one table per channel.
#[derive(Debug, Clone)]
pub struct FactorizedModel {
    medians: Vec<f32>,
    tables: CdfTables,
}

impl FactorizedModel {
    pub fn new(medians: Vec<f32>, tables: CdfTables) -> Result<Self, EntropyError> {
        if medians.len() != tables.len() {
            return Err(EntropyError::InvalidModel(format!(
                "z: {} medians for {} tables",
                medians.len(),
                tables.len()
            )));
        }
        if let Some(c) = medians.iter().position(|m| !m.is_finite()) {
            return Err(EntropyError::InvalidModel(format!(
                "z: median of channel {c} is not finite"
            )));
        }
        Ok(Self { medians, tables })
    }

    pub fn channels(&self) -> usize {
        self.tables.len()
    }

    /// Per-channel medians: symbols are `round(z - median)`, so the decoder's
    /// `z_hat = symbol + median`.
    pub fn medians(&self) -> &[f32] {
        &self.medians
    }

    pub fn tables(&self) -> &CdfTables {
        &self.tables
    }

    fn plane(
        &self,
        shape: (usize, usize, usize),
        len: Option<usize>,
    ) -> Result<usize, EntropyError> {
        let (c, h, w) = shape;
        let total = c.checked_mul(h).and_then(|ch| ch.checked_mul(w));
        match total {
            Some(n) if c == self.channels() && len.unwrap_or(n) == n => Ok(h * w),
            _ => Err(EntropyError::ShapeMismatch {
                shape,
                len: len.unwrap_or(0),
                channels: self.channels(),
            }),
        }
    }

    /// Codes `symbols` laid out `C×H×W` (channel-major, as a contiguous NCHW
    /// tensor with N = 1) into one stream, same bytes as
    /// `EntropyBottleneck.compress`.
    pub fn encode(
        &self,
        symbols: &[i32],
        shape: (usize, usize, usize),
    ) -> Result<Vec<u8>, EntropyError> {
        let plane = self.plane(shape, Some(symbols.len()))?;
        let mut enc = RansEncoder::new();
        if plane > 0 {
            for (c, chunk) in symbols.chunks(plane).enumerate() {
                enc.encode_with_index(chunk, c as i32, &self.tables)
                    .map_err(|e| e.at_offset(c * plane))?;
            }
        }
        Ok(enc.flush())
    }

    /// Inverse of [`Self::encode`]; fails unless the stream holds exactly
    /// `C·H·W` symbols. The shape is trusted (the frame container bounds it):
    /// the output grows to `C·H·W` values before a short stream is detected.
    pub fn decode(
        &self,
        data: &[u8],
        shape: (usize, usize, usize),
    ) -> Result<Vec<i32>, EntropyError> {
        let plane = self.plane(shape, None)?;
        let mut dec = RansDecoder::new(data)?;
        let mut out = Vec::new();
        for c in 0..self.channels() {
            dec.decode_with_index_into(plane, c as i32, &self.tables, &mut out)
                .map_err(|e| e.at_offset(c * plane))?;
        }
        dec.finish()?;
        Ok(out)
    }
}

/// CompressAI's `GaussianConditional` at inference: one table per entry of the
/// scale table; each element's table index is supplied by the caller (computed
/// with integer arithmetic so both ends agree bit-exactly).
#[derive(Debug, Clone)]
pub struct GaussianConditionalModel {
    scale_table: Vec<f32>,
    tables: CdfTables,
}

impl GaussianConditionalModel {
    pub fn new(scale_table: Vec<f32>, tables: CdfTables) -> Result<Self, EntropyError> {
        if scale_table.len() != tables.len() {
            return Err(EntropyError::InvalidModel(format!(
                "y: {} scales for {} tables",
                scale_table.len(),
                tables.len()
            )));
        }
        if let Some(i) = scale_table
            .iter()
            .position(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(EntropyError::InvalidModel(format!(
                "y: scale_table[{i}] = {} is not a positive finite number",
                scale_table[i]
            )));
        }
        if let Some(i) = scale_table.windows(2).position(|w| w[1] <= w[0]) {
            return Err(EntropyError::InvalidModel(format!(
                "y: scale_table is not strictly increasing at entry {}",
                i + 1
            )));
        }
        Ok(Self {
            scale_table,
            tables,
        })
    }

    pub fn scale_table(&self) -> &[f32] {
        &self.scale_table
    }

    pub fn tables(&self) -> &CdfTables {
        &self.tables
    }

    /// Same bytes as `GaussianConditional.compress` given the same indexes.
    pub fn encode(&self, symbols: &[i32], indexes: &[i32]) -> Result<Vec<u8>, EntropyError> {
        rans::encode(symbols, indexes, &self.tables)
    }

    /// Decodes one symbol per index; fails unless the stream is consumed exactly.
    pub fn decode(&self, data: &[u8], indexes: &[i32]) -> Result<Vec<i32>, EntropyError> {
        rans::decode(data, indexes, &self.tables)
    }
}

/// The entropy models of one bundle.
#[derive(Debug, Clone)]
pub struct EntropyModels {
    pub z: FactorizedModel,
    pub y: GaussianConditionalModel,
}

#[derive(Deserialize)]
struct EntropyJson {
    precision: u32,
    z: FactorizedJson,
    y: GaussianJson,
}

#[derive(Deserialize)]
struct FactorizedJson {
    medians: Vec<f32>,
    cdfs: Vec<Vec<i32>>,
    cdf_lengths: Vec<i32>,
    offsets: Vec<i32>,
}

#[derive(Deserialize)]
struct GaussianJson {
    scale_table: Vec<f32>,
    cdfs: Vec<Vec<i32>>,
    cdf_lengths: Vec<i32>,
    offsets: Vec<i32>,
}

/// Prefixes table errors with the tensor they belong to (the bundle has two sets).
fn named(which: &str, e: EntropyError) -> EntropyError {
    match e {
        EntropyError::InvalidTable { .. } | EntropyError::InconsistentTables(_) => {
            EntropyError::InvalidModel(format!("{which}: {e}"))
        }
        other => other,
    }
}

impl EntropyModels {
    pub fn from_json_slice(bytes: &[u8]) -> Result<Self, EntropyError> {
        let j: EntropyJson = serde_json::from_slice(bytes)?;
        if j.precision != rans::PRECISION {
            return Err(EntropyError::InvalidModel(format!(
                "precision {} is not supported (only {})",
                j.precision,
                rans::PRECISION
            )));
        }
        let zt =
            CdfTables::new(&j.z.cdfs, &j.z.cdf_lengths, &j.z.offsets).map_err(|e| named("z", e))?;
        let yt =
            CdfTables::new(&j.y.cdfs, &j.y.cdf_lengths, &j.y.offsets).map_err(|e| named("y", e))?;
        Ok(Self {
            z: FactorizedModel::new(j.z.medians, zt)?,
            y: GaussianConditionalModel::new(j.y.scale_table, yt)?,
        })
    }

    pub fn from_json_str(s: &str) -> Result<Self, EntropyError> {
        Self::from_json_slice(s.as_bytes())
    }

    pub fn load(path: impl AsRef<Path>) -> Result<Self, EntropyError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| EntropyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json_slice(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{ "precision": 16,
      "z": { "medians": [0.5, -0.25], "cdfs": [[0, 100, 65000, 65536], [0, 30000, 65536, 0]],
             "cdf_lengths": [4, 3], "offsets": [-1, 0] },
      "y": { "scale_table": [0.11, 0.2, 0.5],
             "cdfs": [[0, 10, 65526, 65536, 0], [0, 2000, 60000, 65535, 65536], [0, 65535, 65536]],
             "cdf_lengths": [4, 5, 3], "offsets": [-1, -1, 0] } }"#;

    #[test]
    fn loads_and_round_trips() {
        let m = EntropyModels::from_json_str(JSON).unwrap();
        assert_eq!(m.z.channels(), 2);
        let z = [0, 1, -1, 5, 0, 0, 1, 9];
        let bytes = m.z.encode(&z, (2, 2, 2)).unwrap();
        assert_eq!(m.z.decode(&bytes, (2, 2, 2)).unwrap(), z);
        assert!(matches!(
            m.z.decode(&bytes, (2, 2, 3)),
            Err(EntropyError::Truncated { .. } | EntropyError::Corrupt { .. })
        ));
        assert!(matches!(
            m.z.encode(&z, (2, 2, 3)),
            Err(EntropyError::ShapeMismatch { .. })
        ));
        assert!(matches!(
            m.z.encode(&z, (4, 1, 2)),
            Err(EntropyError::ShapeMismatch { .. })
        ));

        let y = [0, 1, -1, 2, 0, 7, -300];
        let idx = [0, 1, 2, 1, 0, 2, 1];
        let bytes = m.y.encode(&y, &idx).unwrap();
        assert_eq!(m.y.decode(&bytes, &idx).unwrap(), y);
        let err = m.y.encode(&y, &[0, 1, 2, 3, 0, 0, 0]).unwrap_err();
        assert!(matches!(
            err,
            EntropyError::IndexOutOfRange {
                position: 3,
                index: 3,
                tables: 3
            }
        ));
        let err = m.y.decode(&bytes, &[0, 1, -1, 1, 0, 2, 1]).unwrap_err();
        assert!(matches!(
            err,
            EntropyError::IndexOutOfRange {
                position: 2,
                index: -1,
                ..
            }
        ));
    }

    #[test]
    fn factorized_errors_carry_the_flat_position() {
        let m = EntropyModels::from_json_str(JSON).unwrap();
        let mut z = [0; 8];
        z[6] = i32::MAX;
        let err = m.z.encode(&z, (2, 2, 2)).unwrap_err();
        assert!(
            matches!(
                err,
                EntropyError::ValueOutOfRange {
                    position: 6,
                    table: 1,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn table_validation_names_table_and_problem() {
        type Case<'a> = (&'a [&'a [i32]], &'a [i32], &'a str);
        let cases: &[Case] = &[
            (
                &[&[0, 10, 65536], &[1, 10, 65536]],
                &[3, 3],
                "cdf table 1: cdf[0] is 1",
            ),
            (
                &[&[0, 10, 65536], &[0, 10, 10, 65536]],
                &[3, 4],
                "cdf table 1: not strictly increasing: cdf[2] = 10",
            ),
            (
                &[&[0, 10, 65535]],
                &[3],
                "cdf table 0: cdf[2] (last) is 65535",
            ),
            (&[&[0, 65536]], &[2], "cdf table 0: cdf_length 2 < 3"),
            (
                &[&[0, 5, 65536]],
                &[4],
                "cdf table 0: cdf_length 4 exceeds the row's 3 entries",
            ),
        ];
        for (cdfs, lens, want) in cases {
            let offsets = vec![0; cdfs.len()];
            let err = CdfTables::new(cdfs, lens, &offsets)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(want), "{err:?} should start with {want:?}");
        }
        let err = CdfTables::new(&[[0, 5, 65536]], &[3, 3], &[0]).unwrap_err();
        assert!(matches!(err, EntropyError::InconsistentTables(_)));
        let err = CdfTables::new(&[[0, 5, 65536]], &[3], &[i32::MAX]).unwrap_err();
        assert!(err.to_string().contains("overflows i32"), "{err}");
        let none: &[[i32; 3]] = &[];
        assert!(CdfTables::new(none, &[], &[]).is_err());
    }

    #[test]
    fn json_errors() {
        let bad_precision = JSON.replace("\"precision\": 16", "\"precision\": 15");
        assert!(matches!(
            EntropyModels::from_json_str(&bad_precision),
            Err(EntropyError::InvalidModel(_))
        ));
        let bad_table = JSON.replace("[0, 65535, 65536]", "[0, 65537, 65536]");
        let err = EntropyModels::from_json_str(&bad_table)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("entropy model: y: cdf table 2: not strictly increasing"),
            "{err}"
        );
        let bad_scales = JSON.replace("[0.11, 0.2, 0.5]", "[0.11, 0.2, 0.2]");
        assert!(matches!(
            EntropyModels::from_json_str(&bad_scales),
            Err(EntropyError::InvalidModel(_))
        ));
        let missing = JSON.replace("\"medians\": [0.5, -0.25],", "");
        assert!(matches!(
            EntropyModels::from_json_str(&missing),
            Err(EntropyError::Json(_))
        ));
        assert!(matches!(
            EntropyModels::load("/nonexistent/entropy.json"),
            Err(EntropyError::Io { .. })
        ));
    }
}
