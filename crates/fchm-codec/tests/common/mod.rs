//! Table and symbol generators shared by the rANS tests and benchmark.
#![allow(dead_code)]

/// splitmix64: tiny, seedable, and identical everywhere, so a failing seed
/// reproduces without depending on an RNG crate's stream stability.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant here.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn range_i32(&mut self, lo: i32, hi_inclusive: i32) -> i32 {
        let span = (i64::from(hi_inclusive) - i64::from(lo) + 1) as u64;
        (i64::from(lo) + self.below(span) as i64) as i32
    }

    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Quantises positive weights into a 16-bit CDF (`weights.len() + 1` entries,
/// from 0 to 65536) in which every slot has frequency >= 1.
pub fn quantize_pmf(weights: &[f64]) -> Vec<i32> {
    let k = weights.len();
    assert!((2..=65536).contains(&k), "{k} slots");
    let total: f64 = weights.iter().sum();
    let spare = (65536 - k) as f64;
    let mut freq: Vec<i64> = weights
        .iter()
        .map(|w| 1 + (w / total * spare).floor() as i64)
        .collect();
    let missing = 65536 - freq.iter().sum::<i64>();
    let top = (0..k)
        .max_by(|&a, &b| weights[a].total_cmp(&weights[b]))
        .unwrap();
    freq[top] += missing;
    let mut cdf = Vec::with_capacity(k + 1);
    let mut acc = 0i64;
    cdf.push(0);
    for f in freq {
        assert!(f >= 1);
        acc += f;
        cdf.push(acc as i32);
    }
    assert_eq!(acc, 65536);
    cdf
}

/// CompressAI-layout tables: `cdfs` rows (possibly padded), `cdf_lengths`, `offsets`.
#[derive(Debug, Clone, Default)]
pub struct RawTables {
    pub cdfs: Vec<Vec<i32>>,
    pub cdf_lengths: Vec<i32>,
    pub offsets: Vec<i32>,
}

impl RawTables {
    pub fn push(&mut self, cdf: Vec<i32>, offset: i32, pad: usize) {
        self.cdf_lengths.push(cdf.len() as i32);
        self.offsets.push(offset);
        let mut row = cdf;
        row.resize(row.len() + pad, 0);
        self.cdfs.push(row);
    }

    pub fn build(&self) -> fchm_codec::entropy::CdfTables {
        fchm_codec::entropy::CdfTables::new(&self.cdfs, &self.cdf_lengths, &self.offsets).unwrap()
    }

    /// Unpadded rows of table `i`.
    pub fn cdf(&self, i: usize) -> &[i32] {
        &self.cdfs[i][..self.cdf_lengths[i] as usize]
    }

    /// A symbol drawn from table `i`'s own distribution; the sentinel slot maps to a
    /// value just outside the table (what a real tail sample looks like).
    pub fn sample(&self, rng: &mut Rng, i: usize) -> i32 {
        let cdf = self.cdf(i);
        let u = rng.below(65536) as i32;
        let slot = cdf.partition_point(|&v| v <= u) - 1;
        let max_value = cdf.len() as i32 - 2;
        let offset = self.offsets[i];
        if (slot as i32) < max_value {
            offset + slot as i32
        } else if rng.below(2) == 0 {
            offset - 1 - rng.range_i32(0, 3)
        } else {
            offset + max_value + rng.range_i32(0, 3)
        }
    }
}

/// Random tables: skewed random pmfs, 2..=max_slots slots, random offsets and
/// padding.
pub fn random_tables(rng: &mut Rng, count: usize, max_slots: usize) -> RawTables {
    let mut t = RawTables::default();
    for _ in 0..count {
        let k = 2 + rng.below(max_slots as u64 - 1) as usize;
        let sharp = 1.0 + 8.0 * rng.unit();
        let weights: Vec<f64> = (0..k).map(|_| rng.unit().powf(sharp) + 1e-9).collect();
        let offset = rng.range_i32(-60, 20);
        let pad = rng.below(4) as usize;
        t.push(quantize_pmf(&weights), offset, pad);
    }
    t
}

pub fn std_normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// erfc with relative error < 1.2e-7 (Numerical Recipes' Chebyshev fit) — ample
/// for building test tables.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Tables shaped like CompressAI's `GaussianConditional.update()` for its
/// default scale table (64 log-spaced scales from 0.11 to 256, tail mass 1e-9).
pub fn gaussian_tables() -> RawTables {
    const LEVELS: usize = 64;
    // -Phi^-1(tail_mass / 2)
    const MULTIPLIER: f64 = 6.109_410_204_869_398;
    let (lo, hi) = (0.11f64.ln(), 256f64.ln());
    let mut t = RawTables::default();
    for i in 0..LEVELS {
        let scale = (lo + (hi - lo) * i as f64 / (LEVELS - 1) as f64).exp();
        let center = (scale * MULTIPLIER).ceil() as i32;
        let mut weights: Vec<f64> = (0..2 * center + 1)
            .map(|j| {
                let s = f64::from((j - center).abs());
                std_normal_cdf((0.5 - s) / scale) - std_normal_cdf((-0.5 - s) / scale)
            })
            .collect();
        weights.push(2.0 * std_normal_cdf((-0.5 - f64::from(center)) / scale));
        t.push(quantize_pmf(&weights), -center, 0);
    }
    t
}
