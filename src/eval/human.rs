//! `fchm eval --human`: the human layer's rate–distortion against JPEG and WebP.
//!
//! Protocol:
//!
//! - **Images**: as for the machine layer (every image of the folder,
//!   stretched to the 512×512 detector input, [`preprocess::to_input`],
//!   rounded to 8 bits). That picture is the reference of every codec.
//! - **fchm fast / diffusion**: the machine layer at each machine gain and the
//!   aux layer at each aux gain are coded and decoded through the real frame
//!   payloads; the human view ([`HumanDecoder`]) is compared with the
//!   reference. Rate = machine payload + aux payload (total bits).
//!   Diffusion (seed 0, the bundle's step count unless given) runs at one
//!   machine gain, on the first `diffusion_images` images only; its table is
//!   computed against JPEG/WebP on the same images.
//! - **Baselines**: JPEG and WebP of the reference at a quality sweep.
//! - **Rate**: bpp of the 512×512 picture, mean over images; **PSNR**: mean
//!   over images of the per-image PSNR (RGB); **MS-SSIM**: mean over images
//!   ([`quality::ms_ssim`]).
//! - **BD-rate** (PSNR and MS-SSIM): [`bdrate::bd_rate`] over each curve's
//!   rate–quality frontier; the fchm curves are the frontier of every
//!   (machine gain, aux gain) pair. Negative = fchm needs fewer bits.
//! - **Machine floor**: per machine gain, JPEG's PSNR at the machine payload
//!   alone and at that payload / [`GOAL_RATE_SHARE`], the least the view must
//!   reach to match JPEG's bits or to meet the goal ([`MachineFloor`]).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use image::imageops::{self, FilterType};
use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};
use plotters::style::RGBColor;
use serde::Serialize;

use super::baseline::Baseline;
use super::bdrate::{self, RatePoint};
use super::{list_images, plot, quality, BdRateEntry};
use crate::codec::{FeatureDecoder, FeatureEncoder, FrameMeta};
use crate::human::view::Sampling;
use crate::human::{AuxDecoder, AuxEncoder, HumanBundle, HumanDecoder, ViewMode};
use crate::model::{preprocess, Bundle, Role};
use fchm_codec::container::FrameRef;

#[derive(Debug, Clone)]
pub struct HumanEvalConfig {
    pub bundle: PathBuf,
    pub human_bundle: PathBuf,
    pub images: PathBuf,
    pub out: PathBuf,
    pub machine_gains: Vec<f32>,
    pub aux_gains: Vec<f32>,
    pub qualities: Vec<u8>,
    /// Images the diffusion path runs on (the first ones); 0: none.
    pub diffusion_images: usize,
    /// Machine gain of the diffusion points; default: the middle of `machine_gains`.
    pub diffusion_machine_gain: Option<f32>,
    pub diffusion_steps: Option<usize>,
    /// Rows of the picture grid (original, JPEG at the same rate, fast, diffusion).
    pub grid_images: usize,
    pub progress: bool,
}

/// One point: a codec setting's mean rate and fidelity over its images.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HumanRow {
    /// `fast`, `diffusion`, `jpeg` or `webp`.
    pub codec: String,
    pub machine_gain: Option<f32>,
    pub aux_gain: Option<f32>,
    pub quality: Option<u8>,
    /// Images the point was measured on (the first `images` of the folder).
    pub images: usize,
    pub bpp: f64,
    /// Of `bpp`: the machine and aux layers (fchm rows only).
    pub machine_bpp: Option<f64>,
    pub aux_bpp: Option<f64>,
    pub psnr: f64,
    pub ms_ssim: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HumanBdRate {
    pub test: String,
    pub metric: String,
    pub images: usize,
    #[serde(flatten)]
    pub entry: BdRateEntry,
}

/// The goal for the human view: at most this share of JPEG's bits
/// at equal PSNR (30 % fewer).
pub const GOAL_RATE_SHARE: f64 = 0.7;

/// What one machine gain's payload alone leaves the human view. Every fchm
/// point at that gain is charged the machine payload M whatever its aux gain,
/// and the anchor's PSNR rises with its rate, so at total rate M + A ≥ M the
/// view must reach at least the anchor's PSNR at M to match the anchor's
/// bits, and at least its PSNR at M / [`GOAL_RATE_SHARE`] to meet the goal.
/// These are lower bounds read off the anchor's own curve: a machine layer
/// whose payload alone buys the anchor more PSNR than the view reaches makes
/// the goal unreachable at that gain, whatever the aux layer does.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MachineFloor {
    pub machine_gain: f32,
    pub machine_bpp: f64,
    pub anchor: String,
    /// The anchor's PSNR at `machine_bpp`; `None` outside its measured rates.
    pub anchor_psnr_at_machine_bpp: Option<f64>,
    /// The anchor's PSNR at `machine_bpp / GOAL_RATE_SHARE`; `None` outside its rates.
    pub anchor_psnr_for_goal: Option<f64>,
    /// The best fast view at this machine gain (any aux gain).
    pub fast_psnr: f64,
}

/// One codec's rows as (total bpp, PSNR) points.
fn psnr_curve(points: &[HumanRow], codec: &str) -> Vec<RatePoint> {
    points
        .iter()
        .filter(|p| p.codec == codec)
        .map(|p| RatePoint {
            rate: p.bpp,
            quality: p.psnr,
        })
        .collect()
}

impl MachineFloor {
    /// One floor per machine gain of the fast rows, against the anchor rows.
    pub fn of(points: &[HumanRow], anchor: &str) -> Vec<Self> {
        let curve = psnr_curve(points, anchor);
        let mut out: Vec<Self> = Vec::new();
        for p in points.iter().filter(|p| p.codec == "fast") {
            let (Some(mg), Some(mb)) = (p.machine_gain, p.machine_bpp) else {
                continue;
            };
            match out.iter_mut().find(|f| f.machine_gain == mg) {
                Some(f) => f.fast_psnr = f.fast_psnr.max(p.psnr),
                None => out.push(Self {
                    machine_gain: mg,
                    machine_bpp: mb,
                    anchor: anchor.to_owned(),
                    anchor_psnr_at_machine_bpp: bdrate::quality_at(&curve, mb),
                    anchor_psnr_for_goal: bdrate::quality_at(&curve, mb / GOAL_RATE_SHARE),
                    fast_psnr: p.psnr,
                }),
            }
        }
        out
    }

    fn describe(&self) -> String {
        let db = |v: Option<f64>| {
            v.map_or_else(
                || format!("(outside {}'s measured rates)", self.anchor),
                |q| format!("{q:.2} dB"),
            )
        };
        format!(
            "machine gain {}: the machine payload alone is {:.4} bpp, at which {} reaches {}; \
             the view needs at least that to match {}'s bits and {} for {:.0} % fewer; \
             the fast view reaches {:.2} dB",
            self.machine_gain,
            self.machine_bpp,
            self.anchor,
            db(self.anchor_psnr_at_machine_bpp),
            self.anchor,
            db(self.anchor_psnr_for_goal),
            (1.0 - GOAL_RATE_SHARE) * 100.0,
            self.fast_psnr
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HumanSummary {
    pub images: usize,
    pub image_files: Vec<String>,
    pub bd_rate: Vec<HumanBdRate>,
    /// Per machine gain, what its payload alone leaves the fast view against JPEG.
    pub machine_floor: Vec<MachineFloor>,
    pub points: Vec<HumanRow>,
    /// Denoiser evaluations per second (diffusion sampling, one thread of tract).
    pub diffusion_steps_per_s: Option<f64>,
    pub diffusion_steps: Option<usize>,
    pub fast_ms_per_image: Option<f64>,
    pub bundle: serde_json::Value,
    pub human_bundle: serde_json::Value,
    pub csv: PathBuf,
    pub plot: PathBuf,
    pub grid: Option<PathBuf>,
    pub json: PathBuf,
    pub plot_text_missing: Option<String>,
    pub elapsed_s: f64,
}

impl HumanSummary {
    pub fn report(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "human layer on {} image(s)", self.images);
        let _ = writeln!(
            s,
            "{:<10} {:>7} {:>7} {:>4} {:>6} {:>8} {:>8} {:>8} {:>7}",
            "codec", "m.gain", "a.gain", "q", "images", "bpp", "aux bpp", "PSNR", "MS-SSIM"
        );
        let opt = |v: Option<f32>| v.map_or("-".to_owned(), |g| format!("{g:.3}"));
        for p in &self.points {
            let _ = writeln!(
                s,
                "{:<10} {:>7} {:>7} {:>4} {:>6} {:>8.4} {:>8} {:>8.2} {:>7.4}",
                p.codec,
                opt(p.machine_gain),
                opt(p.aux_gain),
                p.quality.map_or("-".to_owned(), |q| q.to_string()),
                p.images,
                p.bpp,
                p.aux_bpp.map_or("-".to_owned(), |b| format!("{b:.4}")),
                p.psnr,
                p.ms_ssim
            );
        }
        for b in &self.bd_rate {
            let _ = writeln!(
                s,
                "BD-rate ({}) {} vs {} on {} image(s): {}",
                b.metric,
                b.test,
                b.entry.anchor,
                b.images,
                b.entry.describe().replace("mAP", b.metric.as_str())
            );
        }
        for f in &self.machine_floor {
            let _ = writeln!(s, "{}", f.describe());
        }
        if let (Some(r), Some(n)) = (self.diffusion_steps_per_s, self.diffusion_steps) {
            let _ = writeln!(
                s,
                "diffusion sampling: {r:.2} denoiser steps/s ({n} steps per picture)"
            );
        }
        if let Some(ms) = self.fast_ms_per_image {
            let _ = writeln!(s, "fast decoder: {ms:.0} ms per picture");
        }
        s
    }
}

/// Per-image measurements of one setting.
struct Acc {
    codec: &'static str,
    machine_gain: Option<f32>,
    aux_gain: Option<f32>,
    quality: Option<u8>,
    machine_bytes: Vec<u64>,
    aux_bytes: Vec<u64>,
    psnr: Vec<f64>,
    ms_ssim: Vec<f64>,
}

impl Acc {
    fn new(codec: &'static str, mg: Option<f32>, ag: Option<f32>, q: Option<u8>) -> Self {
        Self {
            codec,
            machine_gain: mg,
            aux_gain: ag,
            quality: q,
            machine_bytes: vec![],
            aux_bytes: vec![],
            psnr: vec![],
            ms_ssim: vec![],
        }
    }

    fn push(&mut self, machine: u64, aux: u64, reference: &RgbImage, decoded: &RgbImage) {
        self.machine_bytes.push(machine);
        self.aux_bytes.push(aux);
        self.psnr.push(quality::psnr(reference, decoded).min(100.0));
        self.ms_ssim
            .push(quality::ms_ssim(reference, decoded).unwrap_or(f64::NAN));
    }

    /// The mean over the first `n` images.
    fn row(&self, n: usize, pixels: f64) -> HumanRow {
        let n = n.min(self.psnr.len());
        let mean = |v: &[f64]| v[..n].iter().sum::<f64>() / n as f64;
        let bpp = |v: &[u64]| v[..n].iter().sum::<u64>() as f64 * 8.0 / (n as f64 * pixels);
        let fchm = self.aux_gain.is_some();
        HumanRow {
            codec: self.codec.to_owned(),
            machine_gain: self.machine_gain,
            aux_gain: self.aux_gain,
            quality: self.quality,
            images: n,
            bpp: bpp(&self.machine_bytes) + bpp(&self.aux_bytes),
            machine_bpp: fchm.then(|| bpp(&self.machine_bytes)),
            aux_bpp: fchm.then(|| bpp(&self.aux_bytes)),
            psnr: mean(&self.psnr),
            ms_ssim: mean(&self.ms_ssim),
        }
    }
}

fn planar_to_image(input: &[f32], w: u32, h: u32) -> RgbImage {
    let plane = (w * h) as usize;
    RgbImage::from_fn(w, h, |x, y| {
        let i = (y * w + x) as usize;
        image::Rgb([0, 1, 2].map(|c| input[c * plane + i].round().clamp(0.0, 255.0) as u8))
    })
}

fn check_gains(what: &str, gains: &[f32], lo: f32, hi: f32) -> Result<()> {
    if gains.is_empty() {
        bail!("no {what} gains given");
    }
    if let Some(g) = gains.iter().find(|&&g| !(g >= lo && g <= hi)) {
        bail!("{what} gain {g} outside the bundle's range {lo}..={hi}");
    }
    Ok(())
}

pub fn run(cfg: &HumanEvalConfig) -> Result<HumanSummary> {
    let t0 = Instant::now();
    let files = list_images(&cfg.images)?;
    let bundle = Bundle::load(&cfg.bundle, Role::All)
        .with_context(|| format!("loading bundle {}", cfg.bundle.display()))?;
    let human = HumanBundle::load(&cfg.human_bundle, Role::All)
        .with_context(|| format!("loading human-layer bundle {}", cfg.human_bundle.display()))?;
    let (m, hm) = (&bundle.manifest, &human.manifest);
    if hm.machine_id() != m.id() {
        bail!(
            "human-layer bundle {} was trained on machine bundle {}, not {}",
            cfg.human_bundle.display(),
            hm.machine_bundle_id,
            m.bundle_id
        );
    }
    check_gains(
        "machine",
        &cfg.machine_gains,
        m.ivn.gain_min,
        m.ivn.gain_max,
    )?;
    check_gains("aux", &cfg.aux_gains, hm.aux.gain_min, hm.aux.gain_max)?;
    if let Some(q) = cfg.qualities.iter().find(|q| !(1..=100).contains(*q)) {
        bail!("quality {q} outside 1..=100");
    }
    let diffusion_mg = cfg
        .diffusion_machine_gain
        .unwrap_or(cfg.machine_gains[cfg.machine_gains.len() / 2]);
    if cfg.diffusion_images > 0 && !cfg.machine_gains.contains(&diffusion_mg) {
        bail!("diffusion machine gain {diffusion_mg} is not one of the machine gains");
    }
    let enc = FeatureEncoder::new(&bundle)?;
    let dec = FeatureDecoder::new(&bundle)?;
    let aux_enc = AuxEncoder::new(&human)?;
    let aux_dec = AuxDecoder::new(&human);
    let view = HumanDecoder::new(&human)?;
    let (w, h) = (m.input.width, m.input.height);
    let pixels = f64::from(w) * f64::from(h);
    let n_diff = cfg.diffusion_images.min(files.len());

    let mut fast: Vec<Acc> = Vec::new();
    let mut diff: Vec<Acc> = Vec::new();
    for &mg in &cfg.machine_gains {
        for &ag in &cfg.aux_gains {
            fast.push(Acc::new("fast", Some(mg), Some(ag), None));
            if mg == diffusion_mg && n_diff > 0 {
                diff.push(Acc::new("diffusion", Some(mg), Some(ag), None));
            }
        }
    }
    let mut base: Vec<(Baseline, Acc)> = Baseline::ALL
        .iter()
        .flat_map(|&b| {
            cfg.qualities
                .iter()
                .map(move |&q| (b, Acc::new(b.name(), None, None, Some(q))))
        })
        .collect();

    let renders = files.len() * fast.len() + n_diff * diff.len() + files.len() * base.len();
    let pb = if cfg.progress {
        ProgressBar::new(renders as u64)
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} eta {eta} {msg}",
        )
        .expect("valid template"),
    );
    let sampling = Sampling {
        steps: cfg.diffusion_steps,
        seed: 0,
    };
    let (mut fast_s, mut fast_n, mut diff_s, mut diff_steps) = (0.0, 0usize, 0.0, 0usize);
    let steps = cfg.diffusion_steps.unwrap_or(hm.diffusion.steps);
    let grid_at = (diffusion_mg, cfg.aux_gains[cfg.aux_gains.len() / 2]);
    let mut grid_rows: Vec<[RgbImage; 4]> = Vec::new();

    for (i, file) in files.iter().enumerate() {
        let name = file
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let ctx = || format!("image {}", file.display());
        let img = image::open(file).with_context(ctx)?.to_rgb8();
        let reference = planar_to_image(&preprocess::to_input(&img, &m.input), w, h);
        let feats = enc.features(&reference).with_context(ctx)?;
        let ya = aux_enc.analyse(&reference, &feats).with_context(ctx)?;
        let meta = FrameMeta {
            sequence: i as u64,
            timestamp_us: 0,
        };
        let mut grid_row: Option<(RgbImage, RgbImage, f64)> = None;
        for &mg in &cfg.machine_gains {
            let machine = enc.encode(&feats, mg, meta).with_context(ctx)?;
            let frame = FrameRef::parse(&machine.bytes)?;
            let (latents, p_hat) = dec.decode_features(&frame).with_context(ctx)?;
            for &ag in &cfg.aux_gains {
                pb.set_message(format!("{name}: machine gain {mg:.2}, aux gain {ag:.2}"));
                let aux = aux_enc.encode(&ya, &feats, ag, meta).with_context(ctx)?;
                let aux_latent = aux_dec.decode(&aux.bytes).with_context(ctx)?;
                let (mb, ab) = (machine.bytes.len() as u64, aux.bytes.len() as u64);
                let t = Instant::now();
                let out = view.render(
                    &latents.header,
                    &p_hat,
                    &aux_latent,
                    ViewMode::Fast,
                    sampling,
                )?;
                fast_s += t.elapsed().as_secs_f64();
                fast_n += 1;
                let acc = fast
                    .iter_mut()
                    .find(|a| a.machine_gain == Some(mg) && a.aux_gain == Some(ag));
                acc.expect("every pair has one")
                    .push(mb, ab, &reference, &out);
                pb.inc(1);
                if i >= n_diff || mg != diffusion_mg {
                    continue;
                }
                pb.set_message(format!("{name}: diffusion, aux gain {ag:.2}"));
                let t = Instant::now();
                let d = view.render(
                    &latents.header,
                    &p_hat,
                    &aux_latent,
                    ViewMode::Diffusion,
                    sampling,
                )?;
                diff_s += t.elapsed().as_secs_f64();
                diff_steps += steps;
                let acc = diff.iter_mut().find(|a| a.aux_gain == Some(ag));
                acc.expect("every aux gain has one")
                    .push(mb, ab, &reference, &d);
                pb.inc(1);
                if (mg, ag) == grid_at && i < cfg.grid_images {
                    grid_row = Some((out, d, (mb + ab) as f64 * 8.0 / pixels));
                }
            }
        }
        let mut jpeg_at: Option<(f64, RgbImage)> = None;
        for (b, acc) in base.iter_mut() {
            let q = acc.quality.expect("baselines have a quality");
            pb.set_message(format!("{name}: {} q{q}", b.label()));
            let (bytes, decoded) = b.round_trip(&reference, q).with_context(ctx)?;
            acc.push(bytes as u64, 0, &reference, &decoded);
            pb.inc(1);
            if let (Baseline::Jpeg, Some((_, _, bpp))) = (b, &grid_row) {
                let dist = ((bytes as f64 * 8.0 / pixels).ln() - bpp.ln()).abs();
                if jpeg_at.as_ref().is_none_or(|(best, _)| dist < *best) {
                    jpeg_at = Some((dist, decoded));
                }
            }
        }
        if let (Some((f, d, _)), Some((_, j))) = (grid_row, jpeg_at) {
            grid_rows.push([reference.clone(), j, f, d]);
        }
    }
    pb.finish_and_clear();

    let mut points: Vec<HumanRow> = fast.iter().map(|a| a.row(files.len(), pixels)).collect();
    points.extend(diff.iter().map(|a| a.row(n_diff, pixels)));
    points.extend(base.iter().map(|(_, a)| a.row(files.len(), pixels)));
    let mut bd = Vec::new();
    let curve = |accs: &mut dyn Iterator<Item = &Acc>, n: usize, ssim: bool| -> Vec<RatePoint> {
        accs.map(|a| {
            let r = a.row(n, pixels);
            RatePoint {
                rate: r.bpp,
                quality: if ssim { r.ms_ssim } else { r.psnr },
            }
        })
        .collect()
    };
    for (test, accs, n) in [("fast", &fast, files.len()), ("diffusion", &diff, n_diff)] {
        if accs.is_empty() || n == 0 {
            continue;
        }
        for (metric, ssim) in [("PSNR", false), ("MS-SSIM", true)] {
            let t = curve(&mut accs.iter(), n, ssim);
            for b in Baseline::ALL {
                let anchor = curve(
                    &mut base.iter().filter(|(x, _)| *x == b).map(|(_, a)| a),
                    n,
                    ssim,
                );
                bd.push(HumanBdRate {
                    test: test.to_owned(),
                    metric: metric.to_owned(),
                    images: n,
                    entry: BdRateEntry::new(b.name(), bdrate::bd_rate(&anchor, &t)),
                });
            }
        }
    }

    fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    let csv = cfg.out.join("human.csv");
    let mut text = String::from(
        "codec,machine_gain,aux_gain,quality,images,bpp,machine_bpp,aux_bpp,psnr,ms_ssim\n",
    );
    let o = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x:.6}"));
    for p in &points {
        let _ = writeln!(
            text,
            "{},{},{},{},{},{:.6},{},{},{:.4},{:.6}",
            p.codec,
            p.machine_gain.map_or(String::new(), |g| g.to_string()),
            p.aux_gain.map_or(String::new(), |g| g.to_string()),
            p.quality.map_or(String::new(), |q| q.to_string()),
            p.images,
            p.bpp,
            o(p.machine_bpp),
            o(p.aux_bpp),
            p.psnr,
            p.ms_ssim
        );
    }
    fs::write(&csv, text).with_context(|| format!("writing {}", csv.display()))?;

    let plot_path = cfg.out.join("human.png");
    let series: Vec<plot::Series> = [
        (
            "fast",
            "fchm fast (frontier of all gain pairs)",
            RGBColor(31, 119, 180),
        ),
        ("diffusion", "fchm diffusion", RGBColor(148, 103, 189)),
        ("jpeg", "JPEG", RGBColor(214, 39, 40)),
        ("webp", "WebP", RGBColor(44, 160, 44)),
    ]
    .iter()
    .map(|&(codec, label, colour)| plot::Series {
        label: label.to_owned(),
        points: bdrate::frontier(&psnr_curve(&points, codec))
            .iter()
            .map(|&(q, lr)| (lr.exp(), q))
            .collect(),
        colour,
    })
    .filter(|s| !s.points.is_empty())
    .collect();
    let title = format!("Human view: PSNR vs total rate, {} image(s)", files.len());
    let y = plot::YAxis::fitting("PSNR (dB, RGB)", &series);
    let plot_text_missing = plot::write_png(&plot_path, &title, &series, y)?.map(str::to_owned);

    let grid = if grid_rows.is_empty() {
        None
    } else {
        let path = cfg.out.join("grid.png");
        write_grid(&path, &grid_rows)?;
        Some(path)
    };
    let json = cfg.out.join("human-summary.json");
    let summary = HumanSummary {
        images: files.len(),
        image_files: files.iter().map(|f| f.display().to_string()).collect(),
        bd_rate: bd,
        machine_floor: MachineFloor::of(&points, Baseline::Jpeg.name()),
        points,
        diffusion_steps_per_s: (diff_steps > 0).then(|| diff_steps as f64 / diff_s),
        diffusion_steps: (diff_steps > 0).then_some(steps),
        fast_ms_per_image: (fast_n > 0).then(|| fast_s * 1e3 / fast_n as f64),
        bundle: serde_json::json!({"dir": cfg.bundle, "bundle_id": m.bundle_id}),
        human_bundle: serde_json::json!({"dir": cfg.human_bundle, "bundle_id": hm.bundle_id}),
        csv,
        plot: plot_path,
        grid,
        json: json.clone(),
        plot_text_missing,
        elapsed_s: t0.elapsed().as_secs_f64(),
    };
    fs::write(&json, serde_json::to_string_pretty(&summary)? + "\n")
        .with_context(|| format!("writing {}", json.display()))?;
    Ok(summary)
}

/// Rows of (original, JPEG at about the same rate, fast, diffusion), 256 px tiles.
fn write_grid(path: &Path, rows: &[[RgbImage; 4]]) -> Result<()> {
    const TILE: u32 = 256;
    const GAP: u32 = 4;
    let mut out = RgbImage::from_pixel(
        4 * TILE + 3 * GAP,
        rows.len() as u32 * (TILE + GAP) - GAP,
        image::Rgb([255; 3]),
    );
    for (r, row) in rows.iter().enumerate() {
        for (c, img) in row.iter().enumerate() {
            let tile = imageops::resize(img, TILE, TILE, FilterType::Triangle);
            imageops::replace(
                &mut out,
                &tile,
                i64::from(c as u32 * (TILE + GAP)),
                i64::from(r as u32 * (TILE + GAP)),
            );
        }
    }
    out.save_with_format(path, image::ImageFormat::Png)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        codec: &str,
        mg: Option<f32>,
        bpp: f64,
        machine_bpp: Option<f64>,
        psnr: f64,
    ) -> HumanRow {
        HumanRow {
            codec: codec.to_owned(),
            machine_gain: mg,
            aux_gain: mg.map(|_| 1.0),
            quality: None,
            images: 1,
            bpp,
            machine_bpp,
            aux_bpp: machine_bpp.map(|m| bpp - m),
            psnr,
            ms_ssim: 0.9,
        }
    }

    #[test]
    fn the_machine_floor_reads_the_anchor_at_the_machine_payload() {
        // JPEG: 30 dB at 0.4 bpp, 34 dB at 0.8 bpp, 38 dB at 1.6 bpp.
        let mut points = vec![
            row("jpeg", None, 0.4, None, 30.0),
            row("jpeg", None, 0.8, None, 34.0),
            row("jpeg", None, 1.6, None, 38.0),
            row("webp", None, 0.1, None, 40.0),
        ];
        // Machine gain 2: payload 0.4 bpp (two aux gains); gain 8: 1.6 bpp.
        points.push(row("fast", Some(2.0), 0.5, Some(0.4), 24.0));
        points.push(row("fast", Some(2.0), 0.7, Some(0.4), 25.0));
        points.push(row("fast", Some(8.0), 1.7, Some(1.6), 27.0));
        let f = MachineFloor::of(&points, "jpeg");
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].machine_gain, f[0].machine_bpp), (2.0, 0.4));
        assert_eq!(f[0].fast_psnr, 25.0, "the best view at that gain");
        assert!((f[0].anchor_psnr_at_machine_bpp.unwrap() - 30.0).abs() < 1e-9);
        // 0.4 / 0.7 = 0.571 bpp lies between JPEG's 0.4 and 0.8 bpp points.
        let goal = f[0].anchor_psnr_for_goal.unwrap();
        assert!(goal > 30.0 && goal < 34.0, "{goal}");
        // 1.6 / 0.7 bpp is beyond JPEG's measured rates: no figure is made up.
        assert!((f[1].anchor_psnr_at_machine_bpp.unwrap() - 38.0).abs() < 1e-9);
        assert_eq!(f[1].anchor_psnr_for_goal, None);
        let text = f[1].describe();
        assert!(text.contains("outside jpeg's measured rates"), "{text}");
    }
}
