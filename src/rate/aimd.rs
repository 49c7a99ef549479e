//! GCC's AIMD rate controller on the target bitrate, with a learnt link capacity.

use std::time::{Duration, Instant};

/// Multiplicative decrease applied to the acked goodput on over-use.
const BETA: f64 = 0.85;
/// Increase far from any known capacity: 8 %/s at first (GCC's rate),
/// doubling every [`RAMP_DOUBLING`] of uninterrupted increase, up to 100 %/s.
const RAMP_START: f64 = 0.08;
const RAMP_MAX: f64 = 1.0;
const RAMP_DOUBLING: Duration = Duration::from_millis(500);
/// Doublings the ramp starts with when the goodput has just left the learnt
/// capacity behind: that is evidence of a faster link, not a guess.
const RAMP_HEAD_START: f64 = 2.0;
/// Increase on the way back up to the learnt capacity, per second, as a
/// fraction of it. GCC adds about half a packet per response time there;
/// our "packets" are whole frames, which would make that 10–100 %/s, and TCP
/// segments would make it depend on the link speed (13 %/s at 400 kbit/s,
/// 1 %/s at 4 Mbit/s). A fixed fraction closes the 15 % gap a decrease
/// leaves in about two seconds at any speed (4 %/s cost 2.5 points of
/// utilisation in the simulations for 7 % less queueing).
const NEAR_RELATIVE: f64 = 0.08;
/// The target never rises beyond this multiple of the acked goodput, plus
/// [`HEADROOM_SLACK_BPS`]: a sender that does not use its target learns
/// nothing about the link by raising it. 2 rather than GCC's 1.5: the goodput
/// is a one-second average that lags a ramp, and at 1.5 the cap, not the
/// ramp, would set the pace.
const HEADROOM: f64 = 2.0;
const HEADROOM_SLACK_BPS: f64 = 10_000.0;
/// While the rate may increase, the target is lifted to this share of the
/// speed the link has shown: the better of its proven speed (the
/// controller's delivery floor) and its rate read directly. Below it, so
/// frame-size noise does not queue.
const FLOOR_SHARE: f64 = 0.9;
/// Past the learnt capacity the probe may lead the goodput by only this much:
/// enough for the planner's hysteresis step, not enough to build a target the
/// link has never been shown, which would land in the queue all at once.
const PROBE_HEADROOM: f64 = 1.2;
/// Link capacity average: weight of a new decrease-time goodput, and the
/// bounds of its relative deviation.
const CAPACITY_WEIGHT: f64 = 0.2;
const INITIAL_DEVIATION: f64 = 0.05;
const MIN_DEVIATION: f64 = 0.02;
const MAX_DEVIATION: f64 = 0.1;
/// Repeated decreases are at least one RTT apart (within these bounds), so
/// one congestion episode is not answered again before the first answer can show.
const MIN_DECREASE_GAP: Duration = Duration::from_millis(100);
const MAX_DECREASE_GAP: Duration = Duration::from_millis(500);
/// Elapsed time beyond this between updates counts as this much.
const MAX_STEP: Duration = Duration::from_secs(1);

/// What the link signals ask of the rate (GCC's over-use/normal/under-use,
/// after the controller has told a fresh over-use from a stale one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Decrease,
    Hold,
    Increase,
}

/// What the link has shown of its speed, besides the goodput.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Evidence {
    /// A speed the link has shown it carries (a lower bound on its
    /// capacity), if any since the last decrease.
    pub proven_bps: Option<f64>,
    /// The link's rate read directly (from back-to-back PUBACKs, or from a
    /// crossing of the idle link less the path's fixed delay), if lately.
    pub link_bps: Option<f64>,
}

/// Where the link saturated lately: mean goodput at decreases and its relative deviation.
#[derive(Debug, Clone, Copy)]
struct Capacity {
    mean_bps: f64,
    deviation: f64,
}

impl Capacity {
    fn upper(&self) -> f64 {
        self.mean_bps * (1.0 + 3.0 * self.deviation)
    }

    fn lower(&self) -> f64 {
        self.mean_bps * (1.0 - 3.0 * self.deviation).max(0.0)
    }
}

#[derive(Debug)]
pub(crate) struct Aimd {
    target_bps: f64,
    min_bps: f64,
    max_bps: f64,
    capacity: Option<Capacity>,
    last_update: Option<Instant>,
    last_decrease: Option<Instant>,
    ramp_since: Option<Instant>,
    /// Doublings the current (or next) ramp started with.
    ramp_head_start: f64,
}

impl Aimd {
    pub fn new(start_bps: f64, min_bps: f64, max_bps: f64) -> Self {
        Self {
            target_bps: start_bps.clamp(min_bps, max_bps),
            min_bps,
            max_bps,
            capacity: None,
            last_update: None,
            last_decrease: None,
            ramp_since: None,
            ramp_head_start: 0.0,
        }
    }

    pub fn target_bps(&self) -> f64 {
        self.target_bps
    }

    /// Start over at `bps` (after a disconnect); the capacity estimate is kept,
    /// since the link behind a reconnect is usually the same one.
    pub fn restart(&mut self, bps: f64) {
        self.target_bps = bps.clamp(self.min_bps, self.max_bps);
        self.hold();
        self.last_update = None;
        self.last_decrease = None;
    }

    /// Apply one signal; returns whether the target was decreased (a
    /// decrease within one RTT of the previous one is not applied).
    /// `link` is what the link has shown of its speed.
    pub fn update(
        &mut self,
        signal: Signal,
        goodput_bps: Option<f64>,
        link: Evidence,
        rtt: Option<Duration>,
        now: Instant,
    ) -> bool {
        let dt = self
            .last_update
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
            .min(MAX_STEP)
            .as_secs_f64();
        self.last_update = Some(now);
        let decreased = match signal {
            Signal::Decrease => self.decrease(goodput_bps, link, rtt, now),
            Signal::Hold => {
                self.hold();
                false
            }
            Signal::Increase => {
                self.increase(dt, goodput_bps, link, now);
                false
            }
        };
        // The link's rate, read directly, is its capacity: a target above it
        // only queues, and at a few frames per second the delay would show
        // that a second or more late (the overshoot that kept the rate out
        // of band for seconds after each rise). A proven speed above it
        // means the link got faster since: then it is stale.
        let faster = |b: f64| link.proven_bps.is_some_and(|p| p > b);
        if let Some(b) = link.link_bps.filter(|&b| !faster(b)) {
            if self.target_bps > b {
                self.target_bps = b;
                self.hold();
            }
        }
        self.target_bps = self.target_bps.clamp(self.min_bps, self.max_bps);
        decreased
    }

    /// Stop ramping: the next increase starts its ramp from the beginning.
    fn hold(&mut self) {
        self.ramp_since = None;
        self.ramp_head_start = 0.0;
    }

    fn decrease(
        &mut self,
        goodput_bps: Option<f64>,
        link: Evidence,
        rtt: Option<Duration>,
        now: Instant,
    ) -> bool {
        self.hold();
        let gap = rtt
            .unwrap_or(MAX_DECREASE_GAP)
            .clamp(MIN_DECREASE_GAP, MAX_DECREASE_GAP);
        if self
            .last_decrease
            .is_some_and(|t| now.saturating_duration_since(t) < gap)
        {
            return false;
        }
        self.last_decrease = Some(now);
        // The goodput averages a second or more of acks (at least four at
        // low frame rates), some from before the link got slower; the link
        // rate reads the link as it is now. The lower of the two is its rate.
        let seen = match (goodput_bps, link.link_bps) {
            (Some(g), Some(b)) => Some(g.min(b)),
            (g, b) => g.or(b),
        };
        // Before any ack there is no goodput: cut the target itself.
        let base = seen.unwrap_or(self.target_bps);
        self.target_bps = self.target_bps.min(BETA * base);
        if let Some(g) = seen.filter(|g| *g > 0.0) {
            self.learn_capacity(g);
        }
        true
    }

    fn learn_capacity(&mut self, goodput_bps: f64) {
        self.capacity = Some(match self.capacity {
            Some(c) if goodput_bps >= c.lower() => {
                let miss = (goodput_bps / c.mean_bps - 1.0).abs();
                Capacity {
                    mean_bps: c.mean_bps + CAPACITY_WEIGHT * (goodput_bps - c.mean_bps),
                    deviation: (c.deviation + CAPACITY_WEIGHT * (miss - c.deviation))
                        .clamp(MIN_DEVIATION, MAX_DEVIATION),
                }
            }
            // First estimate, or the link got much slower: start afresh.
            _ => Capacity {
                mean_bps: goodput_bps,
                deviation: INITIAL_DEVIATION,
            },
        });
    }

    fn increase(&mut self, dt: f64, goodput_bps: Option<f64>, link: Evidence, now: Instant) {
        // One frame proves what the link carried during its burst, which a
        // shaper with a large bucket (LTE, cable "boost") lets through far
        // above the rate it sustains: the jump goes at most to the same
        // multiple of the goodput as any increase, so such a link costs a
        // few doublings, not one leap to the burst rate. The link's rate,
        // read directly, is the better reading where there is one: the
        // proven speed reads low by the path delay's share.
        let shown = match (link.proven_bps, link.link_bps) {
            (Some(p), Some(l)) => Some(p.max(l)),
            (p, l) => p.or(l),
        };
        let lift = shown.map(|p| {
            let lift = FLOOR_SHARE * p;
            goodput_bps.map_or(lift, |g| lift.min(HEADROOM * g + HEADROOM_SLACK_BPS))
        });
        if let Some(lift) = lift.filter(|&l| l > self.target_bps) {
            // The link has shown it carries more: jump there. The jump is
            // this step's increase; a ramp that kept accelerating on top of
            // it would overshoot the link before the delay could show it.
            if self.capacity.is_some_and(|c| lift > c.upper()) {
                self.capacity = None;
            }
            self.target_bps = lift;
            self.hold();
            return;
        }
        if let (Some(c), Some(g)) = (self.capacity, goodput_bps) {
            if g > c.upper() {
                // The link carries clearly more than where it used to saturate.
                self.capacity = None;
                self.ramp_since = None;
                self.ramp_head_start = RAMP_HEAD_START;
            }
        }
        let before = self.target_bps;
        match self.capacity {
            // Back up to where the link saturated last: additive.
            Some(c) if before >= c.lower() && before < c.mean_bps => {
                self.ramp_since = None;
                self.target_bps += NEAR_RELATIVE * c.mean_bps * dt;
            }
            // Past it: probe at GCC's 8 %/s, so an unchanged link pushes back
            // within the band while a faster one soon shows in the goodput.
            Some(c) if before >= c.mean_bps => {
                self.ramp_since = None;
                let probe = before * (1.0 + RAMP_START).powf(dt);
                let lead = goodput_bps.map_or(probe, |g| PROBE_HEADROOM * g);
                self.target_bps = probe.min(lead.max(before));
            }
            // Unknown, or far below it: the accelerating ramp.
            _ => {
                let since = *self.ramp_since.get_or_insert(now);
                let doublings = self.ramp_head_start
                    + now.saturating_duration_since(since).as_secs_f64()
                        / RAMP_DOUBLING.as_secs_f64();
                let rate = (RAMP_START * doublings.exp2()).min(RAMP_MAX);
                self.target_bps *= (1.0 + rate).powf(dt);
                // Beyond what the link has proven, the ramp leads it only
                // as far as a probe past the capacity does: at camera frame
                // rates the delay shows an overshoot a second late.
                if let Some(p) = link.proven_bps {
                    let lead = PROBE_HEADROOM * p.max(goodput_bps.unwrap_or(0.0));
                    self.target_bps = self.target_bps.min(lead.max(before));
                }
            }
        }
        if let Some(g) = goodput_bps {
            let cap = HEADROOM * g + HEADROOM_SLACK_BPS;
            self.target_bps = self.target_bps.min(cap.max(before));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const RTT: Option<Duration> = Some(Duration::from_millis(50));

    /// Apply `signal` every 100 ms over `from_ms..=to_ms` after `t0`, with a
    /// goodput chosen from the target before each step; returns the last time.
    fn run(
        aimd: &mut Aimd,
        t0: Instant,
        (from_ms, to_ms): (u32, u32),
        signal: Signal,
        goodput: impl Fn(f64) -> f64,
    ) -> Instant {
        let mut now = t0;
        for ms in (from_ms..=to_ms).step_by(100) {
            now = t0 + MS * ms;
            let g = goodput(aimd.target_bps());
            aimd.update(signal, Some(g), Evidence::default(), RTT, now);
        }
        now
    }

    /// An Aimd that has seen the link saturate at `capacity`.
    fn saturated_at(capacity: f64, t0: Instant) -> Aimd {
        let mut a = Aimd::new(capacity, 1e4, 1e8);
        a.update(
            Signal::Decrease,
            Some(capacity),
            Evidence::default(),
            RTT,
            t0,
        );
        a
    }

    #[test]
    fn decrease_cuts_to_beta_times_goodput_once_per_rtt() {
        let t0 = Instant::now();
        let mut a = Aimd::new(2e6, 1e4, 1e7);
        assert!(a.update(Signal::Decrease, Some(1e6), Evidence::default(), RTT, t0));
        assert!((a.target_bps() - 0.85e6).abs() < 1.0);
        // Goodput lower still, but within one (clamped) RTT: not applied.
        assert!(!a.update(
            Signal::Decrease,
            Some(0.5e6),
            Evidence::default(),
            RTT,
            t0 + 50 * MS
        ));
        assert!((a.target_bps() - 0.85e6).abs() < 1.0);
        assert!(a.update(
            Signal::Decrease,
            Some(0.5e6),
            Evidence::default(),
            RTT,
            t0 + 150 * MS
        ));
        assert!((a.target_bps() - 0.425e6).abs() < 1.0);
        // Never below the minimum.
        a.update(
            Signal::Decrease,
            Some(0.0),
            Evidence::default(),
            RTT,
            t0 + 300 * MS,
        );
        assert_eq!(a.target_bps(), 1e4);
    }

    #[test]
    fn decrease_never_raises_the_target() {
        let t0 = Instant::now();
        let mut a = Aimd::new(1e6, 1e4, 1e7);
        a.update(Signal::Decrease, Some(5e6), Evidence::default(), None, t0);
        assert_eq!(a.target_bps(), 1e6);
        // Before any ack, the target itself is cut.
        let mut b = Aimd::new(1e6, 1e4, 1e7);
        b.update(Signal::Decrease, None, Evidence::default(), None, t0);
        assert!((b.target_bps() - 0.85e6).abs() < 1.0);
    }

    #[test]
    fn hold_holds() {
        let t0 = Instant::now();
        let mut a = Aimd::new(1e6, 1e4, 1e7);
        run(&mut a, t0, (0, 3000), Signal::Hold, |t| t);
        assert_eq!(a.target_bps(), 1e6);
    }

    #[test]
    fn far_from_capacity_the_increase_accelerates() {
        let t0 = Instant::now();
        let mut a = Aimd::new(1e5, 1e4, 1e8);
        // The link absorbs everything: goodput keeps up with the target.
        run(&mut a, t0, (0, 1000), Signal::Increase, |t| t);
        let after_1s = a.target_bps();
        run(&mut a, t0, (1100, 4000), Signal::Increase, |t| t);
        // 8 %/s at first, 32 %/s a second later: about +20 % in the first second.
        assert!(after_1s > 1.12e5 && after_1s < 1.3e5, "{after_1s}");
        // Then doubling per second: well over 6x after four seconds.
        assert!(a.target_bps() > 6e5, "{}", a.target_bps());
        // A hold restarts the ramp at 8 %/s.
        a.update(Signal::Hold, None, Evidence::default(), RTT, t0 + 4100 * MS);
        let before = a.target_bps();
        run(&mut a, t0, (4200, 5200), Signal::Increase, |t| t);
        let growth = a.target_bps() / before;
        assert!(growth > 1.1 && growth < 1.3, "{growth}");
    }

    #[test]
    fn below_the_learnt_capacity_the_increase_is_additive() {
        let t0 = Instant::now();
        for capacity in [4e5, 2e6, 20e6] {
            let mut a = saturated_at(capacity, t0);
            let start = a.target_bps();
            assert!((start - 0.85 * capacity).abs() < 1.0);
            // 8 % of the capacity per second, whatever the speed.
            run(&mut a, t0, (100, 1500), Signal::Increase, |_| {
                0.9 * capacity
            });
            let per_s = (a.target_bps() - start) / 1.5;
            let expect = 0.08 * capacity;
            assert!(
                (per_s - expect).abs() < 1e-3 * capacity,
                "{capacity}: {per_s}"
            );
        }
    }

    #[test]
    fn past_the_learnt_capacity_the_probe_follows_the_goodput() {
        let t0 = Instant::now();
        let mut a = saturated_at(1e6, t0);
        // Climb back to the capacity, then probe past it while the link takes
        // everything (but not so much as to look like a new, faster link).
        run(&mut a, t0, (100, 4000), Signal::Increase, |t| t.min(1.1e6));
        let probing = a.target_bps();
        assert!(probing > 1e6, "{probing}");
        run(&mut a, t0, (4100, 6000), Signal::Increase, |t| t.min(1.1e6));
        // 8 %/s at most, and never more than 1.2x the goodput.
        assert!(a.target_bps() <= 1.2 * 1.1e6 + 1.0, "{}", a.target_bps());
        assert!(a.target_bps() <= probing * 1.08f64.powf(2.0) + 1.0);
        assert!(a.capacity.is_some());
    }

    #[test]
    fn a_faster_link_is_recognised_and_ramped_into_quickly() {
        let t0 = Instant::now();
        let mut a = saturated_at(4e5, t0);
        // Goodput well above the old capacity (more than three deviations):
        // the estimate goes, and the ramp starts two doublings in (32 %/s
        // rather than 8 %/s), reaching 100 %/s within the second.
        let before = a.target_bps();
        run(&mut a, t0, (100, 1000), Signal::Increase, |_| 6e5);
        assert!(a.capacity.is_none());
        let growth = a.target_bps() / before;
        assert!(growth > 1.5, "{growth}");
    }

    #[test]
    fn target_is_capped_by_goodput() {
        let t0 = Instant::now();
        let mut a = Aimd::new(1e6, 1e4, 1e8);
        run(&mut a, t0, (0, 20_000), Signal::Increase, |_| 2e5);
        assert_eq!(
            a.target_bps(),
            1e6,
            "above the cap: may not grow, is not cut"
        );
        let mut b = Aimd::new(1e5, 1e4, 1e8);
        run(&mut b, t0, (0, 20_000), Signal::Increase, |_| 2e5);
        assert!((b.target_bps() - 4.1e5).abs() < 1.0, "{}", b.target_bps());
    }

    #[test]
    fn the_link_rate_holds_and_lifts_the_target_and_sets_decreases() {
        let t0 = Instant::now();
        let busy = |b: f64, p: Option<f64>| Evidence {
            proven_bps: p,
            link_bps: Some(b),
        };
        // A ramp with the goodput keeping up would go on for ever; the link's
        // rate of 2 Mbit/s stops it there.
        let mut a = Aimd::new(1e6, 1e4, 1e8);
        let mut now = t0;
        for ms in (0..20_000).step_by(100) {
            now = t0 + MS * ms;
            let g = a.target_bps();
            a.update(Signal::Increase, Some(g), busy(2e6, None), RTT, now);
        }
        assert_eq!(a.target_bps(), 2e6);
        // A target already above it is brought down to it, whatever the signal.
        let mut b = Aimd::new(3e6, 1e4, 1e8);
        b.update(Signal::Hold, Some(3e6), busy(2.5e6, None), RTT, t0);
        assert_eq!(b.target_bps(), 2.5e6);
        // A proven speed above it says the link got faster: it no longer holds.
        b.update(
            Signal::Increase,
            Some(3e6),
            busy(2.5e6, Some(4e6)),
            RTT,
            t0 + 100 * MS,
        );
        assert!(b.target_bps() > 3e6, "{}", b.target_bps());
        // A link rate well above the target lifts it to 90 % of that rate
        // at once, as a proven speed does.
        let mut d = Aimd::new(1e6, 1e4, 1e8);
        d.update(Signal::Increase, Some(1e6), busy(2e6, None), RTT, t0);
        assert_eq!(d.target_bps(), 1.8e6);
        // A goodput that still remembers a faster link: the cut follows the
        // link rate, which reads the link as it is.
        assert!(a.update(
            Signal::Decrease,
            Some(2e6),
            busy(4e5, None),
            RTT,
            now + 200 * MS
        ));
        assert!(
            (a.target_bps() - 0.85 * 4e5).abs() < 1.0,
            "{}",
            a.target_bps()
        );
        // Without a goodput, the link rate alone.
        let mut c = Aimd::new(1e6, 1e4, 1e8);
        assert!(c.update(Signal::Decrease, None, busy(6e5, None), RTT, t0));
        assert!(
            (c.target_bps() - 0.85 * 6e5).abs() < 1.0,
            "{}",
            c.target_bps()
        );
    }

    #[test]
    fn restart_keeps_the_capacity_and_stays_in_range() {
        let t0 = Instant::now();
        let mut a = saturated_at(4e5, t0);
        a.restart(1e5);
        assert_eq!(a.target_bps(), 1e5);
        assert!(a.capacity.is_some());
        a.restart(1.0);
        assert_eq!(a.target_bps(), 1e4);
    }
}
