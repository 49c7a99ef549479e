//! Measurements from PUBACKs: acked goodput over a short window, smoothed RTT.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Goodput averaging window.
const WINDOW: Duration = Duration::from_secs(1);
/// At low frame rates a 1 s window holds one or two acks; keep this many
/// recent acks (if not older than [`STALE`]) so the estimate is not a coin toss.
const MIN_ACKS: usize = 4;
const STALE: Duration = Duration::from_secs(4);
/// The shortest span a rate is measured over: acks a broker batched into one
/// TCP segment say nothing about the link's speed.
pub(super) const MIN_SPAN: Duration = Duration::from_millis(250);

/// Acked bits per second over the last second or so.
#[derive(Debug, Default)]
pub(crate) struct AckedRate {
    acks: VecDeque<(Instant, u64)>,
    ever: bool,
}

impl AckedRate {
    pub fn on_ack(&mut self, at: Instant, bits: u64) {
        self.acks.push_back((at, bits));
        self.ever = true;
    }

    pub fn reset(&mut self) {
        self.acks.clear();
        self.ever = false;
    }

    /// `None` before the first ack; 0 when the link has gone quiet.
    pub fn rate_bps(&mut self, now: Instant) -> Option<f64> {
        if !self.ever {
            return None;
        }
        let mut keep = self.acks.len();
        for (i, &(t, _)) in self.acks.iter().enumerate() {
            let age = now.saturating_duration_since(t);
            let recent_enough = self.acks.len() - i <= MIN_ACKS && age <= STALE;
            if age <= WINDOW || recent_enough {
                keep = i;
                break;
            }
        }
        self.acks.drain(..keep);
        let (first, last) = match (self.acks.front(), self.acks.back()) {
            (Some(f), Some(l)) => (f.0, l.0),
            _ => return Some(0.0),
        };
        let n = self.acks.len() as u32;
        if n < 2 {
            let bits = self.acks.iter().map(|a| a.1).sum::<u64>();
            return Some(bits as f64 / WINDOW.as_secs_f64());
        }
        // The first ack only marks the start: the bits it acknowledges were
        // carried before it. Back-to-back acks from a saturated link then
        // measure the link exactly, and evenly spaced acks the send rate.
        let bits: u64 = self.acks.iter().skip(1).map(|a| a.1).sum();
        let spread = last.saturating_duration_since(first);
        let per_ack = spread / (n - 1);
        // When the acks stop, the time since the last one stretches the span,
        // so a stalled link decays toward zero.
        let stalled = now.saturating_duration_since(first).saturating_sub(per_ack);
        let span = spread.max(stalled).max(MIN_SPAN);
        Some(bits as f64 / span.as_secs_f64())
    }
}

/// How long an acked frame's proof of the link's speed counts.
const FLOOR_WINDOW: Duration = Duration::from_secs(2);

/// The speed the link has proven: every bit of an acked frame crossed the
/// bottleneck between its hand-over to the MQTT client and its PUBACK, so
/// the link carries at least `bits` over that time — whatever the
/// propagation delay or queue, which only make the bound lower. The largest bound of the last [`FLOOR_WINDOW`], counting
/// only frames written after [`DeliveryFloor::restart`] (a cut says the link
/// may have got slower since).
///
/// The goodput only ever shows what was sent; this shows what the link
/// could have carried, which is how a much faster link is found in a few
/// frames instead of a long ramp.
#[derive(Debug, Default)]
pub(crate) struct DeliveryFloor {
    /// (acked at, bits/s), bits/s decreasing from front to back: the front is the maximum.
    bounds: VecDeque<(Instant, f64)>,
    since: Option<Instant>,
}

impl DeliveryFloor {
    /// `bits` were handed over at `handed` and acked at `now`.
    pub fn on_ack(&mut self, now: Instant, handed: Instant, bits: u64) {
        if self.since.is_some_and(|s| handed < s) {
            return;
        }
        let took = now.saturating_duration_since(handed).as_secs_f64();
        if took <= 0.0 {
            return;
        }
        let bps = bits as f64 / took;
        while self.bounds.back().is_some_and(|&(_, b)| b <= bps) {
            self.bounds.pop_back();
        }
        self.bounds.push_back((now, bps));
    }

    /// Forget every bound so far; frames written before `at` no longer count.
    pub fn restart(&mut self, at: Instant) {
        self.bounds.clear();
        self.since = Some(at);
    }

    /// The largest recent bound, bits/s.
    pub fn bps(&mut self, now: Instant) -> Option<f64> {
        while self
            .bounds
            .front()
            .is_some_and(|&(t, _)| now.saturating_duration_since(t) > FLOOR_WINDOW)
        {
            self.bounds.pop_front();
        }
        self.bounds.front().map(|&(_, b)| b)
    }
}

/// The minimum RTT is taken over this long, so a path that got slower
/// (a longer route) is noticed eventually.
const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);

/// RFC 6298-style smoothed RTT, the latest sample, and a windowed minimum.
#[derive(Debug, Default, Clone)]
pub(crate) struct Rtt {
    smoothed: Option<Duration>,
    latest: Option<Duration>,
    /// (at, rtt), rtt increasing from front to back: the front is the minimum.
    floor: VecDeque<(Instant, Duration)>,
}

impl Rtt {
    pub fn sample(&mut self, at: Instant, rtt: Duration) {
        self.latest = Some(rtt);
        self.smoothed = Some(match self.smoothed {
            None => rtt,
            Some(s) => (s * 7 + rtt) / 8,
        });
        while self.floor.back().is_some_and(|&(_, r)| r >= rtt) {
            self.floor.pop_back();
        }
        self.floor.push_back((at, rtt));
        while self
            .floor
            .front()
            .is_some_and(|&(t, _)| at.saturating_duration_since(t) > MIN_RTT_WINDOW)
        {
            self.floor.pop_front();
        }
    }

    /// Smallest RTT of the last few seconds: the path without a queue.
    pub fn min(&self) -> Option<Duration> {
        self.floor.front().map(|&(_, r)| r)
    }

    pub fn smoothed(&self) -> Option<Duration> {
        self.smoothed
    }

    pub fn latest(&self) -> Option<Duration> {
        self.latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_acks_measure_their_rate() {
        let t0 = Instant::now();
        let mut r = AckedRate::default();
        assert_eq!(r.rate_bps(t0), None);
        // 100 kbit every 100 ms = 1 Mbit/s.
        let mut now = t0;
        for i in 0..30 {
            now = t0 + Duration::from_millis(100 * i);
            r.on_ack(now, 100_000);
        }
        let rate = r.rate_bps(now).unwrap();
        assert!((rate - 1e6).abs() < 1e3, "{rate}");
    }

    #[test]
    fn low_frame_rates_still_measure() {
        let t0 = Instant::now();
        let mut r = AckedRate::default();
        let mut now = t0;
        // 1 fps, 200 kbit frames.
        for i in 0..10 {
            now = t0 + Duration::from_secs(i);
            r.on_ack(now, 200_000);
        }
        let rate = r.rate_bps(now + Duration::from_millis(500)).unwrap();
        assert!((rate - 2e5).abs() < 1e3, "{rate}");
    }

    #[test]
    fn a_stalled_link_decays_to_zero() {
        let t0 = Instant::now();
        let mut r = AckedRate::default();
        for i in 0..10 {
            r.on_ack(t0 + Duration::from_millis(100 * i), 100_000);
        }
        let half = r.rate_bps(t0 + Duration::from_millis(2_900)).unwrap();
        assert!(half < 0.5e6, "{half}");
        assert_eq!(r.rate_bps(t0 + Duration::from_secs(10)), Some(0.0));
    }

    #[test]
    fn batched_acks_do_not_explode() {
        let t0 = Instant::now();
        let mut r = AckedRate::default();
        for i in 0..5 {
            r.on_ack(t0 + Duration::from_micros(10 * i), 100_000);
        }
        let rate = r.rate_bps(t0 + Duration::from_millis(1)).unwrap();
        assert!(rate <= 2e6 + 1.0, "{rate}");
    }

    #[test]
    fn the_delivery_floor_is_the_best_recent_bits_per_rtt() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut f = DeliveryFloor::default();
        assert_eq!(f.bps(t0), None);
        // 100 kbit acked 100 ms after its write: at least 1 Mbit/s.
        f.on_ack(t0 + ms(100), t0, 100_000);
        // A slower-looking frame (it queued) does not lower the floor.
        f.on_ack(t0 + ms(400), t0 + ms(100), 100_000);
        assert_eq!(f.bps(t0 + ms(400)), Some(1e6));
        // 2 s later the first proof has aged out; the second remains.
        assert!((f.bps(t0 + ms(2_200)).unwrap() - 1e6 / 3.0).abs() < 1.0);
        // After a restart, frames written before it do not count.
        f.restart(t0 + ms(2_300));
        f.on_ack(t0 + ms(2_400), t0 + ms(2_250), 1_000_000);
        assert_eq!(f.bps(t0 + ms(2_400)), None);
        f.on_ack(t0 + ms(2_500), t0 + ms(2_300), 100_000);
        assert_eq!(f.bps(t0 + ms(2_500)), Some(5e5));
    }

    #[test]
    fn rtt_smooths_and_keeps_a_windowed_minimum() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut rtt = Rtt::default();
        rtt.sample(t0, ms(80));
        assert_eq!(rtt.smoothed(), Some(ms(80)));
        rtt.sample(t0 + ms(100), ms(160));
        assert_eq!(rtt.smoothed(), Some(ms(90)));
        assert_eq!(rtt.latest(), Some(ms(160)));
        assert_eq!(rtt.min(), Some(ms(80)));
        // The 80 ms sample ages out; the smallest of the rest remains.
        rtt.sample(t0 + ms(5_000), ms(120));
        rtt.sample(t0 + ms(10_050), ms(130));
        assert_eq!(rtt.min(), Some(ms(120)));
    }
}
