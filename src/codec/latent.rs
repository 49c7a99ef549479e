//! One latent `y` with its hyper-latent `z`: factorized `z`, integer
//! hyper-synthesis, Gaussian-conditional `y`. The machine layer (VFCN) and the
//! aux layer (ACN) are coded by exactly this, with their own tables and shapes.

use fchm_codec::entropy::{EntropyError, EntropyModels};
use fchm_codec::hyper::{HyperError, HyperSynthesis};

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
            .map(|(i, &v)| (v - medians[i / plane]).round_ties_even() as i32)
            .collect();
        let z_bytes = self.entropy.z.encode(&z_symbols, (cz, hz, wz))?;
        let hyper = self.hyper.run(&z_symbols, hz, wz)?;
        let y_symbols: Vec<i32> = y
            .iter()
            .zip(hyper.mean_f32())
            .map(|(&v, m)| (v - m).round_ties_even() as i32)
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
