//! Diffusion sampling schedulers that reproduce Hugging Face `diffusers` step for step.
//!
//! A sampler decoded in Rust must land on the same image as the Python
//! reference, so the two schedulers here (DDIM and the multistep DPM-Solver++)
//! follow `diffusers`' `DDIMScheduler` and `DPMSolverMultistepScheduler`
//! including their float32 arithmetic: the same operations in the same order,
//! on float32 values, so a run stays within a few float32 rounding steps of
//! the reference (`tests/scheduler_parity.rs` checks every step against
//! fixtures written by `models/train/fchm_train/scheduler_ref.py`).
//!
//! Only the deterministic configurations are implemented; a config asking for
//! anything else (thresholding, Karras sigmas, SDE variants, ...) is refused
//! with [`SchedulerError::Unsupported`] rather than sampled differently.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Everything that can go wrong building or stepping a scheduler.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SchedulerError {
    /// A config field holds a value this implementation does not reproduce.
    #[error("unsupported scheduler config: `{field}` = {value}")]
    Unsupported { field: &'static str, value: String },
    #[error("unknown scheduler `{0}` (known: \"ddim\", \"dpm-solver++\")")]
    UnknownScheduler(String),
    #[error("scheduler config is not readable: {0}")]
    Json(String),
    #[error("{steps} inference steps: must be 1 to {num_train_timesteps}")]
    InvalidSteps {
        steps: usize,
        num_train_timesteps: usize,
    },
    /// diffusers itself would produce this timestep and then index past its
    /// tables (e.g. "trailing" spacing with 61 of 1000 steps yields -1).
    #[error(
        "{steps} inference steps with `{spacing}` spacing give timestep {timestep}, \
         outside 0..{num_train_timesteps}"
    )]
    TimestepOutOfRange {
        steps: usize,
        spacing: &'static str,
        timestep: i64,
        num_train_timesteps: usize,
    },
    #[error("step called before set_timesteps")]
    NotInitialised,
    #[error("model_output has {model_output} values but sample has {sample}")]
    LengthMismatch { model_output: usize, sample: usize },
    #[error("timestep {0} is not in the current schedule")]
    UnknownTimestep(i64),
    #[error("step {index} of the schedule is timestep {expected}, got {got}")]
    OutOfOrder {
        index: usize,
        expected: i64,
        got: i64,
    },
    #[error("all {0} steps of the schedule are done; call set_timesteps to start again")]
    Exhausted(usize),
    /// The multistep solver pairs each output with the previous step's
    /// estimate, so the tensor size cannot change mid-schedule.
    #[error(
        "sample size changed mid-schedule ({expected} to {got} values); call set_timesteps again"
    )]
    SizeChanged { expected: usize, got: usize },
}

/// A scheduler config as diffusers writes it (`scheduler_config.json`).
///
/// Field names and defaults are diffusers'. One struct serves both
/// schedulers, as a diffusers config may be loaded into either class; each
/// scheduler reads the fields it uses and ignores the rest, as diffusers
/// does. Fields not listed here (`_class_name`, `flow_shift`, ...) are
/// ignored when reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    /// "linear", "scaled_linear" or "squaredcos_cap_v2".
    pub beta_schedule: String,
    /// Explicit betas are not supported: must be null.
    pub trained_betas: Option<Vec<f64>>,
    /// "epsilon", "v_prediction" or "sample".
    pub prediction_type: String,
    /// "leading", "trailing" or "linspace". `None` takes the scheduler's own
    /// default, because diffusers' two classes disagree on it (DDIM
    /// "leading", DPM-Solver "linspace") and a config saved by either always
    /// names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestep_spacing: Option<String>,
    pub steps_offset: i64,
    /// DDIM: the last step lands on a clean sample (alpha product 1) rather
    /// than on the first training timestep's noise level.
    pub set_alpha_to_one: bool,
    /// DDIM: clamp the predicted clean sample to ±`clip_sample_range`.
    pub clip_sample: bool,
    pub clip_sample_range: f64,
    /// Dynamic thresholding (per-sample quantile clipping, meant for
    /// pixel-space models) is not implemented: must be false.
    pub thresholding: bool,
    /// Zero-terminal-SNR rescaling is not implemented: must be false.
    pub rescale_betas_zero_snr: bool,
    /// DPM-Solver: 1 or 2.
    pub solver_order: usize,
    /// DPM-Solver: only "dpmsolver++".
    pub algorithm_type: String,
    /// DPM-Solver: only "midpoint".
    pub solver_type: String,
    /// DPM-Solver: take the final step first order in short (< 15 step)
    /// schedules, where the second-order correction over the last, large
    /// step adds visible artefacts rather than accuracy.
    pub lower_order_final: bool,
    /// DPM-Solver: always take the final step first order.
    pub euler_at_final: bool,
    /// DPM-Solver: "zero" (the last step returns the predicted clean sample)
    /// or "sigma_min" (it stops at the first training timestep's noise).
    pub final_sigmas_type: String,
    /// DPM-Solver: timesteps whose log-SNR falls below this are cut from the
    /// schedule. -inf (the default) keeps all. JSON has no infinity:
    /// diffusers writes a bare `-Infinity`, which [`SchedulerConfig::from_json_str`]
    /// reads; serialising writes the string "-Infinity", also read back.
    #[serde(
        serialize_with = "ser_extended_f64",
        deserialize_with = "de_extended_f64"
    )]
    pub lambda_min_clipped: f64,
    /// DPM-Solver: learned-variance model outputs are not supported: must be null.
    pub variance_type: Option<String>,
    /// DPM-Solver: the alternative sigma spacings; all must be false.
    pub use_karras_sigmas: bool,
    pub use_exponential_sigmas: bool,
    pub use_beta_sigmas: bool,
    pub use_lu_lambdas: bool,
    pub use_flow_sigmas: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: "linear".into(),
            trained_betas: None,
            prediction_type: "epsilon".into(),
            timestep_spacing: None,
            steps_offset: 0,
            set_alpha_to_one: true,
            clip_sample: true,
            clip_sample_range: 1.0,
            thresholding: false,
            rescale_betas_zero_snr: false,
            solver_order: 2,
            algorithm_type: "dpmsolver++".into(),
            solver_type: "midpoint".into(),
            lower_order_final: true,
            euler_at_final: false,
            final_sigmas_type: "zero".into(),
            lambda_min_clipped: f64::NEG_INFINITY,
            variance_type: None,
            use_karras_sigmas: false,
            use_exponential_sigmas: false,
            use_beta_sigmas: false,
            use_lu_lambdas: false,
            use_flow_sigmas: false,
        }
    }
}

impl SchedulerConfig {
    /// Reads a `scheduler_config.json` as diffusers' `save_config` writes it.
    ///
    /// Python's json module writes non-finite floats as the bare tokens
    /// `Infinity`, `-Infinity` and `NaN`, which are not JSON (DPM-Solver's
    /// default `lambda_min_clipped` is one), so they are quoted before
    /// parsing; the fields that may hold them accept the strings.
    pub fn from_json_str(text: &str) -> Result<Self, SchedulerError> {
        serde_json::from_str(&quote_non_finite(text))
            .map_err(|e| SchedulerError::Json(e.to_string()))
    }
}

/// Puts quotes around the bare non-finite tokens Python writes, outside strings.
fn quote_non_finite(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some(token) = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|t| rest.starts_with(t))
        {
            out.push('"');
            out.push_str(token);
            out.push('"');
            rest = &rest[token.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn ser_extended_f64<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(*v)
    } else if v.is_nan() {
        s.serialize_str("NaN")
    } else if *v > 0.0 {
        s.serialize_str("Infinity")
    } else {
        s.serialize_str("-Infinity")
    }
}

fn de_extended_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    struct Extended;
    impl serde::de::Visitor<'_> for Extended {
        type Value = f64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a number, \"-Infinity\", \"Infinity\" or \"NaN\"")
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<f64, E> {
            match v {
                "-Infinity" => Ok(f64::NEG_INFINITY),
                "Infinity" => Ok(f64::INFINITY),
                "NaN" => Ok(f64::NAN),
                _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
            }
        }
        // diffusers' default; a null can only come from a hand-written file.
        fn visit_unit<E: serde::de::Error>(self) -> Result<f64, E> {
            Ok(f64::NEG_INFINITY)
        }
    }
    d.deserialize_any(Extended)
}

/// A sampler: the timesteps to visit and the update from one to the next.
pub trait Scheduler {
    /// The name [`from_name`] knows it by.
    fn name(&self) -> &'static str;
    /// Chooses `num_inference_steps` timesteps and resets any multistep state.
    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<(), SchedulerError>;
    /// The timesteps to call the model at, in order (empty before `set_timesteps`).
    fn timesteps(&self) -> &[i64];
    /// One denoising step: the model's output at `timestep` for `sample`
    /// gives the sample at the next timestep.
    fn step(
        &mut self,
        model_output: &[f32],
        timestep: i64,
        sample: &[f32],
    ) -> Result<Vec<f32>, SchedulerError>;
    /// The standard deviation of the initial noise (both schedulers here
    /// work in variance-preserving units, so it is 1).
    fn init_noise_sigma(&self) -> f32;
}

/// Builds a scheduler by name: "ddim" or "dpm-solver++".
pub fn from_name(
    name: &str,
    cfg: SchedulerConfig,
) -> Result<Box<dyn Scheduler + Send>, SchedulerError> {
    match name {
        Ddim::NAME => Ok(Box::new(Ddim::new(cfg)?)),
        DpmSolverMultistep::NAME => Ok(Box::new(DpmSolverMultistep::new(cfg)?)),
        other => Err(SchedulerError::UnknownScheduler(other.to_string())),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prediction {
    Epsilon,
    Velocity,
    Sample,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spacing {
    Leading,
    Trailing,
    Linspace,
}

impl Spacing {
    fn as_str(self) -> &'static str {
        match self {
            Spacing::Leading => "leading",
            Spacing::Trailing => "trailing",
            Spacing::Linspace => "linspace",
        }
    }
}

fn unsupported(field: &'static str, value: impl std::fmt::Display) -> SchedulerError {
    SchedulerError::Unsupported {
        field,
        value: value.to_string(),
    }
}

fn require_false(field: &'static str, value: bool) -> Result<(), SchedulerError> {
    if value {
        Err(unsupported(field, true))
    } else {
        Ok(())
    }
}

fn parse_prediction(cfg: &SchedulerConfig) -> Result<Prediction, SchedulerError> {
    match cfg.prediction_type.as_str() {
        "epsilon" => Ok(Prediction::Epsilon),
        "v_prediction" => Ok(Prediction::Velocity),
        "sample" => Ok(Prediction::Sample),
        other => Err(unsupported("prediction_type", format!("\"{other}\""))),
    }
}

fn parse_spacing(cfg: &SchedulerConfig, default: Spacing) -> Result<Spacing, SchedulerError> {
    match cfg.timestep_spacing.as_deref() {
        None => Ok(default),
        Some("leading") => Ok(Spacing::Leading),
        Some("trailing") => Ok(Spacing::Trailing),
        Some("linspace") => Ok(Spacing::Linspace),
        Some(other) => Err(unsupported("timestep_spacing", format!("\"{other}\""))),
    }
}

/// torch's float32 `linspace` on the CPU, value for value.
///
/// torch fills the first half forwards from `start` and the second half
/// backwards from `end`, each value one fused multiply-add in float32; a
/// float64 linspace rounded to float32 differs from it in about a third of
/// the betas, by one ulp, and those ulps would carry into every alpha.
fn torch_linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let halfway = steps / 2;
    (0..steps)
        .map(|i| {
            if i < halfway {
                step.mul_add(i as f32, start)
            } else {
                (-step).mul_add((steps - i - 1) as f32, end)
            }
        })
        .collect()
}

/// Betas as diffusers' float32 tensor: torch's float32 linspace for the
/// linear schedules, the cosine schedule in float64 (Python floats) rounded
/// once at the end.
fn betas(cfg: &SchedulerConfig) -> Result<Vec<f32>, SchedulerError> {
    let n = cfg.num_train_timesteps;
    if n == 0 {
        return Err(unsupported("num_train_timesteps", 0));
    }
    if let Some(b) = &cfg.trained_betas {
        return Err(unsupported(
            "trained_betas",
            format!("[{} values]", b.len()),
        ));
    }
    require_false("rescale_betas_zero_snr", cfg.rescale_betas_zero_snr)?;
    for (field, v) in [("beta_start", cfg.beta_start), ("beta_end", cfg.beta_end)] {
        if !(0.0..1.0).contains(&v) {
            return Err(unsupported(field, v));
        }
    }
    Ok(match cfg.beta_schedule.as_str() {
        "linear" => torch_linspace_f32(cfg.beta_start as f32, cfg.beta_end as f32, n),
        "scaled_linear" => {
            // Python's `beta ** 0.5` is libm pow, not sqrt; keep it bit-identical.
            let (a, b) = (cfg.beta_start.powf(0.5), cfg.beta_end.powf(0.5));
            torch_linspace_f32(a as f32, b as f32, n)
                .into_iter()
                .map(|x| x * x)
                .collect()
        }
        "squaredcos_cap_v2" => {
            let alpha_bar = |t: f64| {
                ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0)
                    .cos()
                    .powf(2.0)
            };
            (0..n)
                .map(|i| {
                    let t1 = i as f64 / n as f64;
                    let t2 = (i + 1) as f64 / n as f64;
                    (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
                })
                .collect()
        }
        other => return Err(unsupported("beta_schedule", format!("\"{other}\""))),
    })
}

/// The cumulative products of alphas (`alphas_cumprod`) as diffusers' float32 tensor.
///
/// The running product is accumulated in float64 and rounded per entry:
/// that is what torch's CPU `cumprod` does for float32 input, and it keeps
/// a thousand-factor product from drifting by float32 roundings.
fn alphas_cumprod(cfg: &SchedulerConfig) -> Result<Vec<f32>, SchedulerError> {
    let mut product = 1.0f64;
    Ok(betas(cfg)?
        .into_iter()
        .map(|beta| {
            product *= f64::from(1.0f32 - beta);
            product as f32
        })
        .collect())
}

/// numpy's `linspace(start, stop, num)` (endpoint included), value for value.
fn numpy_linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 0 {
        return Vec::new();
    }
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    v[num - 1] = stop;
    v
}

/// numpy's `arange(start, stop, step)` for floats, value for value.
///
/// numpy takes `ceil((stop - start) / step)` values and fills them as
/// `start + i * ((start + step) - start)`; both details decide which
/// timesteps "trailing" spacing produces (and sometimes add one past the
/// end, which [`check_range`] then refuses).
fn numpy_arange(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil();
    if len.is_nan() || len <= 0.0 {
        return Vec::new();
    }
    let len = len as usize;
    let second = start + step;
    let delta = second - start;
    (0..len)
        .map(|i| match i {
            0 => start,
            1 => second,
            _ => start + i as f64 * delta,
        })
        .collect()
}

/// numpy's `round` (halves to even), then `astype(int64)`.
fn round_i64(v: f64) -> i64 {
    v.round_ties_even() as i64
}

fn check_range(
    timesteps: &[i64],
    steps: usize,
    spacing: Spacing,
    num_train_timesteps: usize,
) -> Result<(), SchedulerError> {
    match timesteps
        .iter()
        .find(|&&t| t < 0 || t >= num_train_timesteps as i64)
    {
        Some(&timestep) => Err(SchedulerError::TimestepOutOfRange {
            steps,
            spacing: spacing.as_str(),
            timestep,
            num_train_timesteps,
        }),
        None => Ok(()),
    }
}

fn check_lengths(model_output: &[f32], sample: &[f32]) -> Result<(), SchedulerError> {
    if model_output.len() != sample.len() {
        return Err(SchedulerError::LengthMismatch {
            model_output: model_output.len(),
            sample: sample.len(),
        });
    }
    Ok(())
}

/// DDIM (diffusers' `DDIMScheduler`) with eta = 0.
///
/// eta = 0 is the deterministic sampler: no fresh noise is added at any
/// step, so a given initial noise and model always give the same image,
/// and the update needs no random source.
#[derive(Debug, Clone)]
pub struct Ddim {
    num_train_timesteps: usize,
    prediction: Prediction,
    spacing: Spacing,
    steps_offset: i64,
    clip: Option<f32>,
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
    num_inference_steps: Option<usize>,
    timesteps: Vec<i64>,
}

impl Ddim {
    pub const NAME: &'static str = "ddim";

    /// Checks the config up front, so an unsupported setting fails here
    /// rather than part-way through sampling.
    pub fn new(cfg: SchedulerConfig) -> Result<Self, SchedulerError> {
        require_false("thresholding", cfg.thresholding)?;
        let prediction = parse_prediction(&cfg)?;
        let spacing = parse_spacing(&cfg, Spacing::Leading)?;
        let clip = if cfg.clip_sample {
            if cfg.clip_sample_range.is_nan() || cfg.clip_sample_range < 0.0 {
                return Err(unsupported("clip_sample_range", cfg.clip_sample_range));
            }
            Some(cfg.clip_sample_range as f32)
        } else {
            None
        };
        let alphas_cumprod = alphas_cumprod(&cfg)?;
        let final_alpha_cumprod = if cfg.set_alpha_to_one {
            1.0
        } else {
            alphas_cumprod[0]
        };
        Ok(Self {
            num_train_timesteps: cfg.num_train_timesteps,
            prediction,
            spacing,
            steps_offset: cfg.steps_offset,
            clip,
            alphas_cumprod,
            final_alpha_cumprod,
            num_inference_steps: None,
            timesteps: Vec::new(),
        })
    }
}

impl Scheduler for Ddim {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn set_timesteps(&mut self, n: usize) -> Result<(), SchedulerError> {
        let train = self.num_train_timesteps;
        if n == 0 || n > train {
            return Err(SchedulerError::InvalidSteps {
                steps: n,
                num_train_timesteps: train,
            });
        }
        let timesteps: Vec<i64> = match self.spacing {
            Spacing::Linspace => numpy_linspace(0.0, (train - 1) as f64, n)
                .into_iter()
                .rev()
                .map(round_i64)
                .collect(),
            Spacing::Leading => {
                let ratio = (train / n) as i64;
                (0..n as i64)
                    .rev()
                    .map(|i| i * ratio + self.steps_offset)
                    .collect()
            }
            Spacing::Trailing => numpy_arange(train as f64, 0.0, -(train as f64 / n as f64))
                .into_iter()
                .map(|t| round_i64(t) - 1)
                .collect(),
        };
        check_range(&timesteps, n, self.spacing, train)?;
        self.timesteps = timesteps;
        self.num_inference_steps = Some(n);
        Ok(())
    }

    fn timesteps(&self) -> &[i64] {
        &self.timesteps
    }

    fn step(
        &mut self,
        model_output: &[f32],
        timestep: i64,
        sample: &[f32],
    ) -> Result<Vec<f32>, SchedulerError> {
        let n = self
            .num_inference_steps
            .ok_or(SchedulerError::NotInitialised)?;
        check_lengths(model_output, sample)?;
        // diffusers would step from any training timestep; holding callers
        // to the schedule's makes a mixed-up schedule fail loudly.
        if !self.timesteps.contains(&timestep) {
            return Err(SchedulerError::UnknownTimestep(timestep));
        }
        // diffusers steps back by the whole-number ratio even where the
        // schedule's own spacing is not whole ("trailing" with 12 of 1000
        // steps), so the previous alpha is not always the next timestep's.
        let prev = timestep - (self.num_train_timesteps / n) as i64;
        let alpha_t = self.alphas_cumprod[timestep as usize];
        let alpha_prev = if prev >= 0 {
            self.alphas_cumprod[prev as usize]
        } else {
            self.final_alpha_cumprod
        };
        let beta_t = 1.0 - alpha_t;
        let (sqrt_alpha_t, sqrt_beta_t) = (alpha_t.sqrt(), beta_t.sqrt());
        let sqrt_alpha_prev = alpha_prev.sqrt();
        // With eta = 0 the noise term's standard deviation is 0, and the
        // direction pointing to x_t gets the whole remaining variance.
        let direction = (1.0 - alpha_prev).sqrt();
        let prediction = self.prediction;
        let clip = self.clip;
        Ok(model_output
            .iter()
            .zip(sample)
            .map(|(&m, &x)| {
                let (x0, eps) = match prediction {
                    Prediction::Epsilon => ((x - sqrt_beta_t * m) / sqrt_alpha_t, m),
                    Prediction::Sample => (m, (x - sqrt_alpha_t * m) / sqrt_beta_t),
                    Prediction::Velocity => (
                        sqrt_alpha_t * x - sqrt_beta_t * m,
                        sqrt_alpha_t * m + sqrt_beta_t * x,
                    ),
                };
                let x0 = match clip {
                    Some(r) => x0.clamp(-r, r),
                    None => x0,
                };
                sqrt_alpha_prev * x0 + direction * eps
            })
            .collect())
    }

    fn init_noise_sigma(&self) -> f32 {
        1.0
    }
}

/// DPM-Solver++ multistep (diffusers' `DPMSolverMultistepScheduler` with
/// `algorithm_type = "dpmsolver++"`), first or second order, midpoint rule.
///
/// The solver works on the model's estimate of the clean sample rather than
/// the noise, which keeps large guidance scales stable; the second-order
/// update reuses the previous step's estimate instead of calling the model
/// twice, so it costs one model call per step like DDIM.
#[derive(Debug, Clone)]
pub struct DpmSolverMultistep {
    num_train_timesteps: usize,
    order: usize,
    prediction: Prediction,
    spacing: Spacing,
    steps_offset: i64,
    lower_order_final: bool,
    euler_at_final: bool,
    final_sigma_zero: bool,
    /// One past the last training timestep `lambda_min_clipped` keeps.
    last_timestep: usize,
    /// sqrt((1 - alpha_bar) / alpha_bar) per training timestep.
    train_sigmas: Vec<f32>,
    initialised: bool,
    timesteps: Vec<i64>,
    /// One per timestep, plus the final one.
    sigmas: Vec<f32>,
    step_index: Option<usize>,
    previous_x0: Option<Vec<f32>>,
    lower_order_nums: usize,
}

/// alpha_t and sigma_t from the noise-to-signal ratio, in diffusers' float32 order.
fn alpha_sigma(sigma: f32) -> (f32, f32) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha, sigma * alpha)
}

/// The half log-SNR, lambda = log(alpha_t) - log(sigma_t); +inf at sigma = 0.
fn lambda(alpha: f32, sigma: f32) -> f32 {
    alpha.ln() - sigma.ln()
}

impl DpmSolverMultistep {
    pub const NAME: &'static str = "dpm-solver++";

    /// Checks the config up front, so an unsupported setting fails here
    /// rather than part-way through sampling.
    pub fn new(cfg: SchedulerConfig) -> Result<Self, SchedulerError> {
        require_false("thresholding", cfg.thresholding)?;
        if !matches!(cfg.solver_order, 1 | 2) {
            return Err(unsupported("solver_order", cfg.solver_order));
        }
        if cfg.algorithm_type != "dpmsolver++" {
            return Err(unsupported(
                "algorithm_type",
                format!("\"{}\"", cfg.algorithm_type),
            ));
        }
        if cfg.solver_type != "midpoint" {
            return Err(unsupported(
                "solver_type",
                format!("\"{}\"", cfg.solver_type),
            ));
        }
        let final_sigma_zero = match cfg.final_sigmas_type.as_str() {
            "zero" => true,
            "sigma_min" => false,
            other => return Err(unsupported("final_sigmas_type", format!("\"{other}\""))),
        };
        if let Some(v) = &cfg.variance_type {
            return Err(unsupported("variance_type", format!("\"{v}\"")));
        }
        require_false("use_karras_sigmas", cfg.use_karras_sigmas)?;
        require_false("use_exponential_sigmas", cfg.use_exponential_sigmas)?;
        require_false("use_beta_sigmas", cfg.use_beta_sigmas)?;
        require_false("use_lu_lambdas", cfg.use_lu_lambdas)?;
        require_false("use_flow_sigmas", cfg.use_flow_sigmas)?;
        if cfg.lambda_min_clipped.is_nan() {
            return Err(unsupported("lambda_min_clipped", "NaN"));
        }
        let prediction = parse_prediction(&cfg)?;
        let spacing = parse_spacing(&cfg, Spacing::Linspace)?;
        let alphas_cumprod = alphas_cumprod(&cfg)?;
        let train_sigmas = alphas_cumprod
            .iter()
            .map(|&a| ((1.0 - a) / a).sqrt())
            .collect();
        // Timesteps (from the noisy end) whose log-SNR is below the clip are
        // never visited; the comparison is in float32, as torch's searchsorted
        // does it against the float32 lambdas.
        let clip = cfg.lambda_min_clipped as f32;
        let clipped = alphas_cumprod
            .iter()
            .rev()
            .take_while(|&&a| lambda(a.sqrt(), (1.0 - a).sqrt()) < clip)
            .count();
        if clipped == alphas_cumprod.len() {
            return Err(unsupported("lambda_min_clipped", cfg.lambda_min_clipped));
        }
        Ok(Self {
            num_train_timesteps: cfg.num_train_timesteps,
            order: cfg.solver_order,
            prediction,
            spacing,
            steps_offset: cfg.steps_offset,
            lower_order_final: cfg.lower_order_final,
            euler_at_final: cfg.euler_at_final,
            final_sigma_zero,
            last_timestep: cfg.num_train_timesteps - clipped,
            train_sigmas,
            initialised: false,
            timesteps: Vec::new(),
            sigmas: Vec::new(),
            step_index: None,
            previous_x0: None,
            lower_order_nums: 0,
        })
    }

    /// The clean-sample estimate the model output implies at `sigma`.
    fn predicted_x0(&self, model_output: &[f32], sample: &[f32], sigma: f32) -> Vec<f32> {
        let (alpha_t, sigma_t) = alpha_sigma(sigma);
        match self.prediction {
            Prediction::Epsilon => model_output
                .iter()
                .zip(sample)
                .map(|(&m, &x)| (x - sigma_t * m) / alpha_t)
                .collect(),
            Prediction::Sample => model_output.to_vec(),
            Prediction::Velocity => model_output
                .iter()
                .zip(sample)
                .map(|(&m, &x)| alpha_t * x - sigma_t * m)
                .collect(),
        }
    }
}

impl Scheduler for DpmSolverMultistep {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn set_timesteps(&mut self, n: usize) -> Result<(), SchedulerError> {
        let train = self.num_train_timesteps;
        // diffusers accepts more steps than training timesteps here and then
        // repeats timesteps, dividing by a zero step; refuse instead.
        if n == 0 || n > train {
            return Err(SchedulerError::InvalidSteps {
                steps: n,
                num_train_timesteps: train,
            });
        }
        let last = self.last_timestep;
        let timesteps: Vec<i64> = match self.spacing {
            Spacing::Linspace => {
                let mut t = numpy_linspace(0.0, last as f64 - 1.0, n + 1);
                t.remove(0);
                t.into_iter().rev().map(round_i64).collect()
            }
            Spacing::Leading => {
                let ratio = (last / (n + 1)) as i64;
                (1..=n as i64)
                    .rev()
                    .map(|i| i * ratio + self.steps_offset)
                    .collect()
            }
            Spacing::Trailing => numpy_arange(last as f64, 0.0, -(train as f64 / n as f64))
                .into_iter()
                .map(|t| round_i64(t) - 1)
                .collect(),
        };
        check_range(&timesteps, n, self.spacing, train)?;
        let sigma_last = if self.final_sigma_zero {
            0.0
        } else {
            self.train_sigmas[0]
        };
        self.sigmas = timesteps
            .iter()
            .map(|&t| self.train_sigmas[t as usize])
            .chain([sigma_last])
            .collect();
        self.timesteps = timesteps;
        self.initialised = true;
        self.step_index = None;
        self.previous_x0 = None;
        self.lower_order_nums = 0;
        Ok(())
    }

    fn timesteps(&self) -> &[i64] {
        &self.timesteps
    }

    fn step(
        &mut self,
        model_output: &[f32],
        timestep: i64,
        sample: &[f32],
    ) -> Result<Vec<f32>, SchedulerError> {
        if !self.initialised {
            return Err(SchedulerError::NotInitialised);
        }
        check_lengths(model_output, sample)?;
        let len = self.timesteps.len();
        let index = match self.step_index {
            // Starting mid-schedule is allowed (as in diffusers, which then
            // follows its own counter); a repeated timestep starts at its
            // second occurrence, also as diffusers does.
            None => {
                let mut hits = self
                    .timesteps
                    .iter()
                    .enumerate()
                    .filter(|(_, &t)| t == timestep)
                    .map(|(i, _)| i);
                let first = hits
                    .next()
                    .ok_or(SchedulerError::UnknownTimestep(timestep))?;
                hits.next().unwrap_or(first)
            }
            Some(i) if i >= len => return Err(SchedulerError::Exhausted(len)),
            // diffusers ignores the timestep after the first step; a
            // mismatch here is a caller bug that would silently mis-sample.
            Some(i) if self.timesteps[i] != timestep => {
                return Err(SchedulerError::OutOfOrder {
                    index: i,
                    expected: self.timesteps[i],
                    got: timestep,
                })
            }
            Some(i) => i,
        };
        if let Some(prev) = &self.previous_x0 {
            if prev.len() != sample.len() {
                return Err(SchedulerError::SizeChanged {
                    expected: prev.len(),
                    got: sample.len(),
                });
            }
        }

        let is_last = index == len - 1;
        let first_order_final = is_last
            && (self.euler_at_final
                || (self.lower_order_final && len < 15)
                || self.final_sigma_zero);
        let x0 = self.predicted_x0(model_output, sample, self.sigmas[index]);

        let (alpha_t, sigma_t) = alpha_sigma(self.sigmas[index + 1]);
        let (alpha_s0, sigma_s0) = alpha_sigma(self.sigmas[index]);
        let lambda_t = lambda(alpha_t, sigma_t);
        let lambda_s0 = lambda(alpha_s0, sigma_s0);
        let h = lambda_t - lambda_s0;
        let sample_coef = sigma_t / sigma_s0;
        let x0_coef = alpha_t * ((-h).exp() - 1.0);

        let second_order = match &self.previous_x0 {
            Some(prev) if self.order == 2 && self.lower_order_nums >= 1 && !first_order_final => {
                Some(prev)
            }
            _ => None,
        };
        let prev_sample = match second_order {
            None => sample
                .iter()
                .zip(&x0)
                .map(|(&x, &d0)| sample_coef * x - x0_coef * d0)
                .collect(),
            Some(m1) => {
                let (alpha_s1, sigma_s1) = alpha_sigma(self.sigmas[index - 1]);
                let lambda_s1 = lambda(alpha_s1, sigma_s1);
                let r0 = (lambda_s0 - lambda_s1) / h;
                let inv_r0 = 1.0 / r0;
                let half_x0_coef = 0.5 * x0_coef;
                sample
                    .iter()
                    .zip(&x0)
                    .zip(m1)
                    .map(|((&x, &d0), &m1)| {
                        let d1 = inv_r0 * (d0 - m1);
                        sample_coef * x - x0_coef * d0 - half_x0_coef * d1
                    })
                    .collect()
            }
        };

        self.previous_x0 = Some(x0);
        self.lower_order_nums = (self.lower_order_nums + 1).min(self.order);
        self.step_index = Some(index + 1);
        Ok(prev_sample)
    }

    fn init_noise_sigma(&self) -> f32 {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SchedulerConfig {
        SchedulerConfig::default()
    }

    fn with_spacing(spacing: &str) -> SchedulerConfig {
        SchedulerConfig {
            timestep_spacing: Some(spacing.into()),
            ..cfg()
        }
    }

    fn timesteps(name: &str, c: SchedulerConfig, n: usize) -> Vec<i64> {
        let mut s = from_name(name, c).unwrap();
        s.set_timesteps(n).unwrap();
        s.timesteps().to_vec()
    }

    // The expected lists are diffusers 0.42.1's `scheduler.timesteps`.
    #[test]
    fn ddim_timesteps_match_diffusers() {
        let leading = SchedulerConfig {
            steps_offset: 1,
            ..with_spacing("leading")
        };
        assert_eq!(
            timesteps("ddim", leading, 10),
            [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]
        );
        assert_eq!(
            timesteps("ddim", with_spacing("trailing"), 7),
            [999, 856, 713, 570, 428, 285, 142]
        );
        assert_eq!(
            timesteps("ddim", with_spacing("linspace"), 4),
            [999, 666, 333, 0]
        );
        // 499.5 rounds to even, as numpy does.
        assert_eq!(
            timesteps("ddim", with_spacing("linspace"), 3),
            [999, 500, 0]
        );
        assert_eq!(timesteps("ddim", cfg(), 4), [750, 500, 250, 0]);
    }

    #[test]
    fn dpm_timesteps_match_diffusers() {
        assert_eq!(
            timesteps("dpm-solver++", cfg(), 10),
            [999, 899, 799, 699, 599, 500, 400, 300, 200, 100]
        );
        let leading = SchedulerConfig {
            steps_offset: 1,
            ..with_spacing("leading")
        };
        assert_eq!(
            timesteps("dpm-solver++", leading, 5),
            [831, 665, 499, 333, 167]
        );
        assert_eq!(
            timesteps("dpm-solver++", with_spacing("trailing"), 3),
            [999, 666, 332]
        );
        // Clipping the log-SNR drops the noisiest timesteps; "trailing" then
        // yields fewer steps than asked for, as in diffusers.
        let clipped = SchedulerConfig {
            lambda_min_clipped: -4.0,
            ..cfg()
        };
        assert_eq!(timesteps("dpm-solver++", clipped, 4), [888, 666, 444, 222]);
        let clipped = SchedulerConfig {
            lambda_min_clipped: -2.0,
            ..with_spacing("trailing")
        };
        assert_eq!(timesteps("dpm-solver++", clipped, 4), [628, 378, 128]);
    }

    #[test]
    fn trailing_overshoot_is_refused() {
        // numpy's arange yields 62 values for 61 steps, the last -1.
        for name in ["ddim", "dpm-solver++"] {
            let mut s = from_name(name, with_spacing("trailing")).unwrap();
            assert_eq!(
                s.set_timesteps(61),
                Err(SchedulerError::TimestepOutOfRange {
                    steps: 61,
                    spacing: "trailing",
                    timestep: -1,
                    num_train_timesteps: 1000
                })
            );
            s.set_timesteps(60).unwrap();
            assert_eq!(s.timesteps().len(), 60);
        }
    }

    #[test]
    fn leading_offset_past_the_end_is_refused() {
        let c = SchedulerConfig {
            steps_offset: 1,
            ..with_spacing("leading")
        };
        let mut s = from_name("ddim", c).unwrap();
        assert!(matches!(
            s.set_timesteps(1000),
            Err(SchedulerError::TimestepOutOfRange { timestep: 1000, .. })
        ));
    }

    #[test]
    fn schedules_match_torch_bit_for_bit() {
        // Bits of diffusers 0.42.1's `betas` and `alphas_cumprod` (torch 2.x, CPU).
        let bits = |v: f32| v.to_bits();
        let b = betas(&cfg()).unwrap();
        assert_eq!((b[0], b[999]), (0.0001, 0.02));
        assert_eq!(
            [bits(b[1]), bits(b[500]), bits(b[998])],
            [0x38fb7d84, 0x3c24d287, 0x3ca3ad44]
        );
        assert_eq!(bits(alphas_cumprod(&cfg()).unwrap()[999]), 0x38294666);
        let sd = SchedulerConfig {
            beta_schedule: "scaled_linear".into(),
            beta_start: 0.00085,
            beta_end: 0.012,
            ..cfg()
        };
        assert_eq!(bits(betas(&sd).unwrap()[3]), 0x3a62871a);
        assert_eq!(bits(alphas_cumprod(&sd).unwrap()[999]), 0x3b98b3b6);
        let cos = SchedulerConfig {
            beta_schedule: "squaredcos_cap_v2".into(),
            ..cfg()
        };
        assert_eq!(bits(betas(&cos).unwrap()[3]), 0x386a4876);
        let ac = alphas_cumprod(&cos).unwrap();
        assert_eq!(bits(ac[999]), 0x3126e6c2);
        assert!(ac.windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn invalid_step_counts() {
        for name in ["ddim", "dpm-solver++"] {
            let mut s = from_name(name, cfg()).unwrap();
            for n in [0, 1001] {
                assert_eq!(
                    s.set_timesteps(n),
                    Err(SchedulerError::InvalidSteps {
                        steps: n,
                        num_train_timesteps: 1000
                    })
                );
            }
        }
    }

    #[test]
    fn step_errors() {
        for name in ["ddim", "dpm-solver++"] {
            let mut s = from_name(name, cfg()).unwrap();
            assert_eq!(s.name(), name);
            assert_eq!(s.init_noise_sigma(), 1.0);
            assert!(s.timesteps().is_empty());
            let x = vec![0.5f32; 8];
            assert_eq!(s.step(&x, 999, &x), Err(SchedulerError::NotInitialised));
            s.set_timesteps(4).unwrap();
            let t = s.timesteps().to_vec();
            assert_eq!(
                s.step(&x[..7], t[0], &x),
                Err(SchedulerError::LengthMismatch {
                    model_output: 7,
                    sample: 8
                })
            );
            assert_eq!(
                s.step(&x, 123, &x),
                Err(SchedulerError::UnknownTimestep(123))
            );
            assert_eq!(s.step(&x, -1, &x), Err(SchedulerError::UnknownTimestep(-1)));
            let mut y = x.clone();
            for &ti in &t {
                y = s.step(&x, ti, &y).unwrap();
                assert!(y.iter().all(|v| v.is_finite()));
            }
        }
    }

    #[test]
    fn dpm_state_errors() {
        let mut s = DpmSolverMultistep::new(cfg()).unwrap();
        s.set_timesteps(3).unwrap();
        let x = vec![0.1f32; 4];
        let t = s.timesteps().to_vec();
        let y = s.step(&x, t[0], &x).unwrap();
        assert_eq!(
            s.step(&x, t[2], &y),
            Err(SchedulerError::OutOfOrder {
                index: 1,
                expected: t[1],
                got: t[2]
            })
        );
        // A different tensor size mid-run cannot pair with the stored estimate.
        assert_eq!(
            s.step(&x[..2], t[1], &y[..2]),
            Err(SchedulerError::SizeChanged {
                expected: 4,
                got: 2
            })
        );
        let y = s.step(&x, t[1], &y).unwrap();
        let y = s.step(&x, t[2], &y).unwrap();
        assert_eq!(s.step(&x, t[2], &y), Err(SchedulerError::Exhausted(3)));
        // set_timesteps starts over.
        s.set_timesteps(3).unwrap();
        s.step(&x, t[0], &x).unwrap();
    }

    #[test]
    fn final_step_returns_the_clean_estimate() {
        // DPM-Solver++ with a zero final sigma and DDIM with alpha_prod = 1
        // at the end both land exactly on the predicted clean sample.
        let sample_pred = SchedulerConfig {
            prediction_type: "sample".into(),
            clip_sample: false,
            ..cfg()
        };
        let x0 = [0.25f32, -3.0, 1.5];
        for name in ["ddim", "dpm-solver++"] {
            let mut s = from_name(name, sample_pred.clone()).unwrap();
            s.set_timesteps(5).unwrap();
            let t = s.timesteps().to_vec();
            let mut x = vec![1.0f32, 2.0, -1.0];
            for &ti in &t {
                x = s.step(&x0, ti, &x).unwrap();
            }
            assert_eq!(x, x0, "{name}");
        }
    }

    #[test]
    fn ddim_clips_the_clean_estimate() {
        let c = SchedulerConfig {
            prediction_type: "sample".into(),
            clip_sample_range: 0.5,
            ..cfg()
        };
        let mut s = Ddim::new(c).unwrap();
        s.set_timesteps(1).unwrap();
        let out = s.step(&[2.0, -2.0, 0.25], 0, &[0.0; 3]).unwrap();
        assert_eq!(out, [0.5, -0.5, 0.25]);
    }

    #[test]
    fn unsupported_values_name_the_field() {
        let check = |name: &str, edit: &dyn Fn(&mut SchedulerConfig), field: &str, value: &str| {
            let mut c = cfg();
            edit(&mut c);
            match from_name(name, c) {
                Err(SchedulerError::Unsupported { field: f, value: v }) => {
                    assert_eq!((f, v.as_str()), (field, value), "{name}")
                }
                Err(e) => panic!("{name} {field}: wrong error {e}"),
                Ok(_) => panic!("{name} {field}: accepted"),
            }
        };
        for name in ["ddim", "dpm-solver++"] {
            check(
                name,
                &|c| c.beta_schedule = "cosine".into(),
                "beta_schedule",
                "\"cosine\"",
            );
            let flow = "\"flow_prediction\"";
            check(
                name,
                &|c| c.prediction_type = "flow_prediction".into(),
                "prediction_type",
                flow,
            );
            let uniform = |c: &mut SchedulerConfig| c.timestep_spacing = Some("uniform".into());
            check(name, &uniform, "timestep_spacing", "\"uniform\"");
            check(name, &|c| c.thresholding = true, "thresholding", "true");
            check(
                name,
                &|c| c.rescale_betas_zero_snr = true,
                "rescale_betas_zero_snr",
                "true",
            );
            let betas = |c: &mut SchedulerConfig| c.trained_betas = Some(vec![0.1; 3]);
            check(name, &betas, "trained_betas", "[3 values]");
            check(
                name,
                &|c| c.num_train_timesteps = 0,
                "num_train_timesteps",
                "0",
            );
            check(name, &|c| c.beta_end = 1.5, "beta_end", "1.5");
        }
        check(
            "ddim",
            &|c| c.clip_sample_range = -1.0,
            "clip_sample_range",
            "-1",
        );
        let dpm = "dpm-solver++";
        check(dpm, &|c| c.solver_order = 3, "solver_order", "3");
        let sde = |c: &mut SchedulerConfig| c.algorithm_type = "sde-dpmsolver++".into();
        check(dpm, &sde, "algorithm_type", "\"sde-dpmsolver++\"");
        check(
            dpm,
            &|c| c.solver_type = "heun".into(),
            "solver_type",
            "\"heun\"",
        );
        check(
            dpm,
            &|c| c.final_sigmas_type = "one".into(),
            "final_sigmas_type",
            "\"one\"",
        );
        check(
            dpm,
            &|c| c.use_karras_sigmas = true,
            "use_karras_sigmas",
            "true",
        );
        check(
            dpm,
            &|c| c.use_exponential_sigmas = true,
            "use_exponential_sigmas",
            "true",
        );
        check(
            dpm,
            &|c| c.use_beta_sigmas = true,
            "use_beta_sigmas",
            "true",
        );
        check(dpm, &|c| c.use_lu_lambdas = true, "use_lu_lambdas", "true");
        check(
            dpm,
            &|c| c.use_flow_sigmas = true,
            "use_flow_sigmas",
            "true",
        );
        let learned = |c: &mut SchedulerConfig| c.variance_type = Some("learned_range".into());
        check(dpm, &learned, "variance_type", "\"learned_range\"");
        check(
            dpm,
            &|c| c.lambda_min_clipped = f64::NAN,
            "lambda_min_clipped",
            "NaN",
        );
        // A clip above every timestep's log-SNR leaves nothing to sample.
        check(
            dpm,
            &|c| c.lambda_min_clipped = 10.0,
            "lambda_min_clipped",
            "10",
        );
        assert_eq!(
            from_name("euler", cfg()).err(),
            Some(SchedulerError::UnknownScheduler("euler".into()))
        );
    }

    #[test]
    fn reads_diffusers_config_files() {
        // Abridged from DPMSolverMultistepScheduler().save_config(...).
        let text = r#"{
  "_class_name": "DPMSolverMultistepScheduler",
  "_diffusers_version": "0.42.1",
  "algorithm_type": "dpmsolver++",
  "beta_schedule": "scaled_linear",
  "flow_shift": 1.0,
  "lambda_min_clipped": -Infinity,
  "note": "a string with -Infinity and \"NaN\" inside stays as it is",
  "solver_order": 1,
  "timestep_spacing": "trailing",
  "trained_betas": null,
  "variance_type": null
}"#;
        let c = SchedulerConfig::from_json_str(text).unwrap();
        assert_eq!(c.lambda_min_clipped, f64::NEG_INFINITY);
        assert_eq!(c.solver_order, 1);
        assert_eq!(c.beta_schedule, "scaled_linear");
        assert_eq!(c.timestep_spacing.as_deref(), Some("trailing"));
        assert_eq!(c.beta_end, 0.02);
        // Our own output reads back through plain serde_json.
        let back: SchedulerConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let finite = SchedulerConfig {
            lambda_min_clipped: -5.1,
            ..cfg()
        };
        let back: SchedulerConfig =
            serde_json::from_str(&serde_json::to_string(&finite).unwrap()).unwrap();
        assert_eq!(back, finite);
        let read = |t: &str| SchedulerConfig::from_json_str(t).map(|c| c.lambda_min_clipped);
        assert_eq!(
            read(r#"{"lambda_min_clipped": null}"#),
            Ok(f64::NEG_INFINITY)
        );
        assert_eq!(read(r#"{"lambda_min_clipped": -5}"#), Ok(-5.0));
        assert!(read(r#"{"lambda_min_clipped": "low"}"#).is_err());
        assert!(matches!(
            SchedulerConfig::from_json_str("{\"solver_order\": \"two\"}"),
            Err(SchedulerError::Json(_))
        ));
        // A DDIM file is plain JSON.
        let ddim: SchedulerConfig = serde_json::from_str(
            r#"{"clip_sample": false, "set_alpha_to_one": false, "steps_offset": 1}"#,
        )
        .unwrap();
        assert!(!ddim.clip_sample && !ddim.set_alpha_to_one && ddim.steps_offset == 1);
    }
}
