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
const MIN_SPAN: Duration = Duration::from_millis(250);

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

/// How long a busy-link reading counts: the link's rate changes less often
/// than its queue comes and goes (a link found faster since is caught by the
/// controller's proven speed).
const BUSY_WINDOW: Duration = Duration::from_secs(10);
/// The busy rate is read over the latest readings that span this much of
/// the link's busy time.
const BUSY_SPAN: Duration = Duration::from_secs(1);

/// The link's rate while it had work queued. A frame handed over more than
/// the path's smallest RTT before the previous frame's PUBACK was waiting
/// before that frame had left the bottleneck (its last bit left no earlier
/// than its PUBACK less the return trip, which is part of every RTT), so the
/// gap between the two PUBACKs is the time the link took to carry it: the
/// bottleneck's rate, read the way a receiver reads it from back-to-back
/// packets. Unlike the [`DeliveryFloor`], no propagation delay or ack path
/// is in it (at 4 Mbit/s and 3 fps those made the floor read 15 % low).
/// Handed over later, within the RTT, the frame may have found the link
/// idle, and the gap would read the send rate instead. Bits over gaps of the
/// latest readings spanning [`BUSY_SPAN`] (none older than [`BUSY_WINDOW`]),
/// so acks a broker batched (a tiny gap, then a long one) average out.
#[derive(Debug, Default)]
pub(crate) struct BusyRate {
    last_ack: Option<Instant>,
    /// (acked at, bits, gap since the previous ack), oldest first.
    samples: VecDeque<(Instant, u64, Duration)>,
}

impl BusyRate {
    /// `bits` handed over at `handed` were acked at `now` (acks in send
    /// order); `rtt_min` is the path's smallest RTT, if known.
    pub fn on_ack(&mut self, now: Instant, handed: Instant, bits: u64, rtt_min: Option<Duration>) {
        let queued = |prev: &Instant| rtt_min.is_some_and(|r| handed + r < *prev);
        if let Some(prev) = self.last_ack.filter(queued) {
            self.samples
                .push_back((now, bits, now.saturating_duration_since(prev)));
        }
        self.last_ack = Some(now);
    }

    /// Forget everything (the connection, and so the path, is new).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// The link's latest busy rate, bits/s; `None` without [`MIN_SPAN`] of
    /// back-to-back acks in the last [`BUSY_WINDOW`].
    pub fn bps(&mut self, now: Instant) -> Option<f64> {
        while self
            .samples
            .front()
            .is_some_and(|&(t, _, _)| now.saturating_duration_since(t) > BUSY_WINDOW)
        {
            self.samples.pop_front();
        }
        let (mut gaps, mut bits) = (Duration::ZERO, 0u64);
        for &(_, b, gap) in self.samples.iter().rev() {
            if gaps >= BUSY_SPAN {
                break;
            }
            gaps += gap;
            bits += b;
        }
        (gaps >= MIN_SPAN).then(|| bits as f64 / gaps.as_secs_f64())
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
    fn back_to_back_acks_read_the_link_and_idle_gaps_do_not() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let rtt = Some(Duration::from_millis(40));
        let mut b = BusyRate::default();
        // A 2 Mbit/s link with 40 ms of round trip. 400 kbit frames every
        // 333 ms: each is handed over 93 ms after the previous ack.
        for i in 0..6 {
            b.on_ack(ms(333 * i + 240), ms(333 * i), 400_000, rtt);
        }
        assert_eq!(b.bps(ms(2_000)), None);
        // 180 kbit every 100 ms: handed over before the previous ack, but
        // within its round trip, so the link idled 10 ms each time and the
        // gaps would read the 1.8 Mbit/s send rate.
        for i in 0..10 {
            b.on_ack(ms(2_000 + 100 * i + 130), ms(2_000 + 100 * i), 180_000, rtt);
        }
        assert_eq!(b.bps(ms(3_000)), None);
        // Now 600 kbit frames every 250 ms: a queue, 300 ms per frame.
        for i in 0..6 {
            b.on_ack(ms(3_400 + 300 * i), ms(3_100 + 250 * i), 600_000, rtt);
        }
        let rate = b.bps(ms(4_900)).unwrap();
        assert!((rate - 2e6).abs() < 1.0, "{rate}");
        // The latest second of busy time counts: the link got slower.
        b.on_ack(ms(5_500), ms(5_000), 600_000, rtt);
        for i in 1..4 {
            b.on_ack(ms(5_500 + 600 * i), ms(5_400 + 600 * (i - 1)), 600_000, rtt);
        }
        let rate = b.bps(ms(7_300)).unwrap();
        assert!((rate - 1e6).abs() < 1.0, "{rate}");
        // Old readings expire; no RTT, no reading; a new connection starts afresh.
        assert_eq!(b.bps(ms(17_400)), None);
        b.on_ack(ms(17_500), ms(16_000), 600_000, None);
        b.on_ack(ms(17_800), ms(16_000), 600_000, None);
        assert_eq!(b.bps(ms(17_800)), None);
        b.on_ack(ms(18_100), ms(16_000), 600_000, rtt);
        b.reset();
        b.on_ack(ms(18_400), ms(16_000), 600_000, rtt);
        assert_eq!(b.bps(ms(18_400)), None);
    }

    #[test]
    fn batched_back_to_back_acks_average_out() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let rtt = Some(Duration::ZERO);
        let mut b = BusyRate::default();
        // Pairs of 200 kbit acks batched 1 ms apart, a pair every 201 ms:
        // 2 Mbit/s, not the 200 Mbit/s one gap alone would say.
        b.on_ack(ms(1), ms(0), 200_000, rtt);
        for pair in 0..4 {
            b.on_ack(ms(200 + 201 * pair), ms(0), 200_000, rtt);
            b.on_ack(ms(201 + 201 * pair), ms(0), 200_000, rtt);
        }
        let rate = b.bps(ms(1_000)).unwrap();
        assert!((rate - 2e6).abs() < 2e4, "{rate}");
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
