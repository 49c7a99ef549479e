//! The link's rate read directly from PUBACKs, not inferred from a delay trend.
//!
//! A FIFO bottleneck of rate `C` behind a fixed delay `P` (propagation both
//! ways and the broker's turnaround) acks a frame of `b` bits handed over at
//! `h` at `a = max(h + P, a_prev) + b / C`: either it found the link idle
//! and took `b / C + P`, or it queued behind the previous frame and its ack
//! came `b / C` after that frame's. Both branches read `C`:
//!
//! * [`BusyRate`]: the gaps between the PUBACKs of frames that queued;
//! * [`PathDelay`]: a line through idle crossings of frames of different
//!   sizes has `1 / C` as its slope and `P` as its intercept, so the latest
//!   crossings' times less `P` read `C` while the link idles between
//!   frames, when no queue (and so no busy rate) exists; and `P` tells the
//!   two branches apart better than the smallest RTT, which at the start of
//!   a stream is mostly the first frames' own serialisation.
//!
//! [`LinkRate`] keeps both and reports the fresher reading.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::meter::MIN_SPAN;

/// How long a busy-link reading counts: the link's rate changes less often
/// than its queue comes and goes (a link found faster since shows in the
/// idle crossings, or in the controller's proven speed).
const BUSY_WINDOW: Duration = Duration::from_secs(10);
/// The busy rate is read over the latest readings that span this much of
/// the link's busy time.
const BUSY_SPAN: Duration = Duration::from_secs(1);
/// Idle-link crossings the path fit uses, at most.
const PATH_FIT_LEN: usize = 16;
/// The fit needs frames this much apart in size (largest over smallest).
const PATH_FIT_SPREAD: f64 = 1.2;
/// Every crossing must lie this close to the fitted line: a share of its
/// serialisation time (its time less the fitted delay), plus 2 ms for timer
/// and scheduling noise. Relative to the whole time, a line through two
/// clusters of crossings, from two links, would pass.
const PATH_FIT_TOLERANCE: f64 = 0.1;
const PATH_FIT_SLACK_S: f64 = 2e-3;
/// The fitted line must rise by this much of serialisation time from the
/// smallest crossing to the largest: the intercept is extrapolated from that
/// lever, so on a shorter one the timing noise moves it by tens of ms. (At
/// 20 ms, frames at 10 fps with only the scene's variation in size gave no
/// fit, and the 1.5x rise in `tests/rate_sim.rs` settled at 80 %.)
const PATH_FIT_LEVER_S: f64 = 10e-3;
/// Crossings read the link's rate for this long.
const CROSSING_FRESH: Duration = Duration::from_secs(2);
/// The crossed speed totals the latest crossings' serialisation time up to
/// [`MIN_SPAN`], and needs at least this much of it: one small frame's few
/// ms, against 2 ms of timing noise, would read anything.
const CROSSED_MIN_S: f64 = 0.1;

/// The link's rate, from whichever of its two readings is fresher.
#[derive(Debug, Default)]
pub(crate) struct LinkRate {
    busy: BusyRate,
    path: PathDelay,
}

impl LinkRate {
    /// `bits` handed over at `handed` were acked at `now` (acks in send
    /// order); `rtt_min` is the path's smallest RTT, if known.
    pub fn on_ack(&mut self, now: Instant, handed: Instant, bits: u64, rtt_min: Option<Duration>) {
        // The fixed delay is the tighter margin; the smallest RTT bounds it
        // and stands in for it until a fit exists.
        let margin = rtt_min.map(|r| self.path.delay(now).map_or(r, |p| p.min(r)));
        self.busy.on_ack(now, handed, bits, margin);
        self.path.on_ack(now, handed, bits);
    }

    /// Forget everything (the connection, and so the path, is new).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// The rate was just cut at `at`: the link may have changed, and a line
    /// through crossings of two links fits neither, so crossings so far, and
    /// those of frames handed over before the cut, are forgotten. Busy
    /// readings stay: the latest second of them follows a slower link
    /// within that second.
    pub fn restart(&mut self, at: Instant) {
        self.path.crossings.clear();
        self.path.since = Some(at);
    }

    /// The link's rate, bits/s: the busy rate or the crossed speed (crossings
    /// of the last [`CROSSING_FRESH`]), whichever was read later.
    pub fn bps(&mut self, now: Instant) -> Option<f64> {
        let busy = self.busy.reading(now);
        match (busy, self.path.crossed(now)) {
            (Some(b), Some(c)) => Some(if c.0 > b.0 { c.1 } else { b.1 }),
            (b, c) => b.or(c).map(|r| r.1),
        }
    }
}

/// The link's rate while it had work queued. A frame handed over more than
/// the path's fixed delay (or, before that is known, its smallest RTT)
/// before the previous frame's PUBACK was waiting before that frame had left
/// the bottleneck (its last bit left no earlier than its PUBACK less the
/// return trip, which is part of both), so the gap between the two PUBACKs
/// is the time the link took to carry it: the bottleneck's rate, read the
/// way a receiver reads it from back-to-back packets. Unlike the
/// controller's delivery floor, no propagation delay or ack path is in it
/// (at 4 Mbit/s and 3 fps those made the floor read 15 % low). Handed over
/// later, within the margin, the frame may have found the link idle, and the
/// gap would read the send rate instead. Bits over gaps of the latest
/// readings spanning [`BUSY_SPAN`] (none older than [`BUSY_WINDOW`]), so
/// acks a broker batched (a tiny gap, then a long one) average out.
#[derive(Debug, Default)]
struct BusyRate {
    last_ack: Option<Instant>,
    /// (acked at, bits, gap since the previous ack), oldest first.
    samples: VecDeque<(Instant, u64, Duration)>,
}

impl BusyRate {
    /// `margin` bounds the return part of the path's round trip, if known.
    fn on_ack(&mut self, now: Instant, handed: Instant, bits: u64, margin: Option<Duration>) {
        let queued = |prev: &Instant| margin.is_some_and(|m| handed + m < *prev);
        if let Some(prev) = self.last_ack.filter(queued) {
            self.samples
                .push_back((now, bits, now.saturating_duration_since(prev)));
        }
        self.last_ack = Some(now);
    }

    /// (latest reading's time, busy rate in bits/s); `None` without
    /// [`MIN_SPAN`] of back-to-back acks in the last [`BUSY_WINDOW`].
    fn reading(&mut self, now: Instant) -> Option<(Instant, f64)> {
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
        let latest = self.samples.back()?.0;
        (gaps >= MIN_SPAN).then(|| (latest, bits as f64 / gaps.as_secs_f64()))
    }

    #[cfg(test)]
    fn bps(&mut self, now: Instant) -> Option<f64> {
        self.reading(now).map(|r| r.1)
    }
}

/// The path's fixed delay, fitted through idle crossings: frames handed
/// over after the previous PUBACK, with nothing of ours ahead of them. A
/// least-squares line through the recent ones (frames of different sizes,
/// as in any ramp or from the scene's own variation) has the delay as its
/// intercept, if they all lie on it.
#[derive(Debug, Default)]
struct PathDelay {
    last_ack: Option<Instant>,
    /// (acked at, bits, seconds from hand-over to PUBACK), oldest first.
    crossings: VecDeque<(Instant, f64, f64)>,
    /// Frames handed over before this (the last cut) are no crossings.
    since: Option<Instant>,
}

impl PathDelay {
    fn on_ack(&mut self, now: Instant, handed: Instant, bits: u64) {
        // Handed over after the previous PUBACK, nothing of ours can have
        // been ahead of it. Frames handed over up to the fixed delay before
        // it found the link idle too, but counting them (with the delay
        // fitted so far) made the simulations worse: a delay fitted a
        // little high lets frames that queued into the fit.
        let queued = matches!(self.last_ack, Some(prev) if handed < prev);
        let before_cut = self.since.is_some_and(|s| handed < s);
        if !queued && !before_cut {
            let took = now.saturating_duration_since(handed).as_secs_f64();
            self.crossings.push_back((now, bits as f64, took));
            if self.crossings.len() > PATH_FIT_LEN {
                self.crossings.pop_front();
            }
        }
        self.last_ack = Some(now);
    }

    /// The fixed delay, from the longest run of latest crossings (of the
    /// last [`BUSY_WINDOW`]) that spans enough sizes and lies on a rising
    /// line meeting the axis at or above zero. Older crossings that break
    /// the line crossed another link: the one before a change of speed.
    fn delay(&mut self, now: Instant) -> Option<Duration> {
        self.fitted(now).map(|(_, d)| Duration::from_secs_f64(d))
    }

    /// (index of the first crossing of the fitted run, delay in seconds).
    fn fitted(&mut self, now: Instant) -> Option<(usize, f64)> {
        while self
            .crossings
            .front()
            .is_some_and(|&(t, _, _)| now.saturating_duration_since(t) > BUSY_WINDOW)
        {
            self.crossings.pop_front();
        }
        let n = self.crossings.len();
        (0..n.saturating_sub(3))
            .find_map(|from| fit(self.crossings.range(from..)).map(|d| (from, d)))
    }

    /// (acked at, bits/s): the bits of the latest crossings of the fitted
    /// run (within [`CROSSING_FRESH`], spanning up to [`MIN_SPAN`] of
    /// serialisation) over their times less the fixed delay. The
    /// controller's delivery floor, the same without the delay taken out,
    /// reads low by the delay's share, and so misses a link that got faster
    /// while frames stay sized for the old one.
    fn crossed(&mut self, now: Instant) -> Option<(Instant, f64)> {
        let (from, delay) = self.fitted(now)?;
        let at = self.crossings.back()?.0;
        let (mut bits, mut serialised) = (0.0, 0.0);
        for &(t, b, took) in self.crossings.range(from..).rev() {
            if serialised >= MIN_SPAN.as_secs_f64()
                || now.saturating_duration_since(t) > CROSSING_FRESH
            {
                break;
            }
            bits += b;
            serialised += (took - delay).max(0.0);
        }
        (serialised >= CROSSED_MIN_S).then(|| (at, bits / serialised))
    }
}

/// The intercept (seconds) of a least-squares line through `crossings`
/// (bits, seconds), if they span [`PATH_FIT_SPREAD`] in size and
/// [`PATH_FIT_LEVER_S`] in serialisation time, and every one lies on it:
/// crossings of two links do not lie on one line, and their "intercept" is
/// no delay.
fn fit<'a>(crossings: impl Iterator<Item = &'a (Instant, f64, f64)> + Clone) -> Option<f64> {
    let (n, lo, hi, sx, sy) = crossings.clone().fold(
        (0.0, f64::INFINITY, 0.0f64, 0.0, 0.0),
        |(n, lo, hi, sx, sy), c| (n + 1.0, lo.min(c.1), hi.max(c.1), sx + c.1, sy + c.2),
    );
    if n < 4.0 || hi < PATH_FIT_SPREAD * lo {
        return None;
    }
    let (mx, my) = (sx / n, sy / n);
    let (sxx, sxy) = crossings.clone().fold((0.0, 0.0), |(sxx, sxy), c| {
        (sxx + (c.1 - mx) * (c.1 - mx), sxy + (c.1 - mx) * (c.2 - my))
    });
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let fits = crossings.into_iter().all(|c| {
        let miss = (c.2 - intercept - slope * c.1).abs();
        miss <= PATH_FIT_TOLERANCE * (c.2 - intercept).max(0.0) + PATH_FIT_SLACK_S
    });
    let lever = slope * (hi - lo);
    (slope > 0.0 && intercept >= 0.0 && lever >= PATH_FIT_LEVER_S && fits).then_some(intercept)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bits` handed over `handed_ms` after `t0` cross an idle link of
    /// `kbps` with 40 ms of fixed delay.
    fn cross(p: &mut PathDelay, t0: Instant, handed_ms: u64, bits: u64, kbps: u64) {
        let ms = |m: u64| t0 + Duration::from_millis(m);
        p.on_ack(ms(handed_ms + 40 + bits / kbps), ms(handed_ms), bits);
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
        // Old readings expire; no margin, no reading.
        assert_eq!(b.bps(ms(17_400)), None);
        b.on_ack(ms(17_500), ms(16_000), 600_000, None);
        b.on_ack(ms(17_800), ms(16_000), 600_000, None);
        assert_eq!(b.bps(ms(17_800)), None);
    }

    #[test]
    fn the_path_delay_is_the_intercept_of_idle_crossings() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let mut p = PathDelay::default();
        // A 2 Mbit/s link with 40 ms of fixed delay; a ramp from 280 to 580
        // kbit frames every 333 ms, each handed over after the previous ack.
        for i in 0..3u64 {
            let bits = 280_000 + 100_000 * i;
            cross(&mut p, t0, 333 * i, bits, 2_000);
        }
        // Too few crossings yet.
        assert_eq!(p.delay(ms(1_000)), None);
        for i in 3..6u64 {
            let bits = 280_000 + 60_000 * i;
            cross(&mut p, t0, 333 * i, bits, 2_000);
        }
        let d = p.delay(ms(2_000)).unwrap();
        assert!((d.as_secs_f64() - 0.040).abs() < 0.002, "{d:?}");
        // A frame handed over before the previous ack may have queued
        // behind it: not a crossing.
        let n = p.crossings.len();
        p.on_ack(ms(2_500), ms(1_900), 900_000);
        assert_eq!(p.crossings.len(), n);
        assert!((p.delay(ms(2_500)).unwrap().as_secs_f64() - 0.040).abs() < 0.002);
        // Frames of one size say nothing about the intercept.
        let mut q = PathDelay::default();
        for i in 0..8u64 {
            q.on_ack(ms(333 * i + 240), ms(333 * i), 400_000);
        }
        assert_eq!(q.delay(ms(3_000)), None);
        // Old crossings expire.
        assert_eq!(p.delay(ms(20_000)), None);
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
    fn crossings_of_two_links_fit_no_delay() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let mut p = PathDelay::default();
        // Large frames across 2 Mbit/s, then small ones across 400 kbit/s,
        // all with 40 ms of fixed delay: each set alone is a line, together
        // they are not, though least squares puts a rising line through
        // them with a "delay" of 273 ms (every crossing within 27 ms of it).
        for i in 0..4u64 {
            let bits = 500_000 + 40_000 * i;
            cross(&mut p, t0, 400 * i, bits, 2_000);
        }
        let d = p.delay(ms(1_600)).unwrap();
        assert!((d.as_secs_f64() - 0.040).abs() < 0.001, "{d:?}");
        for i in 4..8u64 {
            let bits = 90_000 + 5_000 * (i - 4);
            cross(&mut p, t0, 400 * i, bits, 400);
        }
        assert_eq!(p.delay(ms(3_200)), None);
        // Once the new link's crossings span enough sizes, they alone give
        // the delay again: the older ones, off their line, are left out.
        for i in 8..12u64 {
            let bits = 80_000 + 20_000 * (i - 8);
            cross(&mut p, t0, 400 * i, bits, 400);
        }
        let d = p.delay(ms(4_800)).unwrap();
        assert!((d.as_secs_f64() - 0.040).abs() < 0.001, "{d:?}");
    }

    #[test]
    fn the_crossed_speed_stands_timing_noise_and_small_frames_read_nothing() {
        let t0 = Instant::now();
        let at = |us: u64| t0 + Duration::from_micros(us);
        // A frame every 150 ms across a 4 Mbit/s link with 40 ms of fixed
        // delay (each handed over after the previous PUBACK), and up to 2 ms
        // of timing noise on every PUBACK.
        let noise = [2_000u64, 0, 1_500, 300, 1_900, 100, 1_000, 2_000];
        let run = |sizes: &dyn Fn(u64) -> u64| {
            let mut p = PathDelay::default();
            for i in 0..16u64 {
                let bits = sizes(i);
                let handed = 150_000 * i;
                let ack = handed + 40_000 + bits / 4 + noise[i as usize % noise.len()];
                p.on_ack(at(ack), at(handed), bits);
            }
            p.crossed(at(2_500_000)).map(|c| c.1)
        };
        // 200 to 300 kbit frames: the speed is read within 3 % (the fitted
        // delay is 2 ms off, and that is most of the error).
        let speed = run(&|i| 200_000 + 33_000 * (i % 4)).unwrap();
        assert!((speed / 4e6 - 1.0).abs() < 0.03, "{speed}");
        // 20 to 30 kbit frames: 5 to 7.5 ms each, a lever too short for the
        // fit, and too little serialisation time to total against the
        // noise: no reading rather than a wild one.
        assert_eq!(run(&|i| 20_000 + 3_300 * (i % 4)), None);
    }

    #[test]
    fn the_link_rate_is_the_fresher_reading() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let rtt = Some(Duration::from_millis(300));
        let mut l = LinkRate::default();
        assert_eq!(l.bps(t0), None);
        // A 2 Mbit/s link with 40 ms of fixed delay, frames every 400 ms that
        // grow from 400 to 700 kbit: idle crossings, and no queue.
        for i in 0..4u64 {
            let bits = 400_000 + 100_000 * i;
            l.on_ack(ms(400 * i + 40 + bits / 2_000), ms(400 * i), bits, rtt);
        }
        let crossed = l.bps(ms(1_700)).unwrap();
        assert!((crossed - 2e6).abs() < 2e3, "{crossed}");
        // The smallest RTT (300 ms) would take these for idle crossings;
        // the fitted 40 ms shows that each frame, handed over 60 ms before
        // the previous ack, queued: the link got slower, 1 Mbit/s.
        let mut ack = 1_200 + 40 + 350;
        for _ in 0..4 {
            ack += 700;
            l.on_ack(ms(ack), ms(ack - 760), 700_000, rtt);
        }
        let busy = l.bps(ms(ack)).unwrap();
        assert!((busy - 1e6).abs() < 1.0, "{busy}");
        // A cut forgets the crossings; a new connection everything.
        l.restart(ms(ack));
        assert!(l.path.delay(ms(ack)).is_none());
        l.reset();
        assert_eq!(l.bps(ms(ack)), None);
    }
}
