//! Target bitrate from PUBACK feedback: delay trend, latency bound, AIMD.
//!
//! The algorithm is described in the [module docs](super).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::aimd::{Aimd, Evidence, Signal};
use super::link_rate::LinkRate;
use super::meter::{AckedRate, DeliveryFloor, Rtt};
use super::overuse::OveruseDetector;
use super::trendline::{InterGroup, Trendline};
use super::RateError;

/// Unacked frames remembered for in-flight accounting; beyond this the oldest
/// are forgotten (a transport that never acks must not grow memory).
const MAX_UNACKED: usize = 4096;
/// An RTT this much (or a quarter) above the floor means a standing queue.
const QUEUE_MARGIN: Duration = Duration::from_millis(10);

/// What the link signals say about the current sending rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// No sign of a growing queue.
    Normal,
    /// The queue grows (or the latency bound is broken): slow down.
    Over,
    /// The queue drains: hold the rate until it has.
    Under,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ControllerConfig {
    pub min_kbps: f64,
    pub max_kbps: f64,
    /// Where the target starts, and (halved, at most this) where it restarts after a disconnect.
    pub start_kbps: f64,
    /// The queueing the link may hold: more bytes in flight than the target
    /// carries in this time, or RTTs beyond it, count as over-use.
    pub latency_bound: Duration,
}

impl ControllerConfig {
    /// Check the settings; [`Controller::new`] repairs bad ones instead of failing.
    pub fn validate(&self) -> Result<(), RateError> {
        let bad = |field, problem: &str| {
            Err(RateError::Config {
                field,
                problem: problem.into(),
            })
        };
        if !(self.min_kbps.is_finite() && self.min_kbps > 0.0) {
            return bad("min_kbps", "must be a finite number above 0");
        }
        if !(self.max_kbps.is_finite() && self.max_kbps >= self.min_kbps) {
            return bad("max_kbps", "must be finite and at least min_kbps");
        }
        if !(self.start_kbps >= self.min_kbps && self.start_kbps <= self.max_kbps) {
            return bad("start_kbps", "must lie within min_kbps..=max_kbps");
        }
        if self.latency_bound.is_zero() {
            return bad("latency_bound", "must be above zero");
        }
        Ok(())
    }

    fn sanitized(self) -> Self {
        if let Err(e) = self.validate() {
            log::warn!("rate controller: {e}; using safe values instead");
        }
        let min_kbps = if self.min_kbps.is_finite() && self.min_kbps > 0.0 {
            self.min_kbps
        } else {
            1.0
        };
        let max_kbps = if self.max_kbps.is_finite() && self.max_kbps >= min_kbps {
            self.max_kbps
        } else {
            min_kbps.max(100_000.0)
        };
        let start_kbps = if self.start_kbps.is_nan() {
            min_kbps
        } else {
            self.start_kbps.clamp(min_kbps, max_kbps)
        };
        Self {
            min_kbps,
            max_kbps,
            start_kbps,
            latency_bound: self.latency_bound.max(Duration::from_millis(1)),
        }
    }
}

/// Congestion controller for the MQTT uplink; see the [module docs](super).
#[derive(Debug)]
pub struct Controller {
    cfg: ControllerConfig,
    groups: InterGroup,
    trendline: Trendline,
    /// Trend of the delay that frame-size changes alone explain.
    serialization: Trendline,
    detector: OveruseDetector,
    goodput: AckedRate,
    floor: DeliveryFloor,
    link: LinkRate,
    rtt: Rtt,
    aimd: Aimd,
    /// (written at, bytes) of frames not yet acked, oldest first.
    unacked: VecDeque<(Instant, u64)>,
    in_flight: u64,
    last_frame_bits: f64,
    target_bps: f64,
    goodput_bps: f64,
    usage: Usage,
    /// Delay-based over-use declarations already answered by a decrease.
    answered: u64,
}

impl Controller {
    pub fn new(cfg: ControllerConfig) -> Self {
        let cfg = cfg.sanitized();
        let aimd = Aimd::new(cfg.start_kbps * 1e3, cfg.min_kbps * 1e3, cfg.max_kbps * 1e3);
        Self {
            cfg,
            groups: InterGroup::default(),
            trendline: Trendline::default(),
            serialization: Trendline::default(),
            detector: OveruseDetector::default(),
            goodput: AckedRate::default(),
            floor: DeliveryFloor::default(),
            link: LinkRate::default(),
            rtt: Rtt::default(),
            target_bps: aimd.target_bps(),
            aimd,
            unacked: VecDeque::new(),
            in_flight: 0,
            last_frame_bits: 0.0,
            goodput_bps: 0.0,
            usage: Usage::Normal,
            answered: 0,
        }
    }

    /// A frame of `bytes` was written to the socket at `now`.
    pub fn on_sent(&mut self, now: Instant, bytes: usize) {
        let bytes = bytes as u64;
        self.unacked.push_back((now, bytes));
        self.in_flight += bytes;
        if self.unacked.len() > MAX_UNACKED {
            if let Some((_, b)) = self.unacked.pop_front() {
                self.in_flight = self.in_flight.saturating_sub(b);
            }
        }
        self.last_frame_bits = bytes as f64 * 8.0;
    }

    /// The PUBACK of the frame written at `sent_at` arrived at `now`.
    pub fn on_ack(&mut self, now: Instant, sent_at: Instant, bytes: usize) {
        let bits = bytes as u64 * 8;
        self.rtt.sample(now, now.saturating_duration_since(sent_at));
        self.goodput.on_ack(now, bits);
        self.settle(sent_at, bytes as u64);
        let Some(delta) = self.groups.push(sent_at, now, bits as f64) else {
            return;
        };
        let trend = self.trendline.update(delta.variation_ms, now);
        // A frame's ack waits for its own last bit, so frames growing during a
        // ramp look like a growing queue. Take out the part size changes
        // explain, at a rate no lower than the target: below the capacity
        // that over-explains (no false over-use), above it it under-explains
        // (a real queue still shows). It only ever weakens a rising trend;
        // shrinking frames are left alone, their error is on the safe side.
        let rate = self
            .goodput
            .rate_bps(now)
            .unwrap_or(0.0)
            .max(self.aimd.target_bps());
        let explained = self
            .serialization
            .update(delta.size_change_bits / rate * 1e3, now);
        let trend = if trend > 0.0 {
            (trend - explained.max(0.0)).max(0.0)
        } else {
            trend
        };
        self.detector.detect(trend, delta.send_ms, now);
    }

    /// The frame of `bytes` acked at `now` cannot have started to cross the
    /// link before `since` (when it was handed to the MQTT client: earlier
    /// than its write, whose report may come only once most of it has left).
    /// Evidence of the link's speed for the `DeliveryFloor` and the
    /// `LinkRate` (a busy-link reading if it waited behind the frame
    /// before it, an idle crossing if it was handed over after that
    /// frame's PUBACK).
    pub fn on_delivered(&mut self, now: Instant, since: Instant, bytes: usize) {
        let bits = bytes as u64 * 8;
        self.floor.on_ack(now, since, bits);
        self.link.on_ack(now, since, bits, self.rtt.min());
    }

    /// The connection was lost: whatever was in flight is gone (the transport
    /// resends or spools it), the delay history no longer describes the path,
    /// and the rate restarts low.
    pub fn on_disconnect(&mut self, now: Instant) {
        log::debug!(
            "rate controller: disconnect at target {:.0} kbit/s",
            self.target_bps / 1e3
        );
        self.unacked.clear();
        self.in_flight = 0;
        self.groups = InterGroup::default();
        self.trendline = Trendline::default();
        self.serialization = Trendline::default();
        self.detector = OveruseDetector::default();
        self.answered = 0;
        self.goodput.reset();
        self.floor.restart(now);
        self.link.reset();
        self.goodput_bps = 0.0;
        self.rtt = Rtt::default();
        let restart = (self.cfg.start_kbps * 1e3).min(self.aimd.target_bps() / 2.0);
        self.aimd.restart(restart);
        self.target_bps = self.aimd.target_bps();
        self.usage = Usage::Normal;
    }

    /// Fold in everything since the last call; returns the target in kbit/s.
    pub fn update(&mut self, now: Instant) -> f64 {
        let goodput = self.goodput.rate_bps(now);
        self.goodput_bps = goodput.unwrap_or(0.0);
        let bound = self.cfg.latency_bound;
        let bound_s = bound.as_secs_f64();
        // The frame just written may legitimately sit in the queue whole.
        let allowance = self.aimd.target_bps() * bound_s + self.last_frame_bits;
        let excess = self.in_flight as f64 * 8.0 - allowance;
        let oldest_late = self
            .unacked
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > bound);
        // Both: the smoothed RTT alone lags a drained queue by seconds.
        let rtt_late = self.rtt.smoothed().is_some_and(|s| s > bound)
            && self.rtt.latest().is_some_and(|l| l > bound);
        let latency_over = excess > 0.0 || oldest_late || rtt_late;
        let mut delay = self.detector.state();
        if delay == Usage::Under && !self.queue_standing() {
            // A falling delay with the RTT at its floor is not a queue
            // draining: frames are crossing a link that just got faster.
            delay = Usage::Normal;
        }
        let fresh = self.detector.detections() > self.answered;
        self.usage = if latency_over { Usage::Over } else { delay };
        // The delay verdict latches, and its trendline spans seconds at camera
        // frame rates: answering it again while it is stale would cut the
        // rate against a goodput that only reflects the previous cut. So a
        // delay-based over-use is answered once per declaration; the latency
        // guards clear as soon as the queue has drained and act directly.
        let signal = match (latency_over, delay) {
            (true, _) => Signal::Decrease,
            (false, Usage::Over) if fresh => Signal::Decrease,
            (false, Usage::Over | Usage::Under) => Signal::Hold,
            (false, Usage::Normal) => Signal::Increase,
        };
        let link = Evidence {
            proven_bps: self.floor.bps(now),
            link_bps: self.link.bps(now),
        };
        let decreased = self
            .aimd
            .update(signal, goodput, link, self.rtt.smoothed(), now);
        if decreased {
            self.answered = self.detector.detections();
            // The link may have got slower: what it carried before the cut
            // proves nothing about it now.
            self.floor.restart(now);
            self.link.restart(now);
        }
        let mut target = self.aimd.target_bps();
        if excess > 0.0 {
            // Stop adding to a queue that is already over the bound: spread
            // its excess over one bound. The AIMD rate itself is untouched,
            // so sending resumes at it once the queue has drained.
            target -= excess / bound_s;
        }
        self.target_bps = target.clamp(self.cfg.min_kbps * 1e3, self.cfg.max_kbps * 1e3);
        self.target_kbps()
    }

    /// The target as of the last [`update`](Self::update), kbit/s.
    pub fn target_kbps(&self) -> f64 {
        self.target_bps / 1e3
    }

    /// The link state as of the last [`update`](Self::update).
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Smoothed PUBACK round-trip time.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt.smoothed()
    }

    /// Acked bits over about the last second, kbit/s, as of the last update.
    pub fn goodput_kbps(&self) -> f64 {
        self.goodput_bps / 1e3
    }

    /// Bytes written to the socket and not yet acked.
    pub fn bytes_in_flight(&self) -> u64 {
        self.in_flight
    }

    /// Whether the latest RTT is clearly above the path's floor. The margin
    /// covers frame-size noise: a larger frame takes longer to cross the link.
    fn queue_standing(&self) -> bool {
        match (self.rtt.latest(), self.rtt.min()) {
            (Some(latest), Some(min)) => latest > min + (min / 4).max(QUEUE_MARGIN),
            _ => false,
        }
    }

    /// Acks arrive in send order: everything written before `sent_at` is
    /// acked too, and one frame written exactly then is this one.
    fn settle(&mut self, sent_at: Instant, bytes: u64) {
        while let Some(&(t, b)) = self.unacked.front() {
            if t < sent_at {
                self.in_flight = self.in_flight.saturating_sub(b);
                self.unacked.pop_front();
            } else {
                break;
            }
        }
        let same = self
            .unacked
            .iter()
            .take_while(|(t, _)| *t == sent_at)
            .position(|&(_, b)| b == bytes)
            .or_else(|| {
                self.unacked
                    .front()
                    .filter(|(t, _)| *t == sent_at)
                    .map(|_| 0)
            });
        if let Some(i) = same {
            if let Some((_, b)) = self.unacked.remove(i) {
                self.in_flight = self.in_flight.saturating_sub(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn cfg() -> ControllerConfig {
        ControllerConfig {
            min_kbps: 50.0,
            max_kbps: 20_000.0,
            start_kbps: 1_000.0,
            latency_bound: Duration::from_millis(500),
        }
    }

    #[test]
    fn in_flight_follows_sends_and_acks() {
        let t0 = Instant::now();
        let mut c = Controller::new(cfg());
        c.on_sent(t0, 1000);
        c.on_sent(t0 + 100 * MS, 2000);
        c.on_sent(t0 + 200 * MS, 3000);
        assert_eq!(c.bytes_in_flight(), 6000);
        // Acking the second implies the first (acks come in order).
        c.on_ack(t0 + 150 * MS, t0 + 100 * MS, 2000);
        assert_eq!(c.bytes_in_flight(), 3000);
        assert_eq!(c.rtt(), Some(50 * MS));
        // A duplicate or unknown ack changes nothing.
        c.on_ack(t0 + 160 * MS, t0 + 100 * MS, 2000);
        assert_eq!(c.bytes_in_flight(), 3000);
        c.on_disconnect(t0 + 300 * MS);
        assert_eq!(c.bytes_in_flight(), 0);
        assert_eq!(c.rtt(), None);
    }

    #[test]
    fn frames_written_at_the_same_instant_are_told_apart() {
        let t0 = Instant::now();
        let mut c = Controller::new(cfg());
        c.on_sent(t0, 1000);
        c.on_sent(t0, 2000);
        c.on_ack(t0 + 40 * MS, t0, 2000);
        assert_eq!(c.bytes_in_flight(), 1000);
    }

    #[test]
    fn too_much_in_flight_is_overuse_and_lowers_the_target_at_once() {
        let t0 = Instant::now();
        let mut c = Controller::new(cfg());
        assert_eq!(c.update(t0), 1_000.0);
        // 1000 kbit/s × 0.5 s = 500 kbit allowed, plus the last frame (100 kbit).
        for i in 0..8u32 {
            c.on_sent(t0 + i * 10 * MS, 12_500);
        }
        let target = c.update(t0 + 80 * MS);
        assert_eq!(c.usage(), Usage::Over);
        assert!(target < 850.0, "{target}");
    }

    #[test]
    fn a_stalled_link_is_overuse_without_any_ack() {
        let t0 = Instant::now();
        let mut c = Controller::new(cfg());
        c.on_sent(t0, 1000);
        c.update(t0 + 400 * MS);
        assert_eq!(c.usage(), Usage::Normal);
        c.update(t0 + 600 * MS);
        assert_eq!(c.usage(), Usage::Over);
    }

    #[test]
    fn disconnect_restarts_low() {
        let t0 = Instant::now();
        let mut c = Controller::new(cfg());
        c.on_disconnect(t0);
        assert_eq!(c.target_kbps(), 500.0);
        c.on_disconnect(t0 + MS);
        assert_eq!(c.target_kbps(), 250.0);
    }

    /// Frames every 100 ms; frame `i` has `bits(i, target_kbps)` and is acked
    /// after `rtt(i, bits)`. Calls `update` after each ack; returns the targets.
    fn feed(
        c: &mut Controller,
        t0: Instant,
        frames: std::ops::Range<u32>,
        bits: impl Fn(u32, f64) -> f64,
        rtt: impl Fn(u32, f64) -> Duration,
    ) -> Vec<f64> {
        let mut targets = vec![];
        for i in frames {
            let sent = t0 + 100 * MS * i;
            let b = bits(i, c.target_kbps());
            let bytes = (b / 8.0) as usize;
            c.on_sent(sent, bytes);
            let acked = sent + rtt(i, b);
            c.on_ack(acked, sent, bytes);
            targets.push(c.update(acked));
        }
        targets
    }

    /// A sender that uses its whole target at 10 fps.
    fn follows(_: u32, target_kbps: f64) -> f64 {
        target_kbps * 100.0
    }

    #[test]
    fn a_stale_delay_overuse_is_not_answered_again() {
        let t0 = Instant::now();
        let mut c = Controller::new(ControllerConfig {
            start_kbps: 800.0,
            max_kbps: 800.0,
            ..cfg()
        });
        // Steady for 3 s, then the queue grows 20 ms per frame for half a
        // second and stays put. The trendline keeps reporting the growth for
        // a while after it stopped, and the goodput follows the sender down
        // after a cut: answering that stale verdict again would spiral down.
        feed(&mut c, t0, 0..30, follows, |_, _| 60 * MS);
        let queue = |i: u32| 60 * MS + 20 * MS * (i.saturating_sub(30)).min(5);
        let targets = feed(&mut c, t0, 30..60, follows, |i, _| queue(i));
        let cut = |w: &[f64]| w[1] < w[0] * 0.99;
        assert!(targets[..10].windows(2).any(cut), "never cut: {targets:?}");
        assert!(!targets[10..].windows(2).any(cut), "cut again: {targets:?}");
    }

    #[test]
    fn a_falling_delay_without_a_queue_does_not_hold_the_rate() {
        let t0 = Instant::now();
        let mut c = Controller::new(cfg());
        // Frames take 150 ms to cross a slow link, then the link gets 10x
        // faster: the delay falls like a draining queue, but the RTT is at
        // its new floor at once, so the ramp goes on.
        feed(&mut c, t0, 0..30, follows, |_, _| 190 * MS);
        let targets = feed(&mut c, t0, 30..40, follows, |_, _| 55 * MS);
        assert!(
            targets.windows(2).all(|w| w[1] > w[0]),
            "held at some point: {targets:?}"
        );
    }

    #[test]
    fn growing_frames_are_not_a_growing_queue() {
        let t0 = Instant::now();
        let mut c = Controller::new(cfg());
        // 3 s steady, then frames grow 8 % each (a ramp), up to ~3.7 Mbit/s
        // on a 4 Mbit/s link that never queues: each ack waits only for its
        // own frame's bits.
        let bits = |i: u32| 40e3 * 1.08f64.powi(i.saturating_sub(30) as i32);
        let rtt = |_: u32, b: f64| 40 * MS + Duration::from_secs_f64(b / 4e6);
        feed(&mut c, t0, 0..60, |i, _| bits(i), rtt);
        assert_ne!(c.usage(), Usage::Over);
        // The same detector on the uncompensated trend of the same delays
        // declares over-use: the compensation is what keeps this Normal.
        let mut raw = Trendline::default();
        let mut detector = OveruseDetector::default();
        let mut verdicts = vec![];
        for i in 1..60u32 {
            let arrival = t0 + 100 * MS * i + rtt(i, bits(i));
            let variation = (rtt(i, bits(i)) - rtt(i - 1, bits(i - 1))).as_secs_f64() * 1e3;
            let trend = raw.update(variation, arrival);
            verdicts.push(detector.detect(trend, 100.0, arrival));
        }
        assert!(verdicts.contains(&Usage::Over), "{verdicts:?}");
    }

    #[test]
    fn a_link_proven_faster_lifts_the_target_at_once() {
        // 3 fps, each frame a third of a second of the target, over a
        // 4 Mbit/s link with 40 ms of round trip: every ack proves more than
        // the target, so the target follows the proof, not a ramp.
        let run = |proof: bool| {
            let t0 = Instant::now();
            let mut c = Controller::new(ControllerConfig {
                start_kbps: 300.0,
                ..cfg()
            });
            for i in 0..6u32 {
                let sent = t0 + 333 * MS * i;
                let bits = c.target_kbps() * 1e3 / 3.0;
                let bytes = (bits / 8.0) as usize;
                c.on_sent(sent, bytes);
                let acked = sent + 40 * MS + Duration::from_secs_f64(bits / 4e6);
                c.on_ack(acked, sent, bytes);
                if proof {
                    c.on_delivered(acked, sent, bytes);
                }
                c.update(acked);
            }
            c.target_kbps()
        };
        let (lifted, ramped) = (run(true), run(false));
        assert!(lifted > 2_000.0, "lifted only to {lifted:.0} kbit/s");
        assert!(lifted < 4_000.0, "lifted past the link: {lifted:.0} kbit/s");
        assert!(ramped < 600.0, "the ramp alone reached {ramped:.0} kbit/s");
    }

    #[test]
    fn a_burst_proof_lifts_no_further_than_twice_the_goodput() {
        // A shaper with a large bucket lets every 100 kbit frame through in
        // 4 ms (25 Mbit/s) although it sustains far less: the proof is
        // real for the burst only, so the target may not leap past twice
        // what the acks show.
        let t0 = Instant::now();
        let mut c = Controller::new(cfg());
        for i in 0..10u32 {
            let sent = t0 + 100 * MS * i;
            let bytes = 12_500;
            c.on_sent(sent, bytes);
            let acked = sent + 44 * MS;
            c.on_ack(acked, sent, bytes);
            c.on_delivered(acked, sent, bytes);
            let target = c.update(acked);
            assert!(
                target <= 2.0 * c.goodput_kbps() + 10.0 + 1e-6 || target <= 1_000.0,
                "frame {i}: target {target:.0} kbit/s on a goodput of {:.0}",
                c.goodput_kbps()
            );
        }
    }

    #[test]
    fn a_cut_forgets_the_proof_from_before_it() {
        let t0 = Instant::now();
        let mut c = Controller::new(cfg());
        // A fast frame proves 4 Mbit/s; then the link stalls and the latency
        // bound cuts the rate: the old proof must not lift it straight back.
        c.on_sent(t0, 50_000);
        c.on_ack(t0 + 100 * MS, t0, 50_000);
        c.on_delivered(t0 + 100 * MS, t0, 50_000);
        c.on_sent(t0 + 200 * MS, 50_000);
        let cut = c.update(t0 + 800 * MS);
        assert_eq!(c.usage(), Usage::Over);
        assert!(cut < 1_000.0, "{cut}");
        c.on_ack(t0 + 2_000 * MS, t0 + 200 * MS, 50_000);
        let after = c.update(t0 + 2_000 * MS);
        assert!(
            after < 1_000.0,
            "lifted back to {after:.0} kbit/s by a stale proof"
        );
    }

    #[test]
    fn config_is_validated_and_repaired() {
        assert!(cfg().validate().is_ok());
        let bad = ControllerConfig {
            min_kbps: f64::NAN,
            ..cfg()
        };
        assert!(matches!(
            bad.validate(),
            Err(RateError::Config {
                field: "min_kbps",
                ..
            })
        ));
        let swapped = ControllerConfig {
            min_kbps: 100.0,
            max_kbps: 10.0,
            start_kbps: 5.0,
            latency_bound: Duration::ZERO,
        };
        assert!(swapped.validate().is_err());
        let c = Controller::new(swapped);
        assert_eq!(c.target_kbps(), 100.0);
        let t0 = Instant::now();
        let mut c = c;
        assert!(c.update(t0).is_finite());
    }
}
