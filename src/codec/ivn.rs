//! Implicit Variable Normalisation: per-frame min-max normalisation and the gain.

/// What the decoder needs to undo the normalisation; carried in the frame header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalisation {
    pub min: f32,
    pub max: f32,
    pub gain: f32,
}

/// A flat feature map never divides by zero: the span is at least this.
const MIN_SPAN: f32 = 1e-6;

impl Normalisation {
    pub fn of(features: &[f32], gain: f32) -> Self {
        let (min, max) = features
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        let span = (max - min).max(MIN_SPAN);
        Self {
            min,
            max: min + span,
            gain,
        }
    }

    /// `gain * ((p - min) / (max - min) - 0.5)`, in the same f32 operation
    /// order as the Python reference (models/train/fchm_train/refcodec.py).
    /// Centring on 0 keeps the transform's LeakyReLUs working on the signal
    /// rather than on a constant offset; it changes nothing the header carries.
    pub fn forward(&self, p: &[f32]) -> Vec<f32> {
        let span = self.max - self.min;
        p.iter()
            .map(|&v| ((v - self.min) / span - 0.5) * self.gain)
            .collect()
    }

    /// The decoder output estimates `gain * normalised`; map it back to P.
    pub fn inverse(&self, x: &mut [f32]) {
        let span = self.max - self.min;
        for v in x {
            *v = (*v / self.gain + 0.5) * span + self.min;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_spans_the_gain() {
        let p = [-2.0f32, 0.0, 6.0];
        let n = Normalisation::of(&p, 4.0);
        let mut x = n.forward(&p);
        assert_eq!(x, vec![-2.0, -1.0, 2.0]);
        n.inverse(&mut x);
        assert_eq!(x, p.to_vec());
    }

    #[test]
    fn flat_input_does_not_divide_by_zero() {
        let n = Normalisation::of(&[3.0; 4], 2.0);
        assert!(n.max > n.min);
        assert!(n.forward(&[3.0]).iter().all(|v| v.is_finite()));
    }
}
