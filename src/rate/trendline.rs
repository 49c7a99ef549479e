//! Delay gradient from PUBACKs: inter-group delay variation and its trendline slope.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Frames written to the socket within this span of the group's first one are
/// one burst; their mutual queueing is self-inflicted, not congestion.
const BURST: Duration = Duration::from_millis(5);
/// Points in the least-squares fit: at most this many (GCC's window) ...
const WINDOW: usize = 20;
/// ... and none older than this, unless fewer than [`MIN_POINTS`] would
/// remain. GCC's 20 groups span well under a second of RTP traffic; 20 frames
/// at 5 fps would span 4 s and report a queue long after it has drained.
const WINDOW_SPAN_MS: f64 = 1_000.0;
const MIN_POINTS: usize = 5;
/// Exponential smoothing of the accumulated delay: the old value keeps this
/// weight per [`SMOOTHING_STEP_MS`] of arrival time — GCC's per-group 0.9 at
/// 30 samples a second, less at camera frame rates.
const SMOOTHING: f64 = 0.9;
const SMOOTHING_STEP_MS: f64 = 1_000.0 / 30.0;
/// The slope is scaled by the number of samples seen, up to this many.
const MAX_SAMPLE_SCALE: u32 = 60;
/// Fixed gain between the scaled slope and the threshold's milliseconds.
const TREND_GAIN: f64 = 4.0;

/// One delay-variation sample between two consecutive send groups.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Delta {
    /// Send-time gap between the groups, ms.
    pub send_ms: f64,
    /// Delay variation `(arrival gap) - (send gap)`, ms.
    pub variation_ms: f64,
    /// Size of the sampled frame minus that of the reference frame, bits:
    /// each PUBACK waits for its own frame's last bit, so growing frames
    /// delay acks without any queue.
    pub size_change_bits: f64,
}

#[derive(Debug, Clone, Copy)]
struct Group {
    first_send: Instant,
    last_send: Instant,
    last_arrival: Instant,
    last_bits: f64,
}

/// Groups acked frames by send time and yields one [`Delta`] per new group.
///
/// The sample is taken at the first ack of a group (no waiting for the group to
/// close, which would delay every signal by a frame interval at camera rates);
/// later acks of the same burst only move the group's reference point.
#[derive(Debug, Default)]
pub(crate) struct InterGroup {
    current: Option<Group>,
}

impl InterGroup {
    pub fn push(&mut self, sent: Instant, arrival: Instant, bits: f64) -> Option<Delta> {
        let fresh = Group {
            first_send: sent,
            last_send: sent,
            last_arrival: arrival,
            last_bits: bits,
        };
        let Some(group) = self.current.as_mut() else {
            self.current = Some(fresh);
            return None;
        };
        if sent < group.last_send || arrival < group.last_arrival {
            // Reordered ack (or a caller clock going backwards): no usable gap.
            return None;
        }
        if sent.duration_since(group.first_send) <= BURST {
            group.last_send = sent;
            group.last_arrival = arrival;
            group.last_bits = bits;
            return None;
        }
        let send_ms = ms(sent.duration_since(group.last_send));
        let arrival_ms = ms(arrival.duration_since(group.last_arrival));
        let size_change_bits = bits - group.last_bits;
        *group = fresh;
        Some(Delta {
            send_ms,
            variation_ms: arrival_ms - send_ms,
            size_change_bits,
        })
    }
}

/// Least-squares slope of the smoothed accumulated delay over the last samples.
#[derive(Debug, Default)]
pub(crate) struct Trendline {
    origin: Option<Instant>,
    last_arrival_ms: Option<f64>,
    accumulated_ms: f64,
    smoothed_ms: f64,
    samples: u32,
    /// (arrival ms since origin, smoothed delay ms)
    points: VecDeque<(f64, f64)>,
    slope: f64,
}

impl Trendline {
    /// Add a delay-variation sample that arrived at `arrival`; returns the
    /// modified trend in ms (0 until [`MIN_POINTS`] samples have arrived).
    pub fn update(&mut self, variation_ms: f64, arrival: Instant) -> f64 {
        let origin = *self.origin.get_or_insert(arrival);
        let at_ms = ms(arrival.saturating_duration_since(origin));
        let gap_ms = self.last_arrival_ms.map_or(0.0, |t| (at_ms - t).max(0.0));
        self.last_arrival_ms = Some(at_ms);
        self.accumulated_ms += variation_ms;
        let keep = SMOOTHING.powf(gap_ms / SMOOTHING_STEP_MS);
        self.smoothed_ms = keep * self.smoothed_ms + (1.0 - keep) * self.accumulated_ms;
        self.samples = self.samples.saturating_add(1);
        self.points.push_back((at_ms, self.smoothed_ms));
        while self.points.len() > WINDOW
            || (self.points.len() > MIN_POINTS
                && self
                    .points
                    .front()
                    .is_some_and(|p| at_ms - p.0 > WINDOW_SPAN_MS))
        {
            self.points.pop_front();
        }
        if self.points.len() >= MIN_POINTS {
            if let Some(slope) = fit_slope(&self.points) {
                self.slope = slope;
            }
        }
        self.modified_trend()
    }

    /// The slope scaled to the threshold's units, as GCC compares it.
    pub fn modified_trend(&self) -> f64 {
        f64::from(self.samples.min(MAX_SAMPLE_SCALE)) * self.slope * TREND_GAIN
    }
}

/// Slope of the least-squares line through `points`; `None` when all x coincide.
fn fit_slope(points: &VecDeque<(f64, f64)>) -> Option<f64> {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for &(x, y) in points {
        num += (x - mean_x) * (y - mean_y);
        den += (x - mean_x) * (x - mean_x);
    }
    (den > 1e-9).then(|| num / den)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: f64) -> Instant {
        base + Duration::from_secs_f64(ms / 1e3)
    }

    #[test]
    fn groups_bursts_and_measures_variation() {
        let t0 = Instant::now();
        let mut g = InterGroup::default();
        assert_eq!(g.push(at(t0, 0.0), at(t0, 50.0), 1000.0), None);
        // Same burst (written 2 ms later): joins the group, no sample.
        assert_eq!(g.push(at(t0, 2.0), at(t0, 60.0), 2000.0), None);
        // Next frame 100 ms after the burst's last write, acked 130 ms after its ack.
        let d = g.push(at(t0, 102.0), at(t0, 190.0), 5000.0).unwrap();
        assert!((d.send_ms - 100.0).abs() < 1e-6);
        assert!((d.variation_ms - 30.0).abs() < 1e-6);
        assert_eq!(d.size_change_bits, 3000.0);
        // A reordered ack is ignored.
        assert_eq!(g.push(at(t0, 50.0), at(t0, 200.0), 1.0), None);
    }

    #[test]
    fn trend_is_zero_on_a_flat_delay_and_positive_on_a_growing_one() {
        let t0 = Instant::now();
        let mut flat = Trendline::default();
        let mut growing = Trendline::default();
        let (mut m_flat, mut m_grow) = (0.0, 0.0);
        for i in 0..40 {
            let arrival = at(t0, 100.0 * f64::from(i));
            m_flat = flat.update(0.0, arrival);
            // The queue grows 5 ms every 100 ms: a slope of 0.05.
            m_grow = growing.update(5.0, arrival);
        }
        assert_eq!(m_flat, 0.0);
        // Smoothing lags but keeps the slope: 40 samples * ~0.05 * 4.
        assert!(m_grow > 6.0 && m_grow < 9.0, "{m_grow}");
        let mut draining = Trendline::default();
        let mut m = 0.0;
        for i in 0..40 {
            m = draining.update(-5.0, at(t0, 100.0 * f64::from(i)));
        }
        assert!(m < -6.0, "{m}");
    }

    #[test]
    fn no_trend_before_enough_points() {
        let t0 = Instant::now();
        let mut t = Trendline::default();
        for i in 0..(MIN_POINTS as u32 - 1) {
            assert_eq!(t.update(50.0, at(t0, 100.0 * f64::from(i))), 0.0);
        }
        assert!(t.update(50.0, at(t0, 100.0 * MIN_POINTS as f64)) > 0.0);
    }

    #[test]
    fn an_old_queue_is_forgotten_within_the_window_span() {
        let t0 = Instant::now();
        let mut t = Trendline::default();
        // 5 fps: 4 s of a growing queue, then a flat delay.
        for i in 0..20 {
            t.update(40.0, at(t0, 200.0 * f64::from(i)));
        }
        // Slope 0.2, 20 samples, gain 4.
        assert!(t.modified_trend() > 12.0, "{}", t.modified_trend());
        let mut m = f64::MAX;
        for i in 20..33 {
            m = t.update(0.0, at(t0, 200.0 * f64::from(i)));
        }
        assert!(m.abs() < 1.0, "{m}");
    }
}
