//! Bits per frame ⇄ IVN gain: the bundle's rate table, corrected online for the scene.

use crate::model::manifest::RatePoint;

use super::RateError;

/// Weight of one frame in the correction once the model has settled; about a
/// 20-frame memory, enough to average out frame-to-frame size noise.
const SETTLED_WEIGHT: f64 = 0.05;
/// A frame whose log size misses the current correction by more than this
/// (ln 1.35) counts toward a scene change.
const SCENE_MISS: f64 = 0.300_104_592;
/// Misses in a row, in the same direction, that make a scene change.
const SCENE_RUN: usize = 3;
/// The correction never leaves 1/32..32: beyond that the table is meaningless
/// and a runaway factor would pin the gain at an end for a long time.
const MAX_LOG_CORRECTION: f64 = 3.465_735_903; // ln 32

/// Maps bits per frame to gain and back for the current scene.
///
/// The calibration curve is the rate table interpolated linearly in
/// log(gain)/log(bits), extended past the table's ends along its end segments
/// and clamped to `gain_min..=gain_max`. Predictions are that curve times
/// [`correction`](Self::correction), learnt from the sizes actually coded.
#[derive(Debug, Clone)]
pub struct RateModel {
    /// (ln gain, ln bits) knots covering exactly ln gain_min..=ln gain_max,
    /// strictly increasing in both coordinates.
    knots: Vec<(f64, f64)>,
    gain_min: f32,
    gain_max: f32,
    /// ln of the scene correction factor.
    log_correction: f64,
    /// Frames averaged since the last reset (caps at the settled weight).
    seen: u32,
    /// Recent misses beyond [`SCENE_MISS`], all of one sign.
    misses: Vec<f64>,
}

impl RateModel {
    /// Build the model from a bundle's rate table. `pixels_per_frame` is the
    /// picture size the table's bits per pixel refer to (the model input).
    pub fn from_table(
        table: &[RatePoint],
        gain_min: f32,
        gain_max: f32,
        pixels_per_frame: f64,
    ) -> Result<Self, RateError> {
        if !(gain_min.is_finite() && gain_max.is_finite() && gain_min > 0.0 && gain_min < gain_max)
        {
            return Err(RateError::GainRange {
                min: gain_min,
                max: gain_max,
            });
        }
        if !(pixels_per_frame.is_finite() && pixels_per_frame > 0.0) {
            return Err(RateError::Pixels(pixels_per_frame));
        }
        match table.len() {
            0 => return Err(RateError::EmptyTable),
            1 => return Err(RateError::TooFewPoints(1)),
            _ => {}
        }
        for (index, p) in table.iter().enumerate() {
            let checks = [("gain", f64::from(p.gain)), ("bpp", p.bpp)];
            if let Some(&(field, value)) = checks.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0))
            {
                return Err(RateError::BadPoint {
                    index,
                    field,
                    value,
                });
            }
        }
        // Manifests list the table in gain order, but nothing requires it.
        let mut sorted: Vec<&RatePoint> = table.iter().collect();
        sorted.sort_by(|a, b| a.gain.total_cmp(&b.gain));
        for w in sorted.windows(2) {
            let (lo, hi) = (w[0], w[1]);
            if lo.gain == hi.gain {
                return Err(RateError::DuplicateGain { gain: lo.gain });
            }
            if hi.bpp <= lo.bpp {
                return Err(RateError::NonMonotone {
                    gain_lo: lo.gain,
                    bpp_lo: lo.bpp,
                    gain_hi: hi.gain,
                    bpp_hi: hi.bpp,
                });
            }
        }
        let table_pts: Vec<(f64, f64)> = sorted
            .iter()
            .map(|p| (f64::from(p.gain).ln(), (p.bpp * pixels_per_frame).ln()))
            .collect();
        let (lo, hi) = (f64::from(gain_min).ln(), f64::from(gain_max).ln());
        let mut knots = vec![(lo, interpolate(&table_pts, lo))];
        knots.extend(table_pts.iter().filter(|(g, _)| *g > lo && *g < hi));
        knots.push((hi, interpolate(&table_pts, hi)));
        Ok(Self {
            knots,
            gain_min,
            gain_max,
            log_correction: 0.0,
            seen: 0,
            misses: Vec::with_capacity(SCENE_RUN),
        })
    }

    /// Predicted bits per frame at `gain` (clamped to the gain range) for this scene.
    pub fn bits_at(&self, gain: f32) -> f64 {
        (self.table_log_bits(gain) + self.log_correction).exp()
    }

    /// The largest gain predicted to code within `bits`; `None` if even
    /// `gain_min` is predicted above it (or `bits` is not a positive number).
    pub fn gain_for_bits(&self, bits: f64) -> Option<f32> {
        // NaN and non-positive budgets fit nothing.
        if bits.is_nan() || bits <= 0.0 {
            return None;
        }
        let y = bits.ln() - self.log_correction;
        let (first, last) = (self.knots[0], self.knots[self.knots.len() - 1]);
        if y < first.1 {
            return None;
        }
        if y >= last.1 {
            return Some(self.gain_max);
        }
        let i = self
            .knots
            .windows(2)
            .position(|w| y <= w[1].1)
            .unwrap_or(self.knots.len() - 2);
        let (a, b) = (self.knots[i], self.knots[i + 1]);
        let x = a.0 + (y - a.1) / (b.1 - a.1) * (b.0 - a.0);
        let mut gain = (x.exp() as f32).clamp(self.gain_min, self.gain_max);
        // f32 rounding may land a hair above the curve; "fits" must hold exactly.
        while gain > self.gain_min && self.bits_at(gain) > bits {
            gain = f32::from_bits(gain.to_bits() - 1);
        }
        Some(gain)
    }

    /// Learn from one coded frame: `bits` is what coding at `gain` produced.
    /// Non-finite or non-positive inputs are ignored.
    pub fn observe(&mut self, gain: f32, bits: f64) {
        if gain.is_nan() || !(bits.is_finite() && bits > 0.0) {
            log::debug!("rate model: ignoring observation gain={gain} bits={bits}");
            return;
        }
        let residual = bits.ln() - self.table_log_bits(gain);
        let miss = residual - self.log_correction;
        if miss.abs() > SCENE_MISS {
            if self
                .misses
                .first()
                .is_some_and(|m| m.signum() != miss.signum())
            {
                self.misses.clear();
            }
            self.misses.push(residual);
            if self.misses.len() >= SCENE_RUN {
                // A new scene: restart the average from the frames that revealed it.
                let level = self.misses.iter().sum::<f64>() / self.misses.len() as f64;
                self.set_correction(level);
                self.seen = self.misses.len() as u32;
                self.misses.clear();
                return;
            }
        } else {
            self.misses.clear();
        }
        self.seen = self.seen.saturating_add(1);
        let weight = (1.0 / f64::from(self.seen)).max(SETTLED_WEIGHT);
        self.set_correction(self.log_correction + weight * (residual - self.log_correction));
    }

    /// Current multiplicative scene correction (actual / calibration bits).
    pub fn correction(&self) -> f64 {
        self.log_correction.exp()
    }

    /// The gain range the model was built for.
    pub fn gain_range(&self) -> (f32, f32) {
        (self.gain_min, self.gain_max)
    }

    fn set_correction(&mut self, log_correction: f64) {
        self.log_correction = log_correction.clamp(-MAX_LOG_CORRECTION, MAX_LOG_CORRECTION);
    }

    /// ln bits of the calibration curve at `gain`, clamped to the gain range.
    fn table_log_bits(&self, gain: f32) -> f64 {
        let g = if gain.is_nan() {
            self.gain_min
        } else {
            gain.clamp(self.gain_min, self.gain_max)
        };
        interpolate(&self.knots, f64::from(g).ln())
    }
}

/// Piecewise-linear interpolation through `pts` (sorted by x, at least two),
/// extended beyond the ends along the first and last segments.
fn interpolate(pts: &[(f64, f64)], x: f64) -> f64 {
    let i = pts
        .windows(2)
        .position(|w| x <= w[1].0)
        .unwrap_or(pts.len() - 2);
    let (a, b) = (pts[i], pts[i + 1]);
    a.1 + (x - a.0) / (b.0 - a.0) * (b.1 - a.1)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::rate) const PIXELS: f64 = 512.0 * 512.0;

    /// The shipped bundle's table (centernet-vfcn), rounded.
    pub(in crate::rate) fn table() -> Vec<RatePoint> {
        [
            (1.0, 0.253),
            (1.8114, 0.339),
            (3.2813, 0.625),
            (5.944, 1.215),
            (10.7672, 2.114),
            (19.5042, 3.295),
            (35.3309, 4.682),
            (64.0, 6.988),
        ]
        .iter()
        .map(|&(gain, bpp)| RatePoint {
            gain,
            bpp,
            map50: 0.5,
        })
        .collect()
    }

    pub(in crate::rate) fn model() -> RateModel {
        RateModel::from_table(&table(), 1.0, 64.0, PIXELS).unwrap()
    }

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs()
    }

    #[test]
    fn reproduces_the_table() {
        let m = model();
        for p in table() {
            let bits = m.bits_at(p.gain);
            assert!(close(bits, p.bpp * PIXELS, 1e-9), "gain {}: {bits}", p.gain);
        }
        // Between knots the curve is a power law: the geometric mean.
        let mid = (1.0f64 * 1.8114).sqrt() as f32;
        let expect = (0.253f64 * 0.339).sqrt() * PIXELS;
        assert!(close(m.bits_at(mid), expect, 1e-5));
        // Out-of-range gains are clamped, not extrapolated.
        assert_eq!(m.bits_at(100.0), m.bits_at(64.0));
        assert_eq!(m.bits_at(0.1), m.bits_at(1.0));
        assert_eq!(m.bits_at(f32::NAN), m.bits_at(1.0));
    }

    #[test]
    fn unsorted_table_is_accepted() {
        let mut t = table();
        t.reverse();
        let m = RateModel::from_table(&t, 1.0, 64.0, PIXELS).unwrap();
        assert!(close(m.bits_at(10.7672), 2.114 * PIXELS, 1e-9));
    }

    #[test]
    fn gain_range_narrower_than_table_clips_the_curve() {
        let m = RateModel::from_table(&table(), 2.0, 30.0, PIXELS).unwrap();
        assert_eq!(m.bits_at(1.0), m.bits_at(2.0));
        assert!(m.bits_at(2.0) > 0.339 * PIXELS && m.bits_at(2.0) < 0.625 * PIXELS);
        assert_eq!(m.gain_for_bits(1e12), Some(30.0));
    }

    #[test]
    fn gain_for_bits_inverts_bits_at() {
        let m = model();
        let mut g = 1.0f32;
        while g <= 64.0 {
            let back = m.gain_for_bits(m.bits_at(g)).unwrap();
            assert!((back - g).abs() <= 1e-4 * g, "{g} -> {back}");
            g *= 1.07;
        }
        // Whatever it returns must be predicted to fit, and a bit more must not.
        for bits in [70e3, 1e5, 3e5, 1e6, 1.5e6] {
            let g = m.gain_for_bits(bits).unwrap();
            assert!(
                m.bits_at(g) <= bits,
                "{bits}: gain {g} predicts {}",
                m.bits_at(g)
            );
            assert!(m.bits_at(g * 1.001) > bits);
        }
    }

    #[test]
    fn gain_for_bits_ends() {
        let m = model();
        let floor = m.bits_at(1.0);
        assert_eq!(m.gain_for_bits(floor * 0.99), None);
        assert_eq!(m.gain_for_bits(floor), Some(1.0));
        assert_eq!(m.gain_for_bits(m.bits_at(64.0) * 3.0), Some(64.0));
        assert_eq!(m.gain_for_bits(0.0), None);
        assert_eq!(m.gain_for_bits(-5.0), None);
        assert_eq!(m.gain_for_bits(f64::NAN), None);
        assert_eq!(m.gain_for_bits(f64::INFINITY), Some(64.0));
    }

    #[test]
    fn first_frame_sets_the_correction() {
        let mut m = model();
        m.observe(10.7672, 2.114 * PIXELS * 0.6);
        assert!(close(m.correction(), 0.6, 1e-9), "{}", m.correction());
        assert!(close(m.bits_at(3.2813), 0.625 * PIXELS * 0.6, 1e-9));
    }

    /// A scene that codes twice as large as calibration, with ±10 % frame noise.
    #[test]
    fn learns_a_scene_twice_as_large() {
        let mut m = model();
        let mut noise = fastrand::Rng::with_seed(7);
        // Settle on the calibration scene first so the change has to be detected.
        for _ in 0..100 {
            m.observe(
                8.0,
                m.bits_at(8.0) / m.correction() * (0.9 + 0.2 * noise.f64()),
            );
        }
        assert!(close(m.correction(), 1.0, 0.05), "{}", m.correction());
        let truth = |g: f32| model().bits_at(g) * 2.0;
        let mut converged_at = None;
        for frame in 1..=30 {
            let g = m.gain_for_bits(4e5).unwrap_or(1.0);
            m.observe(g, truth(g) * (0.9 + 0.2 * noise.f64()));
            if converged_at.is_none() && close(m.correction(), 2.0, 0.1) {
                converged_at = Some(frame);
            }
        }
        let at = converged_at.expect("never converged to 2x");
        assert!(at <= 5, "took {at} frames");
        assert!(
            close(m.correction(), 2.0, 0.1),
            "drifted to {}",
            m.correction()
        );
        assert!(close(m.bits_at(20.0), truth(20.0), 0.1));
    }

    #[test]
    fn isolated_outliers_are_not_a_scene_change() {
        let mut m = model();
        for _ in 0..50 {
            m.observe(8.0, model().bits_at(8.0));
        }
        for i in 0..20 {
            let size = if i % 3 == 0 { 3.0 } else { 1.0 };
            m.observe(8.0, model().bits_at(8.0) * size);
        }
        // Two-in-three normal frames: the average moves, but nowhere near 3x.
        assert!(m.correction() < 1.6, "{}", m.correction());
    }

    #[test]
    fn correction_is_bounded_and_ignores_garbage() {
        let mut m = model();
        m.observe(8.0, f64::NAN);
        m.observe(8.0, -1.0);
        m.observe(f32::NAN, 1e5);
        assert_eq!(m.correction(), 1.0);
        for _ in 0..10 {
            m.observe(8.0, 1e300);
        }
        assert!(close(m.correction(), 32.0, 1e-9));
    }

    #[test]
    fn bad_tables_are_refused() {
        let err = |t: &[RatePoint]| RateModel::from_table(t, 1.0, 64.0, PIXELS).unwrap_err();
        let pt = |gain: f32, bpp: f64| RatePoint {
            gain,
            bpp,
            map50: 0.0,
        };
        assert_eq!(err(&[]), RateError::EmptyTable);
        assert_eq!(err(&[pt(1.0, 0.2)]), RateError::TooFewPoints(1));
        assert!(matches!(
            err(&[pt(1.0, 0.2), pt(2.0, f64::NAN)]),
            RateError::BadPoint {
                index: 1,
                field: "bpp",
                ..
            }
        ));
        assert!(matches!(
            err(&[pt(f32::INFINITY, 0.2), pt(2.0, 0.3)]),
            RateError::BadPoint {
                index: 0,
                field: "gain",
                ..
            }
        ));
        assert!(matches!(
            err(&[pt(1.0, 0.2), pt(2.0, 0.0)]),
            RateError::BadPoint {
                index: 1,
                field: "bpp",
                ..
            }
        ));
        assert_eq!(
            err(&[pt(1.0, 0.2), pt(2.0, 0.5), pt(4.0, 0.4)]),
            RateError::NonMonotone {
                gain_lo: 2.0,
                bpp_lo: 0.5,
                gain_hi: 4.0,
                bpp_hi: 0.4
            }
        );
        assert!(matches!(
            err(&[pt(1.0, 0.2), pt(2.0, 0.2)]),
            RateError::NonMonotone { .. }
        ));
        assert_eq!(
            err(&[pt(2.0, 0.2), pt(2.0, 0.3)]),
            RateError::DuplicateGain { gain: 2.0 }
        );
        let msg = err(&[pt(1.0, 0.2), pt(2.0, 0.5), pt(4.0, 0.4)]).to_string();
        assert!(
            msg.contains("not monotone") && msg.contains("gain 4"),
            "{msg}"
        );
    }

    #[test]
    fn bad_ranges_are_refused() {
        let t = table();
        assert!(matches!(
            RateModel::from_table(&t, 64.0, 1.0, PIXELS),
            Err(RateError::GainRange { .. })
        ));
        assert!(matches!(
            RateModel::from_table(&t, 0.0, 1.0, PIXELS),
            Err(RateError::GainRange { .. })
        ));
        assert!(matches!(
            RateModel::from_table(&t, 1.0, f32::NAN, PIXELS),
            Err(RateError::GainRange { .. })
        ));
        assert_eq!(
            RateModel::from_table(&t, 1.0, 64.0, 0.0).unwrap_err(),
            RateError::Pixels(0.0)
        );
    }
}
