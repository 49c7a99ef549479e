//! One latent `y` with its hyper-latent `z`: factorized `z`, integer
//! hyper-synthesis, Gaussian-conditional `y`. The machine layer (VFCN) and the
//! aux layer (ACN) are coded by exactly this, with their own tables and shapes.

use fchm_codec::entropy::{EntropyError, EntropyModels};
use fchm_codec::hyper::{HyperError, HyperSynthesis};

/// Round half to even, as `f32::round_ties_even() as i32`, without a libm
/// call per latent element (which does not inline on baseline x86-64): below
/// 2^22 in magnitude, adding and subtracting 1.5·2^23 leaves a float with no
/// fraction bits, rounded by the FPU's default mode, which is exactly half
/// to even.
#[inline]
fn to_symbol(v: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0;
    if v.abs() < 4_194_304.0 {
        ((v + MAGIC) - MAGIC) as i32
    } else {
        v.round_ties_even() as i32
    }
}

/// The tables and shapes of one coded latent.
#[derive(Clone, Copy)]
pub struct LatentCodec<'a> {
    pub entropy: &'a EntropyModels,
    pub hyper: &'a HyperSynthesis,
    /// `[channels, height, width]` of `z` and `y`.
    pub z: [usize; 3],
    pub y: [usize; 3],
}

/// Both substreams of a coded latent, and the symbols they carry.
#[derive(Debug, Clone)]
pub struct CodedLatent {
    pub z_bytes: Vec<u8>,
    pub y_bytes: Vec<u8>,
    pub z_symbols: Vec<i32>,
    pub y_symbols: Vec<i32>,
}

/// A decoded latent: symbols and ŷ = symbols + integer-network means.
#[derive(Debug, Clone)]
pub struct DecodedLatent {
    pub z_symbols: Vec<i32>,
    pub y_symbols: Vec<i32>,
    pub y_hat: Vec<f32>,
}

impl LatentCodec<'_> {
    /// Code `y` (from the analysis transform) given `z` (from the hyper-analysis).
    pub fn encode<E>(&self, y: &[f32], z: &[f32]) -> Result<CodedLatent, E>
    where
        E: From<EntropyError> + From<HyperError>,
    {
        let [cz, hz, wz] = self.z;
        let plane = hz * wz;
        let medians = self.entropy.z.medians();
        // Rounding on the encoder only decides which symbols are sent; the
        // decoder never repeats it, so float differences here cannot desync.
        let z_symbols: Vec<i32> = z
            .iter()
            .enumerate()
            .map(|(i, &v)| to_symbol(v - medians[i / plane]))
            .collect();
        let z_bytes = self.entropy.z.encode(&z_symbols, (cz, hz, wz))?;
        let hyper = self.hyper.run(&z_symbols, hz, wz)?;
        let y_symbols: Vec<i32> = y
            .iter()
            .zip(hyper.mean_f32())
            .map(|(&v, m)| to_symbol(v - m))
            .collect();
        let y_bytes = self.entropy.y.encode(&y_symbols, &hyper.index)?;
        Ok(CodedLatent {
            z_bytes,
            y_bytes,
            z_symbols,
            y_symbols,
        })
    }

    /// Entropy-decode both substreams: the deterministic half (no float network).
    pub fn decode<E>(&self, z_bytes: &[u8], y_bytes: &[u8]) -> Result<DecodedLatent, E>
    where
        E: From<EntropyError> + From<HyperError>,
    {
        let [cz, hz, wz] = self.z;
        let z_symbols = self.entropy.z.decode(z_bytes, (cz, hz, wz))?;
        let hyper = self.hyper.run(&z_symbols, hz, wz)?;
        let y_symbols = self.entropy.y.decode(y_bytes, &hyper.index)?;
        let y_hat = y_symbols
            .iter()
            .zip(hyper.mean_f32())
            .map(|(&s, m)| s as f32 + m)
            .collect();
        Ok(DecodedLatent {
            z_symbols,
            y_symbols,
            y_hat,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::to_symbol;

    #[test]
    fn to_symbol_rounds_half_to_even_like_std() {
        let mut cases = vec![
            0.0f32,
            -0.0,
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.5,
            -2.5,
            0.49999997,
            -0.49999997,
            4_194_303.5,
            -4_194_303.5,
            4_194_304.0,
            8_388_609.0,
            3.0e9,
            -3.0e9,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN_POSITIVE,
        ];
        // Half-integers and their neighbouring floats, small and near 2^22.
        let near = |v: f32| {
            [
                f32::from_bits(v.to_bits() - 1),
                v,
                f32::from_bits(v.to_bits() + 1),
            ]
        };
        for i in (0..100_000).chain(4_094_304..4_194_304) {
            let h = i as f32 + 0.5;
            cases.extend(near(h));
            cases.extend(near(-h));
        }
        for v in cases {
            assert_eq!(to_symbol(v), v.round_ties_even() as i32, "{v}");
        }
    }
}
