//! Picture fidelity: PSNR and MS-SSIM of RGB images (8-bit, peak 255).
//!
//! MS-SSIM follows Wang et al. (2003) as `pytorch_msssim.ms_ssim` computes it
//! (the implementation CompressAI's evaluations use): per channel, an 11-tap
//! Gaussian window (σ = 1.5) applied without padding, five scales joined by
//! 2×2 average pooling (zero-padded when a side is odd), negative terms
//! clipped to 0, and the channels averaged. The unit test pins one value
//! computed by that package.

use image::RgbImage;

const WIN: usize = 11;
const SIGMA: f64 = 1.5;
const WEIGHTS: [f64; 5] = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333];
const C1: f64 = (0.01 * 255.0) * (0.01 * 255.0);
const C2: f64 = (0.03 * 255.0) * (0.03 * 255.0);

/// PSNR in dB over all three channels; infinite for identical images.
pub fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(
        a.dimensions(),
        b.dimensions(),
        "PSNR of images of different sizes"
    );
    let n = a.as_raw().len() as f64;
    let se: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    10.0 * (255.0f64 * 255.0 / (se / n)).log10()
}

/// One channel as a float plane.
struct Plane {
    w: usize,
    h: usize,
    v: Vec<f64>,
}

impl Plane {
    fn channel(img: &RgbImage, c: usize) -> Plane {
        Plane {
            w: img.width() as usize,
            h: img.height() as usize,
            v: img
                .as_raw()
                .iter()
                .skip(c)
                .step_by(3)
                .map(|&x| f64::from(x))
                .collect(),
        }
    }

    fn map(&self, other: &Plane, f: impl Fn(f64, f64) -> f64) -> Plane {
        Plane {
            w: self.w,
            h: self.h,
            v: self
                .v
                .iter()
                .zip(&other.v)
                .map(|(&a, &b)| f(a, b))
                .collect(),
        }
    }

    /// Separable Gaussian filter, "valid" (the output shrinks by WIN - 1).
    fn blur(&self, k: &[f64; WIN]) -> Plane {
        let (w, h) = (self.w - WIN + 1, self.h - WIN + 1);
        let mut rows = vec![0.0; w * self.h];
        for y in 0..self.h {
            let src = &self.v[y * self.w..][..self.w];
            for x in 0..w {
                rows[y * w + x] = k.iter().zip(&src[x..]).map(|(a, b)| a * b).sum();
            }
        }
        let mut v = vec![0.0; w * h];
        for y in 0..h {
            for x in 0..w {
                v[y * w + x] = (0..WIN).map(|i| k[i] * rows[(y + i) * w + x]).sum();
            }
        }
        Plane { w, h, v }
    }

    /// 2×2 average pooling; an odd side gets one zero-padded row/column on
    /// each end, counted in the average (torch's `avg_pool2d` defaults).
    fn pool(&self) -> Plane {
        let (px, py) = (self.w % 2, self.h % 2);
        let (w, h) = ((self.w + 2 * px - 2) / 2 + 1, (self.h + 2 * py - 2) / 2 + 1);
        let at = |x: isize, y: isize| -> f64 {
            if x < 0 || y < 0 || x >= self.w as isize || y >= self.h as isize {
                0.0
            } else {
                self.v[y as usize * self.w + x as usize]
            }
        };
        let mut v = Vec::with_capacity(w * h);
        for y in 0..h {
            for x in 0..w {
                let (x0, y0) = (
                    (2 * x) as isize - px as isize,
                    (2 * y) as isize - py as isize,
                );
                v.push((at(x0, y0) + at(x0 + 1, y0) + at(x0, y0 + 1) + at(x0 + 1, y0 + 1)) / 4.0);
            }
        }
        Plane { w, h, v }
    }
}

fn gaussian() -> [f64; WIN] {
    let mut k = [0.0; WIN];
    for (i, v) in k.iter_mut().enumerate() {
        let d = i as f64 - (WIN / 2) as f64;
        *v = (-(d * d) / (2.0 * SIGMA * SIGMA)).exp();
    }
    let s: f64 = k.iter().sum();
    k.map(|v| v / s)
}

/// (SSIM, contrast-structure) of one channel at one scale: spatial means.
fn ssim_cs(a: &Plane, b: &Plane, k: &[f64; WIN]) -> (f64, f64) {
    let mu_a = a.blur(k);
    let mu_b = b.blur(k);
    let aa = a.map(a, |x, y| x * y).blur(k);
    let bb = b.map(b, |x, y| x * y).blur(k);
    let ab = a.map(b, |x, y| x * y).blur(k);
    let n = mu_a.v.len() as f64;
    let (mut ssim, mut cs) = (0.0, 0.0);
    for i in 0..mu_a.v.len() {
        let (ma, mb) = (mu_a.v[i], mu_b.v[i]);
        let (va, vb, cov) = (aa.v[i] - ma * ma, bb.v[i] - mb * mb, ab.v[i] - ma * mb);
        let c = (2.0 * cov + C2) / (va + vb + C2);
        cs += c;
        ssim += (2.0 * ma * mb + C1) / (ma * ma + mb * mb + C1) * c;
    }
    (ssim / n, cs / n)
}

/// MS-SSIM (0..1, higher is better); `None` when a side is too small for
/// five scales (at least 161 pixels).
pub fn ms_ssim(a: &RgbImage, b: &RgbImage) -> Option<f64> {
    assert_eq!(
        a.dimensions(),
        b.dimensions(),
        "MS-SSIM of images of different sizes"
    );
    let min_side = (WIN - 1) * (1 << (WEIGHTS.len() - 1));
    if (a.width().min(a.height()) as usize) <= min_side {
        return None;
    }
    let k = gaussian();
    let mut total = 0.0;
    for c in 0..3 {
        let (mut pa, mut pb) = (Plane::channel(a, c), Plane::channel(b, c));
        let mut value = 1.0;
        for (level, w) in WEIGHTS.iter().enumerate() {
            let (ssim, cs) = ssim_cs(&pa, &pb, &k);
            if level + 1 < WEIGHTS.len() {
                value *= cs.max(0.0).powf(*w);
                pa = pa.pool();
                pb = pb.pool();
            } else {
                value *= ssim.max(0.0).powf(*w);
            }
        }
        total += value;
    }
    Some(total / 3.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pair the reference values were computed on (see the test below).
    fn pair() -> (RgbImage, RgbImage) {
        let (w, h) = (200u32, 192u32);
        let a = RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                ((x * 5 + y * 3) % 256) as u8,
                ((x * y / 7) % 256) as u8,
                ((x * x / 5 + 3 * y) % 256) as u8,
            ])
        });
        let b = RgbImage::from_fn(w, h, |x, y| {
            let p = a.get_pixel(x, y).0;
            image::Rgb([0, 1, 2].map(|c| {
                let d = ((x * 7 + y * 13 + c * 5) % 25) as i32 - 12;
                (i32::from(p[c as usize]) + d).clamp(0, 255) as u8
            }))
        });
        (a, b)
    }

    #[test]
    fn matches_pytorch_msssim_on_a_known_pair() {
        // pytorch_msssim 1.0.0: ms_ssim(a, b, data_range=255) = 0.9958775639533997,
        // PSNR (numpy) = 31.0921588569405, on the same two images built in numpy
        // with the same integer formulas.
        let (a, b) = pair();
        let p = psnr(&a, &b);
        assert!((p - 31.092_158_856_940_5).abs() < 1e-9, "PSNR {p}");
        // pytorch_msssim works in f32; this is f64: they agree to ~1e-6.
        let m = ms_ssim(&a, &b).unwrap();
        assert!((m - 0.995_877_563_953_399_7).abs() < 1e-5, "MS-SSIM {m}");
    }

    #[test]
    fn identical_images_score_perfectly_and_small_ones_are_refused() {
        let (a, _) = pair();
        assert!((ms_ssim(&a, &a).unwrap() - 1.0).abs() < 1e-12);
        assert!(psnr(&a, &a).is_infinite());
        let tiny = RgbImage::new(160, 400);
        assert_eq!(ms_ssim(&tiny, &tiny), None);
    }
}
