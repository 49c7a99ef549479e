//! What the network may change on a running device: the rate mode, the
//! fixed target and the fixed gain (`set/<key>` → `state/<key>`).

use std::sync::{Arc, Mutex};

use crate::config::RateMode;
use crate::rate::{Mode, Planner};
use crate::transport::Control;

/// The rate settings shared by the control path and the encoder thread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub mode: RateMode,
    pub target_kbps: f64,
    pub gain: f32,
}

impl Settings {
    pub fn planner_mode(&self) -> Mode {
        match self.mode {
            RateMode::Auto => Mode::Auto,
            RateMode::Gain => Mode::FixedGain(self.gain),
            RateMode::Kbps => Mode::FixedKbps(self.target_kbps),
        }
    }
}

pub fn mode_name(m: RateMode) -> &'static str {
    match m {
        RateMode::Auto => "auto",
        RateMode::Gain => "gain",
        RateMode::Kbps => "kbps",
    }
}

/// Limits that commands are checked against.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub min_kbps: f64,
    pub max_kbps: f64,
    pub gain_min: f32,
    pub gain_max: f32,
}

pub struct RateControl {
    pub settings: Arc<Mutex<Settings>>,
    pub planner: Arc<Mutex<Planner>>,
    pub limits: Limits,
}

impl RateControl {
    fn current(&self) -> Settings {
        *self.settings.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn store(&self, s: Settings) {
        *self.settings.lock().unwrap_or_else(|p| p.into_inner()) = s;
        self.planner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set_mode(s.planner_mode());
    }
}

impl Control for RateControl {
    fn apply(&mut self, key: &str, value: &str) -> Result<String, String> {
        let mut s = self.current();
        let l = self.limits;
        match key {
            "rate_mode" => {
                s.mode = match value {
                    "auto" => RateMode::Auto,
                    "gain" => RateMode::Gain,
                    "kbps" => RateMode::Kbps,
                    _ => return Err(format!("{value:?}: expected auto, gain or kbps")),
                };
                self.store(s);
                Ok(mode_name(s.mode).into())
            }
            "target_kbps" => {
                let v: f64 = value
                    .parse()
                    .map_err(|_| format!("{value:?}: expected a number of kbit/s"))?;
                if !(v.is_finite() && v >= l.min_kbps && v <= l.max_kbps) {
                    return Err(format!(
                        "{v}: expected {}..={} kbit/s",
                        l.min_kbps, l.max_kbps
                    ));
                }
                s.target_kbps = v;
                self.store(s);
                Ok(format!("{v}"))
            }
            "gain" => {
                let v: f32 = value
                    .parse()
                    .map_err(|_| format!("{value:?}: expected a number"))?;
                if !(v.is_finite() && v >= l.gain_min && v <= l.gain_max) {
                    return Err(format!(
                        "{v}: expected a gain in {}..={}",
                        l.gain_min, l.gain_max
                    ));
                }
                s.gain = v;
                self.store(s);
                Ok(format!("{v}"))
            }
            _ => Err(format!("unknown key {key:?}")),
        }
    }

    fn state(&self) -> Vec<(String, String)> {
        let s = self.current();
        vec![
            ("rate_mode".into(), mode_name(s.mode).into()),
            ("target_kbps".into(), format!("{}", s.target_kbps)),
            ("gain".into(), format!("{}", s.gain)),
        ]
    }
}
