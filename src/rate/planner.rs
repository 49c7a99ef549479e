//! Per captured frame: skip it, or code it at which gain.

use std::time::{Duration, Instant};

use super::bucket::TokenBucket;
use super::model::RateModel;
use super::RateError;

/// How long the ideal gain must stay above the hysteresis band before the
/// gain goes up (down is immediate), counted in decisions: 3 at 10 fps. At
/// low frame rates a fixed count of frames would hold a faster link back
/// for seconds, so it is time: at least one decision.
const UP_PERSIST: Duration = Duration::from_millis(300);
/// The bucket banks at least this many frames' worth of the per-frame budget.
const BANK_FRAMES: f64 = 2.0;
/// ... and at least this many `gain_min` frames, so a link too slow for
/// `gain_min` at the full frame rate still gets every n-th frame through.
const BANK_FLOOR_FRAMES: f64 = 1.5;
const FALLBACK_FPS: f64 = 10.0;
/// The daemon's hysteresis: the gain holds while the ideal stays within
/// ±10 % of it.
pub const HYSTERESIS: f64 = 0.1;
const FALLBACK_HYSTERESIS: f64 = HYSTERESIS;

/// How the gain is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Follow the congestion controller's target.
    Auto,
    /// Always this gain (clamped to the range); no budget, no skipping.
    FixedGain(f32),
    /// Follow this target (kbit/s) instead of the controller's.
    FixedKbps(f64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlannerConfig {
    /// Frames per second the planner is asked about; sets the per-frame budget.
    pub fps: f64,
    pub gain_min: f32,
    pub gain_max: f32,
    /// Relative change of the ideal gain (e.g. 0.1) needed before the gain moves up or down.
    pub hysteresis: f64,
}

impl PlannerConfig {
    /// Check the settings; [`Planner::new`] repairs bad ones instead of failing.
    pub fn validate(&self) -> Result<(), RateError> {
        let bad = |field, problem: &str| {
            Err(RateError::Config {
                field,
                problem: problem.into(),
            })
        };
        if !(self.fps.is_finite() && self.fps > 0.0) {
            return bad("fps", "must be a finite number above 0");
        }
        if !(self.gain_min.is_finite() && self.gain_min > 0.0) {
            return bad("gain_min", "must be a finite number above 0");
        }
        if !(self.gain_max.is_finite() && self.gain_max >= self.gain_min) {
            return bad("gain_max", "must be finite and at least gain_min");
        }
        if !(0.0..=1.0).contains(&self.hysteresis) {
            return bad("hysteresis", "must lie within 0..=1");
        }
        Ok(())
    }

    /// Valid values, with the gain range inside what the model knows.
    fn sanitized(self, model: &RateModel) -> Self {
        if let Err(e) = self.validate() {
            log::warn!("rate planner: {e}; using safe values instead");
        }
        let (model_min, model_max) = model.gain_range();
        let (mut lo, mut hi) = (
            self.gain_min.clamp(model_min, model_max),
            self.gain_max.clamp(model_min, model_max),
        );
        if lo.is_nan() || hi.is_nan() || lo > hi {
            (lo, hi) = (model_min, model_max);
        }
        Self {
            fps: if self.fps.is_finite() && self.fps > 0.0 {
                self.fps
            } else {
                FALLBACK_FPS
            },
            gain_min: lo,
            gain_max: hi,
            hysteresis: if self.hysteresis.is_nan() {
                FALLBACK_HYSTERESIS
            } else {
                self.hysteresis.clamp(0.0, 1.0)
            },
        }
    }
}

/// What to do with one captured frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Code it at `gain`. `budget_bits` is what the frame may cost without the
    /// rate exceeding the target (the bucket's balance); in fixed-gain mode,
    /// the predicted size.
    Encode { gain: f32, budget_bits: f64 },
    /// Do not code it; the caller counts it. The only reason is `"rate"`.
    Skip { reason: &'static str },
}

/// Chooses each frame's gain; see the [module docs](super).
#[derive(Debug)]
pub struct Planner {
    cfg: PlannerConfig,
    model: RateModel,
    mode: Mode,
    gain: f32,
    /// False until the first budgeted decision of the current mode, which takes
    /// the ideal gain directly instead of creeping up to it.
    started: bool,
    up_streak: u32,
    bucket: TokenBucket,
    last_decide: Option<Instant>,
    /// Share of each refill that may repay `aux_debt` (0: no second layer).
    aux_share: f64,
    /// Steer the gain to `(1 - aux_share)` of the target (the aux layer goes
    /// with every frame); also done while `aux_debt` is owed.
    aux_streaming: bool,
    /// Bits of the aux layer not yet repaid from the refills.
    aux_debt: f64,
}

impl Planner {
    pub fn new(cfg: PlannerConfig, model: RateModel, mode: Mode) -> Self {
        let cfg = cfg.sanitized(&model);
        let mut planner = Self {
            gain: cfg.gain_min,
            cfg,
            model,
            mode,
            started: false,
            up_streak: 0,
            bucket: TokenBucket::default(),
            last_decide: None,
            aux_share: 0.0,
            aux_streaming: false,
            aux_debt: 0.0,
        };
        if let Mode::FixedGain(g) = mode {
            planner.gain = planner.clamp_gain(g);
        }
        planner
    }

    /// Switch modes. A different kind of mode starts the budget afresh; a new
    /// value within the same kind (another fixed target) keeps it and lets
    /// the hysteresis act.
    pub fn set_mode(&mut self, mode: Mode) {
        if std::mem::discriminant(&mode) != std::mem::discriminant(&self.mode) {
            self.bucket.reset();
            self.started = false;
            self.up_streak = 0;
            self.last_decide = None;
            self.aux_debt = 0.0;
        }
        self.mode = mode;
        if let Mode::FixedGain(g) = mode {
            self.gain = self.clamp_gain(g);
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Decide about the frame captured at `now`. `target_kbps` is the
    /// controller's target, used in [`Mode::Auto`] only.
    pub fn decide(&mut self, target_kbps: f64, now: Instant) -> Decision {
        let elapsed = self.last_decide.map_or_else(
            || Duration::from_secs_f64(1.0 / self.cfg.fps),
            |t| now.saturating_duration_since(t),
        );
        self.last_decide = Some(now);
        let kbps = match self.mode {
            Mode::FixedGain(g) => {
                self.gain = self.clamp_gain(g);
                return Decision::Encode {
                    gain: self.gain,
                    budget_bits: self.model.bits_at(self.gain),
                };
            }
            Mode::Auto => target_kbps,
            Mode::FixedKbps(kbps) => kbps,
        };
        let bps = if kbps.is_finite() && kbps > 0.0 {
            kbps * 1e3
        } else {
            0.0
        };
        self.plan(bps, elapsed.as_secs_f64())
    }

    /// A frame was coded at `gain` and came out at `bits`: teach the model, pay the bucket.
    pub fn observe(&mut self, gain: f32, bits: f64) {
        self.model.observe(gain, bits);
        if matches!(self.mode, Mode::FixedGain(_)) || !(bits.is_finite() && bits >= 0.0) {
            return;
        }
        self.bucket.settle(bits);
    }

    /// The most of the target a second layer (the aux layer) may take, 0..=0.95.
    pub fn set_aux_share(&mut self, share: f64) {
        self.aux_share = if share.is_finite() {
            share.clamp(0.0, 0.95)
        } else {
            0.0
        };
    }

    /// While `on`, the gain is steered to `(1 - share)` of the target, leaving
    /// the rest to an aux frame with every frame.
    pub fn set_aux_streaming(&mut self, on: bool) {
        self.aux_streaming = on;
    }

    /// A second-layer frame of `bits` went out: pay for it from the budget
    /// without teaching the rate model. The bits are repaid from the refills,
    /// at most the aux share of each, so the machine layer keeps the rest;
    /// until they are, its gain is steered to that rest.
    /// Fixed-gain mode has no budget and ignores it.
    pub fn charge(&mut self, bits: f64) {
        if matches!(self.mode, Mode::FixedGain(_)) || !(bits.is_finite() && bits > 0.0) {
            return;
        }
        self.aux_debt += bits;
    }

    /// Aux bits charged and not yet repaid.
    pub fn aux_debt(&self) -> f64 {
        self.aux_debt
    }

    /// The current gain.
    pub fn gain(&self) -> f32 {
        self.gain
    }

    pub fn model(&self) -> &RateModel {
        &self.model
    }

    fn plan(&mut self, bps: f64, elapsed_s: f64) -> Decision {
        let per_frame = bps / self.cfg.fps;
        let floor_bits = self.model.bits_at(self.cfg.gain_min);
        let depth = (BANK_FRAMES * per_frame).max(BANK_FLOOR_FRAMES * floor_bits);
        let refill = bps * elapsed_s;
        let repay = self.aux_debt.min(self.aux_share * refill).max(0.0);
        self.aux_debt -= repay;
        self.bucket.refill(refill - repay, depth);
        // The machine layer gets at least `1 - share` of the refills while the
        // aux layer owes bits: aim there, rather than be squeezed into skips.
        let machine_share = if self.aux_streaming || self.aux_debt > 0.0 {
            1.0 - self.aux_share
        } else {
            1.0
        };
        self.steer(per_frame * machine_share);
        let balance = self.bucket.level();
        let mut cost = self.model.bits_at(self.gain);
        if cost > balance {
            // The bank cannot pay for this gain: come down now, as far as it takes.
            let Some(g) = self.fit(balance) else {
                return Decision::Skip { reason: "rate" };
            };
            self.gain = g;
            self.up_streak = 0;
            cost = self.model.bits_at(g);
        }
        self.bucket.reserve(cost);
        Decision::Encode {
            gain: self.gain,
            budget_bits: balance,
        }
    }

    /// Move the gain toward the ideal for `per_frame` bits, with hysteresis.
    fn steer(&mut self, per_frame: f64) {
        let h = self.cfg.hysteresis;
        // Aim half the band below the budget, so that the model's noise does
        // not push the chosen gain over it on the very next frame.
        let ideal = self
            .fit(per_frame / (1.0 + h / 2.0))
            .unwrap_or(self.cfg.gain_min);
        if !self.started {
            self.started = true;
            self.gain = ideal;
            return;
        }
        let over_budget = self.model.bits_at(self.gain) > per_frame;
        if over_budget || f64::from(ideal) < f64::from(self.gain) / (1.0 + h) {
            self.gain = ideal.min(self.gain);
            self.up_streak = 0;
        } else if f64::from(ideal) > f64::from(self.gain) * (1.0 + h) {
            self.up_streak += 1;
            let persist = (UP_PERSIST.as_secs_f64() * self.cfg.fps).round().max(1.0) as u32;
            if self.up_streak >= persist {
                self.gain = ideal;
                self.up_streak = 0;
            }
        } else {
            self.up_streak = 0;
        }
    }

    /// The largest gain in range predicted to fit `bits`.
    fn fit(&self, bits: f64) -> Option<f32> {
        // Also refuses a NaN budget.
        if bits.is_nan() || self.model.bits_at(self.cfg.gain_min) > bits {
            return None;
        }
        let g = self.model.gain_for_bits(bits).unwrap_or(self.cfg.gain_min);
        Some(g.clamp(self.cfg.gain_min, self.cfg.gain_max))
    }

    fn clamp_gain(&self, g: f32) -> f32 {
        if g.is_nan() {
            self.cfg.gain_min
        } else {
            g.clamp(self.cfg.gain_min, self.cfg.gain_max)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate::model::tests::model;

    const FPS: f64 = 10.0;

    fn planner(mode: Mode, hysteresis: f64) -> Planner {
        let cfg = PlannerConfig {
            fps: FPS,
            gain_min: 1.0,
            gain_max: 64.0,
            hysteresis,
        };
        Planner::new(cfg, model(), mode)
    }

    /// A scene that codes `scale` times the calibration size, ±`noise` per frame.
    struct Scene {
        truth: RateModel,
        scale: f64,
        noise: f64,
        rng: fastrand::Rng,
    }

    impl Scene {
        fn new(scale: f64, noise: f64) -> Self {
            Self {
                truth: model(),
                scale,
                noise,
                rng: fastrand::Rng::with_seed(11),
            }
        }

        fn code(&mut self, gain: f32) -> f64 {
            let jitter = 1.0 + self.noise * (2.0 * self.rng.f64() - 1.0);
            self.truth.bits_at(gain) * self.scale * jitter
        }
    }

    struct Run {
        bits: Vec<f64>,
        gains: Vec<f32>,
        skips: usize,
    }

    /// Drive `frames` frames at FPS with a fixed controller target.
    fn drive(p: &mut Planner, scene: &mut Scene, target_kbps: f64, frames: usize) -> Run {
        let t0 = Instant::now();
        let mut run = Run {
            bits: vec![],
            gains: vec![],
            skips: 0,
        };
        for i in 0..frames {
            let now = t0 + Duration::from_secs_f64(i as f64 / FPS);
            match p.decide(target_kbps, now) {
                Decision::Encode { gain, .. } => {
                    let bits = scene.code(gain);
                    p.observe(gain, bits);
                    run.bits.push(bits);
                    run.gains.push(gain);
                }
                Decision::Skip { reason } => {
                    assert_eq!(reason, "rate");
                    run.skips += 1;
                }
            }
        }
        run
    }

    fn changes(gains: &[f32]) -> usize {
        gains.windows(2).filter(|w| w[0] != w[1]).count()
    }

    #[test]
    fn fixed_gain_is_always_that_gain() {
        let mut p = planner(Mode::FixedGain(12.5), 0.1);
        let mut scene = Scene::new(3.0, 0.2);
        for target in [0.0, 50.0, f64::NAN, 1e6] {
            let run = drive(&mut p, &mut scene, target, 20);
            assert_eq!(run.skips, 0);
            assert!(run.gains.iter().all(|&g| g == 12.5), "{:?}", run.gains);
        }
        // Out-of-range requests are clamped, not refused.
        p.set_mode(Mode::FixedGain(500.0));
        assert!(
            matches!(p.decide(1.0, Instant::now()), Decision::Encode { gain, .. } if gain == 64.0)
        );
        assert_eq!(p.gain(), 64.0);
    }

    #[test]
    fn fixed_kbps_keeps_the_average_within_budget() {
        for (kbps, scale) in [(1500.0, 1.0), (3000.0, 1.7), (800.0, 0.6)] {
            let mut p = planner(Mode::FixedKbps(kbps), 0.1);
            let mut scene = Scene::new(scale, 0.2);
            let frames = 600;
            // The controller's target is ignored in this mode.
            let run = drive(&mut p, &mut scene, 1.0, frames);
            let budget = kbps * 1e3 / FPS;
            let avg = run.bits.iter().sum::<f64>() / frames as f64;
            // Only the last frame's overshoot can still be owed: 0.1 % over 600 frames.
            assert!(
                avg <= budget * 1.001,
                "{kbps} kbit/s: {avg} bits/frame > {budget}"
            );
            assert!(avg > 0.8 * budget, "{kbps} kbit/s: only {avg} of {budget}");
            assert!(run.skips <= 6, "{kbps} kbit/s: {} skips", run.skips);
        }
    }

    #[test]
    fn below_gain_min_frames_are_skipped_and_the_rate_holds() {
        // gain_min codes ~66 kbit; 300 kbit/s at 10 fps is 30 kbit a frame.
        let mut p = planner(Mode::FixedKbps(300.0), 0.1);
        let mut scene = Scene::new(1.0, 0.1);
        let frames = 500;
        let run = drive(&mut p, &mut scene, 0.0, frames);
        let sent_kbps = run.bits.iter().sum::<f64>() / (frames as f64 / FPS) / 1e3;
        // Up to one frame may still be owed at the end: 66 kbit over 50 s.
        assert!(sent_kbps <= 300.0 * 1.005, "{sent_kbps}");
        assert!(sent_kbps > 250.0, "{sent_kbps}");
        assert!(run.gains.iter().all(|&g| g == 1.0));
        // About 30/66 of the frames get through.
        let coded = run.bits.len() as f64 / frames as f64;
        assert!((coded - 0.45).abs() < 0.05, "{coded}");
    }

    #[test]
    fn hysteresis_prevents_flapping_on_a_steady_target() {
        let frames = 600;
        let mut steady = planner(Mode::Auto, 0.1);
        let run = drive(&mut steady, &mut Scene::new(1.3, 0.15), 2000.0, frames);
        let mut twitchy = planner(Mode::Auto, 0.0);
        let run0 = drive(&mut twitchy, &mut Scene::new(1.3, 0.15), 2000.0, frames);
        let (c, c0) = (changes(&run.gains), changes(&run0.gains));
        assert!(
            c <= 8,
            "hysteresis 0.1: {c} gain changes in {frames} frames"
        );
        assert!(
            c0 > 3 * c.max(5),
            "hysteresis 0: only {c0} changes (0.1 had {c})"
        );
    }

    #[test]
    fn gain_goes_down_at_once_and_up_slowly() {
        let mut p = planner(Mode::Auto, 0.1);
        let mut scene = Scene::new(1.0, 0.0);
        let t0 = Instant::now();
        let mut frame = 0u32;
        let mut step = |p: &mut Planner, kbps: f64| {
            let now = t0 + Duration::from_secs_f64(f64::from(frame) / FPS);
            frame += 1;
            let d = p.decide(kbps, now);
            if let Decision::Encode { gain, .. } = d {
                p.observe(gain, scene.code(gain));
            }
            d
        };
        for _ in 0..20 {
            step(&mut p, 4000.0);
        }
        let high = p.gain();
        // Halve the target: the very next decision is lower.
        let Decision::Encode { gain, .. } = step(&mut p, 2000.0) else {
            panic!("skipped")
        };
        assert!(gain < high / 1.1, "{gain} vs {high}");
        assert!(p.model().bits_at(gain) <= 2000.0 * 1e3 / FPS);
        let low = p.gain();
        // Restore it: the gain holds for two decisions, then moves.
        step(&mut p, 4000.0);
        step(&mut p, 4000.0);
        assert_eq!(p.gain(), low);
        step(&mut p, 4000.0);
        assert!(p.gain() > low * 1.1, "{} vs {low}", p.gain());
    }

    #[test]
    fn skipped_frames_bank_their_budget() {
        let mut p = planner(Mode::Auto, 0.1);
        let t0 = Instant::now();
        // 400 kbit/s at 10 fps: 40 kbit a frame, gain_min needs ~66 kbit.
        let first = p.decide(400.0, t0);
        assert_eq!(first, Decision::Skip { reason: "rate" });
        let second = p.decide(400.0, t0 + Duration::from_millis(100));
        assert!(
            matches!(second, Decision::Encode { gain, budget_bits } if gain == 1.0 && budget_bits >= 66e3),
            "{second:?}"
        );
    }

    #[test]
    fn pipelined_decisions_do_not_spend_twice() {
        let mut p = planner(Mode::FixedKbps(1000.0), 0.1);
        let t0 = Instant::now();
        let mut coded = 0.0;
        for i in 0..200u32 {
            let now = t0 + Duration::from_millis(100 * u64::from(i));
            // Plan two frames before reporting either.
            let a = p.decide(0.0, now);
            let b = p.decide(0.0, now);
            for d in [a, b] {
                if let Decision::Encode { gain, .. } = d {
                    let bits = p.model().bits_at(gain);
                    p.observe(gain, bits);
                    coded += bits;
                }
            }
        }
        assert!(coded / 20.0 <= 1000e3 * 1.01, "{} bit/s", coded / 20.0);
    }

    #[test]
    fn mode_switches() {
        let mut p = planner(Mode::Auto, 0.1);
        assert_eq!(p.mode(), Mode::Auto);
        p.set_mode(Mode::FixedGain(3.0));
        assert_eq!(p.gain(), 3.0);
        assert_eq!(p.mode(), Mode::FixedGain(3.0));
        p.set_mode(Mode::FixedKbps(5000.0));
        let d = p.decide(0.0, Instant::now());
        let Decision::Encode { gain, .. } = d else {
            panic!("{d:?}")
        };
        // Jumps straight to the ideal for 500 kbit a frame.
        let ideal = p.model().gain_for_bits(500e3 / 1.05).unwrap();
        assert!((gain - ideal).abs() < 1e-3, "{gain} vs {ideal}");
    }

    #[test]
    fn aux_charges_never_take_more_than_their_share() {
        // 1000 kbit/s at 10 fps: 100 kbit a frame. Aux frames of 80 kbit with
        // every frame are far over a 0.3 share (30 kbit a frame).
        let mut p = planner(Mode::FixedKbps(1000.0), 0.1);
        p.set_aux_share(0.3);
        let mut scene = Scene::new(1.0, 0.1);
        let frames = 600;
        let t0 = Instant::now();
        let (mut machine, mut repaid) = (0.0, 0.0);
        for i in 0..frames {
            let now = t0 + Duration::from_secs_f64(i as f64 / FPS);
            let debt = p.aux_debt();
            if let Decision::Encode { gain, .. } = p.decide(0.0, now) {
                let bits = scene.code(gain);
                p.observe(gain, bits);
                machine += bits;
            }
            repaid += debt - p.aux_debt();
            p.charge(80e3);
        }
        let seconds = frames as f64 / FPS;
        let machine_kbps = machine / seconds / 1e3;
        let aux_kbps = repaid / seconds / 1e3;
        // The machine layer keeps its 70 %, the aux layer is held to its 30 %.
        // (It aims half the hysteresis band below its budget.)
        assert!(machine_kbps >= 0.7 * 1000.0 * 0.9, "{machine_kbps}");
        assert!(aux_kbps <= 300.0 * 1.001, "{aux_kbps}");
        assert!(
            machine_kbps + aux_kbps <= 1000.0 * 1.01,
            "{machine_kbps} + {aux_kbps}"
        );
        // What could not be repaid is still owed.
        assert!(p.aux_debt() > 0.0);
    }

    #[test]
    fn a_single_aux_charge_is_repaid_without_stopping_the_machine_layer() {
        // 2000 kbit/s at 10 fps: half of it (100 kbit a frame) still pays for gain_min (~66 kbit).
        let mut p = planner(Mode::FixedKbps(2000.0), 0.1);
        p.set_aux_share(0.5);
        let mut scene = Scene::new(1.0, 0.0);
        let t0 = Instant::now();
        let mut skips = 0;
        for i in 0..100u32 {
            let now = t0 + Duration::from_millis(100 * u64::from(i));
            if i == 20 {
                // One second's share at once: 1000 kbit.
                p.charge(1000e3);
            }
            match p.decide(0.0, now) {
                Decision::Encode { gain, .. } => p.observe(gain, scene.code(gain)),
                Decision::Skip { .. } => skips += 1,
            }
        }
        assert_eq!(skips, 0, "the machine layer was starved");
        assert_eq!(p.aux_debt(), 0.0, "repaid within 10 s");
    }

    #[test]
    fn charges_do_not_teach_the_model_and_fixed_gain_ignores_them() {
        let mut p = planner(Mode::FixedKbps(1000.0), 0.1);
        p.set_aux_share(0.5);
        let before = p.model().correction();
        p.charge(1e6);
        assert_eq!(p.model().correction(), before);
        assert_eq!(p.aux_debt(), 1e6);
        // A new kind of mode starts the budget afresh.
        p.set_mode(Mode::FixedGain(4.0));
        assert_eq!(p.aux_debt(), 0.0);
        p.charge(1e6);
        assert_eq!(p.aux_debt(), 0.0);
        p.charge(f64::NAN);
        assert_eq!(p.aux_debt(), 0.0);
    }

    #[test]
    fn streaming_aux_steers_the_machine_layer_to_its_share() {
        let run = |streaming: bool| {
            let mut p = planner(Mode::FixedKbps(2000.0), 0.1);
            p.set_aux_share(0.4);
            p.set_aux_streaming(streaming);
            let mut scene = Scene::new(1.0, 0.0);
            let r = drive(&mut p, &mut scene, 0.0, 100);
            r.bits.iter().skip(50).sum::<f64>() / 50.0
        };
        let (alone, beside) = (run(false), run(true));
        let per_frame = 2000e3 / FPS;
        assert!(alone > 0.8 * per_frame && alone <= per_frame, "{alone}");
        assert!(
            beside <= 0.6 * per_frame && beside > 0.45 * per_frame,
            "{beside}"
        );
    }

    #[test]
    fn config_is_validated_and_repaired() {
        let good = PlannerConfig {
            fps: 10.0,
            gain_min: 1.0,
            gain_max: 64.0,
            hysteresis: 0.1,
        };
        assert!(good.validate().is_ok());
        let bad = PlannerConfig {
            fps: 0.0,
            gain_min: 0.5,
            gain_max: 100.0,
            hysteresis: f64::NAN,
        };
        assert!(matches!(
            bad.validate(),
            Err(RateError::Config { field: "fps", .. })
        ));
        let p = Planner::new(bad, model(), Mode::FixedGain(80.0));
        // The range is narrowed to the model's.
        assert_eq!(p.gain(), 64.0);
        assert_eq!(p.cfg.gain_min, 1.0);
        assert_eq!(p.cfg.fps, FALLBACK_FPS);
        assert_eq!(p.cfg.hysteresis, FALLBACK_HYSTERESIS);
    }
}
