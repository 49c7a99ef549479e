//! Bjøntegaard delta rate with monotone piecewise cubic interpolation.
//!
//! Each rate–quality curve is turned into log(rate) as a function of quality
//! (here fidelity mAP), interpolated with a monotone piecewise cubic Hermite
//! (PCHIP, Fritsch–Carlson slopes with the usual shape-preserving ends), and
//! integrated over the quality interval both curves cover. The BD-rate is
//! `exp(mean difference of log rate) − 1`, in percent: the average change in
//! bits the test codec needs for the same quality. Negative = fewer bits.
//!
//! PCHIP needs strictly increasing abscissae, and fidelity mAP saturates
//! (1.0 is the uncompressed detector by definition), so several rates often
//! share one mAP, and noise can even lower it as the rate grows. Each curve is
//! first reduced to its *rate–quality frontier*: points sorted by rate, a point
//! kept only when its mAP is strictly above every cheaper point's. A dropped
//! point spends at least as many bits as a kept one for no better mAP, so an
//! encoder would never choose it; the rule applies to every codec alike.

use serde::Serialize;

/// A monotone cubic Hermite interpolant through `(x, y)`, `x` strictly increasing.
#[derive(Debug, Clone)]
pub struct Pchip {
    x: Vec<f64>,
    y: Vec<f64>,
    d: Vec<f64>,
}

/// Sign with sign(0) = 0 (`f64::signum` gives ±1 for ±0).
fn sign(v: f64) -> f64 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// One-sided three-point end slope, kept shape preserving.
fn end_slope(h0: f64, h1: f64, m0: f64, m1: f64) -> f64 {
    let d = ((2.0 * h0 + h1) * m0 - h0 * m1) / (h0 + h1);
    if sign(d) != sign(m0) {
        0.0
    } else if sign(m0) != sign(m1) && d.abs() > 3.0 * m0.abs() {
        3.0 * m0
    } else {
        d
    }
}

impl Pchip {
    /// `None` unless there are at least two points, all finite, `x` strictly increasing.
    pub fn new(x: &[f64], y: &[f64]) -> Option<Self> {
        let n = x.len();
        if n < 2 || y.len() != n || x.iter().chain(y).any(|v| !v.is_finite()) {
            return None;
        }
        if x.windows(2).any(|w| w[1] <= w[0]) {
            return None;
        }
        let h: Vec<f64> = x.windows(2).map(|w| w[1] - w[0]).collect();
        let m: Vec<f64> = (0..n - 1).map(|k| (y[k + 1] - y[k]) / h[k]).collect();
        let mut d = vec![0.0; n];
        if n == 2 {
            d = vec![m[0], m[0]];
        } else {
            for k in 1..n - 1 {
                // Weighted harmonic mean of the neighbouring secants when they
                // agree in sign; a flat slope at local extrema keeps it monotone.
                if m[k - 1] * m[k] > 0.0 {
                    let w1 = 2.0 * h[k] + h[k - 1];
                    let w2 = h[k] + 2.0 * h[k - 1];
                    d[k] = (w1 + w2) / (w1 / m[k - 1] + w2 / m[k]);
                }
            }
            d[0] = end_slope(h[0], h[1], m[0], m[1]);
            d[n - 1] = end_slope(h[n - 2], h[n - 3], m[n - 2], m[n - 3]);
        }
        Some(Self {
            x: x.to_vec(),
            y: y.to_vec(),
            d,
        })
    }

    /// The interpolation interval.
    pub fn domain(&self) -> (f64, f64) {
        (self.x[0], self.x[self.x.len() - 1])
    }

    /// Slopes at the knots.
    pub fn slopes(&self) -> &[f64] {
        &self.d
    }

    /// The cubic of segment `k` at `t`.
    fn eval_in(&self, k: usize, t: f64) -> f64 {
        let h = self.x[k + 1] - self.x[k];
        let s = (t - self.x[k]) / h;
        let (s2, s3) = (s * s, s * s * s);
        (2.0 * s3 - 3.0 * s2 + 1.0) * self.y[k]
            + (s3 - 2.0 * s2 + s) * h * self.d[k]
            + (-2.0 * s3 + 3.0 * s2) * self.y[k + 1]
            + (s3 - s2) * h * self.d[k + 1]
    }

    /// Value at `t`, clamped into the domain.
    pub fn eval(&self, t: f64) -> f64 {
        let (lo, hi) = self.domain();
        let t = t.clamp(lo, hi);
        let k = self
            .x
            .partition_point(|&v| v <= t)
            .clamp(1, self.x.len() - 1)
            - 1;
        self.eval_in(k, t)
    }

    /// Exact integral over `[a, b]` inside the domain: Simpson's rule on each
    /// piece is exact for cubics.
    pub fn integral(&self, a: f64, b: f64) -> f64 {
        let mut total = 0.0;
        for k in 0..self.x.len() - 1 {
            let lo = a.max(self.x[k]);
            let hi = b.min(self.x[k + 1]);
            if hi > lo {
                let mid = 0.5 * (lo + hi);
                total += (hi - lo) / 6.0
                    * (self.eval_in(k, lo) + 4.0 * self.eval_in(k, mid) + self.eval_in(k, hi));
            }
        }
        total
    }
}

/// One rate–quality point: bits per pixel and quality (fidelity mAP).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatePoint {
    pub rate: f64,
    pub quality: f64,
}

/// The rate–quality frontier (see the module docs), as (quality, ln rate)
/// with quality strictly increasing. Points with a non-finite value or a
/// rate <= 0 are ignored.
pub fn frontier(points: &[RatePoint]) -> Vec<(f64, f64)> {
    let mut pts: Vec<RatePoint> = points
        .iter()
        .copied()
        .filter(|p| p.rate.is_finite() && p.rate > 0.0 && p.quality.is_finite())
        .collect();
    // By rate; at equal rates the better quality first, so it is the one kept.
    pts.sort_by(|a, b| {
        a.rate
            .total_cmp(&b.rate)
            .then(b.quality.total_cmp(&a.quality))
    });
    let mut out: Vec<(f64, f64)> = Vec::new();
    for p in pts {
        let better = match out.last() {
            None => true,
            Some(&(best, _)) => p.quality > best,
        };
        if better {
            out.push((p.quality, p.rate.ln()));
        }
    }
    out
}

/// A BD-rate and what it was computed over.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BdRate {
    /// Percent: average extra bits of the test curve at equal quality.
    pub percent: f64,
    /// The quality interval integrated over (where both curves exist).
    pub quality_interval: [f64; 2],
    /// Frontier points used, anchor and test.
    pub anchor_points: usize,
    pub test_points: usize,
}

/// BD-rate of `test` against `anchor`; `Err(reason)` when it is undefined
/// (a curve with fewer than two frontier points, or no common quality interval).
pub fn bd_rate(anchor: &[RatePoint], test: &[RatePoint]) -> Result<BdRate, String> {
    let fit = |name: &str, pts: &[RatePoint]| -> Result<(Pchip, usize), String> {
        let f = frontier(pts);
        let (x, y): (Vec<f64>, Vec<f64>) = f.iter().copied().unzip();
        Pchip::new(&x, &y).map(|p| (p, f.len())).ok_or_else(|| {
            format!(
                "the {name} curve has {} point(s) with strictly increasing quality; at least 2 are needed",
                f.len()
            )
        })
    };
    let (a, na) = fit("anchor", anchor)?;
    let (t, nt) = fit("test", test)?;
    let (a_lo, a_hi) = a.domain();
    let (t_lo, t_hi) = t.domain();
    let lo = a_lo.max(t_lo);
    let hi = a_hi.min(t_hi);
    if hi <= lo {
        return Err(format!(
            "the curves do not overlap in quality: anchor covers {a_lo:.4}..{a_hi:.4}, test {t_lo:.4}..{t_hi:.4}"
        ));
    }
    let mean_diff = (t.integral(lo, hi) - a.integral(lo, hi)) / (hi - lo);
    Ok(BdRate {
        percent: (mean_diff.exp() - 1.0) * 100.0,
        quality_interval: [lo, hi],
        anchor_points: na,
        test_points: nt,
    })
}

/// The quality a codec reaches at `rate`, read off its rate–quality frontier
/// (PCHIP over log rate, as [`bd_rate`] reads rate off quality); `None`
/// outside the frontier's rates or with fewer than two frontier points: a
/// curve is not extrapolated.
pub fn quality_at(points: &[RatePoint], rate: f64) -> Option<f64> {
    let (q, lr): (Vec<f64>, Vec<f64>) = frontier(points).into_iter().unzip();
    let curve = Pchip::new(&lr, &q)?;
    let (lo, hi) = curve.domain();
    let t = rate.ln();
    (lo..=hi).contains(&t).then(|| curve.eval(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(pts: &[(f64, f64)]) -> Vec<RatePoint> {
        pts.iter()
            .map(|&(rate, quality)| RatePoint { rate, quality })
            .collect()
    }

    const A: [(f64, f64); 5] = [
        (0.02, 0.1),
        (0.05, 0.3),
        (0.09, 0.45),
        (0.3, 0.8),
        (0.8, 0.9),
    ];

    #[test]
    fn quality_at_reads_the_frontier_and_does_not_extrapolate() {
        let c = curve(&A);
        for &(rate, quality) in &A {
            let q = quality_at(&c, rate).unwrap();
            assert!((q - quality).abs() < 1e-12, "{rate}: {q}");
        }
        // Between knots the monotone interpolant stays between them.
        let q = quality_at(&c, 0.15).unwrap();
        assert!(q > 0.45 && q < 0.8, "{q}");
        assert_eq!(quality_at(&c, 0.019), None);
        assert_eq!(quality_at(&c, 0.81), None);
        // A dominated point is not on the frontier: it changes nothing.
        let mut worse = c.clone();
        worse.push(RatePoint {
            rate: 0.2,
            quality: 0.2,
        });
        assert_eq!(quality_at(&worse, 0.15), quality_at(&c, 0.15));
        assert_eq!(quality_at(&c[..1], 0.02), None);
    }

    #[test]
    fn identical_curves_give_zero() {
        let r = bd_rate(&curve(&A), &curve(&A)).unwrap();
        assert!(r.percent.abs() < 1e-12, "{r:?}");
        assert_eq!(r.quality_interval, [0.1, 0.9]);
        assert_eq!((r.anchor_points, r.test_points), (5, 5));
    }

    #[test]
    fn half_and_double_the_rate_everywhere() {
        let half: Vec<(f64, f64)> = A.iter().map(|&(r, q)| (r / 2.0, q)).collect();
        let double: Vec<(f64, f64)> = A.iter().map(|&(r, q)| (r * 2.0, q)).collect();
        let r = bd_rate(&curve(&A), &curve(&half)).unwrap();
        assert!((r.percent + 50.0).abs() < 1e-9, "{r:?}");
        let r = bd_rate(&curve(&A), &curve(&double)).unwrap();
        assert!((r.percent - 100.0).abs() < 1e-9, "{r:?}");
        // Swapping anchor and test inverts the ratio: half the rate <-> double.
        let r = bd_rate(&curve(&half), &curve(&A)).unwrap();
        assert!((r.percent - 100.0).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn partial_overlap_of_two_lines() {
        // Two-point curves are linear in ln(rate): anchor ln r = (q − 0.2)/0.6·2
        // on [0.2, 0.8], test ln r = (q − 0.5)/0.4 on [0.5, 0.9]. Over the
        // overlap [0.5, 0.8] the means are the midpoint values 1.5 and 0.375.
        let e = std::f64::consts::E;
        let anchor = curve(&[(1.0, 0.2), (e * e, 0.8)]);
        let test = curve(&[(1.0, 0.5), (e, 0.9)]);
        let r = bd_rate(&anchor, &test).unwrap();
        assert!(
            (r.quality_interval[0] - 0.5).abs() < 1e-15
                && (r.quality_interval[1] - 0.8).abs() < 1e-15
        );
        let expected = ((0.375f64 - 1.5).exp() - 1.0) * 100.0; // −67.53 %
        assert!(
            (r.percent - expected).abs() < 1e-9,
            "{} vs {expected}",
            r.percent
        );
    }

    #[test]
    fn undefined_cases_give_reasons_not_numbers() {
        let low = curve(&[(0.01, 0.1), (0.02, 0.2)]);
        let high = curve(&[(0.1, 0.5), (0.2, 0.7)]);
        let err = bd_rate(&low, &high).unwrap_err();
        assert!(err.contains("do not overlap"), "{err}");
        let flat = curve(&[(0.01, 1.0), (0.02, 1.0), (0.04, 1.0)]);
        let err = bd_rate(&low, &flat).unwrap_err();
        assert!(err.contains("test curve has 1 point"), "{err}");
        let err = bd_rate(&[], &low).unwrap_err();
        assert!(err.contains("anchor curve has 0 point"), "{err}");
    }

    #[test]
    fn frontier_drops_saturated_and_dominated_points() {
        let pts = curve(&[
            (0.8, 1.0), // saturated: the cheaper 1.0 below is kept instead
            (0.1, 0.5),
            (0.2, 0.45), // more bits, worse mAP: dominated
            (0.4, 1.0),
            (0.3, 0.8),
            (0.3, 0.7), // same rate, worse mAP
            (f64::NAN, 0.9),
            (0.0, 0.9), // zero rate: no logarithm
        ]);
        let f = frontier(&pts);
        let q: Vec<f64> = f.iter().map(|p| p.0).collect();
        let r: Vec<f64> = f.iter().map(|p| p.1.exp()).collect();
        assert_eq!(q, vec![0.5, 0.8, 1.0]);
        assert!(r
            .iter()
            .zip([0.1, 0.3, 0.4])
            .all(|(a, b)| (a - b).abs() < 1e-12));
        // The saturated tail changes nothing.
        let clean = curve(&[(0.1, 0.5), (0.3, 0.8), (0.4, 1.0)]);
        let r = bd_rate(&clean, &pts).unwrap();
        assert!(r.percent.abs() < 1e-12);
    }

    #[test]
    fn pchip_matches_reference_values() {
        // Reference numbers from scipy.interpolate.PchipInterpolator on the same data.
        let x: Vec<f64> = A.iter().map(|p| p.1).collect();
        let y: Vec<f64> = A.iter().map(|p| p.0.ln()).collect();
        let p = Pchip::new(&x, &y).unwrap();
        let want = [
            4.960239884146006,
            4.208539752458779,
            3.6957355943857317,
            5.591197292604931,
            11.223485915015743,
        ];
        for (got, want) in p.slopes().iter().zip(want) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        assert!((p.integral(0.2, 0.85) - -1.42770375).abs() < 1e-8);
        assert!((p.eval(0.6) - -1.95845406).abs() < 1e-8);
        for (xi, yi) in x.iter().zip(&y) {
            assert!((p.eval(*xi) - yi).abs() < 1e-12);
        }
    }

    #[test]
    fn pchip_is_exact_on_lines_and_does_not_overshoot() {
        let x = [0.0, 0.1, 0.5, 0.6, 1.0];
        let y: Vec<f64> = x.iter().map(|v| 2.0 * v + 1.0).collect();
        let p = Pchip::new(&x, &y).unwrap();
        assert!(p.slopes().iter().all(|d| (d - 2.0).abs() < 1e-12));
        assert!(
            (p.integral(0.05, 0.95) - (0.95f64 * 0.95 + 0.95 - 0.05 * 0.05 - 0.05)).abs() < 1e-12
        );

        // A step: monotone data must give a monotone curve within [0, 1].
        let p = Pchip::new(&[0.0, 1.0, 2.0, 3.0], &[0.0, 0.0, 1.0, 1.0]).unwrap();
        let mut prev = f64::NEG_INFINITY;
        for i in 0..=300 {
            let v = p.eval(i as f64 / 100.0);
            assert!(
                (0.0..=1.0).contains(&v) && v >= prev,
                "t={} v={v}",
                i as f64 / 100.0
            );
            prev = v;
        }
        assert!((p.eval(1.5) - 0.5).abs() < 1e-12);
        assert!(Pchip::new(&[0.0, 0.0], &[1.0, 2.0]).is_none());
        assert!(Pchip::new(&[0.0], &[1.0]).is_none());
    }
}
