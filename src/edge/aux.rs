//! The aux (human) layer on demand: `set/aux` → `state/aux`, the ring of
//! recent frames, and the aux frame's share of the budget.
//!
//! The camera keeps the last `aux.ring_frames` images whose machine frame was
//! encoded. `set/aux` accepts
//!
//! | value | effect |
//! |---|---|
//! | `off` | no aux frames (pending requests are dropped) |
//! | `on` | an aux frame with every encoded machine frame |
//! | `once` | an aux frame with the next encoded machine frame |
//! | `frame:<seq>` | an aux frame for that frame, taken from the ring |
//!
//! and `state/aux` repeats the accepted value. Without a human-layer bundle
//! every request is refused, and `frame:<seq>` is refused when the ring does
//! not hold that sequence (the message names what it holds).
//!
//! **Budget.** The aux layer may use `aux.budget_share` of the target
//! bitrate: with `on`, `share × target / fps` per frame (and the machine
//! layer is planned at `(1 - share) × target`); a single request (`once`,
//! `frame:`) may take one second's share, `share × target × 1 s`. The gain is
//! the largest the bundle's rate table expects to fit; if not even its lowest
//! gain fits, the aux frame is skipped and counted. Its actual bits are
//! charged to the planner ([`crate::rate::Planner::charge`]), which repays
//! them from at most `share` of the refills, so aux frames never starve the
//! machine layer. The aux layer may owe at most one second's share: what is
//! still owed comes off the next aux frame's budget.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use image::RgbImage;
use serde_json::json;

use super::control::RateControl;
use crate::config::AuxMode;
use crate::human::HumanManifest;
use crate::transport::Control;

/// One recent frame whose machine frame was encoded: the image is shared, not copied.
#[derive(Debug, Clone)]
pub struct RingEntry {
    pub sequence: u64,
    pub capture_us: u64,
    pub image: Arc<RgbImage>,
}

/// The last `cap` encoded frames, oldest first.
#[derive(Debug)]
pub struct Ring {
    cap: usize,
    entries: VecDeque<RingEntry>,
}

impl Ring {
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            entries: VecDeque::new(),
        }
    }

    /// Keep `e`, forgetting the oldest beyond the capacity.
    pub fn push(&mut self, e: RingEntry) {
        self.entries.push_back(e);
        while self.entries.len() > self.cap {
            self.entries.pop_front();
        }
    }

    pub fn get(&self, sequence: u64) -> Option<&RingEntry> {
        self.entries.iter().find(|e| e.sequence == sequence)
    }

    /// The oldest and newest sequence held.
    pub fn range(&self) -> Option<(u64, u64)> {
        Some((
            self.entries.front()?.sequence,
            self.entries.back()?.sequence,
        ))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What the ring holds, for a refusal message.
    pub fn describe(&self) -> String {
        match self.range() {
            Some((a, b)) => format!("the ring holds {} frame(s), {a}..={b}", self.len()),
            None => "the ring is empty".into(),
        }
    }
}

/// A `set/aux` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuxCommand {
    Off,
    On,
    Once,
    Frame(u64),
}

impl AuxCommand {
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "off" => Ok(Self::Off),
            "on" => Ok(Self::On),
            "once" => Ok(Self::Once),
            v => match v.strip_prefix("frame:").map(str::parse::<u64>) {
                Some(Ok(seq)) => Ok(Self::Frame(seq)),
                _ => Err(format!(
                    "{value:?}: expected off, on, once or frame:<sequence>"
                )),
            },
        }
    }

    /// The value as `state/aux` shows it.
    pub fn as_state(&self) -> String {
        match self {
            Self::Off => "off".into(),
            Self::On => "on".into(),
            Self::Once => "once".into(),
            Self::Frame(s) => format!("frame:{s}"),
        }
    }
}

/// Counters of the aux layer's encoder side (the uplink counts the rest).
#[derive(Debug, Default)]
pub struct AuxCounters {
    /// Aux frames the encoder set out to code (one per `on` frame, `once`, `frame:`).
    pub requested: AtomicU64,
    pub encoded: AtomicU64,
    pub encoded_bytes: AtomicU64,
    /// Not coded: not even the lowest aux gain fitted the budget.
    pub skipped_budget: AtomicU64,
    pub encode_errors: AtomicU64,
}

#[derive(Debug)]
struct Requests {
    on: bool,
    once: bool,
    frames: VecDeque<RingEntry>,
    /// The last accepted command, as `state/aux` shows it.
    state: String,
}

/// What the control path and the encoder thread share.
#[derive(Debug)]
pub struct AuxShared {
    /// A human-layer bundle is configured.
    pub enabled: bool,
    pub share: f64,
    pub counters: AuxCounters,
    ring: Mutex<Ring>,
    requests: Mutex<Requests>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why an aux frame is coded now: sets its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuxWhy {
    /// `on`: one frame's share.
    Streaming,
    /// `once` or `frame:`: one second's share.
    Request,
}

impl AuxShared {
    pub fn new(enabled: bool, ring_frames: usize, share: f64, mode: AuxMode) -> Self {
        let on = enabled && mode == AuxMode::On;
        Self {
            enabled,
            share,
            counters: AuxCounters::default(),
            ring: Mutex::new(Ring::new(ring_frames)),
            requests: Mutex::new(Requests {
                on,
                once: false,
                frames: VecDeque::new(),
                state: if on { "on" } else { "off" }.into(),
            }),
        }
    }

    /// Apply a `set/aux` value; the new `state/aux`, or why it was refused.
    pub fn apply(&self, value: &str) -> Result<String, String> {
        if !self.enabled {
            return Err("no human-layer bundle is configured (aux.bundle)".into());
        }
        let cmd = AuxCommand::parse(value)?;
        // The ring's lock first, as the encoder takes them (never both at once there).
        let entry = match cmd {
            AuxCommand::Frame(seq) => {
                let ring = lock(&self.ring);
                match ring.get(seq) {
                    Some(e) => Some(e.clone()),
                    None => {
                        return Err(format!(
                            "frame {seq} is not in the ring: {}",
                            ring.describe()
                        ))
                    }
                }
            }
            _ => None,
        };
        let mut r = lock(&self.requests);
        match cmd {
            AuxCommand::Off => {
                r.on = false;
                r.once = false;
                r.frames.clear();
            }
            AuxCommand::On => r.on = true,
            AuxCommand::Once => r.once = true,
            AuxCommand::Frame(seq) => {
                if !r.frames.iter().any(|e| e.sequence == seq) {
                    r.frames.extend(entry);
                }
            }
        }
        r.state = cmd.as_state();
        Ok(r.state.clone())
    }

    /// The value `state/aux` shows.
    pub fn state(&self) -> String {
        lock(&self.requests).state.clone()
    }

    /// `on` or `off`: whether an aux frame goes with every encoded frame.
    pub fn mode(&self) -> &'static str {
        if self.streaming() {
            "on"
        } else {
            "off"
        }
    }

    pub fn streaming(&self) -> bool {
        lock(&self.requests).on
    }

    /// The machine frame of `e` was encoded: keep it in the ring, and say
    /// whether its aux frame is wanted now (`on`, or a pending `once`).
    pub fn encoded(&self, e: &RingEntry) -> Option<AuxWhy> {
        if !self.enabled {
            return None;
        }
        lock(&self.ring).push(e.clone());
        let mut r = lock(&self.requests);
        let once = std::mem::take(&mut r.once);
        if once {
            Some(AuxWhy::Request)
        } else if r.on {
            Some(AuxWhy::Streaming)
        } else {
            None
        }
    }

    /// The next pending `frame:<seq>` request.
    pub fn next_frame_request(&self) -> Option<RingEntry> {
        lock(&self.requests).frames.pop_front()
    }

    /// The `aux` object of the stats and the final accounting.
    pub fn json(
        &self,
        acked: u64,
        dropped_offline: u64,
        dropped_congestion: u64,
    ) -> serde_json::Value {
        let c = &self.counters;
        json!({
            "mode": self.mode(),
            "requested": c.requested.load(Relaxed),
            "encoded": c.encoded.load(Relaxed),
            "encoded_bytes": c.encoded_bytes.load(Relaxed),
            "acked": acked,
            "skipped_budget": c.skipped_budget.load(Relaxed),
            "dropped_offline": dropped_offline,
            "dropped_congestion": dropped_congestion,
            "encode_errors": c.encode_errors.load(Relaxed),
        })
    }
}

/// `set/aux` on the control path.
pub struct AuxControl {
    pub shared: Arc<AuxShared>,
}

/// Everything `set/` reaches: the rate settings and the aux layer.
pub struct DeviceControl {
    pub rate: RateControl,
    pub aux: AuxControl,
}

impl Control for DeviceControl {
    fn apply(&mut self, key: &str, value: &str) -> Result<String, String> {
        match key {
            "aux" => self.aux.shared.apply(value),
            _ => self.rate.apply(key, value),
        }
    }

    fn state(&self) -> Vec<(String, String)> {
        let mut s = self.rate.state();
        s.push(("aux".into(), self.aux.shared.state()));
        s
    }
}

/// The budget of one aux frame, in bits: `share` of `target_kbps` over one
/// frame (`on`) or one second (a request), less what the aux layer still owes.
pub fn budget_bits(why: AuxWhy, share: f64, target_kbps: f64, fps: f64, debt_bits: f64) -> f64 {
    let per_second = share * target_kbps.max(0.0) * 1000.0;
    let allowance = (per_second - debt_bits.max(0.0)).max(0.0);
    match why {
        AuxWhy::Streaming => (per_second / fps.max(1e-3)).min(allowance),
        AuxWhy::Request => allowance,
    }
}

/// The aux gain for a budget, or a skip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AuxChoice {
    Encode {
        gain: f32,
        expected_bits: f64,
    },
    /// Even `gain_min` is expected to cost `min_bits`, over the budget.
    Skip {
        min_bits: f64,
    },
}

/// The largest aux gain the rate table expects to code within `budget_bits`
/// (bits per pixel over the bundle's input size).
pub fn choose_gain(m: &HumanManifest, budget_bits: f64) -> AuxChoice {
    let pixels = f64::from(m.input.width) * f64::from(m.input.height);
    let bits_at = |g: f32| m.aux_bpp_for_gain(g).map_or(f64::INFINITY, |b| b * pixels);
    let (lo, hi) = (m.aux.gain_min, m.aux.gain_max);
    let min_bits = bits_at(lo);
    if !(budget_bits.is_finite() && min_bits <= budget_bits) {
        return AuxChoice::Skip { min_bits };
    }
    let mut gain = m
        .aux_gain_for_bpp(budget_bits / pixels)
        .unwrap_or(lo)
        .clamp(lo, hi);
    if bits_at(gain) > budget_bits {
        // The table's two interpolations need not invert exactly: bisect.
        let (mut ok, mut over) = (lo, gain);
        for _ in 0..30 {
            let mid = 0.5 * (ok + over);
            if bits_at(mid) <= budget_bits {
                ok = mid;
            } else {
                over = mid;
            }
        }
        gain = ok;
    }
    AuxChoice::Encode {
        gain,
        expected_bits: bits_at(gain),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sequence: u64) -> RingEntry {
        RingEntry {
            sequence,
            capture_us: sequence * 10,
            image: Arc::new(RgbImage::new(2, 2)),
        }
    }

    fn shared(enabled: bool) -> AuxShared {
        AuxShared::new(enabled, 3, 0.5, AuxMode::Off)
    }

    #[test]
    fn commands_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!(AuxCommand::parse("off"), Ok(AuxCommand::Off));
        assert_eq!(AuxCommand::parse("on"), Ok(AuxCommand::On));
        assert_eq!(AuxCommand::parse("once"), Ok(AuxCommand::Once));
        assert_eq!(
            AuxCommand::parse("frame:1700000000123"),
            Ok(AuxCommand::Frame(1_700_000_000_123))
        );
        for bad in [
            "", "ON", "frame:", "frame:-1", "frame:x", "frame 3", "twice",
        ] {
            let e = AuxCommand::parse(bad).unwrap_err();
            assert!(
                e.contains("expected off, on, once or frame:<sequence>"),
                "{e}"
            );
        }
        assert_eq!(AuxCommand::Frame(7).as_state(), "frame:7");
    }

    #[test]
    fn without_a_bundle_every_request_is_refused() {
        let a = shared(false);
        for v in ["off", "on", "once", "frame:1"] {
            let e = a.apply(v).unwrap_err();
            assert!(e.contains("no human-layer bundle"), "{e}");
        }
        assert_eq!(a.state(), "off");
        assert_eq!(a.encoded(&entry(1)), None);
        assert!(a.next_frame_request().is_none());
        // Even `on` in the config cannot switch it on.
        assert!(!AuxShared::new(false, 3, 0.5, AuxMode::On).streaming());
    }

    #[test]
    fn the_ring_keeps_the_last_frames_and_shares_their_images() {
        let mut r = Ring::new(3);
        assert_eq!(r.range(), None);
        assert_eq!(r.describe(), "the ring is empty");
        let img = Arc::new(RgbImage::new(4, 4));
        for s in 10..15 {
            r.push(RingEntry {
                sequence: s,
                capture_us: s,
                image: img.clone(),
            });
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.range(), Some((12, 14)));
        assert!(r.get(11).is_none());
        assert_eq!(r.get(13).map(|e| e.capture_us), Some(13));
        // Three in the ring plus ours: one image, never copied.
        assert_eq!(Arc::strong_count(&img), 4);
        assert_eq!(r.describe(), "the ring holds 3 frame(s), 12..=14");
    }

    #[test]
    fn once_serves_the_next_frame_and_on_every_frame() {
        let a = shared(true);
        assert_eq!(a.encoded(&entry(1)), None);
        assert_eq!(a.apply("once"), Ok("once".into()));
        assert_eq!(a.encoded(&entry(2)), Some(AuxWhy::Request));
        assert_eq!(a.encoded(&entry(3)), None);
        // The state stays what was accepted.
        assert_eq!(a.state(), "once");
        assert_eq!(a.mode(), "off");
        assert_eq!(a.apply("on"), Ok("on".into()));
        assert_eq!(a.mode(), "on");
        assert_eq!(a.encoded(&entry(4)), Some(AuxWhy::Streaming));
        assert_eq!(a.encoded(&entry(5)), Some(AuxWhy::Streaming));
        a.apply("once").unwrap();
        assert_eq!(a.encoded(&entry(6)), Some(AuxWhy::Request));
        assert_eq!(a.encoded(&entry(7)), Some(AuxWhy::Streaming));
        a.apply("off").unwrap();
        assert_eq!(a.encoded(&entry(8)), None);
        assert!(AuxShared::new(true, 3, 0.5, AuxMode::On).streaming());
    }

    #[test]
    fn frame_requests_come_from_the_ring_or_are_refused_naming_it() {
        let a = shared(true);
        let e = a.apply("frame:1").unwrap_err();
        assert!(
            e.contains("frame 1 is not in the ring: the ring is empty"),
            "{e}"
        );
        for s in 100..105 {
            a.encoded(&entry(s));
        }
        let e = a.apply("frame:101").unwrap_err();
        assert!(e.contains("the ring holds 3 frame(s), 102..=104"), "{e}");
        assert_eq!(a.state(), "off", "a refusal changes nothing");
        assert_eq!(a.apply("frame:103"), Ok("frame:103".into()));
        // Asked twice before it is served: coded once.
        assert_eq!(a.apply("frame:103"), Ok("frame:103".into()));
        a.apply("frame:102").unwrap();
        // Taken out of the ring at the request: later frames cannot evict it.
        for s in 105..110 {
            a.encoded(&entry(s));
        }
        let got = a.next_frame_request().expect("pending");
        assert_eq!((got.sequence, got.capture_us), (103, 1030));
        assert_eq!(a.next_frame_request().map(|e| e.sequence), Some(102));
        assert!(a.next_frame_request().is_none());
        // `off` drops what is pending.
        a.apply("frame:109").unwrap();
        a.apply("once").unwrap();
        a.apply("off").unwrap();
        assert!(a.next_frame_request().is_none());
        assert_eq!(a.encoded(&entry(110)), None);
    }

    #[test]
    fn device_control_routes_aux_and_reports_its_state() {
        use crate::config::RateMode;
        use crate::edge::{Limits, Settings};
        use crate::rate::{Mode, Planner, PlannerConfig, RateModel};
        let model = RateModel::from_table(
            &[
                crate::model::manifest::RatePoint {
                    gain: 1.0,
                    bpp: 0.1,
                    map50: 0.5,
                },
                crate::model::manifest::RatePoint {
                    gain: 64.0,
                    bpp: 2.0,
                    map50: 0.9,
                },
            ],
            1.0,
            64.0,
            512.0 * 512.0,
        )
        .expect("model");
        let settings = Settings {
            mode: RateMode::Kbps,
            target_kbps: 1000.0,
            gain: 10.0,
        };
        let planner = Planner::new(
            PlannerConfig {
                fps: 10.0,
                gain_min: 1.0,
                gain_max: 64.0,
                hysteresis: 0.1,
            },
            model,
            Mode::FixedKbps(1000.0),
        );
        let mut c = DeviceControl {
            rate: RateControl {
                settings: Arc::new(Mutex::new(settings)),
                planner: Arc::new(Mutex::new(planner)),
                limits: Limits {
                    min_kbps: 100.0,
                    max_kbps: 8000.0,
                    gain_min: 1.0,
                    gain_max: 64.0,
                },
            },
            aux: AuxControl {
                shared: Arc::new(shared(true)),
            },
        };
        assert_eq!(c.apply("aux", "on"), Ok("on".into()));
        assert_eq!(c.apply("target_kbps", "500"), Ok("500".into()));
        assert!(c.apply("aux", "sometimes").is_err());
        let state = c.state();
        assert!(state.contains(&("aux".into(), "on".into())), "{state:?}");
        assert!(state.contains(&("target_kbps".into(), "500".into())));
    }

    fn manifest(table: &[(f32, f64)]) -> HumanManifest {
        let rate_table: Vec<_> = table
            .iter()
            .map(|(g, b)| json!({"gain": g, "bpp": b}))
            .collect();
        serde_json::from_value(json!({
            "schema": "fchm-hvcn/1", "name": "t", "version": "1",
            "bundle_id": "00000000000000000000000000000001",
            "machine_bundle_id": "00000000000000000000000000000002",
            "input": {"width": 512, "height": 512, "layout": "NCHW", "colour": "RGB",
                      "range": [0.0, 255.0], "resize": "stretch-bilinear"},
            "aux": {"latent": {"y": [8, 32, 32], "z": [4, 8, 8]},
                    "gain_min": table[0].0, "gain_max": table[table.len() - 1].0,
                    "rate_table": rate_table},
            "graphs": {}, "entropy": "e.json", "hyper_synth": "h.json",
            "diffusion": {"scheduler": "ddim", "steps": 8, "residual_scale": 1.0,
                          "scheduler_config": {}},
            "files": {}
        }))
        .expect("manifest")
    }

    const PIXELS: f64 = 512.0 * 512.0;

    #[test]
    fn the_gain_is_the_largest_the_budget_fits() {
        // 0.01 bpp at gain 0.25 (2621 bits), 0.16 bpp at gain 4 (41943 bits).
        let m = manifest(&[(0.25, 0.01), (1.0, 0.04), (4.0, 0.16)]);
        let AuxChoice::Encode {
            gain,
            expected_bits,
        } = choose_gain(&m, 0.04 * PIXELS)
        else {
            panic!("skipped")
        };
        assert!((gain - 1.0).abs() < 1e-3, "{gain}");
        assert!(expected_bits <= 0.04 * PIXELS + 1e-6);
        // Between points: log-log, within budget.
        let budget = 0.08 * PIXELS;
        let AuxChoice::Encode {
            gain,
            expected_bits,
        } = choose_gain(&m, budget)
        else {
            panic!("skipped")
        };
        assert!((gain - 2.0).abs() < 1e-2, "{gain}");
        assert!(expected_bits <= budget && expected_bits > 0.95 * budget);
        // More than the table's top: gain_max.
        assert_eq!(
            choose_gain(&m, 1e9),
            AuxChoice::Encode {
                gain: 4.0,
                expected_bits: m.aux_bpp_for_gain(4.0).unwrap() * PIXELS
            }
        );
    }

    #[test]
    fn too_small_a_budget_skips() {
        let m = manifest(&[(0.25, 0.01), (1.0, 0.04), (4.0, 0.16)]);
        let min = m.aux_bpp_for_gain(0.25).unwrap() * PIXELS;
        assert!((min - 0.01 * PIXELS).abs() < 1e-6);
        assert!(
            matches!(choose_gain(&m, min), AuxChoice::Encode { gain, .. } if (gain - 0.25).abs() < 1e-3)
        );
        match choose_gain(&m, min * 0.99) {
            AuxChoice::Skip { min_bits } => assert!((min_bits - min).abs() < 1e-3),
            c => panic!("{c:?}"),
        }
        assert!(matches!(choose_gain(&m, 0.0), AuxChoice::Skip { .. }));
        assert!(matches!(choose_gain(&m, f64::NAN), AuxChoice::Skip { .. }));
        // A flat stretch of the table (the smoke bundle has one) still fits.
        let flat = manifest(&[(0.25, 0.008), (1.0, 0.008), (4.0, 0.03)]);
        let AuxChoice::Encode { expected_bits, .. } = choose_gain(&flat, 0.008 * PIXELS) else {
            panic!("skipped")
        };
        assert!(expected_bits <= 0.008 * PIXELS + 1e-6);
    }

    #[test]
    fn budgets_follow_the_share_and_the_debt() {
        // 1000 kbit/s, share 0.5, 10 fps: 50 kbit a frame, 500 kbit a second.
        assert_eq!(budget_bits(AuxWhy::Streaming, 0.5, 1000.0, 10.0, 0.0), 50e3);
        assert_eq!(budget_bits(AuxWhy::Request, 0.5, 1000.0, 10.0, 0.0), 500e3);
        // Owing more than a second's share less a frame's leaves less than a frame.
        assert_eq!(
            budget_bits(AuxWhy::Streaming, 0.5, 1000.0, 10.0, 480e3),
            20e3
        );
        assert_eq!(budget_bits(AuxWhy::Request, 0.5, 1000.0, 10.0, 600e3), 0.0);
        assert_eq!(budget_bits(AuxWhy::Request, 0.5, f64::NAN, 10.0, 0.0), 0.0);
    }
}
