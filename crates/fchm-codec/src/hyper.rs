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
    /// Laid out `[cout][dy][dx][cin]` so the inner loop runs over contiguous input channels.
    weight: Vec<i64>,
    bias: Vec<i64>,
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
                    if let Some(w) = weight.iter().find(|w| w.abs() > WEIGHT_MAX) {
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
                    if let Some(b) = bias.iter().find(|b| b.abs() > 1 << 40) {
                        return Err(layer_err(n, format!("bias {b} too large")));
                    }
                    // [cout][cin][dy][dx] -> [cout][dy][dx][cin]
                    let mut w = vec![0i64; weight.len()];
                    for o in 0..cout {
                        for i in 0..cin {
                            for t in 0..k * k {
                                w[(o * k * k + t) * cin + i] =
                                    weight[(o * cin + i) * k * k + t] as i64;
                            }
                        }
                    }
                    layers.push(Layer::Conv(Conv {
                        cin,
                        cout,
                        k,
                        weight: w,
                        bias,
                        shift,
                        relu,
                    }));
                    channels = cout;
                }
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
        // Work in HWC so each tap reads contiguous channels.
        let (mut hh, mut ww, mut cc) = (h, w, c);
        let mut x: Vec<i64> = vec![0; h * w * c];
        for ch in 0..c {
            for p in 0..h * w {
                x[p * c + ch] = z[ch * h * w + p] as i64;
            }
        }
        for layer in &self.layers {
            match layer {
                Layer::Upsample2 => {
                    let mut up = vec![0i64; 4 * hh * ww * cc];
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
        let plane = hh * ww;
        let mut mean_fixed = vec![0i32; m * plane];
        let mut index = vec![0i32; m * plane];
        let top = self.levels as i64 - 1;
        for p in 0..plane {
            for ch in 0..m {
                mean_fixed[ch * plane + p] = x[p * cc + ch] as i32;
                index[ch * plane + p] = x[p * cc + m + ch].clamp(0, top) as i32;
            }
        }
        Ok(HyperOutput {
            channels: m,
            height: hh,
            width: ww,
            mean_fixed,
            mean_frac_bits: self.mean_frac_bits,
            index,
        })
    }
}

impl Conv {
    /// `x` is HWC with `cin` channels; returns HWC with `cout` channels.
    fn apply(&self, x: &[i64], h: usize, w: usize) -> Vec<i64> {
        let (k, cin, cout) = (self.k, self.cin, self.cout);
        let pad = (k / 2) as isize;
        let mut out = vec![0i64; h * w * cout];
        for y in 0..h {
            for xx in 0..w {
                let o_base = (y * w + xx) * cout;
                for o in 0..cout {
                    let mut acc = self.bias[o];
                    for dy in 0..k {
                        let sy = y as isize + dy as isize - pad;
                        if sy < 0 || sy >= h as isize {
                            continue;
                        }
                        for dx in 0..k {
                            let sx = xx as isize + dx as isize - pad;
                            if sx < 0 || sx >= w as isize {
                                continue;
                            }
                            let src = &x[(sy as usize * w + sx as usize) * cin..][..cin];
                            let wt = &self.weight[(o * k * k + dy * k + dx) * cin..][..cin];
                            acc += src.iter().zip(wt).map(|(a, b)| a * b).sum::<i64>();
                        }
                    }
                    let s = self.shift[o];
                    let mut v = if s > 0 {
                        (acc + (1i64 << (s - 1))) >> s
                    } else {
                        // |acc| < 2^47 (24-bit inputs, int8 weights, <= 2^16 taps), so a
                        // left shift of at most 16 stays inside i64.
                        acc << -s
                    };
                    if self.relu {
                        v = v.max(0);
                    }
                    out[o_base + o] = v.clamp(ACT_MIN, ACT_MAX);
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

    #[test]
    fn rejects_bad_specs() {
        let bad_weight = spec(vec![200; 18], vec![0, 0], vec![0, 0], false);
        assert!(matches!(
            HyperSynthesis::from_json(&bad_weight),
            Err(HyperError::Layer { layer: 0, .. })
        ));
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
