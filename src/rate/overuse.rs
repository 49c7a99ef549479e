//! Over-use detection: the modified trend against GCC's adaptive threshold.

use std::time::Instant;

use super::controller::Usage;

const INITIAL_THRESHOLD_MS: f64 = 12.5;
const MIN_THRESHOLD_MS: f64 = 6.0;
const MAX_THRESHOLD_MS: f64 = 600.0;
/// Threshold adaptation rates per ms (draft-ietf-rmcat-gcc-02's K_u and K_d):
/// the threshold follows a larger trend quickly and relaxes slowly.
const K_UP: f64 = 0.01;
const K_DOWN: f64 = 0.000_18;
/// A trend this far above the threshold is an outlier; it must not teach the threshold.
const MAX_ADAPT_EXCESS_MS: f64 = 15.0;
/// Gaps between samples beyond this do not adapt the threshold further.
const MAX_ADAPT_GAP_MS: f64 = 100.0;
/// Cap on one adaptation step as a fraction of the distance. GCC's constants
/// assume feedback every few ms; at one sample per frame an uncapped step
/// would move the threshold all the way onto the trend and hide a steady
/// over-use after a single sample.
const MAX_ADAPT_STEP: f64 = 0.1;
/// Send time the trend must stay above the threshold before over-use is declared.
const OVERUSE_TIME_MS: f64 = 10.0;

#[derive(Debug)]
pub(crate) struct OveruseDetector {
    threshold_ms: f64,
    last_sample: Option<Instant>,
    /// Send time spent above the threshold; `None` when not above it.
    over_ms: Option<f64>,
    over_count: u32,
    prev_trend: f64,
    state: Usage,
    /// How many times over-use has been declared (the state latches; this tells fresh from stale).
    detections: u64,
}

impl Default for OveruseDetector {
    fn default() -> Self {
        Self {
            threshold_ms: INITIAL_THRESHOLD_MS,
            last_sample: None,
            over_ms: None,
            over_count: 0,
            prev_trend: 0.0,
            state: Usage::Normal,
            detections: 0,
        }
    }
}

impl OveruseDetector {
    /// Classify one sample: `trend` is the modified trend (ms), `send_ms` the
    /// send-time gap the sample covers, `now` its arrival.
    pub fn detect(&mut self, trend: f64, send_ms: f64, now: Instant) -> Usage {
        if trend > self.threshold_ms {
            // The first sample above counts half its gap: it crossed somewhere inside it.
            let over = self.over_ms.map_or(send_ms / 2.0, |t| t + send_ms);
            self.over_count += 1;
            if over > OVERUSE_TIME_MS && self.over_count > 1 && trend >= self.prev_trend {
                self.state = Usage::Over;
                self.detections += 1;
                self.over_ms = Some(0.0);
                self.over_count = 0;
            } else {
                // Not yet persistent: the previous verdict stands.
                self.over_ms = Some(over);
            }
        } else {
            self.over_ms = None;
            self.over_count = 0;
            self.state = if trend < -self.threshold_ms {
                Usage::Under
            } else {
                Usage::Normal
            };
        }
        self.prev_trend = trend;
        self.adapt(trend, now);
        self.state
    }

    pub fn state(&self) -> Usage {
        self.state
    }

    /// Over-use declarations so far; a new one means the over-use was seen again.
    pub fn detections(&self) -> u64 {
        self.detections
    }

    #[cfg(test)]
    pub fn threshold_ms(&self) -> f64 {
        self.threshold_ms
    }

    fn adapt(&mut self, trend: f64, now: Instant) {
        let gap_ms = self.last_sample.map_or(0.0, |t| {
            (now.saturating_duration_since(t).as_secs_f64() * 1e3).min(MAX_ADAPT_GAP_MS)
        });
        self.last_sample = Some(now);
        let excess = trend.abs() - self.threshold_ms;
        if excess > MAX_ADAPT_EXCESS_MS {
            return;
        }
        let k = if excess > 0.0 { K_UP } else { K_DOWN };
        let step = (k * gap_ms).min(MAX_ADAPT_STEP);
        self.threshold_ms =
            (self.threshold_ms + step * excess).clamp(MIN_THRESHOLD_MS, MAX_THRESHOLD_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run(trends: &[f64]) -> (Vec<Usage>, OveruseDetector) {
        let t0 = Instant::now();
        let mut d = OveruseDetector::default();
        let out = trends
            .iter()
            .enumerate()
            .map(|(i, &m)| d.detect(m, 100.0, t0 + Duration::from_millis(100 * i as u64)))
            .collect();
        (out, d)
    }

    #[test]
    fn overuse_needs_two_samples_and_a_non_falling_trend() {
        let (u, d) = run(&[0.0, 20.0, 21.0]);
        assert_eq!(u, [Usage::Normal, Usage::Normal, Usage::Over]);
        assert_eq!(d.detections(), 1);
        // A single spike is not over-use.
        let (u, _) = run(&[0.0, 20.0, 0.0]);
        assert_eq!(u, [Usage::Normal; 3]);
        // Above the threshold but falling: not yet.
        let (u, _) = run(&[0.0, 25.0, 22.0]);
        assert_eq!(u[2], Usage::Normal);
    }

    #[test]
    fn steady_mild_overuse_is_not_absorbed_by_the_threshold() {
        let (u, d) = run(&[14.0; 6]);
        assert!(u.contains(&Usage::Over), "{u:?}");
        // Persisting over-use is declared again every two samples.
        assert_eq!(d.detections(), 3);
        assert!(d.threshold_ms() < 14.0);
    }

    #[test]
    fn underuse_and_normal() {
        let (u, _) = run(&[-20.0, 5.0]);
        assert_eq!(u, [Usage::Under, Usage::Normal]);
    }

    #[test]
    fn threshold_follows_moderate_trends_and_ignores_outliers() {
        let (_, d) = run(&[20.0; 60]);
        assert!(d.threshold_ms() > 19.0, "{}", d.threshold_ms());
        let (_, d) = run(&[100.0; 60]);
        assert_eq!(d.threshold_ms(), INITIAL_THRESHOLD_MS);
        let (_, d) = run(&[0.0; 2000]);
        assert_eq!(d.threshold_ms(), MIN_THRESHOLD_MS);
    }
}
