//! `fchm eval`: rate–distortion of the machine layer against JPEG and WebP.
//!
//! Protocol (the same as `models/train/fchm_train/metrics.py` and the bundle's
//! rate table):
//!
//! - **Images**: every `.jpg`/`.jpeg`/`.png` in the folder, in name order, each
//!   resized (stretched) to the detector input, 512×512, exactly as
//!   [`preprocess::to_input`] does.
//! - **Ground truth**: the uncompressed detector (`detector_full`) on that
//!   input, post-processed with NMS IoU 0.4, score ≥ 0.3, at most 10 boxes.
//!   No labelled set exists here, so the metric is *fidelity*: how well the
//!   detections after coding agree with the uncompressed detector's. The
//!   uncompressed detector scores mAP 1.0 by construction (reported as a check).
//! - **Machine layer**: the front runs once per image; its features are coded
//!   at each gain ([`FeatureEncoder::encode`]), the payload decoded
//!   ([`FeatureDecoder::decode`]) and its raw detections post-processed with
//!   score ≥ 0.05, at most 100, NMS IoU 0.4. Rate = the whole frame payload.
//! - **Baselines**: the same 512×512 RGB image coded with JPEG and WebP at a
//!   sweep of qualities, decoded, and run through `detector_full`, with the
//!   same post-processing.
//! - **Rate**: bits per pixel of the 512×512 detector input for every codec:
//!   the baselines code exactly the image the detector sees, so all three
//!   spend their bits on the same pixels (coding the full-resolution source
//!   would charge the baselines for detail the detector never receives).
//!   bpp = total bytes × 8 / (images × 512 × 512).
//! - **Score**: fidelity mAP@0.5, COCO 101-point ([`map::mean_ap`]).
//! - **BD-rate**: [`bdrate::bd_rate`], machine layer (test) against each
//!   baseline (anchor), PCHIP of log-rate over mAP on each curve's
//!   rate–quality frontier; negative = the machine layer needs fewer bits.

pub mod baseline;
pub mod bdrate;
pub mod human;
pub mod map;
pub mod plot;
pub mod quality;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use image::imageops::FilterType;
use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};
use plotters::style::RGBColor;
use serde::Serialize;
use serde_json::json;

use self::baseline::Baseline;
use self::bdrate::{BdRate, RatePoint};
use crate::codec::{FeatureDecoder, FeatureEncoder, FrameMeta};
use crate::model::{preprocess, Bundle, Detection, PostProcess, Role};

/// Ground truth: the uncompressed detector's confident boxes.
pub const GT_POST: PostProcess = PostProcess {
    score_min: 0.3,
    iou: 0.4,
    max_detections: 10,
};

/// Predictions after coding: everything above a low floor, for the PR curve.
pub const PRED_POST: PostProcess = PostProcess {
    score_min: 0.05,
    iou: 0.4,
    max_detections: 100,
};

/// Default JPEG/WebP qualities.
pub const DEFAULT_QUALITIES: [u8; 9] = [5, 10, 15, 20, 30, 40, 50, 70, 90];

/// Default number of machine-layer gains.
pub const DEFAULT_GAINS: usize = 8;

/// What to evaluate and where to write it.
#[derive(Debug, Clone)]
pub struct EvalConfig {
    pub bundle: PathBuf,
    pub images: PathBuf,
    pub out: PathBuf,
    /// Summary JSON; `out/summary.json` when `None`.
    pub json: Option<PathBuf>,
    /// Explicit gains; otherwise `num_gains` log-spaced over the bundle's range.
    pub gains: Option<Vec<f32>>,
    pub num_gains: usize,
    pub qualities: Vec<u8>,
    /// Show a progress bar on stderr (indicatif hides it when stderr is not a terminal).
    pub progress: bool,
}

/// One point of an RD curve.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RdRow {
    /// `machine`, `jpeg` or `webp`.
    pub codec: String,
    /// Gain (machine) or quality (baselines).
    pub param: f32,
    /// Mean bits per pixel of the 512×512 detector input.
    pub bpp: f64,
    /// Total coded bytes over all images.
    pub bytes: u64,
    /// Fidelity mAP@0.5.
    pub map50: f64,
}

/// BD-rate of the machine layer against one baseline, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BdRateEntry {
    pub anchor: String,
    pub percent: Option<f64>,
    pub map50_interval: Option<[f64; 2]>,
    pub machine_points: Option<usize>,
    pub anchor_points: Option<usize>,
    pub reason: Option<String>,
}

impl BdRateEntry {
    pub(crate) fn new(anchor: &str, r: Result<BdRate, String>) -> Self {
        match r {
            Ok(b) => Self {
                anchor: anchor.to_owned(),
                percent: Some(b.percent),
                map50_interval: Some(b.quality_interval),
                machine_points: Some(b.test_points),
                anchor_points: Some(b.anchor_points),
                reason: None,
            },
            Err(reason) => Self {
                anchor: anchor.to_owned(),
                percent: None,
                map50_interval: None,
                machine_points: None,
                anchor_points: None,
                reason: Some(reason),
            },
        }
    }

    /// `-12.3 % (mAP 0.41..0.93)` or `undefined: reason`.
    pub fn describe(&self) -> String {
        match (self.percent, self.map50_interval, &self.reason) {
            (Some(p), Some([lo, hi]), _) => format!("{p:+.1} % (over mAP {lo:.3}..{hi:.3})"),
            (_, _, Some(r)) => format!("undefined: {r}"),
            _ => "undefined".to_owned(),
        }
    }
}

/// Everything `eval` measured; written as the summary JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Percent, negative = the machine layer needs fewer bits; null when undefined.
    pub bd_rate_machine_vs_jpeg: Option<f64>,
    pub bd_rate_machine_vs_webp: Option<f64>,
    pub bd_rate: Vec<BdRateEntry>,
    pub images: usize,
    pub image_files: Vec<String>,
    /// Ground-truth boxes over all images, and their distinct classes.
    pub gt_boxes: usize,
    pub gt_classes: usize,
    /// mAP of the uncompressed detector against itself (1.0 by construction).
    pub map50_uncompressed: f64,
    pub pixels_per_image: u64,
    pub gains: Vec<f32>,
    pub qualities: Vec<u8>,
    pub bundle: serde_json::Value,
    pub protocol: serde_json::Value,
    pub points: Vec<RdRow>,
    pub csv: PathBuf,
    pub plot: PathBuf,
    pub json: PathBuf,
    /// Why the plot has no text, when it has none.
    pub plot_text_missing: Option<String>,
    pub elapsed_s: f64,
}

impl Summary {
    /// The points of one codec, in sweep order.
    pub fn curve(&self, codec: &str) -> impl Iterator<Item = &RdRow> {
        let codec = codec.to_owned();
        self.points.iter().filter(move |p| p.codec == codec)
    }

    /// A human-readable report for stdout.
    pub fn report(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "fidelity mAP@0.5 on {} image(s), {} ground-truth box(es) in {} class(es); uncompressed detector mAP {:.3}",
            self.images, self.gt_boxes, self.gt_classes, self.map50_uncompressed
        );
        let _ = writeln!(
            s,
            "{:<8} {:>8} {:>9} {:>7}",
            "codec", "param", "bpp", "mAP@0.5"
        );
        for p in &self.points {
            let _ = writeln!(
                s,
                "{:<8} {:>8} {:>9.4} {:>7.3}",
                p.codec, p.param, p.bpp, p.map50
            );
        }
        for e in &self.bd_rate {
            let _ = writeln!(s, "BD-rate machine vs {}: {}", e.anchor, e.describe());
        }
        s
    }
}

/// Every `.jpg`/`.jpeg`/`.png` directly in `dir`, sorted by path.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if path.is_file() && matches!(ext.as_deref(), Some("jpg" | "jpeg" | "png")) {
            out.push(path);
        }
    }
    out.sort();
    if out.is_empty() {
        bail!("no .jpg, .jpeg or .png images in {}", dir.display());
    }
    Ok(out)
}

/// `n` gains log-spaced over `[min, max]`, both ends included.
pub fn log_spaced_gains(min: f32, max: f32, n: usize) -> Vec<f32> {
    if n == 1 {
        return vec![min];
    }
    let (a, b) = ((min as f64).ln(), (max as f64).ln());
    (0..n)
        .map(|i| {
            let g = (a + (b - a) * i as f64 / (n - 1) as f64).exp() as f32;
            g.clamp(min, max)
        })
        .collect()
}

/// One point being measured: its rate and per-image predictions.
struct Acc {
    codec: &'static str,
    param: f32,
    bytes: u64,
    preds: Vec<Vec<Detection>>,
}

/// The image as the detector sees it: stretched to the input size, like `to_input`.
fn detector_sized(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    if img.dimensions() == (w, h) {
        img.clone()
    } else {
        image::imageops::resize(img, w, h, FilterType::Triangle)
    }
}

fn write_csv(path: &Path, rows: &[RdRow]) -> Result<()> {
    let mut s = String::from("codec,param,bpp,map50\n");
    for r in rows {
        let _ = writeln!(s, "{},{},{:.6},{:.6}", r.codec, r.param, r.bpp, r.map50);
    }
    fs::write(path, s).with_context(|| format!("writing {}", path.display()))
}

/// Run the whole evaluation and write `rd.csv`, `rd.png` and the summary JSON.
pub fn run(cfg: &EvalConfig) -> Result<Summary> {
    let t0 = Instant::now();
    let files = list_images(&cfg.images)?;
    if cfg.qualities.is_empty() {
        bail!("no JPEG/WebP qualities given");
    }
    if let Some(q) = cfg.qualities.iter().find(|q| !(1..=100).contains(*q)) {
        bail!("quality {q} outside 1..=100");
    }
    let bundle = Bundle::load(&cfg.bundle, Role::All)
        .with_context(|| format!("loading bundle {}", cfg.bundle.display()))?;
    let m = &bundle.manifest;
    let gains = match &cfg.gains {
        Some(g) => {
            if g.is_empty() {
                bail!("no gains given");
            }
            if let Some(bad) = g
                .iter()
                .find(|&&x| !(x >= m.ivn.gain_min && x <= m.ivn.gain_max))
            {
                bail!(
                    "gain {bad} outside the bundle's range {}..={}",
                    m.ivn.gain_min,
                    m.ivn.gain_max
                );
            }
            let mut g = g.clone();
            g.sort_by(f32::total_cmp);
            g.dedup();
            g
        }
        None => {
            if cfg.num_gains == 0 {
                bail!("--gains must be at least 1");
            }
            log_spaced_gains(m.ivn.gain_min, m.ivn.gain_max, cfg.num_gains)
        }
    };
    let full = bundle.require(&bundle.graphs.detector_full, "detector_full")?;
    let enc = FeatureEncoder::new(&bundle)?;
    let dec = FeatureDecoder::new(&bundle)?;
    let (w, h) = (m.input.width, m.input.height);
    let pixels = w as u64 * h as u64;

    let mut accs: Vec<Acc> = gains
        .iter()
        .map(|&g| ("machine", g))
        .chain(
            Baseline::ALL
                .iter()
                .flat_map(|b| cfg.qualities.iter().map(move |&q| (b.name(), q as f32))),
        )
        .map(|(codec, param)| Acc {
            codec,
            param,
            bytes: 0,
            preds: Vec::with_capacity(files.len()),
        })
        .collect();
    let n_baseline = Baseline::ALL.len() * cfg.qualities.len();

    let steps = files.len() as u64 * (2 + gains.len() + n_baseline) as u64;
    let pb = if cfg.progress {
        ProgressBar::new(steps)
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} eta {eta} {msg}",
        )
        .expect("valid template"),
    );

    let mut gts: Vec<Vec<Detection>> = Vec::with_capacity(files.len());
    let mut uncompressed: Vec<Vec<Detection>> = Vec::with_capacity(files.len());
    for (i, file) in files.iter().enumerate() {
        let name = file
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let ctx = || format!("image {}", file.display());
        let img = image::open(file).with_context(ctx)?.to_rgb8();
        let sized = detector_sized(&img, w, h);

        pb.set_message(format!("{name}: uncompressed detector"));
        let raw = full
            .run1(&preprocess::to_input(&sized, &m.input))
            .with_context(ctx)?
            .data;
        gts.push(GT_POST.apply(&raw));
        uncompressed.push(PRED_POST.apply(&raw));
        pb.inc(1);

        pb.set_message(format!("{name}: detector front"));
        let feats = enc.features(&sized).with_context(ctx)?;
        pb.inc(1);
        let meta = FrameMeta {
            sequence: i as u64,
            timestamp_us: 0,
        };
        for acc in accs.iter_mut().filter(|a| a.codec == "machine") {
            pb.set_message(format!("{name}: machine layer, gain {:.3}", acc.param));
            let frame = enc.encode(&feats, acc.param, meta).with_context(ctx)?;
            let out = dec.decode(&frame.bytes).with_context(ctx)?;
            acc.bytes += frame.bytes.len() as u64;
            acc.preds.push(PRED_POST.apply(&out.raw_detections));
            pb.inc(1);
        }
        for b in Baseline::ALL {
            for acc in accs.iter_mut().filter(|a| a.codec == b.name()) {
                pb.set_message(format!("{name}: {} q{}", b.label(), acc.param));
                let (bytes, decoded) = b.round_trip(&sized, acc.param as u8).with_context(ctx)?;
                let raw = full
                    .run1(&preprocess::to_input(&decoded, &m.input))
                    .with_context(ctx)?
                    .data;
                acc.bytes += bytes as u64;
                acc.preds.push(PRED_POST.apply(&raw));
                pb.inc(1);
            }
        }
    }
    pb.finish_and_clear();

    let gt_boxes: usize = gts.iter().map(Vec::len).sum();
    let gt_classes = gts
        .iter()
        .flatten()
        .map(|d| d.class)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let Some(map50_uncompressed) = map::mean_ap(&gts, &uncompressed) else {
        bail!(
            "the uncompressed detector found no box with score >= {} in any of the {} image(s): fidelity mAP is undefined",
            GT_POST.score_min,
            files.len()
        );
    };
    let points: Vec<RdRow> = accs
        .iter()
        .map(|a| RdRow {
            codec: a.codec.to_owned(),
            param: a.param,
            bpp: a.bytes as f64 * 8.0 / (files.len() as u64 * pixels) as f64,
            bytes: a.bytes,
            map50: map::mean_ap(&gts, &a.preds).expect("ground truth is not empty"),
        })
        .collect();

    let curve = |codec: &str| -> Vec<RatePoint> {
        points
            .iter()
            .filter(|p| p.codec == codec)
            .map(|p| RatePoint {
                rate: p.bpp,
                quality: p.map50,
            })
            .collect()
    };
    let machine = curve("machine");
    let bd: Vec<BdRateEntry> = Baseline::ALL
        .iter()
        .map(|b| BdRateEntry::new(b.name(), bdrate::bd_rate(&curve(b.name()), &machine)))
        .collect();

    fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    let csv = cfg.out.join("rd.csv");
    write_csv(&csv, &points)?;
    let plot_path = cfg.out.join("rd.png");
    let colours = [
        ("machine", "fchm machine layer", RGBColor(31, 119, 180)),
        ("jpeg", "JPEG", RGBColor(214, 39, 40)),
        ("webp", "WebP", RGBColor(44, 160, 44)),
    ];
    let series: Vec<plot::Series> = colours
        .iter()
        .map(|&(codec, label, colour)| plot::Series {
            label: label.to_owned(),
            points: points
                .iter()
                .filter(|p| p.codec == codec)
                .map(|p| (p.bpp, p.map50))
                .collect(),
            colour,
        })
        .collect();
    let title = format!(
        "Fidelity mAP@0.5 vs rate, {} image(s), {} ({})",
        files.len(),
        m.name,
        m.version
    );
    let plot_text_missing =
        plot::write_png(&plot_path, &title, &series, plot::YAxis::MAP)?.map(str::to_owned);

    let json_path = cfg
        .json
        .clone()
        .unwrap_or_else(|| cfg.out.join("summary.json"));
    let summary = Summary {
        bd_rate_machine_vs_jpeg: bd
            .iter()
            .find(|e| e.anchor == "jpeg")
            .and_then(|e| e.percent),
        bd_rate_machine_vs_webp: bd
            .iter()
            .find(|e| e.anchor == "webp")
            .and_then(|e| e.percent),
        bd_rate: bd,
        images: files.len(),
        image_files: files.iter().map(|f| f.display().to_string()).collect(),
        gt_boxes,
        gt_classes,
        map50_uncompressed,
        pixels_per_image: pixels,
        gains,
        qualities: cfg.qualities.clone(),
        bundle: json!({"dir": cfg.bundle, "name": m.name, "version": m.version, "bundle_id": m.bundle_id}),
        protocol: protocol(w, h),
        points,
        csv,
        plot: plot_path,
        json: json_path.clone(),
        plot_text_missing,
        elapsed_s: t0.elapsed().as_secs_f64(),
    };
    if let Some(dir) = json_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(&json_path, serde_json::to_string_pretty(&summary)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    Ok(summary)
}

/// The protocol, spelled out in the summary so a number never travels without it.
fn protocol(w: u32, h: u32) -> serde_json::Value {
    let post = |p: &PostProcess| json!({"score_min": p.score_min, "nms_iou": p.iou, "max_detections": p.max_detections});
    json!({
        "metric": "fidelity mAP@0.5: detections after coding vs the uncompressed detector's (models/train/fchm_train/metrics.py)",
        "ap": "per class present in the ground truth; predictions ranked by score over all images, greedy match at IoU >= 0.5; COCO 101-point interpolated AP; mean over classes",
        "input": format!("every .jpg/.jpeg/.png, stretched to {w}x{h} (triangle filter) as the detector input"),
        "ground_truth": {"graph": "detector_full", "post": post(&GT_POST)},
        "predictions": {"post": post(&PRED_POST)},
        "machine": "detector front once per image; FeatureEncoder::encode at each gain; rate = whole frame payload; FeatureDecoder::decode raw detections",
        "jpeg": "image crate baseline JPEG of the 512x512 image (4:4:4, standard Huffman tables), decoded, detector_full",
        "webp": "libwebp lossy (WebPEncodeRGB) of the 512x512 image, decoded, detector_full",
        "bpp": format!("total bytes * 8 / (images * {w} * {h}): every codec codes the {w}x{h} detector input"),
        "bd_rate": "Bjontegaard delta rate, machine (test) vs baseline (anchor): PCHIP of ln(bpp) over mAP on each curve's rate-quality frontier (points sorted by bpp, kept only when mAP rises strictly), integrated over the common mAP interval; percent, negative = fewer bits; null with a reason when undefined",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gains_are_log_spaced_and_inside_the_range() {
        let g = log_spaced_gains(1.0, 64.0, 7);
        assert_eq!(g.len(), 7);
        assert_eq!((g[0], g[6]), (1.0, 64.0));
        for (i, v) in g.iter().enumerate() {
            assert!((v - 2f32.powi(i as i32)).abs() < 1e-4, "{g:?}");
        }
        assert_eq!(log_spaced_gains(0.5, 2.0, 1), vec![0.5]);
        let odd = log_spaced_gains(0.3, 37.7, 8);
        assert!(odd.iter().all(|&v| (0.3..=37.7).contains(&v)));
    }

    #[test]
    fn lists_only_images_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["b.PNG", "a.jpg", "c.jpeg", "notes.txt", "d.webp"] {
            fs::write(dir.path().join(n), b"x").unwrap();
        }
        fs::create_dir(dir.path().join("e.jpg")).unwrap();
        let names: Vec<String> = list_images(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.jpg", "b.PNG", "c.jpeg"]);
        let empty = tempfile::tempdir().unwrap();
        assert!(list_images(empty.path())
            .unwrap_err()
            .to_string()
            .contains("no .jpg"));
    }

    #[test]
    fn csv_has_the_documented_columns() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rd.csv");
        let rows = vec![RdRow {
            codec: "machine".into(),
            param: 2.5,
            bpp: 0.0123,
            bytes: 403,
            map50: 0.75,
        }];
        write_csv(&p, &rows).unwrap();
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            "codec,param,bpp,map50\nmachine,2.5,0.012300,0.750000\n"
        );
    }

    #[test]
    fn undefined_bd_rate_carries_its_reason() {
        let e = BdRateEntry::new("jpeg", Err("no overlap".into()));
        assert_eq!(e.percent, None);
        assert_eq!(e.describe(), "undefined: no overlap");
        let v = serde_json::to_value(&e).unwrap();
        assert!(v["percent"].is_null() && v["reason"] == "no overlap");
    }
}
