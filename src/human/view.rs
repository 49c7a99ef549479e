//! The human view: machine features P̂ + aux latent -> picture.
//!
//! `fast`: one pass of the fusion decoder, deterministic, trained for pixel
//! fidelity. `diffusion`: the fast picture plus a residual sampled by the
//! denoiser, conditioned through the FCN; the FCN runs once, the denoiser
//! once per step. Both work on the detector's 512x512 frame; [`to_source`]
//! scales the result back to the camera's size for display.

use std::str::FromStr;

use image::{imageops, RgbImage};
use thiserror::Error;

use super::aux::AuxLatent;
use super::bundle::HumanBundle;
use super::scheduler::{self, SchedulerConfig, SchedulerError};
use crate::codec::Normalisation;
use crate::model::bundle::BundleError;
use crate::model::runtime::RuntimeError;
use fchm_codec::container::FrameHeader;

/// Space-to-depth block between the 512x512 picture and the 128x128 grid.
const BLOCK: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewMode {
    Fast,
    Diffusion,
}

impl ViewMode {
    pub fn name(self) -> &'static str {
        match self {
            ViewMode::Fast => "fast",
            ViewMode::Diffusion => "diffusion",
        }
    }
}

impl FromStr for ViewMode {
    type Err = ViewError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fast" => Ok(ViewMode::Fast),
            "diffusion" => Ok(ViewMode::Diffusion),
            other => Err(ViewError::Mode(other.to_owned())),
        }
    }
}

#[derive(Debug, Error)]
pub enum ViewError {
    #[error("unknown view mode {0:?}: expected fast or diffusion")]
    Mode(String),
    #[error("aux frame {aux} does not belong to machine frame {machine}")]
    Sequence { machine: u64, aux: u64 },
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("diffusion scheduler: {0}")]
    Scheduler(#[from] SchedulerError),
    #[error("diffusion scheduler config: {0}")]
    SchedulerConfig(#[from] serde_json::Error),
    #[error("graph {graph} returned {got} values, expected {expected}")]
    Output {
        graph: &'static str,
        got: usize,
        expected: usize,
    },
}

/// Sampling settings of the diffusion path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sampling {
    /// Denoiser evaluations; `None`: the bundle's default.
    pub steps: Option<usize>,
    /// Seed of the initial noise: the same seed gives the same picture.
    pub seed: u64,
}

pub struct HumanDecoder<'b> {
    bundle: &'b HumanBundle,
    scheduler_config: SchedulerConfig,
}

impl<'b> HumanDecoder<'b> {
    pub fn new(bundle: &'b HumanBundle) -> Result<Self, ViewError> {
        let g = &bundle.graphs;
        bundle.require(&g.fast, "hvcn_fast")?;
        bundle.require(&g.fcn, "hvcn_fcn")?;
        bundle.require(&g.denoiser, "hvcn_denoiser")?;
        let scheduler_config: SchedulerConfig =
            serde_json::from_value(bundle.manifest.diffusion.scheduler_config.clone())?;
        // Refuse a scheduler this build cannot run at load, not on the first picture.
        scheduler::from_name(
            &bundle.manifest.diffusion.scheduler,
            scheduler_config.clone(),
        )?;
        Ok(Self {
            bundle,
            scheduler_config,
        })
    }

    /// Render the human view of a machine frame (its header and decoded
    /// features P̂) and its aux frame, 512x512.
    pub fn render(
        &self,
        machine: &FrameHeader,
        features: &[f32],
        aux: &AuxLatent,
        mode: ViewMode,
        sampling: Sampling,
    ) -> Result<RgbImage, ViewError> {
        if machine.sequence != aux.header.sequence {
            return Err(ViewError::Sequence {
                machine: machine.sequence,
                aux: aux.header.sequence,
            });
        }
        let p_hat = centred(machine, features);
        let fast = self.fast(&p_hat, &aux.ya_hat)?;
        let pixels = match mode {
            ViewMode::Fast => fast,
            ViewMode::Diffusion => self.diffusion(&p_hat, &aux.ya_hat, fast, sampling)?,
        };
        Ok(to_image(&pixels, self.side()))
    }

    fn side(&self) -> usize {
        self.bundle.manifest.input.width as usize
    }

    /// The fast picture, planar RGB 0..255, rounded and clipped as in training.
    fn fast(&self, p_hat: &[f32], ya_hat: &[f32]) -> Result<Vec<f32>, ViewError> {
        let g = self.bundle.graphs.fast.as_ref().expect("checked in new()");
        let out = first(
            g.run_named(&[("p_hat", p_hat), ("ya_hat", ya_hat)])?,
            "hvcn_fast",
        )?;
        Ok(out
            .into_iter()
            .map(|v| v.round().clamp(0.0, 255.0))
            .collect())
    }

    fn diffusion(
        &self,
        p_hat: &[f32],
        ya_hat: &[f32],
        fast: Vec<f32>,
        sampling: Sampling,
    ) -> Result<Vec<f32>, ViewError> {
        let b = self.bundle;
        let spec = &b.manifest.diffusion;
        let fcn = b.graphs.fcn.as_ref().expect("checked in new()");
        let mut control = fcn
            .run_named(&[("p_hat", p_hat), ("ya_hat", ya_hat), ("fast", &fast)])?
            .into_iter();
        let (Some(c1), Some(c2)) = (control.next(), control.next()) else {
            return Err(ViewError::Output {
                graph: "hvcn_fcn",
                got: 0,
                expected: 2,
            });
        };
        let denoiser = b.graphs.denoiser.as_ref().expect("checked in new()");
        let len = fast.len();
        let mut sched = scheduler::from_name(&spec.scheduler, self.scheduler_config.clone())?;
        sched.set_timesteps(sampling.steps.unwrap_or(spec.steps))?;
        let sigma = sched.init_noise_sigma();
        let mut x = gaussian(len, sampling.seed);
        x.iter_mut().for_each(|v| *v *= sigma);
        for &t in sched.timesteps().to_vec().iter() {
            let t_in = [t as f32];
            let eps = first(
                denoiser.run_named(&[
                    ("x", &x),
                    ("t", &t_in),
                    ("c1", &c1.data),
                    ("c2", &c2.data),
                ])?,
                "hvcn_denoiser",
            )?;
            x = sched.step(&eps, t, &x)?;
        }
        let residual = depth_to_space(&x, self.side());
        let k = 255.0 / spec.residual_scale;
        Ok(fast
            .iter()
            .zip(residual)
            .map(|(f, r)| (f + k * r).round().clamp(0.0, 255.0))
            .collect())
    }
}

fn first(
    out: Vec<crate::model::runtime::Array>,
    graph: &'static str,
) -> Result<Vec<f32>, ViewError> {
    out.into_iter()
        .next()
        .map(|a| a.data)
        .ok_or(ViewError::Output {
            graph,
            got: 0,
            expected: 1,
        })
}

/// P̂ normalised with the frame's own min/max, centred: what the fusion networks take.
fn centred(machine: &FrameHeader, features: &[f32]) -> Vec<f32> {
    Normalisation {
        min: machine.feature_min,
        max: machine.feature_max,
        gain: 1.0,
    }
    .forward(features)
}

/// Standard normal noise from a seed (Box-Muller over fastrand's uniform).
fn gaussian(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1 = rng.f64().max(f64::MIN_POSITIVE);
        let u2 = rng.f64();
        let r = (-2.0 * u1.ln()).sqrt();
        let a = std::f64::consts::TAU * u2;
        out.push((r * a.cos()) as f32);
        out.push((r * a.sin()) as f32);
    }
    out.truncate(n);
    out
}

/// Inverse of torch's `pixel_unshuffle(x, 4)` for a 3-channel `side` x `side`
/// picture: `[3*16, side/4, side/4]` -> `[3, side, side]`.
fn depth_to_space(x: &[f32], side: usize) -> Vec<f32> {
    let small = side / BLOCK;
    let mut out = vec![0.0; 3 * side * side];
    for c in 0..3 {
        for i in 0..BLOCK {
            for j in 0..BLOCK {
                let plane = &x[((c * BLOCK + i) * BLOCK + j) * small * small..][..small * small];
                for y in 0..small {
                    let row = &mut out[(c * side + y * BLOCK + i) * side..][..side];
                    for (xx, &v) in plane[y * small..][..small].iter().enumerate() {
                        row[xx * BLOCK + j] = v;
                    }
                }
            }
        }
    }
    out
}

/// Planar RGB 0..255 -> image.
fn to_image(planar: &[f32], side: usize) -> RgbImage {
    let plane = side * side;
    RgbImage::from_fn(side as u32, side as u32, |x, y| {
        let i = y as usize * side + x as usize;
        image::Rgb([0, 1, 2].map(|c| planar[c * plane + i] as u8))
    })
}

/// Scale a 512x512 view back to the camera's frame size.
pub fn to_source(view: &RgbImage, width: u16, height: u16) -> RgbImage {
    imageops::resize(
        view,
        u32::from(width.max(1)),
        u32::from(height.max(1)),
        imageops::FilterType::Triangle,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_to_space_inverts_pixel_unshuffle() {
        // pixel_unshuffle: out[(c*4+i)*4+j, y, x] = in[c, 4y+i, 4x+j]
        let side = 8;
        let input: Vec<f32> = (0..3 * side * side).map(|v| v as f32).collect();
        let small = side / 4;
        let mut unshuffled = vec![0.0; input.len()];
        for c in 0..3 {
            for i in 0..4 {
                for j in 0..4 {
                    for y in 0..small {
                        for x in 0..small {
                            unshuffled[(((c * 4 + i) * 4 + j) * small + y) * small + x] =
                                input[(c * side + 4 * y + i) * side + 4 * x + j];
                        }
                    }
                }
            }
        }
        assert_eq!(depth_to_space(&unshuffled, side), input);
    }

    #[test]
    fn noise_is_seeded_and_standard() {
        let a = gaussian(10_001, 7);
        assert_eq!(a, gaussian(10_001, 7));
        assert_ne!(a, gaussian(10_001, 8));
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / a.len() as f64;
        assert!(
            mean.abs() < 0.05 && (var - 1.0).abs() < 0.05,
            "mean {mean} var {var}"
        );
    }

    #[test]
    fn view_modes_parse() {
        assert_eq!("fast".parse::<ViewMode>().unwrap(), ViewMode::Fast);
        assert_eq!(
            "diffusion".parse::<ViewMode>().unwrap(),
            ViewMode::Diffusion
        );
        let e = "slow".parse::<ViewMode>().unwrap_err().to_string();
        assert!(e.contains("slow") && e.contains("fast or diffusion"), "{e}");
    }
}
