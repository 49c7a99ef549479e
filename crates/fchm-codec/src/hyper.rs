//! Integer hyper-synthesis: hyper-latent symbols -> (mean, scale-table index) per latent.
//!
//! This is the one network whose output selects entropy tables, so it runs in
//! integer arithmetic with a fully specified rounding rule: any two CPUs give
//! the same indices and means, bit for bit (docs/determinism.md). The
//! semantics are those of `models/train/fchm_train/intnet.py`, which trains it
//! with fake quantisation and is its executable reference:
//!
//! ```text
//! conv:  acc[o] = bias[o] + Σ w[o,i,dy,dx]·x[i, y+dy−k/2, x+dx−k/2]   (i64, zero padding)
//!        out[o] = (acc[o] + 2^(shift[o]−1)) >> shift[o]   (shift > 0; arithmetic shift)
//!               = acc[o] << −shift[o]                     (shift <= 0)
//!        out = max(out, 0) if relu;  out = clamp(out, −2^23, 2^23−1)
//! upsample2: nearest neighbour, each value into a 2×2 block
//! ```
//!
//! The sums are computed in f64, which is exact here and vectorises where
//! i64 multiplies do not: inputs and activations are integers below 2^23 in
//! magnitude, weights below 2^7, so every product is an integer below 2^30,
//! and with at most 1024·49 taps and |bias| <= 2^40 every partial sum stays an
//! integer below 2^47 < 2^53. Such sums are exact in f64 in any order (with or
//! without fused multiply-add), so the result is the i64 one on every CPU.
//! The tests check it against a plain i64 implementation.

use serde::Deserialize;
use thiserror::Error;

/// Activations stay within 24 bits: exact in f32 as well, and i64 accumulators
/// cannot overflow with i8 weights and the tap counts allowed below.
const ACT_MIN: i64 = -(1 << 23);
const ACT_MAX: i64 = (1 << 23) - 1;
const WEIGHT_MAX: i32 = 127;
const MAX_CHANNELS: usize = 1024;
const MAX_KERNEL: usize = 7;
const MAX_SHIFT: i32 = 62;
/// Left shifts are bounded so a 24-bit-clamped input times int8 weights stays in i64.
const MIN_SHIFT: i32 = -16;

#[derive(Debug, Error, PartialEq)]
pub enum HyperError {
    #[error("hyper-synthesis spec: unsupported format {0:?} (expected \"fchm-intnet/1\")")]
    Format(String),
    #[error("hyper-synthesis spec: layer {layer}: {problem}")]
    Layer { layer: usize, problem: String },
    #[error("hyper-synthesis spec: {0}")]
    Spec(String),
    #[error("hyper-synthesis input: expected {expected} channels, got {got}")]
    InputChannels { expected: usize, got: usize },
    #[error("hyper-synthesis input: symbol {0} is outside ±2^23")]
    InputRange(i32),
    #[error("hyper-synthesis input: {len} values do not fill a {c}x{h}x{w} tensor")]
    InputLength {
        len: usize,
        c: usize,
        h: usize,
        w: usize,
    },
}

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum LayerSpec {
    Conv {
        cin: usize,
        cout: usize,
        k: usize,
        weight: Vec<i32>,
        bias: Vec<i64>,
        shift: Vec<i32>,
        relu: bool,
    },
    Upsample2,
}

#[derive(Debug, Deserialize)]
struct Spec {
    format: String,
    in_channels: usize,
    layers: Vec<LayerSpec>,
    mean_channels: usize,
    mean_frac_bits: u32,
    levels: usize,
}

#[derive(Debug, Clone)]
enum Layer {
    Conv(Conv),
    Upsample2,
}

#[derive(Debug, Clone)]
struct Conv {
    cin: usize,
    cout: usize,
    k: usize,
    /// Laid out `[dy][dx][cin][cout]`: each input value scales one contiguous
    /// row of weights into the output channels' sums, a loop with no
    /// reduction that the compiler vectorises.
    weight: Vec<f64>,
    bias: Vec<f64>,
    shift: Vec<i32>,
    relu: bool,
}

/// The decoded output: one mean and one table index per latent element, `[M][H][W]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HyperOutput {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Means in fixed point; `mean_f32` gives the float the codec adds to symbols.
    pub mean_fixed: Vec<i32>,
    pub mean_frac_bits: u32,
    pub index: Vec<i32>,
}

impl HyperOutput {
    /// Exact: |mean_fixed| < 2^23, so the division by a power of two is exact in f32.
    pub fn mean_f32(&self) -> Vec<f32> {
        let scale = (1u64 << self.mean_frac_bits) as f32;
        self.mean_fixed.iter().map(|&m| m as f32 / scale).collect()
    }
}

/// A validated integer hyper-synthesis network.
#[derive(Debug, Clone)]
pub struct HyperSynthesis {
    in_channels: usize,
    layers: Vec<Layer>,
    mean_channels: usize,
    mean_frac_bits: u32,
    levels: usize,
}

fn layer_err(layer: usize, problem: impl Into<String>) -> HyperError {
    HyperError::Layer {
        layer,
        problem: problem.into(),
    }
}

impl HyperSynthesis {
    /// Parse and validate the bundle's `hyper_synth.json`.
    pub fn from_json(text: &str) -> Result<Self, HyperError> {
        let spec: Spec = serde_json::from_str(text)
            .map_err(|e| HyperError::Spec(format!("invalid JSON: {e}")))?;
        Self::from_spec(spec)
    }

    fn from_spec(spec: Spec) -> Result<Self, HyperError> {
        if spec.format != "fchm-intnet/1" {
            return Err(HyperError::Format(spec.format));
        }
        let mut channels = spec.in_channels;
        if channels == 0 || channels > MAX_CHANNELS {
            return Err(HyperError::Spec(format!(
                "in_channels {channels} out of range"
            )));
        }
        let mut layers = Vec::with_capacity(spec.layers.len());
        for (n, l) in spec.layers.into_iter().enumerate() {
            match l {
                LayerSpec::Upsample2 => layers.push(Layer::Upsample2),
                LayerSpec::Conv {
                    cin,
                    cout,
                    k,
                    weight,
                    bias,
                    shift,
                    relu,
                } => {
                    if cin != channels {
                        return Err(layer_err(
                            n,
                            format!("cin {cin} but input has {channels} channels"),
                        ));
                    }
                    if cout == 0 || cout > MAX_CHANNELS {
                        return Err(layer_err(n, format!("cout {cout} out of range")));
                    }
                    if k == 0 || k % 2 == 0 || k > MAX_KERNEL {
                        return Err(layer_err(
                            n,
                            format!("kernel {k} must be odd and <= {MAX_KERNEL}"),
                        ));
                    }
                    if weight.len() != cout * cin * k * k {
                        return Err(layer_err(
                            n,
                            format!("{} weights, expected {}", weight.len(), cout * cin * k * k),
                        ));
                    }
                    if let Some(w) = weight.iter().find(|w| w.unsigned_abs() > WEIGHT_MAX as u32) {
                        return Err(layer_err(n, format!("weight {w} outside int8")));
                    }
                    if bias.len() != cout || shift.len() != cout {
                        return Err(layer_err(
                            n,
                            "bias and shift need one entry per output channel",
                        ));
                    }
                    if let Some(s) = shift
                        .iter()
                        .find(|&&s| !(MIN_SHIFT..=MAX_SHIFT).contains(&s))
                    {
                        return Err(layer_err(
                            n,
                            format!("shift {s} outside {MIN_SHIFT}..={MAX_SHIFT}"),
                        ));
                    }
                    if let Some(b) = bias.iter().find(|b| b.unsigned_abs() > 1 << 40) {
                        return Err(layer_err(n, format!("bias {b} too large")));
                    }
                    // [cout][cin][dy][dx] -> [dy][dx][cin][cout]
                    let mut w = vec![0f64; weight.len()];
                    for o in 0..cout {
                        for i in 0..cin {
                            for t in 0..k * k {
                                w[(t * cin + i) * cout + o] =
                                    f64::from(weight[(o * cin + i) * k * k + t]);
                            }
                        }
                    }
                    layers.push(Layer::Conv(Conv {
                        cin,
                        cout,
                        k,
                        weight: w,
                        // |bias| <= 2^40: exact in f64.
                        bias: bias.iter().map(|&b| b as f64).collect(),
                        shift,
                        relu,
                    }));
                    channels = cout;
                }
            }
        }
        // A 1×1 convolution and its pointwise shift, ReLU and clamp commute
        // with nearest-neighbour upsampling: run it before, on a quarter of
        // the pixels. The result is the same, value for value.
        let mut i = 1;
        while i < layers.len() {
            if matches!(layers[i - 1], Layer::Upsample2)
                && matches!(&layers[i], Layer::Conv(c) if c.k == 1)
            {
                layers.swap(i - 1, i);
                // It may pass an upsampling before this one too.
                i = i.saturating_sub(1).max(1);
            } else {
                i += 1;
            }
        }
        if channels != 2 * spec.mean_channels || spec.mean_channels == 0 {
            return Err(HyperError::Spec(format!(
                "last layer has {channels} channels, expected 2 x mean_channels ({})",
                spec.mean_channels
            )));
        }
        if spec.levels == 0 || spec.mean_frac_bits > 23 {
            return Err(HyperError::Spec(
                "levels must be > 0 and mean_frac_bits <= 23".into(),
            ));
        }
        Ok(Self {
            in_channels: spec.in_channels,
            layers,
            mean_channels: spec.mean_channels,
            mean_frac_bits: spec.mean_frac_bits,
            levels: spec.levels,
        })
    }

    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    pub fn out_channels(&self) -> usize {
        self.mean_channels
    }

    /// Spatial upsampling factor from the hyper-latent to the latent.
    pub fn scale_factor(&self) -> usize {
        1 << self
            .layers
            .iter()
            .filter(|l| matches!(l, Layer::Upsample2))
            .count()
    }

    /// Run on hyper-latent symbols `z` laid out `[C][H][W]`.
    pub fn run(&self, z: &[i32], h: usize, w: usize) -> Result<HyperOutput, HyperError> {
        let c = self.in_channels;
        if z.len() != c * h * w {
            return Err(HyperError::InputLength {
                len: z.len(),
                c,
                h,
                w,
            });
        }
        if let Some(&v) = z
            .iter()
            .find(|&&v| !(ACT_MIN..=ACT_MAX).contains(&i64::from(v)))
        {
            return Err(HyperError::InputRange(v));
        }
        // Work in HWC so each tap reads contiguous channels.
        let (mut hh, mut ww, mut cc) = (h, w, c);
        let mut x: Vec<f64> = vec![0.0; h * w * c];
        for ch in 0..c {
            for p in 0..h * w {
                x[p * c + ch] = f64::from(z[ch * h * w + p]);
            }
        }
        // Trailing upsamplings are not materialised: the output below reads
        // each latent position's value from its source position.
        let trailing = self
            .layers
            .iter()
            .rev()
            .take_while(|l| matches!(l, Layer::Upsample2))
            .count();
        for layer in &self.layers[..self.layers.len() - trailing] {
            match layer {
                Layer::Upsample2 => {
                    let mut up = vec![0.0; 4 * hh * ww * cc];
                    for yy in 0..2 * hh {
                        for xx in 0..2 * ww {
                            let src = ((yy / 2) * ww + xx / 2) * cc;
                            let dst = (yy * 2 * ww + xx) * cc;
                            up[dst..dst + cc].copy_from_slice(&x[src..src + cc]);
                        }
                    }
                    x = up;
                    hh *= 2;
                    ww *= 2;
                }
                Layer::Conv(conv) => {
                    x = conv.apply(&x, hh, ww);
                    cc = conv.cout;
                }
            }
        }
        let m = self.mean_channels;
        let (oh, ow) = (hh << trailing, ww << trailing);
        let plane = oh * ow;
        let mut mean_fixed = vec![0i32; m * plane];
        let mut index = vec![0i32; m * plane];
        let top = self.levels as i64 - 1;
        let rep = 1 << trailing;
        for ch in 0..m {
            let (means, indexes) = (
                &mut mean_fixed[ch * plane..][..plane],
                &mut index[ch * plane..][..plane],
            );
            for sy in 0..hh {
                // Build one output row from the source row, then repeat it
                // for the rows the trailing upsamplings would have made.
                let row = sy * rep * ow;
                for sx in 0..ww {
                    let v = &x[(sy * ww + sx) * cc..];
                    // Integers within ±2^23: the casts are exact.
                    let (mean, idx) = (v[ch] as i32, (v[m + ch] as i64).clamp(0, top) as i32);
                    means[row + sx * rep..][..rep].fill(mean);
                    indexes[row + sx * rep..][..rep].fill(idx);
                }
                for r in 1..rep {
                    means.copy_within(row..row + ow, row + r * ow);
                    indexes.copy_within(row..row + ow, row + r * ow);
                }
            }
        }
        Ok(HyperOutput {
            channels: m,
            height: oh,
            width: ow,
            mean_fixed,
            mean_frac_bits: self.mean_frac_bits,
            index,
        })
    }
}

impl Conv {
    /// `x` is HWC with `cin` channels; returns HWC with `cout` channels.
    fn apply(&self, x: &[f64], h: usize, w: usize) -> Vec<f64> {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { self.apply_avx2(x, h, w) };
        }
        self.apply_generic(x, h, w)
    }

    /// The same loops compiled for AVX2: four f64 lanes instead of SSE2's
    /// two. Every sum is exact (module docs), so the result is identical.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn apply_avx2(&self, x: &[f64], h: usize, w: usize) -> Vec<f64> {
        self.apply_generic(x, h, w)
    }

    #[inline(always)]
    fn apply_generic(&self, x: &[f64], h: usize, w: usize) -> Vec<f64> {
        let (k, cin, cout) = (self.k, self.cin, self.cout);
        let pad = k / 2;
        let mut out = vec![0.0; h * w * cout];
        let mut acc = vec![0.0; cout];
        for y in 0..h {
            for xx in 0..w {
                acc.copy_from_slice(&self.bias);
                for dy in 0..k {
                    let Some(sy) = (y + dy).checked_sub(pad).filter(|&s| s < h) else {
                        continue;
                    };
                    for dx in 0..k {
                        let Some(sx) = (xx + dx).checked_sub(pad).filter(|&s| s < w) else {
                            continue;
                        };
                        let src = &x[(sy * w + sx) * cin..][..cin];
                        let taps = &self.weight[(dy * k + dx) * cin * cout..][..cin * cout];
                        for (&v, row) in src.iter().zip(taps.chunks_exact(cout)) {
                            // ReLU leaves many zeros; skipping them changes no sum.
                            if v == 0.0 {
                                continue;
                            }
                            for (a, &wt) in acc.iter_mut().zip(row) {
                                *a += v * wt;
                            }
                        }
                    }
                }
                let o_base = (y * w + xx) * cout;
                for (o, &sum) in acc.iter().enumerate() {
                    // An integer below 2^47 (module docs): the cast is exact.
                    let sum = sum as i64;
                    let s = self.shift[o];
                    let mut v = if s > 0 {
                        (sum + (1i64 << (s - 1))) >> s
                    } else {
                        // |sum| < 2^47, so a left shift of at most 16 stays inside i64.
                        sum << -s
                    };
                    if self.relu {
                        v = v.max(0);
                    }
                    out[o_base + o] = v.clamp(ACT_MIN, ACT_MAX) as f64;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(weight: Vec<i32>, bias: Vec<i64>, shift: Vec<i32>, relu: bool) -> String {
        serde_json::json!({
            "format": "fchm-intnet/1", "in_channels": 1,
            "layers": [
                {"op": "conv", "cin": 1, "cout": 2, "k": 3, "weight": weight, "bias": bias, "shift": shift, "relu": relu},
                {"op": "upsample2"}
            ],
            "mean_channels": 1, "mean_frac_bits": 2, "levels": 4
        })
        .to_string()
    }

    #[test]
    fn conv_rounds_half_up_and_clamps_index() {
        // Channel 0: centre tap 3, shift 1 -> (3z + 1) >> 1. Channel 1: centre tap 1, bias 10 -> index clamp.
        let mut w = vec![0; 18];
        w[4] = 3;
        w[13] = 1;
        let net = HyperSynthesis::from_json(&spec(w, vec![0, 10], vec![1, 0], false)).unwrap();
        let out = net.run(&[1, -1, 2, -3], 2, 2).unwrap();
        assert_eq!((out.height, out.width), (4, 4));
        // (3+1)>>1=2, (-3+1)>>1=-1, (6+1)>>1=3, (-9+1)>>1=-4 ; upsampled 2x2 blocks
        assert_eq!(&out.mean_fixed[0..4], &[2, 2, -1, -1]);
        assert_eq!(&out.mean_fixed[12..16], &[3, 3, -4, -4]);
        assert!(out.index.iter().all(|&i| i == 3), "10+z clamps to levels-1");
        assert_eq!(out.mean_f32()[2], -0.25);
    }

    #[test]
    fn negative_shift_is_a_left_shift() {
        let mut w = vec![0; 18];
        w[4] = 3;
        let net = HyperSynthesis::from_json(&spec(w, vec![0, 0], vec![-2, 0], false)).unwrap();
        let out = net.run(&[1, -1, 2, -3], 2, 2).unwrap();
        assert_eq!(&out.mean_fixed[0..4], &[12, 12, -12, -12]);
        let bad = spec(vec![0; 18], vec![0, 0], vec![-17, 0], false);
        assert!(HyperSynthesis::from_json(&bad).is_err());
    }

    #[test]
    fn zero_padding_at_borders() {
        // Sum of the 3x3 neighbourhood.
        let mut w = vec![1; 9];
        w.extend(vec![0; 9]);
        let net = HyperSynthesis::from_json(&spec(w, vec![0, 0], vec![0, 0], true)).unwrap();
        let out = net.run(&[1, 1, 1, 1], 2, 2).unwrap();
        assert!(out.mean_fixed.iter().all(|&m| m == 4));
    }

    /// The module docs' semantics in plain i64, CHW, for random networks.
    fn reference(spec: &serde_json::Value, z: &[i32], mut h: usize, mut w: usize) -> Vec<i64> {
        let mut c = spec["in_channels"].as_u64().unwrap() as usize;
        let mut x: Vec<i64> = z.iter().map(|&v| i64::from(v)).collect();
        for l in spec["layers"].as_array().unwrap() {
            let get = |k: &str| l[k].as_array().unwrap().iter().map(|v| v.as_i64().unwrap());
            if l["op"] == "upsample2" {
                let mut up = vec![0; 4 * c * h * w];
                for ch in 0..c {
                    for y in 0..2 * h {
                        for xx in 0..2 * w {
                            up[(ch * 2 * h + y) * 2 * w + xx] = x[(ch * h + y / 2) * w + xx / 2];
                        }
                    }
                }
                (x, h, w) = (up, 2 * h, 2 * w);
                continue;
            }
            let (k, cout) = (
                l["k"].as_u64().unwrap() as i64,
                l["cout"].as_u64().unwrap() as usize,
            );
            let (wt, bias, shift): (Vec<i64>, Vec<i64>, Vec<i64>) = (
                get("weight").collect(),
                get("bias").collect(),
                get("shift").collect(),
            );
            let mut out = vec![0; cout * h * w];
            for o in 0..cout {
                for y in 0..h as i64 {
                    for xx in 0..w as i64 {
                        let mut acc = bias[o];
                        for i in 0..c {
                            for dy in 0..k {
                                for dx in 0..k {
                                    let (sy, sx) = (y + dy - k / 2, xx + dx - k / 2);
                                    if sy < 0 || sx < 0 || sy >= h as i64 || sx >= w as i64 {
                                        continue;
                                    }
                                    let wi = ((o * c + i) as i64 * k + dy) * k + dx;
                                    acc += wt[wi as usize]
                                        * x[(i * h + sy as usize) * w + sx as usize];
                                }
                            }
                        }
                        let s = shift[o];
                        let mut v = if s > 0 {
                            (acc + (1 << (s - 1))) >> s
                        } else {
                            acc << -s
                        };
                        if l["relu"].as_bool().unwrap() {
                            v = v.max(0);
                        }
                        out[(o * h + y as usize) * w + xx as usize] = v.clamp(ACT_MIN, ACT_MAX);
                    }
                }
            }
            (x, c) = (out, cout);
        }
        x
    }

    #[test]
    fn equals_plain_i64_arithmetic_on_random_networks_at_the_extremes() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (rng >> 33) % n
        };
        for case in 0..40 {
            let c0 = 1 + next(6) as usize;
            let mean = 1 + next(4) as usize;
            let mut layers = vec![];
            let mut c = c0;
            for n in 0..3 {
                let last = n == 2;
                let cout = if last { 2 * mean } else { 1 + next(9) as usize };
                let k = [1, 3, 5, 7][next(4) as usize];
                // Mostly extreme weights and inputs, so sums reach 2^40 and beyond.
                let weight: Vec<i64> = (0..cout * c * k * k)
                    .map(|_| {
                        if next(3) == 0 {
                            next(255) as i64 - 127
                        } else {
                            [-127, 127][next(2) as usize]
                        }
                    })
                    .collect();
                let bias: Vec<i64> = (0..cout)
                    .map(|_| next(1 << 41) as i64 - (1 << 40))
                    .collect();
                let shift: Vec<i64> = (0..cout).map(|_| next(40) as i64 - 16).collect();
                layers.push(
                    serde_json::json!({"op": "conv", "cin": c, "cout": cout, "k": k,
                    "weight": weight, "bias": bias, "shift": shift, "relu": next(2) == 0 && !last}),
                );
                // 0, 1 or 2 upsamplings after any layer, the last one included.
                for _ in 0..next(3) {
                    layers.push(serde_json::json!({"op": "upsample2"}));
                }
                c = cout;
            }
            let spec = serde_json::json!({"format": "fchm-intnet/1", "in_channels": c0,
                "layers": layers, "mean_channels": mean, "mean_frac_bits": 4, "levels": 64});
            let net = HyperSynthesis::from_json(&spec.to_string()).unwrap();
            let (h, w) = (1 + next(5) as usize, 1 + next(5) as usize);
            let z: Vec<i32> = (0..c0 * h * w)
                .map(|_| match next(3) {
                    0 => next(1 << 24) as i32 - (1 << 23),
                    1 => [-(1 << 23), (1 << 23) - 1][next(2) as usize],
                    _ => next(21) as i32 - 10,
                })
                .collect();
            let out = net.run(&z, h, w).unwrap();
            let want = reference(&spec, &z, h, w);
            let plane = out.height * out.width;
            assert_eq!(want.len(), 2 * mean * plane, "case {case}");
            let want_mean: Vec<i32> = want[..mean * plane].iter().map(|&v| v as i32).collect();
            let want_index: Vec<i32> = want[mean * plane..]
                .iter()
                .map(|&v| v.clamp(0, 63) as i32)
                .collect();
            assert_eq!(out.mean_fixed, want_mean, "case {case}: means");
            assert_eq!(out.index, want_index, "case {case}: indices");
        }
        let net =
            HyperSynthesis::from_json(&spec(vec![0; 18], vec![0, 0], vec![0, 0], false)).unwrap();
        assert_eq!(
            net.run(&[0, 0, 1 << 23, 0], 2, 2),
            Err(HyperError::InputRange(1 << 23))
        );
    }

    #[test]
    fn rejects_bad_specs() {
        let bad_weight = spec(vec![200; 18], vec![0, 0], vec![0, 0], false);
        assert!(matches!(
            HyperSynthesis::from_json(&bad_weight),
            Err(HyperError::Layer { layer: 0, .. })
        ));
        // i32::MIN / i64::MIN have no positive counterpart: still refused.
        let mut w_min = vec![0; 18];
        w_min[0] = i32::MIN;
        assert!(HyperSynthesis::from_json(&spec(w_min, vec![0, 0], vec![0, 0], false)).is_err());
        let b_min = spec(vec![0; 18], vec![i64::MIN, 0], vec![0, 0], false);
        assert!(HyperSynthesis::from_json(&b_min).is_err());
        let short = spec(vec![0; 17], vec![0, 0], vec![0, 0], false);
        assert!(HyperSynthesis::from_json(&short).is_err());
        let format = spec(vec![0; 18], vec![0, 0], vec![0, 0], false).replace("fchm-intnet/1", "x");
        assert!(matches!(
            HyperSynthesis::from_json(&format),
            Err(HyperError::Format(_))
        ));
        let net =
            HyperSynthesis::from_json(&spec(vec![0; 18], vec![0, 0], vec![0, 0], false)).unwrap();
        assert!(matches!(
            net.run(&[0; 3], 2, 2),
            Err(HyperError::InputLength { .. })
        ));
    }
}
